//! xenfront: a `no_std` unikernel library for Xen PV and PVH guests.
//!
//! An appliance is a binary crate that depends on xenfront and declares
//! its entry with [`main!`]; the kernel boots, brings up memory, event
//! channels, time, the grant table, XenStore and the console, then calls
//! it (docs/app.md). The application's API:
//!
//! | what | where |
//! |---|---|
//! | entry, errors, command-line words | [`main!`], [`Error`], [`bail!`], [`args`], [`arg`] |
//! | console | [`println!`], [`print!`], [`console`] |
//! | `xl shutdown` / `xl reboot` | [`control`] |
//! | time: now, sleep, deadlines, wall clock | [`time`] |
//! | XenStore: read/write/rm/list/publish/watch/transactions | [`xenstore`] |
//! | event channels | [`event`] |
//! | pages to share with another domain | [`mm::alloc_shared_page`] |
//! | granting/revoking pages, mapping foreign grants | [`grant_table`] |
//! | request/response rings, both roles | [`ring`], [`drivers::demo`] |
//! | vchan byte streams, server and client | [`vchan`] |
//!
//! Pure protocol logic (rings, grant free list, XenStore codec, vchan
//! framing) compiles for the host too, so `cargo test` exercises it without
//! Xen. Modules that only make sense inside a guest (entry, console,
//! kernel) are built for `target_os = "none"` only; hypercalls compile on
//! the host but fail with ENOSYS there.
#![cfg_attr(not(test), no_std)]

// Arch: PV and PVH entry, traps, page tables (guest only, not application
// API), and the Platform they hand to the kernel.
#[cfg(target_os = "none")]
pub(crate) mod arch;
pub mod platform;

// Hypercalls and wire structs: the Xen ABI (xen_abi: the repr(C) layouts of
// Xen's public headers, with their offsets) and the one door to shared memory.
pub mod errno;
pub mod hypercall;
pub mod shared;
pub mod xen_abi;

// Core services: memory, event channels, time, grant table, XenStore.
pub mod event;
pub mod grant_table;
#[cfg(target_os = "none")]
pub mod heap;
pub mod mm;
pub mod time;
pub mod xenstore;

// XenBus/drivers: io/ring.h rings, the split drivers, their kernel environment.
#[cfg(target_os = "none")]
pub mod chan_env;
pub mod drivers;
pub mod ring;
pub mod xenbus;

// Kernel: command line, boot order, shutdown, panic handler.
pub mod cmdline;
#[cfg(target_os = "none")]
pub mod kernel;

// Application API: entry and arguments, control, console, vchan, disks,
// network.
pub mod app;
pub use app::{arg, arg_num, args, Error};
#[cfg(target_os = "none")]
pub mod control;
#[cfg(target_os = "none")]
#[macro_use]
pub mod print;
#[cfg(target_os = "none")]
pub mod blk;
#[cfg(target_os = "none")]
pub mod net;
/// The TCP/IP stack [`net::Net`] is a device of (smoltcp 0.14).
pub use smoltcp;
#[cfg(target_os = "none")]
pub mod vchan;

/// The console: output through [`println!`] / [`print!`], input lines.
#[cfg(target_os = "none")]
pub mod console {
    pub use crate::drivers::console::ConsoleError;
    pub use crate::print::{flush, read_line};
}

/// How Xen started this guest: `"pv"` or `"pvh"`.
#[cfg(target_os = "none")]
pub fn boot_kind() -> &'static str {
    kernel::boot_kind()
}
