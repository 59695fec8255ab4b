//! A hostile Dom0 (guest side: tests/kernel/src/hostile.rs), PV and PVH:
//!
//! - `pv-hostile-storm`: `xf-evtchn-storm` notifies the guest's port as fast
//!   as it can for 8 s. The guest must keep working (Dom0 samples the
//!   progress key it writes, twice, during the storm), name the storm, close
//!   the port, and see no event after closing it.
//! - `pv-hostile-map`: Dom0 maps 16 granted pages and does not let go. The
//!   guest's revokes are deferred, the table (`max_grant_frames = 1`) runs
//!   out with an error that counts the 16, and Xen's own grant-table dump
//!   (`xl debug-keys g`, `xl dmesg`) shows exactly 16 active entries; once
//!   Dom0 lets go every page comes back and Xen shows none.
//! - `pv-hostile-xs`: Dom0 writes garbage into the keys a vchan client reads
//!   (`ring-ref`, `event-channel`; a real port with a read-only page, then
//!   with a writable page that is not a control page).
//!   Each round ends at once with an error naming the key and the value;
//!   then a real server is served and the grants are back at baseline.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, lines, out, peer, Mode};

const PRELUDE: &str = r#"
set -u
D=/local/domain/$DOMID
"#;

const STORM_SECS: u64 = 8;

fn storm_script() -> String {
    format!(
        r#"{PRELUDE}
wait_xenstore "$D/data/storm-port" 60
P=$(xenstore-read "$D/data/storm-port")
"$FILES/xf-evtchn-storm" "$DOMID" "$P" {STORM_SECS} >"$OUT/storm.out" 2>&1 &
SP=$!
sleep 2
A=$(xenstore-read "$D/data/storm-progress")
sleep 4
B=$(xenstore-read "$D/data/storm-progress")
echo "$A $B" >"$OUT/progress"
wait $SP
echo $? >"$OUT/storm.status"
N=$(sed -n 's/.*sent \([0-9]*\) events.*/\1/p' "$OUT/storm.out")
xenstore-write "$D/data/storm-done" "${{N:-0}}"
"#
    )
}

/// Numbers in `s`, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn check_storm(o: &Outcome) -> Result<(), String> {
    if out(o, "storm.status")? != "0" {
        return Err(format!("xf-evtchn-storm: {}", out(o, "storm.out")?));
    }
    let peer = out(o, "storm.out")?;
    let sent = peer
        .lines()
        .find_map(|l| l.strip_prefix("evtchn-storm: sent "))
        .map(numbers)
        .and_then(|n| n.first().copied())
        .ok_or_else(|| format!("storm peer output: {peer}"))?;
    let p: Vec<u64> = numbers(out(o, "progress")?);
    let [a, b] = p[..] else {
        return Err(format!("progress samples {p:?}"));
    };
    // Two samples 4 s apart inside the storm: the guest went on working.
    if b <= a {
        return Err(format!(
            "guest made no progress during the storm ({a} -> {b})"
        ));
    }
    let closing = lines(o)
        .find(|l| l.starts_with("storm: port ") && l.ends_with("closing the port"))
        .ok_or("the guest never named the storm")?;
    let end = line(o, "storm: ")
        .ok()
        .and(lines(o).find(|l| l.contains(" work rounds ")))
        .ok_or("no storm summary")?;
    let n = numbers(end);
    // "storm: E events (X after closing), R work rounds (..., 5 ms ...); dom0 sent S"
    let (events, after, rounds, dom0) = (n[0], n[1], n[2], n[n.len() - 1]);
    if dom0 != sent {
        return Err(format!("guest read dom0 sent {dom0}, peer printed {sent}"));
    }
    // One event can be in flight while the port closes.
    if after > 1 || events == 0 || rounds == 0 {
        return Err(format!("storm summary {end:?}"));
    }
    println!(
        "    figure: event storm: dom0 sent {sent} events in {STORM_SECS} s; the guest saw {events} \
         upcalls before closing the port ({closing:?}) and did {} work rounds in 4 s of it",
        b - a
    );
    Ok(())
}

const MAP_SCRIPT: &str = r#"
set -u
D=/local/domain/$DOMID
wait_xenstore "$D/data/hostile-map/refs" 60
REFS=$(xenstore-read "$D/data/hostile-map/refs")
PIDS=""
n=0
for r in $REFS; do
  "$FILES/xf-gnt-map" "$DOMID" "$r" --hold-ms 600000 >"/tmp/map$r.out" 2>&1 &
  PIDS="$PIDS $!"
  n=$((n+1))
