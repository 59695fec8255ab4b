//! The kernel side of XenStore (guest only): an [`XsTransport`] over the
//! store ring's event channel, one global client, and the
//! `control/shutdown` watch that lets `xl shutdown` / `xl reboot` end the
//! guest.
//!
//! Waiting: `wait` polls the store port (SCHEDOP_poll via `event::wait`)
//! until the request's deadline and clears the pending bit *after* waking,
//! before the client re-reads the ring, so an event can never be lost
//! between the client's last check and the poll. The client gives each
//! request one deadline (`now + timeout_ns`, Xen system time) and returns
//! `Error::Timeout` once it has passed, however often the port fires.

extern crate alloc;

use core::fmt;

use spin::Mutex;

use super::client::{XenStore, XsTransport};
use super::wire::{Error, TxId, WatchEvent, XsError};
use crate::event;
use crate::hypercall::ShutdownReason;
use crate::platform::RingPage;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::time;

/// Default limit for one request to xenstored (the nested lab is slow).
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;

/// The request limit [`init`] starts with (kernel option `xf.xs-timeout`).
static INIT_TIMEOUT_NS: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(DEFAULT_TIMEOUT_NS);

/// Sets the request limit the client starts with (before [`init`]).
pub fn set_default_timeout(ns: u64) {
    INIT_TIMEOUT_NS.store(ns, core::sync::atomic::Ordering::Relaxed);
}

/// Event-channel transport of the store ring.
pub struct EvtchnTransport {
    port: u32,
    /// Limit for one request, from sending to its reply.
    pub timeout_ns: u64,
    /// Event-channel notifications sent.
    pub notifies: u64,
    /// Sleeps waiting for xenstored.
    pub waits: u64,
}

