//! The example appliances (examples/) and an application crate made from
//! docs/app.md outside the workspace, booted PV and PVH from the same ELF
//! with their own xl configs (xl-config/<example>.cfg). Every assertion is
//! on what the application printed, what Dom0 read back and how the domain
//! shut down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, lines, out, peer, root, Mode};

/// A guest image built by `./xf build`.
pub fn image(name: &str) -> PathBuf {
    root().join("target/x86_64-unknown-none/release").join(name)
}

/// `<mode>-app-<name>`: `image` with `config` (its type= replaced for PVH,
/// as `xl create cfg 'type="pvh"'` would do on a real host).
fn app(mode: Mode, name: &str, image: PathBuf, config: PathBuf) -> Scenario {
    let s = Scenario::new(format!("{}-app-{name}", mode.name()), image, config)
        .timeout_secs(60)
        .marker(mode.banner());
    match mode {
        Mode::Pv => s,
        Mode::Pvh => s.config_line("type = \"pvh\""),
    }
}

fn example(mode: Mode, name: &str) -> Scenario {
    app(
        mode,
        name,
        image(name),
        root().join(format!("xl-config/{name}.cfg")),
    )
}

// ------------------------------------------------------------------ hello

/// `hello: xenfront <v> on Xen <M>.<m>, <pv|pvh> guest, domain <id> "<name>"`
fn check_hello(o: &Outcome, mode: Mode) -> Result<(), String> {
    let l = line(o, "hello: xenfront ")?;
    let want_tail = format!(
        "{} guest, domain {} {:?}",
        mode.name(),
        o.domid.ok_or("no domid")?,
        o.domain
    );
    if !l.ends_with(&want_tail) {
        return Err(format!("hello line {l:?} does not end with {want_tail:?}"));
    }
    let info = out(o, "xl-info")?;
    let field = |k: &str| {
        info.lines()
            .find_map(|x| x.strip_prefix(k)?.trim_start().strip_prefix(':'))
            .map(str::trim)
            .ok_or_else(|| format!("no {k} in xl info"))
    };
    let xen = format!("Xen {}.{},", field("xen_major")?, field("xen_minor")?);
    if !l.contains(&xen) {
        return Err(format!("hello line {l:?}: Dom0's xl info says {xen}"));
    }
    // memory=4 in xl-config/hello.cfg: 1024 pages.
    let pages: u64 = lines(o)
        .filter_map(|l| l.strip_prefix("hello: "))
        .find(|l| l.contains(" pages, "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or("no `hello: <n> pages` line")?;
    if pages != 1024 {
        return Err(format!("hello saw {pages} pages, memory=4 is 1024"));
    }
    // The kernel's own option is not among the application's words.
    let args = line(o, "hello: args: ")?;
    if args != "greeting=hi" {
        return Err(format!("application words {args:?}, want \"greeting=hi\""));
    }
    Ok(())
}

fn hello(mode: Mode) -> Vec<Scenario> {
    vec![
        example(mode, "hello")
            .extra("greeting=hi xf.xs-timeout=5000")
            .dom0_script("xl info > \"$OUT/xl-info\"")
            .marker("hello: done")
            .shutdown(Some(Shutdown::Poweroff))
            .check(move |o| check_hello(o, mode)),
        // A bad kernel option is named, then the domain crashes before the
        // application runs.
        app(
            mode,
            "hello-bad-option",
            image("hello"),
            root().join("xl-config/hello.cfg"),
        )
        .extra("xf.xs-timeout=0x10")
        .marker("error: cmdline: invalid value '0x10' for option 'xf.xs-timeout'")
        .shutdown(Some(Shutdown::Crash))
        .check(|o| match lines(o).any(|l| l.starts_with("hello:")) {
            true => Err("the application ran despite a bad kernel option".into()),
            false => Ok(()),
        }),
    ]
}

// ------------------------------------------------------------- vchan-echo

/// When the killed clients die: ms after a client connected to the proxy's
/// socket (which makes the proxy open the vchan), from before it reads
/// XenStore to well into the connection; and at two handshake steps seen
/// from Dom0: as soon as the proxy has mapped our pages through gntdev,
/// and as soon as it has opened the event-channel device; then six at
/// random moments up to 1.5 s (the delays drawn are in `$OUT/random-kills`).
const KILL_AT: &[&str] = &[
    "0", "5", "10", "20", "40", "80", "160", "320", "640", "gntdev", "evtchn", "rand", "rand",
    "rand", "rand", "rand", "rand",
];
/// Full connections at the end, 1 MiB each, sha256 compared.
const FULL: u32 = 3;

const VCHAN_ECHO_SCRIPT: &str = r#"
set -u
D=/local/domain/$DOMID
V=$D/data/vchan
head -c 1048576 /dev/urandom >/tmp/e.big
head -c 4096 /dev/urandom >/tmp/e.small
ms_now() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
count() { grep -c -E "$1" "$CONSOLE_LOG"; }
more_than() { [ "$(count "$1")" -gt "$2" ]; }
# proxy TAG: a fresh socket-mode proxy (it opens the vchan when a client
# connects to its socket; one per client, as a Dom0 service would run it).
proxy() {
  rm -f /tmp/e.sock
  vchan-socket-proxy "$DOMID" "$V" /tmp/e.sock >"$OUT/proxy-$1.out" 2>&1 &
  P=$!
  wait_socket /tmp/e.sock 20
}
# client TAG IN [ARGS...]: one echo through a fresh proxy; its exit status.
client() {
  tag=$1; in=$2; shift 2
  proxy "$tag" || return 9
  "$FILES/xf-vchan-pump" --connect /tmp/e.sock --in "$in" --timeout-ms 60000 "$@" >"$OUT/$tag.out" 2>&1
  rc=$?
  kill $P 2>/dev/null; wait $P 2>/dev/null
  return $rc
}
wait_console 'vchan-echo: listening \(connection 0\)' 60
k=0
# reached STEP: the proxy has mapped our control page (a gntdev mapping in
# its maps), or has opened the event-channel device (libxenvchan opens it
# after mapping the rings and binds right after).
reached() {
  case $1 in
  gntdev) grep -q gntdev /proc/$P/maps 2>/dev/null ;;
  evtchn) ls -l /proc/$P/fd 2>/dev/null | grep -q evtchn ;;
  esac
}
for d in KILL_AT; do
  # A warm proxy opens the vchan as soon as a client connects to its
  # socket; SIGKILL it at the chosen moment: in the handshake, or after.
  proxy kill$k || exit 4
  "$FILES/xf-vchan-pump" --connect /tmp/e.sock --in /tmp/e.small --hold --timeout-ms 10000 >/dev/null 2>&1 &
  C=$!
  case $d in
  gntdev|evtchn)
    i=0
    until reached "$d"; do i=$((i+1)); [ $i -gt 2000 ] && break; done
    [ $i -gt 2000 ] && echo "kill at $d: the proxy never got there" ;;
  rand)
    r=$(( $(od -An -N2 -tu2 /dev/urandom) % 1500 ))
    echo "$r" >>"$OUT/random-kills"
    usleep $((r * 1000)) ;;
  0) ;;
  *) usleep $((d * 1000)) ;;
  esac
  kill -9 $P 2>/dev/null; wait $P 2>/dev/null
  kill -9 $C 2>/dev/null; wait $C 2>/dev/null
  t0=$(ms_now)
  # The service must serve the next client: a short echo, bounded.
  client probe$k /tmp/e.small --pings 5
  echo "$? $(( $(ms_now) - t0 ))" >"$OUT/probe$k.status"
  k=$((k+1))
