//! The block-device ring of `xen/include/public/io/blkif.h`: requests,
//! responses, the indirect and discard variants, and the constants of the
//! protocol (operations, statuses, `info` bits, segment limits).
//!
//! One ring slot is `union { blkif_request; blkif_response; }`, i.e. 112
//! bytes on x86_64, so one page holds 32 slots (`__CONST_RING_SIZE`) and a
//! ring of order `n` holds `32 << n`. The discard and indirect requests are
//! smaller than [`BlkifRequest`] and go into the same slot ("cast to this
//! structure when operation == ..."); [`BlkifRequestDiscard::to_slot`] and
//! [`BlkifRequestIndirect::to_slot`] give the slot image, so a ring typed
//! `FrontRing<BlkifRequest, BlkifResponse>` carries all three.
//!
//! Units: `sector_number`, `nr_sectors`, `first_sect` and `last_sect` are in
//! **512-byte units** whatever the backend's `sector-size` says (Linux
//! blkfront/blkback; `feature-large-sector-size` is deprecated; research
//! notes in `devices.md` §1).

use core::mem::{offset_of, size_of};

use crate::shared::{SharedMem, PAGE_SIZE};

/// `BLKIF_OP_READ`: read from the device into the segments.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`: write the segments to the device.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER` (`feature-barrier`; superseded by flush).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE` (`feature-flush-cache`): may carry 0
/// segments.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_RESERVED_1`: never send.
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// `BLKIF_OP_DISCARD` (`feature-discard`): a [`BlkifRequestDiscard`].
pub const BLKIF_OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT` (`feature-max-indirect-segments`): a
/// [`BlkifRequestIndirect`] whose segments live in granted pages.
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// `BLKIF_RSP_OKAY`: the operation completed.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`: the operation failed (`-EIO`).
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`: the backend does not support the operation.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// `BLKIF_DISCARD_SECURE`: the `flag` of a discard (honoured only if the
/// backend wrote `discard-secure` = 1).
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// `VDISK_CDROM`: bit of the backend's `info` key.
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE`: bit of the backend's `info` key.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY`: bit of the backend's `info` key (writes are refused).
pub const VDISK_READONLY: u32 = 0x4;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: `indirect_grefs[]` entries.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments one indirect page holds: `PAGE_SIZE / sizeof(struct
/// blkif_request_segment)` = 512 (Linux `SEGS_PER_INDIRECT_FRAME`).
pub const SEGS_PER_INDIRECT_FRAME: usize = PAGE_SIZE / size_of::<BlkifRequestSegment>();
/// 512-byte sectors in one 4 KiB frame: `first_sect ≤ last_sect <` this
/// (blkback rejects `last_sect >= XEN_PAGE_SIZE >> 9`).
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE / 512) as u8;
/// The unit of every sector field on the wire.
pub const SECTOR_UNIT: u64 = 512;

crate::pod_struct! {
    /// `struct blkif_request_segment`: one 4 KiB frame of the I/O.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BlkifRequestSegment {
        /// Grant reference of the data frame.
        pub gref: u32,
        /// First 512-byte sector in the frame (inclusive, 0..=7).
        pub first_sect: u8,
        /// Last 512-byte sector in the frame (inclusive, `first_sect..=7`).
        pub last_sect: u8,
        /// Tail padding of the C struct (4-byte alignment).
        pub _pad: u16,
    }
}

crate::pod_struct! {
    /// `struct blkif_request`: the ring's request type (read, write,
    /// barrier, flush).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BlkifRequest {
        /// `BLKIF_OP_*`.
        pub operation: u8,
        /// Segments used in `seg` (1..=11; 0 for a flush).
        pub nr_segments: u8,
        /// `blkif_vdev_t handle`: the device (Linux: the vdev number).
        pub handle: u16,
        /// Hole before `id` (8-byte alignment).
        pub _pad0: u32,
        /// Private guest value, echoed in the response.
        pub id: u64,
        /// First sector on disk, 512-byte units.
        pub sector_number: u64,
        /// The segments, in order.
        pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    }
}

crate::pod_struct! {
    /// `struct blkif_request_discard` (operation = `BLKIF_OP_DISCARD`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BlkifRequestDiscard {
        /// `BLKIF_OP_DISCARD`.
        pub operation: u8,
        /// [`BLKIF_DISCARD_SECURE`] or 0.
        pub flag: u8,
        /// The device, as in a read/write request.
        pub handle: u16,
        /// Hole before `id`.
        pub _pad0: u32,
        /// Private guest value, echoed in the response.
        pub id: u64,
        /// First sector to discard, 512-byte units.
        pub sector_number: u64,
        /// Number of contiguous 512-byte sectors to discard.
        pub nr_sectors: u64,
    }
}

