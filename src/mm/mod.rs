//! Memory management: a physical page allocator over the guest's RAM, all
//! RAM mapped at VA = pfn << 12, a heap that grows from it, and a small VA
//! window for foreign frames (grant-table frames, grants mapped from other
//! domains).
//!
//! * [`frames`] — the bitmap frame allocator (pure, host-tested).
//! * `arch::x86_64::pv::mm` — PV page tables, p2m and M2P (the only
//!   PV-specific part).
//! * `arch::x86_64::pvh::mm` — its PVH sibling: identity map (pfn == gfn),
//!   frames from the E820 map, a guest-physical foreign window above 4 GiB.
//! * [`Page`] — a private page; [`SharedPage`] — a page meant for another
//!   domain: the **only** constructor, [`alloc_shared_page`], zeroes it, and
//!   the frame returns to the allocator only when the last handle is gone
//!   (a grant holds one, so a page mapped by a peer is never reused).

pub mod frames;

#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
pub use kernel::*;

use core::fmt;

use crate::errno::Errno;
pub use frames::FrameError;

/// Memory-management errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// No free page (or contiguous run) left.
    OutOfMemory,
    /// `mm` has not been initialised (or failed to).
    NotInitialised,
    /// A page-table hypercall failed.
    Hypercall(Errno),
    /// The page tables or p2m are not what the boot protocol promises.
    BadPageTable(&'static str),
    /// The frame allocator refused (double free, …).
    Frame(FrameError),
    /// The foreign-mapping VA window is full.
    NoVa,
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::OutOfMemory => write!(f, "out of memory"),
            MmError::NotInitialised => write!(f, "memory manager not initialised"),
            MmError::Hypercall(e) => write!(f, "page-table hypercall failed: {e}"),
            MmError::BadPageTable(what) => write!(f, "bad boot page tables: {what}"),
            MmError::Frame(e) => write!(f, "frame allocator: {e:?}"),
            MmError::NoVa => write!(f, "foreign-mapping VA window full"),
        }
    }
}

impl core::error::Error for MmError {}

impl From<FrameError> for MmError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::OutOfMemory => MmError::OutOfMemory,
            e => MmError::Frame(e),
        }
    }
}
