//! Peer data: an io/ring.h shared ring page written by the other end:
//! producer indices (near ours, behind, far ahead, anything), event
//! thresholds, and slot contents, while our end runs. Four modes: the
//! demo protocol's frontend (`DemoFront`: its response validation against
//! the table of outstanding requests, `poll`, `run`) against a backend
//! that answers honestly, wrongly, twice, or not at all; the demo backend
//! (`DemoBack::serve`) against a frontend producing requests and leaving;
//! and the generic `FrontRing` / `BackRing` over rings of any byte length
//! and several slot shapes. Invariants: no panic; a bad peer gets a typed
//! error that sticks; a completed request is one we sent, completed once,
//! answered correctly; index arithmetic never exceeds the ring.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use libfuzzer_sys::fuzz_target;
use xenfront::drivers::demo::{
    answer, BackEnd, DemoBack, DemoError, DemoFront, DemoMsg, ALIVE_OFFSET,
};
use xenfront::event::{Events, PeerProbe};
use xenfront::ring::{BackRing, FrontRing, Ring, RingError, RING_HEADER_SIZE};
use xenfront::shared::{Pod, SharedMem, PAGE_SIZE};
use xenfront::xen_abi::ring::{REQ_EVENT, REQ_PROD, RSP_EVENT, RSP_PROD};
use xenfront_fuzz::{Input, Pages};

/// Hang detector: event waits/notifies one call may make.
const MAX_EVENTS_PER_CALL: u64 = 1_000_000;

/// A move of the peer (the backend when we are the frontend and vice
/// versa), on the shared page.
#[derive(Debug, Clone)]
enum Act {
    /// Set a header word (0 req_prod, 1 req_event, 2 rsp_prod, 3
    /// rsp_event) near its value or to anything.
    SetWord(u8, u32),
    /// Write 12 arbitrary bytes into the slot of index `i`.
    Slot(u32, [u8; 12]),
    /// Backend: answer up to `n` requests; `how` 0 right, 1 wrong id, 2
    /// wrong status, 3 wrong operation, 4 replay the previous answer.
    Answer(u8, u8),
    /// Frontend: produce `n` requests.
    Produce(u8),
    /// The frontend's alive byte.
    Alive(u8),
    /// The peer's event channel closes (or comes back).
    Gone(bool),
    /// Time passes.
    Advance(u32),
    /// Answer / produce by itself at every wait, up to a budget.
    Auto(u16),
}

fn parse_acts(inp: &mut Input<'_>, max: usize) -> VecDeque<Act> {
    let mut v = VecDeque::new();
    while !inp.is_empty() && v.len() < max {
        v.push_back(match inp.u8() % 10 {
            0 => Act::SetWord(inp.u8() % 4, inp.u32()),
            1 => {
                let i = inp.u32();
                let mut b = [0u8; 12];
                b.iter_mut().for_each(|x| *x = inp.u8());
                Act::Slot(i, b)
            }
            2 | 3 => Act::Answer(inp.u8(), inp.u8() % 8),
            4 => Act::Produce(inp.u8()),
            5 => Act::Alive(inp.u8() % 3),
            6 => Act::Gone(inp.bool()),
            7 => Act::Advance(inp.u32()),
            _ => Act::Auto(inp.u16()),
        });
    }
    v
}

/// The other end: its private indices, the event channel and the clock.
struct Peer<'a> {
    mem: SharedMem<'a>,
    nr_ents: u32,
    slot: usize,
    /// Backend role: requests consumed / responses produced.
    req_cons: Cell<u32>,
    rsp_prod: Cell<u32>,
    /// Frontend role: requests produced.
    req_prod: Cell<u32>,
    last_answer: Cell<Option<DemoMsg>>,
    acts: RefCell<VecDeque<Act>>,
    /// The peer is the backend (answers) rather than the frontend.
    backend: bool,
    auto: Cell<u32>,
    now: Cell<u64>,
    gone: Cell<bool>,
    events: Cell<u64>,
}

