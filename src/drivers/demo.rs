//! The demo ring protocol (peer programs `xf-ring-back` / `xf-ring-front`,
//! docs/peers.md): one page in `io/ring.h` layout, request and response both
//! `{ id: u32, status: u32, operation: u32 }` (12 bytes → 256 slots). The
//! backend answers with `id` and `operation` copied and `status + 1`.
//!
//! Both ends run over [`crate::ring`] (never their own index arithmetic) and
//! get the event channel through [`Events`] + [`PeerProbe`], so host tests
//! drive a frontend against a backend on two threads over a heap page.
//!
//! Safety model: every response is copied out of the ring once, then
//! validated against the frontend's own table of outstanding requests (id
//! known and outstanding, operation echoed, status = request status + 1).
//! Any violation, and any out-of-range producer index, is a typed
//! [`DemoError`]; the endpoint then stays disconnected (every later call
//! returns the same error). Every wait is bounded: liveness is re-checked at
//! least every [`SLICE_NS`] and the whole wait gives up after the caller's
//! timeout.
//!
//! Liveness signals (docs/peers.md):
//! * guest frontend, Dom0 backend: `xf-ring-back` arms a gntdev unmap notify
//!   on our port, so a dying backend sends one last event; the kernel's
//!   [`PeerProbe::peer_gone`] then sees the port no longer interdomain. An
//!   event with no progress and the peer gone → [`DemoError::PeerGone`].
//! * guest backend, Dom0 frontend: `xf-ring-front` sets the "front alive"
//!   byte ([`ALIVE_OFFSET`], `__pad[0]`) to 1 and gntalloc's unmap notify
//!   clears it (plus an event) when the page goes away.

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use crate::event::{Events, PeerProbe};
use crate::ring::{BackRing, FrontRing, RingError, RingStats};
use crate::shared::SharedMem;

crate::pod_struct! {
    /// Demo request and response (same shape), little endian.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct DemoMsg {
        /// Request id, echoed in the response.
        pub id: u32,
        /// Request: a value; response: that value + 1.
        pub status: u32,
        /// Operation code, echoed in the response.
        pub operation: u32,
    }
}

/// Byte offset of the "front alive" flag: the first byte of the ring
/// header's `__pad` (`private.pvt_pad[0]` in older ring.h).
pub const ALIVE_OFFSET: usize = crate::xen_abi::ring::PAD;
/// Longest single sleep: liveness is re-checked at least this often.
pub const SLICE_NS: u64 = 100_000_000;

/// The backend's answer to `req`.
pub fn answer(req: DemoMsg) -> DemoMsg {
    DemoMsg {
        id: req.id,
        status: req.status.wrapping_add(1),
        operation: req.operation,
    }
}

/// Why a demo endpoint disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoError {
    /// The peer's producer index is out of range.
    Ring(RingError),
    /// A response id we never issued.
    UnknownId(u32),
    /// A response for an id already completed.
    Duplicate(u32),
    /// The response did not echo the operation.
    WrongOperation {
        /// The response's id.
        id: u32,
        /// The operation it carried.
        got: u32,
        /// The operation of the request.
        want: u32,
    },
    /// The response's status is not request status + 1.
    WrongStatus {
        /// The response's id.
        id: u32,
        /// The status it carried.
        got: u32,
        /// The status expected.
        want: u32,
    },
    /// The peer went away (`done` requests completed before that).
    PeerGone {
        /// Requests completed before the peer went.
        done: u64,
    },
    /// No progress for `ms` milliseconds.
    Timeout {
        /// The timeout that expired.
        ms: u64,
        /// Requests completed before it expired.
        done: u64,
    },
}

impl From<RingError> for DemoError {
    fn from(e: RingError) -> Self {
        DemoError::Ring(e)
    }
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DemoError::Ring(e) => write!(f, "protocol error: {e}"),
            DemoError::UnknownId(id) => write!(f, "bad response: unknown id {id:#x}"),
            DemoError::Duplicate(id) => write!(f, "bad response: duplicate id {id:#x}"),
            DemoError::WrongOperation { id, got, want } => {
                write!(f, "bad response: id {id:#x}: operation {got} want {want}")
            }
            DemoError::WrongStatus { id, got, want } => {
                write!(
                    f,
                    "bad response: id {id:#x}: status {got:#x} want {want:#x}"
                )
            }
            DemoError::PeerGone { done } => write!(f, "peer gone after {done} requests"),
            DemoError::Timeout { ms, done } => {
                write!(f, "no progress for {ms} ms after {done} requests")
            }
        }
    }
}

impl core::error::Error for DemoError {}

/// Request number `i` of a run (same shape as xf-ring-front's).
pub fn nth_request(i: u64) -> (u32, u32) {
    ((i as u32).wrapping_mul(0x9e37_79b9), (i % 7) as u32)
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The outstanding request in this slot.
    req: Option<DemoMsg>,
    /// Generation of the next id issued from this slot.
    gen: u32,
}

