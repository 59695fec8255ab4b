//! In-guest scenarios for the memory, grant-table and XenStore services
//! (guest only): `test=xenstore`, `test=grant`, `test=idle`. Console lines
//! are matched by tests/nested/services.rs; every figure is measured at run
//! time.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use xenfront::println;

use crate::options::Options;
use crate::scenario::Verdict;
use xenfront::control;
use xenfront::event;
use xenfront::grant_table::{self, GnttabError, GrantError, GrantRef, Revoked};
use xenfront::mm;
use xenfront::shared::PAGE_SIZE;
use xenfront::time;
use xenfront::xenstore::{self, Error, Event, TxId, XsError};

/// Overall limit for waiting on Dom0 (script start-up in the nested lab
/// can take many seconds).
const DOM0_DEADLINE_NS: u64 = 90_000_000_000;

/// `test=mm`: every free page allocated and freed, heap growth, the
/// foreign-mapping window.
pub fn mm(_: &Options) -> Verdict {
    verdict(mm_test())
}

/// `test=xenstore`: read/write/watch with Dom0, a forced transaction
/// conflict, ENOENT, round trips/s.
pub fn xenstore(_: &Options) -> Verdict {
    verdict(xenstore_test(store_port()))
}

/// `test=grant`: Dom0 maps our page, deferred revoke, exhaustion, ops/s,
/// mapping a page Dom0 granted us.
pub fn grant(_: &Options) -> Verdict {
    verdict(grant_test(store_port()))
}

/// `test=idle`: print `ready`, then wait for `xl shutdown` / `xl reboot`.
pub fn idle_test(_: &Options) -> Verdict {
    verdict(idle())
}

fn store_port() -> u32 {
    xenstore::port().unwrap_or(0)
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

// -------------------------------------------------------------------- test=mm

/// Every free page allocated (then OutOfMemory), each mapped at pfn << 12
/// to its p2m MFN and writable; all freed; the heap grows past its boot
/// region; window slots come and go.
fn mm_test() -> Result<(), String> {
    let base = mm::free_frames();
    println!(
        "mm: {base} free of {} frames, heap {} KiB in {} region(s)",
        mm::nr_frames(),
        xenfront::heap::size() / 1024,
        xenfront::heap::regions()
    );
    // Heap growth first (needs free frames).
    let big: Vec<u8> = alloc::vec![0x5a; 3 * xenfront::heap::HEAP_SIZE];
    let regions = xenfront::heap::regions();
    println!(
        "mm: heap grew to {} KiB in {regions} region(s) for a {} KiB block",
        xenfront::heap::size() / 1024,
        big.len() / 1024
    );
    if regions < 2 || big.iter().any(|&b| b != 0x5a) {
        return Err("mm: heap did not grow".into());
    }
    drop(big);
    let base = mm::free_frames();
    let mut pages = Vec::with_capacity(base as usize + 1);
    let t0 = time::now_ns();
    let err = loop {
        match mm::alloc_page() {
            Ok(p) => pages.push(p),
            Err(e) => break e,
        }
        if pages.len() as u64 > base {
            return Err("mm: more pages than free frames".into());
        }
    };
    let t_alloc = time::now_ns() - t0;
    let n = pages.len() as u64;
    println!("mm: allocated {n} pages, then {err:?}");
    if err != mm::MmError::OutOfMemory || n != base {
        return Err(format!("mm: expected {base} pages then OutOfMemory"));
    }
    for p in pages.iter_mut() {
        let pfn = p.pfn();
        p.bytes_mut()[..8].copy_from_slice(&pfn.to_le_bytes());
        let pte = mm::pte(p.va() as u64).map_err(|e| format!("mm: {e}"))?;
        if pte & 1 == 0 || (pte & 0x000f_ffff_ffff_f000) >> 12 != p.mfn() {
            return Err(format!("mm: pfn {pfn:#x} mapped by pte {pte:#x}"));
        }
    }
    if pages
        .iter()
        .any(|p| p.bytes()[..8] != p.pfn().to_le_bytes())
    {
        return Err("mm: pages alias each other".into());
    }
    let t0 = time::now_ns();
    drop(pages);
    let t_free = time::now_ns() - t0;
    let after = mm::free_frames();
    println!(
        "mm: freed all, {after} free (baseline {base}); {} allocs/s, {} frees/s",
        rate(n, t_alloc),
        rate(n, t_free)
    );
    if after != base {
        return Err("mm: free count not back to baseline".into());
    }
    let vas: Vec<u64> = (0..8)
        .map(|_| mm::vmap_reserve())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("mm: {e}"))?;
    for &va in &vas {
        if mm::pte(va).map_err(|e| format!("mm: {e}"))? != 0 {
            return Err(format!("mm: window slot {va:#x} not empty"));
        }
        mm::vmap_release(va);
    }
    println!(
        "mm: 8 window slots from {:#x}, L1 present and empty",
        vas[0]
    );
    Ok(())
}

