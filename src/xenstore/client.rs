//! A synchronous XenStore client (docs/misc/xenstore.txt): [`XenStore`]
//! sends one request at a time, matches the reply by `req_id`, queues
//! `WATCH_EVENT`s that arrive interleaved with replies, and maps `ERROR`
//! replies to [`XsError`].
//!
//! Robustness against a slow or misbehaving xenstored:
//!
//! * **Replies.** Only the reply to the request being waited for is ever
//!   returned. Any other reply (late ones to requests that timed out,
//!   duplicates, unsolicited ones) is dropped and counted, so one stray
//!   message cannot shift later replies.
//! * **Deadlines.** Each request (and each [`XenStore::next_watch_event`])
//!   has one deadline, `now + timeout` on the transport's clock, checked in
//!   every loop: sending, waiting, and inside the read loop, which also
//!   reads at most [`PUMP_BUDGET`] bytes per round. A Dom0 that kicks the
//!   port, trickles bytes or floods watch events cannot keep a call going.
//! * **Framing.** A malformed watch event is a whole message: it is
//!   skipped and counted. A header that cannot be trusted (oversized,
//!   unknown type) or a request cut in the ring by a timeout loses the
//!   message boundary for good: the client becomes [`Error::Broken`] and
//!   says why on every later call. Requests that fit the ring are written
//!   whole or not at all, so a send timeout normally leaves nothing behind.

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use super::ring::{XsRing, XENSTORE_RING_SIZE};
use super::wire::{
    parse_decimal, parse_ok, parse_string, parse_strings, parse_watch_event, Broken, Decoder,
    Error, Message, MsgType, Perm, Request, TxId, WatchEvent, XsError,
};
use crate::shared::SharedMem;

/// Transaction commits retried on `EAGAIN` before giving up.
pub const MAX_TRANSACTION_RETRIES: usize = 16;
/// Watch events kept before the oldest are dropped (counted).
pub const MAX_QUEUED_WATCH_EVENTS: usize = 1024;
/// Reply bytes one read round takes at most before the caller re-checks
/// its deadline (the decoder keeps a partial message across rounds).
pub const PUMP_BUDGET: usize = 4 * XENSTORE_RING_SIZE;
/// Timed-out requests remembered, so that their late replies are counted
/// as late rather than stray (either way they are dropped).
const MAX_ABANDONED: usize = 16;

/// What the kernel provides: the store event channel and a clock.
pub trait XsTransport {
    /// Signal xenstored (EVTCHNOP_send on the store port).
    fn notify(&mut self);
    /// Monotonic time in ns, the clock deadlines are given in.
    fn now_ns(&self) -> u64;
    /// How long one request may take, from sending to its reply (also the
    /// limit of one [`XenStore::next_watch_event`]).
    fn timeout_ns(&self) -> u64;
    /// Block until the store port fires or [`now_ns`](Self::now_ns)
    /// reaches `deadline_ns`. Early and spurious returns are fine: the
    /// client re-reads the ring and the clock after each.
    fn wait(&mut self, deadline_ns: u64);
}

/// A synchronous XenStore client (one request in flight at a time), over
/// a view of the interface page valid for `'a`.
pub struct XenStore<'a, T: XsTransport> {
    ring: XsRing<'a>,
    transport: T,
    decoder: Decoder,
    next_req_id: u32,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
    /// The request whose reply is awaited.
    waiting: Option<u32>,
    /// Its reply, once decoded.
    reply: Option<Message>,
    /// Requests that timed out, oldest first.
    abandoned: VecDeque<u32>,
    stray_replies: u64,
    late_replies: u64,
    malformed_events: u64,
    broken: Option<Broken>,
}

impl<'a, T: XsTransport> XenStore<'a, T> {
    /// A client over the interface page.
    pub fn new(mem: SharedMem<'a>, transport: T) -> Result<Self, Error> {
        Ok(XenStore {
            ring: XsRing::new(mem)?,
            transport,
            decoder: Decoder::new(),
            next_req_id: 1,
            events: VecDeque::new(),
            dropped_events: 0,
            waiting: None,
            reply: None,
            abandoned: VecDeque::new(),
            stray_replies: 0,
            late_replies: 0,
            malformed_events: 0,
            broken: None,
        })
    }

