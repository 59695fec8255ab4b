//! xf-ring-back <domid> [<xenstore-dir>] [--ring-ref R] [--event-channel P]
//!              [--count N] [--idle-ms T] [--wait-ms W]
//!              [--die-after N] [--bad-index] [--bad-id] [--bad-at K] [--hold-ms H]
//!              [--cycles C]
//!
//! Demo backend: map the guest's io/ring.h ring (12-byte `{id, status,
//! operation}` entries), bind its event channel, answer each request with
//! `status + 1`. See docs/peers.md for the output lines and exit codes.
//! `--cycles C`: serve C connections one after another, connection `i`
//! (from 1) once `<xenstore-dir>/cycle` reads `i`, each with its own
//! ring-ref and event-channel from the same directory; one summary line.

use std::time::Instant;
use xen_peers::args::{parse_domid, Args};
use xen_peers::demo::Msg;
use xen_peers::peer::{serve_back, BackCfg, BackEnd, BackStats, Fault, PortChannel};
use xen_peers::ring::BackRing;
use xen_peers::{die, ms, per_sec, xs, Evtchn, Gntdev};

const TAG: &str = "ring-back";

#[derive(Debug)]
struct Opts {
    domid: u16,
    /// From --ring-ref, else read from XenStore.
    ring_ref: Option<u32>,
    /// From --event-channel, else read from XenStore.
    port: Option<u32>,
    count: Option<u64>,
    idle_ms: u64,
    die_after: Option<u64>,
    fault: Fault,
    hold_ms: u64,
    cycles: Option<u64>,
}

const USAGE: &str = "usage: xf-ring-back <domid> [<xenstore-dir>] [--ring-ref R] [--event-channel P] \
[--count N] [--idle-ms T] [--wait-ms W] [--die-after N] [--bad-index|--bad-id] [--bad-at K] [--hold-ms H] \
[--cycles C]";

fn parse(argv: impl IntoIterator<Item = String>) -> Result<(Opts, Option<(String, u64)>), String> {
    let a = Args::parse(
        argv,
        &[
            "ring-ref",
            "event-channel",
            "count",
            "idle-ms",
            "wait-ms",
            "die-after",
            "bad-at",
            "hold-ms",
            "cycles",
        ],
        &["bad-index", "bad-id"],
    )?;
    if a.positional.is_empty() || a.positional.len() > 2 {
        return Err("expected <domid> [<xenstore-dir>]".into());
    }
    let domid = parse_domid(&a.positional[0])?;
    let dir = a.positional.get(1).cloned();
    let rr = a.num("ring-ref")?;
    let ec = a.num("event-channel")?;
    // What to look up in XenStore: (dir, wait-ms) unless both were given.
    let lookup = match (rr, ec, &dir) {
        (Some(_), Some(_), _) => None,
        (_, _, Some(d)) => Some((d.clone(), a.num_or("wait-ms", 30_000)?)),
        _ => return Err("need <xenstore-dir> or both --ring-ref and --event-channel".into()),
    };
    let at = a.num_or("bad-at", 0)?;
    let fault = match (a.flag("bad-index"), a.flag("bad-id")) {
        (true, true) => return Err("--bad-index and --bad-id are exclusive".into()),
        (true, false) => Fault::BadIndex { at },
        (false, true) => Fault::BadId { at },
        (false, false) => Fault::None,
    };
    let to_u32 = |v: Option<u64>, what: &str| {
        v.map(|v| u32::try_from(v).map_err(|_| format!("{what} too big: {v}")))
            .transpose()
    };
    Ok((
        Opts {
            domid,
            ring_ref: to_u32(rr, "ring-ref")?,
            port: to_u32(ec, "event-channel")?,
            count: a.num("count")?,
            idle_ms: a.num_or("idle-ms", 10_000)?,
            die_after: a.num("die-after")?,
            fault,
            hold_ms: a.num_or("hold-ms", 2_000)?,
            cycles: a.num("cycles")?,
        },
        lookup,
    ))
}

fn summary(st: &BackStats, start: Instant) {
    let el = start.elapsed();
    println!(
        "{TAG}: answered {} requests, sent {} notifications, received {} events in {} ms ({} req/s)",
        st.answered,
        st.notifies,
        st.events,
        el.as_millis(),
        per_sec(st.answered, el)
    );
}

