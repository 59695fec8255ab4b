//! Grant table v1 logic (`xen/include/public/grant_table.h`).
//!
//! The table is an array of 8-byte `grant_entry_v1 { flags: u16, domid: u16,
//! frame: u32 }`, 512 per 4 KiB frame, shared with Xen. A grant reference is
//! an index into it. This module owns the free list, growth, granting and
//! revocation; the kernel implements [`GrantBackend`] to obtain table frames
//! (`GNTTABOP_setup_table` + mapping on PV, `XENMEM_add_to_physmap` on PVH).
//!
//! Protocol rules implemented here (grant_table.h, "Grant-table usage"):
//! * Refs `0..GNTTAB_NR_RESERVED_ENTRIES` (8) belong to the toolstack (0 is
//!   the console ring, 1 the xenstore ring) and are never handed out.
//! * Grant: write `domid` and `frame`, **wmb**, then `flags =
//!   GTF_permit_access | (readonly ? GTF_readonly : 0)` — the peer must never
//!   observe the permit bit with a stale frame.
//! * Revoke: read `flags`; if `GTF_reading | GTF_writing` is set the peer still
//!   has the page mapped and the entry is in use; otherwise
//!   `cmpxchg(flags, old, 0)` and retry on mismatch (Xen may set the in-use
//!   bits between the read and the CAS). Only after success may the page be
//!   reused.
//! * A page whose grant cannot be revoked yet goes on a deferred list with
//!   its owner's token: the ref is not reused and the token (i.e. the page) is
//!   not handed back until a later [`GrantTable::poll_deferred`] succeeds.

extern crate alloc;

use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use crate::shared::{wmb, SharedMem, PAGE_SIZE};
use crate::xen_abi::grant_table::{GrantFlags, DOMID, FLAGS, FRAME, GRANT_ENTRY_SIZE};

/// v1 entries per 4 KiB table frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / GRANT_ENTRY_SIZE) as u32;
/// `GNTTAB_NR_RESERVED_ENTRIES`.
pub const NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`.
pub const RESERVED_CONSOLE: GrantRef = GrantRef(0);
/// `GNTTAB_RESERVED_XENSTORE`.
pub const RESERVED_XENSTORE: GrantRef = GrantRef(1);

/// `GNTTABOP_*` command numbers for `grant_table_op`.
pub mod op {
    /// `GNTTABOP_map_grant_ref`: map a peer's grant.
    pub const MAP_GRANT_REF: u32 = 0;
    /// `GNTTABOP_unmap_grant_ref`: undo a map.
    pub const UNMAP_GRANT_REF: u32 = 1;
    /// `GNTTABOP_setup_table`: size our table and get its frames.
    pub const SETUP_TABLE: u32 = 2;
    /// `GNTTABOP_dump_table`: dump the table to Xen's console (debug).
    pub const DUMP_TABLE: u32 = 3;
    /// `GNTTABOP_transfer`: transfer a page to another domain.
    pub const TRANSFER: u32 = 4;
    /// `GNTTABOP_copy`: copy between grants / local frames.
    pub const COPY: u32 = 5;
    /// `GNTTABOP_query_size`: current and maximum table frames.
    pub const QUERY_SIZE: u32 = 6;
    /// `GNTTABOP_unmap_and_replace`: unmap, put another frame there.
    pub const UNMAP_AND_REPLACE: u32 = 7;
    /// `GNTTABOP_set_version`: choose grant table v1 or v2.
    pub const SET_VERSION: u32 = 8;
    /// `GNTTABOP_get_status_frames`: v2 status frames.
    pub const GET_STATUS_FRAMES: u32 = 9;
    /// `GNTTABOP_get_version`: which version is in use.
    pub const GET_VERSION: u32 = 10;
}

bitflags::bitflags! {
    /// `GNTMAP_*` (grant_table.h): [`GnttabMapGrantRef::flags`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        /// `GNTMAP_device_map`: map for device access (bus address).
        const DEVICE_MAP = 1 << 0;
        /// `GNTMAP_host_map`: map at `host_addr`.
        const HOST_MAP = 1 << 1;
        /// `GNTMAP_readonly`: map read-only.
        const READONLY = 1 << 2;
        /// `GNTMAP_application_map`: map for user space (PV).
        const APPLICATION_MAP = 1 << 3;
        /// `GNTMAP_contains_pte`: `host_addr` is the address of a PTE to
        /// fill.
        const CONTAINS_PTE = 1 << 4;
    }
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// A grant reference (index into the grant table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);

/// Grant table errors (all recoverable; nothing here panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Every entry is in use and the table is at its maximum size: `in_use`
    /// entries granted, `deferred` of them revoked but still mapped by a
    /// peer (a peer that maps and never unmaps shows up here), `frames`
    /// table frames (Xen's limit for this domain).
    Exhausted {
        /// Entries granted and not revoked.
        in_use: usize,
        /// Entries revoked but still mapped by a peer.
        deferred: usize,
        /// Table frames in use, the maximum.
        frames: u32,
    },
    /// The peer still has the frame mapped (`GTF_reading`/`GTF_writing`).
    InUse(GrantRef),
    /// The reference is outside the table or reserved.
    InvalidRef(GrantRef),
    /// The reference is not currently granted by us (double end_access?).
    NotGranted(GrantRef),
    /// v1 entries hold a 32-bit frame number.
    FrameTooLarge(u64),
    /// The backend could not grow the table (hypercall error code).
    GrowFailed(i32),
    /// The backend returned frame views of the wrong number or size.
    BadFrameView,
}

/// The kernel side of the grant table: supplies mapped table frames, as
/// views valid for `'a` (the kernel's frames stay mapped: `'static`).
pub trait GrantBackend<'a> {
    /// Upper bound on table frames (`gnttab_query_size.max_nr_frames`).
    fn max_frames(&self) -> u32;
    /// Make table frames `old_nr_frames..new_nr_frames` available (PV:
    /// `GNTTABOP_setup_table` then map the returned MFNs RW; PVH:
    /// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx)` per frame) and
    /// return one 4096-byte view per *new* frame, in index order.
    fn grow(
        &mut self,
        old_nr_frames: u32,
        new_nr_frames: u32,
    ) -> Result<Vec<SharedMem<'a>>, GrantError>;
}

