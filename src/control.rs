//! `control/shutdown` (xs_wire.h, docs/misc/xenstore-paths): the toolstack's
//! requests to power off or reboot (`xl shutdown`, `xl reboot`), delivered
//! to the application so it can finish cleanly.
//!
//! The kernel advertises `control/feature-poweroff` and `-reboot` and
//! watches `control/shutdown` before the application starts. A request is
//! acknowledged (the key rewritten to `""`, as Linux does) when the
//! application first sees it and stays visible to every later [`poll`].
//! A value xenfront does not implement is bad input from Dom0: the kernel
//! prints `error: control/shutdown: unsupported value "<value>"` and
//! crashes.

use spin::Mutex;

use crate::hypercall::ShutdownReason;
use crate::kernel;
use crate::time;
use crate::xenstore::{self, ShutdownError};

pub use crate::xenstore::ShutdownRequest;

/// A request already taken from XenStore (sticky).
static REQUESTED: Mutex<Option<ShutdownRequest>> = Mutex::new(None);

/// Has the toolstack asked us to shut down? Never blocks.
pub fn poll() -> Option<ShutdownRequest> {
    if let Some(r) = *REQUESTED.lock() {
        return Some(r);
    }
    // The watch fires once when set, once per request and once more for
    // our own acknowledgement: only a fire makes reading the key worth it.
    let fired = xenstore::with(|c| c.take_watch_events(xenstore::SHUTDOWN_TOKEN)).unwrap_or(0);
    if fired == 0 {
        return None;
    }
    match xenstore::take_shutdown_request() {
        Ok(Some(r)) => {
            *REQUESTED.lock() = Some(r);
            Some(r)
        }
        Ok(None) => None,
        Err(ShutdownError::BadValue(v)) => {
            crate::println!("error: control/shutdown: unsupported value {v}");
            kernel::finish(ShutdownReason::Crash)
        }
        Err(ShutdownError::Store(e)) => {
            crate::println!("warning: control/shutdown: {e}");
            None
        }
    }
}

/// Waits for a request until `deadline_ns` ([`time::now_ns`] scale).
pub fn wait(deadline_ns: u64) -> Option<ShutdownRequest> {
    loop {
        if let Some(r) = poll() {
            return Some(r);
        }
        let now = time::now_ns();
        if now >= deadline_ns {
            return None;
        }
        if xenstore::wait_event(deadline_ns).is_err() {
            time::sleep_until(deadline_ns);
        }
    }
}

/// Shuts the domain down now with `reason` (the console is flushed first).
pub fn exit(reason: ShutdownReason) -> ! {
    kernel::finish(reason)
}

/// Carries out a request: flush the console, then `SCHEDOP_shutdown` with
/// the matching reason.
pub fn obey(request: ShutdownRequest) -> ! {
    kernel::finish(request.reason())
}
