//! A hostile Dom0 (guest only): `test=hostile-storm` (Dom0 notifies our
//! port without pause), `test=hostile-map` (Dom0 maps our grants and never
//! unmaps them), `test=hostile-xs` (Dom0 writes garbage into the keys a
//! vchan client reads). In each the guest names what it saw, disconnects
//! what misbehaves, and goes on serving; tests/nested/hostile.rs drives the
//! Dom0 side and checks Xen's own view.
//!
//! Console lines:
//! ```text
//! storm: port <P>
//! storm: dom0 bound port <P>
//! storm: port <P>: <E> events in <ms> ms from dom0: closing the port
//! storm: <E> events (<E2> after closing), <R> work rounds (XenStore write + read, 5 ms timer sleep)
//! hostile-map: granted <K> pages: refs <r1> ... <rK>
//! hostile-map: revoked <K> grants while dom0 maps them: <K> deferred (<counters>)
//! hostile-map: exhausted after <n> grants: <error>
//! hostile-map: Xen reports <x> active grant entries, the guest <d> deferred
//! hostile-map: reclaimed <K> pages <ms> ms after release (<counters>)
//! hostile-xs: round <i>: <error naming the key and value>
//! hostile-xs: connected to the real server: echoed <B> bytes
//! ```

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::options::Options;
use crate::scenario::Verdict;
use xenfront::chan_env::XenChan;
use xenfront::drivers::vchan::{Vchan, VchanError};
use xenfront::event;
use xenfront::grant_table::{self, GnttabError, GrantError, Revoked};
use xenfront::hypercall::EvtchnState;
use xenfront::mm;
use xenfront::println;
use xenfront::time::{self, NS_PER_MS, NS_PER_SEC};
use xenfront::xenstore::{self, Error, StoreError, XsError};

/// Dom0's domain id.
const DOM0: u16 = 0;
/// Waiting for Dom0 (script start-up under TCG takes seconds).
const DOM0_NS: u64 = 90 * NS_PER_SEC;

/// `test=hostile-storm`.
pub fn storm_test(_: &Options) -> Verdict {
    verdict(storm())
}

/// `test=hostile-map`.
pub fn map_test(_: &Options) -> Verdict {
    verdict(map())
}

/// `test=hostile-xs`.
pub fn xs_test(_: &Options) -> Verdict {
    verdict(garbage_keys())
}

fn verdict(r: Result<(), String>) -> Verdict {
    match r {
        Ok(()) => Verdict::Success,
        Err(e) => {
            println!("error: {e}");
            Verdict::Failure
        }
    }
}

/// `Some(value)` of `path`, `None` if absent.
fn read_opt(path: &str) -> Result<Option<Vec<u8>>, String> {
    match xenstore::read(path) {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Xs(Error::Xs(XsError::ENOENT))) => Ok(None),
        Err(e) => Err(format!("read {path}: {e}")),
    }
}

/// Waits (polling, 50 ms) until `path` holds a decimal number; Dom0's
/// value is named if it is not one.
fn wait_num(path: &str) -> Result<u64, String> {
    let deadline = time::now_ns() + DOM0_NS;
    loop {
        if let Some(v) = read_opt(path)? {
            if let Some(n) = crate::options::decimal_key(path, &v)? {
                return Ok(u64::from(n));
            }
        }
        if time::now_ns() >= deadline {
            return Err(format!("timed out waiting for {path}"));
        }
        time::sleep(50 * NS_PER_MS);
    }
}

fn write(path: &str, v: &str) -> Result<(), String> {
    xenstore::write(path, v.as_bytes()).map_err(|e| format!("write {path}: {e}"))
}

// ------------------------------------------------------------------ storm

/// More events than this in one window on a port that carries no protocol
/// is a storm: the port is closed.
const STORM_EVENTS: u64 = 500;
/// The window.
const STORM_WINDOW_NS: u64 = NS_PER_SEC;

static EVENTS: AtomicU64 = AtomicU64::new(0);

fn count_event(_port: u32) {
    EVENTS.fetch_add(1, Ordering::SeqCst);
}