/// Sleep about `ns` (SCHEDOP_poll on the store port, which is safe to
/// clear: the XenStore client re-reads its ring before every wait).
fn sleep_ns(port: u32, ns: u64) {
    let deadline = time::now_ns().saturating_add(ns);
    while time::now_ns() < deadline {
        event::wait(port, deadline);
        event::clear_pending(port);
    }
}

fn xs<R>(
    what: &str,
    f: impl FnOnce(&mut xenstore::Client) -> Result<R, Error>,
) -> Result<R, String> {
    xenstore::with(f).map_err(|e| format!("xenstore: {what}: {e}"))
}

/// Waits (watch + re-read) until `path` exists and satisfies `ok`.
fn wait_for_key(path: &str, token: &str, ok: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    xs("watch", |c| c.watch(path, token))?;
    let deadline = time::now_ns() + DOM0_DEADLINE_NS;
    let r = loop {
        match xenstore::with(|c| c.read(TxId::NONE, path)) {
            Ok(v) if ok(&v) => break Ok(v),
            Ok(_) | Err(xenstore::StoreError::Xs(Error::Xs(XsError::ENOENT))) => {}
            Err(e) => break Err(format!("xenstore: read {path}: {e}")),
        }
        if time::now_ns() >= deadline {
            break Err(format!("timed out waiting for {path}"));
        }
        match xenstore::next_event() {
            Ok(_) => {}
            Err(e) => break Err(format!("xenstore: waiting for {path}: {e}")),
        }
    };
    let _ = xs("unwatch", |c| c.unwatch(path, token));
    r
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn rate(n: u64, ns: u64) -> u64 {
    if ns == 0 {
        0
    } else {
        (u128::from(n) * 1_000_000_000 / u128::from(ns)) as u64
    }
}

// ------------------------------------------------------------- test=xenstore

fn xenstore_test(port: u32) -> Result<(), String> {
    let domid = xs("read domid", |c| c.read_u64(TxId::NONE, "domid"))?;
    println!("xenstore: domid {domid}");

    // 1. A key Dom0 writes (before or after we look): wait with a watch.
    let from_dom0 = wait_for_key("data/from-dom0", "from-dom0", |v| !v.is_empty())?;
    let from_dom0 = String::from_utf8_lossy(&from_dom0).into_owned();
    println!("xenstore: read data/from-dom0 = {from_dom0:?}");

    // 2. A key Dom0 reads back: derived from what it wrote and the clock.
    let value = format!(
        "guest{domid}-{:016x}",
        fnv1a64(from_dom0.as_bytes()) ^ time::now_ns()
    );
    xs("write", |c| {
        c.write(TxId::NONE, "data/from-guest", value.as_bytes())
    })?;
    println!("xenstore: wrote data/from-guest = {value:?}");

    // 3. A watch that fires when Dom0 changes a key.
    xs("watch", |c| c.watch("data/poke", "poke"))?;
    println!("xenstore: watching data/poke");
    let deadline = time::now_ns() + DOM0_DEADLINE_NS;
    let mut fired = 0u32;
    let poked = loop {
        if time::now_ns() >= deadline {
            return Err("timed out waiting for data/poke".into());
        }
        match xenstore::next_event().map_err(|e| format!("xenstore: {e}"))? {
            Some(Event::Watch(ev)) if ev.token == "poke" => {
                fired += 1;
                match xenstore::with(|c| c.read(TxId::NONE, "data/poke")) {
                    Ok(v) if !v.is_empty() => break (ev.path, v),
                    _ => {} // the initial fire, before Dom0 wrote
                }
            }
            _ => {}
        }
    };
    println!(
        "xenstore: watch fired ({fired} event(s)) path {:?} value {:?}",
        poked.0,
        String::from_utf8_lossy(&poked.1)
    );
    let _ = xs("unwatch", |c| c.unwatch("data/poke", "poke"));

    // 4. A transaction conflict: read in the transaction, then change the
    //    key outside it before committing → EAGAIN → redo → commit.
    xs("write", |c| c.write(TxId::NONE, "data/tx-counter", b"0"))?;
    let mut attempts = 0u32;
    let committed = xs("transaction", |c| {
        c.transaction(|c, tx| {
            attempts += 1;
            let v = c.read_u64(tx, "data/tx-counter")?;
            if attempts == 1 {
                // Outside the transaction (same client, TxId::NONE).
                c.write(TxId::NONE, "data/tx-counter", b"100")?;
            }
            c.write(tx, "data/tx-counter", format!("{}", v + 1).as_bytes())?;
            Ok(v + 1)
        })
    })?;
    let now = xs("read", |c| c.read_u64(TxId::NONE, "data/tx-counter"))?;
    println!(
        "xenstore: transaction committed after {attempts} attempt(s) ({} retried on EAGAIN): data/tx-counter = {now}",
        attempts - 1
    );
    if attempts < 2 || now != committed || now != 101 {
        return Err(format!(
            "transaction: expected a conflict and 101, got {attempts} attempt(s) and {now}"
        ));
    }

    // 5. A missing key is an error value, not a crash.
    match xenstore::with(|c| c.read(TxId::NONE, "data/no-such-key")) {
        Err(xenstore::StoreError::Xs(Error::Xs(e))) => {
            println!("xenstore: read data/no-such-key: {}", e.name());
            if e != XsError::ENOENT {
                return Err(format!("missing key gave {}", e.name()));
            }
        }
        other => return Err(format!("missing key gave {other:?}")),
    }

    // 6. Round trips per second (READ of our domid).
    let n: u64 = 500;
    let t0 = time::now_ns();
    for _ in 0..n {
        xs("read", |c| c.read(TxId::NONE, "domid"))?;
    }
    let dt = time::now_ns() - t0;
    println!(
        "xenstore: {n} read round trips in {} ms ({} round trips/s)",
        dt / 1_000_000,
        rate(n, dt)
    );
    let _ = port;
    Ok(())
}

// ---------------------------------------------------------------- test=grant

fn counters() -> Result<grant_table::Counters, String> {
    grant_table::counters().map_err(|e| format!("grant: {e}"))
}

fn fill_pattern(page: &mm::SharedPage, seed: u8) {
    let mut buf = [0u8; PAGE_SIZE];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
    page.mem().copy_in(0, &buf);
}

fn check_pattern(buf: &[u8; PAGE_SIZE], seed: u8) -> Result<(), (usize, u8, u8)> {
    for (i, &b) in buf.iter().enumerate() {
        let want = seed.wrapping_add(i as u8);
        if b != want {
            return Err((i, b, want));
        }
    }
    Ok(())
}

fn grant_test(port: u32) -> Result<(), String> {
    let c0 = grant_table::init().map_err(|e| format!("grant: init: {e}"))?;
    println!("grant: table up ({c0})");
    let base = c0;

    // 1. Grant a pattern page to Dom0, which maps it and holds it.
    let page = mm::alloc_shared_page().map_err(|e| format!("grant: {e}"))?;
    let seed = ((time::now_ns() >> 10) as u8) | 1;
    fill_pattern(&page, seed);
    let g = grant_table::grant_page(0, &page, true).map_err(|e| format!("grant: {e}"))?;
    let gref = g.gref();
    println!("grant: ref {} pattern-seed {seed:02x}", gref.0);
    println!("grant: granted ({})", counters()?);

    // 2. Dom0 says it has the page mapped; revoking must defer.
    wait_for_key("data/grant-mapped", "grant-mapped", |v| v == b"1")?;
    println!("grant: dom0 reports ref {} mapped", gref.0);
    match grant_table::revoke(g).map_err(|e| format!("grant: revoke: {e}"))? {
        Revoked::Deferred => println!("grant: revoke while mapped: deferred ({})", counters()?),
        Revoked::Done(_) => return Err("grant: revoke while mapped was not deferred".into()),
    }
    let handles = page.handles();
    drop(page);
    // Anything freed now would be reused here; the mapped page must not be.
    let mut scribble = Vec::new();
    for _ in 0..32 {
        let mut p = mm::alloc_page().map_err(|e| format!("grant: {e}"))?;
        p.bytes_mut().fill(0xee);
        scribble.push(p);
    }
    drop(scribble);
    let t0 = time::now_ns();
    let mut reclaimed = 0;
    while counters()?.deferred > base.deferred {
        if time::now_ns() - t0 > DOM0_DEADLINE_NS {
            return Err(format!(
                "grant: deferred page never reclaimed ({})",
                counters()?
            ));
        }
        reclaimed += grant_table::poll_deferred();
        sleep_ns(port, 20_000_000);
    }
    let c = counters()?;
    println!(
        "grant: reclaimed {reclaimed} page(s) {} ms after revoke, page handles while deferred {handles} ({c})",
        (time::now_ns() - t0) / 1_000_000
    );
    if (c.in_use, c.deferred) != (base.in_use, base.deferred) {
        return Err(format!(
            "grant: counters not back to baseline ({c} vs {base})"
        ));
    }
    println!("grant: counters back to baseline");

    // 3. Exhaustion: grant one page until the table is full, then end all.
    let page = mm::alloc_shared_page().map_err(|e| format!("grant: {e}"))?;
    fill_pattern(&page, 0x11);
    let mut grants = Vec::new();
    let t0 = time::now_ns();
    let err = loop {
        match grant_table::grant_page(0, &page, true) {
            Ok(g) => grants.push(g),
            Err(e) => break e,
        }
        if grants.len() > 1 << 20 {
            return Err("grant: no exhaustion after 2^20 grants".into());
        }
    };
    let t_grant = time::now_ns() - t0;
    let n = grants.len() as u64;
    println!(
        "grant: exhausted after {n} grants: {err:?} ({})",
        counters()?
    );
    if !matches!(err, GnttabError::Table(GrantError::Exhausted { .. })) {
        return Err(format!("grant: exhaustion gave {err:?}"));
    }
    let t0 = time::now_ns();
    for g in grants {
        grant_table::end_access(g)
            .map_err(|(g, e)| format!("grant: end_access {}: {e}", g.gref().0))?;
    }
    let t_end = time::now_ns() - t0;
    let c = counters()?;
    println!("grant: ended all {n} grants ({c})");
    if (c.in_use, c.deferred) != (base.in_use, base.deferred) {
        return Err(format!(
            "grant: counters not back to baseline ({c} vs {base})"
        ));
    }
    println!("grant: counters back to baseline");
    // Steady state (table at full size): grant + end_access pairs.
    let pairs: u64 = 20_000;
    let t0 = time::now_ns();
    for _ in 0..pairs {
        let g = grant_table::grant_page(0, &page, true).map_err(|e| format!("grant: {e}"))?;
        grant_table::end_access(g).map_err(|(_, e)| format!("grant: end_access: {e}"))?;
    }
    let t_pairs = time::now_ns() - t0;
    println!(
        "grant: {n} grants in {} ms ({} grants/s incl. growth), {n} end_access in {} ms ({} revokes/s), {pairs} grant+revoke pairs in {} ms ({} ops/s)",
        t_grant / 1_000_000,
        rate(n, t_grant),
        t_end / 1_000_000,
        rate(n, t_end),
        t_pairs / 1_000_000,
        rate(2 * pairs, t_pairs)
    );
    drop(page);

    // 4. A bad ref from Dom0 is a typed GNTST error.
    match grant_table::map_grant(0, GrantRef(0x7fff_fff0), true) {
        Err(e) => println!("grant: map of a bad ref: {e}"),
        Ok(_) => return Err("grant: mapping a bad ref succeeded".into()),
    }

    // 5. Map a page Dom0 granted us and check its pattern.
    let r = wait_for_key("data/share-ref", "share-ref", |v| !v.is_empty())?;
    let pat = wait_for_key("data/share-pattern", "share-pattern", |v| !v.is_empty())?;
    let parse = |v: &[u8], radix: u32| {
        core::str::from_utf8(v)
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), radix).ok())
    };
    let sref = parse(&r, 10).ok_or_else(|| format!("grant: bad data/share-ref {r:?}"))?;
    let sseed = parse(&pat, 16)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| format!("grant: bad data/share-pattern {pat:?}"))?;
    let m = grant_table::map_grant(0, GrantRef(sref), true)
        .map_err(|e| format!("grant: map dom0 ref {sref}: {e}"))?;
    let mut buf = [0u8; PAGE_SIZE];
    m.mem().copy_out(0, &mut buf);
    let va = m.va();
    grant_table::unmap(m).map_err(|e| format!("grant: unmap dom0 ref {sref}: {e}"))?;
    match check_pattern(&buf, sseed) {
        Ok(()) => println!("grant: mapped dom0 ref {sref} at {va:#x}: pattern {sseed:02x} ok, unmapped"),
        Err((off, got, want)) => {
            return Err(format!(
                "grant: dom0 ref {sref}: pattern {sseed:02x} mismatch at {off}: got {got:#04x} want {want:#04x}"
            ))
        }
    }
    xs("write", |c| c.write(TxId::NONE, "data/grant-done", b"1"))?;
    Ok(())
}

// ----------------------------------------------------------------- test=idle

/// `ready`, then idle on the control/shutdown watch (polling deferred grant
/// reclaim meanwhile) until the toolstack asks for poweroff or reboot.
fn idle() -> Result<(), String> {
    println!("ready");
    loop {
        grant_table::poll_deferred();
        if let Some(req) = control::wait(time::now_ns() + time::NS_PER_SEC) {
            println!("shutdown: {} requested", req.name());
            println!("Test result: {}", Verdict::Success);
            control::obey(req);
        }
    }
}
