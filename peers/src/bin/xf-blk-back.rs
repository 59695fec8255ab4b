//! xf-blk-back <domid> <devid> --faults F[,F...] [--wait-ms W]
//!
//! A hostile block backend: plays Linux blkback's side of the XenBus
//! handshake for a virtual disk `device/vbd/<devid>` that it creates itself
//! (frontend and backend directories, with libxl's permissions; the backend
//! under `backend/xf-blk/`, as qdisk disks live under `backend/qdisk/`, so
//! that Dom0's xen-blkback leaves it alone), maps the
//! guest's ring (one page or `ring-page-order` pages) and binds its event
//! channel, then answers the first request of each connection with fault
//! F, one connection per fault, in order:
//!
//! * `bad-id`: an id the frontend never issued;
//! * `bad-status`: status 7 (blkif.h defines 0, -1, -2);
//! * `bad-op`: an operation other than the request's;
//! * `stall`: no response at all.
//!
//! After each it waits (`--wait-ms`, default 60 s) for the frontend to
//! give up (state Closing or Closed), unmaps, unbinds, goes Closed, and
//! returns to InitWait for the next connection once the frontend is
//! Initialising again. It never touches the data pages.
//!
//! Output: `blk-back: <fault>: <n> request(s) seen, frontend <state> after
//! <ms> ms` per connection, then `blk-back: done`. Exit 0, 2 if it could
//! not run (a wait that timed out included).

use std::time::{Duration, Instant};

use xen_peers::args::{parse_domid, Args};
use xen_peers::ring::{BackRing, Entry};
use xen_peers::{die, ms, xs, Evtchn, Gntdev};

const TAG: &str = "blk-back";
/// The backend directory's device type (`backend/<kind>/<domid>/<devid>`).
const BACKEND_KIND: &str = "xf-blk";
const USAGE: &str = "usage: xf-blk-back <domid> <devid> --faults F[,F...] [--wait-ms W]";

/// `blkif_request` as far as a hostile backend reads it: 112 bytes
/// (blkif.h), `operation` @0, `id` @8.
#[derive(Clone, Copy, Debug)]
struct Req {
    operation: u8,
    id: u64,
}

impl Entry for Req {
    const SIZE: usize = 112;
    fn encode(&self, out: &mut [u8]) {
        out[0] = self.operation;
        out[8..16].copy_from_slice(&self.id.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        Req {
            operation: b[0],
            id: u64::from_le_bytes(id),
        }
    }
}

/// `blkif_response`: `id` @0, `operation` @8, `status` @10; 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Rsp {
    id: u64,
    operation: u8,
    status: i16,
}

