//! Generic typed request/response ring, as defined by Xen's
//! `xen/include/public/io/ring.h` (used by blkif, netif, and friends).
//!
//! Layout of the shared ring (`struct *_sring`), over one or more pages:
//!
//! | offset | field |
//! |---|---|
//! | 0  | `req_prod: u32`  |
//! | 4  | `req_event: u32` |
//! | 8  | `rsp_prod: u32`  |
//! | 12 | `rsp_event: u32` |
//! | 16 | `__pad[48]` |
//! | 64 | `ring[nr_ents]`, each slot a C union of request and response |
//!
//! The header is [`SringHeader`](crate::xen_abi::ring::SringHeader); the
//! offsets used here come from it.
//!
//! `nr_ents` is the largest power of two ≤ (bytes − 64) / slot (`__RD32`).
//! Indices are free-running `u32`; the slot of index `i` is `i & (nr_ents−1)`.
//!
//! Safety model (style.md): every peer-owned index is read once, validated
//! (`prod − cons` may never exceed what could legitimately be outstanding),
//! and every entry is *copied out* of the page before the caller sees it.
//! A peer that violates this gets [`RingError::BadIndex`], never a panic or an
//! out-of-bounds access (slots are always masked).

use core::marker::PhantomData;
use core::mem::{align_of, size_of};

use crate::shared::{mb, rmb, wmb, Pod, SharedMem};
use crate::xen_abi::ring::{PAD, REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};

/// Byte offset of the first ring slot (`ring.h`: header padded to 64 bytes).
pub const RING_HEADER_SIZE: usize = crate::xen_abi::ring::HEADER_SIZE;

/// Errors raised by ring operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The memory is too small for even one slot.
    TooSmall {
        /// Bytes given.
        bytes: usize,
        /// Bytes of one slot (the larger of request and response).
        slot: usize,
    },
    /// No free slot for another request (front) / no consumed request to
    /// answer (back).
    Full,
    /// The peer published a producer index that cannot be right:
    /// `prod − cons` exceeds `limit` (the ring size, or what we asked for).
    BadIndex {
        /// The peer's producer index.
        prod: u32,
        /// Our consumer index.
        cons: u32,
        /// The most `prod - cons` may be.
        limit: u32,
    },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::TooSmall { bytes, slot } => {
                write!(f, "ring of {bytes} bytes cannot hold a {slot}-byte slot")
            }
            RingError::Full => write!(f, "ring full"),
            RingError::BadIndex { prod, cons, limit } => write!(
                f,
                "peer producer index {prod} is {} past consumer {cons} (limit {limit})",
                prod.wrapping_sub(*cons)
            ),
        }
    }
}

impl core::error::Error for RingError {}

/// Notification counters (for diagnostics and benchmarks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingStats {
    /// Entries pushed by us (requests on the front, responses on the back).
    pub pushed: u64,
    /// Entries consumed by us.
    pub consumed: u64,
    /// `push_*_and_check_notify` calls that asked for an event-channel send.
    pub notifies: u64,
    /// `push_*_and_check_notify` calls where the peer did not need a kick.
    pub suppressed: u64,
}

