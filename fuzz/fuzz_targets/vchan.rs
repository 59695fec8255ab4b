//! Peer data: what the other end of a vchan controls. As a client: the
//! server's XenStore keys (`ring-ref`, `event-channel`: any bytes), its
//! control page (ring orders, grant list, indices, live and notify bytes)
//! and which grants map; as a server: everything the client writes into
//! the control page after connecting. Either way the peer moves indices
//! (honestly, backwards, far ahead), writes ring bytes, flips live bytes,
//! closes its event channel, and takes its time, while the endpoint reads,
//! writes, pumps, echoes, waits and finally closes. Also the pure order
//! rules (`choose_orders`, `check_orders`). Invariants: no panic; every
//! wait ends; a bad index is a sticky `BadIndex`; counts never exceed the
//! ring; with an honest peer and in-page rings, bytes arrive intact and in
//! order both ways; every page mapped or shared and every port opened is
//! given back, on close and on a failed connect.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use xenfront::drivers::vchan::{
    check_orders, choose_orders, EnvError, PortState, Vchan, VchanEnv, VchanError, LARGE_ORDER,
    LIVE_CONNECTED, MAX_ORDER, SMALL_ORDER,
};
use xenfront::event::Events;
use xenfront::shared::{MemOwner, SharedMem, PAGE_SIZE};
use xenfront::xen_abi::vchan::{
    CLI_LIVE, CLI_NOTIFY, GRANTS, GRANT_SIZE, LEFT, LEFT_ORDER, RIGHT, RIGHT_ORDER, RING_CONS,
    RING_PROD, SRV_LIVE, SRV_NOTIFY,
};
use xenfront::xenstore::Perm;
use xenfront_fuzz::{Input, Pages};

/// Pages the environment has: the control page first; rings of more
/// pages than that share them (a peer may grant one page twice).
const POOL: usize = 8;
/// Grant refs of the pages a server shares: `SHARE_BASE + k`.
const SHARE_BASE: u32 = 100;
/// Hang detector: environment calls one endpoint call may make.
const MAX_EVENTS_PER_CALL: u64 = 200_000;

/// A page of the pool, as a share or a mapping.
struct Page {
    pool: Rc<Pages>,
    i: usize,
}

impl MemOwner for Page {
    fn mem(&self) -> SharedMem<'_> {
        self.pool.page(self.i)
    }
}

#[derive(Debug)]
enum Act {
    /// Set an index (0 left.cons, 1 left.prod, 2 right.cons, 3 right.prod)
    /// near its value or to anything.
    SetIdx(u8, u32),
    /// Set a byte (0 cli_live, 1 srv_live, 2 cli_notify, 3 srv_notify).
    SetByte(u8, u8),
    /// Write bytes anywhere in a pool page.
    Data(u8, u16, Vec<u8>),
    /// Our port's state as `EVTCHNOP_status` reports it.
    Port(u8),
    /// The peer produces these bytes (what fits), honestly.
    Produce(Vec<u8>),
    /// The peer consumes up to `n` bytes, honestly.
    Consume(u16),
    /// Produce / consume by itself at every wait, up to a budget.
    Auto(u16),
    /// Time passes.
    Advance(u32),
}

fn parse_acts(inp: &mut Input<'_>) -> VecDeque<Act> {
    let mut v = VecDeque::new();
    while !inp.is_empty() && v.len() < 256 {
        v.push_back(match inp.u8() % 10 {
            0 => Act::SetIdx(inp.u8() % 4, inp.u32()),
            1 => Act::SetByte(inp.u8() % 4, inp.u8() % 4),
            2 => Act::Data(inp.u8(), inp.u16(), inp.bytes(300).to_vec()),
            3 => Act::Port(inp.u8() % 3),
            4 | 5 => Act::Produce(inp.bytes(3000).to_vec()),
            6 => Act::Consume(inp.u16()),
            7 => Act::Auto(inp.u16()),
            _ => Act::Advance(inp.u32()),
        });
    }
    v
}

