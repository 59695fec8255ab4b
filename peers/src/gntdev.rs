//! `/dev/xen/gntdev`: map pages another domain granted to us.
//!
//! Sequence (as libxengnttab's Linux backend does it): MAP_GRANT_REF ioctl
//! reserves an offset in the device file, `mmap(offset)` performs the grant
//! map (PROT_READ only => GNTMAP_readonly), SET_UNMAP_NOTIFY optionally arms
//! a byte clear / event on unmap. Teardown: `munmap` (the grant unmap happens
//! here), then UNMAP_GRANT_REF to release the offset.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::shmem::SharedMem;
use crate::sys::{self, GntdevGrantRef, GntdevMapGrantRef, GntdevUnmapGrantRef, UnmapNotify};

pub const GNTDEV_PATH: &str = "/dev/xen/gntdev";

/// An open `/dev/xen/gntdev`.
pub struct Gntdev {
    file: File,
}

/// Pages of another domain mapped into this process.
pub struct Mapping<'a> {
    dev: &'a Gntdev,
    addr: *mut u8,
    count: usize,
    index: u64,
    writable: bool,
    unmapped: bool,
}

/// Bytes needed for a `ioctl_gntdev_map_grant_ref` carrying `count` refs,
/// in u64 words (the buffer must be 8-aligned for the `index` field).
pub fn map_buffer_words(count: usize) -> usize {
    (16 + 8 * count).div_ceil(8)
}

impl Gntdev {
    pub fn open() -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(GNTDEV_PATH)?;
        Ok(Self { file })
    }

    /// Map `refs` granted by `domid` as one contiguous range.
    pub fn map(&self, domid: u16, refs: &[u32], writable: bool) -> io::Result<Mapping<'_>> {
        if refs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no grant refs"));
        }
        let mut buf = vec![0u64; map_buffer_words(refs.len())];
        let head = buf.as_mut_ptr().cast::<GntdevMapGrantRef>();
        // SAFETY: buf is 8-aligned and at least 16 + 8*count bytes long, so
        // the header and `refs[count]` (at offset 16) are inside it.
        unsafe {
            (*head).count = refs.len() as u32;
            let arr = head.cast::<u8>().add(16).cast::<GntdevGrantRef>();
            for (i, r) in refs.iter().enumerate() {
                arr.add(i).write(GntdevGrantRef {
                    domid: domid.into(),
                    r#ref: *r,
                });
            }
        }
        let fd = self.file.as_raw_fd();
        // SAFETY: the buffer has the layout the kernel expects for `count` refs.
        let rc = unsafe { libc::ioctl(fd, sys::IOCTL_GNTDEV_MAP_GRANT_REF as _, head) };
        if rc < 0 {
            return Err(ctx("IOCTL_GNTDEV_MAP_GRANT_REF"));
        }
        // SAFETY: written by the kernel in the ioctl above.
        let index = unsafe { (*head).index };
        let len = refs.len() * sys::PAGE_SIZE;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let mut tries = 0;
        let addr = loop {
            // SAFETY: a fresh shared mapping of the gntdev offset; no existing
            // memory is replaced (addr hint NULL).
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED,
                    fd,
                    index as libc::off_t,
                )
            };
            if p != libc::MAP_FAILED {
                break p.cast::<u8>();
            }
            let err = io::Error::last_os_error();
            tries += 1;
            if err.raw_os_error() == Some(libc::EAGAIN) && tries < 1000 {
                // Paged-out grant: libxengnttab retries the same way
                // (unbounded there; we give up after about a second).
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let _ = self.release(index, refs.len());
            return Err(io::Error::new(
                err.kind(),
                format!("mmap of grant(s) failed: {err}"),
            ));
        };
        Ok(Mapping {
            dev: self,
            addr,
            count: refs.len(),
            index,
            writable,
            unmapped: false,
        })
    }

    fn release(&self, index: u64, count: usize) -> io::Result<()> {
        let mut arg = GntdevUnmapGrantRef {
            index,
            count: count as u32,
            pad: 0,
        };
        // SAFETY: valid pointer to a correctly laid out struct.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                sys::IOCTL_GNTDEV_UNMAP_GRANT_REF as _,
                &mut arg as *mut GntdevUnmapGrantRef,
            )
        };
        if rc < 0 {
            return Err(ctx("IOCTL_GNTDEV_UNMAP_GRANT_REF"));
        }
        Ok(())
    }
}