/// The shared layout: header plus `nr_ents` slots of a `Req`/`Rsp` union,
/// over a view valid for `'a`.
pub struct Ring<'a, Req: Pod, Rsp: Pod> {
    mem: SharedMem<'a>,
    nr_ents: u32,
    slot: usize,
    _t: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: Pod, Rsp: Pod> Ring<'a, Req, Rsp> {
    /// Slot size: `sizeof(union { Req; Rsp; })` — the larger size, rounded
    /// up to the larger alignment, as a C compiler lays out the union.
    pub const SLOT_SIZE: usize = {
        let s = if size_of::<Req>() > size_of::<Rsp>() {
            size_of::<Req>()
        } else {
            size_of::<Rsp>()
        };
        let a = if align_of::<Req>() > align_of::<Rsp>() {
            align_of::<Req>()
        } else {
            align_of::<Rsp>()
        };
        s.div_ceil(a) * a
    };

    /// Number of slots a ring of `bytes` bytes holds (`__CONST_RING_SIZE`).
    pub const fn nr_ents_for(bytes: usize) -> usize {
        if bytes <= RING_HEADER_SIZE || Self::SLOT_SIZE == 0 {
            return 0;
        }
        let n = (bytes - RING_HEADER_SIZE) / Self::SLOT_SIZE;
        if n == 0 {
            0
        } else {
            // __RD32: round down to a power of two.
            1 << (usize::BITS - 1 - n.leading_zeros())
        }
    }

    /// Lays the typed ring over `mem` (does not touch the contents).
    pub fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let n = Self::nr_ents_for(mem.len());
        if n == 0 {
            return Err(RingError::TooSmall {
                bytes: mem.len(),
                slot: Self::SLOT_SIZE,
            });
        }
        let nr_ents = u32::try_from(n).unwrap_or(1 << 31);
        Ok(Ring {
            mem,
            nr_ents,
            slot: Self::SLOT_SIZE,
            _t: PhantomData,
        })
    }

    /// Number of slots (`RING_SIZE`).
    pub fn nr_ents(&self) -> u32 {
        self.nr_ents
    }

    /// `SHARED_RING_INIT`: producers 0, events 1, padding zeroed. The
    /// frontend does this before granting the page.
    pub fn init_shared(&self) {
        self.init_shared_at(0);
    }

    fn init_shared_at(&self, start: u32) {
        self.mem.store_u32(REQ_PROD, start);
        self.mem.store_u32(RSP_PROD, start);
        self.mem.store_u32(REQ_EVENT, start.wrapping_add(1));
        self.mem.store_u32(RSP_EVENT, start.wrapping_add(1));
        self.mem.fill(PAD, RING_HEADER_SIZE - PAD, 0);
    }

    fn slot_off(&self, idx: u32) -> usize {
        RING_HEADER_SIZE + (idx & (self.nr_ents - 1)) as usize * self.slot
    }

    fn write_req(&self, idx: u32, req: Req) {
        self.mem.write(self.slot_off(idx), req);
    }
    fn read_req(&self, idx: u32) -> Req {
        self.mem.read(self.slot_off(idx))
    }
    fn write_rsp(&self, idx: u32, rsp: Rsp) {
        self.mem.write(self.slot_off(idx), rsp);
    }
    fn read_rsp(&self, idx: u32) -> Rsp {
        self.mem.read(self.slot_off(idx))
    }

    fn req_prod(&self) -> u32 {
        self.mem.load_u32(REQ_PROD)
    }
    fn rsp_prod(&self) -> u32 {
        self.mem.load_u32(RSP_PROD)
    }
}

/// `RING_PUSH_*_AND_CHECK_NOTIFY` core: publish `new` at `prod_off`, then
/// decide whether the peer asked to be woken for any index in `(old, new]`.
fn publish_and_check(mem: &SharedMem<'_>, prod_off: usize, event_off: usize, new: u32) -> bool {
    let old = mem.load_u32(prod_off);
    wmb(); // entries visible before the index
    mem.store_u32(prod_off, new);
    mb(); // index visible before we read the peer's event threshold
    let event = mem.load_u32(event_off);
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The frontend side: produces requests, consumes responses.
pub struct FrontRing<'a, Req: Pod, Rsp: Pod> {
    ring: Ring<'a, Req, Rsp>,
    req_prod_pvt: u32,
    rsp_cons: u32,
    /// Last `rsp_prod` read from the page and validated.
    rsp_prod_seen: u32,
    stats: RingStats,
}

