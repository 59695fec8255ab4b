//! Memory, grant tables and XenStore against a stock Dom0.
//! Guest side: src/services.rs (`test=xenstore`, `grant`, `idle`); Dom0
//! peers: docs/peers.md. Every assertion compares values that only exist at
//! run time (random keys, grant refs, pattern seeds, shutdown reasons).

use std::path::PathBuf;

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, lines, out, peer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pv(name: &str) -> Scenario {
    Scenario::new(
        name,
        root().join("target/x86_64-unknown-none/release/xenfront-test"),
        root().join("xl-config/pv.cfg"),
    )
    .timeout_secs(150)
}

/// The number after `word` in `s`.
fn num_after(s: &str, word: &str) -> Option<u64> {
    let mut it = s.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',');
    it.by_ref().find(|w| *w == word)?;
    it.find(|w| !w.is_empty())?.parse().ok()
}

/// Shared by every script: `$D`, the guest's XenStore directory. The waits
/// (`wait_console` ~90 s, ...) and `rand_hex` come from lab/dom0/lib.sh.
const PRELUDE: &str = r#"
set -u
D=/local/domain/$DOMID
"#;

const XENSTORE_SCRIPT: &str = r#"
V="dom0-$(rand_hex 8)"
printf %s "$V" >"$OUT/from-dom0"
xenstore-write "$D/data/from-dom0" "$V"
wait_xenstore "$D/data/from-guest" >"$OUT/from-guest"
wait_console 'xenstore: watching data/poke'
P="poke-$(rand_hex 4)"
printf %s "$P" >"$OUT/poke"
xenstore-write "$D/data/poke" "$P"
wait_console 'Test result:'
xenstore-read "$D/data/tx-counter" >"$OUT/tx-counter"
"#;

fn check_xenstore(o: &Outcome) -> Result<(), String> {
    let from_dom0 = out(o, "from-dom0")?;
    let got = line(o, "xenstore: read data/from-dom0 = ")?;
    if got != format!("{from_dom0:?}") {
        return Err(format!("guest read {got}, Dom0 wrote {from_dom0:?}"));
    }
    let wrote = line(o, "xenstore: wrote data/from-guest = ")?;
    let read_back = out(o, "from-guest")?;
    if wrote != format!("{read_back:?}") || !read_back.starts_with("guest") {
        return Err(format!("guest wrote {wrote}, Dom0 read {read_back:?}"));
    }
    let poke = out(o, "poke")?;
    let fired = line(o, "xenstore: watch fired ")?;
    if !fired.ends_with(&format!("value {poke:?}")) {
        return Err(format!("watch line {fired:?}, Dom0 wrote {poke:?}"));
    }
    let tx = line(o, "xenstore: transaction committed after ")?;
    let attempts: u64 = tx
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("transaction line {tx:?}"))?;
    let retried = tx
        .split(" (")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or_else(|| format!("transaction line {tx:?}"))?;
    if attempts < 2 || retried < 1 || !tx.ends_with("data/tx-counter = 101") {
        return Err(format!("transaction line {tx:?}"));
    }
    if out(o, "tx-counter")? != "101" {
        return Err(format!("Dom0 reads tx-counter {:?}", out(o, "tx-counter")?));
    }
    if line(o, "xenstore: read data/no-such-key: ")? != "ENOENT" {
        return Err("missing key did not give ENOENT".into());
    }
    let rt = lines(o)
        .find(|l| l.starts_with("xenstore: ") && l.contains(" read round trips in "))
        .ok_or("no round-trip line")?;
    let rate = num_after(rt, "ms").ok_or_else(|| format!("round-trip line {rt:?}"))?;
    if rate == 0 {
        return Err(format!("round-trip line {rt:?}"));
    }
    Ok(())
}

const GRANT_SCRIPT: &str = r#"
wait_console '^grant: ref [0-9]+ pattern-seed [0-9a-f]{2}'
L=$(grep -m1 -E '^grant: ref [0-9]+ pattern-seed' "$CONSOLE_LOG" | tr -d '\r')
set -- $L
R=$3; S=$5
echo "$R $S" >"$OUT/grant"
"$FILES/xf-gnt-map" "$DOMID" "$R" --expect-pattern "$S" --hold-ms 8000 >"$OUT/gnt-map.out" 2>&1 &
MP=$!
wait_file "$OUT/gnt-map.out" 'holding mapping' 30
xenstore-write "$D/data/grant-mapped" 1
wait $MP
echo $? >"$OUT/gnt-map.status"
SH=$(rand_hex 1)
xenstore-write "$D/data/share-pattern" "$SH"
"$FILES/xf-gnt-share" "$DOMID" --pattern "$SH" --write-key "$D/data/share-ref" --hold-ms 15000 >"$OUT/gnt-share.out" 2>&1 &
SP=$!
echo "$SH" >"$OUT/share-pattern"
wait_console 'Test result:'
wait $SP
echo $? >"$OUT/gnt-share.status"
"#;