/// Outcome of [`GrantTable::revoke_or_defer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Revoke<P> {
    /// Access ended; the page may be reused now.
    Done(P),
    /// The peer still maps it; the ref and page are parked until
    /// [`GrantTable::poll_deferred`] hands the token back.
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Reserved,
    Free,
    Granted,
    Deferred,
}

/// Grant table v1 with its own free list. `P` is the caller's page token
/// (e.g. a page handle) held on the deferred-reclaim list.
pub struct GrantTable<'a, B: GrantBackend<'a>, P = ()> {
    backend: B,
    frames: Vec<SharedMem<'a>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    deferred: Vec<(GrantRef, P)>,
    in_use: usize,
}

/// CAS attempts in `end_access` before reporting `InUse` (bounded loop:
/// a peer flipping bits forever cannot hang us).
const END_ACCESS_RETRIES: usize = 16;

impl<'a, B: GrantBackend<'a>, P> GrantTable<'a, B, P> {
    /// Creates the table with `initial_frames` frames (≥ 1).
    pub fn new(backend: B, initial_frames: u32) -> Result<Self, GrantError> {
        let mut t = GrantTable {
            backend,
            frames: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            deferred: Vec::new(),
            in_use: 0,
        };
        t.grow_to(initial_frames.max(1))?;
        Ok(t)
    }

    /// Current number of table frames.
    pub fn nr_frames(&self) -> u32 {
        self.frames.len() as u32
    }

    /// Entries currently granted (not counting deferred ones).
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Entries parked on the deferred-reclaim list.
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Entries on the free list (usable without growing).
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// The backend (for the kernel's own bookkeeping).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The exhaustion error, with the counts that explain it.
    fn exhausted(&self) -> GrantError {
        GrantError::Exhausted {
            in_use: self.in_use(),
            deferred: self.deferred(),
            frames: self.nr_frames(),
        }
    }

    fn grow_to(&mut self, new_nr: u32) -> Result<(), GrantError> {
        let old = self.nr_frames();
        let new_nr = new_nr.min(self.backend.max_frames());
        if new_nr <= old {
            return Err(self.exhausted());
        }
        let views = self.backend.grow(old, new_nr)?;
        if views.len() != (new_nr - old) as usize || views.iter().any(|v| v.len() < PAGE_SIZE) {
            return Err(GrantError::BadFrameView);
        }
        self.frames.extend(views);
        let first = old * ENTRIES_PER_FRAME;
        let last = new_nr * ENTRIES_PER_FRAME;
        for r in first..last {
            self.slots.push(if r < NR_RESERVED_ENTRIES {
                Slot::Reserved
            } else {
                Slot::Free
            });
        }
        // Push in reverse so that low refs are handed out first.
        self.free
            .extend((first.max(NR_RESERVED_ENTRIES)..last).rev());
        Ok(())
    }

    fn entry(&self, r: GrantRef) -> (&SharedMem<'a>, usize) {
        let f = (r.0 / ENTRIES_PER_FRAME) as usize;
        let off = (r.0 % ENTRIES_PER_FRAME) as usize * GRANT_ENTRY_SIZE;
        (&self.frames[f], off)
    }

    fn slot(&self, r: GrantRef) -> Result<Slot, GrantError> {
        match self.slots.get(r.0 as usize) {
            None | Some(Slot::Reserved) => Err(GrantError::InvalidRef(r)),
            Some(s) => Ok(*s),
        }
    }

    /// Grants `domid` access to `frame` (MFN on PV, GFN on PVH). Grows the
    /// table one frame at a time up to the backend's maximum;
    /// `Err(Exhausted)` when full.
    pub fn grant_access(
        &mut self,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let frame32 = u32::try_from(frame).map_err(|_| GrantError::FrameTooLarge(frame))?;
        if self.free.is_empty() {
            self.grow_to(self.nr_frames() + 1)?;
        }
        let r = match self.free.pop() {
            Some(r) => GrantRef(r),
            None => return Err(self.exhausted()),
        };
        let (mem, off) = self.entry(r);
        mem.write::<u16>(off + DOMID, domid);
        mem.write::<u32>(off + FRAME, frame32);
        wmb(); // domid/frame visible before the permit bit
        let flags = GrantFlags::PERMIT_ACCESS
            | if readonly {
                GrantFlags::READONLY
            } else {
                GrantFlags::empty()
            };
        mem.store_u16(off + FLAGS, flags.bits());
        self.slots[r.0 as usize] = Slot::Granted;
        self.in_use += 1;
        Ok(r)
    }

    /// `gnttab_end_foreign_access_ref` (v1): clear the entry unless the peer
    /// has it mapped. Does not change our bookkeeping.
    fn try_end(&self, r: GrantRef) -> Result<(), GrantError> {
        let (mem, off) = self.entry(r);
        let mut flags = mem.load_u16(off + FLAGS);
        for _ in 0..END_ACCESS_RETRIES {
            if GrantFlags::from_bits_retain(flags)
                .intersects(GrantFlags::READING | GrantFlags::WRITING)
            {
                return Err(GrantError::InUse(r));
            }
            match mem.cas_u16(off + FLAGS, flags, 0) {
                Ok(_) => return Ok(()),
                Err(now) => flags = now, // Xen changed it under us: re-check
            }
        }
        Err(GrantError::InUse(r))
    }

    /// Ends access to a granted ref and returns it to the free list.
    /// `Err(InUse)` if the peer still maps it (the grant stays valid; retry
    /// later or use [`revoke_or_defer`](Self::revoke_or_defer)).
    pub fn end_access(&mut self, r: GrantRef) -> Result<(), GrantError> {
        if self.slot(r)? != Slot::Granted {
            return Err(GrantError::NotGranted(r));
        }
        self.try_end(r)?;
        self.slots[r.0 as usize] = Slot::Free;
        self.free.push(r.0);
        self.in_use -= 1;
        Ok(())
    }

    /// Ends access now if possible (`Revoke::Done(page)`), else parks the ref
    /// and `page` on the deferred list (`Revoke::Deferred`): neither is reused
    /// until [`poll_deferred`](Self::poll_deferred) returns the page.
    pub fn revoke_or_defer(&mut self, r: GrantRef, page: P) -> Result<Revoke<P>, GrantError> {
        match self.end_access(r) {
            Ok(()) => Ok(Revoke::Done(page)),
            Err(GrantError::InUse(_)) => {
                self.slots[r.0 as usize] = Slot::Deferred;
                self.in_use -= 1;
                self.deferred.push((r, page));
                Ok(Revoke::Deferred)
            }
            Err(e) => Err(e),
        }
    }

    /// Retries every deferred revocation once; returns the page tokens whose
    /// grants are now ended (their refs go back to the free list).
    pub fn poll_deferred(&mut self) -> Vec<P> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.deferred.len() {
            let r = self.deferred[i].0;
            if self.try_end(r).is_ok() {
                let (_, page) = self.deferred.swap_remove(i);
                self.slots[r.0 as usize] = Slot::Free;
                self.free.push(r.0);
                done.push(page);
            } else {
                i += 1;
            }
        }
        done
    }
}