fn main() {
    let (o, lookup) = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{USAGE}");
        die(TAG, e)
    });
    let get = |given: Option<u32>, key: &str| -> u32 {
        if let Some(v) = given {
            return v;
        }
        let (dir, wait) = lookup.as_ref().expect("parse() demands a dir");
        let path = format!("{}/{key}", dir.trim_end_matches('/'));
        let v = xs::wait_read_num(&path, ms(*wait))
            .unwrap_or_else(|e| die(TAG, format!("read {path}: {e}")));
        u32::try_from(v).unwrap_or_else(|_| die(TAG, format!("{path} out of range: {v}")))
    };
    let gnt = Gntdev::open().unwrap_or_else(|e| die(TAG, format!("open gntdev: {e}")));
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    let Some(cycles) = o.cycles else {
        let ring_ref = get(o.ring_ref, "ring-ref");
        let port = get(o.port, "event-channel");
        std::process::exit(serve(&o, &gnt, &ev, ring_ref, port, true));
    };
    let Some((dir, wait)) = lookup.as_ref() else {
        die(TAG, "--cycles needs <xenstore-dir>")
    };
    let dir = dir.trim_end_matches('/');
    let keys = [
        format!("{dir}/cycle"),
        format!("{dir}/ring-ref"),
        format!("{dir}/event-channel"),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let start = Instant::now();
    for i in 1..=cycles {
        // The guest publishes cycle i with its ring (one transaction):
        // poll all three keys with one xenstore-read.
        let t0 = Instant::now();
        let (ring_ref, port) = loop {
            if let Ok(v) = xs::read_many(&keys) {
                if v[0] == i.to_string() {
                    let num = |s: &str, k: &str| {
                        s.parse::<u32>()
                            .unwrap_or_else(|_| die(TAG, format!("cycle {i}: {k} = {s:?}")))
                    };
                    break (num(&v[1], keys[1]), num(&v[2], keys[2]));
                }
            }
            if t0.elapsed() >= ms(*wait) {
                die(TAG, format!("cycle {i}: {} never read {i}", keys[0]));
            }
            std::thread::sleep(ms(5));
        };
        let code = serve(&o, &gnt, &ev, ring_ref, port, false);
        if code != 0 {
            println!("{TAG}: cycle {i} failed");
            std::process::exit(code);
        }
    }
    let el = start.elapsed();
    println!(
        "{TAG}: {cycles} cycles of {} requests in {} ms ({} cycles/s)",
        o.count.unwrap_or(0),
        el.as_millis(),
        per_sec(cycles, el)
    );
}

/// One connection: map, bind, serve, unmap. The exit code of the run.
fn serve(o: &Opts, gnt: &Gntdev, ev: &Evtchn, ring_ref: u32, port: u32, verbose: bool) -> i32 {
    let map = gnt
        .map(o.domid, &[ring_ref], true)
        .unwrap_or_else(|e| die(TAG, format!("map ring-ref {}: {e}", ring_ref)));
    let local = ev
        .bind_interdomain(o.domid, port)
        .unwrap_or_else(|e| die(TAG, format!("bind dom {} port {}: {e}", o.domid, port)));
    // If this process dies, the kernel unmaps the ring and signals the guest.
    map.set_unmap_notify(None, Some(local))
        .unwrap_or_else(|e| die(TAG, e));
    let mut ring: BackRing<Msg, Msg> = BackRing::attach(map.mem());
    if verbose {
        println!(
            "{TAG}: connected dom {} ring-ref {} port {} local-port {local} slots {}",
            o.domid,
            ring_ref,
            port,
            ring.size()
        );
    }

    let cfg = BackCfg {
        count: o.count,
        idle: ms(o.idle_ms),
        die_after: o.die_after,
        fault: o.fault,
    };
    let mut ch = PortChannel { ev, port: local };
    let start = Instant::now();
    let (end, st) = serve_back(&mut ring, &mut ch, &cfg, &mut |l| println!("{TAG}: {l}"))
        .unwrap_or_else(|e| die(TAG, e));
    let code = match end {
        BackEnd::Count => 0,
        BackEnd::Idle => {
            println!("{TAG}: idle for {} ms", o.idle_ms);
            i32::from(o.count.is_some())
        }
        BackEnd::Protocol(e) => {
            println!("{TAG}: protocol error: {e}");
            1
        }
        BackEnd::BadIndexPublished { value, req_cons } => {
            println!("{TAG}: published bad rsp_prod {value} (valid at most {req_cons})");
            std::thread::sleep(ms(o.hold_ms));
            0
        }
        BackEnd::Die => {
            // Abrupt exit: no unmap/unbind by us; the kernel tears down the
            // mapping (firing the unmap notify) and the port.
            println!("{TAG}: dying after {} requests", st.answered);
            summary(&st, start);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(3) }
        }
    };
    if verbose || code != 0 {
        summary(&st, start);
    }
    let _ = map.unmap();
    let _ = ev.unbind(local);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<(Opts, Option<(String, u64)>), String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn lookup_or_explicit() {
        let (o, l) = p(&["5", "/local/domain/5/data/ring"]).unwrap();
        assert_eq!(o.domid, 5);
        assert_eq!(l, Some(("/local/domain/5/data/ring".into(), 30_000)));
        let (o, l) = p(&["5", "--ring-ref", "9", "--event-channel", "0x11"]).unwrap();
        assert_eq!((o.ring_ref, o.port, l), (Some(9), Some(17), None));
        assert!(p(&["5"]).is_err());
        assert!(p(&["5", "--ring-ref", "9"]).is_err());
    }

    #[test]
    fn faults() {
        let (o, _) = p(&["1", "d", "--bad-id", "--bad-at", "3"]).unwrap();
        assert_eq!(o.fault, Fault::BadId { at: 3 });
        let (o, _) = p(&["1", "d", "--bad-index"]).unwrap();
        assert_eq!(o.fault, Fault::BadIndex { at: 0 });
        assert!(p(&["1", "d", "--bad-index", "--bad-id"]).is_err());
        let (o, _) = p(&["1", "d", "--die-after", "10", "--count", "20"]).unwrap();
        assert_eq!((o.die_after, o.count), (Some(10), Some(20)));
    }
}
