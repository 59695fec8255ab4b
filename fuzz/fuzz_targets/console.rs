//! Peer data: the PV console page (`xencons_interface`) as xenconsoled
//! (Dom0) writes it: `in` bytes and `in_prod`, `out_cons` (honest, slow,
//! stuck, running backwards or far ahead), and the indices the guest owns
//! scribbled over; plus the time it takes. The `Console` driver writes,
//! flushes, reads, waits for input and reads lines meanwhile. Invariants:
//! no panic; every wait ends (bounded wake-ups); a bad index disables the
//! console for good with `BadIndex`, never an out-of-range access; with an
//! honest backend, output arrives in order and intact, and input is
//! delivered exactly as fed (lines without their terminators).
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;
use xenfront::drivers::console::{ring_used, Console, ConsoleError, MAX_WAKEUPS};
use xenfront::event::Events;
use xenfront::shared::SharedMem;
use xenfront::xen_abi::console::{
    IN, IN_CONS, IN_PROD, IN_SIZE, OUT, OUT_CONS, OUT_PROD, OUT_SIZE,
};
use xenfront_fuzz::{Input, Pages};

#[derive(Debug)]
enum Act {
    /// Consume up to `n` output bytes.
    Drain(u16),
    /// Consume this many at every wait from now on.
    AutoDrain(u16),
    /// Write input bytes (what fits).
    Feed(Vec<u8>),
    /// Set an index (0 out_cons, 1 in_prod, 2 out_prod, 3 in_cons) near
    /// its value or to anything.
    Set(u8, u32),
    /// Time passes.
    Advance(u32),
}

fn parse_acts(inp: &mut Input<'_>) -> VecDeque<Act> {
    let mut v = VecDeque::new();
    while !inp.is_empty() && v.len() < 256 {
        v.push_back(match inp.u8() % 8 {
            0 | 1 => Act::Drain(inp.u16()),
            2 => Act::AutoDrain(inp.u16()),
            3 | 4 => Act::Feed(inp.bytes(1100).to_vec()),
            5 => Act::Set(inp.u8() % 4, inp.u32()),
            _ => Act::Advance(inp.u32()),
        });
    }
    v
}

/// Fake xenconsoled and clock.
struct Backend<'a> {
    mem: SharedMem<'a>,
    acts: RefCell<VecDeque<Act>>,
    auto: Cell<u16>,
    now: Cell<u64>,
    events: Cell<u64>,
    /// Output received, input sent.
    drained: RefCell<Vec<u8>>,
    fed: RefCell<Vec<u8>>,
    /// Indices were set behind the protocol's back.
    tampered: Cell<bool>,
}

impl Backend<'_> {
    fn drain(&self, max: u16) {
        let prod = self.mem.load_u32(OUT_PROD);
        let cons = self.mem.load_u32(OUT_CONS);
        let used = prod.wrapping_sub(cons);
        if used > OUT_SIZE {
            assert!(
                self.tampered.get(),
                "guest published out_prod {prod} cons {cons}"
            );
            return;
        }
        let n = used.min(u32::from(max));
        for i in 0..n {
            let b: u8 = self
                .mem
                .read(OUT + (cons.wrapping_add(i) & (OUT_SIZE - 1)) as usize);
            self.drained.borrow_mut().push(b);
        }
        self.mem.store_u32(OUT_CONS, cons.wrapping_add(n));
    }

    fn feed(&self, bytes: &[u8]) {
        let prod = self.mem.load_u32(IN_PROD);
        let cons = self.mem.load_u32(IN_CONS);
        let space = IN_SIZE.saturating_sub(prod.wrapping_sub(cons));
        let n = (bytes.len() as u32).min(space);
        for (i, &b) in bytes[..n as usize].iter().enumerate() {
            self.mem.write(
                IN + (prod.wrapping_add(i as u32) & (IN_SIZE - 1)) as usize,
                b,
            );
        }
        self.fed
            .borrow_mut()
            .extend_from_slice(&bytes[..n as usize]);
        self.mem.store_u32(IN_PROD, prod.wrapping_add(n));
    }

    fn apply(&self, a: Act) {
        match a {
            Act::Drain(n) => self.drain(n),
            Act::AutoDrain(n) => self.auto.set(n),
            Act::Feed(b) => self.feed(&b),
            Act::Set(which, v) => {
                let (off, size) = [
                    (OUT_CONS, OUT_SIZE),
                    (IN_PROD, IN_SIZE),
                    (OUT_PROD, OUT_SIZE),
                    (IN_CONS, IN_SIZE),
                ][which as usize];
                let cur = self.mem.load_u32(off);
                let val = match v % 4 {
                    0 => cur.wrapping_add((v >> 2) % (2 * size + 2)),
                    1 => cur.wrapping_sub((v >> 2) % (size + 2)),
                    2 => cur.wrapping_add(size + 1),
                    _ => v,
                };
                self.mem.store_u32(off, val);
                self.tampered.set(true);
            }
            Act::Advance(ns) => self.now.set(self.now.get().saturating_add(u64::from(ns))),
        }
    }
}

