//! libxenvchan against the stock `vchan-socket-proxy` in Dom0, both
//! roles. Guest side: src/channels.rs (`test=vchan-server`, `vchan-client`),
//! src/drivers/vchan.rs; the bytes are driven through the proxy's Unix
//! socket by `xf-vchan-pump` (peers/, docs/peers.md), which also measures.
//! Needs `cargo build --release -p xen-peers` first.
//!
//! - `pv-vchan-server`: the guest serves (echo), the proxy connects as
//!   client per accepted socket connection. Connection 0: 200 pings of 64
//!   bytes, then 16 MiB of random bytes echoed back (sha256 of what went in
//!   and what came back compared in Dom0); then more short connections
//!   (the guest re-listens each time).
//! - `pv-vchan-client`: the proxy serves (`-m server`) and is **killed**
//!   (SIGKILL) after every connection and started again; the guest client
//!   notices (gntalloc unmap notify clears `srv_live`), unmaps and
//!   reconnects. `XF_CYCLES` (default 100) connections.
//!
//! Both end with the guest's grant counters back at their baseline.
//!
//! - `linux-pv-vchan`: the baseline. Debian's kernel as a PV domU with an
//!   initrd built here from the lab's Dom0 image (stock `vchan-socket-proxy`
//!   `-m server` + its libraries, xen-evtchn/xen-gntalloc, `xf-vchan-pump
//!   --echo` behind it); Dom0 pushes the same 16 MiB through the same client
//!   proxy and pump as for `pv-vchan-server`.

use std::path::PathBuf;

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{lines, out, peer, root, Mode};

/// Connections in the server scenario (the first one carries 16 MiB).
const SERVER_ROUNDS: u32 = 3;
/// Proxy kill/restart cycles in the client scenario: `XF_CYCLES` (default
/// 100, ~0.6 s each on an idle lab; `./xf bench` runs 1,000).
fn client_rounds() -> u32 {
    crate::common::cycles(100)
}
/// Seconds per cycle on a loaded lab (0.6 s idle, 3.8 s seen loaded).
const CLIENT_CYCLE_SECS: u64 = 4;
const BIG: u64 = 16 * 1024 * 1024;
const CLIENT_BIG: u64 = 1024 * 1024;

/// Shared by the Dom0 scripts: `$D`, the guest's XenStore directory. The waits
/// (`wait_console`, `wait_file`, `wait_socket`) come from lab/dom0/lib.sh.
const PRELUDE: &str = r#"
set -u
D=/local/domain/$DOMID
"#;

fn server_script() -> String {
    format!(
        r#"{PRELUDE}
head -c {BIG} /dev/urandom >/tmp/v.in
head -c 65536 /dev/urandom >/tmp/v.small
xenstore-write "$D/data/vchan-rounds" {SERVER_ROUNDS}
rm -f /tmp/v.sock
vchan-socket-proxy "$DOMID" "$D/data/vchan" /tmp/v.sock >"$OUT/proxy.out" 2>&1 &
P=$!
r=0
while [ $r -lt {SERVER_ROUNDS} ]; do
  # Fresh keys: the guest prints this after publishing them.
  wait_console "vchan-server: listening on .* \(connection $r\)" 120
  wait_socket /tmp/v.sock 10
  if [ $r = 0 ]; then
    "$FILES/xf-vchan-pump" --connect /tmp/v.sock --in /tmp/v.in --out /tmp/v.out --pings 200 --timeout-ms 120000 >"$OUT/pump$r.out" 2>&1
    echo $? >"$OUT/pump$r.status"
    sha256sum /tmp/v.in /tmp/v.out >"$OUT/sha256"
    rm -f /tmp/v.out
  else
    "$FILES/xf-vchan-pump" --connect /tmp/v.sock --in /tmp/v.small --pings 20 --timeout-ms 60000 >"$OUT/pump$r.out" 2>&1
    echo $? >"$OUT/pump$r.status"
  fi
  wait_console "vchan-server: connection $r: echoed" 120
  r=$((r+1))
done
kill $P 2>/dev/null
wait $P 2>/dev/null
xenstore-rm "$D/data/vchan-rounds" 2>/dev/null || true  # the guest may be gone (and its dir with it)
"#
    )
}