crate::pod_struct! {
    /// `struct blkif_request_indirect` (operation = `BLKIF_OP_INDIRECT`):
    /// the segments are in `ceil(nr_segments / 512)` granted pages.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BlkifRequestIndirect {
        /// `BLKIF_OP_INDIRECT`.
        pub operation: u8,
        /// The real operation: `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
        pub indirect_op: u8,
        /// Segments in the indirect pages (up to the backend's
        /// `feature-max-indirect-segments`).
        pub nr_segments: u16,
        /// Hole before `id`.
        pub _pad0: u32,
        /// Private guest value, echoed in the response.
        pub id: u64,
        /// First sector on disk, 512-byte units.
        pub sector_number: u64,
        /// The device, as in a read/write request.
        pub handle: u16,
        /// Hole before `indirect_grefs`.
        pub _pad1: u16,
        /// Grant references of the pages holding the segments.
        pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
        /// Tail padding to the struct's 8-byte alignment (x86_64 has no
        /// explicit `pad`; i386 has a `uint64_t pad` instead).
        pub _pad2: u32,
    }
}

crate::pod_struct! {
    /// `struct blkif_response`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BlkifResponse {
        /// The request's `id`.
        pub id: u64,
        /// The request's `operation` (`BLKIF_OP_INDIRECT` for an indirect
        /// request).
        pub operation: u8,
        /// Hole before `status`.
        pub _pad0: u8,
        /// `BLKIF_RSP_*`.
        pub status: i16,
        /// Tail padding to the struct's 8-byte alignment.
        pub _pad1: u32,
    }
}

/// Bytes of one ring slot: `sizeof(union blkif_sring_entry)`.
pub const SLOT_SIZE: usize = size_of::<BlkifRequest>();

/// The slot image of a smaller request variant: its bytes at the start of
/// a zeroed [`BlkifRequest`]-sized buffer, as the C code's cast gives.
fn slot_of<T: crate::shared::Pod>(v: T) -> BlkifRequest {
    let mut words = [0u64; SLOT_SIZE / 8];
    let m = SharedMem::from_words(&mut words);
    m.write(0, v);
    m.read(0)
}

impl BlkifRequestDiscard {
    /// This request as it goes into a ring slot.
    pub fn to_slot(self) -> BlkifRequest {
        slot_of(self)
    }
}

impl BlkifRequestIndirect {
    /// This request as it goes into a ring slot.
    pub fn to_slot(self) -> BlkifRequest {
        slot_of(self)
    }
}

/// Indirect pages needed for `nr_segments` segments (Linux
/// `INDIRECT_PAGES()`): `ceil(nr_segments / 512)`.
pub const fn indirect_pages(nr_segments: usize) -> usize {
    nr_segments.div_ceil(SEGS_PER_INDIRECT_FRAME)
}

/// Offset of `blkif_request.operation`.
pub const REQ_OPERATION: usize = offset_of!(BlkifRequest, operation);
/// Offset of `blkif_request.nr_segments`.
pub const REQ_NR_SEGMENTS: usize = offset_of!(BlkifRequest, nr_segments);
/// Offset of `blkif_request.handle`.
pub const REQ_HANDLE: usize = offset_of!(BlkifRequest, handle);
/// Offset of `blkif_request.id`.
pub const REQ_ID: usize = offset_of!(BlkifRequest, id);
/// Offset of `blkif_request.sector_number`.
pub const REQ_SECTOR_NUMBER: usize = offset_of!(BlkifRequest, sector_number);
/// Offset of `blkif_request.seg[0]`.
pub const REQ_SEG: usize = offset_of!(BlkifRequest, seg);
/// Offset of `blkif_response.id`.
pub const RSP_ID: usize = offset_of!(BlkifResponse, id);
/// Offset of `blkif_response.operation`.
pub const RSP_OPERATION: usize = offset_of!(BlkifResponse, operation);
/// Offset of `blkif_response.status`.
pub const RSP_STATUS: usize = offset_of!(BlkifResponse, status);

