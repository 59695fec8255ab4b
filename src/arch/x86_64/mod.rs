//! x86_64 guests. One ELF carries both entry points: `XEN_ELFNOTE_ENTRY`
//! (boot/pv.S) and `XEN_ELFNOTE_PHYS32_ENTRY` (boot/pvh.S), see
//! xen/include/public/elfnote.h; the one Xen calls decides the guest type
//! at run time.
//!
//! * [`pv`] — paravirtualised: start_info, trap table and callbacks
//!   registered by hypercall, page tables edited through `mmu_update`.
//! * [`pvh`] — HVM container without emulated devices: hvm_start_info,
//!   a real IDT and GDT, identity-mapped page tables.
//! * [`trap`] — the register frame both build and the exception names.

pub mod pv;
pub mod pvh;
pub mod trap;
