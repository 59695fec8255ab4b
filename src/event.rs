//! Event channels (2-level ABI) and the upcall mask.
//!
//! Two ways to wait for a port, both usable at the same time:
//!
//! * **Polling** (`notify` / `clear_pending` / `wait`, SCHEDOP_poll): the
//!   console and XenStore transports. Their ports stay *masked* in
//!   `evtchn_mask`, so the upcall never consumes their pending bits (poll
//!   ignores the mask).
//! * **Callbacks** (`bind` a `fn(port)` handler): the port is unmasked and
//!   Xen delivers an upcall (PV: `xenfront_hypervisor_callback` in
//!   boot/pv_entry.S → [`upcall`]). Handlers run with events masked, must be
//!   short, must not print (the console lock may be held by the interrupted
//!   code) and must not block.
//!
//! Fairness: one upcall handles each pending port at most once and at most
//! [`MAX_PORTS_PER_UPCALL`] ports in total, continuing round-robin where the
//! previous one stopped; whatever is left stays pending and the upcall is
//! re-raised (upcall_pending = 1, delivered by Xen as soon as the current one
//! returns). A port that re-fires from its own handler therefore gets one
//! slot per upcall and cannot starve the others ([`scan`] has the logic,
//! host-tested over a fake bitmap).
//!
//! Idle: [`block_unless`] = SCHEDOP_block with events masked (Xen unmasks and
//! re-checks pending atomically, so no wakeup is lost).
//!
//! The only caller of the `EVTCHNOP_*` hypercalls. Drivers never issue
//! hypercalls: they get [`XenEvents`] through a small trait ([`Events`];
//! [`PeerProbe`] for a vanished peer).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::{Mutex, Once};

use crate::hypercall::{self, Errno, EvtchnState};
use crate::shared::SharedMem;
use crate::time;
use crate::xen_abi::xen::{
    EVTCHN_MASK, EVTCHN_PENDING, EVTCHN_WORDS, VCPU0_PENDING_SEL, VCPU0_UPCALL_MASK,
    VCPU0_UPCALL_PENDING,
};

pub use crate::hypercall::DOMID_SELF;

/// Ports of the 2-level ABI on x86_64: 64 words of 64 bits.
pub const NR_PORTS: u32 = (EVTCHN_WORDS * u64::BITS as usize) as u32;

/// At most this many ports are handled by one upcall (see module docs).
pub const MAX_PORTS_PER_UPCALL: usize = 16;

/// At most this many ports have a callback handler at a time.
pub const MAX_HANDLERS: usize = 32;

/// `VIRQ_TIMER` (xen.h): per-vCPU timer, fired by set_timer_op.
pub const VIRQ_TIMER: u32 = 0;

static SHARED_INFO: Once<SharedMem<'static>> = Once::new();
/// True once an upcall entry point is registered with Xen (PV:
/// set_callbacks): only then may events be unmasked.
static UPCALLS: AtomicBool = AtomicBool::new(false);
/// PVH: the upcall is an interrupt on an IDT vector
/// (src/arch/x86_64/pvh/entry.rs), masked by the CPU's IF; Xen ignores
/// evtchn_upcall_mask for it. PV: the mask byte.
static MASK_IS_IF: AtomicBool = AtomicBool::new(false);

/// Record the mapped shared_info page, mask event upcalls on vCPU 0 and mask
/// every port (a port is unmasked when a handler is bound to it).
pub fn init(shared_info: SharedMem<'static>) {
    shared_info.store_u8(VCPU0_UPCALL_MASK, 1);
    for w in 0..EVTCHN_WORDS * 2 {
        shared_info.store_u32(EVTCHN_MASK + w * 4, u32::MAX);
    }
    SHARED_INFO.call_once(|| shared_info);
}

/// The shared_info page, once `init` ran.
pub fn shared_info() -> Option<&'static SharedMem<'static>> {
    SHARED_INFO.get()
}

/// Called by the entry path once the upcall entry point is registered:
/// from now on events are delivered (upcall mask cleared).
pub fn enable_upcalls() {
    if shared_info().is_some() {
        UPCALLS.store(true, Ordering::SeqCst);
        restore(false);
    }
}

