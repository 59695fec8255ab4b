//! Peer data: everything xenstored (Dom0) controls on the XenStore
//! interface page, seen by the `XenStore` client: reply bytes (well-formed
//! replies to the request just sent, late, stray and duplicate ones, error
//! replies, watch events, arbitrary headers and garbage) delivered in
//! fuzzer-chosen pieces, all four ring indices, a server that stops
//! reading requests, and when time passes. The client runs a fuzzer-chosen
//! sequence of calls (reads, writes, transactions, watches, ...).
//! Invariants: no panic; every call returns, with a bounded number of
//! transport calls; errors are typed (framing errors surface only as
//! `Broken`, which is sticky); a returned reply or watch event is one the
//! peer really sent for that request; the client's requests are framed
//! correctly on the ring.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use xenfront::shared::SharedMem;
use xenfront::xen_abi::xs_wire::{REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS, RSP_PROD};
use xenfront::xenstore::{
    encode_message, parse_watch_event, Decoder, Error, Header, Message, MsgType, Perm, PermKind,
    Request, TxId, XenStore, XsError, XsTransport, XENSTORE_RING_SIZE,
};
use xenfront_fuzz::{Input, Pages};

const RING: u32 = XENSTORE_RING_SIZE as u32;
/// Transport calls one client call may make: far more than any script
/// needs, far fewer than a loop that never ends.
const MAX_CALLS_PER_OP: u64 = 1_000_000;

fn mask(i: u32) -> usize {
    (i & (RING - 1)) as usize
}

/// The peer's moves, one per `wait` of the client.
#[derive(Debug)]
enum Action {
    /// A reply to the last request seen: `kind` 0 success type, 1 ERROR,
    /// 2 WATCH_EVENT, else any known type; `id` 0 its id, 1 the previous
    /// one, 2 the next one, else `raw_id`.
    Reply {
        kind: u8,
        ty: u32,
        id: u8,
        raw_id: u32,
        payload: Vec<u8>,
    },
    /// A well-formed watch event.
    Event(Vec<u8>, Vec<u8>),
    /// A header with any type and length (the id of the last request).
    Header { ty: u32, len: u32 },
    /// Arbitrary bytes.
    Raw(Vec<u8>),
    /// Set one of the four indices (0 req_cons, 1 req_prod, 2 rsp_cons,
    /// 3 rsp_prod) near its value, or to anything.
    SetIndex(u8, u32, u32),
    /// Let time pass.
    Advance(u32),
    /// Deliver at most this many bytes per notify / wait (0: no limit).
    Chunk(u16),
    /// Stop / resume reading requests.
    Stall(bool),
}

fn parse_script(inp: &mut Input<'_>) -> Vec<Action> {
    let mut v = Vec::new();
    while !inp.is_empty() && v.len() < 512 {
        v.push(match inp.u8() % 12 {
            0..=3 => Action::Reply {
                kind: inp.u8() % 8,
                ty: inp.u32(),
                id: inp.u8() % 4,
                raw_id: inp.u32(),
                payload: inp.bytes(5000).to_vec(),
            },
            4 => Action::Event(inp.bytes(100).to_vec(), inp.bytes(30).to_vec()),
            5 => Action::Header {
                ty: inp.u32() % 32,
                len: if inp.bool() {
                    inp.u32()
                } else {
                    inp.u32() % 5000
                },
            },
            6 => Action::Raw(inp.bytes(3000).to_vec()),
            7 => Action::SetIndex(inp.u8() % 4, inp.u32(), inp.u32()),
            8 => Action::Advance(inp.u32()),
            9 => Action::Chunk(inp.u16()),
            10 => Action::Stall(inp.bool()),
            _ => Action::Reply {
                kind: 0,
                ty: 0,
                id: 0,
                raw_id: 0,
                payload: b"OK\0".to_vec(),
            },
        });
    }
    v
}

/// Fake xenstored: reads requests, writes what the script says, owns the
/// clock.
struct Peer<'a> {
    mem: SharedMem<'a>,
    script: VecDeque<Action>,
    outbox: VecDeque<u8>,
    chunk: usize,
    stalled: bool,
    now: u64,
    timeout: u64,
    calls: u64,
    /// The client's requests, as decoded from the request ring.
    req_dec: Decoder,
    reqs: Vec<Message>,
    /// What the peer delivered, decoded (while it is well framed).
    shadow: Decoder,
    shadow_ok: bool,
    sent: Vec<Message>,
    /// Indices were set behind the protocol's back: the byte streams no
    /// longer mean what either side wrote.
    tampered: bool,
}

