//! Dom0-side peers: thin safe wrappers over Linux's /dev/xen devices.