fn client_script() -> String {
    let client_rounds = client_rounds();
    format!(
        r#"{PRELUDE}
head -c {CLIENT_BIG} /dev/urandom >/tmp/c.big
head -c 4096 /dev/urandom >/tmp/c.small
xenstore-write "$D/data/vchan-rounds" {client_rounds}
T0=$(cut -d' ' -f1 /proc/uptime)
r=0
: >"$OUT/rounds"
while [ $r -lt {client_rounds} ]; do
  if [ $r = 0 ]; then IN=/tmp/c.big; PINGS=200; else IN=/tmp/c.small; PINGS=5; fi
  rm -f /tmp/c.sock /tmp/pump.out
  "$FILES/xf-vchan-pump" --listen /tmp/c.sock --in $IN --out /tmp/c.out --pings $PINGS --hold --timeout-ms 60000 >/tmp/pump.out 2>&1 &
  PP=$!
  wait_file /tmp/pump.out listening 120
  vchan-socket-proxy -m server "$DOMID" "$D/data/vchan-srv" /tmp/c.sock >/tmp/proxy.out 2>&1 &
  XP=$!
  # Echo verified (or the pump gave up): kill the proxy mid-connection.
  i=0
  while kill -0 $PP 2>/dev/null && ! grep -q holding /tmp/pump.out; do
    i=$((i+1)); [ $i -gt 6000 ] && break; usleep 20000
  done
  kill -9 $XP 2>/dev/null; wait $XP 2>/dev/null
  wait $PP; ST=$?
  echo "round $r pump $ST" >>"$OUT/rounds"
  sed "s/^/round $r: /" /tmp/pump.out >>"$OUT/pumps.out"
  sed "s/^/round $r proxy: /" /tmp/proxy.out >>"$OUT/pumps.out"
  [ $r = 0 ] && sha256sum $IN /tmp/c.out >"$OUT/sha256"
  # The killed proxy left its keys behind.
  xenstore-rm "$D/data/vchan-srv"
  wait_console "vchan-client: connection $r: echoed" 120
  r=$((r+1))
done
T1=$(cut -d' ' -f1 /proc/uptime)
echo "$T0 $T1" >"$OUT/uptime"
xenstore-rm "$D/data/vchan-rounds" 2>/dev/null || true  # the guest may be gone (and its dir with it)
"#
    )
}

/// `sha256sum A B` output: both sums equal.
fn check_sha(o: &Outcome) -> Result<String, String> {
    let s = out(o, "sha256")?;
    let sums: Vec<&str> = s
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    match sums[..] {
        [a, b] if a == b && a.len() == 64 => Ok(a.to_string()),
        _ => Err(format!("sha256 differ: {s:?}")),
    }
}

/// `vchan-pump: sent <n> bytes, echoed <m> bytes in <ms> ms (<x> MB/s each way), ... match`
fn check_pump(text: &str, want: u64) -> Result<(f64, &str), String> {
    let l = text
        .lines()
        .find(|l| l.contains("vchan-pump: sent "))
        .ok_or_else(|| format!("no pump result in {text:?}"))?;
    let w: Vec<&str> = l.split_whitespace().collect();
    let sent: u64 = w.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
    let echoed: u64 = w.get(5).and_then(|x| x.parse().ok()).unwrap_or(0);
    if sent != want || echoed != want || !l.ends_with(" match") {
        return Err(format!("pump: {l:?}, want {want} bytes echoed"));
    }
    let mbs = l
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("no MB/s in {l:?}"))?;
    Ok((mbs, l))
}

fn pings(text: &str) -> Option<&str> {
    text.lines().find(|l| l.contains("vchan-pump: pings "))
}

fn check_server(o: &Outcome) -> Result<(), String> {
    let sha = check_sha(o)?;
    for r in 0..SERVER_ROUNDS {
        let st = out(o, &format!("pump{r}.status"))?;
        let p = out(o, &format!("pump{r}.out"))?;
        if st != "0" {
            return Err(format!("pump {r} exit {st}: {p}"));
        }
        check_pump(p, if r == 0 { BIG } else { 65536 })?;
        // The guest echoed at least what the pump got back.
        let g = lines(o)
            .find_map(|l| l.strip_prefix(&format!("vchan-server: connection {r}: echoed ")))
            .ok_or_else(|| format!("no guest line for connection {r}"))?;
        let pings = if r == 0 { 200 * 64 } else { 20 * 64 };
        let want = if r == 0 { BIG } else { 65536 } + pings;
        let n: u64 = g
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        if n != want {
            return Err(format!(
                "guest connection {r}: echoed {g}; want {want} bytes"
            ));
        }
    }
    crate::demo::check_grants_baseline(o)?;
    let p0 = out(o, "pump0.out")?;
    let (mbs, l) = check_pump(p0, BIG)?;
    println!("    figure: vchan guest server, 16 MiB echo through vchan-socket-proxy: {mbs} MB/s each way, sha256 {sha}");
    println!("    figure: {l}");
    println!("    figure: {}", pings(p0).unwrap_or("no pings line"));
    Ok(())
}