impl XsTransport for EvtchnTransport {
    fn notify(&mut self) {
        self.notifies += 1;
        event::notify(self.port);
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn timeout_ns(&self) -> u64 {
        self.timeout_ns
    }

    fn wait(&mut self, deadline_ns: u64) {
        self.waits += 1;
        wait_port(self.port, deadline_ns);
    }
}

/// Polls the store port until it has an event or `deadline_ns` passes.
/// The pending bit is cleared after waking and before the caller re-reads
/// the ring: an event arriving later stays pending for the next wait.
fn wait_port(port: u32, deadline_ns: u64) {
    event::wait(port, deadline_ns);
    event::clear_pending(port);
}

/// Blocks until xenstored signals the store port or `deadline_ns`
/// ([`time::now_ns`] scale) passes, without holding the client; the
/// caller then looks at the ring again (e.g. for watch events).
pub fn wait_event(deadline_ns: u64) -> Result<(), StoreError> {
    wait_port(port().ok_or(StoreError::NotInitialised)?, deadline_ns);
    Ok(())
}

/// The kernel's XenStore client: the pure client over the event channel.
pub type Client = XenStore<'static, EvtchnTransport>;

static STORE: Mutex<Option<Client>> = Mutex::new(None);

/// Why the global client is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The platform has no XenStore ring.
    NoRing,
    /// `init` has not run.
    NotInitialised,
    /// The client failed.
    Xs(Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NoRing => write!(f, "no XenStore ring"),
            StoreError::NotInitialised => write!(f, "XenStore not initialised"),
            StoreError::Xs(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for StoreError {}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        StoreError::Xs(e)
    }
}

/// Connect to the store ring of the platform. Idempotent.
pub fn init(ring: Option<RingPage>) -> Result<(), StoreError> {
    let ring = ring.ok_or(StoreError::NoRing)?;
    let mut g = STORE.lock();
    if g.is_none() {
        // SAFETY: the entry path found the store page in the start-of-day
        // mapping, which stays for the life of the kernel ('static); it is
        // shared with xenstored only and reached only via this SharedMem.
        let mem = unsafe { SharedMem::from_raw(ring.va as *mut u8, PAGE_SIZE) };
        let t = EvtchnTransport {
            port: ring.port,
            timeout_ns: INIT_TIMEOUT_NS.load(core::sync::atomic::Ordering::Relaxed),
            notifies: 0,
            waits: 0,
        };
        *g = Some(XenStore::new(mem, t)?);
    }
    Ok(())
}

/// Run `f` with the global client (single vCPU: the lock is never
/// contended; do not nest).
pub fn with<R>(f: impl FnOnce(&mut Client) -> Result<R, Error>) -> Result<R, StoreError> {
    let mut g = STORE.lock();
    let c = g.as_mut().ok_or(StoreError::NotInitialised)?;
    Ok(f(c)?)
}

/// The store ring's event channel, once connected.
pub fn port() -> Option<u32> {
    STORE.lock().as_ref().map(|c| c.transport().port)
}

/// Set the limit of each request to xenstored.
pub fn set_timeout(ns: u64) {
    if let Some(c) = STORE.lock().as_mut() {
        c.transport_mut().timeout_ns = ns;
    }
}

// ------------------------------------------------------- application calls
//
// Paths are absolute (`/local/domain/0/...`) or relative to this domain's
// home (`/local/domain/<domid>/`). Each call is one request with the
// client's timeout; [`transaction`] retries its body on `EAGAIN`.

/// `READ`: the raw value of `path`.
pub fn read(path: &str) -> Result<alloc::vec::Vec<u8>, StoreError> {
    with(|c| c.read(TxId::NONE, path))
}

/// `READ` of a UTF-8 value.
pub fn read_string(path: &str) -> Result<alloc::string::String, StoreError> {
    with(|c| c.read_string(TxId::NONE, path))
}

/// `READ` of a decimal number; a value that is not one is an error that
/// names it.
pub fn read_u64(path: &str) -> Result<u64, StoreError> {
    with(|c| c.read_u64(TxId::NONE, path))
}

/// `WRITE`: set `path` to `value` (creating it and missing parents).
pub fn write(path: &str, value: &[u8]) -> Result<(), StoreError> {
    with(|c| c.write(TxId::NONE, path, value))
}

/// `RM`: remove `path` and everything below it.
pub fn rm(path: &str) -> Result<(), StoreError> {
    with(|c| c.rm(TxId::NONE, path))
}

/// `DIRECTORY`: the names of `path`'s children.
pub fn list(path: &str) -> Result<alloc::vec::Vec<alloc::string::String>, StoreError> {
    with(|c| c.directory(TxId::NONE, path))
}

/// Runs `body` in a transaction, redoing it when xenstored answers
/// `EAGAIN` (another writer got there first), up to
/// [`crate::xenstore::MAX_TRANSACTION_RETRIES`] times.
pub fn transaction<R>(
    body: impl FnMut(&mut Client, TxId) -> Result<R, Error>,
) -> Result<R, StoreError> {
    with(|c| c.transaction(body))
}

/// Writes every `(path, value)` and gives each the permissions `perms`, in
/// one transaction: a peer watching the directory sees all keys or none.
pub fn publish(
    entries: &[(&str, &[u8])],
    perms: &[crate::xenstore::Perm],
) -> Result<(), StoreError> {
    transaction(|c, tx| {
        for (k, v) in entries {
            c.write(tx, k, v)?;
            if !perms.is_empty() {
                c.set_perms(tx, k, perms)?;
            }
        }
        Ok(())
    })
}

/// A XenStore watch of this guest; removed when dropped.
pub struct Watch {
    path: alloc::string::String,
    token: alloc::string::String,
}

static NEXT_WATCH: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

impl Watch {
    /// Watches `path` and everything below it. xenstored fires once at
    /// once (so nothing that happened before is missed), then on each
    /// change.
    pub fn new(path: &str) -> Result<Watch, StoreError> {
        let n = NEXT_WATCH.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let w = Watch {
            path: alloc::string::String::from(path),
            token: alloc::format!("xf-app-{n}"),
        };
        with(|c| c.watch(&w.path, &w.token))?;
        Ok(w)
    }

    /// The next change below the watched path (the path that changed), or
    /// `None` once `deadline_ns` ([`time::now_ns`] scale) has passed.
    pub fn next(&mut self, deadline_ns: u64) -> Result<Option<alloc::string::String>, StoreError> {
        loop {
            let ev = with(|c| c.take_watch_event(&self.token))?;
            if let Some(ev) = ev {
                return Ok(Some(ev.path));
            }
            if time::now_ns() >= deadline_ns {
                return Ok(None);
            }
            wait_event(deadline_ns)?;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = with(|c| c.unwatch(&self.path, &self.token));
        let _ = with(|c| c.take_watch_events(&self.token));
    }
}

// ---------------------------------------------------------- control/shutdown

const SHUTDOWN_PATH: &str = "control/shutdown";
/// Token of the kernel's `control/shutdown` watch.
pub const SHUTDOWN_TOKEN: &str = "xf-control-shutdown";

/// A `control/shutdown` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` or `halt` (`xl shutdown`).
    Poweroff,
    /// `reboot` (`xl reboot`).
    Reboot,
}

impl ShutdownRequest {
    /// The `SCHEDOP_shutdown` reason that carries out the request.
    pub fn reason(self) -> ShutdownReason {
        match self {
            ShutdownRequest::Poweroff => ShutdownReason::Poweroff,
            ShutdownRequest::Reboot => ShutdownReason::Reboot,
        }
    }
    /// `poweroff` / `reboot`.
    pub fn name(self) -> &'static str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
        }
    }
}

