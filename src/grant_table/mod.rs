//! Grant tables (xen/include/public/grant_table.h, v1): how this domain
//! lets another one map its pages, and maps pages others granted it.
//!
//! The application's calls (guest only):
//!
//! * [`grant_page`] → [`Grant`]; [`revoke`] → [`Revoked`] (or
//!   [`end_access`]); [`poll_deferred`] hands back pages a peer unmapped
//!   late; [`counters`].
//! * [`map_grant`] → [`ForeignMapping`] of a peer's grant; [`unmap`].
//!
//! Files:
//!
//! * `table.rs` — the pure part, host-tested: the `GNTTABOP_*` argument
//!   structs, [`GrantTable`] (free list, growth, grant, revoke, deferred
//!   reclaim) over a [`GrantBackend`]. The table entry itself,
//!   `grant_entry_v1` and its `GTF_*` flags ([`GrantFlags`]), is in
//!   [`xen_abi::grant_table`](crate::xen_abi::grant_table).
//! * `guest.rs` — the guest singleton: the backend (`GNTTABOP_query_size`
//!   / `setup_table` on PV, `XENMEM_add_to_physmap` on PVH), the one
//!   global table, and `GNTTABOP_map_grant_ref` for foreign grants.

mod table;

pub use crate::xen_abi::grant_table::{GrantEntryV1, GrantFlags, GRANT_ENTRY_SIZE};
pub use table::{
    op, GntStatusError, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable, GnttabUnmapGrantRef,
    GrantBackend, GrantError, GrantRef, GrantTable, MapFlags, Revoke, DOMID_SELF,
    ENTRIES_PER_FRAME, NR_RESERVED_ENTRIES, RESERVED_CONSOLE, RESERVED_XENSTORE,
};

#[cfg(target_os = "none")]
mod guest;

#[cfg(target_os = "none")]
pub use guest::{
    counters, end_access, grant_page, init, map_grant, poll_deferred, revoke, unmap, Counters,
    ForeignMapping, GnttabError, Grant, PvBackend, Revoked,
};
