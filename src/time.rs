//! Time: Xen system time (monotonic ns since Xen booted) from
//! `vcpu_info[0]` in shared_info extrapolated with the TSC, the wall clock
//! from shared_info, and one-shot timers on VIRQ_TIMER (guest-abi.md §7).
//!
//! Timers: a small sorted list ([`TimerList`]); the earliest deadline is
//! programmed with `set_timer_op`, the VIRQ_TIMER handler runs the expired
//! callbacks (in upcall context) and re-programs the next one. [`sleep`]
//! blocks on a timer of its own until the clock says the deadline has passed,
//! so early or spurious wakeups only cost another round.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use crate::event;
use crate::hypercall::{self, Errno};
use crate::xen_abi::xen::{
    VCPU0_SYSTEM_TIME, VCPU0_TIME_VERSION, VCPU0_TSC_SHIFT, VCPU0_TSC_TIMESTAMP,
    VCPU0_TSC_TO_SYSTEM_MUL, WC_NSEC, WC_SEC, WC_SEC_HI, WC_VERSION,
};

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// Scale a TSC delta to ns with Xen's (mul, shift) pair.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> shift.unsigned_abs()
    };
    ((d as u128 * mul as u128) >> 32) as u64
}

#[cfg(target_os = "none")]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; PV guests may execute it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_os = "none"))]
fn rdtsc() -> u64 {
    0
}

/// Current Xen system time in ns, or 0 before shared_info is mapped.
pub fn now_ns() -> u64 {
    let Some(si) = event::shared_info() else {
        return 0;
    };
    // Bounded retry: Xen updates the record with an odd version in between.
    for _ in 0..1000 {
        let v1: u32 = si.load_u32(VCPU0_TIME_VERSION);
        if v1 & 1 != 0 {
            continue;
        }
        crate::shared::rmb();
        let tsc_ts: u64 = si.read(VCPU0_TSC_TIMESTAMP);
        let sys: u64 = si.read(VCPU0_SYSTEM_TIME);
        let mul: u32 = si.read(VCPU0_TSC_TO_SYSTEM_MUL);
        let shift: i8 = si.read(VCPU0_TSC_SHIFT);
        let tsc = rdtsc();
        crate::shared::rmb();
        if si.load_u32(VCPU0_TIME_VERSION) == v1 {
            return sys.wrapping_add(scale_delta(tsc.wrapping_sub(tsc_ts), mul, shift));
        }
    }
    0
}

// -------------------------------------------------------------- wall clock

/// Xen's wall clock at system time 0 (boot), in ns since the Unix epoch.
fn wallclock_base_ns() -> Option<u64> {
    let si = event::shared_info()?;
    for _ in 0..1000 {
        let v1 = si.load_u32(WC_VERSION);
        if v1 & 1 != 0 {
            continue;
        }
        crate::shared::rmb();
        let sec: u32 = si.read(WC_SEC);
        let nsec: u32 = si.read(WC_NSEC);
        let sec_hi: u32 = si.read(WC_SEC_HI);
        crate::shared::rmb();
        if si.load_u32(WC_VERSION) == v1 {
            let secs = (sec_hi as u64) << 32 | sec as u64;
            return Some(secs * NS_PER_SEC + nsec as u64);
        }
    }
    None
}

/// Wall clock now, ns since the Unix epoch (UTC).
pub fn wallclock_ns() -> Option<u64> {
    Some(wallclock_base_ns()? + now_ns())
}

/// A UTC calendar time, shown as `2026-11-25T15:40:01Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub min: u8,
    /// Second, 0-59.
    pub sec: u8,
}

impl DateTime {
    /// Civil time of `secs` since 1970-01-01T00:00:00Z (proleptic
    /// Gregorian; H. Hinnant's days-to-civil).
    pub fn from_unix(secs: u64) -> DateTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            min: (rem / 60 % 60) as u8,
            sec: (rem % 60) as u8,
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.min, self.sec
        )
    }
}

// ------------------------------------------------------------------ timers

/// Called when a timer expires, in upcall context (events masked; no
/// printing, no blocking): `(token, now_ns)`.
pub type TimerFn = fn(token: usize, now_ns: u64);

/// Identifies an armed timer for [`cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(u64);

#[derive(Clone, Copy, Debug)]
struct Timer {
    deadline: u64,
    id: u64,
    f: TimerFn,
    token: usize,
}

/// Why a timer could not be armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerError {
    /// All slots are in use.
    Full,
    /// `time::init` has not bound VIRQ_TIMER.
    NoTimer,
}

