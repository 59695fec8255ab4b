//! The one place that touches memory shared with another domain.
//!
//! A page granted to (or mapped from) another domain can change under our feet
//! at any moment, so Rust references into it (`&T`, `&[u8]`) would be unsound:
//! the compiler may assume the bytes behind a reference do not change. This
//! module therefore never hands out a reference into shared memory. Instead
//! [`SharedMem`] offers:
//!
//! * `read::<T>(offset) -> T` — a volatile *copy* of a plain wire struct
//!   (rust-vmm `read_obj` style); callers validate the copy, never the original;
//! * `write(offset, value)` and byte copies in/out;
//! * `u8`/`u16`/`u32` atomics at offsets for the producer/consumer indices and
//!   flag words (load = Acquire, store = Release, plus CAS / fetch_or / fetch_and);
//! * the three barriers of `io/ring.h`: [`mb`], [`rmb`], [`wmb`].
//!
//! Offsets are checked on every access; an out-of-range or misaligned offset is
//! a bug in *our* code (all offsets are derived from constants or masked
//! indices), never the peer's, and panics with a clear message.
//!
//! A view borrows whatever keeps its memory mapped: `SharedMem<'a>` is valid
//! for `'a`, and the owners of shared pages (a granted
//! [`SharedPage`](crate::mm::SharedPage), a
//! [`ForeignMapping`](crate::grant_table::ForeignMapping), …) implement
//! [`MemOwner`], whose `mem(&self) -> SharedMem<'_>` ties each view to a
//! borrow of the owner. Unmapping or freeing a page needs the owner by value,
//! so the compiler rejects any use of a view after that. A structure that
//! keeps both a page and access to it stores the owner and derives a view at
//! each use (a view is a pointer and a length). Pages mapped for the whole
//! life of the kernel (shared_info, the boot console and XenStore rings, the
//! grant table frames) are `SharedMem<'static>`, made by the one unsafe
//! constructor, [`SharedMem::from_raw`].
//!
//! All `unsafe` of the protocol layer lives in this file.

use core::marker::PhantomData;
use core::mem::{align_of, size_of, size_of_val};
use core::ptr::NonNull;
use core::sync::atomic::{self, AtomicU16, AtomicU32, AtomicU8, Ordering};

/// Size of a Xen page.
pub const PAGE_SIZE: usize = 4096;

/// Plain-old-data wire types: `Copy`, `repr(C)` or primitive, no padding
/// bytes, and **every** bit pattern is a valid value.
///
/// # Safety
/// Implementors guarantee that any sequence of `size_of::<Self>()` bytes is a
/// valid `Self` (no `bool`, `char`, enums, references, or niches) and that the
/// type contains no padding, so copying it from/to peer memory is sound.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! impl_pod {
    ($($t:ty),*) => { $(
        // SAFETY: primitive integers accept every bit pattern and have no padding.
        unsafe impl Pod for $t {}
    )* };
}
impl_pod!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, usize, isize);
// SAFETY: an array of Pod is Pod: no padding between elements of an array.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Declares a `#[repr(C)]` wire struct and implements [`Pod`] for it, with
/// compile-time proof that every field is `Pod` and that the struct has no
/// padding (its size equals the sum of its field sizes). Use explicit
/// `_pad` fields where the C layout has holes.
///
/// ```ignore
/// pod_struct! {
///     /// grant_entry_v1
///     pub struct GrantEntryV1 { pub flags: u16, pub domid: u16, pub frame: u32 }
/// }
/// ```
#[macro_export]
macro_rules! pod_struct {
    ($(#[$m:meta])* $vis:vis struct $name:ident {
        $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$m])*
        #[repr(C)]
        $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }
        const _: () = {
            const fn field_is_pod<T: $crate::shared::Pod>() {}
            $(field_is_pod::<$ty>();)*
            assert!(
                ::core::mem::size_of::<$name>() == 0 $(+ ::core::mem::size_of::<$ty>())*,
                "pod_struct: padding bytes"
            );
        };
        // SAFETY: repr(C), every field is Pod (checked above) and the size
        // equals the sum of the field sizes, so there are no padding bytes.
        unsafe impl $crate::shared::Pod for $name {}
    };
}

