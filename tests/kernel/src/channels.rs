//! The demo-ring and vchan scenarios (`test=demo-front`,
//! `demo-front-fault`, `demo-back`, `vchan-server`, `vchan-client`).
//!
//! Console lines (matched by tests/nested/demo.rs and vchan.rs):
//! ```text
//! demo-front: published data/demo ring-ref <R> event-channel <P>
//! demo-front: <N>/<N> ok in <ms> ms (<r> req/s), <n> notifications (<x.xxx> per request)
//! demo-front: FAILED after <done> requests: <why>
//! demo-back: mapped ring-ref <R> port <P>
//! demo-back: answered <N> requests, <n> notifications, front gone
//! vchan: <n> connection(s)                (Dom0 wrote data/vchan-rounds)
//! vchan-server: connection <i>: echoed <B> bytes in <ms> ms (<x.x> MB/s)
//! vchan-client: connection <i>: echoed <B> bytes in <ms> ms (<x.x> MB/s), server <closed|gone>
//! demo-front: revoked ring-ref <R>: done|deferred (Dom0 still maps it; <d> deferred)
//! grants: in_use <a> deferred <b> (baseline in_use <c>)
//! ```

extern crate alloc;

use alloc::format;
use alloc::string::String;
use xenfront::println;

use crate::options::Options;
use crate::scenario::Verdict;
use xenfront::chan_env::{OfferedPort, XenChan};
use xenfront::drivers::demo::{BackEnd, DemoBack, DemoError, DemoFront};
use xenfront::drivers::vchan::{Vchan, VchanEnv, VchanError};
use xenfront::event::{self};
use xenfront::grant_table::{self, GrantRef};
use xenfront::mm;
use xenfront::time;
use xenfront::xenstore::Perm;

/// Dom0's domain id.
const DOM0: u16 = 0;
/// Demo requests per run.
pub const DEMO_REQUESTS: u64 = 10_000;
/// Waiting for Dom0 (script start-up under TCG takes seconds).
const DOM0_NS: u64 = 90_000_000_000;
/// No progress for this long → timeout.
const IDLE_NS: u64 = 30_000_000_000;

/// `test=demo-front`: guest frontend, `xf-ring-back` in Dom0: all
/// requests must succeed.
pub fn demo_front_test(_: &Options) -> Verdict {
    with_baseline(|| demo_front(false))
}

/// `test=demo-front-fault`: Dom0 misbehaves (`--die-after`, `--bad-id`,
/// `--bad-index`): a typed disconnect and clean-up is the success.
pub fn demo_front_fault_test(_: &Options) -> Verdict {
    with_baseline(|| demo_front(true))
}

/// `test=demo-back`: guest backend, `xf-ring-front` in Dom0.
pub fn demo_back_test(_: &Options) -> Verdict {
    with_baseline(demo_back)
}

/// `test=vchan-server`: guest vchan server (echo), `vchan-socket-proxy`
/// client in Dom0.
pub fn vchan_server_test(_: &Options) -> Verdict {
    with_baseline(|| vchan_rounds().and_then(vchan_server))
}

/// `test=vchan-client`: guest vchan client (echo), `vchan-socket-proxy -m
/// server` in Dom0.
pub fn vchan_client_test(_: &Options) -> Verdict {
    with_baseline(|| vchan_rounds().and_then(vchan_client))
}

/// `test=demo-cycles`: the demo ring connected, used for a few requests
/// and torn down `data/demo-cycles` times, each time with a fresh
/// `xf-ring-back` in Dom0; the resources after the last cycle equal those
/// after the first.
pub fn demo_cycles_test(_: &Options) -> Verdict {
    with_baseline(demo_cycles)
}

/// Requests per cycle of `test=demo-cycles`.
const CYCLE_REQUESTS: u64 = 16;

fn demo_cycles() -> Result<(), String> {
    let n = wait_key("data/demo-cycles")?;
    println!("demo-cycles: {n} cycles of {CYCLE_REQUESTS} requests");
    let mut env = XenChan;
    let me = env
        .self_domid()
        .map_err(|e| format!("{}: {}", e.what, e.detail))?;
    let perms = Perm::owner_and_reader(me, DOM0);
    let mut first = None;
    let t0 = time::now_ns();
    for i in 1..=n {
        demo_cycle(&mut env, &perms, i).map_err(|e| format!("demo-cycles: cycle {i}: {e}"))?;
        if i == 1 {
            let mut settled = Resources::now();
            settled.deferred = 0;
            first = Some(Resources::settle(settled));
        }
        if i % 100 == 0 {
            println!(
                "demo-cycles: {i}/{n} cycles in {} ms",
                (time::now_ns() - t0) / 1_000_000
            );
        }
    }
    let ns = time::now_ns() - t0;
    let per100 = u64::from(n) * 100_000_000_000 / ns.max(1);
    println!(
        "demo-cycles: {n} cycles in {} ms ({}.{:02} cycles/s)",
        ns / 1_000_000,
        per100 / 100,
        per100 % 100
    );
    if let Some(first) = first {
        let last = Resources::settle(first);
        println!("demo-cycles: resources after {n} connections: {last}; after the first: {first}");
    }
    Ok(())
}

