//! Scenarios that need the running kernel (event channels, timers, traps):
//! `test=timer`, `events`, `evtchn-echo`, `pagefault`, `invalid-op`,
//! `divide-error`, `soak`. Console lines: docs/console.md ("Events and time").

extern crate alloc;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::fault;
use crate::options::Options;
use crate::scenario::Verdict;
use xenfront::event::{self, DOMID_SELF};
use xenfront::hypercall::{Errno, EvtchnState};
use xenfront::println;
use xenfront::time::{self, DateTime, Ms, NS_PER_MS, NS_PER_SEC};

/// `test=timer`: concurrent one-shot deadlines, sequential sleeps, the
/// wall clock.
pub fn timer_test(_: &Options) -> Verdict {
    timer()
}

/// `test=soak secs=N`: event delivery soak.
pub fn soak_test(o: &Options) -> Verdict {
    report(soak(o.secs.unwrap_or(SOAK_DEFAULT_SECS)))
}

/// `test=events`: upcalls through a loopback channel; the starvation bound.
pub fn events_test(_: &Options) -> Verdict {
    report(events())
}

/// `test=evtchn-echo`: event-channel ping-pong with a Dom0 peer.
pub fn evtchn_echo_test(_: &Options) -> Verdict {
    report(evtchn_echo())
}

/// `test=pagefault`: the #PF handler reports and crashes.
pub fn pagefault_test(_: &Options) -> Verdict {
    let v = fault::page_fault();
    println!("pagefault: read {v:#x}: no fault");
    Verdict::Failure
}

/// `test=invalid-op`: the #UD handler reports and crashes.
pub fn invalid_op_test(_: &Options) -> Verdict {
    fault::invalid_opcode();
    println!("invalid-op: no fault");
    Verdict::Failure
}

/// `test=divide-error`: the #DE handler reports and crashes.
pub fn divide_error_test(_: &Options) -> Verdict {
    fault::divide_error();
    println!("divide-error: no fault");
    Verdict::Failure
}