// ---------------------------------------------------------------------------
// Wire structs for grant_table_op (layouts from grant_table.h, x86_64).

crate::pod_struct! {
    /// `gnttab_map_grant_ref` (GNTTABOP_map_grant_ref).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GnttabMapGrantRef {
        /// PV: virtual address; PVH: guest-physical address of the target page.
        pub host_addr: u64,
        /// `GNTMAP_*` ([`MapFlags`] bits).
        pub flags: u32,
        /// The peer's grant reference.
        pub ref_: u32,
        /// The granting domain.
        pub dom: u16,
        /// OUT: GNTST_*.
        pub status: i16,
        /// OUT: handle for unmap.
        pub handle: u32,
        /// OUT.
        pub dev_bus_addr: u64,
    }
}

crate::pod_struct! {
    /// `gnttab_unmap_grant_ref` (GNTTABOP_unmap_grant_ref).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GnttabUnmapGrantRef {
        /// The `host_addr` the grant was mapped at.
        pub host_addr: u64,
        /// The `dev_bus_addr` returned by the map (0 without a device map).
        pub dev_bus_addr: u64,
        /// The handle returned by the map.
        pub handle: u32,
        /// OUT: GNTST_*.
        pub status: i16,
        /// Padding to the C size.
        pub _pad: u16,
    }
}