    /// The transport (e.g. for counters).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (e.g. to change its timeout).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Watch events dropped because the queue was full.
    pub fn dropped_watch_events(&self) -> u64 {
        self.dropped_events
    }

    /// Replies dropped because they answered no request: duplicates,
    /// unsolicited replies, replies that came while nothing was waiting.
    pub fn stray_replies(&self) -> u64 {
        self.stray_replies
    }

    /// Replies dropped because their request had already timed out.
    pub fn late_replies(&self) -> u64 {
        self.late_replies
    }

    /// `WATCH_EVENT`s dropped because their payload was not `path\0token\0`.
    pub fn malformed_watch_events(&self) -> u64 {
        self.malformed_events
    }

    /// Why the client stopped, if it did (every call then fails with
    /// [`Error::Broken`]).
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    fn check_broken(&self) -> Result<(), Error> {
        match self.broken {
            Some(why) => Err(Error::Broken(why)),
            None => Ok(()),
        }
    }

    fn fail(&mut self, why: Broken) -> Error {
        self.broken = Some(why);
        Error::Broken(why)
    }

    fn deadline(&self) -> u64 {
        self.transport
            .now_ns()
            .saturating_add(self.transport.timeout_ns())
    }

    fn expired(&self, deadline: u64) -> bool {
        self.transport.now_ns() >= deadline
    }

    /// Writes one encoded request. A request that fits the ring goes in
    /// whole or not at all; a request cut by the deadline (or by any other
    /// error) breaks the connection.
    fn send_bytes(&mut self, bytes: &[u8], deadline: u64) -> Result<(), Error> {
        let mut sent = 0;
        match self.try_send(bytes, deadline, &mut sent) {
            Err(e) if sent > 0 && sent < bytes.len() && !matches!(e, Error::Broken(_)) => Err(self
                .fail(Broken::PartialSend {
                    sent,
                    len: bytes.len(),
                })),
            r => r,
        }
    }

    fn try_send(&mut self, bytes: &[u8], deadline: u64, sent: &mut usize) -> Result<(), Error> {
        while *sent < bytes.len() {
            let n = if *sent == 0 && bytes.len() <= XENSTORE_RING_SIZE {
                if self.ring.space()? >= bytes.len() {
                    self.ring.write(bytes)?
                } else {
                    0
                }
            } else {
                self.ring.write(&bytes[*sent..])?
            };
            if n > 0 {
                self.transport.notify();
                *sent += n;
                if *sent == bytes.len() {
                    break;
                }
            }
            if self.expired(deadline) {
                return Err(Error::Timeout);
            }
            // Keep reading meanwhile: xenstored may be blocked on a full
            // reply ring (e.g. watch events) before it takes more input.
            if n == 0 && !self.pump(deadline)? {
                self.transport.wait(deadline);
            }
        }
        Ok(())
    }

    fn queue_event(&mut self, ev: WatchEvent) {
        if self.events.len() >= MAX_QUEUED_WATCH_EVENTS {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(ev);
    }

    /// Sorts one decoded message: watch events to the queue (malformed ones
    /// dropped), the awaited reply to `reply`, every other reply dropped.
    fn dispatch(&mut self, m: Message) {
        if m.ty == MsgType::WatchEvent {
            match parse_watch_event(&m.payload) {
                Ok(ev) => self.queue_event(ev),
                Err(_) => self.malformed_events += 1,
            }
        } else if self.waiting == Some(m.req_id) && self.reply.is_none() {
            self.reply = Some(m);
        } else if let Some(i) = self.abandoned.iter().position(|&id| id == m.req_id) {
            self.abandoned.remove(i);
            self.late_replies += 1;
        } else {
            self.stray_replies += 1;
        }
    }

    /// Reads what the ring holds and decodes all of it, until the ring is
    /// empty, the awaited reply has arrived, [`PUMP_BUDGET`] bytes were
    /// read or `deadline` passed. Returns whether it stopped with the ring
    /// possibly non-empty (the caller should not sleep before the next
    /// round). A partial message stays in the decoder.
    fn pump(&mut self, deadline: u64) -> Result<bool, Error> {
        self.check_broken()?;
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        let mut total = 0;
        loop {
            let n = self.ring.read(&mut buf[..])?;
            if n == 0 {
                return Ok(false);
            }
            self.transport.notify(); // xenstored may wait for space
            let mut off = 0;
            while off < n {
                let (used, msg) = match self.decoder.push(&buf[off..n]) {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(self.fail(match e {
                            Error::Oversized { len } => Broken::Oversized { len },
                            Error::BadType(t) => Broken::BadType(t),
                            _ => Broken::Desynced,
                        }))
                    }
                };
                off += used;
                if let Some(m) = msg {
                    self.dispatch(m);
                }
            }
            total += n;
            if self.reply.is_some() || total >= PUMP_BUDGET || self.expired(deadline) {
                return Ok(true);
            }
        }
    }

