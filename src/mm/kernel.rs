//! The kernel's global memory state (guest only): frame allocator, page
//! handles, heap growth and the foreign-mapping VA window.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::{Mutex, Once};

use super::frames::FrameAllocator;
use super::MmError;
use crate::arch::x86_64::pv::mm::PvMm;
use crate::arch::x86_64::pvh::mm as pvh;
use crate::heap;
use crate::shared::{MemOwner, SharedMem, PAGE_SIZE};
use crate::xen_abi::start_info::StartInfo;

static PV: Once<PvMm> = Once::new();
/// Set by [`init_pvh`]: identity-mapped PVH memory (see `pvh`).
static PVH: Once<()> = Once::new();
static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
static SUMMARY: Once<Result<Summary, MmError>> = Once::new();

/// What `init_pv` found and did (printed as the `mm:` console line).
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Pages of RAM the domain has (`start_info.nr_pages`).
    pub nr_pages: u64,
    /// First frame after the builder's bootstrap region.
    pub boot_end: u64,
    /// Page-table frames added to map all RAM.
    pub pt_frames: u64,
    /// Frames holding the allocator bitmap.
    pub bitmap_frames: u64,
    /// Free frames right after init.
    pub free_frames: u64,
}

fn pv() -> Result<&'static PvMm, MmError> {
    PV.get().ok_or(MmError::NotInitialised)
}

/// Boot (PV): map all RAM, set up the frame allocator after the bootstrap
/// region (`pt_base + nr_pt_frames` + the bootstrap stack page) and let the
/// heap grow from it. Call once, before the console exists; the outcome is
/// kept for [`summary`].
pub fn init_pv(si: &StartInfo) -> Result<Summary, MmError> {
    *SUMMARY.call_once(|| {
        // SAFETY: the values come from our own start_info.
        let r = unsafe { init_pv_inner(si) };
        if r.is_ok() {
            heap::set_grow_hook(grow_heap);
        }
        r
    })
}

unsafe fn init_pv_inner(si: &StartInfo) -> Result<Summary, MmError> {
    // SAFETY: forwarded: mfn_list/nr_pages/pt_base are this domain's.
    let pv = unsafe { PvMm::new(si.mfn_list, si.nr_pages, si.pt_base)? };
    let nr = pv.nr_pages();
    let boot_end = (si.pt_base >> 12) + si.nr_pt_frames + 1;
    if boot_end >= nr {
        return Err(MmError::BadPageTable("bootstrap region beyond nr_pages"));
    }
    let after_pt = pv.map_all_ram(boot_end, boot_end)?;
    let words = FrameAllocator::words_for(nr);
    let bitmap_frames = (words * 8).div_ceil(PAGE_SIZE) as u64;
    let first_free = after_pt + bitmap_frames;
    if first_free >= nr {
        return Err(MmError::OutOfMemory);
    }
    // SAFETY: frames after_pt..first_free are RAM of ours, mapped RW at
    // pfn << 12 (map_all_ram), used by nothing else, and never freed: the
    // bitmap lives there for the rest of the kernel's life.
    let bitmap = unsafe {
        core::slice::from_raw_parts_mut((after_pt << 12) as *mut u64, bitmap_frames as usize * 512)
    };
    let mut fa = FrameAllocator::new(bitmap, nr);
    fa.release_range(first_free, nr);
    // Defensive: frames the builder described that must never be handed out.
    for mfn in [si.store_mfn, si.console_mfn] {
        if let Some(pfn) = pv.mfn_to_pfn(mfn) {
            fa.reserve(pfn);
        }
    }
    let free_frames = fa.free_frames();
    PV.call_once(|| pv);
    *FRAMES.lock() = Some(fa);
    Ok(Summary {
        nr_pages: nr,
        boot_end,
        pt_frames: after_pt - boot_end,
        bitmap_frames,
        free_frames,
    })
}

/// Boot (PVH): frame allocator over the RAM of the E820 map after the
/// kernel image (`__image_end`; pfns below it, incl. low memory, are never
/// handed out), bitmap right after the image, heap growth. RAM is already
/// identity-mapped by the boot tables (src/arch/x86_64/pvh/entry.rs). Call
/// once, after hvm_start_info was copied (its pages may be reused).
pub fn init_pvh(map: &crate::platform::MemMap) -> Result<Summary, MmError> {
    *SUMMARY.call_once(|| {
        let r = init_pvh_inner(map);
        if r.is_ok() {
            PVH.call_once(|| ());
            heap::set_grow_hook(grow_heap);
        }
        r
    })
}