done
# A client killed in the middle of a 1 MiB transfer.
c=$(count 'connection [0-9]+: connected')
proxy midkill || exit 4
"$FILES/xf-vchan-pump" --connect /tmp/e.sock --in /tmp/e.big --timeout-ms 30000 >"$OUT/midkill.out" 2>&1 &
M=$!
xf_poll 30 more_than 'connection [0-9]+: connected' "$c" || echo "mid-transfer client never connected"
usleep 300000
kill -9 $P $M 2>/dev/null; wait $P 2>/dev/null; wait $M 2>/dev/null
# Full connections, one after another, each checked byte for byte.
r=0
while [ $r -lt FULL ]; do
  client full$r /tmp/e.big --out /tmp/e.out --pings 20
  echo $? >"$OUT/full$r.status"
  sha256sum </tmp/e.big | cut -d' ' -f1 >"$OUT/full$r.sha-in"
  sha256sum </tmp/e.out | cut -d' ' -f1 >"$OUT/full$r.sha-out"
  rm -f /tmp/e.out
  r=$((r+1))
done
# Once the service listens again (one more `listening` than ended
# connections), ask it to stop.
listening() {
  [ "$(count 'vchan-echo: listening')" -gt "$(count 'vchan-echo: connection [0-9]+: (echoed|client left)')" ]
}
xf_poll 30 listening || echo "service not listening again after the last connection"
xl shutdown "$DOMID"
"#;

fn vchan_echo_script() -> String {
    VCHAN_ECHO_SCRIPT
        .replace("KILL_AT", &KILL_AT.join(" "))
        .replace("FULL", &FULL.to_string())
}