/// A hypercall failure inside a scenario: print it, FAILURE.
fn report(r: Result<Verdict, (&'static str, Errno)>) -> Verdict {
    r.unwrap_or_else(|(what, e)| {
        println!("error: {what}: {e}");
        Verdict::Failure
    })
}

fn ms(ns: u64) -> u64 {
    ns / NS_PER_MS
}

// ------------------------------------------------------------------ timer

/// Concurrent one-shot deadlines, requested in this order.
const CONCURRENT_MS: [u64; 3] = [30, 10, 50];
/// Sequential sleeps.
const SLEEP_MS: [u64; 5] = [10, 1, 25, 5, 50];

static FIRED_AT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static FIRED_SEQ: AtomicUsize = AtomicUsize::new(0);
static FIRED_ORDER: [AtomicUsize; 3] = [const { AtomicUsize::new(usize::MAX) }; 3];

fn record_fire(token: usize, now: u64) {
    FIRED_AT[token].store(now, Ordering::SeqCst);
    let seq = FIRED_SEQ.fetch_add(1, Ordering::SeqCst);
    if seq < FIRED_ORDER.len() {
        FIRED_ORDER[seq].store(token, Ordering::SeqCst);
    }
}

fn timer() -> Verdict {
    let mut v = Verdict::Success;
    let Some(port) = time::timer_port() else {
        println!("timer: VIRQ_TIMER not bound");
        return Verdict::Failure;
    };
    println!("timer: VIRQ_TIMER on port {port}");

    // Three deadlines armed at once, out of order; they must fire in
    // deadline order and never early.
    let t0 = time::now_ns();
    for (i, d) in CONCURRENT_MS.iter().enumerate() {
        if let Err(e) = time::add_timer(t0 + d * NS_PER_MS, record_fire, i) {
            println!("timer: add_timer: {e:?}");
            return Verdict::Failure;
        }
    }
    let all = time::wait_for(t0 + 10 * NS_PER_SEC, || {
        FIRED_SEQ.load(Ordering::SeqCst) >= CONCURRENT_MS.len()
    });
    if !all {
        println!(
            "timer: only {} of 3 deadlines fired",
            FIRED_SEQ.load(Ordering::SeqCst)
        );
        return Verdict::Failure;
    }
    let mut last = 0;
    for (n, slot) in FIRED_ORDER.iter().enumerate() {
        let i = slot.load(Ordering::SeqCst);
        let req = CONCURRENT_MS[i] * NS_PER_MS;
        let got = FIRED_AT[i].load(Ordering::SeqCst) - t0;
        println!(
            "timer: deadline {}ms -> fired at {} (#{})",
            CONCURRENT_MS[i],
            Ms(got),
            n + 1
        );
        if got < req || req < last {
            println!("timer: FAIL: early or out of order");
            v = Verdict::Failure;
        }
        last = req;
    }

    // Sequential sleeps, each measured against the clock.
    let mut worst = 0;
    for d in SLEEP_MS {
        let a = time::now_ns();
        time::sleep(d * NS_PER_MS);
        let got = time::now_ns() - a;
        println!("timer: slept {d}ms -> measured {}", Ms(got));
        if got < d * NS_PER_MS {
            println!("timer: FAIL: woke early");
            v = Verdict::Failure;
        }
        worst = worst.max(got.saturating_sub(d * NS_PER_MS));
    }
    println!("timer: max overshoot {}", Ms(worst));

    match time::wallclock_ns() {
        Some(ns) => println!(
            "wallclock: {} (unix {}.{:03})",
            DateTime::from_unix(ns / NS_PER_SEC),
            ns / NS_PER_SEC,
            ns % NS_PER_SEC / NS_PER_MS
        ),
        None => {
            println!("wallclock: unavailable");
            v = Verdict::Failure;
        }
    }
    v
}

// ----------------------------------------------------------------- events

/// Upcalls counted through the callback path.
const UPCALL_ROUNDS: u64 = 10_000;
/// The storm handler fires the victim port at this storm event.
const VICTIM_FIRED_AT: u64 = 10;
/// The storm goes on this long after the victim was handled.
const STORM_AFTER: u64 = 100;
/// Safety stop for the storm if the victim is never handled.
const STORM_MAX: u64 = 100_000;

static COUNT: AtomicU64 = AtomicU64::new(0);
static STORM: AtomicU64 = AtomicU64::new(0);
static STORM_PEER: AtomicU64 = AtomicU64::new(0);
static VICTIM_PEER: AtomicU64 = AtomicU64::new(0);
static VICTIM_AT: AtomicU64 = AtomicU64::new(0);

fn count(_port: u32) {
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// Re-fires its own port from the handler, endlessly until the victim has
/// been handled (plus STORM_AFTER more).
fn storm(_port: u32) {
    let n = STORM.fetch_add(1, Ordering::SeqCst) + 1;
    if n == VICTIM_FIRED_AT {
        let _ = event::send(VICTIM_PEER.load(Ordering::SeqCst) as u32);
    }
    let seen = VICTIM_AT.load(Ordering::SeqCst);
    if n < STORM_MAX && (seen == 0 || n < seen + STORM_AFTER) {
        let _ = event::send(STORM_PEER.load(Ordering::SeqCst) as u32);
    }
}

fn victim(_port: u32) {
    VICTIM_AT.store(STORM.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// A loopback channel: (port offered to ourselves, port bound to it).
fn self_channel() -> Result<(u32, u32), (&'static str, Errno)> {
    let a = event::alloc_unbound(DOMID_SELF).map_err(|e| ("alloc_unbound(DOMID_SELF)", e))?;
    let b = event::bind_interdomain(DOMID_SELF, a).map_err(|e| ("bind_interdomain", e))?;
    Ok((a, b))
}

fn events() -> Result<Verdict, (&'static str, Errno)> {
    let mut v = Verdict::Success;
    if !event::upcalls_enabled() {
        println!("events: no upcall registered");
        return Ok(Verdict::Failure);
    }
    let (a, b) = self_channel()?;
    println!("events: self channel port {a} <-> port {b}");
    let st = event::status(a).map_err(|e| ("status", e))?;
    println!("events: status({a}) = {st:?}");
    if !matches!(st, EvtchnState::Interdomain { remote_port, .. } if remote_port == b) {
        println!("events: FAIL: port {a} not connected to {b}");
        v = Verdict::Failure;
    }

    // N sends on b, each delivered to a's handler by an upcall.
    event::bind(a, count).map_err(|e| ("bind", e))?;
    let before = event::stats();
    let t0 = time::now_ns();
    for _ in 0..UPCALL_ROUNDS {
        event::send(b).map_err(|e| ("send", e))?;
    }
    time::wait_for(t0 + 10 * NS_PER_SEC, || {
        COUNT.load(Ordering::SeqCst) >= UPCALL_ROUNDS
    });
    let dt = time::now_ns() - t0;
    let n = COUNT.load(Ordering::SeqCst);
    let upcalls = event::stats().upcalls - before.upcalls;
    println!(
        "events: {UPCALL_ROUNDS} sends -> {n} handler calls, {upcalls} upcalls in {} ms ({} upcalls/s)",
        ms(dt),
        upcalls * NS_PER_SEC / dt.max(1)
    );
    if n != UPCALL_ROUNDS {
        println!("events: FAIL: expected {UPCALL_ROUNDS} handler calls");
        v = Verdict::Failure;
    }

    // Starvation bound: a's handler re-fires a without end; at storm event
    // VICTIM_FIRED_AT it fires c once. c must be handled within an upcall
    // or two, not after the storm.
    let (c, d) = self_channel()?;
    STORM_PEER.store(b as u64, Ordering::SeqCst);
    VICTIM_PEER.store(d as u64, Ordering::SeqCst);
    event::bind(c, victim).map_err(|e| ("bind", e))?;
    event::bind(a, storm).map_err(|e| ("bind", e))?;
    let before = event::stats();
    event::send(b).map_err(|e| ("send", e))?;
    // The storm runs in upcalls right after the send; wait in case it ends
    // later than that.
    let end = time::now_ns() + 10 * NS_PER_SEC;
    time::wait_for(end, || {
        let s = STORM.load(Ordering::SeqCst);
        let seen = VICTIM_AT.load(Ordering::SeqCst);
        s >= STORM_MAX || (seen != 0 && s >= seen + STORM_AFTER)
    });
    let s = STORM.load(Ordering::SeqCst);
    let seen = VICTIM_AT.load(Ordering::SeqCst);
    let after = event::stats();
    println!(
        "events: storm port {a} fired {s} times; victim port {c} fired at storm event {VICTIM_FIRED_AT}, handled at {seen} (budget {} ports/upcall, {} upcalls, {} re-raised)",
        event::MAX_PORTS_PER_UPCALL,
        after.upcalls - before.upcalls,
        after.reraised - before.reraised
    );
    if seen == 0 || seen > VICTIM_FIRED_AT + 2 || s != seen + STORM_AFTER {
        println!("events: FAIL: victim starved by the storm");
        v = Verdict::Failure;
    }

    for p in [a, b, c, d] {
        event::close(p).map_err(|e| ("close", e))?;
    }
    let st = event::status(a).map_err(|e| ("status", e))?;
    if st != EvtchnState::Closed {
        println!("events: FAIL: status({a}) after close = {st:?}");
        v = Verdict::Failure;
    }
    let s = event::stats();
    println!(
        "events: totals upcalls {} ports {} re-raised {} unhandled {}",
        s.upcalls, s.ports, s.reraised, s.unhandled
    );
    Ok(v)
}

// ------------------------------------------------------------ evtchn-echo

/// Round trips with the Dom0 peer (`xf-evtchn-echo <domid> <port> 2000 --start`).
///
/// An event channel carries one bit, so both sides count exactly only while
/// exactly one event is in flight. Binding sets the binder's port pending
/// (Xen's `evtchn_bind_interdomain`), so the peer sees one event the guest
/// never sent; answering it would put a second event in flight, and the two
/// may or may not merge later (the peer then finishes one round early). So
/// the peer absorbs that bind-time event and then notifies once ("start");
/// the guest pings only after the start, one ping per answer, no resends.
pub const ECHO_ROUNDS: u64 = 2000;

static ECHOES: AtomicU64 = AtomicU64::new(0);

fn echo(_port: u32) {
    ECHOES.fetch_add(1, Ordering::SeqCst);
}

/// Block until `ECHOES >= want` or `limit`; false on timeout. Prints the
/// port state once per second while stalled (never re-sends: an extra event
/// would break the count).
fn wait_echoes(p: u32, want: u64, limit: u64) -> bool {
    let mut stall = time::now_ns() + NS_PER_SEC;
    let mut stall_wakeup = time::add_wakeup(stall).ok();
    while ECHOES.load(Ordering::SeqCst) < want {
        let now = time::now_ns();
        if now >= limit {
            return false;
        }
        if now >= stall {
            println!(
                "evtchn-echo: stalled waiting for event {want}: {:?} {:?} {:?}",
                event::port_bits(p),
                event::status(p),
                event::stats()
            );
            stall = now + NS_PER_SEC;
            stall_wakeup = time::add_wakeup(stall).ok();
        }
        event::block_unless(|| ECHOES.load(Ordering::SeqCst) >= want || time::now_ns() >= stall);
    }
    if let Some(w) = stall_wakeup {
        time::cancel(w);
    }
    true
}

fn evtchn_echo() -> Result<Verdict, (&'static str, Errno)> {
    let p = event::alloc_unbound(0).map_err(|e| ("alloc_unbound(0)", e))?;
    event::bind(p, echo).map_err(|e| ("bind", e))?;
    println!("evtchn: port {p}");
    // Wait (60 s) for Dom0 to bind it.
    let deadline = time::now_ns() + 60 * NS_PER_SEC;
    let peer = loop {
        match event::status(p).map_err(|e| ("status", e))? {
            EvtchnState::Interdomain { dom, remote_port } => break (dom, remote_port),
            EvtchnState::Unbound { .. } if time::now_ns() < deadline => time::sleep(10 * NS_PER_MS),
            st => {
                println!("evtchn: peer never bound (status {st:?})");
                return Ok(Verdict::Failure);
            }
        }
    };
    println!("evtchn: peer dom {} port {}", peer.0, peer.1);
    // The peer's start notify (it has absorbed its bind-time event).
    if !wait_echoes(p, 1, deadline) {
        println!("evtchn-echo: peer never sent the start event");
        return Ok(Verdict::Failure);
    }
    let base = ECHOES.load(Ordering::SeqCst);
    println!("evtchn: peer started");
    let t0 = time::now_ns();
    // One watchdog timer for the whole exchange (not one per round trip).
    // Generous: on a loaded host the nested lab manages ~30 round trips/s.
    let limit = t0 + 300 * NS_PER_SEC;
    let watchdog = time::add_wakeup(limit).ok();
    for i in 1..=ECHO_ROUNDS {
        event::send(p).map_err(|e| ("send", e))?;
        if !wait_echoes(p, base + i, limit) {
            println!(
                "evtchn-echo: timeout after {}/{ECHO_ROUNDS} round trips",
                i - 1
            );
            return Ok(Verdict::Failure);
        }
    }
    let dt = time::now_ns() - t0;
    if let Some(w) = watchdog {
        time::cancel(w);
    }
    println!(
        "evtchn-echo: {ECHO_ROUNDS} round trips in {} ms ({} round trips/s)",
        ms(dt),
        ECHO_ROUNDS * NS_PER_SEC / dt.max(1)
    );
    let extra = ECHOES.load(Ordering::SeqCst) - base - ECHO_ROUNDS;
    event::close(p).map_err(|e| ("close", e))?;
    if extra != 0 || base != 1 {
        println!("evtchn-echo: {extra} unexpected events ({base} before the first ping)");
        return Ok(Verdict::Failure);
    }
    Ok(Verdict::Success)
}

// ------------------------------------------------------------------- soak

/// `test=soak` without `secs=`.
const SOAK_DEFAULT_SECS: u32 = 60;
/// Loopback sends per round (each one is an upcall on the way back from
/// EVTCHNOP_send).
const SOAK_BURST: u64 = 200;

static SOAK_CALLS: AtomicU64 = AtomicU64::new(0);

fn soak_count(_port: u32) {
    SOAK_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// Event delivery for `secs` seconds, every way an upcall can arrive:
/// right after a hypercall (loopback sends), in an idle block
/// (`time::sleep`: hlt on PVH, SCHEDOP_block on PV) and in SCHEDOP_poll
/// (woken by VIRQ_TIMER). Every send must reach the handler exactly once.
/// Progress every 10 s, so a death is placed in time.
fn soak(secs: u32) -> Result<Verdict, (&'static str, Errno)> {
    if !event::upcalls_enabled() {
        println!("soak: no upcall registered");
        return Ok(Verdict::Failure);
    }
    let Some(timer_port) = time::timer_port() else {
        println!("soak: no timer");
        return Ok(Verdict::Failure);
    };
    let (a, b) = self_channel()?;
    event::bind(a, soak_count).map_err(|e| ("bind", e))?;
    println!("soak: {secs} s, loopback port {a} <-> {b}, timer port {timer_port}");
    let before = event::stats();
    let t0 = time::now_ns();
    let end = t0 + u64::from(secs) * NS_PER_SEC;
    let mut report_at = t0 + 10 * NS_PER_SEC;
    let (mut sent, mut sleeps, mut polls) = (0u64, 0u64, 0u64);
    loop {
        let now = time::now_ns();
        if now >= end {
            break;
        }
        if now >= report_at {
            let s = event::stats();
            println!(
                "soak: {} s: {sent} sends, {} handler calls, {} upcalls, {sleeps} sleeps, {polls} polls, {} idle hlt skips",
                (now - t0) / NS_PER_SEC,
                SOAK_CALLS.load(Ordering::SeqCst),
                s.upcalls - before.upcalls,
                s.idle_skips - before.idle_skips
            );
            report_at += 10 * NS_PER_SEC;
        }
        for _ in 0..SOAK_BURST {
            event::send(b).map_err(|e| ("send", e))?;
            sent += 1;
        }
        let want = sent;
        if !time::wait_for(time::now_ns() + 10 * NS_PER_SEC, || {
            SOAK_CALLS.load(Ordering::SeqCst) >= want
        }) {
            println!(
                "soak: FAIL: {} handler calls for {sent} sends after 10 s",
                SOAK_CALLS.load(Ordering::SeqCst)
            );
            return Ok(Verdict::Failure);
        }
        time::sleep(NS_PER_MS / 2);
        sleeps += 1;
        // Poll on the timer port, woken by a timer 0.5 ms out.
        let wake = time::now_ns() + NS_PER_MS / 2;
        if let Ok(id) = time::add_wakeup(wake) {
            event::wait(timer_port, wake + 100 * NS_PER_MS);
            time::cancel(id);
            polls += 1;
        }
    }
    let dt = time::now_ns() - t0;
    let calls = SOAK_CALLS.load(Ordering::SeqCst);
    let after = event::stats();
    let upcalls = after.upcalls - before.upcalls;
    println!(
        "soak: done in {} ms: {sent} sends -> {calls} handler calls, {upcalls} upcalls ({} upcalls/s), {sleeps} sleeps, {polls} polls, {} idle hlt skips",
        ms(dt),
        upcalls * NS_PER_SEC / dt.max(1),
        after.idle_skips - before.idle_skips
    );
    event::close(a).map_err(|e| ("close", e))?;
    event::close(b).map_err(|e| ("close", e))?;
    if calls != sent {
        println!("soak: FAIL: {sent} sends but {calls} handler calls");
        return Ok(Verdict::Failure);
    }
    Ok(Verdict::Success)
}

// ----------------------------------------------------------- evtchn-limit

static LIMIT_HITS: AtomicU64 = AtomicU64::new(0);

fn limit_hit(_port: u32) {
    LIMIT_HITS.fetch_add(1, Ordering::Relaxed);
}

/// Most ports the scenario allocates before it calls the limit missing
/// (the 2-level ABI's 4096 for a 64-bit guest).
const PORT_CAP: usize = 4096;

/// `test=evtchn-limit`: allocate unbound ports until Xen refuses (the
/// domain's `max_event_channels`), report how many fitted and the error,
/// release them, and show that what fits still works: a loopback channel
/// delivers an event afterwards.
pub fn evtchn_limit_test(_: &Options) -> Verdict {
    report(evtchn_limit())
}

fn evtchn_limit() -> Result<Verdict, (&'static str, Errno)> {
    let mut ports = alloc::vec::Vec::new();
    let err = loop {
        match event::alloc_unbound(DOMID_SELF) {
            Ok(p) => ports.push(p),
            Err(e) => break e,
        }
        if ports.len() >= PORT_CAP {
            println!("evtchn: no limit after {} ports", ports.len());
            return Ok(Verdict::Failure);
        }
    };
    let highest = ports.iter().copied().max().unwrap_or(0);
    println!(
        "evtchn: exhausted after {} more ports (highest port {highest}): {err}",
        ports.len()
    );
    for p in ports {
        event::close(p).map_err(|e| ("close", e))?;
    }
    let (a, b) = self_channel()?;
    event::bind(b, limit_hit).map_err(|e| ("bind", e))?;
    event::unmask(b).map_err(|e| ("unmask", e))?;
    event::send(a).map_err(|e| ("send", e))?;
    let ok = time::wait_for(time::now_ns() + NS_PER_SEC, || {
        LIMIT_HITS.load(Ordering::Relaxed) > 0
    });
    let _ = event::close(a);
    let _ = event::close(b);
    println!(
        "evtchn: loopback after exhaustion: {}",
        if ok { "ok" } else { "no event" }
    );
    Ok(if ok {
        Verdict::Success
    } else {
        Verdict::Failure
    })
}