fn check_client(o: &Outcome) -> Result<(), String> {
    let client_rounds = client_rounds();
    let sha = check_sha(o)?;
    let rounds = out(o, "rounds")?;
    let bad: Vec<&str> = rounds.lines().filter(|l| !l.ends_with(" pump 0")).collect();
    let n = rounds.lines().count() as u32;
    if n != client_rounds || !bad.is_empty() {
        return Err(format!(
            "{n}/{client_rounds} rounds, failed: {bad:?}; pumps: {}",
            out(o, "pumps.out").unwrap_or("")
        ));
    }
    let reconnects = lines(o)
        .filter(|l| l.starts_with("vchan-client: connection ") && l.contains(" echoed "))
        .count() as u32;
    if reconnects != client_rounds {
        return Err(format!(
            "guest finished {reconnects}/{client_rounds} connections"
        ));
    }
    crate::demo::check_grants_baseline(o)?;
    let res = crate::common::check_resources(o, "vchan-client")?;
    println!("    figure: {res}");
    let pumps = out(o, "pumps.out")?;
    let r0: String = pumps
        .lines()
        .filter_map(|l| l.strip_prefix("round 0: "))
        .collect::<Vec<_>>()
        .join("\n");
    let (mbs, l) = check_pump(&r0, CLIENT_BIG)?;
    let up = out(o, "uptime")?;
    let t: Vec<f64> = up
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let secs = t.get(1).zip(t.first()).map(|(b, a)| b - a).unwrap_or(0.0);
    println!("    figure: vchan guest client, 1 MiB echo via vchan-socket-proxy -m server: {mbs} MB/s each way, sha256 {sha}");
    println!("    figure: {l}");
    println!("    figure: {}", pings(&r0).unwrap_or("no pings line"));
    println!(
        "    figure: {client_rounds} proxy kill/restart cycles with guest reconnect in {secs:.1} s ({:.2} s per cycle)",
        secs / client_rounds as f64
    );
    Ok(())
}

const LINUX_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
insmod /lib/xen-evtchn.ko
insmod /lib/xen-gntalloc.ko
echo "XF-LINUX-VCHAN: up, uptime $(cut -d' ' -f1 /proc/uptime)"
xf-vchan-pump --listen /tmp/e.sock --echo &
i=0; until [ -S /tmp/e.sock ]; do i=$((i+1)); [ $i -gt 100 ] && break; usleep 50000; done
vchan-socket-proxy -m server 0 data/vchan /tmp/e.sock &
echo "XF-LINUX-VCHAN: serving data/vchan"
i=0
until xenstore-read data/vchan-done >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 600 ] && break; sleep 1
done
echo "XF-LINUX-VCHAN: powering off"
poweroff -f
"#;