crate::pod_struct! {
    /// `gnttab_setup_table` (GNTTABOP_setup_table).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GnttabSetupTable {
        /// The table's domain (`DOMID_SELF`).
        pub dom: u16,
        /// Padding (C alignment of `nr_frames`).
        pub _pad0: u16,
        /// Frames wanted (the table grows to this size).
        pub nr_frames: u32,
        /// OUT: GNTST_*.
        pub status: i16,
        /// Padding (C alignment of `frame_list`).
        pub _pad1: [u16; 3],
        /// Guest handle: address of a `u64[nr_frames]` array receiving frames.
        pub frame_list: u64,
    }
}

crate::pod_struct! {
    /// `gnttab_query_size` (GNTTABOP_query_size).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GnttabQuerySize {
        /// The table's domain (`DOMID_SELF`).
        pub dom: u16,
        /// Padding (C alignment of `nr_frames`).
        pub _pad0: u16,
        /// OUT: frames in the table now.
        pub nr_frames: u32,
        /// OUT: most frames the table may grow to.
        pub max_nr_frames: u32,
        /// OUT: GNTST_*.
        pub status: i16,
        /// Padding to the C size.
        pub _pad1: u16,
    }
}

const _: () = {
    assert!(size_of::<GnttabMapGrantRef>() == 32);
    assert!(offset_of!(GnttabMapGrantRef, flags) == 8);
    assert!(offset_of!(GnttabMapGrantRef, ref_) == 12);
    assert!(offset_of!(GnttabMapGrantRef, dom) == 16);
    assert!(offset_of!(GnttabMapGrantRef, status) == 18);
    assert!(offset_of!(GnttabMapGrantRef, handle) == 20);
    assert!(offset_of!(GnttabMapGrantRef, dev_bus_addr) == 24);

    assert!(size_of::<GnttabUnmapGrantRef>() == 24);
    assert!(offset_of!(GnttabUnmapGrantRef, dev_bus_addr) == 8);
    assert!(offset_of!(GnttabUnmapGrantRef, handle) == 16);
    assert!(offset_of!(GnttabUnmapGrantRef, status) == 20);

    assert!(size_of::<GnttabSetupTable>() == 24);
    assert!(offset_of!(GnttabSetupTable, nr_frames) == 4);
    assert!(offset_of!(GnttabSetupTable, status) == 8);
    assert!(offset_of!(GnttabSetupTable, frame_list) == 16);

    assert!(size_of::<GnttabQuerySize>() == 16);
    assert!(offset_of!(GnttabQuerySize, nr_frames) == 4);
    assert!(offset_of!(GnttabQuerySize, max_nr_frames) == 8);
    assert!(offset_of!(GnttabQuerySize, status) == 12);

    assert!(MapFlags::HOST_MAP.bits() == 2);
    assert!(MapFlags::READONLY.bits() == 4);
};