/// The kernel, xenstored and the peer, for one endpoint.
struct Env {
    pool: Rc<Pages>,
    /// We are the server (the peer is the client).
    server: bool,
    acts: RefCell<VecDeque<Act>>,
    auto: Cell<u16>,
    now: Cell<u64>,
    events: Cell<u64>,
    port_state: Cell<PortState>,
    /// Set behind the protocol's back (indices, bytes): no data checks.
    tampered: Cell<bool>,
    produced: RefCell<Vec<u8>>,
    consumed: RefCell<Vec<u8>>,
    // What the kernel would refuse.
    ring_ref: Option<Vec<u8>>,
    event_channel: Option<Vec<u8>>,
    map_fail: u32,
    share_fail: u32,
    bind_fails: bool,
    publish_fails: bool,
    // Accounting.
    maps: u32,
    unmaps: u32,
    shares: u32,
    unshares: u32,
    ports: BTreeSet<u32>,
    next_port: u32,
}

impl Env {
    fn ctrl(&self) -> SharedMem<'_> {
        self.pool.page(0)
    }

    /// Pool page of a grant ref the ring pages use.
    fn page_of(&self, gref: u32) -> usize {
        if self.server {
            (gref.wrapping_sub(SHARE_BASE) as usize) % POOL
        } else {
            1 + gref as usize % (POOL - 1)
        }
    }

    /// Where byte `idx` of the ring at `shr` (LEFT or RIGHT) is.
    fn locate(&self, shr: usize, idx: u32) -> (usize, usize) {
        let c = self.ctrl();
        let (lo, ro) = (c.load_u16(LEFT_ORDER), c.load_u16(RIGHT_ORDER));
        let order = if shr == LEFT { lo } else { ro };
        let size = 1u32 << order.min(MAX_ORDER);
        let off = (idx & (size - 1)) as usize;
        match order {
            SMALL_ORDER => (0, 1024 + off),
            LARGE_ORDER => (0, 2048 + off),
            _ => {
                let first = if shr == LEFT { 0 } else { ring_pages(lo) };
                let g: u32 = c.read(GRANTS + GRANT_SIZE * (first + off / PAGE_SIZE));
                (self.page_of(g), off % PAGE_SIZE)
            }
        }
    }

    fn ring_size(&self, shr: usize) -> Option<u32> {
        let o = self
            .ctrl()
            .load_u16(if shr == LEFT { LEFT_ORDER } else { RIGHT_ORDER });
        (SMALL_ORDER..=MAX_ORDER).contains(&o).then(|| 1u32 << o)
    }

    /// The ring the peer writes (we read) and the one it reads.
    fn peer_rings(&self) -> (usize, usize) {
        if self.server {
            (LEFT, RIGHT)
        } else {
            (RIGHT, LEFT)
        }
    }

    fn produce(&self, data: &[u8]) {
        let (shr, _) = self.peer_rings();
        let Some(size) = self.ring_size(shr) else {
            return;
        };
        let c = self.ctrl();
        let (cons, prod) = (c.load_u32(shr + RING_CONS), c.load_u32(shr + RING_PROD));
        let used = prod.wrapping_sub(cons);
        if used > size {
            assert!(
                self.tampered.get(),
                "endpoint published cons {cons} prod {prod}"
            );
            return;
        }
        let n = (data.len() as u32).min(size - used);
        for (i, &b) in data[..n as usize].iter().enumerate() {
            let (p, o) = self.locate(shr, prod.wrapping_add(i as u32));
            self.pool.page(p).write(o, b);
        }
        self.produced
            .borrow_mut()
            .extend_from_slice(&data[..n as usize]);
        c.store_u32(shr + RING_PROD, prod.wrapping_add(n));
    }

    fn consume(&self, max: u16) {
        let (_, shr) = self.peer_rings();
        let Some(size) = self.ring_size(shr) else {
            return;
        };
        let c = self.ctrl();
        let (cons, prod) = (c.load_u32(shr + RING_CONS), c.load_u32(shr + RING_PROD));
        let avail = prod.wrapping_sub(cons);
        if avail > size {
            assert!(
                self.tampered.get(),
                "endpoint published prod {prod} cons {cons}"
            );
            return;
        }
        let n = avail.min(u32::from(max));
        for i in 0..n {
            let (p, o) = self.locate(shr, cons.wrapping_add(i));
            let b: u8 = self.pool.page(p).read(o);
            self.consumed.borrow_mut().push(b);
        }
        c.store_u32(shr + RING_CONS, cons.wrapping_add(n));
    }

    fn apply(&self, a: Act) {
        let c = self.ctrl();
        match a {
            Act::SetIdx(which, v) => {
                let off = [
                    LEFT + RING_CONS,
                    LEFT + RING_PROD,
                    RIGHT + RING_CONS,
                    RIGHT + RING_PROD,
                ][which as usize];
                let cur = c.load_u32(off);
                let val = match v % 4 {
                    0 => cur.wrapping_add((v >> 2) % 5000),
                    1 => cur.wrapping_sub((v >> 2) % 5000),
                    2 => cur.wrapping_add(1 << (v >> 2) % 22),
                    _ => v,
                };
                c.store_u32(off, val);
                self.tampered.set(true);
            }
            Act::SetByte(which, v) => c.store_u8(
                [CLI_LIVE, SRV_LIVE, CLI_NOTIFY, SRV_NOTIFY][which as usize],
                v,
            ),
            Act::Data(page, off, bytes) => {
                let p = self.pool.page(page as usize % POOL);
                let off = usize::from(off) % PAGE_SIZE;
                let n = bytes.len().min(PAGE_SIZE - off);
                p.copy_in(off, &bytes[..n]);
                self.tampered.set(true);
            }
            Act::Port(s) => self.port_state.set(
                [
                    PortState::Interdomain,
                    PortState::Unbound,
                    PortState::Closed,
                ][s as usize],
            ),
            Act::Produce(b) => self.produce(&b),
            Act::Consume(n) => self.consume(n),
            Act::Auto(n) => self.auto.set(n),
            Act::Advance(ns) => self.now.set(self.now.get().saturating_add(u64::from(ns))),
        }
    }

    fn step(&self) -> bool {
        let a = self.acts.borrow_mut().pop_front();
        a.map(|a| self.apply(a)).is_some()
    }

    fn balanced(&self) {
        assert_eq!(self.maps, self.unmaps, "every mapping unmapped");
        assert_eq!(self.shares, self.unshares, "every share revoked");
        assert!(self.ports.is_empty(), "ports left open: {:?}", self.ports);
    }
}

