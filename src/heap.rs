//! Kernel heap: a fixed region in .bss under a linked-list allocator, so
//! `alloc` collections (grant free list, XenStore buffers) work. A later
//! memory manager can hand it more pages with `extend`.

use linked_list_allocator::LockedHeap;

/// Heap size; the region is zero-initialised .bss, mapped at boot.
pub const HEAP_SIZE: usize = 2 * 1024 * 1024;

#[repr(C, align(4096))]
struct Region([u8; HEAP_SIZE]);

static mut REGION: Region = Region([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hand the .bss region to the allocator. Call once, before any allocation.
pub fn init() {
    let start = &raw mut REGION as *mut u8;
    // SAFETY: REGION is only ever reached through this pointer, and `init`
    // runs once at boot (a second call would be caught by the allocator's
    // own state only partially, so the boot path calls it exactly once).
    unsafe { ALLOCATOR.lock().init(start, HEAP_SIZE) };
}

/// Bytes currently free in the heap.
pub fn free() -> usize {
    ALLOCATOR.lock().free()
}