/// Non-zero `GNTST_*` per-op status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GntStatusError {
    /// `GNTST_general_error` (-1): general undefined error.
    GeneralError,
    /// `GNTST_bad_domain` (-2): unrecognised domain id.
    BadDomain,
    /// `GNTST_bad_gntref` (-3): unrecognised or inappropriate gntref.
    BadGntref,
    /// `GNTST_bad_handle` (-4): unrecognised or inappropriate handle.
    BadHandle,
    /// `GNTST_bad_virt_addr` (-5): inappropriate virtual address to map.
    BadVirtAddr,
    /// `GNTST_bad_dev_addr` (-6): inappropriate device address to unmap.
    BadDevAddr,
    /// `GNTST_no_device_space` (-7): out of space in I/O MMU.
    NoDeviceSpace,
    /// `GNTST_permission_denied` (-8): not enough privilege for operation.
    PermissionDenied,
    /// `GNTST_bad_page` (-9): specified page was invalid for op.
    BadPage,
    /// `GNTST_bad_copy_arg` (-10): copy arguments cross page boundary.
    BadCopyArg,
    /// `GNTST_address_too_big` (-11): transfer page address too large.
    AddressTooBig,
    /// `GNTST_eagain` (-12): operation not done; try again.
    Eagain,
    /// `GNTST_no_space` (-13): out of space (handles etc).
    NoSpace,
    /// Any other negative status.
    Unknown(i16),
}

impl GntStatusError {
    /// Decodes a `GNTST_*` status: `Ok(())` for `GNTST_okay` (0).
    pub fn check(status: i16) -> Result<(), GntStatusError> {
        use GntStatusError::*;
        Err(match status {
            0 => return Ok(()),
            -1 => GeneralError,
            -2 => BadDomain,
            -3 => BadGntref,
            -4 => BadHandle,
            -5 => BadVirtAddr,
            -6 => BadDevAddr,
            -7 => NoDeviceSpace,
            -8 => PermissionDenied,
            -9 => BadPage,
            -10 => BadCopyArg,
            -11 => AddressTooBig,
            -12 => Eagain,
            -13 => NoSpace,
            other => Unknown(other),
        })
    }

    /// The raw `GNTST_*` value.
    pub fn code(self) -> i16 {
        use GntStatusError::*;
        match self {
            GeneralError => -1,
            BadDomain => -2,
            BadGntref => -3,
            BadHandle => -4,
            BadVirtAddr => -5,
            BadDevAddr => -6,
            NoDeviceSpace => -7,
            PermissionDenied => -8,
            BadPage => -9,
            BadCopyArg => -10,
            AddressTooBig => -11,
            Eagain => -12,
            NoSpace => -13,
            Unknown(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::TestPages;
    use crate::xen_abi::grant_table::GrantEntryV1;

    /// Heap-backed stand-in for Xen's table frames: `max` preallocated
    /// pages, handed out as the table grows.
    struct FakeXen<'a> {
        pages: &'a [TestPages],
        grows: u32,
    }

    fn pages(n: usize) -> Vec<TestPages> {
        (0..n).map(|_| TestPages::new(1)).collect()
    }

    impl<'a> FakeXen<'a> {
        fn new(pages: &'a [TestPages]) -> Self {
            FakeXen { pages, grows: 0 }
        }
    }

    impl<'a> GrantBackend<'a> for FakeXen<'a> {
        fn max_frames(&self) -> u32 {
            self.pages.len() as u32
        }
        fn grow(&mut self, old: u32, new: u32) -> Result<Vec<SharedMem<'a>>, GrantError> {
            assert!(new <= self.max_frames() && old < new);
            self.grows += 1;
            Ok(self.pages[old as usize..new as usize]
                .iter()
                .map(|p| p.mem())
                .collect())
        }
    }