impl<'a, Req: Pod, Rsp: Pod> FrontRing<'a, Req, Rsp> {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`: initialise the shared header
    /// and attach the frontend with private indices at 0.
    pub fn init_shared(mem: SharedMem<'a>) -> Result<Self, RingError> {
        Self::init_shared_at(mem, 0)
    }

    /// As [`init_shared`](Self::init_shared) but starting all indices at
    /// `start` (tests use this to exercise `u32` wrap-around).
    pub fn init_shared_at(mem: SharedMem<'a>, start: u32) -> Result<Self, RingError> {
        let ring = Ring::new(mem)?;
        ring.init_shared_at(start);
        Ok(FrontRing {
            ring,
            req_prod_pvt: start,
            rsp_cons: start,
            rsp_prod_seen: start,
            stats: RingStats::default(),
        })
    }

    /// Slot count.
    pub fn nr_ents(&self) -> u32 {
        self.ring.nr_ents
    }

    /// `RING_FREE_REQUESTS`: `nr_ents − (req_prod_pvt − rsp_cons)`.
    pub fn free_slots(&self) -> u32 {
        self.ring.nr_ents - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Requests pushed and not yet answered (consumed).
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes `req` into the next private slot (`RING_GET_REQUEST` +
    /// `req_prod_pvt++`). Not visible to the backend until
    /// [`push_requests_and_check_notify`](Self::push_requests_and_check_notify).
    pub fn push_request(&mut self, req: Req) -> Result<(), RingError> {
        if self.free_slots() == 0 {
            return Err(RingError::Full);
        }
        self.ring.write_req(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        self.stats.pushed += 1;
        Ok(())
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publish `req_prod`; returns
    /// `true` if the backend must be sent an event.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let n = publish_and_check(&self.ring.mem, REQ_PROD, REQ_EVENT, self.req_prod_pvt);
        if n {
            self.stats.notifies += 1;
        } else {
            self.stats.suppressed += 1;
        }
        n
    }

    /// Reads and validates `rsp_prod` (once), `rmb`.
    fn refresh_rsp_prod(&mut self) -> Result<u32, RingError> {
        let prod = self.ring.rsp_prod();
        rmb(); // responses are read after the index
               // The backend can only answer requests we published: at most
               // req_prod_pvt − rsp_cons (which itself is ≤ nr_ents).
        let limit = self.outstanding();
        if prod.wrapping_sub(self.rsp_cons) > limit {
            return Err(RingError::BadIndex {
                prod,
                cons: self.rsp_cons,
                limit,
            });
        }
        self.rsp_prod_seen = prod;
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_RESPONSES`, validated.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        Ok(self.refresh_rsp_prod()?.wrapping_sub(self.rsp_cons))
    }

    /// Takes the next response, copied out of the ring, or `None` if the
    /// backend has not produced one. A bogus `rsp_prod` is `BadIndex`.
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_cons == self.rsp_prod_seen {
            self.refresh_rsp_prod()?;
            if self.rsp_cons == self.rsp_prod_seen {
                return Ok(None);
            }
        }
        let rsp = self.ring.read_rsp(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        self.stats.consumed += 1;
        Ok(Some(rsp))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: call when `take_response` returned
    /// `None`, before sleeping. Re-arms `rsp_event = rsp_cons + 1`, `mb`, and
    /// re-checks; `true` means more responses arrived (loop again instead of
    /// sleeping).
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? != 0 {
            return Ok(true);
        }
        self.ring
            .mem
            .store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        mb();
        Ok(self.unconsumed_responses()? != 0)
    }

    /// Counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }
}

/// The backend side: consumes requests, produces responses.
pub struct BackRing<'a, Req: Pod, Rsp: Pod> {
    ring: Ring<'a, Req, Rsp>,
    rsp_prod_pvt: u32,
    req_cons: u32,
    req_prod_seen: u32,
    stats: RingStats,
}

impl<'a, Req: Pod, Rsp: Pod> BackRing<'a, Req, Rsp> {
    /// `BACK_RING_ATTACH`: attach to an initialised ring, starting from the
    /// current `rsp_prod` (requests are consumed from there too).
    pub fn attach(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let ring = Ring::new(mem)?;
        let start = ring.rsp_prod();
        Ok(BackRing {
            ring,
            rsp_prod_pvt: start,
            req_cons: start,
            req_prod_seen: start,
            stats: RingStats::default(),
        })
    }

    /// Slot count.
    pub fn nr_ents(&self) -> u32 {
        self.ring.nr_ents
    }

