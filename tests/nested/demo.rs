//! The demo shared ring in both directions against the stock Dom0,
//! with the Dom0 peers of docs/peers.md (`xf-ring-back`, `xf-ring-front`).
//! Guest side: src/channels.rs (`test=demo-front`, `demo-front-fault`,
//! `demo-back`), src/drivers/demo.rs. Needs `cargo build --release -p
//! xen-peers` first.
//!
//! Every assertion reads numbers the guest and the peer printed: request
//! counts on both sides, the request at which the backend died, grant
//! counters before and after.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, lines, out, peer, Mode};

/// Requests per run (src/channels.rs `DEMO_REQUESTS`).
const N: u64 = 10_000;
/// `--die-after` for the dying-backend scenario.
const DIE_AFTER: u64 = 3000;
/// `--bad-at` for the bad-peer scenarios.
const BAD_AT: u64 = 500;

/// Words of `s`, split at blanks, parentheses, commas and slashes.
fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| c.is_whitespace() || "(),/:".contains(c))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The number right after `word` in `s`.
fn num_after(s: &str, word: &str) -> Option<u64> {
    let w = words(s);
    let i = w.iter().position(|x| *x == word)?;
    w.get(i + 1)?.parse().ok()
}

/// The number right before `word` in `s`.
fn num_before(s: &str, word: &str) -> Option<u64> {
    let w = words(s);
    let i = w.iter().position(|x| *x == word)?;
    w.get(i.checked_sub(1)?)?.parse().ok()
}

/// `grants: in_use <a> deferred <b> (baseline in_use <c>)`: a == c, b == 0.
pub fn check_grants_baseline(o: &Outcome) -> Result<String, String> {
    let g = line(o, "grants: in_use ")?;
    let w = words(g);
    let nums: Vec<u64> = w.iter().filter_map(|x| x.parse().ok()).collect();
    match nums[..] {
        [a, 0, c] if a == c => Ok(format!("grants back to baseline (in_use {a})")),
        _ => Err(format!("grant counters not back to baseline: {g:?}")),
    }
}

const FRONT_SCRIPT: &str = r#"
"$FILES/xf-ring-back" "$DOMID" "/local/domain/$DOMID/data/demo" --count 10000 >"$OUT/ring-back.out" 2>&1
echo $? >"$OUT/ring-back.status"
"#;

fn check_front(o: &Outcome) -> Result<(), String> {
    // demo-front: <N>/<N> ok in <ms> ms (<r> req/s), <n> notifications (<x.xxx> per request)
    let l = lines(o)
        .find(|l| l.starts_with("demo-front: ") && l.contains(" ok in "))
        .ok_or("no `demo-front: N/N ok` line")?;
    let w = words(l);
    let (done, want) = (w.get(1), w.get(2));
    if done != Some(&"10000") || want != Some(&"10000") {
        return Err(format!("guest line {l:?}: want 10000/10000"));
    }
    let rate = num_before(l, "req").ok_or_else(|| format!("no req/s in {l:?}"))?;
    let notifies = num_before(l, "notifications").ok_or_else(|| format!("{l:?}"))?;
    if rate == 0 || notifies == 0 {
        return Err(format!("guest line {l:?}: zero rate or no notifications"));
    }
    let status = out(o, "ring-back.status")?;
    let rb = out(o, "ring-back.out")?;
    if status != "0" {
        return Err(format!("xf-ring-back exit {status}: {rb}"));
    }
    let ans = rb
        .lines()
        .find(|l| l.starts_with("ring-back: answered "))
        .ok_or_else(|| format!("no `ring-back: answered` line in {rb:?}"))?;
    if num_after(ans, "answered") != Some(N) {
        return Err(format!("ring-back: {ans:?}, want {N} answered"));
    }
    check_grants_baseline(o)?;
    println!(
        "    figure: demo-front (guest front, xf-ring-back): {rate} req/s, {notifies} notifications for {N} requests ({:.4} per request); {ans}",
        notifies as f64 / N as f64
    );
    Ok(())
}