    fn entry(pages: &[TestPages], r: GrantRef) -> (SharedMem<'_>, usize) {
        let m = pages[(r.0 / ENTRIES_PER_FRAME) as usize].mem();
        (m, (r.0 % ENTRIES_PER_FRAME) as usize * GRANT_ENTRY_SIZE)
    }

    #[test]
    fn grant_writes_entry_and_skips_reserved() {
        let p = pages(4);
        let mut t: GrantTable<_> = GrantTable::new(FakeXen::new(&p), 1).unwrap();
        assert_eq!(t.free(), 512 - 8);
        let r = t.grant_access(0, 0x1234_5678, true).unwrap();
        assert_eq!(r, GrantRef(8));
        let r2 = t.grant_access(3, 7, false).unwrap();
        assert_eq!(r2, GrantRef(9));
        assert_eq!(t.in_use(), 2);
        assert_eq!(
            t.grant_access(0, 1 << 32, false),
            Err(GrantError::FrameTooLarge(1 << 32))
        );
        for bad in [
            RESERVED_CONSOLE,
            RESERVED_XENSTORE,
            GrantRef(7),
            GrantRef(512),
        ] {
            assert_eq!(t.end_access(bad), Err(GrantError::InvalidRef(bad)));
        }
        assert_eq!(
            t.end_access(GrantRef(10)),
            Err(GrantError::NotGranted(GrantRef(10)))
        );
        let (m, off) = entry(&p, GrantRef(8));
        assert_eq!(
            m.read::<GrantEntryV1>(off),
            GrantEntryV1 {
                flags: (GrantFlags::PERMIT_ACCESS | GrantFlags::READONLY).bits(),
                domid: 0,
                frame: 0x1234_5678
            }
        );
        let (m, off) = entry(&p, GrantRef(9));
        assert_eq!(
            m.read::<GrantEntryV1>(off),
            GrantEntryV1 {
                flags: 1,
                domid: 3,
                frame: 7
            }
        );
        // Reserved entries untouched.
        assert_eq!(m.read::<[u64; 8]>(0), [0; 8]);
    }

    #[test]
    fn free_list_reuse_and_double_end() {
        let p = pages(1);
        let mut t: GrantTable<_> = GrantTable::new(FakeXen::new(&p), 1).unwrap();
        let r = t.grant_access(1, 1, false).unwrap();
        t.end_access(r).unwrap();
        assert_eq!(t.end_access(r), Err(GrantError::NotGranted(r)));
        assert_eq!(t.in_use(), 0);
        assert_eq!(t.grant_access(1, 2, false).unwrap(), r);
    }

