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
//! | XenStore: read/write/rm/list/watch/transactions | [`xenstore`] |
//! | event channels | [`event`] |
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

// Guest only: PV and PVH entry, traps, page tables. Not application API.
#[cfg(target_os = "none")]
pub(crate) mod arch;

// Pure protocol logic, host-tested.
pub mod cmdline;
pub mod drivers;
pub mod errno;
pub mod grant_table;
pub mod platform;
pub mod ring;
pub mod shared;
pub mod start_info;
pub mod xenstore;

// Xen interface: compiles everywhere, only useful inside a guest.
pub mod event;
pub mod hypercall;
pub mod mm;
pub mod time;

// The application's entry and command line.
pub mod app;
pub use app::{arg, args, Error};

// Guest only: entry, console, boot order, panic handler, the services'
// guest singletons.
#[cfg(target_os = "none")]
pub mod chan_env;
#[cfg(target_os = "none")]
pub mod control;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
#[macro_use]
pub mod print;
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