fn storm() -> Result<(), String> {
    let p = event::alloc_unbound(DOM0).map_err(|e| format!("alloc_unbound: {e}"))?;
    event::bind(p, count_event).map_err(|e| format!("bind: {e}"))?;
    write("data/storm-port", &p.to_string())?;
    println!("storm: port {p}");
    let deadline = time::now_ns() + DOM0_NS;
    loop {
        match event::status(p).map_err(|e| format!("status: {e}"))? {
            EvtchnState::Interdomain { .. } => break,
            EvtchnState::Unbound { .. } if time::now_ns() < deadline => time::sleep(10 * NS_PER_MS),
            st => return Err(format!("storm: dom0 never bound port {p} ({st:?})")),
        }
    }
    println!("storm: dom0 bound port {p}");

    // Work while the storm lasts; each round is a XenStore write Dom0
    // samples, a read of the key that ends the run, and a timer sleep.
    let mut rounds = 0u64;
    let mut open = true;
    let mut window = (time::now_ns(), EVENTS.load(Ordering::SeqCst));
    let mut at_close = 0;
    let sent = loop {
        rounds += 1;
        write("data/storm-progress", &rounds.to_string())?;
        if let Some(v) = read_opt("data/storm-done")? {
            break crate::options::decimal_key("data/storm-done", &v)?.unwrap_or(0);
        }
        time::sleep(5 * NS_PER_MS);
        let (now, seen) = (time::now_ns(), EVENTS.load(Ordering::SeqCst));
        if open && now - window.0 >= STORM_WINDOW_NS {
            if seen - window.1 > STORM_EVENTS {
                println!(
                    "storm: port {p}: {} events in {} ms from dom0: closing the port",
                    seen - window.1,
                    (now - window.0) / NS_PER_MS
                );
                event::close(p).map_err(|e| format!("close: {e}"))?;
                open = false;
                at_close = EVENTS.load(Ordering::SeqCst);
            }
            window = (now, seen);
        }
        if now >= deadline {
            return Err("storm: data/storm-done never came".into());
        }
    };
    let total = EVENTS.load(Ordering::SeqCst);
    if open {
        event::close(p).map_err(|e| format!("close: {e}"))?;
        return Err(format!(
            "storm: {total} events, never more than {STORM_EVENTS} in a window: no storm seen"
        ));
    }
    println!(
        "storm: {total} events ({} after closing), {rounds} work rounds (XenStore write + read, 5 ms timer sleep); dom0 sent {sent}",
        total - at_close
    );
    Ok(())
}

// -------------------------------------------------------------------- map

/// Pages Dom0 maps and holds.
const MAP_PAGES: usize = 16;

fn counters() -> Result<grant_table::Counters, String> {
    grant_table::counters().map_err(|e| format!("grant table: {e}"))
}

fn map() -> Result<(), String> {
    let base = counters()?;
    let mut pages = Vec::new();
    let mut grants = Vec::new();
    for _ in 0..MAP_PAGES {
        let page = mm::alloc_shared_page().map_err(|e| format!("page: {e}"))?;
        grants.push(grant_table::grant_page(DOM0, &page, true).map_err(|e| format!("grant: {e}"))?);
        pages.push(page);
    }
    let refs: Vec<String> = grants.iter().map(|g| g.gref().0.to_string()).collect();
    let refs = refs.join(" ");
    write("data/hostile-map/refs", &refs)?;
    println!("hostile-map: granted {MAP_PAGES} pages: refs {refs}");
    let mapped = wait_num("data/hostile-map/mapped")?;
    if mapped != MAP_PAGES as u64 {
        return Err(format!("hostile-map: dom0 mapped {mapped} of {MAP_PAGES}"));
    }
    let mut deferred = 0;
    for g in grants {
        match grant_table::revoke(g).map_err(|e| format!("revoke: {e}"))? {
            Revoked::Deferred => deferred += 1,
            Revoked::Done(_) => {}
        }
    }
    drop(pages);
    println!(
        "hostile-map: revoked {MAP_PAGES} grants while dom0 maps them: {deferred} deferred ({})",
        counters()?
    );
    if deferred != MAP_PAGES {
        return Err(format!("hostile-map: {deferred} of {MAP_PAGES} deferred"));
    }

    // The table fills up around the pages Dom0 keeps: the error names them.
    let page = mm::alloc_shared_page().map_err(|e| format!("page: {e}"))?;
    let mut more = Vec::new();
    let err = loop {
        match grant_table::grant_page(DOM0, &page, true) {
            Ok(g) => more.push(g),
            Err(e) => break e,
        }
        if more.len() > 1 << 20 {
            return Err("hostile-map: no exhaustion after 2^20 grants".into());
        }
    };
    println!("hostile-map: exhausted after {} grants: {err}", more.len());
    for g in more {
        grant_table::end_access(g).map_err(|(_, e)| format!("end_access: {e}"))?;
    }
    drop(page);
    match err {
        GnttabError::Table(GrantError::Exhausted { deferred: d, .. }) if d == MAP_PAGES => {}
        e => return Err(format!("hostile-map: exhaustion error {e:?}")),
    }

    // Xen's own view of our table must agree.
    write("data/hostile-map/deferred", &deferred.to_string())?;
    let active = wait_num("data/hostile-map/xen-active")?;
    println!(
        "hostile-map: Xen reports {active} active grant entries, the guest {deferred} deferred"
    );
    if active != deferred as u64 {
        return Err("hostile-map: Xen and the guest disagree".into());
    }

    // Dom0 lets go: every page comes back.
    write("data/hostile-map/release", "1")?;
    let t0 = time::now_ns();
    let mut reclaimed = 0;
    while counters()?.deferred > base.deferred {
        if time::now_ns() - t0 > DOM0_NS {
            return Err(format!(
                "hostile-map: pages never reclaimed ({})",
                counters()?
            ));
        }
        reclaimed += grant_table::poll_deferred();
        time::sleep(20 * NS_PER_MS);
    }
    let c = counters()?;
    println!(
        "hostile-map: reclaimed {reclaimed} pages {} ms after release ({c})",
        (time::now_ns() - t0) / NS_PER_MS
    );
    if (c.in_use, c.deferred) != (base.in_use, base.deferred) {
        return Err(format!("hostile-map: counters {c}, baseline {base}"));
    }
    println!("hostile-map: counters back to baseline");
    write("data/hostile-map/reclaimed", "1")?;
    let after = wait_num("data/hostile-map/xen-active-after")?;
    println!("hostile-map: Xen reports {after} active grant entries after reclaim");
    if after != 0 {
        return Err("hostile-map: Xen still has active entries".into());
    }
    Ok(())
}

