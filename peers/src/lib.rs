//! Dom0-side peers: thin safe wrappers over Linux's `/dev/xen` devices, an
//! io/ring.h ring for the peer side, and the pieces the test binaries share.
//!
//! Only stock interfaces are used: `/dev/xen/gntdev`, `/dev/xen/gntalloc`,
//! `/dev/xen/evtchn`, and the `xenstore-*` tools. See `docs/peers.md` for the
//! binaries' command lines and output.

pub mod args;
pub mod demo;
pub mod evtchn;
pub mod gntalloc;
pub mod gntdev;
pub mod pattern;
pub mod ring;
pub mod shmem;
pub mod sys;
pub mod xs;

pub use evtchn::Evtchn;
pub use gntalloc::{Gntalloc, Shared};
pub use gntdev::{Gntdev, Mapping};

/// Print `<prog>: error: <msg>` to stderr and exit with status 2 (the
/// "could not run the test" status; 1 is reserved for a failed check).
pub fn die(prog: &str, msg: impl std::fmt::Display) -> ! {
    eprintln!("{prog}: error: {msg}");
    std::process::exit(2)
}
