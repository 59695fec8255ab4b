//! io/ring.h shared rings, peer side.
//!
//! Same layout as Xen's `DEFINE_RING_TYPES`: a 64-byte header
//! (`req_prod@0 req_event@4 rsp_prod@8 rsp_event@12`, private bytes @16,
//! padding to 64) followed by `nr_ents` entries, each the size of the
//! request/response union. Indices are free-running u32; slot = idx & mask.
//!
//! Everything read from the other side is copied out once, then validated:
//! a producer index that claims more entries than can exist is reported as a
//! [`RingError`], never trusted.

use crate::shmem::{mb, SharedMem};
use std::fmt;
use std::marker::PhantomData;

pub const REQ_PROD: usize = 0;
pub const REQ_EVENT: usize = 4;
pub const RSP_PROD: usize = 8;
pub const RSP_EVENT: usize = 12;
/// First private byte (`pvt.pvt_pad[0]` / netif `smartpoll_active`).
pub const PVT: usize = 16;
pub const HEADER: usize = 64;

/// A fixed-size ring entry encoded in native (little-endian) byte order.
pub trait Entry: Copy {
    /// `sizeof` of the C struct.
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(bytes: &[u8]) -> Self;
}

/// `__RING_SIZE`: the largest power of two of entries that fits after the
/// 64-byte header. 0 if not even one fits.
pub const fn ring_size(ring_bytes: usize, entry_size: usize) -> u32 {
    if ring_bytes <= HEADER || entry_size == 0 {
        return 0;
    }
    let n = (ring_bytes - HEADER) / entry_size;
    if n == 0 {
        return 0;
    }
    // largest power of two <= n
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `RING_PUSH_*_AND_CHECK_NOTIFY`'s test: notify iff the consumer's event
/// index lies in `(old, new]`, in wrapping u32 arithmetic.
pub fn need_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Malformed data from the other side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The frontend's `req_prod` claims more unanswered requests than slots.
    BadReqProd {
        req_prod: u32,
        rsp_prod_pvt: u32,
        size: u32,
    },
    /// The backend's `rsp_prod` claims responses to requests never sent.
    BadRspProd {
        rsp_prod: u32,
        rsp_cons: u32,
        req_prod_pvt: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::BadReqProd {
                req_prod,
                rsp_prod_pvt,
                size,
            } => write!(
                f,
                "bad req_prod {req_prod}: {} requests outstanding > {size} slots",
                req_prod.wrapping_sub(rsp_prod_pvt)
            ),
            RingError::BadRspProd {
                rsp_prod,
                rsp_cons,
                req_prod_pvt,
            } => write!(
                f,
                "bad rsp_prod {rsp_prod}: {} new responses but only {} requests outstanding",
                rsp_prod.wrapping_sub(rsp_cons),
                req_prod_pvt.wrapping_sub(rsp_cons)
            ),
        }
    }
}

impl std::error::Error for RingError {}

fn geometry<Req: Entry, Rsp: Entry>(mem: &SharedMem<'_>) -> (u32, usize) {
    let esz = Req::SIZE.max(Rsp::SIZE);
    let n = ring_size(mem.len(), esz);
    assert!(n > 0, "ring page too small");
    (n, esz)
}

/// `SHARED_RING_INIT`: zero the header, both event indices = 1.
pub fn init_shared(mem: &SharedMem<'_>) {
    mem.write(0, &[0u8; HEADER]);
    mem.store_u32(REQ_EVENT, 1);
    mem.store_u32(RSP_EVENT, 1);
}