// --------------------------------------------------------------------- xs

/// Where Dom0 puts its (garbage, then real) vchan server keys.
const SRV: &str = "data/vchan-srv";

fn garbage_keys() -> Result<(), String> {
    let base = counters()?;
    let rounds = wait_num("data/hostile-xs/rounds")?;
    println!("hostile-xs: {rounds} rounds of garbage");
    let mut env = XenChan;
    for i in 1..=rounds {
        let go = format!("data/hostile-xs/round-{i}");
        wait_num(&go)?;
        let t0 = time::now_ns();
        let err = match Vchan::client(env, DOM0, SRV) {
            Ok(v) => {
                let _ = v.close();
                return Err(format!("hostile-xs: round {i}: connected to garbage"));
            }
            Err((e, err)) => {
                env = e;
                err
            }
        };
        println!(
            "hostile-xs: round {i}: {err} ({} ms)",
            (time::now_ns() - t0) / NS_PER_MS
        );
        if matches!(err, VchanError::NotReady) {
            return Err(format!("hostile-xs: round {i}: garbage read as absent"));
        }
        grant_table::poll_deferred();
        write(&format!("data/hostile-xs/done-{i}"), "1")?;
    }

    // A real server next: the client still connects and echoes.
    let go = "data/hostile-xs/real";
    wait_num(go)?;
    let deadline = time::now_ns() + DOM0_NS;
    let mut v = loop {
        match Vchan::client(env, DOM0, SRV) {
            Ok(v) if v.connected() => break v,
            Ok(v) => env = v.close(),
            Err((e, _)) => env = e,
        }
        if time::now_ns() >= deadline {
            return Err("hostile-xs: the real server never accepted".into());
        }
        time::sleep(200 * NS_PER_MS);
        grant_table::poll_deferred();
    };
    let n = v
        .echo(u64::MAX, 30 * NS_PER_SEC)
        .map_err(|e| format!("hostile-xs: echo: {e}"))?;
    let _ = v.close();
    println!("hostile-xs: connected to the real server: echoed {n} bytes");
    let deadline = time::now_ns() + 10 * NS_PER_SEC;
    let c = loop {
        grant_table::poll_deferred();
        let c = counters()?;
        if (c.in_use, c.deferred) == (base.in_use, base.deferred) || time::now_ns() >= deadline {
            break c;
        }
        time::sleep(50 * NS_PER_MS);
    };
    println!("hostile-xs: grants {c} (baseline {base})");
    if (c.in_use, c.deferred) != (base.in_use, base.deferred) {
        return Err("hostile-xs: grants not back to baseline".into());
    }
    Ok(())
}