/// One connect / use / disconnect of the demo ring (cycle `i`).
fn demo_cycle(env: &mut XenChan, perms: &[Perm], i: u32) -> Result<(), String> {
    let page = mm::alloc_shared_page().map_err(|e| format!("alloc page: {e}"))?;
    let port = event::alloc_unbound(DOM0).map_err(|e| format!("alloc_unbound: {e}"))?;
    let grant = match grant_table::grant_page(DOM0, &page, false) {
        Ok(g) => g,
        Err(e) => {
            let _ = event::close(port);
            return Err(format!("grant: {e}"));
        }
    };
    let r = DemoFront::new(page.mem(), port)
        .map_err(|e| format!("ring: {e}"))
        .and_then(|mut front| {
            let (gs, ps, cs) = (
                format!("{}", grant.gref().0),
                format!("{port}"),
                format!("{i}"),
            );
            env.xs_publish(
                &[
                    ("data/demo/ring-ref", &gs),
                    ("data/demo/event-channel", &ps),
                    ("data/demo/cycle", &cs),
                ],
                perms,
            )
            .map_err(|e| format!("{}: {}", e.what, e.detail))?;
            front
                .run(&OfferedPort::default(), 0, CYCLE_REQUESTS, DOM0_NS)
                .map_err(|e| format!("ring: {e}"))
        });
    env.xs_rm("data/demo");
    let _ = event::close(port);
    // The ring's last use is over: from here on only the grant holds the page.
    drop(page);
    grant_table::revoke(grant).map_err(|e| format!("revoke: {e}"))?;
    grant_table::poll_deferred();
    r.map(|_| ())
}

/// Runs `body`; SUCCESS only if it succeeded and the grant table is back
/// at its baseline afterwards.
fn with_baseline(body: impl FnOnce() -> Result<(), String>) -> Verdict {
    let base = match grant_table::counters() {
        Ok(c) => c.in_use,
        Err(e) => {
            println!("error: grant table: {e}");
            return Verdict::Error;
        }
    };
    let r = body();
    let clean = back_to_baseline(base);
    match (r, clean) {
        (Ok(()), true) => Verdict::Success,
        (Ok(()), false) => Verdict::Failure,
        (Err(e), _) => {
            println!("error: {e}");
            Verdict::Failure
        }
    }
}

/// Polls deferred grants until `in_use` is back at `base` (≤ 10 s).
fn back_to_baseline(base: usize) -> bool {
    let deadline = time::now_ns() + 10_000_000_000;
    loop {
        grant_table::poll_deferred();
        let c = grant_table::counters().ok();
        let (in_use, deferred) = c.map_or((usize::MAX, 0), |c| (c.in_use, c.deferred));
        if (in_use == base && deferred == 0) || time::now_ns() >= deadline {
            println!("grants: in_use {in_use} deferred {deferred} (baseline in_use {base})");
            return in_use == base && deferred == 0;
        }
        event::wait(0, time::now_ns() + 50_000_000);
    }
}

fn rate(n: u64, ns: u64) -> u64 {
    n.saturating_mul(1_000_000_000) / ns.max(1)
}