/// Frontend figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests pushed onto the ring.
    pub sent: u64,
    /// Responses consumed and matched to a request.
    pub completed: u64,
    /// Event-channel notifications sent.
    pub notifies: u64,
    /// Sleeps (waits for an event).
    pub waits: u64,
}

/// The frontend: owns the ring page (initialises it), issues requests with
/// ids `gen << log2(slots) | slot` (distinct for 2^32 requests) and checks
/// every response against its table. The ring view is valid for `'a`.
pub struct DemoFront<'a> {
    ring: FrontRing<'a, DemoMsg, DemoMsg>,
    port: u32,
    slots: Vec<Slot>,
    free: Vec<u32>,
    shift: u32,
    stats: FrontStats,
    failed: Option<DemoError>,
}

impl<'a> DemoFront<'a> {
    /// `SHARED_RING_INIT` on `mem` (before granting it); `port` is the
    /// event channel to the backend.
    pub fn new(mem: SharedMem<'a>, port: u32) -> Result<Self, DemoError> {
        let ring = FrontRing::init_shared(mem)?;
        let n = ring.nr_ents();
        Ok(DemoFront {
            ring,
            port,
            slots: alloc::vec![Slot::default(); n as usize],
            free: (0..n).rev().collect(),
            shift: n.trailing_zeros(),
            stats: FrontStats::default(),
            failed: None,
        })
    }

    /// Slot count.
    pub fn slots(&self) -> u32 {
        self.ring.nr_ents()
    }
    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.ring.nr_ents() - self.free.len() as u32
    }
    /// Figures so far.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }
    /// Ring counters (notifications sent vs suppressed).
    pub fn ring_stats(&self) -> RingStats {
        self.ring.stats()
    }
    /// The error that disconnected this frontend, if any.
    pub fn failed(&self) -> Option<DemoError> {
        self.failed
    }

    fn fail(&mut self, e: DemoError) -> DemoError {
        *self.failed.get_or_insert(e)
    }

    fn check(&self) -> Result<(), DemoError> {
        self.failed.map_or(Ok(()), Err)
    }

    /// Queues one request (not yet visible to the backend: see
    /// [`flush`](Self::flush)). `Ok(None)` when the ring is full.
    pub fn try_send(&mut self, status: u32, operation: u32) -> Result<Option<u32>, DemoError> {
        self.check()?;
        if self.ring.free_slots() == 0 {
            return Ok(None);
        }
        let Some(slot) = self.free.pop() else {
            return Ok(None);
        };
        let s = &mut self.slots[slot as usize];
        let id = (s.gen << self.shift) | slot;
        s.gen = s.gen.wrapping_add(1) & (u32::MAX >> self.shift);
        let req = DemoMsg {
            id,
            status,
            operation,
        };
        s.req = Some(req);
        if let Err(e) = self.ring.push_request(req) {
            // Cannot happen (free_slots checked); undo and report.
            s.req = None;
            self.free.push(slot);
            return Err(self.fail(e.into()));
        }
        self.stats.sent += 1;
        Ok(Some(id))
    }

    /// Publishes queued requests; notifies the backend if it asked.
    pub fn flush(&mut self, ev: &impl Events) {
        if self.ring.push_requests_and_check_notify() {
            ev.notify(self.port);
            self.stats.notifies += 1;
        }
    }

    /// Validates a copied-out response against the table.
    fn complete(&mut self, rsp: DemoMsg) -> Result<DemoMsg, DemoError> {
        let slot = (rsp.id & ((1 << self.shift) - 1)) as usize;
        let s = &mut self.slots[slot];
        let req = match s.req {
            Some(r) if r.id == rsp.id => r,
            _ => {
                // Issued before (its generation is behind the slot's) →
                // duplicate; otherwise never issued.
                return Err(if rsp.id >> self.shift < s.gen {
                    DemoError::Duplicate(rsp.id)
                } else {
                    DemoError::UnknownId(rsp.id)
                });
            }
        };
        if rsp.operation != req.operation {
            return Err(DemoError::WrongOperation {
                id: rsp.id,
                got: rsp.operation,
                want: req.operation,
            });
        }
        let want = req.status.wrapping_add(1);
        if rsp.status != want {
            return Err(DemoError::WrongStatus {
                id: rsp.id,
                got: rsp.status,
                want,
            });
        }
        s.req = None;
        self.free.push(slot as u32);
        self.stats.completed += 1;
        Ok(req)
    }

    /// Takes and validates the next response (the completed request).
    pub fn poll(&mut self) -> Result<Option<DemoMsg>, DemoError> {
        self.check()?;
        let rsp = match self.ring.take_response() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e.into())),
        };
        match self.complete(rsp) {
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Sends requests `first..first+count` ([`nth_request`]), keeping the
    /// ring as full as it gets, until all are answered. Gives up after
    /// `timeout_ns` without progress, or when the backend is gone.
    pub fn run(
        &mut self,
        ev: &(impl Events + PeerProbe),
        first: u64,
        count: u64,
        timeout_ns: u64,
    ) -> Result<FrontStats, DemoError> {
        let (mut next, end) = (first, first + count);
        let done_at_start = self.stats.completed;
        let mut last_progress = ev.now_ns();
        loop {
            self.check()?;
            ev.clear(self.port);
            let mut progress = false;
            while next < end {
                let (status, op) = nth_request(next);
                if self.try_send(status, op)?.is_none() {
                    break;
                }
                next += 1;
                progress = true;
            }
            if progress {
                self.flush(ev);
            }
            while self.poll()?.is_some() {
                progress = true;
            }
            let done = self.stats.completed - done_at_start;
            if done == count {
                return Ok(self.stats);
            }
            let now = ev.now_ns();
            if progress {
                last_progress = now;
                continue;
            }
            match self.ring.final_check_for_responses() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(self.fail(e.into())),
            }
            if ev.peer_gone(self.port) {
                return Err(self.fail(DemoError::PeerGone { done }));
            }
            let waited = now.saturating_sub(last_progress);
            if waited >= timeout_ns {
                return Err(self.fail(DemoError::Timeout {
                    ms: waited / 1_000_000,
                    done,
                }));
            }
            self.stats.waits += 1;
            ev.wait(self.port, now + SLICE_NS.min(timeout_ns - waited).max(1));
        }
    }
}

