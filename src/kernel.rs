//! Boot order after the entry path, shutdown and the panic handler.
//!
//! Console format (docs/console.md):
//! ```text
//! xenfront 0.1.0: booting (pv)
//! xen: version 4.17.5+72-g01140da4e8
//! start_info: magic "xen-3.0-x86_64" nr_pages 8192 flags 0x0
//! cmdline: "test=hello"
//! test: hello
//! Test result: SUCCESS
//! ```

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cmdline;
use crate::drivers::console::ConsoleError;
use crate::event;
use crate::hypercall::{self, ShutdownReason};
use crate::kscenario;
use crate::platform::Platform;
use crate::print;
use crate::println;
use crate::scenario::{self, Verdict};
use crate::start_info::c_str;
use crate::time;

/// Enter the kernel with a platform description; never returns.
pub fn start(platform: &Platform) -> ! {
    if let Some(ring) = platform.console {
        // SAFETY: the entry path found this page in the start-of-day mapping
        // (PV) and nothing else refers to it.
        unsafe { print::init(ring) };
    }
    let verdict = kernel_main(platform);
    println!("Test result: {verdict}");
    finish(ShutdownReason::Poweroff)
}

/// The kernel proper: banner, options, scenario. Returning powers off.
pub fn kernel_main(platform: &Platform) -> Verdict {
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
            platform.flags
        ),
        Some(h) => println!(
            "hvm_start_info: magic {:#x} version {} nr_pages {} flags {:#x} memmap {} entries",
            h.magic, h.version, platform.nr_pages, platform.flags, h.memmap_entries
        ),
    }
    print_mm();
    println!("cmdline: {:?}", Bytes(platform.cmdline()));
    let opts = match cmdline::parse_bytes(platform.cmdline()) {
        Ok(o) => o,
        Err(e) => {
            println!("error: cmdline: {e}");
            println!("Test result: {}", Verdict::Error);
            finish(ShutdownReason::Crash);
        }
    };
    println!("test: {}", opts.test.name());
    kscenario::run(opts)
        .or_else(|| crate::services::run(opts.test, platform.store))
        .or_else(|| crate::channels::run_test(opts.test, platform.store))
        .unwrap_or_else(|| scenario::run(opts.test, &mut KernelEnv))
}

/// Scenario environment backed by the PV console.
struct KernelEnv;

impl scenario::Env for KernelEnv {
    fn say(&mut self, args: core::fmt::Arguments<'_>) {
        println!("{args}");
    }
    fn read_line(&mut self, buf: &mut [u8], timeout_ns: u64) -> Result<usize, &'static str> {
        print::read_line(buf, timeout_ns).map_err(|e| match e {
            ConsoleError::Timeout => "timeout",
            ConsoleError::BadIndex { .. } => "bad console ring index",
        })
    }
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
