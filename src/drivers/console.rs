//! PV console over the `xencons_interface` ring (io/console.h).
//!
//! Layout of the page
//! ([`XenconsInterface`](crate::xen_abi::console::XenconsInterface)):
//! `in[1024]` (backend → guest), `out[2048]` (guest → backend), then the
//! u32 indices in_cons, in_prod, out_cons, out_prod. Indices are
//! free-running; the slot is `idx & (size - 1)`. The backend is
//! xenconsoled in Dom0.
//!
//! We keep private copies of the indices we own (out_prod, in_cons) and never
//! trust the peer's: every value read from the page is checked
//! (`prod - cons <= size`) before it is used, and a bad one puts the console
//! into a `Broken` state that drops further I/O instead of corrupting memory.
//! Every wait is bounded by a deadline and a maximum number of wake-ups.

extern crate alloc;

use core::fmt;

use crate::event::Events;
use crate::shared::{mb, wmb, SharedMem, PAGE_SIZE};
use crate::xen_abi::console::{
    IN as IN_OFF, IN_CONS, IN_PROD, IN_SIZE, OUT as OUT_OFF, OUT_CONS, OUT_PROD, OUT_SIZE,
};

/// How long one wait for the backend may take (ring full, flush).
pub const WAIT_TIMEOUT_NS: u64 = 2_000_000_000;
/// Upper bound on wake-ups per wait, in case time does not advance.
pub const MAX_WAKEUPS: u32 = 100_000;

/// Why console I/O was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The backend published an index that violates `prod - cons <= size`.
    BadIndex {
        /// The producer index read from the page.
        prod: u32,
        /// The consumer index read from the page.
        cons: u32,
    },
    /// The backend did not make room / catch up before the deadline.
    Timeout,
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::BadIndex { prod, cons } => {
                write!(f, "bad ring index (prod {prod:#x} cons {cons:#x})")
            }
            ConsoleError::Timeout => write!(f, "backend timed out"),
        }
    }
}

impl core::error::Error for ConsoleError {}

/// Bytes in flight between `cons` and `prod` in a ring of `size`, if sane.
pub fn ring_used(prod: u32, cons: u32, size: u32) -> Result<u32, ConsoleError> {
    let used = prod.wrapping_sub(cons);
    if used > size {
        Err(ConsoleError::BadIndex { prod, cons })
    } else {
        Ok(used)
    }
}

/// The PV console driver, over a view of the console page valid for `'a`.
pub struct Console<'a, E: Events> {
    page: SharedMem<'a>,
    port: u32,
    events: E,
    out_prod: u32,
    in_cons: u32,
    broken: Option<ConsoleError>,
    /// The backend let a wait time out: until it makes room again, output
    /// that does not fit is dropped instead of waited for.
    stalled: bool,
    /// Bytes dropped while stalled, reported once the backend is back.
    dropped: u64,
}

impl<'a, E: Events> Console<'a, E> {
    /// Take over the console ring in `page` (one page) with event `port`.
    /// Picks up the indices already on the page (the builder starts them at 0).
    pub fn new(page: SharedMem<'a>, port: u32, events: E) -> Self {
        assert!(page.len() >= PAGE_SIZE, "console page too small");
        let out_prod = page.load_u32(OUT_PROD);
        let in_cons = page.load_u32(IN_CONS);
        Console {
            page,
            port,
            events,
            out_prod,
            in_cons,
            broken: None,
            stalled: false,
            dropped: 0,
        }
    }

    /// Bytes dropped so far because the backend stalled.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The first error that disabled the console, if any.
    pub fn broken(&self) -> Option<ConsoleError> {
        self.broken
    }

    fn fail(&mut self, e: ConsoleError) -> ConsoleError {
        if self.broken.is_none() {
            self.broken = Some(e);
        }
        e
    }

    /// Validated out-ring fill level.
    fn out_used(&mut self) -> Result<u32, ConsoleError> {
        let cons = self.page.load_u32(OUT_CONS);
        ring_used(self.out_prod, cons, OUT_SIZE).map_err(|e| self.fail(e))
    }