impl Peer<'_> {
    fn last_req(&self) -> (u32, u32, MsgType) {
        self.reqs
            .last()
            .map_or((1, 0, MsgType::Read), |m| (m.req_id, m.tx_id, m.ty))
    }

    fn apply(&mut self, a: Action) {
        let (last_id, last_tx, last_ty) = self.last_req();
        match a {
            Action::Reply {
                kind,
                ty,
                id,
                raw_id,
                payload,
            } => {
                let ty = match kind {
                    0 | 5..=7 => last_ty,
                    1 => MsgType::Error,
                    2 => MsgType::WatchEvent,
                    _ => MsgType::from_u32(ty % 23).unwrap_or(MsgType::Read),
                };
                let id = match id {
                    0 => last_id,
                    1 => last_id.wrapping_sub(1),
                    2 => last_id.wrapping_add(1),
                    _ => raw_id,
                };
                let p = &payload[..payload.len().min(4096)];
                self.outbox
                    .extend(encode_message(ty, id, last_tx, p).unwrap());
            }
            Action::Event(path, token) => {
                let p = [&path[..], b"\0", &token[..], b"\0"].concat();
                self.outbox
                    .extend(encode_message(MsgType::WatchEvent, 0, 0, &p).unwrap());
            }
            Action::Header { ty, len } => {
                let h = Header {
                    ty,
                    req_id: last_id,
                    tx_id: 0,
                    len,
                };
                self.outbox.extend(h.to_bytes());
            }
            Action::Raw(b) => self.outbox.extend(b),
            Action::SetIndex(which, near, raw) => {
                let off = [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD][which as usize];
                let cur = self.mem.load_u32(off);
                let v = match near % 4 {
                    0 => cur.wrapping_add(near >> 2 & 0x7ff),
                    1 => cur.wrapping_sub(near >> 2 & 0x7ff),
                    _ => raw,
                };
                self.mem.store_u32(off, v);
                self.tampered = true;
            }
            Action::Advance(ns) => self.now = self.now.saturating_add(u64::from(ns)),
            Action::Chunk(n) => self.chunk = usize::from(n),
            Action::Stall(s) => self.stalled = s,
        }
    }

    /// Reads requests (unless stalled), then delivers what fits of the
    /// outbox. Returns the bytes delivered.
    fn serve(&mut self) -> usize {
        if !self.stalled {
            let cons = self.mem.load_u32(REQ_CONS);
            let prod = self.mem.load_u32(REQ_PROD);
            let n = prod.wrapping_sub(cons);
            if n > RING {
                assert!(
                    self.tampered,
                    "client published req_prod {prod} cons {cons}"
                );
            } else {
                let mut buf = vec![0u8; n as usize];
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = self.mem.read::<u8>(REQ + mask(cons.wrapping_add(i as u32)));
                }
                self.mem.store_u32(REQ_CONS, prod);
                let mut off = 0;
                while off < buf.len() {
                    match self.req_dec.push(&buf[off..]) {
                        Ok((used, m)) => {
                            off += used;
                            self.reqs.extend(m);
                        }
                        Err(e) => {
                            assert!(self.tampered, "client's request stream: {e:?}");
                            self.req_dec.reset();
                            break;
                        }
                    }
                }
            }
        }
        let cons = self.mem.load_u32(RSP_CONS);
        let prod = self.mem.load_u32(RSP_PROD);
        let used = prod.wrapping_sub(cons);
        let space = RING.saturating_sub(used) as usize;
        let limit = if self.chunk == 0 {
            usize::MAX
        } else {
            self.chunk
        };
        let n = self.outbox.len().min(space).min(limit);
        let bytes: Vec<u8> = self.outbox.drain(..n).collect();
        for (i, &b) in bytes.iter().enumerate() {
            self.mem
                .write::<u8>(RSP + mask(prod.wrapping_add(i as u32)), b);
        }
        self.mem.store_u32(RSP_PROD, prod.wrapping_add(n as u32));
        let mut off = 0;
        while self.shadow_ok && off < bytes.len() {
            match self.shadow.push(&bytes[off..]) {
                Ok((used, m)) => {
                    off += used;
                    self.sent.extend(m);
                }
                Err(_) => self.shadow_ok = false,
            }
        }
        n
    }

    /// Whether the checks on what the client returned apply.
    fn faithful(&self) -> bool {
        self.shadow_ok && !self.tampered
    }
}

impl XsTransport for Peer<'_> {
    fn notify(&mut self) {
        self.calls += 1;
        self.serve();
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn timeout_ns(&self) -> u64 {
        self.timeout
    }
    fn wait(&mut self, deadline_ns: u64) {
        self.calls += 1;
        if let Some(a) = self.script.pop_front() {
            self.apply(a);
            self.serve();
        } else if self.serve() == 0 {
            self.now = self.now.max(deadline_ns);
        }
    }
}