/// PVH entry path: the callback vector is registered
/// (HVM_PARAM_CALLBACK_IRQ); from now on IF is the upcall mask and events
/// are delivered (IF set).
pub fn enable_vector_upcalls() {
    MASK_IS_IF.store(true, Ordering::SeqCst);
    enable_upcalls();
}

/// Whether upcalls can be delivered (callback registered).
pub fn upcalls_enabled() -> bool {
    UPCALLS.load(Ordering::SeqCst)
}

// ------------------------------------------------------------ upcall mask

/// Mask upcalls; returns whether they were masked before.
fn disable() -> bool {
    if MASK_IS_IF.load(Ordering::Relaxed) {
        let was = !x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        return was;
    }
    match shared_info() {
        Some(si) => {
            let was = si.load_u8(VCPU0_UPCALL_MASK) != 0;
            si.store_u8(VCPU0_UPCALL_MASK, 1);
            crate::shared::mb();
            was
        }
        None => true,
    }
}

/// Restore the upcall mask saved by `disable`. When this unmasks, anything
/// that became pending meanwhile is delivered right away.
fn restore(was_masked: bool) {
    let Some(si) = shared_info() else { return };
    if was_masked || !upcalls_enabled() {
        return;
    }
    if MASK_IS_IF.load(Ordering::Relaxed) {
        // A pending callback vector is injected as soon as IF is set.
        x86_64::instructions::interrupts::enable();
        return;
    }
    si.store_u8(VCPU0_UPCALL_MASK, 0);
    crate::shared::mb();
    if si.load_u8(VCPU0_UPCALL_PENDING) != 0 {
        force_upcall();
    }
}

/// Any hypercall returns to the guest through Xen's event check, which
/// delivers a pending upcall if events are unmasked.
fn force_upcall() {
    let _ = hypercall::xen_version();
}

/// Run `f` with upcalls masked (the critical section for state shared with
/// handlers; single vCPU). Nests.
pub fn masked<R>(f: impl FnOnce() -> R) -> R {
    let was = disable();
    let r = f();
    restore(was);
    r
}

/// Idle until an event arrives, unless `done()` already holds
/// (SCHEDOP_block). Returns after at most one wakeup; callers loop:
/// `while !cond() { event::block_unless(cond) }`. Call with events enabled
/// and not from a handler; the handlers of whatever woke us have run when
/// this returns. Without a registered upcall it only yields.
///
/// `done` is evaluated with upcalls masked, so a handler cannot make it true
/// between the check and the sleep: it would have to run in an upcall,
/// which leaves upcall_pending set, and SCHEDOP_block (entered with the mask
/// set) clears the mask and re-checks pending atomically, so it returns at
/// once. Checking `done` with events enabled and then blocking loses that
/// wakeup (seen in the lab as a stalled ping-pong).
pub fn block_unless(done: impl FnOnce() -> bool) {
    if !upcalls_enabled() {
        if !done() {
            let _ = hypercall::sched_yield();
        }
        return;
    }
    let was = disable();
    debug_assert!(!was, "event::block_unless inside a masked section");
    if done() || was {
        // Done, or blocking would unmask the caller's critical section.
        restore(was);
        if was {
            let _ = hypercall::sched_yield();
        }
        return;
    }
    // Xen leaves events unmasked; the upcall runs on the way back.
    if MASK_IS_IF.load(Ordering::Relaxed) {
        // PVH: sti; hlt is atomic (interrupt shadow), so a callback that
        // became pending after the check above is taken in hlt, not lost;
        // Xen turns hlt into a block. Returns with IF set, handlers run.
        pvh_idle();
    } else if hypercall::sched_block().is_err() {
        restore(false);
    }
}

/// `sti; hlt` (boot/pvh.S `xenfront_pvh_idle`; the upcall steps over the
/// hlt if an emulator lost the STI shadow, see there).
#[cfg(target_os = "none")]
fn pvh_idle() {
    unsafe extern "C" {
        fn xenfront_pvh_idle();
    }
    // SAFETY: `sti; hlt; ret` touches no memory and no register but IF;
    // an opaque call, so the compiler re-reads what handlers changed.
    unsafe { xenfront_pvh_idle() }
}