fn init_pvh_inner(map: &crate::platform::MemMap) -> Result<Summary, MmError> {
    unsafe extern "C" {
        static __image_end: u8;
    }
    let limit = pvh::VMAP_BASE >> 12;
    if map.ram_ranges().any(|(_, e)| e > limit) {
        // The boot tables map 4 GiB and the foreign window starts there.
        return Err(MmError::BadPageTable(
            "PVH: RAM above 4 GiB is not supported yet (use memory <= 3840)",
        ));
    }
    let nr = map.ram_ranges().map(|(_, e)| e).max().unwrap_or(0);
    let image_end = (&raw const __image_end as u64).div_ceil(PAGE_SIZE as u64);
    let words = FrameAllocator::words_for(nr);
    let bitmap_frames = (words * 8).div_ceil(PAGE_SIZE) as u64;
    let first_free = image_end + bitmap_frames;
    let in_ram = |s: u64, e: u64| map.ram_ranges().any(|(rs, re)| rs <= s && e <= re);
    if first_free >= nr || !in_ram(image_end, first_free) {
        return Err(MmError::OutOfMemory);
    }
    // SAFETY: frames image_end..first_free are RAM (checked), identity-
    // mapped, past everything the image uses, and never freed: the bitmap
    // lives there for the rest of the kernel's life.
    let bitmap = unsafe {
        core::slice::from_raw_parts_mut((image_end << 12) as *mut u64, bitmap_frames as usize * 512)
    };
    let mut fa = FrameAllocator::new(bitmap, nr);
    for (s, e) in map.ram_ranges() {
        let (s, e) = (s.max(first_free), e.min(nr));
        if s < e {
            fa.release_range(s, e);
        }
    }
    let free_frames = fa.free_frames();
    *FRAMES.lock() = Some(fa);
    Ok(Summary {
        nr_pages: map.ram_pages(),
        boot_end: image_end,
        pt_frames: 0,
        bitmap_frames,
        free_frames,
    })
}

fn is_pvh() -> bool {
    PVH.get().is_some()
}

/// The outcome of [`init_pv`] / [`init_pvh`] (None before it ran).
pub fn summary() -> Option<Result<Summary, MmError>> {
    SUMMARY.get().copied()
}

fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> Result<R, MmError> {
    // Must not allocate from the heap while holding FRAMES (the heap's grow
    // hook takes FRAMES).
    let mut g = FRAMES.lock();
    g.as_mut().map(f).ok_or(MmError::NotInitialised)
}

fn grow_heap(min_bytes: usize) -> Option<(*mut u8, usize)> {
    let pages = min_bytes.div_ceil(PAGE_SIZE) as u64;
    let first = with_frames(|fa| fa.alloc_contiguous(pages)).ok()?.ok()?;
    Some(((first << 12) as *mut u8, pages as usize * PAGE_SIZE))
}

/// Free frames right now.
pub fn free_frames() -> u64 {
    with_frames(|fa| fa.free_frames()).unwrap_or(0)
}

/// Total frames managed (= nr_pages).
pub fn nr_frames() -> u64 {
    with_frames(|fa| fa.nr_frames()).unwrap_or(0)
}

// ------------------------------------------------------------------ pages

/// A private page of RAM, mapped at `va() = pfn << 12`. Freed on drop.
#[derive(Debug)]
pub struct Page {
    pfn: u64,
}

/// One free page (contents unspecified).
pub fn alloc_page() -> Result<Page, MmError> {
    let pfn = with_frames(|fa| fa.alloc())??;
    Ok(Page { pfn })
}

/// One zeroed page.
pub fn alloc_zeroed_page() -> Result<Page, MmError> {
    let mut p = alloc_page()?;
    p.bytes_mut().fill(0);
    Ok(p)
}

impl Page {
    /// Pseudo-physical frame number.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// Machine frame (what grants and page tables name on PV).
    pub fn mfn(&self) -> u64 {
        pfn_to_mfn(self.pfn).expect("allocated page has an MFN")
    }

    /// Virtual address (RAM is mapped 1:1 at its pseudo-physical address).
    pub fn va(&self) -> usize {
        (self.pfn << 12) as usize
    }

    /// The page's contents.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        // SAFETY: the frame is ours alone (taken from the allocator, never
        // shared: SharedPage consumes the Page) and mapped RW at va().
        unsafe { &*(self.va() as *const [u8; PAGE_SIZE]) }
    }

    /// The page's contents, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        // SAFETY: as in `bytes`; `&mut self` makes the borrow exclusive.
        unsafe { &mut *(self.va() as *mut [u8; PAGE_SIZE]) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Ok(Err(e)) = with_frames(|fa| fa.free(self.pfn)) {
            panic!("mm: freeing pfn {:#x}: {e:?}", self.pfn);
        }
    }
}

/// A page for sharing with another domain: zeroed when allocated, reached
/// only through [`SharedMem`], returned to the allocator when the last
/// handle (including those held by grants) is dropped.
#[derive(Clone, Debug)]
pub struct SharedPage(Arc<Page>);

/// A zeroed page ready to be granted.
pub fn alloc_shared_page() -> Result<SharedPage, MmError> {
    Ok(SharedPage::from_page(alloc_page()?))
}

/// `n` zeroed shareable pages at consecutive pseudo-physical (so, RAM
/// being mapped 1:1, virtual) addresses: a multi-page shared ring
/// (`ring-page-order` > 0) seen as one contiguous view. Each page is
/// granted on its own, so machine contiguity is not needed.
pub fn alloc_shared_pages(n: usize) -> Result<Vec<SharedPage>, MmError> {
    let first = with_frames(|fa| fa.alloc_contiguous(n as u64))??;
    Ok((first..first + n as u64)
        .map(|pfn| SharedPage::from_page(Page { pfn }))
        .collect())
}

