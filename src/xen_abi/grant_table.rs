//! Grant table v1 entries (`xen/include/public/grant_table.h`): the table
//! frames this domain shares with Xen, an array of [`GrantEntryV1`], 512
//! per 4 KiB frame, indexed by grant reference.

use core::mem::{offset_of, size_of};

crate::pod_struct! {
    /// `grant_entry_v1`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GrantEntryV1 {
        /// `GTF_*` type and flags ([`GrantFlags`]).
        pub flags: u16,
        /// The domain being granted access.
        pub domid: u16,
        /// The frame being granted (PV: MFN, PVH: GFN).
        pub frame: u32,
    }
}

/// Bytes per `grant_entry_v1`.
pub const GRANT_ENTRY_SIZE: usize = size_of::<GrantEntryV1>();
/// Offset of `flags` in an entry (u16, updated atomically).
pub const FLAGS: usize = offset_of!(GrantEntryV1, flags);
/// Offset of `domid` in an entry.
pub const DOMID: usize = offset_of!(GrantEntryV1, domid);
/// Offset of `frame` in an entry.
pub const FRAME: usize = offset_of!(GrantEntryV1, frame);

bitflags::bitflags! {
    /// `GTF_*`: the type (low two bits) and flags of
    /// [`GrantEntryV1::flags`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GrantFlags: u16 {
        /// `GTF_permit_access` (type 1): `domid` may map `frame`.
        const PERMIT_ACCESS = 1;
        /// `GTF_accept_transfer` (type 2): `domid` may transfer a frame to
        /// us.
        const ACCEPT_TRANSFER = 2;
        /// `GTF_transitive` (type 3): access through another grant (v2
        /// only).
        const TRANSITIVE = 3;
        /// `GTF_type_mask`: the entry type bits.
        const TYPE_MASK = 3;
        /// `GTF_readonly`: the peer may map the frame read-only only.
        const READONLY = 1 << 2;
        /// `GTF_reading`: set by Xen while the peer has the frame mapped
        /// for reading.
        const READING = 1 << 3;
        /// `GTF_writing`: set by Xen while the peer has the frame mapped
        /// for writing.
        const WRITING = 1 << 4;
        /// `GTF_PWT`: map with write-through caching.
        const PWT = 1 << 5;
        /// `GTF_PCD`: map with caching disabled.
        const PCD = 1 << 6;
        /// `GTF_PAT`: map with the PAT bit set.
        const PAT = 1 << 7;
        /// `GTF_sub_page`: grant only part of the page (v2 only).
        const SUB_PAGE = 1 << 8;
    }
}

impl GrantFlags {
    /// `GTF_invalid` (type 0): the entry grants nothing.
    pub const INVALID: GrantFlags = GrantFlags::empty();
}

// guest-abi.md §6.
const _: () = {
    assert!(GRANT_ENTRY_SIZE == 8);
    assert!(FLAGS == 0);
    assert!(DOMID == 2);
    assert!(FRAME == 4);
    assert!(GrantFlags::READONLY.bits() == 4);
    assert!(GrantFlags::READING.bits() == 8);
    assert!(GrantFlags::WRITING.bits() == 16);
    assert!(GrantFlags::SUB_PAGE.bits() == 0x100);
};