/// The frontend end: produces requests, consumes responses.
pub struct FrontRing<'a, Req, Rsp> {
    mem: SharedMem<'a>,
    size: u32,
    esz: usize,
    req_prod_pvt: u32,
    rsp_cons: u32,
    _t: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: Entry, Rsp: Entry> FrontRing<'a, Req, Rsp> {
    /// Initialise the shared header (`SHARED_RING_INIT` + `FRONT_RING_INIT`).
    pub fn init(mem: SharedMem<'a>) -> Self {
        init_shared(&mem);
        let (size, esz) = geometry::<Req, Rsp>(&mem);
        Self {
            mem,
            size,
            esz,
            req_prod_pvt: 0,
            rsp_cons: 0,
            _t: PhantomData,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn mem(&self) -> &SharedMem<'a> {
        &self.mem
    }

    /// Requests produced (pushed or not) and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// `RING_FREE_REQUESTS`.
    pub fn free_slots(&self) -> u32 {
        self.size - self.outstanding()
    }

    fn slot_off(&self, idx: u32) -> usize {
        HEADER + (idx & (self.size - 1)) as usize * self.esz
    }

    /// Write `req` into the next private slot. `false` if the ring is full.
    pub fn produce(&mut self, req: &Req) -> bool {
        if self.free_slots() == 0 {
            return false;
        }
        let mut buf = vec![0u8; self.esz];
        req.encode(&mut buf[..Req::SIZE]);
        self.mem.write(self.slot_off(self.req_prod_pvt), &buf);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publish, return whether to notify.
    pub fn push_requests(&mut self) -> bool {
        let old = self.mem.load_u32(REQ_PROD);
        let new = self.req_prod_pvt;
        self.mem.store_u32_release(REQ_PROD, new); // wmb; req_prod = new
        mb();
        let event = self.mem.load_u32(REQ_EVENT);
        need_notify(old, new, event)
    }

    /// Consume every response available now (copied out, index validated).
    pub fn take_responses(&mut self) -> Result<Vec<Rsp>, RingError> {
        let rp = self.mem.load_u32_acquire(RSP_PROD); // rsp_prod; rmb
        let avail = rp.wrapping_sub(self.rsp_cons);
        if avail > self.outstanding() {
            return Err(RingError::BadRspProd {
                rsp_prod: rp,
                rsp_cons: self.rsp_cons,
                req_prod_pvt: self.req_prod_pvt,
            });
        }
        let mut out = Vec::with_capacity(avail as usize);
        let mut buf = vec![0u8; Rsp::SIZE];
        while self.rsp_cons != rp {
            self.mem.read(self.slot_off(self.rsp_cons), &mut buf);
            out.push(Rsp::decode(&buf));
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        Ok(out)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: arm `rsp_event` and re-check, so a
    /// response published in between is not slept through. `true` = work.
    pub fn final_check_responses(&mut self) -> bool {
        if self.mem.load_u32(RSP_PROD) != self.rsp_cons {
            return true;
        }
        self.mem.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        mb();
        self.mem.load_u32(RSP_PROD) != self.rsp_cons
    }
}

/// The backend end: consumes requests, produces responses.
pub struct BackRing<'a, Req, Rsp> {
    mem: SharedMem<'a>,
    size: u32,
    esz: usize,
    req_cons: u32,
    rsp_prod_pvt: u32,
    _t: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: Entry, Rsp: Entry> BackRing<'a, Req, Rsp> {
    /// `BACK_RING_INIT` on a ring the frontend already initialised.
    pub fn attach(mem: SharedMem<'a>) -> Self {
        let (size, esz) = geometry::<Req, Rsp>(&mem);
        Self {
            mem,
            size,
            esz,
            req_cons: 0,
            rsp_prod_pvt: 0,
            _t: PhantomData,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn mem(&self) -> &SharedMem<'a> {
        &self.mem
    }

    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    fn slot_off(&self, idx: u32) -> usize {
        HEADER + (idx & (self.size - 1)) as usize * self.esz
    }

    /// Copy out every request available now. The frontend may have at most
    /// `size` requests that we have not answered: more is a [`RingError`].
    pub fn take_requests(&mut self) -> Result<Vec<Req>, RingError> {
        let rp = self.mem.load_u32_acquire(REQ_PROD); // req_prod; rmb
        if rp.wrapping_sub(self.rsp_prod_pvt) > self.size {
            return Err(RingError::BadReqProd {
                req_prod: rp,
                rsp_prod_pvt: self.rsp_prod_pvt,
                size: self.size,
            });
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; Req::SIZE];
        while self.req_cons != rp {
            self.mem.read(self.slot_off(self.req_cons), &mut buf);
            out.push(Req::decode(&buf));
            self.req_cons = self.req_cons.wrapping_add(1);
        }
        Ok(out)
    }

    /// Write a response into the next private slot (the slot of the oldest
    /// unanswered request, which has already been copied out).
    pub fn respond(&mut self, rsp: &Rsp) {
        assert!(
            self.rsp_prod_pvt != self.req_cons,
            "response without a consumed request"
        );
        let mut buf = vec![0u8; self.esz];
        rsp.encode(&mut buf[..Rsp::SIZE]);
        self.mem.write(self.slot_off(self.rsp_prod_pvt), &buf);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn push_responses(&mut self) -> bool {
        let old = self.mem.load_u32(RSP_PROD);
        let new = self.rsp_prod_pvt;
        self.mem.store_u32_release(RSP_PROD, new);
        mb();
        let event = self.mem.load_u32(RSP_EVENT);
        need_notify(old, new, event)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`. `true` = more requests are waiting.
    pub fn final_check_requests(&mut self) -> bool {
        if self.mem.load_u32(REQ_PROD) != self.req_cons {
            return true;
        }
        self.mem.store_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        mb();
        self.mem.load_u32(REQ_PROD) != self.req_cons
    }

    /// Fault injection: publish an arbitrary `rsp_prod` (for `--bad-index`).
    pub fn publish_raw_rsp_prod(&mut self, value: u32) {
        self.mem.store_u32_release(RSP_PROD, value);
        mb();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::Msg;
    use crate::shmem::TestPage;

    #[test]
    fn sizes_match_ring_h() {
        // 4096-byte page, 12-byte demo entries: (4096-64)/12 = 336 -> 256.
        assert_eq!(ring_size(4096, 12), 256);
        // blkif: 112-byte union -> 32 slots; netif tx 12 -> 256; rx 8 -> 256.
        assert_eq!(ring_size(4096, 112), 32);
        assert_eq!(ring_size(4096, 8), 256);
        assert_eq!(ring_size(4096, 16), 128);
        assert_eq!(ring_size(64, 12), 0);
        assert_eq!(ring_size(4096, 4032), 1);
    }

    #[test]
    fn notify_rule() {
        // event in (old, new] -> notify
        assert!(need_notify(0, 1, 1));
        assert!(need_notify(0, 5, 3));
        assert!(!need_notify(0, 5, 6));
        assert!(!need_notify(5, 5, 5));
        assert!(!need_notify(3, 5, 3));
        // across the u32 wrap
        assert!(need_notify(u32::MAX - 1, 2, 0));
        assert!(!need_notify(u32::MAX - 1, 2, 3));
    }

    #[test]
    fn init_sets_events() {
        let mut p = TestPage::new();
        let m = p.mem();
        m.store_u32(REQ_PROD, 77);
        let f: FrontRing<Msg, Msg> = FrontRing::init(m);
        assert_eq!(m.load_u32(REQ_PROD), 0);
        assert_eq!(m.load_u32(REQ_EVENT), 1);
        assert_eq!(m.load_u32(RSP_EVENT), 1);
        assert_eq!(f.size(), 256);
    }

    fn msg(i: u32) -> Msg {
        Msg {
            id: i,
            status: i * 3,
            operation: i % 5,
        }
    }

    #[test]
    fn front_and_back_many_wraps() {
        let mut p = TestPage::new();
        let m = p.mem();
        let mut f: FrontRing<Msg, Msg> = FrontRing::init(m);
        let mut b: BackRing<Msg, Msg> = BackRing::attach(m);
        let total = 5000u32;
        let (mut sent, mut got) = (0u32, 0u32);
        let (mut front_notifies, mut back_notifies) = (0, 0);
        while got < total {
            while sent < total && f.produce(&msg(sent)) {
                sent += 1;
            }
            assert!(f.free_slots() == 0 || sent == total);
            if f.push_requests() {
                front_notifies += 1;
            }
            // backend answers up to 100 at a time
            let reqs = b.take_requests().unwrap();
            for r in &reqs {
                b.respond(&Msg {
                    status: r.status + 1,
                    ..*r
                });
            }
            if b.push_responses() {
                back_notifies += 1;
            }
            assert!(!b.final_check_requests());
            for r in f.take_responses().unwrap() {
                assert_eq!(
                    r,
                    Msg {
                        status: got * 3 + 1,
                        ..msg(got)
                    }
                );
                got += 1;
            }
            assert!(!f.final_check_responses());
        }
        assert_eq!(f.outstanding(), 0);
        // with events re-armed after every drain both sides notify each round
        assert!(front_notifies > 0 && back_notifies > 0);
    }

    #[test]
    fn no_notify_while_consumer_busy() {
        let mut p = TestPage::new();
        let m = p.mem();
        let mut f: FrontRing<Msg, Msg> = FrontRing::init(m);
        assert!(f.produce(&msg(0)));
        assert!(f.push_requests()); // req_event = 1 initially
        assert!(f.produce(&msg(1)));
        assert!(!f.push_requests()); // backend has not re-armed req_event
        let mut b: BackRing<Msg, Msg> = BackRing::attach(m);
        assert_eq!(b.take_requests().unwrap().len(), 2);
        assert!(!b.final_check_requests()); // arms req_event = 3
        assert!(f.produce(&msg(2)));
        assert!(f.push_requests());
        assert!(b.final_check_requests());
    }

    #[test]
    fn front_rejects_bad_rsp_prod() {
        let mut p = TestPage::new();
        let m = p.mem();
        let mut f: FrontRing<Msg, Msg> = FrontRing::init(m);
        for i in 0..3 {
            assert!(f.produce(&msg(i)));
        }
        f.push_requests();
        m.store_u32(RSP_PROD, 4);
        assert!(matches!(
            f.take_responses(),
            Err(RingError::BadRspProd { rsp_prod: 4, .. })
        ));
        m.store_u32(RSP_PROD, u32::MAX); // "negative"
        assert!(f.take_responses().is_err());
        m.store_u32(RSP_PROD, 3);
        assert_eq!(f.take_responses().unwrap().len(), 3);
    }

    #[test]
    fn back_rejects_bad_req_prod() {
        let mut p = TestPage::new();
        let m = p.mem();
        let _f: FrontRing<Msg, Msg> = FrontRing::init(m);
        let mut b: BackRing<Msg, Msg> = BackRing::attach(m);
        m.store_u32(REQ_PROD, 257);
        assert!(matches!(
            b.take_requests(),
            Err(RingError::BadReqProd { req_prod: 257, .. })
        ));
        m.store_u32(REQ_PROD, 256);
        assert_eq!(b.take_requests().unwrap().len(), 256);
        // all 256 unanswered: one more is too many
        m.store_u32(REQ_PROD, 257);
        assert!(b.take_requests().is_err());
    }

    #[test]
    fn free_running_indices_wrap() {
        let mut p = TestPage::new();
        let m = p.mem();
        let mut f: FrontRing<Msg, Msg> = FrontRing::init(m);
        let start = u32::MAX - 10;
        // pretend 2^32 - 11 requests already went round
        f.req_prod_pvt = start;
        f.rsp_cons = start;
        m.store_u32(REQ_PROD, start);
        m.store_u32(RSP_PROD, start);
        let mut b: BackRing<Msg, Msg> = BackRing::attach(m);
        b.req_cons = start;
        b.rsp_prod_pvt = start;
        for i in 0..100 {
            assert!(f.produce(&msg(i)));
        }
        f.push_requests();
        let reqs = b.take_requests().unwrap();
        assert_eq!(reqs.len(), 100);
        for r in &reqs {
            b.respond(r);
        }
        b.push_responses();
        let rs = f.take_responses().unwrap();
        assert_eq!(
            rs.iter().map(|r| r.id).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
    }
}