    /// Wait (bounded) until `done(used)` holds for the out ring.
    fn wait_out(&mut self, done: impl Fn(u32) -> bool) -> Result<u32, ConsoleError> {
        let deadline = self.events.now_ns().saturating_add(WAIT_TIMEOUT_NS);
        for _ in 0..MAX_WAKEUPS {
            self.events.clear(self.port);
            let used = self.out_used()?;
            if done(used) {
                return Ok(used);
            }
            if self.events.now_ns() >= deadline {
                break;
            }
            self.events.notify(self.port);
            self.events.wait(self.port, deadline);
        }
        // Not sticky: a slow backend may come back (a protocol violation,
        // BadIndex, is what disables the console).
        Err(ConsoleError::Timeout)
    }

    /// Queue `bytes` for output. Does not notify unless the ring fills up:
    /// call [`Console::notify`] after a batch (the print macros do).
    ///
    /// A backend that does not make room within the wait limit gets
    /// [`ConsoleError::Timeout`] once; from then on output that does not
    /// fit is dropped without waiting (counted by [`Console::dropped`])
    /// until the backend consumes again, when a
    /// `[console: <n> bytes dropped]` line tells the reader.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        if self.stalled {
            if self.out_used()? == OUT_SIZE {
                self.dropped += bytes.len() as u64;
                return Ok(());
            }
            self.stalled = false;
            let note = alloc::format!("\n[console: {} bytes dropped]\n", self.dropped);
            self.put(note.as_bytes())?;
        }
        self.put(bytes)
    }

    fn put(&mut self, mut bytes: &[u8]) -> Result<(), ConsoleError> {
        while !bytes.is_empty() {
            let mut used = self.out_used()?;
            if used == OUT_SIZE {
                used = match self.wait_out(|u| u < OUT_SIZE) {
                    Ok(u) => u,
                    Err(ConsoleError::Timeout) => {
                        self.stalled = true;
                        self.dropped += bytes.len() as u64;
                        return Err(ConsoleError::Timeout);
                    }
                    Err(e) => return Err(e),
                };
            }
            let n = ((OUT_SIZE - used) as usize).min(bytes.len());
            let (chunk, rest) = bytes.split_at(n);
            let start = (self.out_prod & (OUT_SIZE - 1)) as usize;
            // Copy in at most two pieces (the ring may wrap).
            let first = chunk.len().min(OUT_SIZE as usize - start);
            self.page.copy_in(OUT_OFF + start, &chunk[..first]);
            self.page.copy_in(OUT_OFF, &chunk[first..]);
            wmb(); // data before the index
            self.out_prod = self.out_prod.wrapping_add(n as u32);
            self.page.store_u32(OUT_PROD, self.out_prod);
            bytes = rest;
        }
        Ok(())
    }

    /// Tell the backend there is output (or that we consumed input).
    pub fn notify(&self) {
        if self.broken.is_none() {
            self.events.notify(self.port);
        }
    }

    /// Notify, then wait (bounded) until the backend consumed all output.
    pub fn flush(&mut self) -> Result<(), ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        self.notify();
        self.wait_out(|u| u == 0).map(drop)
    }

    /// Non-blocking read of pending input; returns the number of bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let prod = self.page.load_u32(IN_PROD); // Acquire: data after index
        let avail = ring_used(prod, self.in_cons, IN_SIZE).map_err(|e| self.fail(e))?;
        let n = (avail as usize).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let start = (self.in_cons & (IN_SIZE - 1)) as usize;
        let first = n.min(IN_SIZE as usize - start);
        self.page.copy_out(IN_OFF + start, &mut buf[..first]);
        self.page.copy_out(IN_OFF, &mut buf[first..n]);
        mb(); // finish reading before handing the space back
        self.in_cons = self.in_cons.wrapping_add(n as u32);
        self.page.store_u32(IN_CONS, self.in_cons);
        self.events.notify(self.port);
        Ok(n)
    }

    /// Read at least one byte, waiting (bounded) up to `timeout_ns`.
    pub fn read_wait(&mut self, buf: &mut [u8], timeout_ns: u64) -> Result<usize, ConsoleError> {
        let deadline = self.events.now_ns().saturating_add(timeout_ns);
        for _ in 0..MAX_WAKEUPS {
            self.events.clear(self.port);
            let n = self.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.events.now_ns() >= deadline {
                break;
            }
            self.events.wait(self.port, deadline);
        }
        Err(ConsoleError::Timeout)
    }

    /// Read one line of input (up to `\r` or `\n`, not included) into
    /// `buf`, waiting (bounded) until `timeout_ns` from now. Leading line
    /// terminators are skipped; a full `buf` ends the line early.
    pub fn read_line(&mut self, buf: &mut [u8], timeout_ns: u64) -> Result<usize, ConsoleError> {
        let deadline = self.events.now_ns().saturating_add(timeout_ns);
        let mut len = 0;
        while len < buf.len() {
            let left = deadline.saturating_sub(self.events.now_ns());
            let mut byte = [0u8; 1];
            if self.read_wait(&mut byte, left)? == 0 {
                return Err(ConsoleError::Timeout);
            }
            match byte[0] {
                b'\r' | b'\n' if len == 0 => {}
                b'\r' | b'\n' => break,
                b => {
                    buf[len] = b;
                    len += 1;
                }
            }
        }
        Ok(len)
    }
}