/// What a `control/shutdown` value asks for. `""` (acknowledged / none) →
/// `Ok(None)`; anything we do not implement → `Err(value)`.
pub fn parse_shutdown(value: &[u8]) -> Result<Option<ShutdownRequest>, &[u8]> {
    let v = value.strip_suffix(&[0]).unwrap_or(value);
    match v {
        b"" => Ok(None),
        b"poweroff" | b"halt" => Ok(Some(ShutdownRequest::Poweroff)),
        b"reboot" => Ok(Some(ShutdownRequest::Reboot)),
        other => Err(other),
    }
}

/// Advertise `control/feature-poweroff` and `-reboot` and watch
/// `control/shutdown`. Events for it are then consumed by [`next_event`].
pub fn watch_shutdown() -> Result<(), StoreError> {
    with(|c| {
        c.write(TxId::NONE, "control/feature-poweroff", b"1")?;
        c.write(TxId::NONE, "control/feature-reboot", b"1")?;
        c.watch(SHUTDOWN_PATH, SHUTDOWN_TOKEN)
    })
}

/// Read and acknowledge (write `""`, in one transaction, like Linux)
/// `control/shutdown`. `Ok(None)` if nothing is requested.
pub fn take_shutdown_request() -> Result<Option<ShutdownRequest>, ShutdownError> {
    let value = with(|c| {
        c.transaction(|c, tx| {
            let v = match c.read(tx, SHUTDOWN_PATH) {
                Ok(v) => v,
                Err(Error::Xs(XsError::ENOENT)) => return Ok(alloc::vec::Vec::new()),
                Err(e) => return Err(e),
            };
            if !v.is_empty() {
                c.write(tx, SHUTDOWN_PATH, b"")?;
            }
            Ok(v)
        })
    })
    .map_err(ShutdownError::Store)?;
    parse_shutdown(&value).map_err(|v| ShutdownError::BadValue(BadValue::new(v)))
}

/// An unexpected `control/shutdown` value, kept for the error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    bytes: [u8; 32],
    len: usize,
    truncated: bool,
}

impl BadValue {
    fn new(v: &[u8]) -> BadValue {
        let mut bytes = [0u8; 32];
        let len = v.len().min(32);
        bytes[..len].copy_from_slice(&v[..len]);
        BadValue {
            bytes,
            len,
            truncated: v.len() > 32,
        }
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in &self.bytes[..self.len] {
            for c in core::ascii::escape_default(b) {
                fmt::Write::write_char(f, c as char)?;
            }
        }
        f.write_str(if self.truncated { "\"..." } else { "\"" })
    }
}

/// Failure while handling `control/shutdown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownError {
    /// Reading or clearing `control/shutdown` failed.
    Store(StoreError),
    /// `control/shutdown` held a value we do not know.
    BadValue(BadValue),
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::Store(e) => write!(f, "{e}"),
            ShutdownError::BadValue(v) => write!(f, "unsupported value {v}"),
        }
    }
}

impl core::error::Error for ShutdownError {}

/// What [`next_event`] saw.
#[derive(Debug)]
pub enum Event {
    /// A watch of the caller fired.
    Watch(WatchEvent),
    /// Dom0 asked us to shut down (already acknowledged).
    Shutdown(ShutdownRequest),
}

/// Waits for the next watch event (at most one transport timeout; returns
/// `Ok(None)` if none came). `control/shutdown` events are handled here:
/// empty values (the initial fire, our own acknowledgement) are skipped, a
/// request comes back as [`Event::Shutdown`].
pub fn next_event() -> Result<Option<Event>, ShutdownError> {
    let ev = match with(|c| c.next_watch_event()) {
        Ok(ev) => ev,
        Err(StoreError::Xs(Error::Timeout)) => return Ok(None),
        Err(e) => return Err(ShutdownError::Store(e)),
    };
    if ev.token != SHUTDOWN_TOKEN {
        return Ok(Some(Event::Watch(ev)));
    }
    Ok(take_shutdown_request()?.map(Event::Shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_values() {
        assert_eq!(parse_shutdown(b""), Ok(None));
        assert_eq!(
            parse_shutdown(b"poweroff"),
            Ok(Some(ShutdownRequest::Poweroff))
        );
        assert_eq!(
            parse_shutdown(b"reboot\0"),
            Ok(Some(ShutdownRequest::Reboot))
        );
        assert_eq!(parse_shutdown(b"suspend"), Err(&b"suspend"[..]));
        assert_eq!(
            alloc::format!("{}", BadValue::new(b"x\"\xff")),
            "\"x\\\"\\xff\""
        );
    }
}