    /// Waits for the reply to `req_id` until `deadline`.
    fn await_reply(&mut self, req_id: u32, deadline: u64) -> Result<Message, Error> {
        self.waiting = Some(req_id);
        let r = loop {
            let more = match self.pump(deadline) {
                Ok(more) => more,
                Err(e) => break Err(e),
            };
            if let Some(m) = self.reply.take() {
                break Ok(m);
            }
            if self.expired(deadline) {
                break Err(Error::Timeout);
            }
            if !more {
                self.transport.wait(deadline);
            }
        };
        self.waiting = None;
        if r.is_err() {
            // Its reply may still come; it must not be taken for another's.
            if self.abandoned.len() >= MAX_ABANDONED {
                self.abandoned.pop_front();
            }
            self.abandoned.push_back(req_id);
        }
        r
    }

    /// Sends `req` and waits for its reply (validated type and `req_id`),
    /// all within one deadline ([`XsTransport::timeout_ns`]).
    pub fn request(&mut self, tx: TxId, req: Request<'_>) -> Result<Vec<u8>, Error> {
        self.check_broken()?;
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        let bytes = req.encode(req_id, tx)?;
        let deadline = self.deadline();
        // Whatever is already in the ring cannot answer this request (even
        // if it carries its id): take it out first.
        self.pump(deadline)?;
        self.send_bytes(&bytes, deadline)?;
        let m = self.await_reply(req_id, deadline)?;
        match m.ty {
            MsgType::Error => Err(Error::Xs(XsError::from_payload(&m.payload))),
            ty if ty != req.msg_type() => Err(Error::UnexpectedReply {
                expected: req.msg_type(),
                got: ty,
            }),
            _ => Ok(m.payload),
        }
    }