#[cfg(not(target_os = "none"))]
fn pvh_idle() {
    unreachable!("PVH idle outside the kernel")
}

/// Upcalls that arrived with RIP *at* the idle `hlt` (the STI shadow was
/// lost, see boot/pvh.S) and were stepped over it. Never happens on
/// hardware; counted so that tests can show it.
static STATS_IDLE_SKIPS: AtomicU64 = AtomicU64::new(0);

/// Called by the PVH upcall entry with the interrupted RIP: true if it is
/// `hlt_addr` (the idle hlt), i.e. the upcall came *before* the hlt ran; the
/// caller then resumes after the hlt instead of sleeping in it.
pub fn upcall_at_idle_hlt(rip: u64, hlt_addr: u64) -> bool {
    let hit = rip == hlt_addr;
    if hit {
        STATS_IDLE_SKIPS.fetch_add(1, Ordering::Relaxed);
    }
    hit
}

// ------------------------------------------------------- the pending scan

/// The bitmaps of the 2-level ABI as the scan sees them; implemented over
/// shared_info and, in tests, over a fake.
pub trait Bitmaps {
    /// Clear evtchn_upcall_pending, then atomically take (xchg with 0)
    /// evtchn_pending_sel.
    fn take_sel(&self) -> u64;
    /// Set the `sel` bits in evtchn_pending_sel and evtchn_upcall_pending:
    /// another upcall follows as soon as events are unmasked.
    fn reraise(&self, sel: u64);
    /// evtchn_pending word `word`.
    fn pending(&self, word: usize) -> u64;
    /// evtchn_mask word `word`.
    fn mask(&self, word: usize) -> u64;
    /// Atomically clear `port`'s pending bit; whether it was set.
    fn test_and_clear_pending(&self, port: u32) -> bool;
}

/// What one upcall did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Ports handled.
    pub handled: usize,
    /// Whether ports were left pending and the upcall re-raised.
    pub reraised: bool,
}

/// One upcall's worth of the 2-level scan: take pending_sel, snapshot
/// `pending & !mask` of the selected words, then handle each set port once,
/// round-robin from `*cursor`, clearing its pending bit *before* calling
/// `handle` (a new event re-sets it), and at most `budget` ports. Ports still
/// pending afterwards (not reached, or re-fired) are re-raised.
pub fn scan(
    bm: &impl Bitmaps,
    budget: usize,
    cursor: &mut u32,
    mut handle: impl FnMut(u32),
) -> ScanResult {
    let sel = bm.take_sel();
    let mut snap = [0u64; EVTCHN_WORDS];
    for (i, s) in snap.iter_mut().enumerate() {
        if sel & (1 << i) != 0 {
            *s = bm.pending(i) & !bm.mask(i);
        }
    }
    let start = *cursor % NR_PORTS;
    let (start_word, start_bit) = ((start / 64) as usize, start % 64);
    let mut res = ScanResult::default();
    // Words start_word (bits >= start_bit), start_word+1, ..., wrapping
    // around to start_word again (bits < start_bit): every port once.
    'outer: for k in 0..=EVTCHN_WORDS {
        let wi = (start_word + k) % EVTCHN_WORDS;
        let high = !0u64 << start_bit;
        let mut w = match k {
            0 => snap[wi] & high,
            EVTCHN_WORDS => snap[wi] & !high,
            _ => snap[wi],
        };
        while w != 0 {
            let port = (wi * 64) as u32 + w.trailing_zeros();
            w &= w - 1;
            if res.handled == budget {
                *cursor = port;
                break 'outer;
            }
            if bm.test_and_clear_pending(port) {
                handle(port);
                res.handled += 1;
            }
        }
    }
    // Anything still pending and unmasked in the words we looked at?
    let mut left = 0u64;
    for i in 0..EVTCHN_WORDS {
        if sel & (1 << i) != 0 && bm.pending(i) & !bm.mask(i) != 0 {
            left |= 1 << i;
        }
    }
    if left != 0 {
        bm.reraise(left);
        res.reraised = true;
    }
    res
}