impl Events for &Backend<'_> {
    fn notify(&self, _port: u32) {
        self.events.set(self.events.get() + 1);
    }
    fn clear(&self, _port: u32) {}
    fn wait(&self, _port: u32, deadline_ns: u64) {
        self.events.set(self.events.get() + 1);
        if self.auto.get() > 0 {
            self.drain(self.auto.get());
        }
        let a = self.acts.borrow_mut().pop_front();
        match a {
            Some(a) => self.apply(a),
            None => self.now.set(self.now.get().max(deadline_ns)),
        }
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

#[derive(Debug)]
enum Op {
    Write(Vec<u8>),
    Fmt(String),
    Flush,
    Notify,
    Read(u16),
    ReadWait(u16, u32),
    ReadLine(u16, u32),
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let pages = Pages::new(1);
    let mem = pages.mem();
    // Where xenconsoled and the builder left the indices.
    let (out0, in0) = (inp.u32(), inp.u32());
    let odd = inp.u8();
    let out_cons = if odd & 1 != 0 {
        inp.index_near(out0, OUT_SIZE)
    } else {
        out0
    };
    let in_prod = if odd & 2 != 0 {
        inp.index_near(in0, IN_SIZE)
    } else {
        in0
    };
    mem.store_u32(OUT_PROD, out0);
    mem.store_u32(OUT_CONS, out_cons);
    mem.store_u32(IN_CONS, in0);
    mem.store_u32(IN_PROD, in_prod);
    let ops: Vec<Op> = (0..1 + inp.below(12))
        .map(|_| match inp.u8() % 8 {
            0 | 1 => Op::Write(inp.bytes(5000).to_vec()),
            2 => Op::Fmt(inp.string(200)),
            3 => Op::Flush,
            4 => Op::Notify,
            5 => Op::Read(inp.u16() % 2100),
            6 => Op::ReadWait(inp.u16() % 2100, inp.u32()),
            _ => Op::ReadLine(inp.u16() % 300, inp.u32()),
        })
        .collect();
    let be = Backend {
        mem: mem.clone(),
        acts: RefCell::new(parse_acts(&mut inp)),
        auto: Cell::new(0),
        now: Cell::new(0),
        events: Cell::new(0),
        drained: RefCell::new(Vec::new()),
        fed: RefCell::new(Vec::new()),
        // Input that was "there" at start is unknown bytes.
        tampered: Cell::new(odd & 3 != 0),
    };
    let mut con = Console::new(mem.clone(), 3, &be);
    // Output handed over (in order) while nothing was dropped.
    let mut written: Vec<u8> = Vec::new();
    let mut lossy = false;
    // Input taken so far (`fed[..taken]`).
    let mut taken = 0usize;
    for op in ops {
        let broken = con.broken();
        let events = be.events.get();
        let in_cons = mem.load_u32(IN_CONS);
        let r: Result<(), ConsoleError> = match &op {
            Op::Write(b) => {
                let dropped = con.dropped();
                let r = con.write(b);
                if r.is_ok() && con.dropped() == dropped {
                    written.extend_from_slice(b);
                } else {
                    lossy = true;
                }
                r
            }
            Op::Fmt(s) => {
                let dropped = con.dropped();
                write!(con, "{s}").expect("console fmt never fails");
                if con.broken().is_none() && con.dropped() == dropped {
                    written.extend_from_slice(s.as_bytes());
                } else {
                    lossy = true;
                }
                Ok(())
            }
            Op::Flush => con.flush(),
            Op::Notify => {
                con.notify();
                Ok(())
            }
            Op::Read(n) => {
                let mut buf = vec![0u8; usize::from(*n)];
                con.read(&mut buf).map(|k| {
                    assert!(k <= buf.len() && k <= IN_SIZE as usize);
                    if !be.tampered.get() {
                        assert_eq!(&buf[..k], &be.fed.borrow()[taken..taken + k]);
                    }
                })
            }
            Op::ReadWait(n, t) => {
                let mut buf = vec![0u8; usize::from(*n)];
                con.read_wait(&mut buf, u64::from(*t)).map(|k| {
                    assert!(k <= buf.len());
                    assert!(k > 0 || buf.is_empty());
                    if !be.tampered.get() {
                        assert_eq!(&buf[..k], &be.fed.borrow()[taken..taken + k]);
                    }
                })
            }
            Op::ReadLine(n, t) => {
                let mut buf = vec![0u8; usize::from(*n)];
                con.read_line(&mut buf, u64::from(*t)).map(|k| {
                    assert!(k <= buf.len());
                    let line = &buf[..k];
                    assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
                    if !be.tampered.get() {
                        let took = mem.load_u32(IN_CONS).wrapping_sub(in_cons) as usize;
                        let fed = be.fed.borrow();
                        let seg = &fed[taken..taken + took];
                        let start = seg
                            .iter()
                            .position(|b| !matches!(b, b'\r' | b'\n'))
                            .unwrap_or(seg.len());
                        let body = &seg[start..];
                        let body = match body.last() {
                            Some(b'\r' | b'\n') => &body[..body.len() - 1],
                            _ => body,
                        };
                        assert_eq!(line, body);
                    }
                })
            }
        };
        // Input the console took (checked above when honest).
        taken += mem.load_u32(IN_CONS).wrapping_sub(in_cons) as usize;
        if !be.tampered.get() {
            assert!(taken <= be.fed.borrow().len());
        }
        let spent = be.events.get() - events;
        assert!(
            spent <= 8 * u64::from(MAX_WAKEUPS),
            "{op:?}: {spent} events"
        );
        if let Err(e) = &r {
            let _ = e.to_string();
        }
        if let Some(b) = broken {
            assert_eq!(con.broken(), Some(b), "broken is sticky");
            // (A line into an empty buffer is done before it reads.)
            if !matches!(op, Op::Notify | Op::Fmt(_) | Op::ReadLine(0, _)) {
                assert_eq!(r, Err(b));
            }
        }
        if let Some(b) = con.broken() {
            assert!(matches!(b, ConsoleError::BadIndex { .. }));
        }
        // Output the backend got is what was written, in order.
        if !lossy && !be.tampered.get() {
            let d = be.drained.borrow();
            assert_eq!(&d[..], &written[..d.len()]);
        }
    }
    // The index check itself.
    for (p, c) in [(inp.u32(), inp.u32()), (in_prod, in0), (out0, out_cons)] {
        match ring_used(p, c, OUT_SIZE) {
            Ok(u) => assert!(u <= OUT_SIZE && c.wrapping_add(u) == p),
            Err(ConsoleError::BadIndex { prod, cons }) => {
                assert!((prod, cons) == (p, c) && p.wrapping_sub(c) > OUT_SIZE)
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    drop(con);
});
