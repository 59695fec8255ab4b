//! vchan-echo: an echo service on a vchan. Dom0 (or any domain allowed by
//! `client=`) reaches it with the stock `vchan-socket-proxy`; connections
//! are served one after another until `xl shutdown` / `xl reboot`.
//!
//! Words (`extra=`): `path=<xenstore dir>` (default `data/vchan`, relative
//! to this domain's home), `client=<domid>` (default 0), `idle=<secs>`
//! (drop a silent connection after this long, default 60).
//!
//! A client that dies at any moment, even in the middle of the handshake,
//! costs only its own connection: the service is listening again at once.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use xenfront::control::{self, ShutdownRequest};
use xenfront::time::{self, NS_PER_MS, NS_PER_SEC};
use xenfront::vchan::{self, Vchan, VchanError};
use xenfront::{grant_table, println, Error};

/// How long one wait lasts before the service looks for a shutdown request.
const SLICE_NS: u64 = 500 * NS_PER_MS;

/// How a connection ended.
enum End {
    /// The client closed it (or died); `bytes` were echoed.
    Done { bytes: u64, why: VchanError },
    /// The client said nothing for the idle limit.
    Idle { bytes: u64 },
    /// The toolstack asked us to stop.
    Shutdown(ShutdownRequest),
}

fn serve() -> Result<(), Error> {
    let path = xenfront::arg("path").unwrap_or("data/vchan");
    let client = u16::try_from(xenfront::arg_num::<u32>("client", 0)?)
        .map_err(|_| Error::msg("client=: not a domain id"))?;
    let idle_ns = u64::from(xenfront::arg_num::<u32>("idle", 60)?.max(1)) * NS_PER_SEC;
    let base = grant_table::counters()?.in_use;
    println!("vchan-echo: serving {path} for domain {client}");
    let mut n = 0u64;
    let request = loop {
        let mut v =
            vchan::listen(client, path, 0, 0).map_err(|e| Error::from(e).context("listen"))?;
        println!("vchan-echo: listening (connection {n})");
        let end = accept(&mut v).map(|()| {
            println!("vchan-echo: connection {n}: connected");
            echo(&mut v, idle_ns)
        });
        v.close();
        // The client may still map our pages for a moment: reclaim what
        // it released (the rest is reclaimed on a later pass).
        grant_table::poll_deferred();
        match end {
            Ok(End::Done { bytes, why }) => {
                println!("vchan-echo: connection {n}: echoed {bytes} bytes, {why}")
            }
            Ok(End::Idle { bytes }) => {
                println!("vchan-echo: connection {n}: echoed {bytes} bytes, idle, dropped")
            }
            Ok(End::Shutdown(r)) => break r,
            Err(Some(r)) => break r,
            Err(None) => println!("vchan-echo: connection {n}: client left during the handshake"),
        }
        n += 1;
    };
    let deadline = time::now_ns() + 5 * NS_PER_SEC;
    while grant_table::counters()?.in_use > base && time::now_ns() < deadline {
        grant_table::poll_deferred();
        time::sleep(10 * NS_PER_MS);
    }
    let c = grant_table::counters()?;
    println!(
        "vchan-echo: {} requested after {n} connection(s); grants in_use {} (baseline {base}), deferred {}",
        request.name(),
        c.in_use,
        c.deferred
    );
    match request {
        ShutdownRequest::Poweroff => Ok(()),
        other => control::obey(other),
    }
}

/// Waits for a client. `Err(Some(_))`: shutdown requested; `Err(None)`:
/// the client went away before the handshake finished.
fn accept(v: &mut Vchan) -> Result<(), Option<ShutdownRequest>> {
    loop {
        if let Some(r) = control::poll() {
            return Err(Some(r));
        }
        match v.wait_connected(SLICE_NS) {
            Ok(()) => return Ok(()),
            Err(VchanError::Timeout { .. }) => {}
            Err(_) => return Err(None),
        }
    }
}

/// Echoes until the client closes, goes silent for `idle_ns`, or a
/// shutdown is requested.
fn echo(v: &mut Vchan, idle_ns: u64) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let (mut head, mut tail) = (0usize, 0usize);
    let mut bytes = 0u64;
    let mut last = time::now_ns();
    loop {
        if let Some(r) = control::poll() {
            return End::Shutdown(r);
        }
        let (out, inp) = buf.split_at_mut(tail);
        match v.pump(&out[head..], inp, SLICE_NS) {
            Ok((w, r)) => {
                head += w;
                tail += r;
                bytes += w as u64;
                last = time::now_ns();
                if head == tail {
                    (head, tail) = (0, 0);
                } else if tail == buf.len() {
                    buf.copy_within(head..tail, 0);
                    (head, tail) = (0, tail - head);
                }
            }
            Err(VchanError::Timeout { .. }) if time::now_ns() - last < idle_ns => {}
            Err(VchanError::Timeout { .. }) => return End::Idle { bytes },
            Err(why) => return End::Done { bytes, why },
        }
    }
}

xenfront::main!(serve);