    /// `READ`: the raw value.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, Error> {
        self.request(tx, Request::Read(path))
    }

    /// `READ` as UTF-8 text (one trailing NUL tolerated). Anything else is
    /// [`Error::BadValue`] naming the path and the value.
    pub fn read_string(&mut self, tx: TxId, path: &str) -> Result<String, Error> {
        let v = self.read(tx, path)?;
        match parse_string(&v) {
            Ok(s) => Ok(s),
            Err(_) => Err(Error::BadValue {
                path: path.into(),
                value: v,
                expected: "UTF-8 text",
            }),
        }
    }

    /// `READ` as a decimal integer (e.g. `backend-id`, `ring-ref`): ASCII
    /// digits only, fitting a `u64`. Anything else (`"0x10"`, `"-1"`,
    /// `"12\0"`, `""`) is [`Error::BadValue`] naming the path and the value.
    pub fn read_u64(&mut self, tx: TxId, path: &str) -> Result<u64, Error> {
        let v = self.read(tx, path)?;
        match parse_decimal(&v) {
            Some(n) => Ok(n),
            None => Err(Error::BadValue {
                path: path.into(),
                value: v,
                expected: "a decimal u64",
            }),
        }
    }

    /// `WRITE` (creates missing parents).
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), Error> {
        parse_ok(&self.request(tx, Request::Write(path, value))?)
    }

    /// `DIRECTORY`: child names.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, Error> {
        parse_strings(&self.request(tx, Request::Directory(path))?)
    }

    /// `MKDIR`.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        parse_ok(&self.request(tx, Request::Mkdir(path))?)
    }

    /// `RM` (recursive).
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), Error> {
        parse_ok(&self.request(tx, Request::Rm(path))?)
    }

    /// `GET_PERMS`.
    pub fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Perm>, Error> {
        let p = self.request(tx, Request::GetPerms(path))?;
        let body = p.strip_suffix(&[0]).unwrap_or(&p);
        body.split(|&b| b == 0).map(Perm::parse).collect()
    }

    /// `SET_PERMS`: `perms[0]` is the owner/default, the rest are ACLs.
    pub fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Perm]) -> Result<(), Error> {
        parse_ok(&self.request(tx, Request::SetPerms(path, perms))?)
    }

    /// `WATCH`. xenstored fires the watch once right away.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        parse_ok(&self.request(TxId::NONE, Request::Watch(path, token))?)
    }

    /// `UNWATCH`; also drops already-queued events for this watch.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        parse_ok(&self.request(TxId::NONE, Request::Unwatch(path, token))?)?;
        self.events.retain(|e| e.token != token);
        Ok(())
    }

    /// `GET_DOMAIN_PATH`, e.g. `/local/domain/5`.
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, Error> {
        parse_string(&self.request(TxId::NONE, Request::GetDomainPath(domid))?)
    }

    /// `TRANSACTION_START`.
    pub fn transaction_start(&mut self) -> Result<TxId, Error> {
        let p = self.request(TxId::NONE, Request::TransactionStart)?;
        let s = p.strip_suffix(&[0]).unwrap_or(&p);
        let id = parse_decimal(s).and_then(|v| u32::try_from(v).ok());
        match id {
            Some(id) if id != 0 => Ok(TxId(id)),
            _ => Err(Error::BadPayload("transaction id")),
        }
    }

    /// `TRANSACTION_END`: commit (`true`) or abort. A commit may fail with
    /// `Xs(EAGAIN)`: the transaction conflicted and must be redone.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), Error> {
        parse_ok(&self.request(tx, Request::TransactionEnd(commit))?)
    }

    /// Runs `body` in a transaction and commits, redoing it on `EAGAIN`
    /// (from the commit or from `body`) up to `MAX_TRANSACTION_RETRIES`
    /// times. Any other error from `body` aborts the transaction.
    pub fn transaction<R>(
        &mut self,
        mut body: impl FnMut(&mut Self, TxId) -> Result<R, Error>,
    ) -> Result<R, Error> {
        for _ in 0..MAX_TRANSACTION_RETRIES {
            let tx = self.transaction_start()?;
            match body(self, tx) {
                Ok(r) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok(r),
                    Err(Error::Xs(XsError::EAGAIN)) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    // Best-effort abort; the body's error is what matters.
                    let _ = self.transaction_end(tx, false);
                    if e != Error::Xs(XsError::EAGAIN) {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::TooManyRetries)
    }

    /// A queued or already-arrived watch event, without blocking.
    pub fn poll_watch_event(&mut self) -> Result<Option<WatchEvent>, Error> {
        if self.events.is_empty() {
            let deadline = self.deadline();
            self.pump(deadline)?;
        }
        Ok(self.events.pop_front())
    }

    /// Removes every queued or already-arrived watch event of `token`,
    /// without blocking; returns how many there were. Other events stay
    /// queued in order.
    pub fn take_watch_events(&mut self, token: &str) -> Result<usize, Error> {
        let deadline = self.deadline();
        self.pump(deadline)?;
        let before = self.events.len();
        self.events.retain(|ev| ev.token != token);
        Ok(before - self.events.len())
    }

    /// The oldest queued or already-arrived watch event of `token`, without
    /// blocking. Other events stay queued in order.
    pub fn take_watch_event(&mut self, token: &str) -> Result<Option<WatchEvent>, Error> {
        let deadline = self.deadline();
        self.pump(deadline)?;
        match self.events.iter().position(|ev| ev.token == token) {
            Some(i) => Ok(self.events.remove(i)),
            None => Ok(None),
        }
    }

    /// Blocks (via the transport) until a watch event is available, at most
    /// [`XsTransport::timeout_ns`] (then [`Error::Timeout`]).
    pub fn next_watch_event(&mut self) -> Result<WatchEvent, Error> {
        let deadline = self.deadline();
        loop {
            let more = self.pump(deadline)?;
            if let Some(ev) = self.events.pop_front() {
                return Ok(ev);
            }
            if self.expired(deadline) {
                return Err(Error::Timeout);
            }
            if !more {
                self.transport.wait(deadline);
            }
        }
    }
}