/// Full memory barrier (`xen_mb`): a real fence. Required between publishing
/// our index and re-reading the peer's event index (ring.h notify checks).
#[inline]
pub fn mb() {
    atomic::fence(Ordering::SeqCst);
}

/// Read barrier (`xen_rmb`): on x86 (TSO) loads are not reordered with other
/// loads, so a compiler fence suffices; elsewhere use a real fence.
#[inline]
pub fn rmb() {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    atomic::compiler_fence(Ordering::Acquire);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    atomic::fence(Ordering::Acquire);
}

/// Write barrier (`xen_wmb`): on x86 (TSO) stores are not reordered with other
/// stores, so a compiler fence suffices; elsewhere use a real fence.
#[inline]
pub fn wmb() {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    atomic::compiler_fence(Ordering::Release);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    atomic::fence(Ordering::Release);
}

// The `compile_fail` examples below name their error codes; rustdoc checks
// those only on a nightly toolchain (`RUSTC_BOOTSTRAP=1 cargo test -p
// xenfront --doc` does), so each sits next to a compiling twin.
/// A view of `len` bytes of memory shared with another domain (or, in host
/// tests, with another thread), valid for the lifetime `'a`.
///
/// Cloning a view, or taking a [`sub`](SharedMem::sub)-view, aliases the same
/// bytes; that is fine because every access is volatile or atomic, exactly as
/// the peer domain aliases it. Clones and sub-views keep the lifetime: no
/// view outlives what keeps the memory mapped.
///
/// A view borrows its memory, here a buffer of this program:
///
/// ```
/// use xenfront::shared::SharedMem;
///
/// let mut buf = vec![0u64; 512];
/// let v = SharedMem::from_words(&mut buf);
/// v.store_u32(0, 7);
/// assert_eq!(v.load_u32(0), 7);
/// drop(v);
/// drop(buf); // the memory goes away only after its last view
/// ```
///
/// so it cannot outlive it (`error[E0597]: buf does not live long enough`):
///
/// ```compile_fail,E0597
/// use xenfront::shared::SharedMem;
///
/// let v = {
///     let mut buf = vec![0u64; 512];
///     SharedMem::from_words(&mut buf)
/// };
/// v.load_u32(0);
/// ```
///
/// and its memory cannot be given up while the view is in use
/// (`error[E0505]: cannot move out of buf because it is borrowed`), just as
/// a [`ForeignMapping`](crate::grant_table::ForeignMapping) cannot be
/// unmapped, nor a [`SharedPage`](crate::mm::SharedPage) dropped, while a
/// view of it is alive:
///
/// ```compile_fail,E0505
/// use xenfront::shared::SharedMem;
///
/// let mut buf = vec![0u64; 512];
/// let v = SharedMem::from_words(&mut buf);
/// drop(buf);
/// v.load_u32(0);
/// ```
#[derive(Debug, Clone)]
pub struct SharedMem<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _mem: PhantomData<&'a [u8]>,
}

// SAFETY: SharedMem is a raw window on memory that is by construction shared
// with a concurrent peer; all accesses are volatile or atomic, so moving or
// sharing the view across threads adds no new hazard.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as above; `&SharedMem` only allows volatile/atomic accesses.
unsafe impl Sync for SharedMem<'_> {}

/// An owner of memory shared with a peer (a granted page, a mapping of the
/// peer's page, a host test buffer): it keeps the memory mapped while it
/// lives and hands out views that borrow it.
pub trait MemOwner {
    /// The view of the owned memory, valid while `self` is borrowed.
    fn mem(&self) -> SharedMem<'_>;
}

