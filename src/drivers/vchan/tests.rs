use super::*;
use crate::drivers::fake_evtchn::{pair, End};
use crate::shared::TestPages;
use crate::xenstore::PermKind;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SEC: u64 = 1_000_000_000;
const SRV: u16 = 7;
const CLI: u16 = 0;
const PATH: &str = "/local/domain/7/data/vchan";

struct Granted {
    page: Arc<TestPages>,
    owner: u16,
    to: u16,
    maps: u32,
    revoked: bool,
}

/// The "hypervisor + xenstored" both test domains share.
#[derive(Default)]
struct World {
    grants: HashMap<u32, Granted>,
    next_gref: u32,
    unbound: HashMap<(u16, u32), (u16, End)>,
    next_port: u32,
    xs: HashMap<String, (Vec<u8>, Vec<Perm>)>,
    map_failures: u32,
}

impl World {
    fn live_grants(&self) -> usize {
        self.grants.len()
    }
    fn maps(&self) -> u32 {
        self.grants.values().map(|g| g.maps).sum()
    }
}

/// A test domain's handle on a granted page (shared or mapped): the world
/// and every domain using the page hold it, so it stays until the last
/// lets go.
struct TestPage {
    gref: u32,
    page: Arc<TestPages>,
}

impl MemOwner for TestPage {
    fn mem(&self) -> SharedMem<'_> {
        self.page.mem()
    }
}

/// The control page the server published, held independently of either
/// endpoint (as the peer's mapping would be).
fn ctrl_page(w: &Arc<Mutex<World>>) -> Arc<TestPages> {
    let wl = w.lock().unwrap();
    let v = &wl.xs[&format!("{PATH}/ring-ref")].0;
    let gref: u32 = std::str::from_utf8(v).unwrap().parse().unwrap();
    wl.grants[&gref].page.clone()
}

/// What the peer does while we sleep (virtual clock only).
type Hook = Box<dyn FnMut() + Send>;

struct TestEnv {
    world: Arc<Mutex<World>>,
    domid: u16,
    ends: HashMap<u32, End>,
    epoch: Instant,
    /// Virtual time (ns) instead of real time: `wait` runs the hook, then
    /// jumps to its deadline.
    clock: Option<Cell<u64>>,
    hook: RefCell<Option<Hook>>,
    /// `port_state` calls.
    probes: u32,
}

impl TestEnv {
    fn new(world: &Arc<Mutex<World>>, domid: u16) -> Self {
        TestEnv {
            world: world.clone(),
            domid,
            ends: HashMap::new(),
            epoch: Instant::now(),
            clock: None,
            hook: RefCell::new(None),
            probes: 0,
        }
    }

    /// Switch to a virtual clock; `hook` runs at the start of every sleep
    /// (the peer's moves, deterministically between two of our probes).
    fn virtual_clock(&mut self, hook: impl FnMut() + Send + 'static) {
        self.clock = Some(Cell::new(0));
        *self.hook.borrow_mut() = Some(Box::new(hook));
    }
}

/// A peer process SIGKILLed: its event-channel ends close (our port falls
/// back to unbound), its live byte stays as it was, no event is sent.
fn kill(v: Vchan<TestEnv>) {
    for e in v.env.ends.values() {
        e.close(false);
    }
}

