//! The Dom0 peers (`peers/`, docs/peers.md) against themselves inside the lab's Dom0:
//! grants (gntalloc -> gntdev), event channels (offer/echo) and the demo ring (front vs
//! back, plus the bad-id, bad-index and dead-backend faults), all with Dom0 as both
//! ends (domid 0). A Linux baseline guest only provides the scenario's lifetime.
//! Needs `cargo build --release -p xen-peers` first (`./xf test` does it).

use std::path::PathBuf;

use lab::{baseline, Outcome, Scenario};

const BINS: &[&str] = &[
    "xf-gnt-map",
    "xf-gnt-share",
    "xf-evtchn-echo",
    "xf-ring-back",
    "xf-ring-front",
];

/// Each step's exit status is echoed as `rc <name> <status>`; the host asserts them.
const SCRIPT: &str = r#"
F=$FILES; D=/local/domain/0/xf-peers
chmod +x $F/xf-*
$F/xf-gnt-share 0 --pattern 5a --rw --hold-ms 5000 --expect-after c3 >share.out 2>&1 &
sp=$!
wait_file share.out '^gnt-share: ref ' 4
R=$(sed -n 's/^gnt-share: ref \([0-9]*\) .*/\1/p' share.out)
$F/xf-gnt-map 0 $R --expect-pattern 5a --hold-ms 200; echo "rc map-ro $?"
$F/xf-gnt-map 0 $R --expect-pattern 5a --write-pattern c3 --hold-ms 200; echo "rc map-rw $?"
$F/xf-gnt-map 0 $R --expect-pattern 00; echo "rc map-mismatch $?"
$F/xf-gnt-map 0 99999; echo "rc map-badref $?"
wait $sp; echo "rc share $?"; cat share.out

$F/xf-evtchn-echo 0 --offer 500 >ping.out 2>&1 &
pp=$!
wait_file ping.out '^evtchn-echo: offered' 4
P=$(sed -n 's/^evtchn-echo: offered local port \([0-9]*\) .*/\1/p' ping.out)
$F/xf-evtchn-echo 0 $P 500; echo "rc echo $?"
wait $pp; echo "rc offer $?"; cat ping.out

ring() { # <name> <count> <front opts> -- <back opts>
    n=$1; c=$2; shift 2; fo=; while [ "$1" != -- ]; do fo="$fo $1"; shift; done; shift
    $F/xf-ring-front 0 $D/$n $c $fo >front-$n.out 2>&1 &
    fp=$!
    $F/xf-ring-back 0 $D/$n "$@"; echo "rc back-$n $?"
    wait $fp; echo "rc front-$n $?"; cat front-$n.out
}
ring ok 3000 -- --count 3000
ring badid 600 -- --bad-id --bad-at 300 --idle-ms 1500
ring badindex 600 -- --bad-index --bad-at 200 --hold-ms 1000
ring die 600 --timeout-ms 2000 -- --die-after 250
xenstore-rm $D
"#;

fn release_bin(name: &str) -> PathBuf {
    let t = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    t.join("release").join(name)
}

fn check(o: &Outcome) -> Result<(), String> {
    let out = &o.script_output;
    let want_rc = [
        ("map-ro", 0),
        ("map-rw", 0),
        ("map-mismatch", 1),
        ("map-badref", 2),
        ("share", 0),
        ("echo", 0),
        ("offer", 0),
        ("back-ok", 0),
        ("front-ok", 0),
        ("back-badid", 0),
        ("front-badid", 1),
        ("back-badindex", 0),
        ("front-badindex", 1),
        ("back-die", 3),
        ("front-die", 1),
    ];
    for (step, rc) in want_rc {
        let line = format!("rc {step} {rc}");
        if !out.lines().any(|l| l == line) {
            return Err(format!("expected `{line}`"));
        }
    }
    let want_lines = [
        "gnt-map: pattern 0x5a match",
        "gnt-map: result ok",
        "gnt-map: pattern 0x00 MISMATCH at offset 0: got 0xc3 want 0x00 (4096 bytes differ)",
        "gnt-share: after hold fnv1a64 9cca6bd52a834325 CHANGED",
        "gnt-share: pattern 0xc3 match",
        "evtchn-echo: 500/500 round trips in ",
        "ring-front: 3000/3000 ok",
        "ring-back: answered 3000 requests",
        "ring-front: 300/600 ok, FAILED: bad response: unknown id 0xffffeed3",
        "ring-back: dying after 250 requests",
        "ring-front: 250/600 ok, FAILED: no response for 2000 ms",
    ];
    for w in want_lines {
        if !out.lines().any(|l| l.starts_with(w)) {
            return Err(format!("no line starting with `{w}`"));
        }
    }
    // How many good responses the front consumed before the bad index depends on timing.
    if !out.lines().any(|l| {
        l.starts_with("ring-front: ")
            && l.contains("/600 ok, FAILED: protocol error: bad rsp_prod ")
    }) {
        return Err("front did not reject the bad rsp_prod".into());
    }
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    let mut s = baseline::linux_pv().dom0_script(SCRIPT).check(check);
    s.name = "peers-dom0-loopback".into();
    for b in BINS {
        s = s.file(release_bin(b), *b);
    }
    vec![s]
}
