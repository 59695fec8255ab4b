//! xenfront: a no_std unikernel for Xen PV and PVH guests.
//!
//! Pure protocol logic (rings, grant free list, XenStore codec) compiles for
//! the host too, so `cargo test` exercises it without Xen. Modules that only
//! make sense inside a guest (entry, print, kernel) are built for
//! `target_os = "none"` only; hypercalls compile on the host but fail with
//! ENOSYS there.
#![cfg_attr(not(test), no_std)]

// Pure logic, host-tested (owned by the protocol work).
pub mod grant_table;
pub mod ring;
pub mod shared;
pub mod xenstore;

// Pure logic, host-tested (kernel).
pub mod cmdline;
pub mod drivers;
pub mod errno;
pub mod platform;
pub mod scenario;
pub mod start_info;

// Xen interface: compiles everywhere, only useful inside a guest.
pub mod event;
pub mod hypercall;
pub mod mm;
pub mod store;
pub mod time;

// Guest only: entry, console macros, boot order, panic handler.
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod gnttab;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod kscenario;
#[cfg(target_os = "none")]
pub mod pv_entry;
#[cfg(target_os = "none")]
pub mod pvh;
#[cfg(target_os = "none")]
#[macro_use]
pub mod print;
#[cfg(target_os = "none")]
pub mod channels;
#[cfg(target_os = "none")]
pub mod services;