fn check_vchan_echo(o: &Outcome) -> Result<(), String> {
    let mut worst_ms = 0u64;
    for (k, d) in KILL_AT.iter().enumerate() {
        let st = out(o, &format!("probe{k}.status"))?;
        let (code, ms) = st.split_once(' ').ok_or(format!("probe{k}: {st:?}"))?;
        let p = out(o, &format!("probe{k}.out")).unwrap_or("(no output)");
        if code != "0" || !p.contains("pings 5/5 ok") {
            return Err(format!(
                "client after a kill at {d} was not served (exit {code}): {p}"
            ));
        }
        worst_ms = worst_ms.max(ms.parse().unwrap_or(0));
    }
    for r in 0..FULL {
        let st = out(o, &format!("full{r}.status"))?;
        let p = out(o, &format!("full{r}.out")).unwrap_or("(no output)");
        let (a, b) = (
            out(o, &format!("full{r}.sha-in"))?,
            out(o, &format!("full{r}.sha-out"))?,
        );
        if st != "0" || a != b || a.len() != 64 {
            return Err(format!(
                "full connection {r}: exit {st}, sha256 {a} vs {b}: {p}"
            ));
        }
    }
    // The application saw the request and left its grants at baseline.
    let last = line(o, "vchan-echo: poweroff requested after ")?;
    let in_use = num_after(last, "in_use").ok_or(format!("no in_use in {last:?}"))?;
    let base = num_after(last, "(baseline").ok_or(format!("no baseline in {last:?}"))?;
    let deferred = num_after(last, "deferred").unwrap_or(u64::MAX);
    if in_use != base || deferred != 0 {
        return Err(format!("grants not back at baseline: {last:?}"));
    }
    let handshake = lines(o)
        .filter(|l| l.contains("client left during the handshake"))
        .count();
    let gone = lines(o).filter(|l| l.contains("peer gone")).count();
    let empty = lines(o).filter(|l| l.contains(": echoed 0 bytes")).count();
    let random: Vec<&str> = out(o, "random-kills")?.split_whitespace().collect();
    if random.len() != KILL_AT.iter().filter(|d| **d == "rand").count() {
        return Err(format!("random kill delays {random:?}"));
    }
    println!(
        "    figure: vchan-echo: random kills at {} ms after connect, each followed by a served client",
        random.join(", ")
    );
    println!(
        "    figure: vchan-echo: {} kills ({handshake} in the handshake, {empty} connected without data, {gone} seen as peer gone), next client served within {worst_ms} ms at worst; {FULL} x 1 MiB echoed, sha256 equal",
        KILL_AT.len()
    );
    Ok(())
}

