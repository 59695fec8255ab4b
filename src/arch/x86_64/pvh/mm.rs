//! PVH memory: RAM comes from the E820 map of hvm_start_info and is
//! identity-mapped by the boot tables (pfn == gfn, VA == PA); there is no
//! p2m, so a page's "MFN" as grants name it is its pfn.
//!
//! The foreign-mapping window is a range of *guest-physical* addresses above
//! 4 GiB (never RAM, never a toolstack page), mapped VA == PA with 4 KiB
//! pages only while something is there: Xen puts grant-table frames
//! (`XENMEM_add_to_physmap`) or a peer's granted page (`GNTMAP_host_map`,
//! whose host_addr is a GPA on HVM) at the gfn, then [`map`] adds the PTE.
//! Page tables are the boot tables of src/arch/x86_64/pvh/entry.rs (see
//! [`super::entry::with_boot_tables`]), edited with the x86_64 crate's
//! `Mapper`.

use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, Page, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::entry::with_boot_tables;
use crate::mm::MmError;

/// First window page (GPA == VA): 4 GiB, just past the boot identity map.
pub const VMAP_BASE: u64 = super::entry::IDENTITY_LIMIT;

/// Page-table frames for new mappings, from the kernel's frame allocator.
pub struct TableFrames<F: FnMut() -> Result<u64, MmError>>(pub F);

// SAFETY: the closure returns frames taken from the frame allocator, owned
// by nobody else from then on; the mapper zeroes them before use.
unsafe impl<F: FnMut() -> Result<u64, MmError>> FrameAllocator<Size4KiB> for TableFrames<F> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pfn = (self.0)().ok()?;
        Some(PhysFrame::containing_address(PhysAddr::new(pfn << 12)))
    }
}

/// Map window page `va` to guest-physical `gfn` (4 KiB, RW unless
/// `!writable`).
///
/// # Safety
/// Nothing may refer to the page at `va`; `gfn` must be populated by Xen
/// (a grant-table frame or a mapped grant).
pub unsafe fn map(
    va: u64,
    gfn: u64,
    writable: bool,
    alloc: impl FnMut() -> Result<u64, MmError>,
) -> Result<(), MmError> {
    let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(va))
        .map_err(|_| MmError::BadPageTable("unaligned window address"))?;
    let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(gfn << 12));
    let mut flags = PageTableFlags::PRESENT;
    if writable {
        flags |= PageTableFlags::WRITABLE;
    }
    let mut frames = TableFrames(alloc);
    with_boot_tables(|m| {
        // SAFETY: forwarded from the caller: `va` is an unused window slot
        // (above all RAM and the identity map), `gfn` holds a frame Xen
        // gave us; intermediate tables come from our own allocator.
        unsafe { m.map_to(page, frame, flags, &mut frames) }
            .map(|flush| flush.flush())
            .map_err(|e| match e {
                MapToError::FrameAllocationFailed => MmError::OutOfMemory,
                _ => MmError::BadPageTable("window page already mapped"),
            })
    })
}

/// Remove the window mapping at `va` (no-op if none).
///
/// # Safety
/// No references into the page at `va` may remain.
pub unsafe fn unmap(va: u64) -> Result<(), MmError> {
    let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(va))
        .map_err(|_| MmError::BadPageTable("unaligned window address"))?;
    with_boot_tables(|m| match m.unmap(page) {
        Ok((_, flush)) => {
            flush.flush();
            Ok(())
        }
        Err(UnmapError::PageNotMapped) => Ok(()),
        Err(_) => Err(MmError::BadPageTable("window unmap")),
    })
}

/// What maps `va`, as a PTE value: physical page | low flag bits (bit 0 =
/// present); 0 if nothing. For 2 MiB identity pages the 4 KiB frame inside
/// is reported.
pub fn pte(va: u64) -> u64 {
    let Ok(va) = VirtAddr::try_new(va) else {
        return 0;
    };
    with_boot_tables(|m| match m.translate(va) {
        TranslateResult::Mapped {
            frame,
            offset,
            flags,
        } => {
            let pa = frame.start_address().as_u64() + offset;
            (pa & !0xfff) | (flags.bits() & 0xfff)
        }
        _ => 0,
    })
}