/// 64-bit words of shared_info, accessed as little-endian u32 halves (each
/// bit is independent, so half-word atomics are as good as Xen's `lock bts`).
impl Bitmaps for SharedMem<'_> {
    fn take_sel(&self) -> u64 {
        self.store_u8(VCPU0_UPCALL_PENDING, 0);
        let lo = self.fetch_and_u32(VCPU0_PENDING_SEL, 0);
        let hi = self.fetch_and_u32(VCPU0_PENDING_SEL + 4, 0);
        (hi as u64) << 32 | lo as u64
    }
    fn reraise(&self, sel: u64) {
        self.fetch_or_u32(VCPU0_PENDING_SEL, sel as u32);
        self.fetch_or_u32(VCPU0_PENDING_SEL + 4, (sel >> 32) as u32);
        self.store_u8(VCPU0_UPCALL_PENDING, 1);
    }
    fn pending(&self, word: usize) -> u64 {
        load_u64(self, EVTCHN_PENDING + word * 8)
    }
    fn mask(&self, word: usize) -> u64 {
        load_u64(self, EVTCHN_MASK + word * 8)
    }
    fn test_and_clear_pending(&self, port: u32) -> bool {
        let (off, bit) = bit_u32(EVTCHN_PENDING, port);
        self.fetch_and_u32(off, !bit) & bit != 0
    }
}

fn load_u64(si: &SharedMem<'_>, off: usize) -> u64 {
    (si.load_u32(off + 4) as u64) << 32 | si.load_u32(off) as u64
}

/// Byte offset of the u32 holding `port`'s bit in the bitmap at `base`, and
/// the bit.
fn bit_u32(base: usize, port: u32) -> (usize, u32) {
    (base + (port as usize / 32) * 4, 1 << (port % 32))
}

// -------------------------------------------------------------- handlers

/// A callback handler: runs in the upcall with events masked.
pub type Handler = fn(port: u32);

static HANDLERS: Mutex<[Option<(u32, Handler)>; MAX_HANDLERS]> = Mutex::new([None; MAX_HANDLERS]);
static CURSOR: AtomicU32 = AtomicU32::new(0);
static STATS_UPCALLS: AtomicU64 = AtomicU64::new(0);
static STATS_PORTS: AtomicU64 = AtomicU64::new(0);
static STATS_RERAISED: AtomicU64 = AtomicU64::new(0);
static STATS_UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// Upcall counters since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Upcalls taken.
    pub upcalls: u64,
    /// Port events handed to handlers.
    pub ports: u64,
    /// Upcalls that hit the budget or saw re-fired ports.
    pub reraised: u64,
    /// Pending ports without a handler (cleared and dropped).
    pub unhandled: u64,
    /// PVH upcalls taken before the idle `hlt` (lost STI shadow, emulator).
    pub idle_skips: u64,
}

/// A snapshot of the upcall counters.
pub fn stats() -> Stats {
    Stats {
        upcalls: STATS_UPCALLS.load(Ordering::Relaxed),
        ports: STATS_PORTS.load(Ordering::Relaxed),
        reraised: STATS_RERAISED.load(Ordering::Relaxed),
        unhandled: STATS_UNHANDLED.load(Ordering::Relaxed),
        idle_skips: STATS_IDLE_SKIPS.load(Ordering::Relaxed),
    }
}

/// The upcall: called by the arch entry stub with events masked.
pub fn upcall() {
    let Some(si) = shared_info() else { return };
    STATS_UPCALLS.fetch_add(1, Ordering::Relaxed);
    let mut cursor = CURSOR.load(Ordering::Relaxed);
    let res = scan(si, MAX_PORTS_PER_UPCALL, &mut cursor, dispatch);
    CURSOR.store(cursor, Ordering::Relaxed);
    STATS_PORTS.fetch_add(res.handled as u64, Ordering::Relaxed);
    if res.reraised {
        STATS_RERAISED.fetch_add(1, Ordering::Relaxed);
    }
}