/// Builds (once per test run) the Linux vchan initrd from the lab's Dom0
/// image: busybox, `vchan-socket-proxy`, `xenstore-read`, `xf-vchan-pump`,
/// their shared libraries (ldd closure) and the two Xen modules.
fn linux_vchan_initrd() -> Result<PathBuf, String> {
    let (a, _) = lab::baseline::artifacts();
    let dir = root().join("target/lab/linux-vchan");
    let out = root().join("target/lab/linux-vchan-initrd.cpio.gz");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("init"), LINUX_INIT).map_err(|e| e.to_string())?;
    let script = format!(
        r#"set -e
cd '{dir}'
rm -rf x r; mkdir -p x r
(cd x && zcat '{dom0}' | cpio -id --quiet 'usr/lib/x86_64-linux-gnu/*' 'lib/x86_64-linux-gnu/*' \
   'usr/lib/xen-4.17/bin/vchan-socket-proxy' 'usr/bin/xenstore-read' 'lib/modules/*/kernel/drivers/xen/xen-evtchn.ko' \
   'lib/modules/*/kernel/drivers/xen/xen-gntalloc.ko')
mkdir -p r/bin r/lib64 r/lib/x86_64-linux-gnu r/usr/lib/x86_64-linux-gnu
cp '{bb}' r/bin/busybox
cp x/usr/lib/xen-4.17/bin/vchan-socket-proxy x/usr/bin/xenstore-read '{pump}' r/bin/
cp x/lib/modules/*/kernel/drivers/xen/xen-evtchn.ko x/lib/modules/*/kernel/drivers/xen/xen-gntalloc.ko r/lib/
X=$(pwd)/x
for l in $(LD_LIBRARY_PATH=$X/usr/lib/x86_64-linux-gnu:$X/lib/x86_64-linux-gnu ldd r/bin/vchan-socket-proxy r/bin/xenstore-read r/bin/xf-vchan-pump \
           | awk '$2 == "=>" && $3 ~ /^\// {{print $3}}' | sort -u); do
  case "$l" in "$X"/*) rel=${{l#$X/}}; cp -L "$l" "r/$rel" ;; *) echo "library outside the Dom0 image: $l" >&2; exit 1 ;; esac
done
cp -L x/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 r/lib64/
cp -L x/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 r/lib/x86_64-linux-gnu/
cp init r/init; chmod 755 r/init r/bin/*
(cd r && find . | cpio -o -H newc --quiet | gzip -1) >'{out}.tmp'
mv '{out}.tmp' '{out}'
"#,
        dir = dir.display(),
        dom0 = a.dom0_initrd.display(),
        bb = a.busybox.display(),
        pump = peer("xf-vchan-pump").display(),
        out = out.display(),
    );
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "building the Linux vchan initrd failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out)
}

fn linux_script() -> String {
    format!(
        r#"{PRELUDE}
head -c {BIG} /dev/urandom >/tmp/l.in
wait_console "XF-LINUX-VCHAN: serving" 120
rm -f /tmp/l.sock
vchan-socket-proxy "$DOMID" "$D/data/vchan" /tmp/l.sock >"$OUT/proxy.out" 2>&1 &
P=$!
wait_socket /tmp/l.sock 10
"$FILES/xf-vchan-pump" --connect /tmp/l.sock --in /tmp/l.in --out /tmp/l.out --pings 200 --timeout-ms 120000 >"$OUT/pump0.out" 2>&1
echo $? >"$OUT/pump0.status"
sha256sum /tmp/l.in /tmp/l.out >"$OUT/sha256"
rm -f /tmp/l.out /tmp/l.in
kill $P 2>/dev/null; wait $P 2>/dev/null
xenstore-write "$D/data/vchan-done" 1
"#
    )
}

fn check_linux(o: &Outcome) -> Result<(), String> {
    let sha = check_sha(o)?;
    let st = out(o, "pump0.status")?;
    let p = out(o, "pump0.out")?;
    if st != "0" {
        return Err(format!("pump exit {st}: {p}"));
    }
    let (mbs, l) = check_pump(p, BIG)?;
    println!("    figure: vchan Linux PV server (stock vchan-socket-proxy), 16 MiB echo: {mbs} MB/s each way, sha256 {sha}");
    println!("    figure: {l}");
    println!("    figure: {}", pings(p).unwrap_or("no pings line"));
    Ok(())
}

fn linux_vchan() -> Scenario {
    let (a, _) = lab::baseline::artifacts();
    let s = Scenario::new(
        "linux-pv-vchan",
        a.vmlinuz,
        root().join("xl-config/linux-pv.cfg"),
    )
    .extra("console=hvc0")
    .file(peer("xf-vchan-pump"), "xf-vchan-pump")
    .dom0_script(linux_script())
    .marker("XF-LINUX-VCHAN: powering off")
    .shutdown(Some(Shutdown::Poweroff))
    .script_status(0)
    .timeout_secs(400)
    .check(check_linux);
    match linux_vchan_initrd() {
        Ok(i) => s.ramdisk(i),
        // The host check then reports the missing ramdisk.
        Err(e) => {
            eprintln!("vchan: {e}");
            s.ramdisk(root().join("target/lab/linux-vchan-initrd-missing"))
        }
    }
}

fn vchan(name: &str, test: &str, script: String) -> Scenario {
    Mode::Pv
        .scenario(name)
        .extra(format!("test={test}"))
        .file(peer("xf-vchan-pump"), "xf-vchan-pump")
        .dom0_script(script)
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
        .script_status(0)
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        vchan("vchan-server", "vchan-server", server_script())
            .timeout_secs(400)
            .check(check_server),
        vchan("vchan-client", "vchan-client", client_script())
            // Every cycle at loaded speed, plus boot and the 1 MiB first round.
            .timeout_secs(u64::from(client_rounds()) * CLIENT_CYCLE_SECS + 240)
            .check(check_client),
        linux_vchan(),
    ]
}