impl<'a> Peer<'a> {
    fn new(mem: SharedMem<'a>, acts: VecDeque<Act>, backend: bool) -> Self {
        let start = mem.load_u32(RSP_PROD);
        Peer {
            nr_ents: Ring::<DemoMsg, DemoMsg>::nr_ents_for(mem.len()) as u32,
            slot: core::mem::size_of::<DemoMsg>(),
            req_cons: Cell::new(start),
            rsp_prod: Cell::new(start),
            req_prod: Cell::new(mem.load_u32(REQ_PROD)),
            mem,
            last_answer: Cell::new(None),
            acts: RefCell::new(acts),
            backend,
            auto: Cell::new(0),
            now: Cell::new(0),
            gone: Cell::new(false),
            events: Cell::new(0),
        }
    }

    fn slot_off(&self, i: u32) -> usize {
        RING_HEADER_SIZE + (i & (self.nr_ents - 1)) as usize * self.slot
    }

    fn answer(&self, n: u8, how: u8) {
        let prod = self.mem.load_u32(REQ_PROD);
        for _ in 0..n {
            let c = self.req_cons.get();
            if c == prod {
                break;
            }
            let req: DemoMsg = self.mem.read(self.slot_off(c));
            let mut rsp = answer(req);
            match how {
                1 => rsp.id ^= 1 << (c % 32),
                2 => rsp.status = rsp.status.wrapping_add(1),
                3 => rsp.operation ^= 1,
                4 => rsp = self.last_answer.get().unwrap_or(rsp),
                _ => {}
            }
            self.last_answer.set(Some(rsp));
            let p = self.rsp_prod.get();
            self.mem.write(self.slot_off(p), rsp);
            self.req_cons.set(c.wrapping_add(1));
            self.rsp_prod.set(p.wrapping_add(1));
        }
        self.mem.store_u32(RSP_PROD, self.rsp_prod.get());
    }

    /// Produces up to `n` requests into free slots.
    fn produce(&self, n: u8) {
        let answered = self.mem.load_u32(RSP_PROD);
        let free = self
            .nr_ents
            .saturating_sub(self.req_prod.get().wrapping_sub(answered));
        for _ in 0..u32::from(n).min(free) {
            let p = self.req_prod.get();
            let i = u64::from(p);
            self.mem.write(
                self.slot_off(p),
                DemoMsg {
                    id: p,
                    status: (i * 7) as u32,
                    operation: (i % 5) as u32,
                },
            );
            self.req_prod.set(p.wrapping_add(1));
        }
        self.mem.store_u32(REQ_PROD, self.req_prod.get());
    }

    fn apply(&self, a: Act) {
        match a {
            Act::SetWord(w, v) => {
                let off = [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT][w as usize];
                let cur = self.mem.load_u32(off);
                let n = self.nr_ents;
                let val = match v % 4 {
                    0 => cur.wrapping_add((v >> 2) % (2 * n + 2)),
                    1 => cur.wrapping_sub((v >> 2) % (n + 2)),
                    2 => cur.wrapping_add(n).wrapping_add(v >> 30),
                    _ => v,
                };
                self.mem.store_u32(off, val);
            }
            Act::Slot(i, b) => {
                if self.nr_ents > 0 {
                    let off = RING_HEADER_SIZE + (i & (self.nr_ents - 1)) as usize * self.slot;
                    self.mem.copy_in(off, &b[..self.slot.min(12)]);
                }
            }
            Act::Answer(n, how) => self.answer(n, how),
            Act::Produce(n) => self.produce(n),
            Act::Alive(v) => self.mem.store_u8(ALIVE_OFFSET, v),
            Act::Gone(g) => self.gone.set(g),
            Act::Advance(ns) => self.now.set(self.now.get().saturating_add(u64::from(ns))),
            Act::Auto(n) => self.auto.set(u32::from(n)),
        }
    }

    /// One step of the script (`true` if there was one).
    fn step(&self) -> bool {
        let a = self.acts.borrow_mut().pop_front();
        match a {
            Some(a) => {
                self.apply(a);
                true
            }
            None => false,
        }
    }
}