impl Entry for Rsp {
    const SIZE: usize = 16;
    fn encode(&self, out: &mut [u8]) {
        out[..16].fill(0);
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8] = self.operation;
        out[10..12].copy_from_slice(&self.status.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[0..8]);
        Rsp {
            id: u64::from_le_bytes(id),
            operation: b[8],
            status: i16::from_le_bytes([b[10], b[11]]),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    BadId,
    BadStatus,
    BadOp,
    Stall,
}

impl Fault {
    fn parse(s: &str) -> Result<Fault, String> {
        Ok(match s {
            "bad-id" => Fault::BadId,
            "bad-status" => Fault::BadStatus,
            "bad-op" => Fault::BadOp,
            "stall" => Fault::Stall,
            _ => return Err(format!("unknown fault {s:?}")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Fault::BadId => "bad-id",
            Fault::BadStatus => "bad-status",
            Fault::BadOp => "bad-op",
            Fault::Stall => "stall",
        }
    }

    /// The faulty answer to `req` (`None`: stay silent).
    fn answer(self, req: &Req) -> Option<Rsp> {
        let ok = Rsp {
            id: req.id,
            operation: req.operation,
            status: 0,
        };
        match self {
            // Slot 0xffff of generation 0: beyond any ring (≤ 512 slots).
            Fault::BadId => Some(Rsp { id: 0xffff, ..ok }),
            Fault::BadStatus => Some(Rsp { status: 7, ..ok }),
            Fault::BadOp => Some(Rsp {
                operation: req.operation ^ 0x40,
                ..ok
            }),
            Fault::Stall => None,
        }
    }
}

/// XenbusState values (xenbus.h).
const INITIALISING: u64 = 1;
const INIT_WAIT: u64 = 2;
const INITIALISED: u64 = 3;
const CONNECTED: u64 = 4;
const CLOSING: u64 = 5;
const CLOSED: u64 = 6;

struct Dev {
    domid: u16,
    fe: String,
    be: String,
    wait: Duration,
}

impl Dev {
    fn key(&self, dir: &str, k: &str) -> String {
        format!("{dir}/{k}")
    }

    fn write_be(&self, pairs: &[(&str, String)]) {
        let keys: Vec<(String, &str)> = pairs
            .iter()
            .map(|(k, v)| (self.key(&self.be, k), v.as_str()))
            .collect();
        let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        xs::write(&refs).unwrap_or_else(|e| die(TAG, format!("write {}: {e}", self.be)));
    }

    /// The frontend's state, polled until `want(state)`; its value, or the
    /// program dies naming what it waited for.
    fn wait_fe(&self, what: &str, want: impl Fn(u64) -> bool) -> u64 {
        let path = self.key(&self.fe, "state");
        let t0 = Instant::now();
        loop {
            if let Ok(Ok(v)) = xs::read(&path).map(|s| s.trim().parse::<u64>()) {
                if want(v) {
                    return v;
                }
            }
            if t0.elapsed() >= self.wait {
                die(TAG, format!("frontend never reached {what} ({path})"));
            }
            std::thread::sleep(ms(50));
        }
    }

    fn fe_num(&self, k: &str) -> Option<u32> {
        xs::read(&self.key(&self.fe, k))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Creates the device as libxl would (tools/libs/light/libxl_device.c):
    /// the frontend directory owned by the guest and readable by us, the
    /// backend directory ours and readable by the guest.
    fn create(&self, devid: u32) {
        let fe = |k: &str| self.key(&self.fe, k);
        let be = |k: &str| self.key(&self.be, k);
        let d = self.domid.to_string();
        xs::write(&[
            (&be("frontend"), &self.fe),
            (&be("frontend-id"), &d),
            (&be("online"), "1"),
            (&be("state"), "1"),
            (&fe("backend"), &self.be),
            (&fe("backend-id"), "0"),
            (&fe("virtual-device"), &devid.to_string()),
            (&fe("device-type"), "disk"),
            (&fe("state"), "1"),
        ])
        .unwrap_or_else(|e| die(TAG, format!("create the device: {e}")));
        for (dir, perms) in [
            (&self.fe, vec![format!("n{d}"), "r0".to_string()]),
            (&self.be, xs::dom0_owned_readable_by(self.domid)),
        ] {
            for k in [
                "",
                "/state",
                "/backend",
                "/backend-id",
                "/virtual-device",
                "/device-type",
            ] {
                let p = format!("{dir}{k}");
                if xs::read(&p).is_ok() || k.is_empty() {
                    xs::chmod(&p, &perms).unwrap_or_else(|e| die(TAG, format!("chmod {p}: {e}")));
                }
            }
        }
        for k in ["frontend", "frontend-id", "online", "state"] {
            xs::chmod(&be(k), &xs::dom0_owned_readable_by(self.domid))
                .unwrap_or_else(|e| die(TAG, format!("chmod {}: {e}", be(k))));
        }
        // The parent this write may have created (a guest without disks
        // has no device/vbd): the guest lists it.
        let vbd = format!("/local/domain/{}/device/vbd", self.domid);
        xs::chmod(&vbd, &[format!("n{d}"), "r0".to_string()])
            .unwrap_or_else(|e| die(TAG, format!("chmod {vbd}: {e}")));
    }
}

/// One connection with `fault`: handshake, map, first request answered
/// with the fault, wait for the frontend to give up, tear down.
fn connection(dev: &Dev, gnt: &Gntdev, ev: &Evtchn, fault: Fault) {
    // Probe keys, then InitWait (Linux blkback's order; no indirect
    // segments, so the frontend sends direct requests).
    dev.write_be(&[
        ("max-ring-page-order", "4".into()),
        ("feature-max-indirect-segments", "0".into()),
        ("state", INIT_WAIT.to_string()),
    ]);
    dev.wait_fe("Initialised", |s| s == INITIALISED || s == CONNECTED);
    let order = dev.fe_num("ring-page-order").unwrap_or(0);
    if order > 4 {
        die(TAG, format!("ring-page-order {order}"));
    }
    let refs: Vec<u32> = if dev.fe_num("ring-page-order").is_some() {
        (0..1u32 << order)
            .map(|i| {
                dev.fe_num(&format!("ring-ref{i}"))
                    .unwrap_or_else(|| die(TAG, format!("no ring-ref{i}")))
            })
            .collect()
    } else {
        vec![dev
            .fe_num("ring-ref")
            .unwrap_or_else(|| die(TAG, "no ring-ref"))]
    };
    let port = dev
        .fe_num("event-channel")
        .unwrap_or_else(|| die(TAG, "no event-channel"));
    let map = gnt
        .map(dev.domid, &refs, true)
        .unwrap_or_else(|e| die(TAG, format!("map ring {refs:?}: {e}")));
    let local = ev
        .bind_interdomain(dev.domid, port)
        .unwrap_or_else(|e| die(TAG, format!("bind port {port}: {e}")));
    let mut ring: BackRing<'_, Req, Rsp> = BackRing::attach(map.mem());
    dev.write_be(&[
        ("sectors", "2048".into()),
        ("sector-size", "512".into()),
        ("info", "0".into()),
        ("feature-flush-cache", "1".into()),
        ("feature-persistent", "0".into()),
        ("state", CONNECTED.to_string()),
    ]);
    let t0 = Instant::now();
    let mut seen = 0u64;
    let mut answered = false;
    let fe_state = dev.key(&dev.fe, "state");
    let end = loop {
        if t0.elapsed() >= dev.wait {
            die(TAG, format!("{}: the frontend never gave up", fault.name()));
        }
        let _ = ev.wait(ms(100));
        let _ = ev.unmask(local);
        match ring.take_requests() {
            Ok(reqs) => {
                for r in reqs {
                    seen += 1;
                    if !answered {
                        if let Some(rsp) = fault.answer(&r) {
                            ring.respond(&rsp);
                            if ring.push_responses() {
                                let _ = ev.notify(local);
                            }
                        }
                        answered = true;
                    }
                }
            }
            Err(e) => die(TAG, format!("frontend ring: {e}")),
        }
        if let Ok(Ok(s)) = xs::read(&fe_state).map(|s| s.trim().parse::<u64>()) {
            if s == CLOSING || s == CLOSED {
                break s;
            }
        }
    };
    let _ = ev.unbind(local);
    if let Err(e) = map.unmap() {
        die(TAG, format!("unmap: {e}"));
    }
    dev.write_be(&[("state", CLOSED.to_string())]);
    println!(
        "{TAG}: {}: {seen} request(s) seen, frontend {} after {} ms",
        fault.name(),
        if end == CLOSED { "Closed" } else { "Closing" },
        t0.elapsed().as_millis()
    );
}

fn main() {
    let a =
        Args::parse(std::env::args().skip(1), &["faults", "wait-ms"], &[]).unwrap_or_else(|e| {
            eprintln!("{USAGE}");
            die(TAG, e)
        });
    if a.positional.len() != 2 {
        eprintln!("{USAGE}");
        die(TAG, "expected <domid> <devid>");
    }
    let domid = parse_domid(&a.positional[0]).unwrap_or_else(|e| die(TAG, e));
    let devid: u32 = a.positional[1]
        .parse()
        .unwrap_or_else(|_| die(TAG, format!("devid {:?}", a.positional[1])));
    let faults: Vec<Fault> = a
        .opt("faults")
        .unwrap_or_else(|| die(TAG, "--faults is required"))
        .split(',')
        .map(Fault::parse)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| die(TAG, e));
    let wait = ms(a.num_or("wait-ms", 60_000).unwrap_or_else(|e| die(TAG, e)));
    let dev = Dev {
        domid,
        fe: format!("/local/domain/{domid}/device/vbd/{devid}"),
        // Not backend/vbd: Dom0's own xen-blkback would bind to a device
        // there (as it binds to every backend/vbd node) and answer too.
        be: format!("/local/domain/0/backend/{BACKEND_KIND}/{domid}/{devid}"),
        wait,
    };
    let gnt = Gntdev::open().unwrap_or_else(|e| die(TAG, format!("open gntdev: {e}")));
    let ev = Evtchn::open().unwrap_or_else(|e| die(TAG, format!("open evtchn: {e}")));
    dev.create(devid);
    for (i, &f) in faults.iter().enumerate() {
        if i > 0 {
            // The frontend starts again from Initialising (or Closed).
            dev.wait_fe("Initialising", |s| s == INITIALISING || s == CLOSED);
        }
        connection(&dev, &gnt, &ev, f);
    }
    println!("{TAG}: done");
}