fn demo_front(expect_fault: bool) -> Result<(), String> {
    let page = mm::alloc_shared_page().map_err(|e| format!("alloc page: {e}"))?;
    let port = event::alloc_unbound(DOM0).map_err(|e| format!("alloc_unbound: {e}"))?;
    let mut front = DemoFront::new(page.mem(), port).map_err(|e| format!("ring: {e}"))?;
    let grant = grant_table::grant_page(DOM0, &page, false).map_err(|e| format!("grant: {e}"))?;
    let gref = grant.gref().0;
    let mut env = XenChan;
    let me = env
        .self_domid()
        .map_err(|e| format!("{}: {}", e.what, e.detail))?;
    let perms = Perm::owner_and_reader(me, DOM0);
    let (gs, ps) = (format!("{gref}"), format!("{port}"));
    env.xs_publish(
        &[
            ("data/demo/ring-ref", &gs),
            ("data/demo/event-channel", &ps),
        ],
        &perms,
    )
    .map_err(|e| format!("{}: {}", e.what, e.detail))?;
    println!("demo-front: published data/demo ring-ref {gref} event-channel {port}");
    let t0 = time::now_ns();
    // The first wait covers Dom0 starting xf-ring-back.
    let r = front.run(
        &OfferedPort::default(),
        0,
        DEMO_REQUESTS,
        DOM0_NS.max(IDLE_NS),
    );
    let ns = time::now_ns() - t0;
    let st = front.stats();
    // The ring's last use: from here on only the grant holds the page.
    drop(page);
    let out = match r {
        Ok(_) => {
            println!(
                "demo-front: {}/{} ok in {} ms ({} req/s), {} notifications ({}.{:03} per request)",
                st.completed,
                DEMO_REQUESTS,
                ns / 1_000_000,
                rate(st.completed, ns),
                st.notifies,
                st.notifies / st.sent.max(1),
                st.notifies * 1000 / st.sent.max(1) % 1000
            );
            if expect_fault {
                Err(String::from(
                    "expected a faulty backend, all requests succeeded",
                ))
            } else {
                Ok(())
            }
        }
        Err(e) => {
            println!("demo-front: FAILED after {} requests: {e}", st.completed);
            match (expect_fault, e) {
                (true, DemoError::Timeout { .. }) | (false, _) => Err(format!("demo-front: {e}")),
                (true, _) => Ok(()),
            }
        }
    };
    // Tear down: keys, port, grant (deferred while Dom0 still maps it).
    env.xs_rm("data/demo");
    let _ = event::close(port);
    match grant_table::revoke(grant) {
        Ok(grant_table::Revoked::Done(_)) => println!("demo-front: revoked ring-ref {gref}: done"),
        Ok(_) => {
            let c = grant_table::counters().map(|c| c.deferred).unwrap_or(0);
            println!(
                "demo-front: revoked ring-ref {gref}: deferred (Dom0 still maps it; {c} deferred)"
            )
        }
        Err(e) => println!("demo-front: revoke ring-ref {gref}: {e}"),
    }
    out
}

/// Reads a decimal key, waiting for it (Dom0 publishes it).
fn wait_key(path: &str) -> Result<u32, String> {
    let deadline = time::now_ns() + DOM0_NS;
    loop {
        if let Ok(Some(v)) = XenChan.xs_read(path) {
            if let Some(n) = crate::options::decimal_key(path, &v)? {
                return Ok(n);
            }
        }
        if time::now_ns() >= deadline {
            return Err(format!("timed out waiting for {path}"));
        }
        event::wait(0, time::now_ns() + 100_000_000);
    }
}

fn demo_back() -> Result<(), String> {
    // xf-ring-front writes ring-ref and event-channel in one transaction.
    let port_r = wait_key("data/demo-back/event-channel")?;
    let gref = wait_key("data/demo-back/ring-ref")?;
    let port = event::bind_interdomain(DOM0, port_r).map_err(|e| format!("bind: {e}"))?;
    let map = match grant_table::map_grant(DOM0, GrantRef(gref), false) {
        Ok(m) => m,
        Err(e) => {
            let _ = event::close(port);
            return Err(format!("map ring-ref {gref}: {e}"));
        }
    };
    println!("demo-back: mapped ring-ref {gref} port {port}");
    let r = DemoBack::attach(map.mem(), port, true).and_then(|mut b| {
        // A notify sent before we bound is lost: serve() checks first.
        let end = b.serve(&XenChan, None, IDLE_NS)?;
        Ok((end, b.stats()))
    });
    let out = match r {
        Ok((BackEnd::FrontGone, st)) => {
            println!(
                "demo-back: answered {} requests, {} notifications, front gone",
                st.answered, st.notifies
            );
            Ok(())
        }
        Ok((end, _)) => Err(format!("demo-back: unexpected end {end:?}")),
        Err(e) => Err(format!("demo-back: {e}")),
    };
    let _ = grant_table::unmap(map);
    let _ = event::close(port);
    out
}

fn venv(e: (XenChan, VchanError)) -> String {
    format!("{}", e.1)
}

fn mbs(bytes: u64, ns: u64) -> (u64, u64) {
    let x10 = bytes.saturating_mul(10_000) / ns.max(1); // 0.1 MB/s units
    (x10 / 10, x10 % 10)
}

/// How many vchan connections to serve: Dom0 writes `data/vchan-rounds`
/// before starting its side.
fn vchan_rounds() -> Result<u32, String> {
    let n = wait_key("data/vchan-rounds")?;
    println!("vchan: {n} connection(s)");
    Ok(n)
}