impl Events for Peer<'_> {
    fn notify(&self, _port: u32) {
        self.events.set(self.events.get() + 1);
    }
    fn clear(&self, _port: u32) {}
    fn wait(&self, _port: u32, deadline_ns: u64) {
        self.events.set(self.events.get() + 1);
        let auto = self.auto.get();
        if auto > 0 {
            let n = auto.min(64);
            self.auto.set(auto - n);
            if self.backend {
                self.answer(n as u8, 0);
            } else {
                self.produce(n as u8);
            }
        }
        if !self.step() {
            self.now.set(self.now.get().max(deadline_ns));
        }
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

impl PeerProbe for Peer<'_> {
    fn peer_gone(&self, _port: u32) -> bool {
        self.gone.get()
    }
}

fn demo_front(inp: &mut Input<'_>, mem: SharedMem<'_>) {
    let mut f = DemoFront::new(mem.clone(), 3).unwrap();
    let slots = f.slots();
    assert_eq!(slots, 256);
    let n_ops = 1 + inp.below(24);
    let ops: Vec<(u8, u32, u32)> = (0..n_ops)
        .map(|_| (inp.u8(), inp.u32(), inp.u32()))
        .collect();
    let peer = Peer::new(mem, parse_acts(inp, 256), true);
    // Our model: what is outstanding (None once `run` sent its own).
    let mut model: Option<HashMap<u32, DemoMsg>> = Some(HashMap::new());
    for (op, a, b) in ops {
        let failed = f.failed();
        let before = peer.events.get();
        match op % 8 {
            0 | 1 => {
                let r = f.try_send(a, b);
                match (&r, model.as_mut()) {
                    (Ok(Some(id)), Some(m)) => {
                        let req = DemoMsg {
                            id: *id,
                            status: a,
                            operation: b,
                        };
                        assert!(m.insert(*id, req).is_none(), "id {id:#x} reused");
                    }
                    (Ok(None), _) => assert_eq!(f.outstanding(), slots),
                    _ => {}
                }
                if let Some(e) = failed {
                    assert_eq!(r, Err(e));
                }
            }
            2 => f.flush(&peer),
            3 | 4 => loop {
                match f.poll() {
                    Ok(Some(req)) => {
                        if let Some(m) = model.as_mut() {
                            assert_eq!(m.remove(&req.id), Some(req), "completed twice");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(f.failed(), Some(e));
                        if let Some(prev) = failed {
                            assert_eq!(e, prev);
                        }
                        let _ = e.to_string();
                        break;
                    }
                }
            },
            5 => {
                let count = u64::from(a % 600);
                // Up to 3 s: at most 30 slices of waiting once the peer is done.
                let timeout = 1 + u64::from(b % 3000) * 1_000_000;
                let done = f.stats().completed;
                // With requests already outstanding, `run` counts their
                // completions as its own: `done` can pass `count` and the
                // run then waits for its timeout (reported; seed
                // run-with-outstanding). Its counts are checked only when
                // it starts clean.
                let clean = f.outstanding() == 0 && failed.is_none();
                match f.run(&peer, u64::from(a), count, timeout) {
                    Ok(s) => assert!(!clean || s.completed == done + count),
                    Err(e) => {
                        assert_eq!(f.failed(), Some(e));
                        if let DemoError::Timeout { done: d, .. }
                        | DemoError::PeerGone { done: d } = e
                        {
                            assert!(!clean || d < count, "{e:?} of {count}");
                        }
                    }
                }
                model = None;
            }
            _ => {
                peer.step();
            }
        }
        assert!(peer.events.get() - before <= MAX_EVENTS_PER_CALL);
        if let Some(m) = &model {
            assert_eq!(f.outstanding() as usize, m.len());
        }
        assert!(f.outstanding() <= slots);
        if let Some(e) = failed {
            assert_eq!(f.failed(), Some(e));
        }
    }
}

fn demo_back(inp: &mut Input<'_>, mem: SharedMem<'_>) {
    let alive = inp.bool();
    let mut b = match DemoBack::attach(mem.clone(), 3, alive) {
        Ok(b) => b,
        Err(e) => panic!("attach over a page: {e:?}"),
    };
    let n_ops = 1 + inp.below(8);
    let ops: Vec<(u8, u32, u32)> = (0..n_ops)
        .map(|_| (inp.u8(), inp.u32(), inp.u32()))
        .collect();
    let peer = Peer::new(mem, parse_acts(inp, 256), false);
    let mut last: Option<Result<BackEnd, DemoError>> = None;
    for (op, a, c) in ops {
        let before = peer.events.get();
        let answered = b.stats().answered;
        if op % 3 == 0 {
            peer.step();
            continue;
        }
        let count = if op % 3 == 1 {
            Some(u64::from(a % 1000))
        } else {
            None
        };
        let r = b.serve(&peer, count, 1 + u64::from(c % 3000) * 1_000_000);
        assert!(peer.events.get() - before <= MAX_EVENTS_PER_CALL);
        let s = b.stats();
        assert!(s.answered >= answered);
        match &r {
            Ok(BackEnd::Count) => assert!(count.is_some_and(|n| s.answered >= n)),
            Ok(BackEnd::FrontGone) => assert!(b.front_gone(&peer)),
            Err(e) => {
                let _ = e.to_string();
                if let Some(Err(prev)) = &last {
                    assert_eq!(e, prev, "errors stick");
                }
            }
        }
        if let Some(Err(prev)) = &last {
            assert_eq!(r.as_ref().err(), Some(prev));
        }
        if r.is_err() {
            last = Some(r);
        }
    }
}

/// Arbitrary values of any Pod type, through a scratch page.
fn pod<T: Pod>(scratch: &SharedMem<'_>, inp: &mut Input<'_>) -> T {
    let n = core::mem::size_of::<T>().min(256);
    for i in 0..n {
        scratch.write::<u8>(i, inp.u8());
    }
    scratch.read(0)
}

fn raw_front<Req: Pod, Rsp: Pod>(inp: &mut Input<'_>, mem: SharedMem<'_>, scratch: SharedMem<'_>) {
    let len = mem.len();
    let start = inp.index_near(0, 64);
    let mut f = match FrontRing::<Req, Rsp>::init_shared_at(mem.clone(), start) {
        Ok(f) => f,
        Err(RingError::TooSmall { bytes, slot }) => {
            assert_eq!(bytes, len);
            assert_eq!(Ring::<Req, Rsp>::nr_ents_for(len), 0);
            assert!(len < RING_HEADER_SIZE + slot);
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    let n = f.nr_ents();
    assert!(n.is_power_of_two());
    assert!(RING_HEADER_SIZE + n as usize * Ring::<Req, Rsp>::SLOT_SIZE <= len);
    let mut pushed = 0u64;
    let mut taken = 0u64;
    for _ in 0..(1 + inp.below(64)) {
        match inp.u8() % 8 {
            0 | 1 => {
                for _ in 0..(1 + inp.below(200)) {
                    let r = pod::<Req>(&scratch, inp);
                    match f.push_request(r) {
                        Ok(()) => pushed += 1,
                        Err(e) => {
                            assert_eq!(e, RingError::Full);
                            assert_eq!(f.free_slots(), 0);
                            break;
                        }
                    }
                }
            }
            2 => {
                f.push_requests_and_check_notify();
            }
            3 => {
                let out = f.outstanding();
                match f.take_response() {
                    Ok(Some(_)) => {
                        assert!(out > 0);
                        taken += 1;
                    }
                    Ok(None) => {}
                    Err(RingError::BadIndex { prod, cons, limit }) => {
                        assert!(prod.wrapping_sub(cons) > limit && limit == out)
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            4 => {
                if let Ok(u) = f.unconsumed_responses() {
                    assert!(u <= f.outstanding());
                }
            }
            5 => {
                let _ = f.final_check_for_responses();
            }
            6 => {
                // The backend answers k of the published requests.
                let k = inp.u8() as u32;
                let p = mem.load_u32(RSP_PROD);
                let limit = mem.load_u32(REQ_PROD).wrapping_sub(p);
                mem.store_u32(RSP_PROD, p.wrapping_add(k.min(limit)));
            }
            _ => {
                let v = inp.index_near(mem.load_u32(RSP_PROD), n);
                let which = [RSP_PROD, REQ_EVENT, RSP_EVENT, REQ_PROD][inp.below(4)];
                mem.store_u32(which, v);
            }
        }
        assert_eq!(f.free_slots() + f.outstanding(), n);
        assert_eq!(u64::from(f.outstanding()), pushed - taken);
        assert_eq!(f.stats().pushed, pushed);
        assert_eq!(f.stats().consumed, taken);
    }
}

fn raw_back<Req: Pod, Rsp: Pod>(inp: &mut Input<'_>, mem: SharedMem<'_>, scratch: SharedMem<'_>) {
    // Whatever the frontend left in the header.
    for off in [REQ_PROD, REQ_EVENT, RSP_PROD, RSP_EVENT] {
        if off + 4 <= mem.len() {
            mem.store_u32(off, inp.u32());
        }
    }
    let mut b = match BackRing::<Req, Rsp>::attach(mem.clone()) {
        Ok(b) => b,
        Err(RingError::TooSmall { .. }) => {
            assert_eq!(Ring::<Req, Rsp>::nr_ents_for(mem.len()), 0);
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    let n = b.nr_ents();
    let (mut taken, mut answered) = (0u64, 0u64);
    for _ in 0..(1 + inp.below(64)) {
        match inp.u8() % 7 {
            0 | 1 => {
                for _ in 0..(1 + inp.below(300)) {
                    match b.take_request() {
                        Ok(Some(_)) => taken += 1,
                        Ok(None) => break,
                        Err(RingError::BadIndex { prod, cons, limit }) => {
                            assert!(prod.wrapping_sub(cons) > limit && limit <= n);
                            break;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            2 => {
                for _ in 0..(1 + inp.below(300)) {
                    let r = pod::<Rsp>(&scratch, inp);
                    match b.push_response(r) {
                        Ok(()) => answered += 1,
                        Err(e) => {
                            assert_eq!(e, RingError::Full);
                            assert_eq!(taken, answered);
                            break;
                        }
                    }
                }
            }
            3 => {
                b.push_responses_and_check_notify();
            }
            4 => {
                if let Ok(u) = b.unconsumed_requests() {
                    assert!(u64::from(u) + (taken - answered) <= u64::from(n));
                }
                let _ = b.final_check_for_requests();
            }
            _ => {
                let v = inp.index_near(mem.load_u32(REQ_PROD), n);
                let which = [REQ_PROD, REQ_PROD, REQ_EVENT, RSP_EVENT, RSP_PROD][inp.below(5)];
                mem.store_u32(which, v);
            }
        }
        assert!(answered <= taken && taken - answered <= u64::from(n));
        assert_eq!((b.stats().consumed, b.stats().pushed), (taken, answered));
    }
}

fn raw<Req: Pod, Rsp: Pod>(inp: &mut Input<'_>, pages: &Pages, scratch: SharedMem<'_>) {
    let len = inp.below(2 * PAGE_SIZE + 1) & !7;
    let back = inp.bool();
    let mem = pages.mem().sub(0, len).unwrap();
    if back {
        raw_back::<Req, Rsp>(inp, mem, scratch);
    } else {
        raw_front::<Req, Rsp>(inp, mem, scratch);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let pages = Pages::new(2);
    let scratch = Pages::new(1);
    match inp.u8() % 8 {
        0..=2 => demo_front(&mut inp, pages.page(0)),
        3 | 4 => {
            // The frontend initialised the page (from any start index).
            let m = pages.page(0);
            let start = inp.index_near(0, 256);
            let _ = FrontRing::<DemoMsg, DemoMsg>::init_shared_at(m.clone(), start).unwrap();
            m.store_u8(ALIVE_OFFSET, 1);
            demo_back(&mut inp, m);
        }
        5 => raw::<DemoMsg, DemoMsg>(&mut inp, &pages, scratch.mem()),
        6 => raw::<[u64; 14], [u64; 2]>(&mut inp, &pages, scratch.mem()),
        _ => {
            if inp.bool() {
                raw::<u8, [u16; 3]>(&mut inp, &pages, scratch.mem())
            } else {
                raw::<[u32; 3], u64>(&mut inp, &pages, scratch.mem())
            }
        }
    }
});