done
for r in $REFS; do wait_file "/tmp/map$r.out" 'holding mapping' 60 || exit 4; done
xenstore-write "$D/data/hostile-map/mapped" $n
# Xen's grant-table dump of the guest: active entries past the 8 reserved ones.
count_active() {
  xl dmesg -c >/dev/null 2>&1
  xl debug-keys g
  sleep 1
  xl dmesg >"$OUT/$1"
  c=0
  for h in $(sed -n "/grant-table for remote d$DOMID /,/grant-table for remote d\|gnttab_usage_print_all \] done/p" "$OUT/$1" \
             | grep -oE '\[0x[0-9a-f]+\]' | tr -d '[]'); do
    [ $((h)) -ge 8 ] && c=$((c+1))
  done
  echo $c
}
wait_xenstore "$D/data/hostile-map/deferred" 120
xenstore-write "$D/data/hostile-map/xen-active" "$(count_active gnttab-held.txt)"
wait_xenstore "$D/data/hostile-map/release" 120
kill $PIDS
wait
wait_xenstore "$D/data/hostile-map/reclaimed" 120
xenstore-write "$D/data/hostile-map/xen-active-after" "$(count_active gnttab-released.txt)"
"#;

fn check_map(o: &Outcome) -> Result<(), String> {
    let domid = o.domid.ok_or("no domid")?;
    let held = out(o, "gnttab-held.txt")?;
    let released = out(o, "gnttab-released.txt")?;
    let (h, r) = (
        lab::xen_dump::grant_table_active(held, domid)
            .ok_or("no grant-table dump of the guest while held")?,
        lab::xen_dump::grant_table_active(released, domid)
            .ok_or("no grant-table dump of the guest after release")?,
    );
    if (h, r) != (16, 0) {
        return Err(format!(
            "Xen's dumps: {h} active entries while held, {r} after"
        ));
    }
    let ex = line(o, "hostile-map: exhausted after ")?;
    if !ex.contains("Exhausted { in_use: ") || !ex.contains("deferred: 16, frames: 1 }") {
        return Err(format!("exhaustion line {ex:?}"));
    }
    line(
        o,
        "hostile-map: Xen reports 16 active grant entries, the guest 16 deferred",
    )?;
    line(o, "hostile-map: counters back to baseline")?;
    line(
        o,
        "hostile-map: Xen reports 0 active grant entries after reclaim",
    )?;
    Ok(())
}