// guest-abi.md §11, checked against blkif.h (x86_64 ABI).
const _: () = {
    assert!(size_of::<BlkifRequestSegment>() == 8);
    assert!(offset_of!(BlkifRequestSegment, gref) == 0);
    assert!(offset_of!(BlkifRequestSegment, first_sect) == 4);
    assert!(offset_of!(BlkifRequestSegment, last_sect) == 5);

    assert!(REQ_OPERATION == 0);
    assert!(REQ_NR_SEGMENTS == 1);
    assert!(REQ_HANDLE == 2);
    assert!(REQ_ID == 8);
    assert!(REQ_SECTOR_NUMBER == 16);
    assert!(REQ_SEG == 24);
    assert!(size_of::<BlkifRequest>() == 112);

    assert!(offset_of!(BlkifRequestDiscard, operation) == 0);
    assert!(offset_of!(BlkifRequestDiscard, flag) == 1);
    assert!(offset_of!(BlkifRequestDiscard, handle) == 2);
    assert!(offset_of!(BlkifRequestDiscard, id) == 8);
    assert!(offset_of!(BlkifRequestDiscard, sector_number) == 16);
    assert!(offset_of!(BlkifRequestDiscard, nr_sectors) == 24);
    assert!(size_of::<BlkifRequestDiscard>() == 32);

    assert!(offset_of!(BlkifRequestIndirect, operation) == 0);
    assert!(offset_of!(BlkifRequestIndirect, indirect_op) == 1);
    assert!(offset_of!(BlkifRequestIndirect, nr_segments) == 2);
    assert!(offset_of!(BlkifRequestIndirect, id) == 8);
    assert!(offset_of!(BlkifRequestIndirect, sector_number) == 16);
    assert!(offset_of!(BlkifRequestIndirect, handle) == 24);
    assert!(offset_of!(BlkifRequestIndirect, indirect_grefs) == 28);
    assert!(size_of::<BlkifRequestIndirect>() == 64);

    assert!(RSP_ID == 0);
    assert!(RSP_OPERATION == 8);
    assert!(RSP_STATUS == 10);
    assert!(size_of::<BlkifResponse>() == 16);

    // The variants fit the slot, whose size is the request's.
    assert!(size_of::<BlkifRequestDiscard>() <= SLOT_SIZE);
    assert!(size_of::<BlkifRequestIndirect>() <= SLOT_SIZE);
    assert!(SLOT_SIZE == 112);
    assert!(SEGS_PER_INDIRECT_FRAME == 512);
    assert!(SECTORS_PER_PAGE == 8);
    // 8 indirect pages could describe 4096 segments; Linux blkback caps
    // the count at MAX_INDIRECT_SEGMENTS = 256, which fits one page.
    assert!(indirect_pages(256) == 1);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    #[test]
    fn slots_per_page_as_blkif_h() {
        type R<'a> = Ring<'a, BlkifRequest, BlkifResponse>;
        assert_eq!(R::SLOT_SIZE, 112);
        assert_eq!(R::nr_ents_for(PAGE_SIZE), 32);
        for order in 0..=4 {
            assert_eq!(R::nr_ents_for(PAGE_SIZE << order), 32 << order);
        }
    }

    #[test]
    fn variant_slot_images() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: BLKIF_DISCARD_SECURE,
            handle: 51712,
            id: 0x0102_0304_0506_0708,
            sector_number: 99,
            nr_sectors: 0x1_0000_0000,
            ..Default::default()
        };
        let s = d.to_slot();
        assert_eq!(s.operation, BLKIF_OP_DISCARD);
        assert_eq!(s.nr_segments, BLKIF_DISCARD_SECURE); // the flag byte
        assert_eq!(s.handle, 51712);
        assert_eq!(s.id, d.id);
        assert_eq!(s.sector_number, 99);
        // nr_sectors overlays seg[0]: gref = low word, first_sect = byte 4.
        assert_eq!(s.seg[0].gref, 0);
        assert_eq!(s.seg[0].first_sect, 1);
        assert_eq!(s.seg[1..], [BlkifRequestSegment::default(); 10]);

        let i = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_WRITE,
            nr_segments: 256,
            id: 7,
            sector_number: 8,
            handle: 0xabcd,
            indirect_grefs: [11, 12, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let s = i.to_slot();
        assert_eq!(s.operation, BLKIF_OP_INDIRECT);
        assert_eq!(s.nr_segments, BLKIF_OP_WRITE);
        assert_eq!(s.handle, 256);
        assert_eq!((s.id, s.sector_number), (7, 8));
        // handle @24 and _pad1 @26 are seg[0].gref; grefs[0] @28 is the
        // rest of seg[0]; grefs[1] @32 is seg[1].gref.
        assert_eq!(s.seg[0].gref, 0xabcd);
        assert_eq!(s.seg[1].gref, 12);
        assert_eq!(
            (s.seg[0].first_sect, s.seg[0].last_sect, s.seg[0]._pad),
            (11, 0, 0)
        );
    }

    #[test]
    fn indirect_page_count() {
        assert_eq!(indirect_pages(0), 0);
        assert_eq!(indirect_pages(1), 1);
        assert_eq!(indirect_pages(512), 1);
        assert_eq!(indirect_pages(513), 2);
        assert_eq!(
            indirect_pages(SEGS_PER_INDIRECT_FRAME * BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
            8
        );
    }
}
