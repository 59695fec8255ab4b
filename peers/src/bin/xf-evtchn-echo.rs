//! xf-evtchn-echo <domid> <remote-port> <count> [--timeout-ms T] [--kick]
//!
//! Bind to <domid>'s unbound port, then answer each event with a notify
//! (ping-pong) until <count> events were echoed. Exit 0 done, 1 timeout,
//! 2 error. See docs/peers.md.

use std::time::Instant;
use xen_peers::args::{parse_domid, parse_num, Args};
use xen_peers::{die, ms, per_sec, Evtchn};

const TAG: &str = "evtchn-echo";

fn main() {
    let a = Args::parse(std::env::args().skip(1), &["timeout-ms"], &["kick"])
        .and_then(|a| {
            a.expect_positional(&["domid", "remote-port", "count"])?;
            Ok(a)
        })
        .unwrap_or_else(|e| {
            eprintln!(
                "usage: xf-evtchn-echo <domid> <remote-port> <count> [--timeout-ms T] [--kick]"
            );
            die(TAG, e)
        });
    let domid = parse_domid(&a.positional[0]).unwrap_or_else(|e| die(TAG, e));
    let rport = parse_num(&a.positional[1]).unwrap_or_else(|e| die(TAG, e)) as u32;
    let count = parse_num(&a.positional[2]).unwrap_or_else(|e| die(TAG, e));
    let timeout = ms(a
        .num_or("timeout-ms", 10_000)
        .unwrap_or_else(|e| die(TAG, e)));

    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    let local = ev
        .bind_interdomain(domid, rport)
        .unwrap_or_else(|e| die(TAG, format!("bind dom {domid} port {rport}: {e}")));
    println!("{TAG}: bound dom {domid} port {rport} -> local port {local}");

    let mut start = None;
    if a.flag("kick") {
        start = Some(Instant::now());
        ev.notify(local).unwrap_or_else(|e| die(TAG, e));
        println!("{TAG}: kicked");
    }
    let mut done = 0u64;
    let mut other = 0u64;
    while done < count {
        match ev.wait(timeout) {
            Ok(Some(p)) if p == local => {
                start.get_or_insert_with(Instant::now);
                ev.notify(local).unwrap_or_else(|e| die(TAG, e));
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