/// Garbage rounds: the keys Dom0 writes (shell words) and what the guest's
/// error must name.
const XS_ROUNDS: &[(&str, &str, &str)] = &[
    ("0x10", "5", r#"bad XenStore value ring-ref = "0x10""#),
    ("-1", "5", r#"bad XenStore value ring-ref = "-1""#),
    (
        "99999999999",
        "5",
        r#"bad XenStore value ring-ref = "99999999999""#,
    ),
    ("", "5", r#"bad XenStore value ring-ref = """#),
    ("8", "abc", r#"bad XenStore value event-channel = "abc""#),
    ("8", "0", r#"bad XenStore value event-channel = "0""#),
    ("8", "4000", "bind_interdomain"),
];

fn xs_script() -> String {
    let mut s = format!(
        "{PRELUDE}\nxenstore-write \"$D/data/hostile-xs/rounds\" {}\n",
        XS_ROUNDS.len() + 3
    );
    let round = |i: usize, body: &str| {
        format!(
            "xenstore-rm \"$D/data/vchan-srv\" 2>/dev/null\n{body}\n\
             xenstore-write \"$D/data/hostile-xs/round-{i}\" 1\n\
             wait_xenstore \"$D/data/hostile-xs/done-{i}\" 60\n"
        )
    };
    for (i, (rr, ec, _)) in XS_ROUNDS.iter().enumerate() {
        s += &round(
            i + 1,
            &format!(
                "xenstore-write -- \"$D/data/vchan-srv/ring-ref\" '{rr}' \"$D/data/vchan-srv/event-channel\" '{ec}'"
            ),
        );
    }
    // A 3000-byte ring-ref.
    let n = XS_ROUNDS.len() + 1;
    s += &round(
        n,
        "xenstore-write \"$D/data/vchan-srv/ring-ref\" \"$(head -c 3000 /dev/zero | tr '\\0' 7)\" \"$D/data/vchan-srv/event-channel\" 5",
    );
    // A real port and a real page that is not a vchan control page: first
    // granted read-only (the control page must be mapped writable), then
    // writable (its bytes are no ring orders).
    for (k, rw) in [(n + 1, ""), (n + 2, " --rw")] {
        s += &round(
            k,
            &format!(
                "\"$FILES/xf-gnt-share\" \"$DOMID\" --pattern 5a{rw} --write-key \"$D/data/vchan-srv/ring-ref\" --hold-ms 60000 >\"$OUT/share{k}.out\" 2>&1 &\n\
                 GS=$!\n\
                 \"$FILES/xf-evtchn-echo\" \"$DOMID\" --offer 1 --port-key \"$D/data/vchan-srv/event-channel\" --timeout-ms 60000 >\"$OUT/offer{k}.out\" 2>&1 &\n\
                 EO=$!\n\
                 wait_xenstore \"$D/data/vchan-srv/ring-ref\" 30\n\
                 wait_xenstore \"$D/data/vchan-srv/event-channel\" 30"
            ),
        );
        s += "kill $GS $EO 2>/dev/null; wait $GS $EO 2>/dev/null\n";
    }
    s += r#"xenstore-rm "$D/data/vchan-srv" 2>/dev/null
head -c 65536 /dev/urandom >/tmp/x.in
rm -f /tmp/x.sock
"$FILES/xf-vchan-pump" --listen /tmp/x.sock --in /tmp/x.in --pings 5 --hold --timeout-ms 60000 >"$OUT/pump.out" 2>&1 &
PP=$!
wait_file "$OUT/pump.out" listening 60
vchan-socket-proxy -m server "$DOMID" "$D/data/vchan-srv" /tmp/x.sock >/tmp/xproxy.out 2>&1 &
XP=$!
xenstore-write "$D/data/hostile-xs/real" 1
i=0
while kill -0 $PP 2>/dev/null && ! grep -q holding "$OUT/pump.out"; do
  i=$((i+1)); [ $i -gt 3000 ] && break; usleep 20000
done
kill -9 $XP 2>/dev/null; wait $XP 2>/dev/null
wait $PP
echo $? >"$OUT/pump.status"
"#;
    s
}

fn check_xs(o: &Outcome) -> Result<(), String> {
    let total = XS_ROUNDS.len() + 3;
    line(o, &format!("hostile-xs: {total} rounds of garbage"))?;
    let want = XS_ROUNDS.iter().map(|r| r.2.to_string()).chain([
        format!(r#"bad XenStore value ring-ref = "{}""#, "7".repeat(3000)),
        "map_grant_ref: GNTST GeneralError".to_string(),
        "protocol error: bad ring orders".to_string(),
    ]);
    for (i, w) in want.enumerate() {
        let l = line(o, &format!("hostile-xs: round {}: ", i + 1))?;
        if !l.contains(&w) {
            return Err(format!("round {}: {l:?} does not name {w:?}", i + 1));
        }
    }
    if out(o, "pump.status")? != "0" {
        return Err(format!("xf-vchan-pump: {}", out(o, "pump.out")?));
    }
    line(o, "hostile-xs: connected to the real server: echoed ")?;
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    let base = |name: &str, test: &str| {
        Mode::Pv
            .scenario(name)
            .extra(format!("test={test}"))
            .timeout_secs(300)
            .marker("Test result: SUCCESS")
            .shutdown(Some(Shutdown::Poweroff))
            .script_status(0)
    };
    vec![
        base("hostile-storm", "hostile-storm")
            .file(peer("xf-evtchn-storm"), "xf-evtchn-storm")
            .dom0_script(storm_script())
            .check(check_storm),
        base("hostile-map", "hostile-map")
            .config_line("max_grant_frames = 1")
            .file(peer("xf-gnt-map"), "xf-gnt-map")
            .dom0_script(MAP_SCRIPT)
            .check(check_map),
        base("hostile-xs", "hostile-xs")
            .file(peer("xf-gnt-share"), "xf-gnt-share")
            .file(peer("xf-evtchn-echo"), "xf-evtchn-echo")
            .file(peer("xf-vchan-pump"), "xf-vchan-pump")
            .dom0_script(xs_script())
            .check(check_xs),
    ]
}