fn ring_pages(order: u16) -> usize {
    if order >= 12 {
        1 << (order - 12)
    } else {
        0
    }
}

impl Events for Env {
    fn notify(&self, _port: u32) {
        self.events.set(self.events.get() + 1);
    }
    fn clear(&self, _port: u32) {}
    fn wait(&self, _port: u32, deadline_ns: u64) {
        self.events.set(self.events.get() + 1);
        let auto = self.auto.get();
        if auto > 0 {
            let n = auto.min(512);
            self.auto.set(auto - n);
            let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31)).collect();
            self.produce(&data);
            self.consume(n);
        }
        if !self.step() {
            self.now.set(self.now.get().max(deadline_ns));
        }
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

impl VchanEnv for Env {
    type Share = Page;
    type Map = Page;
    fn self_domid(&mut self) -> Result<u16, EnvError> {
        Ok(7)
    }
    fn share_page(&mut self, _domid: u16) -> Result<(u32, Page), EnvError> {
        if self.shares == self.share_fail {
            return Err(EnvError::new("grant", "no free grant entries"));
        }
        let k = self.shares;
        self.shares += 1;
        // Pool pages start zeroed; one shared again (a ring of more pages
        // than the pool) keeps its bytes, which only the data checks mind.
        Ok((
            SHARE_BASE + k,
            Page {
                pool: self.pool.clone(),
                i: k as usize % POOL,
            },
        ))
    }
    fn unshare_page(&mut self, _share: Page) {
        self.unshares += 1;
    }
    fn map_page(&mut self, _domid: u16, gref: u32, _ro: bool) -> Result<Page, EnvError> {
        if self.maps == self.map_fail {
            return Err(EnvError::new("map_grant_ref", "GNTST_bad_gntref"));
        }
        let i = if self.maps == 0 {
            0
        } else {
            self.page_of(gref)
        };
        self.maps += 1;
        Ok(Page {
            pool: self.pool.clone(),
            i,
        })
    }
    fn unmap_page(&mut self, _map: Page) {
        self.unmaps += 1;
    }
    fn alloc_unbound(&mut self, _remote: u16) -> Result<u32, EnvError> {
        self.next_port += 1;
        self.ports.insert(self.next_port);
        Ok(self.next_port)
    }
    fn bind_interdomain(&mut self, _remote: u16, _rport: u32) -> Result<u32, EnvError> {
        if self.bind_fails {
            return Err(EnvError::new("bind_interdomain", "EINVAL"));
        }
        self.next_port += 1;
        self.ports.insert(self.next_port);
        Ok(self.next_port)
    }
    fn close_port(&mut self, port: u32) {
        assert!(self.ports.remove(&port), "closing port {port} twice");
    }
    fn port_state(&mut self, _port: u32) -> PortState {
        self.events.set(self.events.get() + 1);
        self.port_state.get()
    }
    fn xs_publish(&mut self, entries: &[(&str, &str)], perms: &[Perm]) -> Result<(), EnvError> {
        assert_eq!(entries.len(), 2);
        assert_eq!(perms.len(), 2);
        if self.publish_fails {
            return Err(EnvError::new("xenstore", "EACCES"));
        }
        Ok(())
    }
    fn xs_read(&mut self, path: &str) -> Result<Option<Vec<u8>>, EnvError> {
        Ok(if path.ends_with("/ring-ref") {
            self.ring_ref.clone()
        } else {
            assert!(path.ends_with("/event-channel"));
            self.event_channel.clone()
        })
    }
    fn xs_rm(&mut self, _path: &str) {}
}

