//! Self-test of the nested lab: the Linux baselines (PV twice, PVH), the Dom0-script
//! plumbing (env vars, $FILES in, $OUT back, exit status), guests that fail in known ways
//! (crash, silence) with their failure reasons asserted, and bad inputs rejected on the
//! host before boot.

use std::path::PathBuf;

use lab::baseline;
use lab::{Outcome, Scenario};

fn scratch() -> PathBuf {
    let t = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let d = t.join("lab/selftest");
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PAYLOAD: &str = "shipped into Dom0 by the lab self-test\n";

/// Dom0 script: checks its environment, copies a shipped file back, waits for the guest's
/// marker in CONSOLE_LOG (lab/dom0/lib.sh's `wait_console`) and exits 7 (asserted).
const SCRIPT: &str = r#"
set -u
echo "script: DOMID=$DOMID NAME=$NAME"
[ -d "$OUT" ] && [ -d "$FILES" ] || exit 2
cp "$FILES/payload.txt" "$OUT/payload-copy"
# Bigger than the 256 KiB cap: comes back truncated, with the sha256 of what should arrive.
seq 1 40000 | sed 's/$/ lab self-test line/' | head -c 300000 >"$OUT/big"
head -c 262144 "$OUT/big" | sha256sum | cut -d' ' -f1 >"$OUT/big.sha256"
echo "$DOMID" >"$OUT/domid"
xl list "$NAME" >"$OUT/xl-list" 2>&1
wait_console 'XF-LINUX-BASELINE up' 60
echo "saw the marker"
exit 7
"#;

fn check_script(o: &Outcome) -> Result<(), String> {
    let copy = o
        .out_files
        .get("payload-copy")
        .ok_or("no $OUT/payload-copy")?;
    if copy != PAYLOAD {
        return Err(format!("payload came back as {copy:?}"));
    }
    let domid: u32 = o
        .out_files
        .get("domid")
        .ok_or("no $OUT/domid")?
        .trim()
        .parse()
        .map_err(|e| format!("domid: {e}"))?;
    if Some(domid) != o.domid {
        return Err(format!(
            "script saw DOMID {domid}, lab reports {:?}",
            o.domid
        ));
    }
    let list = o.out_files.get("xl-list").ok_or("no $OUT/xl-list")?;
    if !list.contains(&o.domain) {
        return Err(format!(
            "xl list in Dom0 does not show {}: {list:?}",
            o.domain
        ));
    }
    let big = o.out_bytes.get("big").ok_or("no $OUT/big")?;
    if big.len() != 256 * 1024 || !o.truncated.iter().any(|t| t == "out:big") {
        return Err(format!(
            "$OUT/big: {} bytes, truncated list {:?}",
            big.len(),
            o.truncated
        ));
    }
    let sum = lab::util::sha256_bytes(big).map_err(|e| e.to_string())?;
    if o.out_files.get("big.sha256").map(|s| s.trim()) != Some(sum.as_str()) {
        return Err("$OUT/big came back with the wrong content".into());
    }
    if !o.script_output.contains("saw the marker") {
        return Err(format!("script output: {:?}", o.script_output));
    }
    Ok(())
}

fn check_timings(o: &Outcome) -> Result<(), String> {
    let (c, u, g) = (o.t_create_first_line, o.t_unpause_first_line, o.t_gone);
    match (c, u, g) {
        (Some(c), Some(u), Some(g)) if u <= c && u <= g => Ok(()),
        _ => Err(format!(
            "implausible timings create→1st {c:?} unpause→1st {u:?} →gone {g:?}"
        )),
    }
}

pub fn scenarios() -> Vec<Scenario> {
    let d = scratch();
    let not_elf = d.join("not-an-elf");
    std::fs::write(&not_elf, "#!/bin/sh\necho this is not a kernel\n").unwrap();
    let payload = d.join("payload.txt");
    std::fs::write(&payload, PAYLOAD).unwrap();
    let bad_cfg = d.join("unknown-key.cfg");
    std::fs::write(&bad_cfg, "type = \"pv\"\nmemory = 128\nfrobnicate = 1\n").unwrap();
    let (art, _) = baseline::artifacts();
    let pv_cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("xl-config/linux-pv.cfg");

    let mut pv_crash = baseline::linux_pv()
        .extra("console=hvc0 xf_action=crash")
        .timeout_secs(120);
    pv_crash.name = "linux-pv-crash".into();
    let mut pv_silent = baseline::linux_pv()
        .extra("console=tty0 loglevel=0 xf_action=hang")
        .timeout_secs(45);
    pv_silent.name = "linux-pv-silent".into();
    let mut pv_again = baseline::linux_pv();
    pv_again.name = "linux-pv-script".into();

    vec![
        baseline::linux_pv().check(check_timings),
        pv_again
            .file(&payload, "payload.txt")
            .dom0_script(SCRIPT)
            .script_status(7)
            .check(check_script),
        baseline::linux_pvh().check(|o| {
            if o.console.contains("guest_type PVH") {
                Ok(())
            } else {
                Err("the guest does not report guest_type PVH".into())
            }
        }),
        // Expected poweroff, but the guest panics: SCHEDOP_shutdown(crash).
        pv_crash
            .marker("a marker this guest never prints")
            .expect_failure("shutdown: expected poweroff, got crash"),
        // Prints nothing on hvc0 and never shuts down.
        pv_silent.expect_failure("the guest never printed"),
        // Bad inputs, rejected on the host before the lab boots.
        Scenario::new("bad-not-elf", &not_elf, &pv_cfg).expect_failure("is not an ELF file"),
        Scenario::new("bad-missing-kernel", d.join("no-such-kernel"), &pv_cfg)
            .expect_failure("does not exist"),
        Scenario::new("bad-unknown-cfg-key", &art.vmlinuz, &bad_cfg)
            .expect_failure("unknown xl config key(s): frobnicate"),
    ]
}
