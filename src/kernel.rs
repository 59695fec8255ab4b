//! Boot order after the entry path, the call into the application,
//! shutdown and the panic handler.
//!
//! Console format (docs/console.md):
//! ```text
//! xenfront 0.1.0: booting (pv)
//! xen: version 4.17.5+72-g01140da4e8
//! time: VIRQ_TIMER port 3, upcalls on
//! start_info: magic "xen-3.0-x86_64" nr_pages 8192 flags 0x0
//! mm: ...
//! cmdline: "name=world"
//! grants: table up, in_use 0 deferred 0 free 503 frames 1/64
//! ```
//! then whatever the application prints.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cmdline;
use crate::event;
use crate::grant_table;
use crate::hypercall::{self, ShutdownReason};
use crate::platform::Platform;
use crate::print;
use crate::println;
use crate::time;
use crate::xen_abi::start_info::c_str;
use crate::xenstore;

extern crate alloc;

unsafe extern "Rust" {
    /// The application's entry, defined by [`crate::main!`] in the
    /// application crate.
    safe fn __xenfront_app_main() -> Result<(), crate::Error>;
}

static BOOT_KIND: spin::Once<&'static str> = spin::Once::new();

/// `"pv"` or `"pvh"`: how Xen started us.
pub fn boot_kind() -> &'static str {
    BOOT_KIND.get().copied().unwrap_or("?")
}

/// Enter the kernel with a platform description; never returns.
pub fn start(platform: &Platform) -> ! {
    BOOT_KIND.call_once(|| platform.kind.name());
    if let Some(ring) = platform.console {
        // SAFETY: the entry path found this page in the start-of-day mapping
        // (PV) and nothing else refers to it.
        unsafe { print::init(ring) };
    }
    boot(platform);
    match __xenfront_app_main() {
        Ok(()) => finish(ShutdownReason::Poweroff),
        Err(e) => {
            println!("error: {e}");
            finish(ShutdownReason::Crash)
        }
    }
}

/// Brings up the core services in order, printing what it found; a
/// service the application cannot do without ends the boot with a named
/// error and a crash.
fn boot(platform: &Platform) {
    println!(
        "xenfront {}: booting ({})",
        env!("CARGO_PKG_VERSION"),
        platform.kind.name()
    );
    print_xen_version();
    // Events are up (entry path); timers need VIRQ_TIMER bound before
    // anything sleeps.
    match time::init() {
        Ok(port) => println!(
            "time: VIRQ_TIMER port {port}, upcalls {}",
            on_off(event::upcalls_enabled())
        ),
        Err(e) => println!("error: time: {e}"),
    }
    match platform.hvm {
        None => println!(
            "start_info: magic {:?} nr_pages {} flags {:#x}",
            Bytes(platform.magic()),
            platform.nr_pages,
            platform.flags.bits()
        ),
        Some(h) => println!(
            "hvm_start_info: magic {:#x} version {} nr_pages {} flags {:#x} memmap {} entries",
            h.magic,
            h.version,
            platform.nr_pages,
            platform.flags.bits(),
            h.memmap_entries
        ),
    }
    print_mm();
    println!("cmdline: {:?}", Bytes(platform.cmdline()));
    let cmdline = cmdline::as_str(platform.cmdline()).unwrap_or_else(|e| fail("cmdline", e));
    let opts = cmdline::kernel_options(cmdline).unwrap_or_else(|e| fail("cmdline", e));
    // The application reads its words for the rest of the kernel's life.
    crate::app::set_cmdline(alloc::string::String::from(cmdline).leak());
    if let Some(ms) = opts.xs_timeout_ms {
        xenstore::set_default_timeout(u64::from(ms) * 1_000_000);
    }
    xenstore::init(platform.store).unwrap_or_else(|e| fail("xenstore", e));
    xenstore::watch_shutdown().unwrap_or_else(|e| fail("xenstore: control/shutdown watch", e));
    match grant_table::init() {
        Ok(c) => println!("grants: table up, {c}"),
        Err(e) => fail("grant table", e),
    }
}

/// A boot step failed: `error: <what>: <why>`, then crash.
fn fail(what: &str, why: impl core::fmt::Display) -> ! {
    println!("error: {what}: {why}");
    finish(ShutdownReason::Crash)
}

/// `mm: ...` line: what the memory manager set up at boot.
fn print_mm() {
    match crate::mm::summary() {
        Some(Ok(s)) => println!(
            "mm: {} pages, {} free (bootstrap end pfn {:#x}, {} page-table + {} bitmap frames added)",
            s.nr_pages, s.free_frames, s.boot_end, s.pt_frames, s.bitmap_frames
        ),
        Some(Err(e)) => println!("error: mm: {e}"),
        None => println!("mm: not initialised"),
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn print_xen_version() {
    match (hypercall::xen_version(), hypercall::xen_extraversion()) {
        (Ok((major, minor)), Ok(extra)) => println!(
            "xen: version {major}.{minor}{}",
            Bytes(c_str(&extra)).lossy()
        ),
        (Err(e), _) | (_, Err(e)) => println!("xen: version unknown ({e})"),
    }
}

/// Byte string shown like a Rust string literal (`{:?}`) or raw (`lossy`).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn lossy(&self) -> &str {
        core::str::from_utf8(self.0).unwrap_or("<not utf-8>")
    }
}

impl core::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                for e in c.escape_debug() {
                    f.write_char(e)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_char('"')
    }
}

/// Flush the console (bounded), then shut down with `reason`.
pub fn finish(reason: ShutdownReason) -> ! {
    let _ = print::flush();
    shutdown(reason)
}

/// SCHEDOP_shutdown; if Xen refuses, keep asking (never runs on).
pub fn shutdown(reason: ShutdownReason) -> ! {
    loop {
        let _ = hypercall::sched_shutdown(reason);
        let _ = hypercall::sched_yield();
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // Panicked while reporting a panic: just stop.
        shutdown(ShutdownReason::Crash);
    }
    // SAFETY: single vCPU, no interrupt handlers: whoever held the console
    // lock is the code that just panicked and will never resume.
    unsafe { print::force_unlock() };
    match info.location() {
        Some(loc) => println!("panic: {} at {}:{}", info.message(), loc.file(), loc.line()),
        None => println!("panic: {}", info.message()),
    }
    finish(ShutdownReason::Crash)
}
