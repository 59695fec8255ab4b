//! xf-evtchn-storm <domid> <remote-port> <secs>
//!
//! A hostile peer: bind to <domid>'s unbound port and notify it as fast as
//! possible for <secs> seconds, whatever the other side does (a closed
//! remote end turns the sends into no-ops in Xen). Prints the count and
//! the rate. Exit 0 done, 2 error. See docs/peers.md.

use std::time::{Duration, Instant};
use xen_peers::args::{parse_domid, parse_num, Args};
use xen_peers::{die, per_sec, Evtchn};

const TAG: &str = "evtchn-storm";

fn main() {
    let a = Args::parse(std::env::args().skip(1), &[], &[])
        .and_then(|a| {
            a.expect_positional(&["domid", "remote-port", "secs"])?;
            Ok(a)
        })
        .unwrap_or_else(|e| {
            eprintln!("usage: xf-evtchn-storm <domid> <remote-port> <secs>");
            die(TAG, e)
        });
    let domid = parse_domid(&a.positional[0]).unwrap_or_else(|e| die(TAG, e));
    let rport = parse_num(&a.positional[1]).unwrap_or_else(|e| die(TAG, e));
    let rport = u32::try_from(rport).unwrap_or_else(|_| die(TAG, format!("port {rport}")));
    let secs = parse_num(&a.positional[2]).unwrap_or_else(|e| die(TAG, e));
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    let local = ev
        .bind_interdomain(domid, rport)
        .unwrap_or_else(|e| die(TAG, format!("bind dom {domid} port {rport}: {e}")));
    println!("{TAG}: bound dom {domid} port {rport} -> local port {local}");
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        for _ in 0..64 {
            match ev.notify(local) {
                Ok(()) => sent += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let dt = t0.elapsed();
    println!(
        "{TAG}: sent {sent} events in {} ms ({} /s), {failed} sends failed",
        dt.as_millis(),
        per_sec(sent, dt)
    );
    let _ = ev.unbind(local);
}