/// The number after `word` in `s`.
fn num_after(s: &str, word: &str) -> Option<u64> {
    let i = s.find(word)? + word.len();
    let rest = s[i..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn vchan_echo(mode: Mode) -> Scenario {
    example(mode, "vchan-echo")
        .file(peer("xf-vchan-pump"), "xf-vchan-pump")
        .dom0_script(vchan_echo_script())
        .timeout_secs(420)
        .marker("vchan-echo: serving data/vchan for domain 0")
        .shutdown(Some(Shutdown::Poweroff))
        .script_status(0)
        .check(check_vchan_echo)
}

/// The service with one grant frame (`max_grant_frames=1`): a connection
/// still echoes its data.
fn vchan_echo_one_frame(mode: Mode) -> Scenario {
    app(
        mode,
        "vchan-echo-grant-frames-1",
        image("vchan-echo"),
        root().join("xl-config/vchan-echo.cfg"),
    )
    .config_line("max_grant_frames = 1")
    .file(peer("xf-vchan-pump"), "xf-vchan-pump")
    .dom0_script(
        r#"
V=/local/domain/$DOMID/data/vchan
head -c 65536 /dev/urandom >/tmp/o.in
wait_console 'vchan-echo: listening \(connection 0\)' 60
rm -f /tmp/o.sock
vchan-socket-proxy "$DOMID" "$V" /tmp/o.sock >"$OUT/proxy.out" 2>&1 &
P=$!
wait_socket /tmp/o.sock 20 || exit 4
"$FILES/xf-vchan-pump" --connect /tmp/o.sock --in /tmp/o.in --pings 5 --timeout-ms 60000 >"$OUT/pump.out" 2>&1
echo $? >"$OUT/pump.status"
kill $P 2>/dev/null; wait $P 2>/dev/null
wait_console 'vchan-echo: listening \(connection 1\)' 30
xl shutdown "$DOMID"
"#,
    )
    .timeout_secs(120)
    .marker("grants: table up, in_use 0 deferred 0 free 504 frames 1/1")
    .marker("vchan-echo: poweroff requested after 1 connection(s)")
    .shutdown(Some(Shutdown::Poweroff))
    .script_status(0)
    .check(|o| {
        let st = out(o, "pump.status")?;
        let p = out(o, "pump.out")?;
        if st != "0" || !p.contains(" match") {
            return Err(format!("echo with one grant frame failed (exit {st}): {p}"));
        }
        Ok(())
    })
}

// -------------------------------------------------------------- ring-demo

fn ring_demo(mode: Mode) -> Scenario {
    example(mode, "ring-demo")
        .extra("requests=5000")
        .file(peer("xf-ring-back"), "xf-ring-back")
        .dom0_script(
            "\"$FILES/xf-ring-back\" \"$DOMID\" \"/local/domain/$DOMID/data/demo\" --count 5000 >\"$OUT/ring-back.out\" 2>&1; echo $? >\"$OUT/ring-back.status\"",
        )
        .marker("ring-demo: 5000/5000 responses ok")
        .shutdown(Some(Shutdown::Poweroff))
        .check(|o| {
            let st = out(o, "ring-back.status")?;
            let rb = out(o, "ring-back.out")?;
            if st != "0" || !rb.contains("answered 5000") {
                return Err(format!("xf-ring-back exit {st}: {rb}"));
            }
            let l = lines(o)
                .find(|l| l.contains(" revoked ("))
                .ok_or("no `ring-demo: ring-ref <r> revoked` line")?;
            if !l.contains("grants in_use 0 deferred 0") {
                return Err(format!("grants not released: {l:?}"));
            }
            Ok(())
        })
}

// ------------------------------------------------------------- disk-check

/// MiB of the disk-check scenario's scratch image.
const CHECK_MIB: usize = 16;

/// The image disk-check leaves: its xorshift64* pattern of seed 1 over
/// [`CHECK_MIB`] MiB (examples/disk-check), computed here independently.
fn disk_check_sha256() -> String {
    let mut x = 1u64;
    let mut data = Vec::with_capacity(CHECK_MIB << 20);
    while data.len() < CHECK_MIB << 20 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        data.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    lab::util::sha256_hex(&data)
}

fn disk_check(mode: Mode) -> Scenario {
    example(mode, "disk-check")
        .timeout_secs(300)
        .dom0_precreate(format!(
            "{}head -c {} /dev/zero >/tmp/scratch.img\n",
            crate::blk::WAIT_DISKS_GONE,
            CHECK_MIB << 20
        ))
        .dom0_script(
            r#"
xf_poll 300 sh -c '! xl domid "$NAME" >/dev/null 2>&1' || echo "domain still there" >&2
xf_poll 30 sh -c '[ -z "$(xenstore-list /local/domain/0/backend/vbd/$DOMID 2>/dev/null)" ]' || echo "backend still there" >&2
sha256sum /tmp/scratch.img | cut -d' ' -f1 >"$OUT/scratch.sha256"
"#,
        )
        .marker("disk-check: read ")
        .shutdown(Some(Shutdown::Poweroff))
        .check(|o| {
            let head = line(o, "disk-check: vbd ")?;
            if !head.contains(&format!("{} bytes, 512-byte sectors", CHECK_MIB << 20)) {
                return Err(format!("disk-check saw {head:?}"));
            }
            let w = line(o, "disk-check: wrote ")?;
            let r = line(o, "disk-check: read ")?;
            if !r.ends_with("all equal") {
                return Err(format!("disk-check read {r:?}"));
            }
            let want = disk_check_sha256();
            let got = out(o, "scratch.sha256")?;
            if got != want {
                return Err(format!("Dom0's image sha256 {got}, the pattern's {want}"));
            }
            println!("    figure: disk-check {}: {w}; {r}; Dom0's image = the pattern", o.name);
            Ok(())
        })
}

// --------------------------------------------------------------- tcp-echo

fn tcp_echo(mode: Mode) -> Scenario {
    example(mode, "tcp-echo")
        .timeout_secs(240)
        .dom0_script(
            r#"
wait_console "tcp-echo: mac " 120
head -c 1048576 /dev/urandom >/tmp/e.in
for i in 0 1; do
  socat -b 16384 -t 30 -T 60 - TCP:10.0.0.2:7 </tmp/e.in >/tmp/e.out 2>>"$OUT/socat.err"
  echo $? >>"$OUT/socat.rc"
  sha256sum </tmp/e.out | cut -d' ' -f1 >>"$OUT/out.sha256"
done
sha256sum </tmp/e.in | cut -d' ' -f1 >"$OUT/in.sha256"
wait_console "tcp-echo: connection 1 from " 30
xl shutdown "$NAME"
"#,
        )
        .marker("tcp-echo: poweroff requested after 2 connection(s)")
        .shutdown(Some(Shutdown::Poweroff))
        .check(|o| {
            let sent = out(o, "in.sha256")?;
            let back = out(o, "out.sha256")?;
            if out(o, "socat.rc")? != "0\n0" || back != format!("{sent}\n{sent}") {
                return Err(format!(
                    "echo: socat {:?}, sent {sent}, got {back:?}",
                    out(o, "socat.rc")
                ));
            }
            for n in 0..2 {
                let l = line(o, &format!("tcp-echo: connection {n} from 10.0.0.1:"))?;
                if !l.ends_with("echoed 1048576 bytes") {
                    return Err(format!("connection {n}: {l:?}"));
                }
            }
            Ok(())
        })
}

// ---------------------------------------- an application outside the tree

/// The files docs/app.md asks a user to write: every fenced block whose
/// info string has `file=<path>`.
fn app_md_files() -> Result<Vec<(String, String)>, String> {
    let md = std::fs::read_to_string(root().join("docs/app.md"))
        .map_err(|e| format!("docs/app.md: {e}"))?;
    let mut files = Vec::new();
    let mut it = md.lines();
    while let Some(l) = it.next() {
        let Some(name) = l.strip_prefix("```").and_then(|info| {
            info.split_whitespace()
                .find_map(|w| w.strip_prefix("file="))
        }) else {
            continue;
        };
        let body: Vec<&str> = it.by_ref().take_while(|l| !l.starts_with("```")).collect();
        files.push((name.to_string(), body.join("\n") + "\n"));
    }
    if files.len() < 3 {
        return Err(format!("docs/app.md names only {} file(s)", files.len()));
    }
    Ok(files)
}

/// Writes the crate of docs/app.md into a fresh directory outside the
/// workspace (xenfront as a path dependency) and builds it with the
/// commands the page gives. The image path, or why it failed.
fn build_outside_app() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("xenfront-app-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, body) in app_md_files()? {
        let body = body.replace(
            "path = \"../xenfront\"",
            &format!("path = {:?}", root().display().to_string()),
        );
        let p = dir.join(&name);
        std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    // The same toolchain as the library (rust-toolchain.toml pins it).
    std::fs::copy(
        root().join("rust-toolchain.toml"),
        dir.join("rust-toolchain.toml"),
    )
    .map_err(|e| e.to_string())?;
    let target = root().join("target/app-outside");
    // The rustup proxy, as a user would run it: it honours the crate's
    // rust-toolchain.toml (the toolchain binary in $CARGO would not).
    let o = Command::new("cargo")
        .current_dir(&dir)
        .args(["build", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| format!("cargo build in {}: {e}", dir.display()))?;
    if !o.status.success() {
        return Err(format!(
            "cargo build --release in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let elf = target.join("x86_64-unknown-none/release/greeter");
    if !is_elf(&elf) {
        return Err(format!("{} is not an ELF image", elf.display()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(elf)
}

fn is_elf(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF"))
}

static OUTSIDE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn outside(mode: Mode) -> Vec<Scenario> {
    let built = OUTSIDE.get_or_init(|| {
        let r = build_outside_app();
        if let Err(e) = &r {
            println!("apps: the docs/app.md application did not build: {e}");
        }
        r
    });
    // A failed build leaves no image: the lab's host check fails the
    // scenarios, and the build error was printed above.
    let elf = built
        .clone()
        .unwrap_or_else(|_| root().join("target/app-outside/build-failed"));
    let cfg = root().join("xl-config/hello.cfg");
    vec![
        app(mode, "outside", elf.clone(), cfg.clone())
            .extra("name=Xen")
            .marker("greeter: hello, Xen, from domain ")
            .marker(format!("({})", mode.name()))
            .shutdown(Some(Shutdown::Poweroff)),
        app(mode, "outside-err", elf, cfg)
            .extra("name=")
            .marker("error: greeter: name= is empty")
            .shutdown(Some(Shutdown::Crash)),
    ]
}

pub fn scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();
    for mode in Mode::ALL {
        v.extend(hello(mode));
        v.push(vchan_echo(mode));
        v.push(vchan_echo_one_frame(mode));
        v.push(ring_demo(mode));
        v.push(disk_check(mode));
        v.push(tcp_echo(mode));
        v.extend(outside(mode));
    }
    v
}
