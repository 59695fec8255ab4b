//! Event channels and shared_info, as far as the kernel needs them now:
//! notify a port, clear / wait for a pending port (SCHEDOP_poll), and the
//! upcall mask. The only caller of `hypercall::evtchn_send`.
//!
//! No upcall handler is installed yet: events stay masked
//! (vcpu_info.evtchn_upcall_mask = 1) and the kernel polls.

use spin::Once;

use crate::drivers::console;
use crate::hypercall;
use crate::shared::SharedMem;
use crate::time;

/// shared_info (x86_64): vcpu_info[32] @0 (64 bytes each), evtchn_pending
/// bitmap @2048, evtchn_mask bitmap @2560.
const VCPU0_UPCALL_MASK: usize = 1;
const EVTCHN_PENDING: usize = 2048;

static SHARED_INFO: Once<SharedMem> = Once::new();

/// Record the mapped shared_info page and mask event upcalls on vCPU 0
/// (there is no callback to deliver them to).
pub fn init(shared_info: SharedMem) {
    shared_info.store_u8(VCPU0_UPCALL_MASK, 1);
    SHARED_INFO.call_once(|| shared_info);
}

/// The shared_info page, once `init` ran.
pub fn shared_info() -> Option<&'static SharedMem> {
    SHARED_INFO.get()
}

/// Signal `port` (EVTCHNOP_send). Errors are ignored: a notification to a
/// closed port has nobody to wake.
pub fn notify(port: u32) {
    let _ = hypercall::evtchn_send(port);
}

/// Clear `port`'s pending bit (2-level ABI: bit port%64 of word port/64;
/// addressed as little-endian u32 words).
pub fn clear_pending(port: u32) {
    if let Some(si) = shared_info() {
        if port < 4096 {
            let word = EVTCHN_PENDING + (port as usize / 32) * 4;
            si.fetch_and_u32(word, !(1u32 << (port % 32)));
        }
    }
}

/// Sleep until `port` is pending or Xen system time reaches `deadline_ns`.
pub fn wait(port: u32, deadline_ns: u64) {
    if hypercall::sched_poll(&[port], deadline_ns.max(1)).is_err() {
        let _ = hypercall::sched_yield();
    }
}

/// The event operations drivers get (they never issue hypercalls).
#[derive(Clone, Copy, Debug, Default)]
pub struct XenEvents;

impl console::Events for XenEvents {
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