impl SharedPage {
    /// Wipes `page` and makes it shareable.
    pub fn from_page(mut page: Page) -> SharedPage {
        page.bytes_mut().fill(0);
        SharedPage(Arc::new(page))
    }

    /// Pseudo-physical frame number.
    pub fn pfn(&self) -> u64 {
        self.0.pfn()
    }
    /// Machine frame (what grants name on PV).
    pub fn mfn(&self) -> u64 {
        self.0.mfn()
    }
    /// Virtual address.
    pub fn va(&self) -> usize {
        self.0.va()
    }

    /// The volatile view of the page; it borrows this handle.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: the frame stays mapped RW at va() and allocated while any
        // handle exists, and this one is borrowed for the view's lifetime;
        // no `&`/`&mut` to it exists after `from_page`.
        unsafe { SharedMem::from_raw(self.va() as *mut u8, PAGE_SIZE) }
    }

    /// Handles to this page (grants hold one each).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl MemOwner for SharedPage {
    fn mem(&self) -> SharedMem<'_> {
        SharedPage::mem(self)
    }
}

// ------------------------------------------------------- foreign VA window

/// Where foreign frames are mapped: far above RAM (1 TiB), below the
/// canonical hole.
const VMAP_BASE: u64 = 0x0000_0100_0000_0000;
/// Window size in pages (64 MiB).
const VMAP_PAGES: u64 = 16384;

struct Vmap {
    next: u64,
    free: Vec<u64>,
}

static VMAP: Mutex<Vmap> = Mutex::new(Vmap {
    next: 0,
    free: Vec::new(),
});

/// A page-sized VA slot whose L1 entry exists (and is empty): for
/// `update_va_mapping` and `GNTMAP_host_map`.
/// PVH: a page-aligned guest-physical address above RAM (VA == GPA), not
/// mapped until [`map_mfn`]: the host_addr for `GNTMAP_host_map` and the
/// gpfn for `XENMEM_add_to_physmap`.
pub fn vmap_reserve() -> Result<u64, MmError> {
    if is_pvh() {
        let mut v = VMAP.lock();
        if let Some(va) = v.free.pop() {
            return Ok(va);
        }
        if v.next >= VMAP_PAGES {
            return Err(MmError::NoVa);
        }
        let va = pvh::VMAP_BASE + (v.next << 12);
        v.next += 1;
        return Ok(va);
    }
    let pv = pv()?;
    let mut v = VMAP.lock();
    if let Some(va) = v.free.pop() {
        return Ok(va);
    }
    if v.next >= VMAP_PAGES {
        return Err(MmError::NoVa);
    }
    let va = VMAP_BASE + (v.next << 12);
    let mut alloc = || with_frames(|fa| fa.alloc())?.map_err(MmError::from);
    pv.ensure_l1(va, &mut alloc)?;
    v.next += 1;
    Ok(va)
}

/// Gives back a slot from [`vmap_reserve`] (its entry must be empty again).
pub fn vmap_release(va: u64) {
    let base = if is_pvh() { pvh::VMAP_BASE } else { VMAP_BASE };
    debug_assert!((base..base + (VMAP_PAGES << 12)).contains(&va));
    VMAP.lock().free.push(va);
}

/// Maps machine frame `mfn` at the window slot `va` (PVH: guest frame,
/// normally `va >> 12`, after Xen put something there).
///
/// # Safety
/// `va` is a reserved slot with no references into it; `mfn` is a frame
/// Xen lets us map (e.g. from `GNTTABOP_setup_table`).
pub unsafe fn map_mfn(va: u64, mfn: u64, writable: bool) -> Result<(), MmError> {
    if is_pvh() {
        let alloc = || with_frames(|fa| fa.alloc())?.map_err(MmError::from);
        // SAFETY: forwarded from the caller.
        return unsafe { pvh::map(va, mfn, writable, alloc) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { pv()?.map_mfn(va, mfn, writable) }
}

/// Whether grants and foreign frames live in guest-physical space (PVH):
/// then `GNTMAP_host_map` takes the slot's GPA and the caller maps the slot
/// with [`map_mfn`]`(va, va >> 12, ..)` afterwards.
pub fn foreign_is_physical() -> bool {
    is_pvh()
}

/// Clears the window slot `va`.
///
/// # Safety
/// No references into the page at `va` may remain.
pub unsafe fn unmap_va(va: u64) -> Result<(), MmError> {
    if is_pvh() {
        // SAFETY: forwarded from the caller.
        return unsafe { pvh::unmap(va) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { pv()?.unmap(va) }
}

/// The L1 entry currently mapping `va` (0 if none): for checks and tests.
pub fn pte(va: u64) -> Result<u64, MmError> {
    if is_pvh() {
        return Ok(pvh::pte(va));
    }
    pv()?.pte(va)
}

/// PFN → MFN through the p2m.
pub fn pfn_to_mfn(pfn: u64) -> Option<u64> {
    if is_pvh() {
        return Some(pfn);
    }
    pv().ok()?.pfn_to_mfn(pfn)
}