    #[test]
    fn grow_then_exhaust_then_everything_back() {
        let p = pages(3);
        let total = 3 * 512 - 8;
        {
            let mut t: GrantTable<_> = GrantTable::new(FakeXen::new(&p), 1).unwrap();
            let mut refs = Vec::new();
            for i in 0..total {
                let r = t.grant_access(0, i as u64, false).unwrap();
                assert!(r.0 >= NR_RESERVED_ENTRIES);
                refs.push(r);
            }
            assert_eq!(t.nr_frames(), 3);
            let full = GrantError::Exhausted {
                in_use: total,
                deferred: 0,
                frames: 3,
            };
            assert_eq!(t.grant_access(0, 0, false), Err(full));
            assert_eq!(t.grant_access(0, 0, false), Err(full));
            let mut sorted = refs.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), total);
            for r in refs {
                t.end_access(r).unwrap();
            }
            assert_eq!((t.in_use(), t.free(), t.deferred()), (0, total, 0));
            // Everything usable again without growing further.
            for _ in 0..total {
                t.grant_access(0, 0, true).unwrap();
            }
            assert_eq!(t.backend().grows, 3);
        }
        // Reserved entries untouched.
        assert_eq!(p[0].mem().read::<[u64; 8]>(0), [0; 8]);
    }

    #[test]
    fn revoke_while_mapped_defers_then_reclaims() {
        let p = pages(1);
        let mut t: GrantTable<_, &'static str> = GrantTable::new(FakeXen::new(&p), 1).unwrap();
        let a = t.grant_access(0, 10, false).unwrap();
        let b = t.grant_access(0, 11, false).unwrap();
        // Xen maps `a` for the backend: sets GTF_reading|GTF_writing.
        let (ma, offa) = entry(&p, a);
        ma.fetch_or_u16(offa, (GrantFlags::READING | GrantFlags::WRITING).bits());
        assert_eq!(t.end_access(a), Err(GrantError::InUse(a)));
        assert_eq!(t.revoke_or_defer(a, "page-a").unwrap(), Revoke::Deferred);
        assert_eq!(
            t.revoke_or_defer(b, "page-b").unwrap(),
            Revoke::Done("page-b")
        );
        assert_eq!((t.in_use(), t.deferred()), (0, 1));
        // Still mapped: nothing comes back, and `a` is never handed out.
        assert!(t.poll_deferred().is_empty());
        let free_before = t.free();
        for _ in 0..free_before {
            assert_ne!(t.grant_access(0, 0, false).unwrap(), a);
        }
        // A peer that maps and never unmaps: the exhaustion says so.
        assert_eq!(
            t.grant_access(0, 0, false),
            Err(GrantError::Exhausted {
                in_use: 512 - 8 - 1,
                deferred: 1,
                frames: 1
            })
        );
        assert_eq!(t.end_access(a), Err(GrantError::NotGranted(a)));
        // Backend unmaps: Xen clears the bits; the page comes back.
        ma.fetch_and_u16(offa, !(GrantFlags::READING | GrantFlags::WRITING).bits());
        assert_eq!(t.poll_deferred(), vec!["page-a"]);
        assert_eq!(t.deferred(), 0);
        assert_eq!(ma.load_u16(offa), 0);
        assert_eq!(t.grant_access(0, 0, false).unwrap(), a);
    }

    /// Xen sets GTF_reading between our read of flags and the CAS.
    #[test]
    fn cas_race_with_xen() {
        let pages = TestPages::new(1);
        let m = pages.mem();
        struct One<'a>(Option<SharedMem<'a>>);
        impl<'a> GrantBackend<'a> for One<'a> {
            fn max_frames(&self) -> u32 {
                1
            }
            fn grow(&mut self, _: u32, _: u32) -> Result<Vec<SharedMem<'a>>, GrantError> {
                Ok(vec![self.0.take().unwrap()])
            }
        }
        let mut t: GrantTable<One<'_>, u32> = GrantTable::new(One(Some(m.clone())), 1).unwrap();
        let r = t.grant_access(0, 5, false).unwrap();
        let off = r.0 as usize * GRANT_ENTRY_SIZE + FLAGS;
        // Simulate the race on the primitive used by try_end: the flags we
        // read (permit) are stale by the time of the CAS.
        let seen = m.load_u16(off);
        m.fetch_or_u16(off, GrantFlags::READING.bits());
        assert_eq!(
            m.cas_u16(off, seen, 0),
            Err(seen | GrantFlags::READING.bits())
        );
        // The table's own loop re-checks the fresh value and refuses.
        assert_eq!(t.end_access(r), Err(GrantError::InUse(r)));
        assert_eq!(
            m.load_u16(off),
            (GrantFlags::PERMIT_ACCESS | GrantFlags::READING).bits()
        );
        // Racing thread: Xen toggles GTF_reading while we revoke; the grant is
        // only ever cleared when the bits are clear at CAS time.
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let xm = m.clone();
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Xen only sets the in-use bits while the grant is valid.
                    let f = xm.load_u16(off);
                    if f & GrantFlags::PERMIT_ACCESS.bits() != 0 {
                        let _ = xm.cas_u16(off, f, f ^ GrantFlags::READING.bits());
                    }
                }
            });
            let mut result = t.revoke_or_defer(r, 42).unwrap();
            for _ in 0..1_000_000 {
                if result != Revoke::Deferred {
                    break;
                }
                let got = t.poll_deferred();
                if !got.is_empty() {
                    result = Revoke::Done(got[0]);
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(result, Revoke::Done(42));
        });
        assert_eq!(m.load_u16(off), 0);
    }

    #[test]
    fn gntst_decoding() {
        assert_eq!(GntStatusError::check(0), Ok(()));
        assert_eq!(GntStatusError::check(-3), Err(GntStatusError::BadGntref));
        assert_eq!(GntStatusError::check(-12), Err(GntStatusError::Eagain));
        assert_eq!(
            GntStatusError::check(-99),
            Err(GntStatusError::Unknown(-99))
        );
        for c in -14..0 {
            assert_eq!(GntStatusError::check(c).unwrap_err().code(), c);
        }
    }
}
