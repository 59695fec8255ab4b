//! xf-vchan-pump (--connect PATH | --listen PATH) --in FILE [--out FILE]
//!               [--pings N] [--ping-size S] [--timeout-ms T] [--hold]
//!
//! Drives an echo peer through a Unix stream socket (the socket side of
//! `vchan-socket-proxy`): first `--pings` round trips of `--ping-size`
//! bytes (write, read the same bytes back), then the whole of `--in`
//! written by one thread while the main thread reads the echo back,
//! counting bytes (no reliance on close: the proxy drops what is still in
//! the ring when a side closes). The echo must equal the input; `--out`
//! receives it (for `sha256sum`). `--listen` accepts one connection (the
//! proxy in server mode connects to it); `--hold` then keeps the
//! connection open until the peer closes it (so a test can kill the proxy
//! mid-connection). See docs/peers.md.
//!
//! `xf-vchan-pump --listen PATH --echo` is the other end instead: accept
//! connections forever and echo each one (inside a Linux domU, behind a
//! server-mode proxy, for the baseline measurement).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use xen_peers::args::Args;
use xen_peers::die;
use xen_peers::pattern::fnv1a64;

const TAG: &str = "vchan-pump";

struct Opts {
    connect: Option<String>,
    listen: Option<String>,
    input: String,
    out: Option<String>,
    pings: u64,
    ping_size: usize,
    timeout: Duration,
    hold: bool,
    echo: bool,
}

fn parse(argv: impl IntoIterator<Item = String>) -> Result<Opts, String> {
    let a = Args::parse(
        argv,
        &[
            "connect",
            "listen",
            "in",
            "out",
            "pings",
            "ping-size",
            "timeout-ms",
        ],
        &["hold", "echo"],
    )?;
    a.expect_positional(&[])?;
    let o = Opts {
        connect: a.opt("connect").map(String::from),
        listen: a.opt("listen").map(String::from),
        input: a.opt("in").unwrap_or_default().to_string(),
        out: a.opt("out").map(String::from),
        pings: a.num_or("pings", 0)?,
        ping_size: a.num_or("ping-size", 64)?.clamp(1, 65536) as usize,
        timeout: Duration::from_millis(a.num_or("timeout-ms", 60_000)?),
        hold: a.flag("hold"),
        echo: a.flag("echo"),
    };
    if o.echo && o.listen.is_none() {
        return Err("--echo needs --listen PATH".into());
    }
    if !o.echo && o.input.is_empty() {
        return Err("--in FILE is required".into());
    }
    if o.connect.is_some() == o.listen.is_some() {
        return Err("give exactly one of --connect PATH, --listen PATH".into());
    }
    Ok(o)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    println!("{TAG}: FAILED: {msg}");
    std::process::exit(1)
}

/// Reads exactly `buf.len()` bytes; a timeout or EOF fails the run.
fn read_exact(s: &mut UnixStream, buf: &mut [u8], what: &str) {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => fail(format_args!("{what}: EOF after {got}/{} bytes", buf.len())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => fail(format_args!("{what}: after {got}/{} bytes: {e}", buf.len())),
        }
    }
}

/// `--echo`: serve every connection on `path`, one thread each.
fn echo_forever(path: &str) -> ! {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).unwrap_or_else(|e| die(TAG, format!("bind {path}: {e}")));
    println!("{TAG}: echoing on {path}");
    loop {
        let Ok((mut s, _)) = l.accept() else { continue };
        std::thread::spawn(move || {
            let mut w = s.try_clone().expect("clone socket");
            let n = std::io::copy(&mut s, &mut w).unwrap_or(0);
            println!("{TAG}: echoed {n} bytes");
        });
    }
}

