//! Kernel heap: linked-list allocators over up to [`MAX_REGIONS`] regions.
//! The first is a fixed region in .bss (usable before the memory manager
//! runs); once `mm` is up it registers a grow hook, and an allocation that
//! fits nowhere takes a contiguous run of pages from the frame allocator as
//! a new region. Regions are never given back.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};

use linked_list_allocator::Heap;
use spin::{Mutex, Once};

/// Size of the boot region; zero-initialised .bss, mapped at boot.
pub const HEAP_SIZE: usize = 256 * 1024;
/// Regions the heap can span.
pub const MAX_REGIONS: usize = 32;
/// Smallest region requested from the grow hook.
pub const GROW_MIN: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Region([u8; HEAP_SIZE]);

static mut REGION: Region = Region([0; HEAP_SIZE]);

/// Supplies a new region of at least the given size: `(start, len)`.
pub type GrowHook = fn(usize) -> Option<(*mut u8, usize)>;

struct Regions {
    heaps: [Heap; MAX_REGIONS],
    n: usize,
}

struct MultiHeap {
    regions: Mutex<Regions>,
    grow: Once<GrowHook>,
}

#[global_allocator]
static ALLOCATOR: MultiHeap = MultiHeap {
    regions: Mutex::new(Regions {
        heaps: [const { Heap::empty() }; MAX_REGIONS],
        n: 0,
    }),
    grow: Once::new(),
};

impl Regions {
    fn try_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.heaps[..self.n]
            .iter_mut()
            .find_map(|h| h.allocate_first_fit(layout).ok())
    }
}

// SAFETY: every region handed to a `Heap` is memory owned by the heap alone
// (the .bss region, or frames the frame allocator gave away for good);
// `dealloc` returns a block to the region that contains it, i.e. the one
// that allocated it.
unsafe impl GlobalAlloc for MultiHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut r = self.regions.lock();
        if let Some(p) = r.try_alloc(layout) {
            return p.as_ptr();
        }
        let (Some(grow), true) = (self.grow.get(), r.n < MAX_REGIONS) else {
            return null_mut();
        };
        // Room for the block, its alignment and the allocator's header.
        let want = (layout.size() + layout.align() + 64).max(GROW_MIN);
        let Some((start, len)) = grow(want) else {
            return null_mut();
        };
        let n = r.n;
        // SAFETY: the hook hands over `len` bytes at `start`, mapped RW and
        // used by nobody else, for good.
        unsafe { r.heaps[n].init(start, len) };
        r.n += 1;
        r.try_alloc(layout).map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut r = self.regions.lock();
        let n = r.n;
        if let Some(h) = r.heaps[..n]
            .iter_mut()
            .find(|h| h.bottom() <= ptr && ptr < h.top())
        {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc
            // contract) and lies in `h`, the region that allocated it.
            unsafe { h.deallocate(NonNull::new_unchecked(ptr), layout) };
        }
    }
}

/// Hand the .bss region to the allocator. Call once, before any allocation.
pub fn init() {
    let start = &raw mut REGION as *mut u8;
    let mut r = ALLOCATOR.regions.lock();
    if r.n == 0 {
        // SAFETY: REGION is only ever reached through this pointer, and the
        // `n == 0` check makes a second call a no-op.
        unsafe { r.heaps[0].init(start, HEAP_SIZE) };
        r.n = 1;
    }
}

/// Let the heap grow through `hook` (the memory manager calls this once).
pub fn set_grow_hook(hook: GrowHook) {
    ALLOCATOR.grow.call_once(|| hook);
}

/// Bytes currently free in the heap (all regions).
pub fn free() -> usize {
    let r = ALLOCATOR.regions.lock();
    r.heaps[..r.n].iter().map(|h| h.free()).sum()
}

/// Bytes the heap spans (all regions).
pub fn size() -> usize {
    let r = ALLOCATOR.regions.lock();
    r.heaps[..r.n].iter().map(|h| h.size()).sum()
}

/// Number of regions in use.
pub fn regions() -> usize {
    ALLOCATOR.regions.lock().n
}
