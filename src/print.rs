//! The kernel console: the PV console driver behind a lock, plus the
//! `print!` / `println!` macros.

use core::fmt::{self, Write};

use spin::Mutex;

use crate::drivers::console::{Console, ConsoleError};
use crate::event::XenEvents;
use crate::platform::RingPage;
use crate::shared::{SharedMem, PAGE_SIZE};

static CONSOLE: Mutex<Option<Console<'static, XenEvents>>> = Mutex::new(None);

/// Start printing to the console ring in `ring`.
///
/// # Safety
/// `ring.va` must be the mapped console page for the rest of the kernel's
/// life, shared only with the console backend, with no Rust references to it.
pub unsafe fn init(ring: RingPage) {
    // SAFETY: forwarded from the caller's contract; the page is page-aligned.
    let page = unsafe { SharedMem::from_raw(ring.va as *mut u8, PAGE_SIZE) };
    *CONSOLE.lock() = Some(Console::new(page, ring.port, XenEvents));
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    if let Some(con) = CONSOLE.lock().as_mut() {
        let _ = con.write_fmt(args);
        con.notify();
    }
}

/// Wait (bounded) until the backend has consumed everything printed.
pub fn flush() -> Result<(), ConsoleError> {
    match CONSOLE.lock().as_mut() {
        Some(con) => con.flush(),
        None => Ok(()),
    }
}

/// Read one line of console input (bounded by `timeout_ns`).
pub fn read_line(buf: &mut [u8], timeout_ns: u64) -> Result<usize, ConsoleError> {
    match CONSOLE.lock().as_mut() {
        Some(con) => con.read_line(buf, timeout_ns),
        None => Err(ConsoleError::Timeout),
    }
}

/// Take the console lock away from whoever holds it. Only for the panic
/// path: with one vCPU and no interrupts the holder is the code that
/// panicked, which will never run again.
///
/// # Safety
/// No other code may be inside a `CONSOLE.lock()` section afterwards.
pub unsafe fn force_unlock() {
    if CONSOLE.is_locked() {
        // SAFETY: forwarded from the caller's contract.
        unsafe { CONSOLE.force_unlock() };
    }
}

/// Print to the PV console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::print::_print(format_args!($($arg)*)));
}

/// Print a line to the PV console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print::_print(format_args!("{}\n", format_args!($($arg)*))));
}
