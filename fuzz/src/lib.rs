//! Helpers shared by the fuzz targets: heap pages standing in for pages
//! shared with another domain, and a reader that turns the fuzzer's bytes
//! into the peer's moves (every read succeeds; an exhausted input reads as
//! zeros, so every input is a valid script).

use std::alloc::{alloc_zeroed, dealloc, Layout};

use xenfront::shared::{MemOwner, SharedMem, PAGE_SIZE};

/// Zeroed, page-aligned heap pages; views borrow them.
pub struct Pages {
    ptr: *mut u8,
    layout: Layout,
}

impl Pages {
    /// `n` zeroed pages.
    pub fn new(n: usize) -> Pages {
        let layout = Layout::from_size_align(n.max(1) * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Pages { ptr, layout }
    }

    /// A view of all the pages.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: the allocation lives until Drop, which cannot run while
        // `self` is borrowed; page-aligned; no reference into it is created.
        unsafe { SharedMem::from_raw(self.ptr, self.layout.size()) }
    }

    /// A view of page `i`.
    pub fn page(&self, i: usize) -> SharedMem<'_> {
        self.mem()
            .sub(i * PAGE_SIZE, PAGE_SIZE)
            .expect("page index")
    }
}

impl MemOwner for Pages {
    fn mem(&self) -> SharedMem<'_> {
        Pages::mem(self)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Reads the fuzzer's input front to back; past the end everything is 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// A bool.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A number in `0..n` (`n > 0`), from one byte if `n <= 256`.
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u32() as usize % n
        }
    }

    /// Up to `max` bytes: a one- or two-byte length, then that many bytes
    /// (fewer if the input ends).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = if max < 256 {
            self.u8() as usize
        } else {
            self.u16() as usize
        } % (max + 1);
        let n = want.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }

    /// A string of up to `max` bytes (invalid UTF-8 replaced).
    pub fn string(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// A u32 that is "interesting" for a ring index relative to `base`:
    /// near it (both sides), near the wrap, or anything.
    pub fn index_near(&mut self, base: u32, size: u32) -> u32 {
        match self.u8() % 4 {
            0 => base.wrapping_add(u32::from(self.u16()) % (size.saturating_mul(2).max(1) + 1)),
            1 => base.wrapping_sub(u32::from(self.u16()) % (size.max(1) + 1)),
            2 => base.wrapping_add(size).wrapping_add(u32::from(self.u8())),
            _ => self.u32(),
        }
    }
}
