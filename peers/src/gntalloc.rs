//! `/dev/xen/gntalloc`: allocate pages in this domain and grant them to
//! another domain.
//!
//! Sequence (libxengnttab's `gntshr_share_pages`): ALLOC_GREF returns the
//! grant refs and a device offset, `mmap(offset)` maps the pages here,
//! SET_UNMAP_NOTIFY arms the clear-byte/event, and DEALLOC_GREF drops the
//! offset right away: the grants stay alive until the mapping goes away (on
//! `munmap` or process exit), at which point the kernel ends foreign access
//! (deferring the free while the other domain still has them mapped).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::gntdev::{ctx, notify_arg};
use crate::shmem::SharedMem;
use crate::sys::{self, GntallocAllocGref, GntallocDeallocGref, UnmapNotify};

pub const GNTALLOC_PATH: &str = "/dev/xen/gntalloc";

pub struct Gntalloc {
    file: File,
}

/// Pages we own and have granted.
pub struct Shared {
    addr: *mut u8,
    count: usize,
    refs: Vec<u32>,
}

/// Bytes needed for a `ioctl_gntalloc_alloc_gref` returning `count` refs,
/// in u64 words (the buffer must be 8-aligned for the `index` field).
pub fn alloc_buffer_words(count: usize) -> usize {
    (16 + 4 * count).div_ceil(8).max(3)
}

impl Gntalloc {
    pub fn open() -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(GNTALLOC_PATH)?;
        Ok(Self { file })
    }

    /// Allocate `pages` zeroed pages granted to `domid`, mapped here
    /// read-write. `clear_byte` / `notify_port`: see [`Gntalloc`] module doc;
    /// the port must be bound by this process through `/dev/xen/evtchn`.
    pub fn alloc(
        &self,
        domid: u16,
        pages: usize,
        writable: bool,
        clear_byte: Option<usize>,
        notify_port: Option<u32>,
    ) -> io::Result<Shared> {
        if pages == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero pages"));
        }
        let mut buf = vec![0u64; alloc_buffer_words(pages)];
        let head = buf.as_mut_ptr().cast::<GntallocAllocGref>();
        // SAFETY: buf is 8-aligned and holds the header plus `gref_ids[pages]`.
        unsafe {
            (*head).domid = domid;
            (*head).flags = if writable {
                sys::GNTALLOC_FLAG_WRITABLE
            } else {
                0
            };
            (*head).count = pages as u32;
        }
        let fd = self.file.as_raw_fd();
        // SAFETY: the buffer has the layout the kernel expects for `pages`.
        let rc = unsafe { libc::ioctl(fd, sys::IOCTL_GNTALLOC_ALLOC_GREF as _, head) };
        if rc < 0 {
            return Err(ctx("IOCTL_GNTALLOC_ALLOC_GREF"));
        }
        // SAFETY: the kernel filled index and gref_ids[0..pages].
        let (index, refs) = unsafe {
            let ids = head.cast::<u8>().add(16).cast::<u32>();
            (
                (*head).index,
                (0..pages).map(|i| ids.add(i).read()).collect::<Vec<u32>>(),
            )
        };
        let len = pages * sys::PAGE_SIZE;
        // SAFETY: a fresh shared mapping of our gntalloc offset.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                index as libc::off_t,
            )
        };
        let result = if p == libc::MAP_FAILED {
            Err(ctx("mmap of gntalloc pages"))
        } else {
            let shared = Shared {
                addr: p.cast(),
                count: pages,
                refs,
            };
            match self.set_notify(index, clear_byte, notify_port, len) {
                Ok(()) => Ok(shared),
                Err(e) => Err(e), // `shared` drops here: munmap
            }
        };
        // Drop the offset now; pages live until the mapping is gone.
        let mut drop_arg = GntallocDeallocGref {
            index,
            count: pages as u32,
        };
        // SAFETY: valid pointer to a correctly laid out struct.
        unsafe {
            libc::ioctl(
                fd,
                sys::IOCTL_GNTALLOC_DEALLOC_GREF as _,
                &mut drop_arg as *mut GntallocDeallocGref,
            )
        };
        result
    }

    fn set_notify(
        &self,
        index: u64,
        clear_byte: Option<usize>,
        port: Option<u32>,
        len: usize,
    ) -> io::Result<()> {
        if clear_byte.is_none() && port.is_none() {
            return Ok(());
        }
        let mut arg = notify_arg(index, clear_byte, port, len)?;
        // SAFETY: valid pointer to a correctly laid out struct.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                sys::IOCTL_GNTALLOC_SET_UNMAP_NOTIFY as _,
                &mut arg as *mut UnmapNotify,
            )
        };
        if rc < 0 {
            return Err(ctx("IOCTL_GNTALLOC_SET_UNMAP_NOTIFY"));
        }
        Ok(())
    }
}

impl Shared {
    /// Grant refs, one per page, in page order.
    pub fn refs(&self) -> &[u32] {
        &self.refs
    }

    pub fn len(&self) -> usize {
        self.count * sys::PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: our live read-write mapping until drop; the view borrows self.
        unsafe { SharedMem::new(self.addr, self.len()) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned; no view outlives self.
        unsafe { libc::munmap(self.addr.cast(), self.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_buffer_holds_refs() {
        assert_eq!(alloc_buffer_words(1) * 8, 24);
        assert_eq!(alloc_buffer_words(2) * 8, 24);
        assert_eq!(alloc_buffer_words(3) * 8, 32);
    }
}