fn main() {
    let o = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!(
            "usage: xf-vchan-pump (--connect PATH | --listen PATH) --in FILE [--out FILE] \
             [--pings N] [--ping-size S] [--timeout-ms T] [--hold]\n       \
             xf-vchan-pump --listen PATH --echo"
        );
        die(TAG, e)
    });
    if o.echo {
        echo_forever(o.listen.as_deref().unwrap_or_default());
    }
    let data = std::fs::read(&o.input).unwrap_or_else(|e| die(TAG, format!("{}: {e}", o.input)));
    let mut s = if let Some(p) = &o.connect {
        UnixStream::connect(p).unwrap_or_else(|e| die(TAG, format!("connect {p}: {e}")))
    } else {
        let p = o.listen.as_deref().unwrap_or_default();
        let _ = std::fs::remove_file(p);
        let l = UnixListener::bind(p).unwrap_or_else(|e| die(TAG, format!("bind {p}: {e}")));
        println!("{TAG}: listening on {p}");
        let (s, _) = l
            .accept()
            .unwrap_or_else(|e| die(TAG, format!("accept {p}: {e}")));
        s
    };
    println!("{TAG}: connected");
    s.set_read_timeout(Some(o.timeout))
        .unwrap_or_else(|e| die(TAG, e));

    if o.pings > 0 {
        let mut buf = vec![0u8; o.ping_size];
        let t0 = Instant::now();
        for i in 0..o.pings {
            let msg: Vec<u8> = (0..o.ping_size)
                .map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8)
                .collect();
            s.write_all(&msg)
                .unwrap_or_else(|e| fail(format_args!("ping {i}: write: {e}")));
            read_exact(&mut s, &mut buf, &format!("ping {i}"));
            if buf != msg {
                fail(format_args!("ping {i}: echo differs"));
            }
        }
        let dt = t0.elapsed();
        println!(
            "{TAG}: pings {}/{} ok ({} bytes each) in {} ms ({:.1} round trips/s)",
            o.pings,
            o.pings,
            o.ping_size,
            dt.as_millis(),
            o.pings as f64 / dt.as_secs_f64()
        );
    }

    let n = data.len();
    let t0 = Instant::now();
    let mut w = s.try_clone().unwrap_or_else(|e| die(TAG, e));
    let data = std::sync::Arc::new(data);
    let d2 = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&d2));
    let mut back = vec![0u8; n];
    let mut got = 0usize;
    while got < n {
        match s.read(&mut back[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                println!("{TAG}: read: {e}");
                break;
            }
        }
    }
    let dt = t0.elapsed();
    let wr = writer
        .join()
        .unwrap_or_else(|_| die(TAG, "writer panicked"));
    if let Some(p) = &o.out {
        std::fs::write(p, &back[..got]).unwrap_or_else(|e| die(TAG, format!("{p}: {e}")));
    }
    let verdict = if got < n {
        format!("SHORT ({got}/{n} bytes)")
    } else if back != *data {
        let off = back.iter().zip(data.iter()).position(|(a, b)| a != b);
        format!("MISMATCH at offset {}", off.unwrap_or(0))
    } else {
        "match".to_string()
    };
    println!(
        "{TAG}: sent {n} bytes, echoed {got} bytes in {} ms ({:.3} MB/s each way), fnv1a64 {:016x} {:016x} {verdict}",
        dt.as_millis(),
        got as f64 / 1e6 / dt.as_secs_f64().max(1e-9),
        fnv1a64(&data),
        fnv1a64(&back[..got]),
    );
    if let Err(e) = wr {
        fail(format_args!("write: {e}"));
    }
    if verdict != "match" {
        std::process::exit(1);
    }
    if o.hold {
        // Until the peer closes (e.g. the proxy is killed).
        println!("{TAG}: holding");
        let _ = s.set_read_timeout(None);
        let mut b = [0u8; 256];
        let extra = s.read(&mut b).unwrap_or(0);
        if extra > 0 {
            fail(format_args!("{extra} unexpected bytes while holding"));
        }
        println!("{TAG}: peer closed");
    }
}