/// A client call.
#[derive(Debug)]
enum Op {
    Request(u8, String, Vec<u8>, u8),
    ReadString(String),
    ReadU64(String),
    GetPerms(String),
    SetPerms(String, Vec<Perm>),
    Watch(String, String),
    Unwatch(String, String),
    DomainPath(u16),
    TxStart,
    TxEnd(bool),
    Transaction(String, Vec<u8>, bool),
    Poll,
    TakeEvents(String),
    TakeEvent(String),
    NextEvent,
    Timeout(u32),
}

fn path(inp: &mut Input<'_>) -> String {
    match inp.u8() % 8 {
        0 => "/local/domain/0/name".into(),
        1 => "device/vif/0/state".into(),
        2 => "control/shutdown".into(),
        3 => "data/x".into(),
        4 => "/".into(),
        5 => "t".repeat(usize::from(inp.u16()) % 3100 + 1),
        _ => inp.string(64),
    }
}

fn token(inp: &mut Input<'_>) -> String {
    match inp.u8() % 4 {
        0 => "tok".into(),
        1 => "xf-shutdown".into(),
        _ => inp.string(16),
    }
}

fn parse_ops(inp: &mut Input<'_>) -> Vec<Op> {
    let n = 1 + inp.below(10);
    (0..n)
        .map(|_| match inp.u8() % 16 {
            0 => Op::Request(inp.u8(), path(inp), inp.bytes(200).to_vec(), inp.u8()),
            1 => Op::ReadString(path(inp)),
            2 => Op::ReadU64(path(inp)),
            3 => Op::GetPerms(path(inp)),
            4 => {
                let p = path(inp);
                let perms = (0..inp.below(4))
                    .map(|_| Perm {
                        kind: [
                            PermKind::None,
                            PermKind::Read,
                            PermKind::Write,
                            PermKind::Both,
                        ][inp.below(4)],
                        domid: inp.u16(),
                    })
                    .collect();
                Op::SetPerms(p, perms)
            }
            5 => Op::Watch(path(inp), token(inp)),
            6 => Op::Unwatch(path(inp), token(inp)),
            7 => Op::DomainPath(inp.u16()),
            8 => Op::TxStart,
            9 => Op::TxEnd(inp.bool()),
            10 => Op::Transaction(path(inp), inp.bytes(64).to_vec(), inp.bool()),
            11 => Op::Poll,
            12 => Op::TakeEvents(token(inp)),
            13 => Op::TakeEvent(token(inp)),
            14 => Op::NextEvent,
            _ => Op::Timeout(inp.u32()),
        })
        .collect()
}

/// Errors a call may return; decoder errors must have become `Broken`.
fn typed(e: &Error) {
    assert!(
        !matches!(
            e,
            Error::Oversized { .. }
                | Error::BadType(_)
                | Error::Truncated { .. }
                | Error::Desynced
                | Error::UnknownReqId(_)
                | Error::BadRingPage
        ),
        "{e:?}"
    );
    let _ = e.to_string();
}