/// Atomic accessors for one integer width at a byte offset.
macro_rules! atomic_ops {
    ($t:ty, $atomic:ident, $load:ident, $store:ident, $cas:ident, $or:ident, $and:ident) => {
        /// Atomic load with `Acquire` ordering.
        #[inline]
        pub fn $load(&self, offset: usize) -> $t {
            self.$atomic(offset).load(Ordering::Acquire)
        }
        /// Atomic store with `Release` ordering.
        #[inline]
        pub fn $store(&self, offset: usize, v: $t) {
            self.$atomic(offset).store(v, Ordering::Release)
        }
        /// Atomic compare-and-swap (SeqCst, a `lock cmpxchg` on x86).
        /// Returns `Ok(previous)` on success, `Err(actual)` on mismatch.
        #[inline]
        pub fn $cas(&self, offset: usize, current: $t, new: $t) -> Result<$t, $t> {
            self.$atomic(offset)
                .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
        }
        /// Atomic OR (SeqCst); returns the previous value.
        #[inline]
        pub fn $or(&self, offset: usize, v: $t) -> $t {
            self.$atomic(offset).fetch_or(v, Ordering::SeqCst)
        }
        /// Atomic AND (SeqCst); returns the previous value.
        #[inline]
        pub fn $and(&self, offset: usize, v: $t) -> $t {
            self.$atomic(offset).fetch_and(v, Ordering::SeqCst)
        }
    };
}

