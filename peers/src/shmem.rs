//! A view of memory shared with another domain.
//!
//! The other side may change any byte at any time, so nothing here hands out
//! a `&T` into the page: indices are loaded and stored as atomics (a plain
//! `mov` on x86), bulk data is copied with volatile byte accesses, and
//! callers copy data out before they look at it. Offsets are
//! our own constants, so a bad offset is a bug in this crate and panics.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};

/// A borrowed window onto shared memory (a grant mapping or a gntalloc page).
#[derive(Clone, Copy)]
pub struct SharedMem<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _life: PhantomData<&'a ()>,
}

impl<'a> SharedMem<'a> {
    /// # Safety
    /// `ptr..ptr+len` must stay mapped, readable and writable for `'a`, and
    /// `ptr` must be 4-byte aligned. Other parties may write it concurrently.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        assert!(
            (ptr as usize).is_multiple_of(4),
            "shared memory must be 4-byte aligned"
        );
        Self {
            ptr: NonNull::new(ptr).expect("null shared memory"),
            len,
            _life: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, off: usize, size: usize) -> *mut u8 {
        assert!(
            off.checked_add(size).is_some_and(|end| end <= self.len),
            "shared access {off}+{size} out of {}",
            self.len
        );
        // SAFETY: in bounds of the mapping checked just above.
        unsafe { self.ptr.as_ptr().add(off) }
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked); the page is mapped for 'a
        // and only ever accessed atomically or volatilely, so an atomic view
        // of a shared word is sound even while the peer writes it.
        unsafe { AtomicU32::from_ptr(self.at(off, 4).cast::<u32>()) }
    }

    /// Aligned 32-bit load (relaxed atomic: one `mov` on x86, never torn).
    pub fn load_u32(&self, off: usize) -> u32 {
        self.word(off).load(Ordering::Relaxed)
    }

    /// Aligned 32-bit store (relaxed atomic).
    pub fn store_u32(&self, off: usize, v: u32) {
        self.word(off).store(v, Ordering::Relaxed)
    }

    /// Index load with acquire semantics (load, then `rmb`).
    pub fn load_u32_acquire(&self, off: usize) -> u32 {
        let v = self.load_u32(off);
        fence(Ordering::Acquire);
        v
    }

    /// Index store with release semantics (`wmb`, then store).
    pub fn store_u32_release(&self, off: usize, v: u32) {
        fence(Ordering::Release);
        self.store_u32(off, v);
    }

    fn byte(&self, off: usize) -> &AtomicU8 {
        // SAFETY: in bounds (checked); see `word`.
        unsafe { AtomicU8::from_ptr(self.at(off, 1)) }
    }

    pub fn load_u8(&self, off: usize) -> u8 {
        self.byte(off).load(Ordering::Relaxed)
    }

    pub fn store_u8(&self, off: usize, v: u8) {
        self.byte(off).store(v, Ordering::Relaxed)
    }

    /// Copy `buf.len()` bytes out of the shared memory, byte by byte volatile.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        let p = self.at(off, buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: p..p+buf.len() is in bounds (checked by `at`).
            *b = unsafe { p.add(i).read_volatile() };
        }
    }

    /// Copy `buf` into the shared memory, byte by byte volatile.
    pub fn write(&self, off: usize, buf: &[u8]) {
        let p = self.at(off, buf.len());
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: p..p+buf.len() is in bounds (checked by `at`).
            unsafe { p.add(i).write_volatile(*b) };
        }
    }

    /// A copy of the whole window.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.read(0, &mut v);
        v
    }
}

// SAFETY: a SharedMem is a window onto memory that is shared with another
// domain anyway; every access through it is atomic or volatile, and entry
// bytes are handed over with release/acquire fences on the indices. Sending
// the view to another thread adds nothing the other domain could not do.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as above; all methods take `&self` and do only such accesses.
unsafe impl Sync for SharedMem<'_> {}

/// Full barrier (`mb()`: `mfence` on x86), needed between publishing our
/// index and re-reading the other side's event index.
pub fn mb() {
    fence(Ordering::SeqCst);
}

/// A page-aligned heap page for host tests (stands in for a grant mapping).
#[cfg(test)]
pub(crate) struct TestPage(Box<[u64; 512]>);

#[cfg(test)]
impl TestPage {
    pub fn new() -> Self {
        Self(Box::new([0; 512]))
    }
    pub fn mem(&mut self) -> SharedMem<'_> {
        // SAFETY: the box lives as long as the borrow, is 8-aligned, 4096 bytes.
        unsafe { SharedMem::new(self.0.as_mut_ptr().cast(), 4096) }
    }
}