fn check_grant(o: &Outcome) -> Result<(), String> {
    let g = out(o, "grant")?;
    let (r, s) = g.split_once(' ').ok_or("bad $OUT/grant")?;
    let map = out(o, "gnt-map.out")?;
    if out(o, "gnt-map.status")? != "0" {
        return Err(format!("xf-gnt-map failed: {map}"));
    }
    for want in [
        format!("gnt-map: mapped ref {r} from dom "),
        format!("gnt-map: pattern 0x{s} match"),
        "unchanged".to_string(),
        "gnt-map: result ok".to_string(),
    ] {
        if !map.contains(&want) {
            return Err(format!("xf-gnt-map output lacks {want:?}: {map}"));
        }
    }
    line(o, &format!("grant: dom0 reports ref {r} mapped"))?;
    let deferred = line(o, "grant: revoke while mapped: deferred (")?;
    if num_after(deferred, "deferred") != Some(1) {
        return Err(format!("deferred line {deferred:?}"));
    }
    let reclaimed = line(o, "grant: reclaimed 1 page(s) ")?;
    let counters = reclaimed.rsplit_once('(').map_or("", |(_, c)| c);
    if num_after(counters, "deferred") != Some(0) || num_after(counters, "in_use") != Some(0) {
        return Err(format!("reclaimed line {reclaimed:?}"));
    }
    if lines(o)
        .filter(|l| *l == "grant: counters back to baseline")
        .count()
        != 2
    {
        return Err("counters did not come back to baseline twice".into());
    }
    let ex = line(o, "grant: exhausted after ")?;
    let n: u64 = ex
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("exhausted line")?;
    let frames = ex
        .split_whitespace()
        .skip_while(|w| *w != "frames")
        .nth(1)
        .unwrap_or("");
    let (cur, max) = frames
        .trim_end_matches(')')
        .split_once('/')
        .ok_or("frames")?;
    let max: u64 = max.parse().map_err(|_| "max frames")?;
    if !ex.contains("grants: Table(Exhausted { in_use: ")
        || cur != max.to_string()
        || n != max * 512 - 8
    {
        return Err(format!("exhaustion line {ex:?}"));
    }
    line(
        o,
        &format!("grant: ended all {n} grants (in_use 0 deferred 0 "),
    )?;
    let perf = line(o, "grant: ")
        .ok()
        .and_then(|_| lines(o).find(|l| l.contains("grant+revoke pairs")))
        .ok_or("no ops/s line")?;
    if num_after(perf, "ms").is_none() {
        return Err(format!("ops line {perf:?}"));
    }
    if !line(o, "grant: map of a bad ref: GNTST ")?.starts_with("BadGntref") {
        return Err("bad ref did not give GNTST BadGntref".into());
    }
    let share = out(o, "gnt-share.out")?;
    let sref = share
        .lines()
        .find_map(|l| l.strip_prefix("gnt-share: ref "))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| format!("xf-gnt-share output: {share}"))?;
    let sh = out(o, "share-pattern")?;
    line(o, &format!("grant: mapped dom0 ref {sref} at ")).and_then(|l| {
        if l.ends_with(&format!("pattern {sh} ok, unmapped")) {
            Ok(())
        } else {
            Err(format!("share line {l:?}, pattern {sh}"))
        }
    })?;
    Ok(())
}

fn check_mm(o: &Outcome) -> Result<(), String> {
    let boot = line(o, "mm: 8192 pages, ")?;
    let boot_free: u64 = boot
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("boot mm line")?;
    let grew = line(o, "mm: heap grew to ")?;
    if num_after(grew, "in").is_none_or(|r| r < 2) {
        return Err(format!("heap line {grew:?}"));
    }
    let alloc = line(o, "mm: allocated ")?;
    let n: u64 = alloc
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("alloc line")?;
    if !alloc.ends_with("pages, then OutOfMemory") || n == 0 || n > boot_free {
        return Err(format!("alloc line {alloc:?} (boot free {boot_free})"));
    }
    let freed = line(o, "mm: freed all, ")?;
    if !freed.starts_with(&format!("{n} free (baseline {n})")) {
        return Err(format!("freed line {freed:?}, allocated {n}"));
    }
    Ok(())
}

fn idle(name: &str, action: &str, reason: Shutdown, marker: &str) -> Scenario {
    pv(name)
        .extra("test=idle")
        .dom0_script(format!("{PRELUDE}\nwait_console '^ready'\n{action}\n"))
        .marker("ready")
        .marker(marker)
        .shutdown(Some(reason))
        .timeout_secs(120)
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        pv("services-xenstore")
            .extra("test=xenstore")
            .dom0_script(format!("{PRELUDE}{XENSTORE_SCRIPT}"))
            .marker("xenstore: read data/no-such-key: ENOENT")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .script_status(0)
            .check(check_xenstore),
        pv("services-mm")
            .extra("test=mm")
            .marker("mm: 8 window slots from ")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .check(check_mm),
        pv("services-grant")
            .extra("test=grant")
            .file(peer("xf-gnt-map"), "xf-gnt-map")
            .file(peer("xf-gnt-share"), "xf-gnt-share")
            .dom0_script(format!("{PRELUDE}{GRANT_SCRIPT}"))
            .marker("grant: revoke while mapped: deferred")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .script_status(0)
            .check(check_grant),
        // The limit from the config, not the code: one grant frame (504
        // usable entries) is exhausted, reported with its counts, and
        // everything else still works.
        pv("limits-grant-frames-1")
            .extra("test=grant")
            .config_line("max_grant_frames = 1")
            .file(peer("xf-gnt-map"), "xf-gnt-map")
            .file(peer("xf-gnt-share"), "xf-gnt-share")
            .dom0_script(format!("{PRELUDE}{GRANT_SCRIPT}"))
            .marker("grant: exhausted after 504 grants")
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .script_status(0)
            .check(check_grant),
        idle(
            "services-xl-shutdown",
            "xl shutdown \"$DOMID\"",
            Shutdown::Poweroff,
            "shutdown: poweroff requested",
        ),
        idle(
            "services-xl-reboot",
            "xl reboot \"$DOMID\"",
            Shutdown::Reboot,
            "shutdown: reboot requested",
        ),
        idle(
            "services-bad-shutdown-value",
            "xenstore-write \"$D/control/shutdown\" bogus",
            Shutdown::Crash,
            "error: control/shutdown: unsupported value \"bogus\"",
        ),
    ]
}
