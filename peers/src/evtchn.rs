//! `/dev/xen/evtchn`: event channels from user space.
//!
//! The bind ioctls return the new local port as the ioctl's result. A fired
//! port is delivered by `read()` as a `u32` and stays masked (the kernel
//! driver disables it) until the port number is `write()`n back.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::gntdev::ctx;
use crate::sys::{self, EvtchnBindInterdomain, EvtchnBindUnboundPort, EvtchnPort};

pub const EVTCHN_PATH: &str = "/dev/xen/evtchn";

pub struct Evtchn {
    file: File,
}

impl Evtchn {
    pub fn open() -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(EVTCHN_PATH)?;
        Ok(Self { file })
    }

    fn ioctl<T>(&self, req: u64, arg: &mut T, what: &str) -> io::Result<u32> {
        // SAFETY: `arg` is a valid, correctly laid out ioctl struct for `req`
        // (each caller pairs a request number with its struct from `sys`).
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), req as _, arg as *mut T) };
        if rc < 0 {
            return Err(ctx(what));
        }
        Ok(rc as u32)
    }

    /// Connect to `remote_port`, which `domid` allocated for us (unbound,
    /// remote = our domain). Returns the local port.
    pub fn bind_interdomain(&self, domid: u16, remote_port: u32) -> io::Result<u32> {
        let mut arg = EvtchnBindInterdomain {
            remote_domain: domid.into(),
            remote_port,
        };
        self.ioctl(
            sys::IOCTL_EVTCHN_BIND_INTERDOMAIN,
            &mut arg,
            "IOCTL_EVTCHN_BIND_INTERDOMAIN",
        )
    }

    /// Allocate a port that `domid` may bind to. Returns the local port
    /// (the number to advertise to `domid`).
    pub fn bind_unbound(&self, domid: u16) -> io::Result<u32> {
        let mut arg = EvtchnBindUnboundPort {
            remote_domain: domid.into(),
        };
        self.ioctl(
            sys::IOCTL_EVTCHN_BIND_UNBOUND_PORT,
            &mut arg,
            "IOCTL_EVTCHN_BIND_UNBOUND_PORT",
        )
    }

    pub fn notify(&self, port: u32) -> io::Result<()> {
        let mut arg = EvtchnPort { port };
        self.ioctl(sys::IOCTL_EVTCHN_NOTIFY, &mut arg, "IOCTL_EVTCHN_NOTIFY")
            .map(|_| ())
    }

    pub fn unbind(&self, port: u32) -> io::Result<()> {
        let mut arg = EvtchnPort { port };
        self.ioctl(sys::IOCTL_EVTCHN_UNBIND, &mut arg, "IOCTL_EVTCHN_UNBIND")
            .map(|_| ())
    }

    /// Re-enable delivery on `port` after it fired.
    pub fn unmask(&self, port: u32) -> io::Result<()> {
        (&self.file).write_all(&port.to_ne_bytes())
    }

    /// Wait up to `timeout` for an event. Returns the fired port, already
    /// unmasked again (so an event arriving while the caller works on it is
    /// queued, not lost), or `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<u32>> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(None);
            }
            break;
        }
        let mut b = [0u8; 4];
        (&self.file).read_exact(&mut b)?;
        let port = u32::from_ne_bytes(b);
        self.unmask(port)?;
        Ok(Some(port))
    }
}