/// Backend figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    /// Responses pushed onto the ring.
    pub answered: u64,
    /// Event-channel notifications sent.
    pub notifies: u64,
    /// Sleeps waiting for a request.
    pub waits: u64,
}

/// Why [`DemoBack::serve`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackEnd {
    /// The requested number of requests was answered.
    Count,
    /// The frontend went away (alive byte cleared, or port closed).
    FrontGone,
}

/// The backend: attaches to a ring the frontend initialised. The ring view
/// is valid for `'a`.
pub struct DemoBack<'a> {
    ring: BackRing<'a, DemoMsg, DemoMsg>,
    mem: SharedMem<'a>,
    port: u32,
    alive_byte: bool,
    stats: BackStats,
    failed: Option<DemoError>,
}

impl<'a> DemoBack<'a> {
    /// `BACK_RING_ATTACH`. With `alive_byte`, the frontend's flag at
    /// [`ALIVE_OFFSET`] must be non-zero, and its clearing ends the service.
    pub fn attach(mem: SharedMem<'a>, port: u32, alive_byte: bool) -> Result<Self, DemoError> {
        let ring = BackRing::attach(mem.clone())?;
        Ok(DemoBack {
            ring,
            mem,
            port,
            alive_byte,
            stats: BackStats::default(),
            failed: None,
        })
    }

    /// Figures so far.
    pub fn stats(&self) -> BackStats {
        self.stats
    }

    /// Whether the frontend is gone (alive byte cleared or port closed).
    pub fn front_gone(&self, ev: &impl PeerProbe) -> bool {
        (self.alive_byte && self.mem.load_u8(ALIVE_OFFSET) == 0) || ev.peer_gone(self.port)
    }

    fn fail(&mut self, e: DemoError) -> DemoError {
        *self.failed.get_or_insert(e)
    }

    /// Answers requests until `count` (if given) are answered or the
    /// frontend is gone. Requests still in the ring when the frontend's
    /// departure is seen are answered first. `idle_ns` bounds each wait
    /// without requests (→ [`DemoError::Timeout`]).
    pub fn serve(
        &mut self,
        ev: &(impl Events + PeerProbe),
        count: Option<u64>,
        idle_ns: u64,
    ) -> Result<BackEnd, DemoError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut last_progress = ev.now_ns();
        // At most one ring's worth of requests per round: a frontend that
        // produces without pause still gets its answers published and
        // notified, and its leaving is noticed.
        let batch = u64::from(self.ring.nr_ents());
        loop {
            ev.clear(self.port);
            let mut taken = 0u64;
            while taken < batch && count.is_none_or(|c| self.stats.answered < c) {
                let req = match self.ring.take_request() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return Err(self.fail(e.into())),
                };
                if let Err(e) = self.ring.push_response(answer(req)) {
                    return Err(self.fail(e.into()));
                }
                self.stats.answered += 1;
                taken += 1;
            }
            let any = taken > 0;
            if any && self.ring.push_responses_and_check_notify() {
                ev.notify(self.port);
                self.stats.notifies += 1;
            }
            if count.is_some_and(|c| self.stats.answered >= c) {
                return Ok(BackEnd::Count);
            }
            if self.front_gone(ev) {
                return Ok(BackEnd::FrontGone);
            }
            let now = ev.now_ns();
            if any {
                last_progress = now;
                continue;
            }
            match self.ring.final_check_for_requests() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Err(self.fail(e.into())),
            }
            let waited = now.saturating_sub(last_progress);
            if waited >= idle_ns {
                return Err(self.fail(DemoError::Timeout {
                    ms: waited / 1_000_000,
                    done: self.stats.answered,
                }));
            }
            self.stats.waits += 1;
            ev.wait(self.port, now + SLICE_NS.min(idle_ns - waited).max(1));
        }
    }
}

#[cfg(test)]
mod tests;