const BACK_SCRIPT: &str = r#"
"$FILES/xf-ring-front" "$DOMID" "/local/domain/$DOMID/data/demo-back" 10000 >"$OUT/ring-front.out" 2>&1
echo $? >"$OUT/ring-front.status"
xenstore-rm "/local/domain/$DOMID/data/demo-back" 2>/dev/null
"#;

fn check_back(o: &Outcome) -> Result<(), String> {
    let status = out(o, "ring-front.status")?;
    let rf = out(o, "ring-front.out")?;
    if status != "0" {
        return Err(format!("xf-ring-front exit {status}: {rf}"));
    }
    if !rf.lines().any(|l| l == "ring-front: 10000/10000 ok") {
        return Err(format!("no `ring-front: 10000/10000 ok` in {rf:?}"));
    }
    let g = line(o, "demo-back: answered ")?;
    if num_after(&format!("answered {g}"), "answered") != Some(N) || !g.ends_with("front gone") {
        return Err(format!("guest: demo-back: answered {g}"));
    }
    check_grants_baseline(o)?;
    let perf = rf
        .lines()
        .find(|l| l.contains(" requests in "))
        .unwrap_or("(no ring-front figures line)");
    println!("    figure: demo-back (guest back, xf-ring-front): {perf}; guest: answered {g}");
    Ok(())
}

fn fault_script(opts: &str) -> String {
    format!(
        r#"
"$FILES/xf-ring-back" "$DOMID" "/local/domain/$DOMID/data/demo" --idle-ms 3000 {opts} >"$OUT/ring-back.out" 2>&1
echo $? >"$OUT/ring-back.status"
"#
    )
}

/// The guest's FAILED line: `demo-front: FAILED after <done> requests: <why>`.
fn failed_line(o: &Outcome) -> Result<(u64, String), String> {
    let f = line(o, "demo-front: FAILED after ")?;
    let done = f
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("FAILED line {f:?}"))?;
    let why = f
        .split_once("requests: ")
        .map(|(_, w)| w.to_string())
        .ok_or_else(|| format!("FAILED line {f:?}"))?;
    Ok((done, why))
}

/// Revoke printed, and (for a peer that still mapped the ring) deferred.
fn check_revoke(o: &Outcome) -> Result<(), String> {
    let r = lines(o)
        .find(|l| l.starts_with("demo-front: revoke"))
        .ok_or("no `demo-front: revoke...` line")?;
    if !r.starts_with("demo-front: revoked ring-ref ") {
        return Err(format!("revoke failed: {r:?}"));
    }
    Ok(())
}

fn check_die(o: &Outcome) -> Result<(), String> {
    let status = out(o, "ring-back.status")?;
    let rb = out(o, "ring-back.out")?;
    if status != "3" || !rb.contains(&format!("ring-back: dying after {DIE_AFTER} requests")) {
        return Err(format!("xf-ring-back exit {status}: {rb}"));
    }
    let (done, why) = failed_line(o)?;
    if done != DIE_AFTER || why != format!("peer gone after {DIE_AFTER} requests") {
        return Err(format!(
            "guest: FAILED after {done} requests: {why}; want peer gone after {DIE_AFTER}"
        ));
    }
    check_revoke(o)?;
    check_grants_baseline(o)?;
    Ok(())
}

fn check_bad_index(o: &Outcome) -> Result<(), String> {
    let rb = out(o, "ring-back.out")?;
    let bad = rb
        .lines()
        .find_map(|l| l.strip_prefix("ring-back: published bad rsp_prod "))
        .ok_or_else(|| format!("ring-back did not publish a bad index: {rb}"))?;
    let v = bad.split_whitespace().next().unwrap_or("?");
    let (done, why) = failed_line(o)?;
    if done > BAD_AT || !why.starts_with("protocol error") || !why.contains(v) {
        return Err(format!(
            "guest: FAILED after {done} requests: {why}; want a protocol error naming {v}, ≤{BAD_AT} done"
        ));
    }
    check_revoke(o)?;
    check_grants_baseline(o)?;
    Ok(())
}