fn dispatch(port: u32) {
    // Main code only takes the lock with events masked, so it is free here.
    let h = HANDLERS.try_lock().and_then(|t| {
        t.iter()
            .flatten()
            .find(|(p, _)| *p == port)
            .map(|(_, h)| *h)
    });
    match h {
        Some(h) => h(port),
        None => {
            STATS_UNHANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Install `handler` for `port` and unmask it. Replaces an earlier handler.
pub fn bind(port: u32, handler: Handler) -> Result<(), Errno> {
    if port >= NR_PORTS {
        return Err(Errno::EINVAL);
    }
    masked(|| {
        let mut t = HANDLERS.lock();
        let slot = match t
            .iter()
            .position(|e| matches!(e, Some((p, _)) if *p == port))
        {
            Some(i) => i,
            None => t.iter().position(Option::is_none).ok_or(Errno::ENOSPC)?,
        };
        t[slot] = Some((port, handler));
        Ok(())
    })?;
    unmask(port)
}

/// Mask `port` and remove its handler (if any).
pub fn unbind(port: u32) {
    mask(port);
    masked(|| {
        for e in HANDLERS.lock().iter_mut() {
            if matches!(e, Some((p, _)) if *p == port) {
                *e = None;
            }
        }
    });
}

/// Raw event state for diagnostics: `port`'s pending and mask bits and
/// vCPU 0's upcall_pending, upcall_mask and pending_sel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBits {
    /// `port`'s bit in `shared_info.evtchn_pending`.
    pub pending: bool,
    /// `port`'s bit in `shared_info.evtchn_mask`.
    pub masked: bool,
    /// `vcpu_info[0].evtchn_upcall_pending`.
    pub upcall_pending: u8,
    /// `vcpu_info[0].evtchn_upcall_mask`.
    pub upcall_mask: u8,
    /// `vcpu_info[0].evtchn_pending_sel`.
    pub pending_sel: u64,
}

/// Reads [`PortBits`] for `port`; `None` without shared_info or for a port
/// out of range.
pub fn port_bits(port: u32) -> Option<PortBits> {
    let si = shared_info()?;
    if port >= NR_PORTS {
        return None;
    }
    let bit = |base| {
        let (off, b) = bit_u32(base, port);
        si.load_u32(off) & b != 0
    };
    Some(PortBits {
        pending: bit(EVTCHN_PENDING),
        masked: bit(EVTCHN_MASK),
        upcall_pending: si.load_u8(VCPU0_UPCALL_PENDING),
        upcall_mask: si.load_u8(VCPU0_UPCALL_MASK),
        pending_sel: load_u64(si, VCPU0_PENDING_SEL),
    })
}

// ---------------------------------------------------------------- EVTCHNOP

/// `EVTCHNOP_alloc_unbound`: a new port of ours that `remote_dom` may bind.
pub fn alloc_unbound(remote_dom: u16) -> Result<u32, Errno> {
    let mut op = hypercall::EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom,
        port: 0,
    };
    hypercall::event_channel_op(&mut op)?;
    Ok(op.port)
}

/// `EVTCHNOP_bind_interdomain`: connect to `remote_port` of `remote_dom`;
/// returns our local port (masked until `bind`/`unmask`).
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, Errno> {
    let mut op = hypercall::EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    hypercall::event_channel_op(&mut op)?;
    mask(op.local_port);
    Ok(op.local_port)
}

/// `EVTCHNOP_bind_virq` on `vcpu`; returns the port (masked until bound).
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, Errno> {
    let mut op = hypercall::EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    hypercall::event_channel_op(&mut op)?;
    mask(op.port);
    Ok(op.port)
}

/// `EVTCHNOP_send`.
pub fn send(port: u32) -> Result<(), Errno> {
    hypercall::evtchn_send(port)
}

/// `EVTCHNOP_close`, after removing the handler.
pub fn close(port: u32) -> Result<(), Errno> {
    unbind(port);
    hypercall::event_channel_op(&mut hypercall::EvtchnClose { port })
}

/// `EVTCHNOP_unmask`: Xen clears the mask bit and, if the port is pending,
/// raises the upcall.
pub fn unmask(port: u32) -> Result<(), Errno> {
    hypercall::event_channel_op(&mut hypercall::EvtchnUnmask { port })
}

/// Set `port`'s mask bit (no hypercall needed).
pub fn mask(port: u32) {
    if let (Some(si), true) = (shared_info(), port < NR_PORTS) {
        let (off, bit) = bit_u32(EVTCHN_MASK, port);
        si.fetch_or_u32(off, bit);
    }
}

/// `EVTCHNOP_status` of our `port`.
pub fn status(port: u32) -> Result<EvtchnState, Errno> {
    let mut op = hypercall::EvtchnStatusOp {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    hypercall::event_channel_op(&mut op)?;
    Ok(op.state())
}

// ------------------------------------------------------- polling (drivers)

/// Signal `port` (EVTCHNOP_send). Errors are ignored: a notification to a
/// closed port has nobody to wake.
pub fn notify(port: u32) {
    let _ = hypercall::evtchn_send(port);
}

/// Clear `port`'s pending bit (2-level ABI: bit port%64 of word port/64;
/// addressed as little-endian u32 words).
pub fn clear_pending(port: u32) {
    if let (Some(si), true) = (shared_info(), port < NR_PORTS) {
        let (off, bit) = bit_u32(EVTCHN_PENDING, port);
        si.fetch_and_u32(off, !bit);
    }
}

/// Sleep until `port` is pending or Xen system time reaches `deadline_ns`
/// (SCHEDOP_poll; works whether or not upcalls are enabled, and on masked
/// ports).
pub fn wait(port: u32, deadline_ns: u64) {
    if hypercall::sched_poll(&[port], deadline_ns.max(1)).is_err() {
        let _ = hypercall::sched_yield();
    }
}

/// What a driver (console, demo ring, vchan) needs from the event layer;
/// [`XenEvents`] is the kernel's implementation, host tests use fakes.
pub trait Events {
    /// Signal the backend on `port` (EVTCHNOP_send).
    fn notify(&self, port: u32);
    /// Clear a pending event on `port`; called before re-checking the ring,
    /// so a notification that arrives afterwards ends the next `wait`.
    fn clear(&self, port: u32);
    /// Sleep until `port` is pending or the clock reaches `deadline_ns`.
    fn wait(&self, port: u32, deadline_ns: u64);
    /// Monotonic time in ns.
    fn now_ns(&self) -> u64;
}

/// Whether the other end of an event channel is gone (kernel:
/// `EVTCHNOP_status` no longer `interdomain`).
pub trait PeerProbe {
    /// Whether `port`'s remote end is closed.
    fn peer_gone(&self, port: u32) -> bool;
}

/// The event operations drivers get (they never issue hypercalls).
#[derive(Clone, Copy, Debug, Default)]
pub struct XenEvents;

impl Events for XenEvents {
    fn notify(&self, port: u32) {
        notify(port)
    }
    fn clear(&self, port: u32) {
        clear_pending(port)
    }
    fn wait(&self, port: u32, deadline_ns: u64) {
        wait(port, deadline_ns)
    }
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    /// Xen's side of the 2-level ABI over plain memory.
    struct Fake {
        upcall_pending: Cell<bool>,
        sel: Cell<u64>,
        pending: RefCell<[u64; EVTCHN_WORDS]>,
        mask: RefCell<[u64; EVTCHN_WORDS]>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                upcall_pending: Cell::new(false),
                sel: Cell::new(0),
                pending: RefCell::new([0; EVTCHN_WORDS]),
                mask: RefCell::new([0; EVTCHN_WORDS]),
            }
        }
        /// evtchn_2l_set_pending.
        fn fire(&self, port: u32) {
            let (w, b) = ((port / 64) as usize, port % 64);
            let was = self.pending.borrow()[w] & (1 << b) != 0;
            self.pending.borrow_mut()[w] |= 1 << b;
            if !was && self.mask.borrow()[w] & (1 << b) == 0 {
                self.sel.set(self.sel.get() | 1 << w);
                self.upcall_pending.set(true);
            }
        }
    }

    impl Bitmaps for Fake {
        fn take_sel(&self) -> u64 {
            self.upcall_pending.set(false);
            self.sel.replace(0)
        }
        fn reraise(&self, sel: u64) {
            self.sel.set(self.sel.get() | sel);
            self.upcall_pending.set(true);
        }
        fn pending(&self, word: usize) -> u64 {
            self.pending.borrow()[word]
        }
        fn mask(&self, word: usize) -> u64 {
            self.mask.borrow()[word]
        }
        fn test_and_clear_pending(&self, port: u32) -> bool {
            let (w, b) = ((port / 64) as usize, port % 64);
            let mut p = self.pending.borrow_mut();
            let was = p[w] & (1 << b) != 0;
            p[w] &= !(1 << b);
            was
        }
    }

    #[test]
    fn handles_pending_unmasked_ports_and_clears_them() {
        let f = Fake::new();
        for p in [3, 64, 200, 4095] {
            f.fire(p);
        }
        f.mask.borrow_mut()[1] = 1 << 8; // port 72 masked
        f.fire(72);
        let mut seen = Vec::new();
        let mut cur = 0;
        let r = scan(&f, 100, &mut cur, |p| seen.push(p));
        assert_eq!(seen, [3, 64, 200, 4095]);
        assert_eq!(
            r,
            ScanResult {
                handled: 4,
                reraised: false
            }
        );
        assert!(!f.upcall_pending.get());
        // The masked port stays pending for a poller.
        assert_eq!(f.pending(1), 1 << 8);
    }

    #[test]
    fn budget_leaves_the_rest_pending_and_reraises() {
        let f = Fake::new();
        for p in 0..10 {
            f.fire(p * 7);
        }
        let mut seen = Vec::new();
        let mut cur = 0;
        let r = scan(&f, 4, &mut cur, |p| seen.push(p));
        assert_eq!(
            r,
            ScanResult {
                handled: 4,
                reraised: true
            }
        );
        assert_eq!(seen, [0, 7, 14, 21]);
        assert_eq!(cur, 28);
        assert!(f.upcall_pending.get());
        // Next upcalls continue where the last stopped.
        while f.upcall_pending.get() {
            scan(&f, 4, &mut cur, |p| seen.push(p));
        }
        assert_eq!(seen, (0..10).map(|p| p * 7).collect::<Vec<_>>());
    }

    #[test]
    fn round_robin_wraps_around() {
        let f = Fake::new();
        for p in [1, 100, 3000] {
            f.fire(p);
        }
        let mut seen = Vec::new();
        let mut cur = 100;
        scan(&f, 10, &mut cur, |p| seen.push(p));
        assert_eq!(seen, [100, 3000, 1]);
    }

    #[test]
    fn endless_port_does_not_starve_another() {
        // Port 1 re-fires from its own handler forever; port 5 fires once.
        let f = Fake::new();
        f.fire(1);
        f.fire(5);
        let mut order = Vec::new();
        let mut cur = 0;
        for _ in 0..10 {
            assert!(f.upcall_pending.get(), "upcall re-raised");
            scan(&f, MAX_PORTS_PER_UPCALL, &mut cur, |p| {
                order.push(p);
                if p == 1 {
                    f.fire(1);
                }
            });
        }
        // Port 5 ran in the first upcall, port 1 once per upcall.
        assert_eq!(&order[..2], [1, 5]);
        assert_eq!(order.iter().filter(|&&p| p == 1).count(), 10);
    }

    #[test]
    fn bit_offsets() {
        assert_eq!(bit_u32(EVTCHN_PENDING, 0), (2048, 1));
        assert_eq!(bit_u32(EVTCHN_PENDING, 33), (2052, 2));
        assert_eq!(bit_u32(EVTCHN_MASK, 4095), (2560 + 508, 1 << 31));
    }
}