impl<E: Events> fmt::Write for Console<'_, E> {
    /// Never fails: output that cannot be delivered is dropped (a console
    /// error must not turn into a panic, which would print again).
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let _ = self.write(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::TestPages;
    use core::cell::Cell;
    use std::vec::Vec;

    /// A fake xenconsoled: on every wait it consumes up to `chunk` bytes.
    struct Backend<'a> {
        page: SharedMem<'a>,
        chunk: u32,
        log: core::cell::RefCell<Vec<u8>>,
        notifies: Cell<u32>,
        clock: Cell<u64>,
    }

    impl Backend<'_> {
        fn drain(&self, max: u32) {
            let prod = self.page.load_u32(OUT_PROD);
            let mut cons = self.page.load_u32(OUT_CONS);
            let mut k = 0;
            while cons != prod && k < max {
                let b: u8 = self.page.read(OUT_OFF + (cons & (OUT_SIZE - 1)) as usize);
                self.log.borrow_mut().push(b);
                cons = cons.wrapping_add(1);
                k += 1;
            }
            self.page.store_u32(OUT_CONS, cons);
        }
    }

    impl Events for &Backend<'_> {
        fn notify(&self, _port: u32) {
            self.notifies.set(self.notifies.get() + 1);
        }
        fn clear(&self, _port: u32) {}
        fn wait(&self, _port: u32, _deadline: u64) {
            self.clock.set(self.clock.get() + 1_000_000);
            self.drain(self.chunk);
        }
        fn now_ns(&self) -> u64 {
            self.clock.get()
        }
    }

    fn backend(pages: &TestPages, chunk: u32) -> Backend<'_> {
        Backend {
            page: pages.mem(),
            chunk,
            log: Default::default(),
            notifies: Cell::new(0),
            clock: Cell::new(0),
        }
    }

    #[test]
    fn ring_used_checks_indices() {
        assert_eq!(ring_used(5, 3, 2048), Ok(2));
        assert_eq!(ring_used(2, u32::MAX - 1, 2048), Ok(4)); // wrapped
        assert_eq!(ring_used(2048, 0, 2048), Ok(2048));
        assert!(ring_used(2049, 0, 2048).is_err());
        assert!(ring_used(0, 1, 2048).is_err()); // cons ahead of prod
    }

    #[test]
    fn output_wraps_and_flushes() {
        let pages = TestPages::new(1);
        let be = backend(&pages, 700);
        // Start near the u32 wrap to exercise free-running indices.
        pages.mem().store_u32(OUT_PROD, u32::MAX - 10);
        pages.mem().store_u32(OUT_CONS, u32::MAX - 10);
        let mut con = Console::new(pages.mem(), 3, &be);
        let text: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        con.write(&text).unwrap(); // more than the ring: must wait for room
        con.flush().unwrap();
        assert_eq!(*be.log.borrow(), text);
        assert!(be.notifies.get() > 0);
        assert_eq!(con.broken(), None);
    }

    #[test]
    fn stuck_backend_times_out() {
        let pages = TestPages::new(1);
        let be = backend(&pages, 0);
        let mut con = Console::new(pages.mem(), 3, &be);
        con.write(b"hello").unwrap();
        assert_eq!(con.flush(), Err(ConsoleError::Timeout));
        // Bounded: 2 s of fake time at 1 ms per wait.
        assert!(be.clock.get() <= WAIT_TIMEOUT_NS + 1_000_000);
    }

    #[test]
    fn stalled_backend_is_not_fatal() {
        let pages = TestPages::new(1);
        let be = backend(&pages, 0);
        let mut con = Console::new(pages.mem(), 3, &be);
        let fill: Vec<u8> = std::vec![b'.'; OUT_SIZE as usize];
        con.write(&fill).unwrap();
        // The backend stalls: one timeout, then no more waiting.
        assert_eq!(con.write(b"lost line\n"), Err(ConsoleError::Timeout));
        let t = be.clock.get();
        con.write(b"also lost\n").unwrap();
        assert_eq!(be.clock.get(), t, "waited again on a stalled backend");
        assert_eq!(con.dropped(), 20);
        // It comes back: later lines (the verdict, a panic) get through.
        be.drain(u32::MAX);
        con.write(b"Test result: SUCCESS\n").unwrap();
        be.drain(u32::MAX);
        let log = std::string::String::from_utf8(be.log.borrow().clone()).unwrap();
        assert!(
            log.ends_with("\n[console: 20 bytes dropped]\nTest result: SUCCESS\n"),
            "{:?}",
            &log[log.len().saturating_sub(80)..]
        );
        assert_eq!(con.broken(), None);
    }

    #[test]
    fn bogus_out_cons_breaks_console() {
        let pages = TestPages::new(1);
        let be = backend(&pages, 0);
        let mut con = Console::new(pages.mem(), 3, &be);
        pages.mem().store_u32(OUT_CONS, 5000); // ahead of our prod (0)
        assert!(matches!(
            con.write(b"x"),
            Err(ConsoleError::BadIndex { .. })
        ));
        assert!(con.write(b"y").is_err());
        assert_eq!(pages.mem().load_u32(OUT_PROD), 0);
    }

    #[test]
    fn input_is_read_and_validated() {
        let pages = TestPages::new(1);
        let be = backend(&pages, 0);
        let mem = pages.mem();
        mem.store_u32(IN_CONS, 1020);
        mem.store_u32(IN_PROD, 1020);
        let mut con = Console::new(pages.mem(), 3, &be);
        // Backend writes 8 bytes across the wrap.
        for (i, b) in b"abcdefgh".iter().enumerate() {
            mem.write(IN_OFF + ((1020 + i) & 1023), *b);
        }
        mem.store_u32(IN_PROD, 1028);
        let mut buf = [0u8; 5];
        assert_eq!(con.read(&mut buf), Ok(5));
        assert_eq!(&buf, b"abcde");
        assert_eq!(con.read(&mut buf), Ok(3));
        assert_eq!(&buf[..3], b"fgh");
        assert_eq!(mem.load_u32(IN_CONS), 1028);
        assert_eq!(
            con.read_wait(&mut buf, 5_000_000),
            Err(ConsoleError::Timeout)
        );
        // A line split over two deliveries, after a stray terminator.
        for (i, b) in b"\nping\r".iter().enumerate() {
            mem.write(IN_OFF + ((1028 + i) & 1023), *b);
        }
        mem.store_u32(IN_PROD, 1028 + 6);
        let mut line = [0u8; 16];
        assert_eq!(con.read_line(&mut line, 5_000_000), Ok(4));
        assert_eq!(&line[..4], b"ping");
        assert_eq!(
            con.read_line(&mut line, 5_000_000),
            Err(ConsoleError::Timeout)
        );
        mem.store_u32(IN_PROD, 1034 + 2000); // too far ahead
        assert!(matches!(
            con.read(&mut buf),
            Err(ConsoleError::BadIndex { .. })
        ));
    }
}