fn vchan_server(rounds: u32) -> Result<(), String> {
    let me = XenChan.self_domid().map_err(|e| e.detail)?;
    let path = format!("/local/domain/{me}/data/vchan");
    let mut env = XenChan;
    for i in 0..rounds {
        let mut v = Vchan::server(env, DOM0, &path, 0, 0).map_err(venv)?;
        println!("vchan-server: listening on {path} (connection {i})");
        let r = v.wait_connected(DOM0_NS).and_then(|()| {
            let t0 = time::now_ns();
            let n = v.echo(u64::MAX, IDLE_NS)?;
            Ok((n, time::now_ns() - t0))
        });
        env = v.close();
        // Reclaim what the last client released before offering new pages.
        grant_table::poll_deferred();
        let (n, ns) = r.map_err(|e| format!("vchan-server: connection {i}: {e}"))?;
        let (a, b) = mbs(n, ns);
        println!(
            "vchan-server: connection {i}: echoed {n} bytes in {} ms ({a}.{b} MB/s)",
            ns / 1_000_000
        );
    }
    Ok(())
}

fn vchan_client(rounds: u32) -> Result<(), String> {
    let path = "data/vchan-srv";
    let mut env = XenChan;
    let mut first = None;
    for i in 0..rounds {
        let deadline = time::now_ns() + DOM0_NS;
        let mut v = loop {
            match Vchan::client(env, DOM0, path) {
                // Stale keys of a killed server can still map and bind for
                // a moment (its grant outlives it until Dom0 reaps it):
                // such a server is not live (srv_live 0) → not a connection.
                Ok(v) if !v.connected() => {
                    env = v.close();
                    if time::now_ns() >= deadline {
                        return Err(format!("vchan-client: connection {i}: server not live"));
                    }
                    event::wait(0, time::now_ns() + 200_000_000);
                    grant_table::poll_deferred();
                }
                Ok(v) => break v,
                Err((e, err)) => {
                    env = e;
                    if time::now_ns() >= deadline {
                        return Err(format!("vchan-client: connection {i}: {err}"));
                    }
                    event::wait(0, time::now_ns() + 200_000_000);
                    grant_table::poll_deferred();
                }
            }
        };
        println!("vchan-client: connected (connection {i})");
        let t0 = time::now_ns();
        let r = v.echo(u64::MAX, IDLE_NS);
        let ns = time::now_ns() - t0;
        let how = if v.stream().peer_live() == 0 {
            "closed"
        } else {
            "gone"
        };
        env = v.close();
        let n = r.map_err(|e| format!("vchan-client: connection {i}: {e}"))?;
        let (a, b) = mbs(n, ns);
        println!(
            "vchan-client: connection {i}: echoed {n} bytes in {} ms ({a}.{b} MB/s), server {how}",
            ns / 1_000_000
        );
        if i == 0 {
            first = Some(Resources::now());
        }
    }
    if let Some(first) = first {
        let last = Resources::settle(first);
        println!(
            "vchan-client: resources after {rounds} connections: {last}; after the first: {first}"
        );
    }
    Ok(())
}

/// What a connection must give back: grants, deferred grants, free pages
/// and open event channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    grants: usize,
    deferred: usize,
    free_pages: u64,
    ports: usize,
}

/// Ports `1..PORT_SCAN` are checked for [`Resources::ports`]: past every
/// scenario's use (libxl's default `max_event_channels` is 1023).
const PORT_SCAN: u32 = 1024;

impl Resources {
    /// The current counts.
    pub fn now() -> Resources {
        let c = grant_table::counters().ok();
        Resources {
            grants: c.map_or(usize::MAX, |c| c.in_use),
            deferred: c.map_or(usize::MAX, |c| c.deferred),
            free_pages: mm::free_frames(),
            ports: (1..PORT_SCAN)
                .filter(|p| {
                    !matches!(
                        event::status(*p),
                        Ok(xenfront::hypercall::EvtchnState::Closed) | Err(_)
                    )
                })
                .count(),
        }
    }

    /// Whether grants, deferred grants and open ports equal `other`'s
    /// (free pages aside: the heap keeps the frames it grew by).
    pub fn same_connections(&self, other: &Resources) -> bool {
        (self.grants, self.deferred, self.ports) == (other.grants, other.deferred, other.ports)
    }

    /// The counts once deferred grants settle back to `base` (≤ 10 s).
    pub fn settle(base: Resources) -> Resources {
        let deadline = time::now_ns() + 10_000_000_000;
        loop {
            grant_table::poll_deferred();
            let r = Resources::now();
            if r == base || time::now_ns() >= deadline {
                return r;
            }
            event::wait(0, time::now_ns() + 50_000_000);
        }
    }
}

impl core::fmt::Display for Resources {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "grants {} deferred {} free pages {} open ports {}",
            self.grants, self.deferred, self.free_pages, self.ports
        )
    }
}
