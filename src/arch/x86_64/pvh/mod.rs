//! PVH guest (xen/include/public/arch-x86/hvm/start_info.h,
//! xen/include/public/hvm/params.h).
//!
//! * [`entry`] — the Rust side of boot/pvh.S: hypercall page, GDT/IDT,
//!   shared_info, hvm_start_info → [`Platform`](crate::platform::Platform).
//! * [`mm`] — the foreign-mapping window over the identity-mapped boot
//!   tables, behind the `mm` API.

pub mod entry;
pub mod mm;
