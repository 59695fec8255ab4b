//! xf-ring-back <domid> [<xenstore-dir>] [--ring-ref R] [--event-channel P]
//!              [--count N] [--idle-ms T] [--wait-ms W]
//!              [--die-after N] [--bad-index] [--bad-id] [--bad-at K] [--hold-ms H]
//!
//! Demo backend: map the guest's io/ring.h ring (12-byte `{id, status,
//! operation}` entries), bind its event channel, answer each request with
//! `status + 1`. See docs/peers.md for the output lines and exit codes.

use std::time::Instant;
use xen_peers::args::{parse_domid, Args};
use xen_peers::demo::{answer, Msg};
use xen_peers::ring::BackRing;
use xen_peers::{die, ms, per_sec, xs, Evtchn, Gntdev};

const TAG: &str = "ring-back";

#[derive(Debug, PartialEq)]
enum Fault {
    None,
    /// Publish an out-of-range rsp_prod when answering request `at`.
    BadIndex {
        at: u64,
    },
    /// Answer request `at` with an id the guest never used.
    BadId {
        at: u64,
    },
}

#[derive(Debug)]
struct Opts {
    domid: u16,
    ring_ref: u32,
    port: u32,
    count: Option<u64>,
    idle_ms: u64,
    die_after: Option<u64>,
    fault: Fault,
    hold_ms: u64,
}

const USAGE: &str = "usage: xf-ring-back <domid> [<xenstore-dir>] [--ring-ref R] [--event-channel P] \
[--count N] [--idle-ms T] [--wait-ms W] [--die-after N] [--bad-index|--bad-id] [--bad-at K] [--hold-ms H]";

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
    let to_u32 = |v: u64, what: &str| u32::try_from(v).map_err(|_| format!("{what} too big: {v}"));
    Ok((
        Opts {
            domid,
            ring_ref: to_u32(rr.unwrap_or(0), "ring-ref")?,
            port: to_u32(ec.unwrap_or(0), "event-channel")?,
            count: a.num("count")?,
            idle_ms: a.num_or("idle-ms", 10_000)?,
            die_after: a.num("die-after")?,
            fault,
            hold_ms: a.num_or("hold-ms", 2_000)?,
        },
        lookup,
    ))
}

struct Stats {
    answered: u64,
    notifies: u64,
    events: u64,
    start: Instant,
}

impl Stats {
    fn summary(&self) {
        let el = self.start.elapsed();
        println!(
            "{TAG}: answered {} requests, sent {} notifications, received {} events in {} ms ({} req/s)",
            self.answered,
            self.notifies,
            self.events,
            el.as_millis(),
            per_sec(self.answered, el)
        );
    }
}

/// `--die-after`: exit abruptly, without unmapping or unbinding: the kernel
/// tears down the mapping (firing the unmap notify) and the port.
fn die_now(st: &Stats) -> ! {
    println!("{TAG}: dying after {} requests", st.answered);
    st.summary();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(3) }
}

fn main() {
    let (mut o, lookup) = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{USAGE}");
        die(TAG, e)
    });
    if let Some((dir, wait)) = lookup {
        let dir = dir.trim_end_matches('/');
        let get = |key: &str| {
            let path = format!("{dir}/{key}");
            xs::wait_read_num(&path, ms(wait))
                .unwrap_or_else(|e| die(TAG, format!("read {path}: {e}")))
        };
        let rr = get("ring-ref");
        let ec = get("event-channel");
        o.ring_ref = u32::try_from(rr).unwrap_or_else(|_| die(TAG, "ring-ref out of range"));
        o.port = u32::try_from(ec).unwrap_or_else(|_| die(TAG, "event-channel out of range"));
    }

    let gnt = Gntdev::open().unwrap_or_else(|e| die(TAG, format!("open gntdev: {e}")));
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    let map = gnt
        .map(o.domid, &[o.ring_ref], true)
        .unwrap_or_else(|e| die(TAG, format!("map ring-ref {}: {e}", o.ring_ref)));
    let local = ev
        .bind_interdomain(o.domid, o.port)
        .unwrap_or_else(|e| die(TAG, format!("bind dom {} port {}: {e}", o.domid, o.port)));
    // If this process dies, the kernel unmaps the ring and signals the guest.
    map.set_unmap_notify(None, Some(local))
        .unwrap_or_else(|e| die(TAG, e));
    let mut ring: BackRing<Msg, Msg> = BackRing::attach(map.mem());
    println!(
        "{TAG}: connected dom {} ring-ref {} port {} local-port {local} slots {}",
        o.domid,
        o.ring_ref,
        o.port,
        ring.size()
    );

    let mut st = Stats {
        answered: 0,
        notifies: 0,
        events: 0,
        start: Instant::now(),
    };
    if o.die_after == Some(0) {
        die_now(&st);
    }
    let notify = |st: &mut Stats| {
        ev.notify(local).unwrap_or_else(|e| die(TAG, e));
        st.notifies += 1;
    };

    loop {
        let reqs = match ring.take_requests() {
            Ok(r) => r,
            Err(e) => {
                println!("{TAG}: protocol error: {e}");
                st.summary();
                std::process::exit(1);
            }
        };
        for req in &reqs {
            let n = st.answered; // index of this request
            match o.fault {
                Fault::BadIndex { at } if at == n => {
                    if ring.push_responses() {
                        notify(&mut st);
                    }
                    let bad = ring.req_cons().wrapping_add(ring.size()).wrapping_add(1);
                    ring.publish_raw_rsp_prod(bad);
                    notify(&mut st);
                    println!(
                        "{TAG}: published bad rsp_prod {bad} (valid at most {})",
                        ring.req_cons()
                    );
                    std::thread::sleep(ms(o.hold_ms));
                    st.summary();
                    return;
                }
                Fault::BadId { at } if at == n => {
                    let mut r = answer(req);
                    r.id = !req.id;
                    ring.respond(&r);
                    println!(
                        "{TAG}: sent bad id {:#x} for request id {:#x}",
                        r.id, req.id
                    );
                }
                _ => ring.respond(&answer(req)),
            }
            st.answered += 1;
            if o.die_after == Some(st.answered) {
                if ring.push_responses() {
                    notify(&mut st);
                }
                die_now(&st);
            }
        }
        if !reqs.is_empty() && ring.push_responses() {
            notify(&mut st);
        }
        if o.count.is_some_and(|c| st.answered >= c) {
            break;
        }
        if !reqs.is_empty() || ring.final_check_requests() {
            continue;
        }
        match ev.wait(ms(o.idle_ms)) {
            Ok(Some(_)) => st.events += 1,
            Ok(None) => {
                println!("{TAG}: idle for {} ms", o.idle_ms);
                break;
            }
            Err(e) => die(TAG, format!("wait: {e}")),
        }
    }
    st.summary();
    let _ = map.unmap();
    let _ = ev.unbind(local);
    let short = o.count.is_some_and(|c| st.answered < c);
    std::process::exit(if short { 1 } else { 0 });
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
        assert_eq!((o.ring_ref, o.port, l), (9, 17, None));
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