impl<'a> SharedMem<'a> {
    /// Creates a view over `len` bytes at `ptr`, valid for `'a`.
    ///
    /// # Safety
    /// The caller guarantees that, for all of `'a` (so for as long as this
    /// value or any clone or sub-view of it exists):
    /// * `ptr..ptr+len` stays mapped, readable and writable, and is not freed
    ///   or unmapped (for a granted page: not returned to the allocator, see
    ///   `grant_table` deferred reclaim). An owner that can unmap the memory
    ///   returns views borrowing itself (`fn mem(&self) -> SharedMem<'_>`);
    ///   `'static` is for memory mapped for the rest of the kernel's life;
    /// * `ptr` is at least 8-byte aligned (pages are 4096-aligned);
    /// * no Rust reference (`&`/`&mut`) to these bytes exists anywhere in this
    ///   domain during `'a`; all local access goes through `SharedMem`.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> SharedMem<'a> {
        let ptr = NonNull::new(ptr).expect("SharedMem::from_raw: null pointer");
        assert!(
            (ptr.as_ptr() as usize).is_multiple_of(8),
            "SharedMem::from_raw: pointer not 8-byte aligned"
        );
        SharedMem {
            ptr,
            len,
            _mem: PhantomData,
        }
    }

    /// A view of a buffer of this domain (a host test's stand-in for a
    /// shared page): the exclusive borrow keeps every other access out for
    /// as long as the view, or any clone or sub-view of it, lives. `u64`
    /// words give the 8-byte alignment views require.
    pub fn from_words(buf: &'a mut [u64]) -> SharedMem<'a> {
        let len = size_of_val(buf);
        // SAFETY: `buf` is live, readable and writable for 'a and 8-byte
        // aligned, and the `&'a mut` borrow, given up to the view, rules out
        // any other reference to it during 'a.
        unsafe { SharedMem::from_raw(buf.as_mut_ptr().cast(), len) }
    }

    /// Length of the view in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address (for the kernel's virt→frame translation; never dereference).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// A view of `len` bytes starting at `offset`, or `None` if out of range.
    /// `offset` must keep the 8-byte alignment guarantee (panics otherwise).
    pub fn sub(&self, offset: usize, len: usize) -> Option<SharedMem<'a>> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        assert!(
            offset.is_multiple_of(8),
            "SharedMem::sub: offset not 8-aligned"
        );
        // SAFETY: in bounds of our own view (checked above), and the base
        // pointer is derived from a valid view, so non-null.
        let ptr = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset)) };
        Some(SharedMem {
            ptr,
            len,
            _mem: PhantomData,
        })
    }

    /// Checks `offset..offset+size` is inside the view; panics otherwise
    /// (an internal bug, offsets never come from the peer unmasked).
    #[inline]
    #[track_caller]
    fn check(&self, offset: usize, size: usize) -> *mut u8 {
        match offset.checked_add(size) {
            Some(end) if end <= self.len => {}
            _ => panic!(
                "SharedMem access out of bounds: offset {offset} size {size} len {}",
                self.len
            ),
        }
        // SAFETY: offset + size <= len, so the result stays inside (or one
        // past the end of) the region described by the from_raw contract.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    #[inline]
    #[track_caller]
    fn check_aligned(&self, offset: usize, size: usize) -> *mut u8 {
        let p = self.check(offset, size);
        assert!(
            (p as usize).is_multiple_of(size),
            "SharedMem atomic at misaligned offset {offset}"
        );
        p
    }

    /// Volatile copy of a `T` at `offset`. The result is a private copy:
    /// validate it, and never re-read the shared original for the same field.
    #[track_caller]
    pub fn read<T: Pod>(&self, offset: usize) -> T {
        let p = self.check(offset, size_of::<T>());
        if (p as usize).is_multiple_of(align_of::<T>()) {
            // SAFETY: in bounds and aligned; T is Pod so any bytes are valid.
            unsafe { core::ptr::read_volatile(p.cast::<T>()) }
        } else {
            let mut out = core::mem::MaybeUninit::<T>::uninit();
            let dst = out.as_mut_ptr().cast::<u8>();
            for i in 0..size_of::<T>() {
                // SAFETY: i < size_of::<T>() keeps both accesses in bounds.
                unsafe { dst.add(i).write(core::ptr::read_volatile(p.add(i))) };
            }
            // SAFETY: every byte was initialised above and T is Pod.
            unsafe { out.assume_init() }
        }
    }

    /// Volatile write of a `T` at `offset`.
    #[track_caller]
    pub fn write<T: Pod>(&self, offset: usize, value: T) {
        let p = self.check(offset, size_of::<T>());
        if (p as usize).is_multiple_of(align_of::<T>()) {
            // SAFETY: in bounds and aligned for T.
            unsafe { core::ptr::write_volatile(p.cast::<T>(), value) };
        } else {
            let src = (&value as *const T).cast::<u8>();
            for i in 0..size_of::<T>() {
                // SAFETY: i < size_of::<T>(); T is Pod so it has no padding
                // and all its bytes are initialised.
                unsafe { core::ptr::write_volatile(p.add(i), src.add(i).read()) };
            }
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` out of shared memory.
    #[track_caller]
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let p = self.check(offset, dst.len());
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: i < dst.len(), checked in bounds above.
            *b = unsafe { core::ptr::read_volatile(p.add(i)) };
        }
    }

    /// Copies `src` into shared memory starting at `offset`.
    #[track_caller]
    pub fn copy_in(&self, offset: usize, src: &[u8]) {
        let p = self.check(offset, src.len());
        for (i, b) in src.iter().enumerate() {
            // SAFETY: i < src.len(), checked in bounds above.
            unsafe { core::ptr::write_volatile(p.add(i), *b) };
        }
    }

    /// Fills `len` bytes at `offset` with `byte`.
    #[track_caller]
    pub fn fill(&self, offset: usize, len: usize, byte: u8) {
        let p = self.check(offset, len);
        for i in 0..len {
            // SAFETY: i < len, checked in bounds above.
            unsafe { core::ptr::write_volatile(p.add(i), byte) };
        }
    }

    #[inline]
    #[track_caller]
    fn atomic_u8(&self, offset: usize) -> &AtomicU8 {
        let p = self.check_aligned(offset, 1);
        // SAFETY: in bounds and aligned; the atomic reference is used for one
        // operation only and atomics tolerate concurrent peer modification.
        unsafe { AtomicU8::from_ptr(p) }
    }

    #[inline]
    #[track_caller]
    fn atomic_u16(&self, offset: usize) -> &AtomicU16 {
        let p = self.check_aligned(offset, 2);
        // SAFETY: in bounds and 2-aligned (checked); see atomic_u8.
        unsafe { AtomicU16::from_ptr(p.cast()) }
    }

    #[inline]
    #[track_caller]
    fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        let p = self.check_aligned(offset, 4);
        // SAFETY: in bounds and 4-aligned (checked); see atomic_u8.
        unsafe { AtomicU32::from_ptr(p.cast()) }
    }

    atomic_ops!(
        u8,
        atomic_u8,
        load_u8,
        store_u8,
        cas_u8,
        fetch_or_u8,
        fetch_and_u8
    );
    atomic_ops!(
        u16,
        atomic_u16,
        load_u16,
        store_u16,
        cas_u16,
        fetch_or_u16,
        fetch_and_u16
    );
    atomic_ops!(
        u32,
        atomic_u32,
        load_u32,
        store_u32,
        cas_u32,
        fetch_or_u32,
        fetch_and_u32
    );
}

/// Host-test helper: zeroed, page-aligned heap pages standing in for a
/// granted page. Views borrow the `TestPages` (threads that use them are
/// scoped, or share the pages through an `Arc`).
#[cfg(test)]
pub(crate) struct TestPages {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

// SAFETY: the allocation is reached only through `SharedMem` views (volatile
// or atomic, themselves Send and Sync) and freed by the single owner's Drop.
#[cfg(test)]
unsafe impl Send for TestPages {}
// SAFETY: as above; `&TestPages` only hands out views.
#[cfg(test)]
unsafe impl Sync for TestPages {}

#[cfg(test)]
impl TestPages {
    pub(crate) fn new(pages: usize) -> TestPages {
        let layout = std::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        TestPages { ptr, layout }
    }

    /// A view of all pages, borrowing `self`.
    pub(crate) fn mem(&self) -> SharedMem<'_> {
        // SAFETY: the allocation is live until Drop, which cannot run while
        // `self` is borrowed; page-aligned; no reference to it is ever created.
        unsafe { SharedMem::from_raw(self.ptr, self.layout.size()) }
    }
}

#[cfg(test)]
impl MemOwner for TestPages {
    fn mem(&self) -> SharedMem<'_> {
        TestPages::mem(self)
    }
}

#[cfg(test)]
impl Drop for TestPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::pod_struct! {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Wire {
            a: u32,
            b: u16,
            c: u16,
            d: u64,
        }
    }

    #[test]
    fn read_write_roundtrip_aligned_and_unaligned() {
        let p = TestPages::new(1);
        let m = p.mem();
        let w = Wire {
            a: 1,
            b: 2,
            c: 3,
            d: 0x1122_3344_5566_7788,
        };
        m.write(64, w);
        assert_eq!(m.read::<Wire>(64), w);
        m.write(3, w);
        assert_eq!(m.read::<Wire>(3), w);
        assert_eq!(m.read::<u8>(3), 1);
    }

    #[test]
    fn atomics() {
        let p = TestPages::new(1);
        let m = p.mem();
        m.store_u32(8, 5);
        assert_eq!(m.load_u32(8), 5);
        assert_eq!(m.cas_u32(8, 5, 6), Ok(5));
        assert_eq!(m.cas_u32(8, 5, 7), Err(6));
        assert_eq!(m.fetch_or_u16(16, 0x18), 0);
        assert_eq!(m.fetch_and_u16(16, !0x8), 0x18);
        assert_eq!(m.load_u16(16), 0x10);
        assert_eq!(m.fetch_or_u8(21, 2), 0);
        assert_eq!(m.load_u8(21), 2);
        assert_eq!(m.cas_u8(21, 2, 0), Ok(2));
    }

    #[test]
    fn bytes_and_subviews() {
        let p = TestPages::new(2);
        let m = p.mem();
        assert_eq!(m.len(), 8192);
        m.copy_in(4094, b"abcd");
        let s = m.sub(4096, 4096).unwrap();
        let mut out = [0u8; 2];
        s.copy_out(0, &mut out);
        assert_eq!(&out, b"cd");
        assert!(m.sub(4096, 4097).is_none());
        assert!(m.sub(usize::MAX, 2).is_none());
        m.fill(0, 8, 0xff);
        assert_eq!(m.read::<u64>(0), u64::MAX);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics() {
        let p = TestPages::new(1);
        p.mem().read::<u32>(4094);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_atomic_panics() {
        let p = TestPages::new(1);
        p.mem().load_u32(2);
    }
}
