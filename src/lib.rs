//! xenfront: a no_std unikernel for Xen PV and PVH guests.
//!
//! Pure protocol logic (rings, grant free list, XenStore codec) compiles for
//! the host too, so `cargo test` exercises it without Xen.
#![cfg_attr(not(test), no_std)]

// Pure logic, host-tested (owned by the protocol work).
pub mod grant_table;
pub mod ring;
pub mod shared;
pub mod xenstore;