/// Fixed-capacity list of one-shot timers, sorted by deadline (ties in
/// insertion order). Pure; the kernel keeps one behind a lock.
pub struct TimerList<const N: usize> {
    t: [Option<Timer>; N],
    len: usize,
    next_id: u64,
}

impl<const N: usize> Default for TimerList<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TimerList<N> {
    /// An empty list.
    pub const fn new() -> Self {
        TimerList {
            t: [None; N],
            len: 0,
            next_id: 1,
        }
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arm a timer.
    pub fn insert(
        &mut self,
        deadline: u64,
        f: TimerFn,
        token: usize,
    ) -> Result<TimerId, TimerError> {
        if self.len == N {
            return Err(TimerError::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        let pos = self.t[..self.len]
            .iter()
            .position(|e| e.is_some_and(|e| e.deadline > deadline))
            .unwrap_or(self.len);
        self.t[pos..=self.len].rotate_right(1);
        self.t[pos] = Some(Timer {
            deadline,
            id,
            f,
            token,
        });
        self.len += 1;
        Ok(TimerId(id))
    }

    /// Disarm; false if it already fired (or never existed).
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let Some(pos) = self.t[..self.len]
            .iter()
            .position(|e| e.is_some_and(|e| e.id == id.0))
        else {
            return false;
        };
        self.remove(pos);
        true
    }

    fn remove(&mut self, pos: usize) -> Option<Timer> {
        let t = self.t[pos].take();
        self.t[pos..self.len].rotate_left(1);
        self.len -= 1;
        t
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.t[0].map(|t| t.deadline)
    }

    /// Remove and return the earliest timer if its deadline is `<= now`:
    /// `(callback, token, deadline)`.
    pub fn pop_expired(&mut self, now: u64) -> Option<(TimerFn, usize, u64)> {
        match self.t[0] {
            Some(t) if t.deadline <= now => {
                self.remove(0);
                Some((t.f, t.token, t.deadline))
            }
            _ => None,
        }
    }
}

/// Armed timers; touched by main code only with events masked.
static TIMERS: Mutex<TimerList<32>> = Mutex::new(TimerList::new());
/// VIRQ_TIMER's port (0 = not bound).
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);

/// Stop the default 10 ms periodic tick, bind VIRQ_TIMER and handle it.
/// Needs upcalls (event::enable_upcalls) to fire timers.
pub fn init() -> Result<u32, Errno> {
    // Best effort: the tick only causes spurious wakeups.
    let _ = hypercall::vcpu_stop_periodic_timer(0);
    let port = event::bind_virq(event::VIRQ_TIMER, 0)?;
    TIMER_PORT.store(port, Ordering::SeqCst);
    event::bind(port, on_timer_virq)?;
    Ok(port)
}

/// VIRQ_TIMER's port, once `init` bound it.
pub fn timer_port() -> Option<u32> {
    match TIMER_PORT.load(Ordering::SeqCst) {
        0 => None,
        p => Some(p),
    }
}

fn on_timer_virq(_port: u32) {
    run_expired();
}

/// Run every expired callback (without holding the lock), then program the
/// next deadline. Called with events masked.
fn run_expired() {
    loop {
        let now = now_ns();
        let Some((f, token, _)) = TIMERS.lock().pop_expired(now) else {
            break;
        };
        f(token, now);
    }
    program(TIMERS.lock().next_deadline());
}

fn program(deadline: Option<u64>) {
    if let Some(d) = deadline {
        // A deadline in the past fires (almost) at once.
        let _ = hypercall::set_timer_op(d.max(1));
    }
}

/// Call `f(token, now)` from the upcall once the clock reaches `deadline_ns`
/// (absolute Xen system time).
pub fn add_timer(deadline_ns: u64, f: TimerFn, token: usize) -> Result<TimerId, TimerError> {
    if timer_port().is_none() || !event::upcalls_enabled() {
        return Err(TimerError::NoTimer);
    }
    event::masked(|| {
        let mut t = TIMERS.lock();
        let id = t.insert(deadline_ns, f, token)?;
        if t.next_deadline() == Some(deadline_ns) {
            program(Some(deadline_ns));
        }
        Ok(id)
    })
}

/// Disarm a timer; false if it already fired.
pub fn cancel(id: TimerId) -> bool {
    event::masked(|| TIMERS.lock().cancel(id))
}

fn nop(_token: usize, _now: u64) {}

/// Arm a timer that only wakes [`event::block_unless`] at `deadline_ns` (a
/// watchdog for a block loop); cancel it when done.
pub fn add_wakeup(deadline_ns: u64) -> Result<TimerId, TimerError> {
    add_timer(deadline_ns, nop, 0)
}

/// Block until Xen system time reaches `deadline_ns`. Not from handlers.
pub fn sleep_until(deadline_ns: u64) {
    if now_ns() >= deadline_ns {
        return;
    }
    match add_timer(deadline_ns, nop, 0) {
        Ok(id) => {
            while now_ns() < deadline_ns {
                event::block_unless(|| now_ns() >= deadline_ns);
            }
            cancel(id);
        }
        // No timer interrupt: poll with a timeout instead (no port).
        Err(_) => {
            while now_ns() < deadline_ns {
                if hypercall::sched_poll(&[], deadline_ns).is_err() {
                    let _ = hypercall::sched_yield();
                }
            }
        }
    }
}

/// Block (event::block_unless) until `done()` holds or the clock reaches
/// `deadline_ns`; a timer guarantees the wakeup. Returns `done()`'s last
/// value. Not from handlers.
pub fn wait_for(deadline_ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let id = add_timer(deadline_ns, nop, 0).ok();
    let ok = loop {
        if done() {
            break true;
        }
        if now_ns() >= deadline_ns {
            break done();
        }
        if id.is_some() {
            event::block_unless(|| done() || now_ns() >= deadline_ns);
        } else {
            let _ = hypercall::sched_yield();
        }
    };
    if let Some(id) = id {
        cancel(id);
    }
    ok
}

/// Block for at least `ns` nanoseconds.
pub fn sleep(ns: u64) {
    sleep_until(now_ns().saturating_add(ns));
}

/// A duration in ns shown as milliseconds with one decimal: `10.2ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ms(pub u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 + 50_000) / 100_000;
        write!(f, "{}.{}ms", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn scaling() {
        // mul = 2^32 means 1 tick = 1 ns at shift 0.
        assert_eq!(scale_delta(1000, u32::MAX, 0), 999);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        assert_eq!(scale_delta(0, 12345, 3), 0);
        // A 2.5 GHz TSC at shift 0: mul = 0.4 * 2^32; one second of ticks
        // is one second.
        let mul = (0.4f64 * 4294967296.0) as u32;
        let ns = scale_delta(2_500_000_000, mul, 0);
        assert!(ns.abs_diff(NS_PER_SEC) < 10, "{ns}");
        // Large deltas do not overflow (u128 product).
        assert_eq!(scale_delta(1 << 40, u32::MAX, 2) >> 40, 3);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(DateTime::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            DateTime::from_unix(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            DateTime::from_unix(1_795_621_201).to_string(),
            "2026-11-25T15:40:01Z"
        );
        assert_eq!(
            DateTime::from_unix(4_102_444_799).to_string(),
            "2099-12-31T23:59:59Z"
        );
        // Past 2^32 s (wc_sec_hi).
        assert_eq!(
            DateTime::from_unix(1 << 32).to_string(),
            "2106-02-07T06:28:16Z"
        );
    }

    #[test]
    fn ms_display() {
        assert_eq!(Ms(10_200_000).to_string(), "10.2ms");
        assert_eq!(Ms(9_960_000).to_string(), "10.0ms");
        assert_eq!(Ms(0).to_string(), "0.0ms");
    }

    fn f0(_: usize, _: u64) {}

    #[test]
    fn timer_list_orders_by_deadline() {
        let mut l = TimerList::<4>::new();
        l.insert(30, f0, 0).unwrap();
        l.insert(10, f0, 1).unwrap();
        let c = l.insert(50, f0, 2).unwrap();
        l.insert(10, f0, 3).unwrap();
        assert_eq!(l.insert(1, f0, 9), Err(TimerError::Full));
        assert_eq!(l.next_deadline(), Some(10));
        assert!(l.cancel(c));
        assert!(!l.cancel(c));
        assert_eq!(l.pop_expired(5).map(|t| t.1), None);
        let mut fired = std::vec::Vec::new();
        while let Some((_, tok, d)) = l.pop_expired(100) {
            fired.push((d, tok));
        }
        // Ties keep insertion order.
        assert_eq!(fired, [(10, 1), (10, 3), (30, 0)]);
        assert!(l.is_empty());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn timer_list_reuses_slots() {
        let mut l = TimerList::<2>::new();
        for i in 0..100u64 {
            l.insert(i, f0, 0).unwrap();
            assert_eq!(l.pop_expired(i).map(|t| t.2), Some(i));
        }
        assert_eq!(l.len(), 0);
    }
}