    fn refresh_req_prod(&mut self) -> Result<u32, RingError> {
        let prod = self.ring.req_prod();
        rmb();
        // RING_REQUEST_CONS_OVERFLOW: unanswered requests (prod −
        // rsp_prod_pvt) can never exceed the ring size, so the unconsumed
        // ones are bounded by the slots not already taken by requests we
        // consumed but have not answered (this also rejects a prod that
        // moved backwards).
        let in_flight = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        let limit = self.ring.nr_ents - in_flight;
        if prod.wrapping_sub(self.req_cons) > limit {
            return Err(RingError::BadIndex {
                prod,
                cons: self.req_cons,
                limit,
            });
        }
        self.req_prod_seen = prod;
        Ok(prod)
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`, validated.
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        Ok(self.refresh_req_prod()?.wrapping_sub(self.req_cons))
    }

    /// Takes the next request (copied out), or `None`.
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_cons == self.req_prod_seen {
            self.refresh_req_prod()?;
            if self.req_cons == self.req_prod_seen {
                return Ok(None);
            }
        }
        let req = self.ring.read_req(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        self.stats.consumed += 1;
        Ok(Some(req))
    }

    /// Writes a response into the next private slot. Fails with `Full` if
    /// every consumed request has already been answered.
    pub fn push_response(&mut self, rsp: Rsp) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::Full);
        }
        self.ring.write_rsp(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        self.stats.pushed += 1;
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let n = publish_and_check(&self.ring.mem, RSP_PROD, RSP_EVENT, self.rsp_prod_pvt);
        if n {
            self.stats.notifies += 1;
        } else {
            self.stats.suppressed += 1;
        }
        n
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: re-arm `req_event = req_cons + 1`,
    /// `mb`, re-check. `true` = more work, do not sleep.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_requests()? != 0 {
            return Ok(true);
        }
        self.ring
            .mem
            .store_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        mb();
        Ok(self.unconsumed_requests()? != 0)
    }

    /// Counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::TestPages;

    crate::pod_struct! {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Req {
            id: u64,
            val: u64,
        }
    }
    crate::pod_struct! {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Rsp {
            id: u64,
            status: i32,
            pad: u32,
        }
    }

    type Front<'a> = FrontRing<'a, Req, Rsp>;
    type Back<'a> = BackRing<'a, Req, Rsp>;

    fn rsp(id: u64) -> Rsp {
        Rsp {
            id,
            status: 0,
            pad: 0,
        }
    }

    #[test]
    fn sizes_match_ring_h() {
        // blkif: 112-byte request, 16-byte response → 32 slots per page.
        assert_eq!(Ring::<[u64; 14], [u64; 2]>::nr_ents_for(4096), 32);
        assert_eq!(Ring::<[u64; 14], [u64; 2]>::nr_ents_for(4096 * 4), 128);
        // netif tx: 12-byte request (align 4), 4-byte response → 256.
        assert_eq!(Ring::<[u32; 3], [u16; 2]>::SLOT_SIZE, 12);
        assert_eq!(Ring::<[u32; 3], [u16; 2]>::nr_ents_for(4096), 256);
        // Union rounding: 12-byte/align-4 and 8-byte/align-8 → 16-byte slot.
        assert_eq!(Ring::<[u32; 3], u64>::SLOT_SIZE, 16);
        assert_eq!(Ring::<Req, Rsp>::nr_ents_for(4096), 128);
        assert_eq!(Ring::<Req, Rsp>::nr_ents_for(64), 0);
    }

    #[test]
    fn init_shared_layout() {
        let p = TestPages::new(1);
        let m = p.mem();
        m.fill(0, 4096, 0xaa);
        let f = Front::init_shared(m.clone()).unwrap();
        assert_eq!(m.load_u32(REQ_PROD), 0);
        assert_eq!(m.load_u32(REQ_EVENT), 1);
        assert_eq!(m.load_u32(RSP_PROD), 0);
        assert_eq!(m.load_u32(RSP_EVENT), 1);
        assert_eq!(m.read::<[u8; 48]>(PAD), [0; 48]);
        assert_eq!(f.free_slots(), 128);
        let small = m.sub(0, 64).unwrap();
        assert!(matches!(
            Front::init_shared(small),
            Err(RingError::TooSmall { .. })
        ));
    }

    /// Round trips a batch at every start offset near u32::MAX.
    #[test]
    fn index_wrap_at_u32_max() {
        for start in [
            u32::MAX - 200,
            u32::MAX - 1,
            u32::MAX,
            0u32.wrapping_sub(128),
        ] {
            let p = TestPages::new(1);
            let mut f = Front::init_shared_at(p.mem(), start).unwrap();
            let mut b = Back::attach(p.mem()).unwrap();
            for round in 0..5u64 {
                for i in 0..100 {
                    f.push_request(Req {
                        id: round * 1000 + i,
                        val: i,
                    })
                    .unwrap();
                }
                f.push_requests_and_check_notify();
                while let Some(r) = b.take_request().unwrap() {
                    b.push_response(rsp(r.id)).unwrap();
                }
                b.push_responses_and_check_notify();
                for i in 0..100 {
                    assert_eq!(f.take_response().unwrap().unwrap().id, round * 1000 + i);
                }
                assert_eq!(f.take_response().unwrap(), None);
                assert_eq!(f.free_slots(), 128);
            }
        }
    }

    #[test]
    fn full_ring() {
        let p = TestPages::new(1);
        let mut f = Front::init_shared_at(p.mem(), u32::MAX - 3).unwrap();
        for i in 0..128 {
            f.push_request(Req { id: i, val: 0 }).unwrap();
        }
        assert_eq!(f.free_slots(), 0);
        assert_eq!(
            f.push_request(Req { id: 999, val: 0 }),
            Err(RingError::Full)
        );
        f.push_requests_and_check_notify();
        let mut b = Back::attach(p.mem()).unwrap();
        assert_eq!(b.push_response(rsp(0)), Err(RingError::Full));
        let r = b.take_request().unwrap().unwrap();
        b.push_response(rsp(r.id)).unwrap();
        b.push_responses_and_check_notify();
        assert_eq!(f.take_response().unwrap().unwrap().id, 0);
        assert_eq!(f.free_slots(), 1);
        f.push_request(Req { id: 128, val: 0 }).unwrap();
    }

    #[test]
    fn notify_suppression() {
        let p = TestPages::new(1);
        let mut f = Front::init_shared(p.mem()).unwrap();
        let mut b = Back::attach(p.mem()).unwrap();
        // req_event = 1 initially: the first push notifies.
        f.push_request(Req { id: 1, val: 0 }).unwrap();
        assert!(f.push_requests_and_check_notify());
        // Backend has not re-armed (req_event still 1): no more notifies.
        f.push_request(Req { id: 2, val: 0 }).unwrap();
        assert!(!f.push_requests_and_check_notify());
        // Backend drains and re-arms via final check: next push notifies.
        while b.take_request().unwrap().is_some() {}
        assert!(!b.final_check_for_requests().unwrap());
        f.push_request(Req { id: 3, val: 0 }).unwrap();
        f.push_request(Req { id: 4, val: 0 }).unwrap();
        assert!(f.push_requests_and_check_notify());
        // Final check sees pending work and does not re-arm.
        assert!(b.final_check_for_requests().unwrap());
        // Responses: rsp_event = 1 initially.
        for id in 1..=4 {
            b.take_request().unwrap();
            b.push_response(rsp(id)).unwrap();
            let n = b.push_responses_and_check_notify();
            assert_eq!(n, id == 1, "response {id}");
        }
        assert_eq!(f.take_response().unwrap().unwrap().id, 1);
        assert!(f.final_check_for_responses().unwrap()); // 3 still pending
        for _ in 0..3 {
            f.take_response().unwrap().unwrap();
        }
        assert!(!f.final_check_for_responses().unwrap()); // re-armed at cons+1
        assert_eq!(p.mem().load_u32(RSP_EVENT), 5);
        assert_eq!(f.stats().notifies, 2);
        assert_eq!(f.stats().suppressed, 1);
        assert_eq!(b.stats().notifies, 1);
        assert_eq!(b.stats().suppressed, 3);
    }

    #[test]
    fn bad_response_index_from_backend() {
        let p = TestPages::new(1);
        let m = p.mem();
        let mut f = Front::init_shared_at(m.clone(), u32::MAX - 1).unwrap();
        for i in 0..3 {
            f.push_request(Req { id: i, val: 0 }).unwrap();
        }
        f.push_requests_and_check_notify();
        // Beyond what was requested (4 > 3 outstanding).
        m.store_u32(RSP_PROD, (u32::MAX - 1).wrapping_add(4));
        let e = f.take_response().unwrap_err();
        assert_eq!(
            e,
            RingError::BadIndex {
                prod: 2,
                cons: u32::MAX - 1,
                limit: 3
            }
        );
        // Way beyond the ring size; also rsp_prod going backwards.
        m.store_u32(RSP_PROD, 1000);
        assert!(matches!(f.take_response(), Err(RingError::BadIndex { .. })));
        m.store_u32(RSP_PROD, u32::MAX - 5);
        assert!(matches!(
            f.final_check_for_responses(),
            Err(RingError::BadIndex { .. })
        ));
        // A legitimate value recovers; responses are copied once.
        m.store_u32(RSP_PROD, (u32::MAX - 1).wrapping_add(1));
        assert!(f.take_response().unwrap().is_some());
        assert_eq!(f.take_response().unwrap(), None);
    }

    #[test]
    fn bad_request_index_from_frontend() {
        let p = TestPages::new(1);
        let m = p.mem();
        Front::init_shared(m.clone()).unwrap();
        let mut b = Back::attach(m.clone()).unwrap();
        m.store_u32(REQ_PROD, 129);
        assert_eq!(
            b.take_request(),
            Err(RingError::BadIndex {
                prod: 129,
                cons: 0,
                limit: 128
            })
        );
        m.store_u32(REQ_PROD, 128);
        for _ in 0..128 {
            assert!(b.take_request().unwrap().is_some());
        }
        assert_eq!(b.take_request().unwrap(), None);
        // Requests not yet answered still count: 1 more would overflow.
        m.store_u32(REQ_PROD, 129);
        assert!(matches!(b.take_request(), Err(RingError::BadIndex { .. })));
        // After answering 10, 10 more are fine; a req_prod that moves
        // backwards (behind req_cons) is rejected.
        for _ in 0..10 {
            b.push_response(rsp(0)).unwrap();
        }
        m.store_u32(REQ_PROD, 138);
        assert_eq!(b.unconsumed_requests(), Ok(10));
        m.store_u32(REQ_PROD, 127);
        assert!(matches!(
            b.unconsumed_requests(),
            Err(RingError::BadIndex { .. })
        ));
    }

    /// Front and back in two threads, communicating only through shared
    /// pages: the ring page, and an "event channel" page where a notify sets
    /// a pending word the other side waits on (so lost wake-ups would hang,
    /// which the deadline turns into a failure).
    #[test]
    fn two_threads_million_requests() {
        const N: u64 = 1_000_000;
        const EV_BACK: usize = 0; // front → back pending flag
        const EV_FRONT: usize = 4; // back → front pending flag
        let ring_page = TestPages::new(1);
        let ev_page = TestPages::new(1);
        let start = u32::MAX - 1000;
        let mut front = Front::init_shared_at(ring_page.mem(), start).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);

        fn wait(
            ev: &SharedMem<'_>,
            off: usize,
            deadline: std::time::Instant,
            ring: &SharedMem<'_>,
        ) {
            while ev.cas_u32(off, 1, 0).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "lost wake-up on {off}: ring header {:?}",
                    ring.read::<[u32; 4]>(0)
                );
                std::thread::yield_now();
            }
        }

        std::thread::scope(|s| {
            let ev = ev_page.mem();
            let rmem = ring_page.mem();
            s.spawn(move || {
                let mut back = Back::attach(rmem.clone()).unwrap();
                let mut served = 0u64;
                while served < N {
                    let mut any = false;
                    while let Some(r) = back.take_request().unwrap() {
                        back.push_response(Rsp {
                            id: r.id,
                            status: (r.val ^ r.id) as i32,
                            pad: 0,
                        })
                        .unwrap();
                        served += 1;
                        any = true;
                        if served.is_multiple_of(7) && back.push_responses_and_check_notify() {
                            ev.store_u32(EV_FRONT, 1);
                        }
                    }
                    if any && back.push_responses_and_check_notify() {
                        ev.store_u32(EV_FRONT, 1);
                    }
                    if served < N && !back.final_check_for_requests().unwrap() {
                        wait(&ev, EV_BACK, deadline, &rmem);
                    }
                }
            });

            let ev = ev_page.mem();
            let mut next_id = 0u64;
            let mut expect = 0u64;
            while expect < N {
                let mut pushed = false;
                while next_id < N && front.free_slots() > 0 {
                    front
                        .push_request(Req {
                            id: next_id,
                            val: next_id * 3,
                        })
                        .unwrap();
                    next_id += 1;
                    pushed = true;
                }
                if pushed && front.push_requests_and_check_notify() {
                    ev.store_u32(EV_BACK, 1);
                }
                while let Some(r) = front.take_response().unwrap() {
                    assert_eq!(r.id, expect, "responses in order");
                    assert_eq!(r.status, ((expect * 3) ^ expect) as i32);
                    expect += 1;
                }
                // Sleep only when no more requests can be pushed and no
                // responses are pending.
                let blocked = next_id == N || front.free_slots() == 0;
                if expect < N && blocked && !front.final_check_for_responses().unwrap() {
                    wait(&ev, EV_FRONT, deadline, &ring_page.mem());
                }
            }
        });
        assert_eq!(front.stats().consumed, N);
        assert_eq!(front.free_slots(), front.nr_ents());
        // The indices wrapped past u32::MAX.
        assert!(ring_page.mem().load_u32(RSP_PROD) < start);
        assert!(front.stats().suppressed > 0 || front.stats().notifies > 0);
    }
}
