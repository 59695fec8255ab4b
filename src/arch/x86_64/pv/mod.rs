//! PV guest (xen/include/public/xen.h `start_info_t`,
//! xen/include/public/arch-x86/xen-x86_64.h).
//!
//! * [`entry`] — the Rust side of boot/pv.S: start_info →
//!   [`Platform`](crate::platform::Platform).
//! * [`traps`] — trap table and event/failsafe callbacks (boot/pv_entry.S).
//! * [`mm`] — p2m, M2P and page-table edits behind the `mm` API.

pub mod entry;
pub mod mm;
pub mod traps;
