//! Host-side test of the Dom0 scenario runner (lab/dom0/runner.sh): runs it under the
//! lab's own busybox with a fake `xl`, so the retry / timeout / refused-create paths and
//! the serial framing are exercised without booting Xen.

use std::path::Path;
use std::process::Command;

const FAKE_XL: &str = r#"#!/bin/sh
# fake xl: behaviour per domain from $STATE/mode-<name>
cmd=$1; shift
case "$cmd" in
create)
  cfg=$2
  name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$cfg")
  mode=$(cat "$STATE/mode-$name")
  n=$(cat "$STATE/creates-$name" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$STATE/creates-$name"
  case "$mode" in
    crash-once) if [ $n -eq 1 ]; then
        echo "malloc(): unsorted double linked list corrupted"
        echo "libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: domain monitoring daemonizing child [1234] died due to fatal signal Aborted"
        exit 134; fi ;;
    refuse) echo "libxl: error: libxl_create.c:1234:do_domain_create: cannot create: bad kernel"; exit 1 ;;
  esac
  echo "$name" >"$STATE/created"
  exit 0 ;;
domid) echo 7 ;;
unpause)
  name=$1; mode=$(cat "$STATE/mode-$name")
  [ "$mode" = silent ] && exit 0
  ( sleep 0.3; printf 'hello from %s\r\nsecond line\r\n' "$name" >>"$LOGDIR/console/guest-$name.log"
    sleep 0.3; echo "Domain 7 has shut down, reason code 3 0x3" >>"$LOGDIR/xl-$name.log" ) &
  exit 0 ;;
*) exit 0 ;;
esac
"#;

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

#[test]
fn runner_with_fake_xl() {
    let art = lab::image::prepare().expect("lab image (for busybox)");
    let t = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-test");
    let _ = std::fs::remove_dir_all(&t);
    let (scen, logdir, tmp, bin, state) = (
        t.join("scen"),
        t.join("log"),
        t.join("tmp"),
        t.join("bin"),
        t.join("state"),
    );
    for d in [&logdir.join("console"), &tmp, &bin, &state] {
        std::fs::create_dir_all(d).unwrap();
    }
    write(&bin.join("xl"), FAKE_XL);
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("xl"))
        .status()
        .unwrap();
    write(&scen.join("manifest"), "0\n1\n2\n");
    for (n, name, mode, timeout) in [
        (0, "xf0-a", "crash-once", 10),
        (1, "xf1-b", "silent", 1),
        (2, "xf2-c", "refuse", 5),
    ] {
        let d = scen.join(n.to_string());
        write(
            &d.join("meta"),
            &format!("NAME='{name}'\nTIMEOUT={timeout}\nSCRIPT_WAIT=5\nCAP=262144\n"),
        );
        write(
            &d.join("cfg"),
            &format!("name = \"{name}\"\nkernel = \"{}/kernel\"\n", d.display()),
        );
        write(&state.join(format!("mode-{name}")), mode);
    }
    write(
        &scen.join("0/script"),
        // lib.sh's helpers are defined, and $XF_LIB names it for child shells.
        "set -u\necho \"script DOMID=$DOMID NAME=$NAME\"; cp \"$FILES/in\" \"$OUT/copy\"\n\
         wait_console '^second line' 5\n\
         echo \"got: $(console_line '^hello from')|\"\n\
         sh -c '. \"$XF_LIB\"; rand_hex 3' >\"$OUT/hex\"\n\
         exit 3\n",
    );
    write(&scen.join("0/files/in"), "payload\n");
    // Runs before xl create, its output shipped as out/precreate.out.
    write(
        &scen.join("0/precreate"),
        "set -u\necho \"pre NAME=$NAME\"; cp \"$FILES/in\" \"$OUT/pre\"\n",
    );

    let out = Command::new(&art.busybox)
        .arg("sh")
        .arg(lab::util::lab_dir().join("dom0/runner.sh"))
        .env("XF_SCEN", &scen)
        .env("XF_LOGDIR", &logdir)
        .env("XF_TMP", &tmp)
        .env("XF_DMESG", "true")
        .env("XF_PATH_PREFIX", &bin)
        .env("STATE", &state)
        .env("LOGDIR", &logdir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let has = |s: &str| text.lines().any(|l| l.starts_with(s));

    // 0: xl create crashed once → retried, then the guest printed and crashed (code 3).
    assert!(
        has("XFLAB:retry 0 xl create crashed (rc=134)"),
        "retry line"
    );
    assert!(
        has("XFLAB:fault 0 xl create (attempt 1): malloc(): unsorted"),
        "fault line"
    );
    assert!(has("XFLAB:shutdown 0 3"));
    assert!(has("XFLAB:script 0 3"));
    assert!(has("XFLAB:con 0 hello from xf0-a"));
    // Every console line relayed live exactly once, even the ones tail -F had not seen.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("XFLAB:con 0 "))
            .count(),
        2
    );
    assert!(has("XFLAB:t 0 unpause_first_ms "));
    assert!(has("XFLAB:file 0 out 8 0 copy"));
    assert!(has("XFLAB:file 0 out 8 0 pre"));
    assert!(has("XFLAB:file 0 out 32 0 precreate.out"));
    assert!(has("XFLAB:file 0 out 6 0 hex"));
    let script_out = file(&text, 0, "scriptout");
    assert!(
        script_out.contains("got: hello from xf0-a|"),
        "{script_out}"
    );
    assert!(has("XFLAB:file 0 console "));
    // 1: never prints, never shuts down.
    assert!(has("XFLAB:shutdown 1 timeout"));
    assert!(!has("XFLAB:t 1 unpause_first_ms"));
    // 2: refused create → failure, no retry, no shutdown line.
    assert!(has("XFLAB:fail 2 xl create failed (rc=1): libxl: error"));
    assert!(!has("XFLAB:retry 2"));
    assert!(!has("XFLAB:shutdown 2"));
    for n in 0..3 {
        assert!(has(&format!("XFLAB:end {n}")), "end {n}");
    }

    // The console file round-trips: base64 → gunzip → sha256 as announced.
    assert_eq!(
        file(&text, 0, "console"),
        "hello from xf0-a\r\nsecond line\r\n"
    );
}

/// The content of the file of `kind` that scenario `n` shipped in `text`, checked
/// against the announced sha256.
fn file(text: &str, n: usize, kind: &str) -> String {
    let mut b64 = String::new();
    let mut sum = None;
    let mut inside = false;
    for l in text.lines() {
        if l.starts_with(&format!("XFLAB:file {n} {kind} ")) {
            inside = true;
        } else if inside && l.starts_with("XFLAB:b64 ") {
            b64.push_str(&l[10..]);
        } else if inside && l.starts_with(&format!("XFLAB:endfile {n} ")) {
            sum = Some(l.split_whitespace().nth(2).unwrap().to_string());
            break;
        }
    }
    let data = lab::util::gunzip(&lab::util::base64_decode(&b64)).unwrap();
    assert_eq!(Some(lab::util::sha256_bytes(&data).unwrap()), sum, "{kind}");
    String::from_utf8_lossy(&data).into_owned()
}