/// The peer sent this reply to request `id`.
fn was_sent(peer: &Peer<'_>, id: u32, ok: impl Fn(&Message) -> bool) -> bool {
    peer.sent.iter().any(|m| m.req_id == id && ok(m))
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let pages = Pages::new(1);
    let start = inp.index_near(0, RING);
    for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
        pages.mem().store_u32(off, start);
    }
    let timeout = 1 + u64::from(inp.u32() % 100_000_000);
    let ops = parse_ops(&mut inp);
    let script = parse_script(&mut inp).into();
    let peer = Peer {
        mem: pages.mem(),
        script,
        outbox: VecDeque::new(),
        chunk: 0,
        stalled: false,
        now: 0,
        timeout,
        calls: 0,
        req_dec: Decoder::new(),
        reqs: Vec::new(),
        shadow: Decoder::new(),
        shadow_ok: true,
        sent: Vec::new(),
        tampered: false,
    };
    let mut xs = XenStore::new(pages.mem(), peer).unwrap();
    let mut tx = TxId::NONE;
    for op in ops {
        let broken = xs.broken();
        let counters = (
            xs.stray_replies(),
            xs.late_replies(),
            xs.malformed_watch_events(),
            xs.dropped_watch_events(),
        );
        let calls = xs.transport().calls;
        let reqs = xs.transport().reqs.len();
        // Ok(Some(payload)) of a single request, for the sent-check.
        let mut single: Option<(MsgType, Result<Vec<u8>, Error>)> = None;
        let mut is_request = true;
        let r: Result<(), Error> = match &op {
            Op::Request(k, p, v, t) => {
                let txn = if *t & 1 == 0 { TxId::NONE } else { tx };
                let req = match k % 8 {
                    0 => Request::Read(p),
                    1 => Request::Write(p, v),
                    2 => Request::Directory(p),
                    3 => Request::Mkdir(p),
                    4 => Request::Rm(p),
                    5 => Request::GetPerms(p),
                    6 => Request::TransactionEnd(t & 2 == 0),
                    _ => Request::GetDomainPath(u16::from(*t)),
                };
                let res = xs.request(txn, req);
                single = Some((req.msg_type(), res.clone()));
                res.map(drop)
            }
            Op::ReadString(p) => xs.read_string(tx, p).map(|s| assert!(!s.contains('\0'))),
            Op::ReadU64(p) => xs.read_u64(tx, p).map(drop),
            Op::GetPerms(p) => xs.get_perms(tx, p).map(drop),
            Op::SetPerms(p, perms) => xs.set_perms(tx, p, perms),
            Op::Watch(p, t) => xs.watch(p, t),
            Op::Unwatch(p, t) => xs.unwatch(p, t),
            Op::DomainPath(d) => xs.get_domain_path(*d).map(drop),
            Op::TxStart => xs.transaction_start().map(|t| {
                assert_ne!(t, TxId::NONE);
                tx = t;
            }),
            Op::TxEnd(commit) => xs.transaction_end(tx, *commit),
            Op::Transaction(p, v, fail) => {
                let mut bodies = 0;
                let r = xs.transaction(|c, t| {
                    bodies += 1;
                    let _ = c.read(t, p)?;
                    if *fail {
                        return Err(Error::BadPayload("the body gave up"));
                    }
                    c.write(t, p, v)
                });
                assert!(bodies <= 16);
                r
            }
            Op::Poll => {
                is_request = false;
                xs.poll_watch_event().map(|ev| {
                    let peer = xs.transport();
                    if let (Some(ev), true) = (ev, peer.faithful()) {
                        assert!(peer.sent.iter().any(|m| m.ty == MsgType::WatchEvent
                            && parse_watch_event(&m.payload).as_ref() == Ok(&ev)));
                    }
                })
            }
            Op::TakeEvents(t) => xs.take_watch_events(t).map(drop),
            Op::TakeEvent(t) => xs.take_watch_event(t).map(|ev| {
                if let Some(ev) = ev {
                    assert_eq!(&ev.token, t);
                }
            }),
            Op::NextEvent => xs.next_watch_event().map(drop),
            Op::Timeout(ns) => {
                xs.transport_mut().timeout = 1 + u64::from(*ns);
                Ok(())
            }
        };
        let peer = xs.transport();
        assert!(
            peer.calls - calls <= MAX_CALLS_PER_OP,
            "{op:?}: {} transport calls",
            peer.calls - calls
        );
        if let Err(e) = &r {
            typed(e);
        }
        // Broken is sticky, and every request-based call then fails with it.
        if let Some(b) = broken {
            assert_eq!(xs.broken(), Some(b));
            if is_request && !matches!(op, Op::Timeout(_)) {
                assert!(
                    matches!(&r, Err(Error::Broken(x)) if *x == b),
                    "{op:?} on a broken client: {r:?}"
                );
            }
        }
        if let Err(Error::Broken(b)) = &r {
            assert_eq!(xs.broken(), Some(*b));
        }
        let after = (
            xs.stray_replies(),
            xs.late_replies(),
            xs.malformed_watch_events(),
            xs.dropped_watch_events(),
        );
        assert!(after.0 >= counters.0 && after.1 >= counters.1);
        assert!(after.2 >= counters.2 && after.3 >= counters.3);
        // A reply the client returned is one the peer sent for it.
        let peer = xs.transport();
        if let Some((ty, res)) = single {
            if peer.faithful() && peer.reqs.len() == reqs + 1 {
                let id = peer.reqs[reqs].req_id;
                match res {
                    Ok(p) => assert!(
                        was_sent(peer, id, |m| m.ty == ty && m.payload == p),
                        "reply to {id} not sent"
                    ),
                    Err(Error::Xs(e)) => assert!(was_sent(peer, id, |m| m.ty == MsgType::Error
                        && XsError::from_payload(&m.payload) == e)),
                    Err(Error::UnexpectedReply { expected, got }) => {
                        assert_eq!(expected, ty);
                        assert!(was_sent(peer, id, |m| m.ty == got));
                    }
                    Err(_) => {}
                }
            }
        }
    }
    drop(xs);
});
