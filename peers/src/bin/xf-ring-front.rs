//! xf-ring-front <domid> <xenstore-dir> <count> [--timeout-ms T] [--kick-ms K]
//!               [--wait-ms W]
//!
//! Demo frontend (reverse direction): allocate the ring page with gntalloc,
//! offer an unbound event channel to <domid>, publish `ring-ref` and
//! `event-channel` under <xenstore-dir>, send <count> requests (keeping the
//! ring full, waiting for space) and validate every response.
//! See docs/peers.md.

use std::time::Instant;
use xen_peers::args::{parse_domid, parse_num, Args};
use xen_peers::demo::{Msg, Tracker};
use xen_peers::peer::{run_front, FrontCfg, FrontError, PortChannel};
use xen_peers::ring::{FrontRing, PVT};
use xen_peers::{die, ms, per_sec, xs, Evtchn, Gntalloc};

const TAG: &str = "ring-front";

struct Opts {
    domid: u16,
    dir: String,
    count: u32,
    timeout_ms: u64,
    kick_ms: u64,
    wait_ms: u64,
}

fn parse(argv: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    let a = Args::parse(argv, &["timeout-ms", "kick-ms", "wait-ms"], &[])?;
    a.expect_positional(&["domid", "xenstore-dir", "count"])?;
    let count = parse_num(&a.positional[2])?;
    Ok(Opts {
        domid: parse_domid(&a.positional[0])?,
        dir: a.positional[1].trim_end_matches('/').to_string(),
        count: u32::try_from(count).map_err(|_| format!("count too big: {count}"))?,
        timeout_ms: a.num_or("timeout-ms", 60_000)?,
        kick_ms: a.num_or("kick-ms", 1_000)?.max(1),
        wait_ms: a.num_or("wait-ms", 0)?,
    })
}

fn fail(t: &Tracker, why: impl std::fmt::Display) -> ! {
    println!(
        "{TAG}: {}/{} ok, FAILED: {why} (sent {}, missing e.g. {:x?})",
        t.answered(),
        t.total(),
        t.sent(),
        t.missing(8)
    );
    std::process::exit(1)
}

fn main() {
    let o = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!(
            "usage: xf-ring-front <domid> <xenstore-dir> <count> [--timeout-ms T] [--kick-ms K] \
             [--wait-ms W]"
        );
        die(TAG, e)
    });
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    let port = ev
        .bind_unbound(o.domid)
        .unwrap_or_else(|e| die(TAG, format!("alloc unbound port for dom {}: {e}", o.domid)));
    let ga = Gntalloc::open().unwrap_or_else(|e| die(TAG, format!("open gntalloc: {e}")));
    // On unmap (our exit, however it happens) the kernel clears the "front
    // alive" byte and signals the guest.
    let page = ga
        .alloc(o.domid, 1, true, Some(PVT), Some(port))
        .unwrap_or_else(|e| die(TAG, format!("gntalloc: {e}")));
    let gref = page.refs()[0];
    let mut ring: FrontRing<Msg, Msg> = FrontRing::init(page.mem());
    ring.mem().store_u8(PVT, 1);

    // Make the directory Dom0-owned and guest-readable first: keys created
    // under it by Dom0 inherit that, so both appear readable at once (one
    // xenstore-write transaction).
    let perms = xs::dom0_owned_readable_by(o.domid);
    let rr = format!("{}/ring-ref", o.dir);
    let ec = format!("{}/event-channel", o.dir);
    let publish = || -> std::io::Result<()> {
        xs::write(&[(o.dir.as_str(), "")])?;
        xs::chmod(&o.dir, &perms)?;
        xs::write(&[(&rr, &gref.to_string()), (&ec, &port.to_string())])?;
        xs::chmod(&rr, &perms)?;
        xs::chmod(&ec, &perms)
    };
    publish().unwrap_or_else(|e| die(TAG, format!("publish: {e}")));
    println!(
        "{TAG}: published {rr} = {gref}, {ec} = {port} for dom {} (slots {})",
        o.domid,
        ring.size()
    );
    if o.wait_ms > 0 {
        // Give the guest time to connect before the first request.
        std::thread::sleep(ms(o.wait_ms));
    }

    let mut t = Tracker::new(o.count);
    let cfg = FrontCfg {
        timeout: ms(o.timeout_ms),
        kick: ms(o.kick_ms),
    };
    let mut ch = PortChannel { ev: &ev, port };
    let start = Instant::now();
    let st = match run_front(&mut ring, &mut ch, &mut t, &cfg) {
        Ok(st) => st,
        Err(FrontError::Io(e)) => die(TAG, e),
        Err(e) => fail(&t, e),
    };
    let el = start.elapsed();
    println!("{TAG}: {}/{} ok", t.answered(), t.total());
    println!(
        "{TAG}: {} requests in {} ms ({} req/s), {} notifications sent, {} events received, \
         {} kicks",
        t.total(),
        el.as_millis(),
        per_sec(t.total().into(), el),
        st.notifies,
        st.events,
        st.kicks
    );
    drop(page);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let v = |s: &[&str]| parse(s.iter().map(|x| x.to_string()));
        let o = v(&["7", "/local/domain/7/data/ring/", "1000", "--kick-ms", "0"]).unwrap();
        assert_eq!((o.domid, o.count), (7, 1000));
        assert_eq!(o.dir, "/local/domain/7/data/ring");
        assert_eq!(o.kick_ms, 1);
        assert_eq!(o.timeout_ms, 60_000);
        assert!(v(&["7", "dir"]).is_err());
        assert!(v(&["7", "dir", "0x100000000"]).is_err());
    }
}
