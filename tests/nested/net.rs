//! netfront against the stock Linux netback: the guest's vif is bridged
//! to Dom0's `xenbr0` (10.0.0.1/24; lab/dom0/init) by the stock
//! `vif-bridge` hotplug script. Dom0 pings the guest (10.0.0.2, smoltcp)
//! and pushes random bytes through its TCP echo server with `socat`; the
//! bytes that come back must hash as those sent. Guest side:
//! tests/kernel/src/net.rs (`test=net`), src/net.rs.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, out, Mode};

/// MiB through the echo: `XF_NET_MIB`, else 4 (`./xf bench`: 16).
fn echo_mib() -> u32 {
    std::env::var("XF_NET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=1024).contains(n))
        .unwrap_or(4)
}

fn script() -> String {
    let bytes = u64::from(echo_mib()) << 20;
    format!(
        r#"
wait_console "net: up" 120
ping -c 50 -i 0.2 -W 2 10.0.0.2 >"$OUT/ping.out" 2>&1; echo $? >"$OUT/ping.rc"
head -c {bytes} /dev/urandom >/tmp/n.in
t0=$(cut -d' ' -f1 /proc/uptime)
socat -b 16384 -t 30 -T 60 - TCP:10.0.0.2:7 </tmp/n.in >/tmp/n.out 2>"$OUT/socat.err"; echo $? >"$OUT/socat.rc"
t1=$(cut -d' ' -f1 /proc/uptime)
awk -v a=$t0 -v z=$t1 -v b={bytes} 'BEGIN {{ d = z - a; if (d <= 0) d = 0.01; printf "%.2f", b / d / 1e6 }}' >"$OUT/echo.rate"
sha256sum </tmp/n.in | cut -d' ' -f1 >"$OUT/in.sha256"
sha256sum </tmp/n.out | cut -d' ' -f1 >"$OUT/out.sha256"
wc -c </tmp/n.out | tr -d ' ' >"$OUT/out.bytes"
rm -f /tmp/n.in /tmp/n.out
xenstore-write "/local/domain/$DOMID/data/xf-net-done" 1
"#
    )
}

fn check(o: &Outcome) -> Result<(), String> {
    line(o, "net: up 10.0.0.2/24")?;
    let ping = out(o, "ping.out")?;
    let loss = ping
        .lines()
        .find(|l| l.contains("packet loss"))
        .ok_or_else(|| format!("no ping summary in {ping:?}"))?;
    if !loss.contains(" 0% packet loss") || out(o, "ping.rc")? != "0" {
        return Err(format!("ping: {loss}"));
    }
    let rtt = ping
        .lines()
        .find(|l| l.contains("round-trip"))
        .unwrap_or("no round-trip line");
    let want = u64::from(echo_mib()) << 20;
    if out(o, "socat.rc")? != "0" {
        return Err(format!("socat failed: {:?}", out(o, "socat.err")));
    }
    let (sent, back) = (out(o, "in.sha256")?, out(o, "out.sha256")?);
    if sent != back || out(o, "out.bytes")? != want.to_string() {
        return Err(format!(
            "echo: sent sha256 {sent}, got {} bytes sha256 {back}",
            out(o, "out.bytes")?
        ));
    }
    let echoed = line(o, "net: connection 0: echoed ")?;
    if echoed != format!("{want} bytes") {
        return Err(format!("guest echoed {echoed:?}, want {want} bytes"));
    }
    line(o, "net: closed")?;
    let counts = line(o, "resources: before ")?;
    let stats = line(o, "net: ")
        .ok()
        .and_then(|_| crate::common::lines(o).find(|l| l.contains(" frames in, ")))
        .unwrap_or("");
    println!(
        "    figure: netfront {}: ping 50 × 0% loss, {rtt}; {} MiB TCP echo from Dom0 at {} MB/s each way, sha256 equal; {stats}; resources before {counts}",
        o.name,
        echo_mib(),
        out(o, "echo.rate")?
    );
    Ok(())
}

pub fn scenarios() -> Vec<Scenario> {
    vec![Mode::Pv
        .scenario("net")
        .timeout_secs(300)
        .extra("test=net")
        .config_line("vif = ['bridge=xenbr0,mac=00:16:3e:58:00:02']")
        .dom0_script(script())
        .marker("net: closed")
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
        .check(check)]
}