/// What the endpoint read and wrote, for the honest-peer checks.
#[derive(Default)]
struct Seen {
    read: Vec<u8>,
    written: Vec<u8>,
}

fn key(inp: &mut Input<'_>) -> Option<Vec<u8>> {
    match inp.u8() % 6 {
        0 => None,
        1 => Some(format!("{}", inp.u32()).into_bytes()),
        2 => Some(format!("{}\0", inp.u16()).into_bytes()),
        _ => Some(inp.bytes(16).to_vec()),
    }
}

fn orders_rules(inp: &mut Input<'_>) {
    let (l, r) = (
        inp.u32() as usize % (3 << 20),
        inp.u32() as usize % (3 << 20),
    );
    match choose_orders(l, r) {
        Ok((lo, ro)) => {
            assert!(check_orders(lo, ro).is_ok(), "chose {lo} {ro} for {l} {r}");
            assert!(1usize << lo >= l && 1usize << ro >= r);
        }
        Err(e) => assert!(e == VchanError::TooBig && (l > 1 << 20 || r > 1 << 20)),
    }
    let (lo, ro) = (inp.u16(), inp.u16());
    if check_orders(lo, ro).is_ok() {
        assert!((SMALL_ORDER..=MAX_ORDER).contains(&lo));
        assert!((SMALL_ORDER..=MAX_ORDER).contains(&ro));
        assert!(lo != ro || lo >= 12);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    orders_rules(&mut inp);
    let pool = Rc::new(Pages::new(POOL));
    let server = inp.bool();
    let mut env = Env {
        pool: pool.clone(),
        server,
        acts: RefCell::new(VecDeque::new()),
        auto: Cell::new(0),
        now: Cell::new(0),
        events: Cell::new(0),
        port_state: Cell::new(if server {
            PortState::Unbound
        } else {
            PortState::Interdomain
        }),
        tampered: Cell::new(false),
        produced: RefCell::new(Vec::new()),
        consumed: RefCell::new(Vec::new()),
        ring_ref: None,
        event_channel: None,
        map_fail: u32::MAX,
        share_fail: u32::MAX,
        bind_fails: false,
        publish_fails: false,
        maps: 0,
        unmaps: 0,
        shares: 0,
        unshares: 0,
        ports: BTreeSet::new(),
        next_port: 0,
    };
    let fail = inp.u8();
    if fail & 0xf0 == 0 {
        // One thing the kernel refuses.
        match fail % 4 {
            0 => env.map_fail = u32::from(inp.u8() % 4),
            1 => env.share_fail = u32::from(inp.u8() % 4),
            2 => env.bind_fails = true,
            _ => env.publish_fails = true,
        }
    }
    let vc = if server {
        let path = if inp.u8() % 8 == 0 {
            inp.string(80)
        } else {
            "/local/domain/7/data/vchan".to_string()
        };
        let (l, r) = match inp.u8() % 4 {
            0 => (0, 0),
            1 => (inp.u16() as usize, inp.u16() as usize),
            _ => (
                inp.u32() as usize % (2 << 20),
                inp.u32() as usize % (2 << 20),
            ),
        };
        Vchan::server(env, 0, &path, l, r)
    } else {
        // What the server put in its control page and XenStore.
        let c = pool.page(0);
        let orders = [SMALL_ORDER, LARGE_ORDER, 12, 13, MAX_ORDER];
        let (lo, ro) = match inp.u8() % 4 {
            0 => (SMALL_ORDER, LARGE_ORDER),
            1 => (orders[inp.below(5)], orders[inp.below(5)]),
            _ => (inp.u16(), inp.u16()),
        };
        c.store_u16(LEFT_ORDER, lo);
        c.store_u16(RIGHT_ORDER, ro);
        for i in 0..inp.below(24) {
            c.write::<u32>(GRANTS + GRANT_SIZE * i, inp.u32());
        }
        let start = [inp.u32(), inp.u32()];
        for (k, shr) in [LEFT, RIGHT].into_iter().enumerate() {
            c.store_u32(shr + RING_CONS, start[k]);
            c.store_u32(shr + RING_PROD, start[k]);
        }
        if inp.u8() % 4 == 0 {
            let which = [
                LEFT + RING_CONS,
                LEFT + RING_PROD,
                RIGHT + RING_CONS,
                RIGHT + RING_PROD,
            ][inp.below(4)];
            c.store_u32(which, inp.u32());
            env.tampered.set(true);
        }
        c.store_u8(
            SRV_LIVE,
            [LIVE_CONNECTED, LIVE_CONNECTED, 0, 2][inp.below(4)],
        );
        env.ring_ref = match inp.u8() % 4 {
            0 => key(&mut inp),
            _ => Some(b"8".to_vec()),
        };
        env.event_channel = match inp.u8() % 4 {
            0 => key(&mut inp),
            _ => Some(b"3\0".to_vec()),
        };
        Vchan::client(env, 0, "/local/domain/0/data/vchan")
    };
    let mut vc = match vc {
        Ok(v) => v,
        Err((env, e)) => {
            let _ = e.to_string();
            env.balanced();
            return;
        }
    };
    let (rd_size, wr_size) = vc.stream().sizes();
    assert!(rd_size.is_power_of_two() && wr_size.is_power_of_two());
    // Data checks only for in-page rings (no page is aliased) that started
    // consistent.
    let exact = rd_size <= 2048 && wr_size <= 2048;
    let ops: Vec<(u8, usize, u64)> = (0..1 + inp.below(12))
        .map(|_| {
            (
                inp.u8() % 10,
                usize::from(inp.u16()) % 5000,
                u64::from(inp.u32() % 3000) * 1_000_000,
            )
        })
        .collect();
    *vc.env().acts.borrow_mut() = parse_acts(&mut inp);
    let mut seen = Seen::default();
    for (op, n, t) in ops {
        let failed = vc.stream().failed().cloned();
        let ev0 = vc.env().events.get();
        let (r0, w0) = {
            let s = vc.stream().stats();
            (s.bytes_read, s.bytes_written)
        };
        let out: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; n];
        let r: Result<(), VchanError> = match op {
            0 => vc.read_nb(&mut buf).map(|k| {
                assert!(k <= n && k <= rd_size as usize);
                seen.read.extend_from_slice(&buf[..k]);
            }),
            1 => vc.write_nb(&out).map(|k| {
                assert!(k <= n && k <= wr_size as usize);
                seen.written.extend_from_slice(&out[..k]);
            }),
            2 => vc.read(&mut buf, t).map(|k| {
                assert!(k <= n && (k > 0 || n == 0));
                seen.read.extend_from_slice(&buf[..k]);
            }),
            3 => {
                let r = vc.write_all(&out, t);
                let w = (vc.stream().stats().bytes_written - w0) as usize;
                assert!(w <= n && (r.is_err() || w == n));
                seen.written.extend_from_slice(&out[..w]);
                r
            }
            4 => vc.pump(&out, &mut buf, t).map(|(w, k)| {
                assert!(w <= n && k <= n);
                seen.written.extend_from_slice(&out[..w]);
                seen.read.extend_from_slice(&buf[..k]);
            }),
            5 => {
                let r = vc.echo(n as u64, t);
                let s = vc.stream().stats();
                let (dr, dw) = (
                    (s.bytes_read - r0) as usize,
                    (s.bytes_written - w0) as usize,
                );
                assert!(dw <= dr);
                if let Ok(k) = &r {
                    assert_eq!(*k as usize, dw);
                }
                // Echo writes back what it read, in order.
                let p = vc.env().produced.borrow().clone();
                let at = seen.read.len();
                let got = p.get(at..at + dr).map(<[u8]>::to_vec);
                match got {
                    Some(g) if exact && !vc.env().tampered.get() => {
                        seen.written.extend_from_slice(&g[..dw]);
                        seen.read.extend_from_slice(&g);
                    }
                    _ => vc.env().tampered.set(true),
                }
                r.map(drop)
            }
            6 => vc.wait_connected(t),
            7 => {
                let s = vc.stream();
                match (s.data_ready(), s.buffer_space()) {
                    (Ok(d), Ok(b)) => {
                        assert!(d <= rd_size && b <= wr_size);
                        Ok(())
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            _ => {
                vc.env().step();
                Ok(())
            }
        };
        let env = vc.env();
        let spent = env.events.get() - ev0;
        assert!(spent <= MAX_EVENTS_PER_CALL, "op {op}: {spent} env calls");
        if let Err(e) = &r {
            let _ = e.to_string();
            assert!(
                !matches!(e, VchanError::BadOrders { .. } | VchanError::NotReady),
                "{e:?} after connecting"
            );
        }
        if let Some(f) = failed {
            // A broken stream stays broken with the same error.
            assert_eq!(vc.stream().failed(), Some(&f));
            if matches!(op, 0 | 1 | 7) {
                assert_eq!(r.as_ref().err(), Some(&f));
            }
        }
        if let Some(VchanError::BadIndex { .. }) = vc.stream().failed() {
        } else {
            assert!(vc.stream().failed().is_none());
        }
        // With an honest peer, both byte streams are intact.
        let env = vc.env();
        if exact && !env.tampered.get() {
            let p = env.produced.borrow();
            assert!(seen.read.len() <= p.len());
            assert_eq!(&seen.read[..], &p[..seen.read.len()]);
            let c = env.consumed.borrow();
            assert!(c.len() <= seen.written.len());
            assert_eq!(&c[..], &seen.written[..c.len()]);
        }
    }
    let env = vc.close();
    env.balanced();
});
