//! xf-evtchn-echo <domid> <remote-port> <count> [--timeout-ms T] [--kick|--start]
//! xf-evtchn-echo <domid> --offer <count> [--timeout-ms T] [--kick-ms K] [--port-key PATH]
//!
//! Echo mode: bind to <domid>'s unbound port, then answer each event with a
//! notify until <count> events were echoed. --start: first absorb the
//! bind-time event, then notify once; the peer pings only after that.
//! Offer mode: allocate an unbound port for <domid> (print it / write it to
//! XenStore), ping it until the peer binds, then ping-pong <count> times.
//! Exit 0 done, 1 timeout, 2 error. See docs/peers.md.

use std::time::Instant;
use xen_peers::args::{parse_domid, parse_num, Args};
use xen_peers::{die, ms, per_sec, xs, Evtchn};

const TAG: &str = "evtchn-echo";
const USAGE: &str =
    "usage: xf-evtchn-echo <domid> <remote-port> <count> [--timeout-ms T] [--kick|--start]\n       \
xf-evtchn-echo <domid> --offer <count> [--timeout-ms T] [--kick-ms K] [--port-key PATH]";

fn main() {
    let a = Args::parse(
        std::env::args().skip(1),
        &["timeout-ms", "kick-ms", "port-key"],
        &["kick", "offer", "start"],
    )
    .and_then(|a| {
        if a.flag("offer") {
            a.expect_positional(&["domid", "count"])?;
        } else {
            a.expect_positional(&["domid", "remote-port", "count"])?;
        }
        Ok(a)
    })
    .unwrap_or_else(|e| {
        eprintln!("{USAGE}");
        die(TAG, e)
    });
    let domid = parse_domid(&a.positional[0]).unwrap_or_else(|e| die(TAG, e));
    let count = parse_num(a.positional.last().unwrap()).unwrap_or_else(|e| die(TAG, e));
    let timeout = ms(a
        .num_or("timeout-ms", 10_000)
        .unwrap_or_else(|e| die(TAG, e)));
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));

    let offer = a.flag("offer");
    let local = if offer {
        let local = ev
            .bind_unbound(domid)
            .unwrap_or_else(|e| die(TAG, format!("alloc unbound port for dom {domid}: {e}")));
        println!("{TAG}: offered local port {local} to dom {domid}");
        if let Some(key) = a.opt("port-key") {
            xs::write(&[(key, &local.to_string())]).unwrap_or_else(|e| die(TAG, e));
            xs::chmod(key, &xs::dom0_owned_readable_by(domid)).unwrap_or_else(|e| die(TAG, e));
            println!("{TAG}: wrote {key} = {local}");
        }
        local
    } else {
        let rport = parse_num(&a.positional[1]).unwrap_or_else(|e| die(TAG, e)) as u32;
        let local = ev
            .bind_interdomain(domid, rport)
            .unwrap_or_else(|e| die(TAG, format!("bind dom {domid} port {rport}: {e}")));
        println!("{TAG}: bound dom {domid} port {rport} -> local port {local}");
        local
    };

    let mut start = None;
    if offer {
        // Ping until the first answer: pings sent before the peer binds are
        // dropped by Xen. Kicks stop at the first event.
        let kick = ms(a
            .num_or("kick-ms", 500)
            .unwrap_or_else(|e| die(TAG, e))
            .max(1));
        let t0 = Instant::now();
        loop {
            ev.notify(local).unwrap_or_else(|e| die(TAG, e));
            match ev.wait(kick) {
                Ok(Some(_)) => break,
                Ok(None) if t0.elapsed() < timeout => continue,
                Ok(None) => {
                    println!("{TAG}: timeout after 0/{count} round trips (peer never answered)");
                    std::process::exit(1);
                }
                Err(e) => die(TAG, format!("wait: {e}")),
            }
        }
        start = Some(Instant::now());
    } else if a.flag("start") {
        // Xen's bind_interdomain always sets the binder's port pending (it
        // may have missed events on the unbound port): one event the guest
        // never sent. Answering it would put a second event in flight and
        // the counts could drift by one. The guest sends nothing before our
        // start notify, so exactly this one event arrives first: absorb it.
        match ev.wait(timeout) {
            Ok(Some(p)) if p == local => {}
            Ok(Some(p)) => die(TAG, format!("bind-time event on port {p}, not {local}")),
            Ok(None) => {
                println!(
                    "{TAG}: timeout after 0/{count} round trips (no bind-time event in {} ms)",
                    timeout.as_millis()
                );
                let _ = ev.unbind(local);
                std::process::exit(1);
            }
            Err(e) => die(TAG, format!("wait: {e}")),
        }
        start = Some(Instant::now());
        ev.notify(local).unwrap_or_else(|e| die(TAG, e));
        println!("{TAG}: absorbed the bind-time event, sent start");
    } else if a.flag("kick") {
        start = Some(Instant::now());
        ev.notify(local).unwrap_or_else(|e| die(TAG, e));
        println!("{TAG}: kicked");
    }
    // Offer mode has already seen round trip 1.
    let mut done = u64::from(offer);
    let mut other = 0u64;
    while done < count {
        if offer {
            ev.notify(local).unwrap_or_else(|e| die(TAG, e));
        }
        match ev.wait(timeout) {
            Ok(Some(p)) if p == local => {
                start.get_or_insert_with(Instant::now);
                if !offer {
                    ev.notify(local).unwrap_or_else(|e| die(TAG, e));
                }
                done += 1;
            }
            Ok(Some(_)) => other += 1,
            Ok(None) => {
                println!(
                    "{TAG}: timeout after {done}/{count} round trips ({} ms without an event)",
                    timeout.as_millis()
                );
                let _ = ev.unbind(local);
                std::process::exit(1);
            }
            Err(e) => die(TAG, format!("wait: {e}")),
        }
    }
    let el = start.map(|s| s.elapsed()).unwrap_or_default();
    println!(
        "{TAG}: {done}/{count} round trips in {} ms ({} round trips/s)",
        el.as_millis(),
        per_sec(done, el)
    );
    if other > 0 {
        println!("{TAG}: {other} events on other ports ignored");
    }
    let _ = ev.unbind(local);
}