impl<'a> Mapping<'a> {
    pub fn len(&self) -> usize {
        self.count * sys::PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The mapped pages. Writes through a read-only mapping fault, so
    /// callers must check [`Mapping::is_writable`] first.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: addr..addr+len is our live mapping until `unmap`/drop,
        // which needs `self` by value / `&mut`, so the view cannot outlive it.
        unsafe { SharedMem::new(self.addr, self.len()) }
    }

    /// Arm the kernel's unmap notification: on unmap (including process
    /// death) clear the byte at `clear_byte` (writable mappings only) and/or
    /// send an event on `port` (a port bound through `/dev/xen/evtchn` by
    /// this process).
    pub fn set_unmap_notify(&self, clear_byte: Option<usize>, port: Option<u32>) -> io::Result<()> {
        let mut arg = notify_arg(self.index, clear_byte, port, self.len())?;
        // SAFETY: valid pointer to a correctly laid out struct.
        let rc = unsafe {
            libc::ioctl(
                self.dev.file.as_raw_fd(),
                sys::IOCTL_GNTDEV_SET_UNMAP_NOTIFY as _,
                &mut arg as *mut UnmapNotify,
            )
        };
        if rc < 0 {
            return Err(ctx("IOCTL_GNTDEV_SET_UNMAP_NOTIFY"));
        }
        Ok(())
    }

    /// Unmap the grants and release the device offset, reporting errors.
    pub fn unmap(mut self) -> io::Result<()> {
        self.do_unmap()
    }

    fn do_unmap(&mut self) -> io::Result<()> {
        if self.unmapped {
            return Ok(());
        }
        self.unmapped = true;
        // SAFETY: addr/len is exactly the region returned by mmap in `map`,
        // and no SharedMem view can outlive `self` (it borrows it).
        let rc = unsafe { libc::munmap(self.addr.cast(), self.len()) };
        if rc < 0 {
            return Err(ctx("munmap of grant mapping"));
        }
        self.dev.release(self.index, self.count)
    }
}

impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        let _ = self.do_unmap();
    }
}

/// Build an `ioctl_*_unmap_notify` argument; shared with gntalloc.
pub(crate) fn notify_arg(
    index: u64,
    clear_byte: Option<usize>,
    port: Option<u32>,
    len: usize,
) -> io::Result<UnmapNotify> {
    let mut arg = UnmapNotify {
        index,
        action: 0,
        event_channel_port: 0,
    };
    if let Some(off) = clear_byte {
        if off >= len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unmap-notify byte outside the mapping",
            ));
        }
        arg.index += off as u64;
        arg.action |= sys::UNMAP_NOTIFY_CLEAR_BYTE;
    }
    if let Some(p) = port {
        arg.event_channel_port = p;
        arg.action |= sys::UNMAP_NOTIFY_SEND_EVENT;
    }
    Ok(arg)
}

/// `io::Error::last_os_error()` with the failing call named.
pub(crate) fn ctx(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_buffer_holds_refs() {
        assert_eq!(map_buffer_words(1) * 8, 24);
        assert_eq!(map_buffer_words(2) * 8, 32);
        assert_eq!(map_buffer_words(3) * 8, 40);
    }

    #[test]
    fn notify_arg_encodes_actions() {
        let a = notify_arg(0x1000, Some(20), Some(7), 4096).unwrap();
        assert_eq!(a.index, 0x1000 + 20);
        assert_eq!(a.action, 3);
        assert_eq!(a.event_channel_port, 7);
        let b = notify_arg(0x1000, None, Some(7), 4096).unwrap();
        assert_eq!((b.index, b.action), (0x1000, 2));
        assert!(notify_arg(0, Some(4096), None, 4096).is_err());
    }
}