/// The event-channel port the server published.
fn published_port(w: &Arc<Mutex<World>>) -> u32 {
    let wl = w.lock().unwrap();
    let v = &wl.xs[&format!("{PATH}/event-channel")].0;
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

impl Events for TestEnv {
    fn notify(&self, port: u32) {
        if let Some(e) = self.ends.get(&port) {
            e.notify(port)
        }
    }
    fn clear(&self, port: u32) {
        if let Some(e) = self.ends.get(&port) {
            e.clear(port)
        }
    }
    fn wait(&self, port: u32, deadline_ns: u64) {
        if let Some(clock) = &self.clock {
            if let Some(hook) = self.hook.borrow_mut().as_mut() {
                hook();
            }
            clock.set(clock.get().max(deadline_ns));
            return;
        }
        match self.ends.get(&port) {
            Some(e) => {
                // Same clock: translate our deadline to the end's.
                let left = deadline_ns.saturating_sub(self.now_ns());
                e.wait(port, e.now_ns() + left)
            }
            None => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    fn now_ns(&self) -> u64 {
        match &self.clock {
            Some(c) => c.get(),
            None => self.epoch.elapsed().as_nanos() as u64,
        }
    }
}

impl VchanEnv for TestEnv {
    type Share = TestPage;
    type Map = TestPage;
    fn self_domid(&mut self) -> Result<u16, EnvError> {
        Ok(self.domid)
    }
    fn share_page(&mut self, domid: u16) -> Result<(u32, TestPage), EnvError> {
        let mut w = self.world.lock().unwrap();
        w.next_gref += 1;
        let gref = w.next_gref + 7;
        let page = Arc::new(TestPages::new(1));
        w.grants.insert(
            gref,
            Granted {
                page: page.clone(),
                owner: self.domid,
                to: domid,
                maps: 0,
                revoked: false,
            },
        );
        Ok((gref, TestPage { gref, page }))
    }
    fn unshare_page(&mut self, TestPage { gref, .. }: TestPage) {
        let mut w = self.world.lock().unwrap();
        let g = w.grants.get_mut(&gref).unwrap();
        g.revoked = true;
        if g.maps == 0 {
            w.grants.remove(&gref);
        }
    }
    fn map_page(&mut self, domid: u16, gref: u32, _ro: bool) -> Result<TestPage, EnvError> {
        let mut w = self.world.lock().unwrap();
        match w.grants.get_mut(&gref) {
            Some(g) if !g.revoked && g.owner == domid && g.to == self.domid => {
                g.maps += 1;
                let page = g.page.clone();
                Ok(TestPage { gref, page })
            }
            _ => {
                w.map_failures += 1;
                Err(EnvError::new("map_grant_ref", "GNTST_bad_gntref"))
            }
        }
    }
    fn unmap_page(&mut self, TestPage { gref, .. }: TestPage) {
        let mut w = self.world.lock().unwrap();
        let g = w.grants.get_mut(&gref).unwrap();
        g.maps -= 1;
        if g.revoked && g.maps == 0 {
            w.grants.remove(&gref);
        }
    }
    fn alloc_unbound(&mut self, remote: u16) -> Result<u32, EnvError> {
        let mut w = self.world.lock().unwrap();
        w.next_port += 1;
        let port = w.next_port;
        let (a, b) = pair();
        self.ends.insert(port, a);
        w.unbound.insert((self.domid, port), (remote, b));
        Ok(port)
    }
    fn bind_interdomain(&mut self, remote: u16, rport: u32) -> Result<u32, EnvError> {
        let mut w = self.world.lock().unwrap();
        match w.unbound.remove(&(remote, rport)) {
            Some((d, end)) if d == self.domid => {
                w.next_port += 1;
                let port = w.next_port;
                self.ends.insert(port, end);
                Ok(port)
            }
            _ => Err(EnvError::new("bind_interdomain", "EINVAL")),
        }
    }
    fn close_port(&mut self, port: u32) {
        if let Some(e) = self.ends.remove(&port) {
            e.close(false);
        }
        self.world
            .lock()
            .unwrap()
            .unbound
            .remove(&(self.domid, port));
    }
    fn port_state(&mut self, port: u32) -> PortState {
        self.probes += 1;
        let Some(end) = self.ends.get(&port) else {
            return PortState::Closed;
        };
        let offered = self
            .world
            .lock()
            .unwrap()
            .unbound
            .contains_key(&(self.domid, port));
        // Xen turns our end back to unbound when the remote end closes.
        if offered || end.peer_closed() {
            PortState::Unbound
        } else {
            PortState::Interdomain
        }
    }
    fn xs_publish(&mut self, entries: &[(&str, &str)], perms: &[Perm]) -> Result<(), EnvError> {
        let mut w = self.world.lock().unwrap();
        for (k, v) in entries {
            w.xs.insert(k.to_string(), (v.as_bytes().to_vec(), perms.to_vec()));
        }
        Ok(())
    }
    fn xs_read(&mut self, path: &str) -> Result<Option<Vec<u8>>, EnvError> {
        Ok(self.world.lock().unwrap().xs.get(path).map(|v| v.0.clone()))
    }
    fn xs_rm(&mut self, path: &str) {
        self.world
            .lock()
            .unwrap()
            .xs
            .retain(|k, _| !(k == path || k.starts_with(&format!("{path}/"))));
    }
}

fn world() -> Arc<Mutex<World>> {
    Arc::new(Mutex::new(World::default()))
}

fn server(w: &Arc<Mutex<World>>, l: usize, r: usize) -> Vchan<TestEnv> {
    Vchan::server(TestEnv::new(w, SRV), CLI, PATH, l, r)
        .map_err(|(_, e)| e)
        .unwrap()
}

fn client(w: &Arc<Mutex<World>>) -> Vchan<TestEnv> {
    Vchan::client(TestEnv::new(w, CLI), SRV, PATH)
        .map_err(|(_, e)| e)
        .unwrap()
}

/// xorshift64* byte stream.
struct Rng(u64);
impl Rng {
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn fnv(h: &mut u64, b: &[u8]) {
    for &x in b {
        *h = (*h ^ x as u64).wrapping_mul(0x100_0000_01b3);
    }
}

/// Client sends `total` pseudo-random bytes and reads the echo back at the
/// same time; returns (sent hash, received hash).
fn push_through(c: &mut Vchan<TestEnv>, total: usize, seed: u64) -> (u64, u64) {
    let mut rng = Rng(seed);
    let (mut hs, mut hr) = (0xcbf2_9ce4_8422_2325u64, 0xcbf2_9ce4_8422_2325u64);
    let mut out = vec![0u8; 4096];
    let (mut o_head, mut o_tail) = (0, 0);
    let mut inp = vec![0u8; 4096];
    let (mut sent, mut got) = (0usize, 0usize);
    while got < total {
        if o_head == o_tail && sent < total {
            let n = out.len().min(total - sent);
            rng.fill(&mut out[..n]);
            fnv(&mut hs, &out[..n]);
            (o_head, o_tail) = (0, n);
            sent += n;
        }
        let (w, r) = c.pump(&out[o_head..o_tail], &mut inp, 10 * SEC).unwrap();
        o_head += w;
        fnv(&mut hr, &inp[..r]);
        got += r;
    }
    (hs, hr)
}

#[test]
fn orders_like_libxenvchan() {
    assert_eq!(choose_orders(0, 0), Ok((10, 11)));
    assert_eq!(choose_orders(1024, 2048), Ok((10, 11)));
    assert_eq!(choose_orders(2048, 1024), Ok((11, 10)));
    assert_eq!(choose_orders(4096, 0), Ok((12, 11)));
    assert_eq!(choose_orders(0, 5000), Ok((11, 13)));
    assert_eq!(choose_orders(1 << 20, 1 << 20), Ok((20, 20)));
    assert_eq!(choose_orders((1 << 20) + 1, 0), Err(VchanError::TooBig));
    assert!(check_orders(10, 11).is_ok());
    assert!(check_orders(11, 20).is_ok());
    assert!(check_orders(20, 20).is_ok());
    assert!(check_orders(12, 12).is_ok());
    for (l, r) in [(10, 10), (11, 11), (9, 11), (10, 21), (10, 20), (0, 0)] {
        assert_eq!(
            check_orders(l, r),
            Err(VchanError::BadOrders { left: l, right: r }),
            "{l} {r}"
        );
    }
}

#[test]
fn server_publishes_control_page_and_keys() {
    let w = world();
    let s = server(&w, 0, 0);
    let page = ctrl_page(&w);
    let ctrl = page.mem();
    assert_eq!(ctrl.load_u16(LEFT_ORDER), 10);
    assert_eq!(ctrl.load_u16(RIGHT_ORDER), 11);
    assert_eq!(
        [
            ctrl.load_u8(CLI_LIVE),
            ctrl.load_u8(SRV_LIVE),
            ctrl.load_u8(CLI_NOTIFY),
            ctrl.load_u8(SRV_NOTIFY)
        ],
        [2, 1, NOTIFY_WRITE, 0]
    );
    {
        let wl = w.lock().unwrap();
        let (rr, perms) = &wl.xs[&format!("{PATH}/ring-ref")];
        let gref: u32 = std::str::from_utf8(rr).unwrap().parse().unwrap();
        assert!(wl.grants.contains_key(&gref));
        assert_eq!(
            perms,
            &vec![
                Perm {
                    kind: PermKind::None,
                    domid: SRV
                },
                Perm {
                    kind: PermKind::Read,
                    domid: CLI
                }
            ]
        );
        assert!(wl.xs.contains_key(&format!("{PATH}/event-channel")));
        assert_eq!(wl.live_grants(), 1);
    }
    let c = client(&w);
    assert_eq!(ctrl.load_u8(CLI_LIVE), 1);
    assert_eq!(ctrl.load_u8(SRV_NOTIFY), NOTIFY_WRITE);
    c.close();
    s.close();
    let wl = w.lock().unwrap();
    assert_eq!(wl.live_grants(), 0);
    assert!(wl.xs.is_empty());
    // Path limit as libxenvchan's 64-byte buffer.
    drop(wl);
    let long = format!("/{}", "x".repeat(50));
    assert!(matches!(
        Vchan::server(TestEnv::new(&w, SRV), CLI, &long, 0, 0),
        Err((_, VchanError::PathTooLong))
    ));
}

fn echo_run(left: usize, right: usize, total: usize) -> f64 {
    let w = world();
    let mut s = server(&w, left, right);
    let t0 = Instant::now();
    let (hs, hr, echoed) = std::thread::scope(|sc| {
        let srv = sc.spawn(move || {
            s.wait_connected(10 * SEC).unwrap();
            let n = s.echo(u64::MAX, 10 * SEC).unwrap();
            s.close();
            n
        });
        let mut c = client(&w);
        let (hs, hr) = push_through(&mut c, total, 0x1234_5678);
        c.close();
        (hs, hr, srv.join().unwrap())
    });
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(hs, hr, "checksum");
    assert_eq!(echoed, total as u64);
    let wl = w.lock().unwrap();
    assert_eq!(wl.live_grants(), 0);
    assert_eq!(wl.maps(), 0);
    total as f64 / secs / 1e6
}

/// 16 MiB of pseudo-random bytes through the small in-page rings (what
/// vchan-socket-proxy uses) and back.
#[test]
fn sixteen_mib_echo_in_page_rings() {
    let mbs = echo_run(0, 0, 16 << 20);
    eprintln!("vchan in-page rings: 16 MiB echoed, {mbs:.1} MB/s each way");
}

/// Multi-page rings (64 KiB each way, 16 granted pages each).
#[test]
fn echo_multi_page_rings() {
    let mbs = echo_run(1 << 16, 1 << 16, 4 << 20);
    eprintln!("vchan 64 KiB rings: 4 MiB echoed, {mbs:.1} MB/s each way");
    let mbs = echo_run(1 << 20, 2048, 2 << 20);
    eprintln!("vchan 1 MiB / 2 KiB rings: 2 MiB echoed, {mbs:.1} MB/s each way");
}

/// The client leaves and comes back three times; the server re-creates
/// itself each time. Then the server leaves and the client reconnects.
#[test]
fn close_and_reconnect_both_ways() {
    let w = world();
    for round in 0..3u64 {
        let mut s = server(&w, 0, 0);
        std::thread::scope(|sc| {
            sc.spawn(move || {
                s.wait_connected(10 * SEC).unwrap();
                assert_eq!(s.echo(u64::MAX, 10 * SEC), Ok(100_000));
                s.close();
            });
            let mut c = client(&w);
            let (hs, hr) = push_through(&mut c, 100_000, round + 1);
            assert_eq!(hs, hr);
            c.close();
        });
        assert_eq!(w.lock().unwrap().live_grants(), 0, "round {round}");
    }
    // Server closes first: the client sees Closed, then reconnects to a
    // new server instance (keys absent in between → NotReady).
    let mut s = server(&w, 0, 0);
    let mut c = client(&w);
    s.wait_connected(SEC).unwrap();
    s.write_all(b"bye", SEC).unwrap();
    let env = s.close();
    let mut buf = [0u8; 8];
    // Data written before the close is still delivered, then Closed.
    assert_eq!(c.read(&mut buf, SEC), Ok(3));
    assert_eq!(&buf[..3], b"bye");
    assert_eq!(c.read(&mut buf, SEC), Err(VchanError::Closed));
    assert_eq!(c.write_all(b"x", SEC), Err(VchanError::Closed));
    let cenv = c.close();
    let (cenv, e) = Vchan::client(cenv, SRV, PATH).err().unwrap();
    assert_eq!(e, VchanError::NotReady);
    let mut s = Vchan::server(env, CLI, PATH, 0, 0)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut c = Vchan::client(cenv, SRV, PATH).map_err(|(_, e)| e).unwrap();
    c.write_all(b"again", SEC).unwrap();
    assert_eq!(s.read(&mut buf, SEC), Ok(5));
    c.close();
    s.close();
    let wl = w.lock().unwrap();
    assert_eq!((wl.live_grants(), wl.maps()), (0, 0));
}

/// A peer killed without closing: its unmap notify clears its live byte
/// and sends one event. The other side must notice, not hang.
#[test]
fn killed_peer_detected() {
    let w = world();
    let mut s = server(&w, 0, 0);
    let c = client(&w);
    s.wait_connected(SEC).unwrap();
    let page = ctrl_page(&w);
    let ctrl = page.mem();
    ctrl.store_u8(CLI_LIVE, 0);
    c.env.notify(c.port);
    let t0 = Instant::now();
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf, 10 * SEC), Err(VchanError::Closed));
    assert_eq!(s.echo(u64::MAX, 10 * SEC), Ok(0));
    assert!(t0.elapsed().as_secs() < 2);
    // A silent peer (alive, never writes): bounded wait.
    ctrl.store_u8(CLI_LIVE, 1);
    assert!(matches!(
        s.read(&mut buf, SEC / 5),
        Err(VchanError::Timeout { .. })
    ));
}

#[test]
fn bad_peer_indices_disconnect() {
    let w = world();
    let mut s = server(&w, 0, 0);
    let mut c = client(&w);
    let page = ctrl_page(&w);
    let ctrl = page.mem();
    // Client claims more than a 1 KiB ring can hold.
    ctrl.store_u32(LEFT + RING_PROD, 1025);
    let mut buf = [0u8; 16];
    let e = s.read(&mut buf, SEC).unwrap_err();
    assert_eq!(
        e,
        VchanError::BadIndex {
            ring: "read",
            prod: 1025,
            cons: 0,
            size: 1024
        }
    );
    ctrl.store_u32(LEFT + RING_PROD, 0);
    assert_eq!(s.read(&mut buf, SEC), Err(e.clone()), "sticky");
    assert!(format!("{e}").starts_with("protocol error"));
    // Server's cons running ahead of what the client produced.
    ctrl.store_u32(LEFT + RING_CONS, 5);
    assert!(matches!(
        c.write_all(b"abc", SEC),
        Err(VchanError::BadIndex { ring: "write", .. })
    ));
    c.close();
    s.close();
}

#[test]
fn client_rejects_bad_server_and_releases_everything() {
    let w = world();
    // Keys missing / malformed.
    let (env, e) = Vchan::client(TestEnv::new(&w, CLI), SRV, PATH)
        .err()
        .unwrap();
    assert_eq!(e, VchanError::NotReady);
    let s = server(&w, 0, 0);
    w.lock()
        .unwrap()
        .xs
        .get_mut(&format!("{PATH}/event-channel"))
        .unwrap()
        .0 = b"12x".to_vec();
    let (env, e) = Vchan::client(env, SRV, PATH).err().unwrap();
    assert!(matches!(
        e,
        VchanError::BadKey {
            key: "event-channel",
            ..
        }
    ));
    s.close();
    // Orders that would overlap grants and the in-page ring.
    let s = server(&w, 0, 0);
    s.stream.ctrl().store_u16(LEFT_ORDER, 10);
    s.stream.ctrl().store_u16(RIGHT_ORDER, 20);
    let (env, e) = Vchan::client(env, SRV, PATH).err().unwrap();
    assert_eq!(
        e,
        VchanError::BadOrders {
            left: 10,
            right: 20
        }
    );
    assert_eq!(w.lock().unwrap().maps(), 0, "control page unmapped");
    assert!(env.ends.is_empty(), "port closed");
    s.close();
    assert_eq!(w.lock().unwrap().live_grants(), 0);
}

/// The stock `vchan-socket-proxy` killed mid-handshake: it bound our port
/// (`init_evt_cli`) and died before mapping the page and setting
/// `cli_live = 1`. One `wait_connected(90 s)` must end within a slice of
/// the death, not at the timeout.
#[test]
fn server_sees_client_die_in_handshake() {
    let w = world();
    let mut s = server(&w, 0, 0);
    let rport = published_port(&w);
    let mut cenv = TestEnv::new(&w, CLI);
    let (mut step, mut cport) = (0, 0);
    s.env.virtual_clock(move || {
        step += 1;
        match step {
            1 => cport = cenv.bind_interdomain(SRV, rport).unwrap(),
            2 => cenv.ends[&cport].close(false),
            _ => {}
        }
    });
    let t0 = s.env.now_ns();
    assert_eq!(s.wait_connected(90 * SEC), Err(VchanError::PeerGone));
    // Bound during the first sleep, died during the second, seen at once.
    let took = s.env.now_ns() - t0;
    assert!(took <= 2 * SLICE_NS, "took {took} ns");
    assert!(s.peer_gone());
    assert_eq!(s.stream.peer_live(), LIVE_NOT_YET);
    // Sticky, and no further waiting.
    let t1 = s.env.now_ns();
    assert_eq!(s.wait_connected(90 * SEC), Err(VchanError::PeerGone));
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf, 90 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.env.now_ns(), t1);
    s.close();
    assert_eq!(w.lock().unwrap().live_grants(), 0);

    // A faster client: connected (cli_live = 1) and was killed before any
    // probe saw its port bound. cli_live = 1 proves it was there.
    let mut s = server(&w, 0, 0);
    s.env.virtual_clock(|| {});
    kill(client(&w));
    let t0 = s.env.now_ns();
    assert_eq!(s.wait_connected(90 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.env.now_ns(), t0);
    s.close();
}

/// A client killed in the middle of a transfer (no live byte written, no
/// event): echo, read, write_all and pump end with PeerGone within one
/// slice, not at their idle timeout; data it sent first is delivered.
#[test]
fn server_sees_client_die_mid_transfer() {
    let w = world();
    let mut s = server(&w, 0, 0);
    let mut c = client(&w);
    s.wait_connected(SEC).unwrap();
    c.write_all(b"ping", SEC).unwrap();
    let cpage = ctrl_page(&w);
    let cctrl = cpage.mem();
    let mut c = Some(c);
    s.env.virtual_clock(move || {
        if let Some(c) = c.take() {
            kill(c)
        }
    });
    let t0 = s.env.now_ns();
    assert_eq!(s.echo(u64::MAX, 60 * SEC), Err(VchanError::PeerGone));
    let took = s.env.now_ns() - t0;
    assert!(took <= SLICE_NS, "took {took} ns");
    assert_eq!(s.stream.stats().bytes_written, 4, "echoed before it died");
    assert_eq!(cctrl.load_u32(RIGHT + RING_PROD), 4);
    assert_eq!(s.stream.peer_live(), LIVE_CONNECTED, "no goodbye");
    let t1 = s.env.now_ns();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf, 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.write_all(&[1; 4096], 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.pump(b"x", &mut buf, 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.echo(u64::MAX, 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(s.env.now_ns(), t1, "no more waiting once gone");
    s.close();

    // Killed while the server waits in read, right after sending: the
    // bytes come first, then PeerGone.
    let mut s = server(&w, 0, 0);
    let c = client(&w);
    s.wait_connected(SEC).unwrap();
    let mut c = Some(c);
    s.env.virtual_clock(move || {
        if let Some(mut c) = c.take() {
            c.write_all(b"abc", SEC).unwrap();
            kill(c)
        }
    });
    let t0 = s.env.now_ns();
    assert_eq!(s.read(&mut buf, 60 * SEC), Ok(3));
    assert_eq!(&buf[..3], b"abc");
    assert_eq!(s.read(&mut buf, 60 * SEC), Err(VchanError::PeerGone));
    let took = s.env.now_ns() - t0;
    assert!(took <= SLICE_NS, "took {took} ns");
    s.close();

    // Killed while the server's write waits for ring space.
    let mut s = server(&w, 0, 0);
    let c = client(&w);
    s.wait_connected(SEC).unwrap();
    let mut c = Some(c);
    s.env.virtual_clock(move || {
        if let Some(c) = c.take() {
            kill(c)
        }
    });
    let t0 = s.env.now_ns();
    assert_eq!(s.write_all(&[2; 5000], 60 * SEC), Err(VchanError::PeerGone));
    let took = s.env.now_ns() - t0;
    assert!(took <= SLICE_NS, "took {took} ns");
    s.close();
}

/// No false positives: an offered port nobody bound is "not yet", a bound
/// client that has not set cli_live yet is alive, and a client that closes
/// properly (live byte, then port) is Closed, not PeerGone.
#[test]
fn unbound_server_port_waits_until_timeout() {
    let w = world();
    let mut s = server(&w, 0, 0);
    s.env.virtual_clock(|| {});
    let t0 = s.env.now_ns();
    match s.wait_connected(5 * SEC) {
        Err(VchanError::Timeout { ms }) => assert!(ms >= 5000, "{ms}"),
        other => panic!("{other:?}"),
    }
    assert!(s.env.now_ns() - t0 >= 5 * SEC);
    assert!(s.env.probes >= 50, "probed before every sleep");
    assert!(!s.peer_gone());
    let mut buf = [0u8; 4];
    assert!(matches!(
        s.read(&mut buf, SEC),
        Err(VchanError::Timeout { .. })
    ));
    // Still a valid listener: a client connects and talks.
    let mut c = client(&w);
    s.wait_connected(SEC).unwrap();
    c.write_all(b"hi", SEC).unwrap();
    assert_eq!(s.read(&mut buf, SEC), Ok(2));
    c.close();
    assert_eq!(s.read(&mut buf, SEC), Err(VchanError::Closed));
    s.close();

    // A client that bound and is still busy with the handshake.
    let mut s = server(&w, 0, 0);
    let rport = published_port(&w);
    let mut cenv = TestEnv::new(&w, CLI);
    let cport = cenv.bind_interdomain(SRV, rport).unwrap();
    s.env.virtual_clock(|| {});
    assert!(matches!(
        s.wait_connected(2 * SEC),
        Err(VchanError::Timeout { .. })
    ));
    assert!(!s.peer_gone());
    cenv.close_port(cport);
    s.close();
}

/// Client side: the server process is killed (its port closes, srv_live
/// stays 1). The waiting client read, write and pump end with PeerGone.
#[test]
fn client_sees_server_port_vanish() {
    let w = world();
    let mut s = server(&w, 0, 0);
    let mut c = client(&w);
    s.wait_connected(SEC).unwrap();
    let mut s = Some(s);
    c.env.virtual_clock(move || {
        if let Some(s) = s.take() {
            kill(s)
        }
    });
    let t0 = c.env.now_ns();
    let mut buf = [0u8; 8];
    assert_eq!(c.read(&mut buf, 60 * SEC), Err(VchanError::PeerGone));
    let took = c.env.now_ns() - t0;
    assert!(took <= SLICE_NS, "took {took} ns");
    assert!(c.connected(), "srv_live still 1");
    assert_eq!(c.write_all(b"x", 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(c.pump(b"x", &mut buf, 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(c.wait_connected(60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(c.env.now_ns(), t0 + took);
    c.close();

    // Gone before the client's write fills the ring.
    let mut s = server(&w, 0, 0);
    let mut c = client(&w);
    s.wait_connected(SEC).unwrap();
    kill(s);
    c.env.virtual_clock(|| {});
    assert_eq!(c.write_all(&[3; 3000], 60 * SEC), Err(VchanError::PeerGone));
    assert_eq!(c.env.now_ns(), 0, "found before the first sleep");
    c.close();
}
