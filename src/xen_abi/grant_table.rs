//! Grant table v1 entries (`xen/include/public/grant_table.h`): the table
//! frames this domain shares with Xen, an array of [`GrantEntryV1`], 512
//! per 4 KiB frame, indexed by grant reference.

use core::mem::{offset_of, size_of};

crate::pod_struct! {
    /// `grant_entry_v1`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct GrantEntryV1 {
        /// `GTF_*` type and flags ([`gtf`]).
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

/// `GTF_*` flag bits of [`GrantEntryV1::flags`].
pub mod gtf {
    /// `GTF_invalid`: the entry grants nothing.
    pub const INVALID: u16 = 0;
    /// `GTF_permit_access`: `domid` may map `frame`.
    pub const PERMIT_ACCESS: u16 = 1;
    /// `GTF_accept_transfer`: `domid` may transfer a frame to us.
    pub const ACCEPT_TRANSFER: u16 = 2;
    /// `GTF_transitive`: access through another grant (v2 only).
    pub const TRANSITIVE: u16 = 3;
    /// `GTF_type_mask`: the entry type bits.
    pub const TYPE_MASK: u16 = 3;
    /// `GTF_readonly`: the peer may map the frame read-only only.
    pub const READONLY: u16 = 1 << 2;
    /// Set by Xen while the peer has the frame mapped for reading.
    pub const READING: u16 = 1 << 3;
    /// Set by Xen while the peer has the frame mapped for writing.
    pub const WRITING: u16 = 1 << 4;
    /// `GTF_PWT`: map with write-through caching.
    pub const PWT: u16 = 1 << 5;
    /// `GTF_PCD`: map with caching disabled.
    pub const PCD: u16 = 1 << 6;
    /// `GTF_PAT`: map with the PAT bit set.
    pub const PAT: u16 = 1 << 7;
    /// `GTF_sub_page`: grant only part of the page (v2 only).
    pub const SUB_PAGE: u16 = 1 << 8;
}

// guest-abi.md §6.
const _: () = {
    assert!(GRANT_ENTRY_SIZE == 8);
    assert!(FLAGS == 0);
    assert!(DOMID == 2);
    assert!(FRAME == 4);
};