fn check_bad_id(o: &Outcome) -> Result<(), String> {
    let rb = out(o, "ring-back.out")?;
    let sent = rb
        .lines()
        .find_map(|l| l.strip_prefix("ring-back: sent bad id "))
        .ok_or_else(|| format!("ring-back did not send a bad id: {rb}"))?;
    let bad = sent.split_whitespace().next().unwrap_or("?");
    let (done, why) = failed_line(o)?;
    if done > BAD_AT || why != format!("bad response: unknown id {bad}") {
        return Err(format!(
            "guest: FAILED after {done} requests: {why}; want unknown id {bad}, ≤{BAD_AT} done"
        ));
    }
    check_revoke(o)?;
    check_grants_baseline(o)?;
    Ok(())
}

fn demo(name: &str, test: &str, script: impl Into<String>) -> Scenario {
    Mode::Pv
        .scenario(name)
        .extra(format!("test={test}"))
        .file(peer("xf-ring-back"), "xf-ring-back")
        .file(peer("xf-ring-front"), "xf-ring-front")
        .dom0_script(script)
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
        .script_status(0)
        .timeout_secs(180)
}

/// `test=demo-cycles`: one `xf-ring-back --cycles` serves every
/// connection, each once the guest publishes the cycle's number with its
/// ring.
fn cycles_script(n: u32) -> String {
    format!(
        r#"
set -u
D=/local/domain/$DOMID
xenstore-write "$D/data/demo-cycles" {n}
"$FILES/xf-ring-back" "$DOMID" "$D/data/demo" --count 16 --cycles {n} --wait-ms 90000 >"$OUT/ring-back.out" 2>&1
echo $? >"$OUT/ring-back.status"
"#
    )
}

/// Demo-ring cycles in CI (`XF_CYCLES` overrides; `./xf bench` runs 1,000).
const CI_CYCLES: u32 = 30;

fn check_cycles(o: &Outcome) -> Result<(), String> {
    let n = crate::common::cycles(CI_CYCLES);
    let l = line(o, &format!("demo-cycles: {n} cycles in "))?;
    let res = crate::common::check_resources(o, "demo-cycles")?;
    check_grants_baseline(o)?;
    if out(o, "ring-back.status")? != "0" {
        return Err(format!("xf-ring-back: {}", out(o, "ring-back.out")?));
    }
    println!("    figure: demo ring, {n} connect/disconnect cycles (16 requests each, xf-ring-back --cycles): {l}");
    println!("    figure: {res}");
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    let n = crate::common::cycles(CI_CYCLES);
    vec![
        demo("demo-cycles", "demo-cycles", cycles_script(n))
            // Up to ~3 s per cycle on a loaded lab, plus boot.
            .timeout_secs(u64::from(n) * 3 + 120)
            .check(check_cycles),
        demo("demo-front", "demo-front", FRONT_SCRIPT).check(check_front),
        demo("demo-back", "demo-back", BACK_SCRIPT).check(check_back),
        demo(
            "demo-front-die",
            "demo-front-fault",
            fault_script(&format!("--die-after {DIE_AFTER}")),
        )
        .check(check_die),
        demo(
            "demo-front-bad-index",
            "demo-front-fault",
            fault_script(&format!("--bad-index --bad-at {BAD_AT}")),
        )
        .check(check_bad_index),
        demo(
            "demo-front-bad-id",
            "demo-front-fault",
            fault_script(&format!("--bad-id --bad-at {BAD_AT}")),
        )
        .check(check_bad_id),
        // Dom0 publishes a value that is not a number: the guest names it
        // at once and fails, instead of waiting out its 90 s limit.
        Mode::Pv
            .scenario("demo-back-bad-key")
            .extra("test=demo-back")
            .dom0_script(
                "xenstore-write \"/local/domain/$DOMID/data/demo-back/event-channel\" 0x10",
            )
            .marker("error: data/demo-back/event-channel: bad value \"0x10\" (expected a decimal number)")
            .marker("Test result: FAILURE")
            .shutdown(Some(Shutdown::Poweroff))
            .timeout_secs(30),
    ]
}
