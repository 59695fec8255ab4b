//! A synchronous XenStore client (docs/misc/xenstore.txt): [`XenStore`]
//! sends one request at a time, matches the reply by `req_id`, queues
//! `WATCH_EVENT`s that arrive interleaved with replies, and maps `ERROR`
//! replies to [`XsError`]. All loops are bounded by the transport's
//! [`XsTransport::wait`] (which the kernel may time out).

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use super::ring::{XsRing, XENSTORE_RING_SIZE};
use super::wire::{
    parse_decimal, parse_ok, parse_string, parse_strings, parse_watch_event, Decoder, Error,
    Message, MsgType, Perm, Request, TxId, WatchEvent, XsError,
};
use crate::shared::SharedMem;

/// Transaction commits retried on `EAGAIN` before giving up.
pub const MAX_TRANSACTION_RETRIES: usize = 16;
/// Watch events kept before the oldest are dropped (counted).
pub const MAX_QUEUED_WATCH_EVENTS: usize = 1024;
/// Unclaimed replies tolerated before the stream is declared broken.
const MAX_QUEUED_REPLIES: usize = 8;

/// What the kernel provides: the store event channel.
pub trait XsTransport {
    /// Signal xenstored (EVTCHNOP_send on the store port).
    fn notify(&mut self);
    /// Block until the store port fires (or a short time passes: spurious
    /// returns are fine). Return `Err(())` to give up — the client then
    /// fails the operation with [`Error::Timeout`].
    #[allow(clippy::result_unit_err)]
    fn wait(&mut self) -> Result<(), ()>;
}

/// A synchronous XenStore client (one request in flight at a time).
pub struct XenStore<T: XsTransport> {
    ring: XsRing,
    transport: T,
    decoder: Decoder,
    next_req_id: u32,
    events: VecDeque<WatchEvent>,
    dropped_events: u64,
    /// Decoded replies not yet claimed (normally at most one).
    replies: VecDeque<Message>,
    /// A request that timed out: its late reply is discarded.
    abandoned: Option<u32>,
}

impl<T: XsTransport> XenStore<T> {
    /// A client over the interface page.
    pub fn new(mem: SharedMem, transport: T) -> Result<Self, Error> {
        Ok(XenStore {
            ring: XsRing::new(mem)?,
            transport,
            decoder: Decoder::new(),
            next_req_id: 1,
            events: VecDeque::new(),
            dropped_events: 0,
            replies: VecDeque::new(),
            abandoned: None,
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

    fn send_bytes(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let n = self.ring.write(bytes)?;
            if n > 0 {
                self.transport.notify();
                bytes = &bytes[n..];
            } else {
                self.wait(0)?;
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

    /// Reads whatever the ring holds and decodes it. Watch events go to the
    /// event queue, other messages to `replies`; returns the oldest reply.
    /// `Ok(None)` = nothing yet. A partial message stays in the decoder.
    fn pump(&mut self) -> Result<Option<Message>, Error> {
        let mut buf = [0u8; XENSTORE_RING_SIZE];
        while self.replies.is_empty() {
            let n = self.ring.read(&mut buf[..])?;
            if n == 0 {
                break;
            }
            self.transport.notify(); // xenstored may wait for space
            let mut off = 0;
            while off < n {
                let (used, msg) = self.decoder.push(&buf[off..n])?;
                off += used;
                match msg {
                    Some(m) if m.ty == MsgType::WatchEvent => {
                        let ev = parse_watch_event(&m.payload)?;
                        self.queue_event(ev);
                    }
                    Some(m) if self.abandoned == Some(m.req_id) => self.abandoned = None,
                    Some(m) => {
                        if self.replies.len() >= MAX_QUEUED_REPLIES {
                            return Err(Error::UnknownReqId(m.req_id));
                        }
                        self.replies.push_back(m);
                    }
                    None => {}
                }
            }
        }
        Ok(self.replies.pop_front())
    }

    fn wait(&mut self, req_id: u32) -> Result<(), Error> {
        self.transport.wait().map_err(|_| {
            // A late reply to this request must not be taken for another's.
            if req_id != 0 {
                self.abandoned = Some(req_id);
            }
            Error::Timeout
        })
    }

    /// Sends `req` and waits for its reply (validated type and `req_id`).
    pub fn request(&mut self, tx: TxId, req: Request<'_>) -> Result<Vec<u8>, Error> {
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        let bytes = req.encode(req_id, tx)?;
        self.send_bytes(&bytes)?;
        loop {
            match self.pump()? {
                Some(m) if m.req_id != req_id => return Err(Error::UnknownReqId(m.req_id)),
                Some(m) if m.ty == MsgType::Error => {
                    return Err(Error::Xs(XsError::from_payload(&m.payload)))
                }
                Some(m) if m.ty != req.msg_type() => {
                    return Err(Error::UnexpectedReply {
                        expected: req.msg_type(),
                        got: m.ty,
                    })
                }
                Some(m) => return Ok(m.payload),
                None => self.wait(req_id)?,
            }
        }
    }

    /// `READ`: the raw value.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, Error> {
        self.request(tx, Request::Read(path))
    }

    /// `READ` as UTF-8 text.
    pub fn read_string(&mut self, tx: TxId, path: &str) -> Result<String, Error> {
        parse_string(&self.read(tx, path)?)
    }

    /// `READ` as a decimal integer (e.g. `backend-id`, `ring-ref`).
    pub fn read_u64(&mut self, tx: TxId, path: &str) -> Result<u64, Error> {
        let v = self.read(tx, path)?;
        let v = v.strip_suffix(&[0]).unwrap_or(&v);
        parse_decimal(v).ok_or(Error::BadPayload("not a decimal integer"))
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
            if let Some(m) = self.pump()? {
                // No request is outstanding, so no reply may arrive.
                return Err(Error::UnknownReqId(m.req_id));
            }
        }
        Ok(self.events.pop_front())
    }

    /// Removes every queued or already-arrived watch event of `token`,
    /// without blocking; returns how many there were. Other events stay
    /// queued in order.
    pub fn take_watch_events(&mut self, token: &str) -> Result<usize, Error> {
        if let Some(m) = self.pump()? {
            // No request is outstanding, so no reply may arrive.
            return Err(Error::UnknownReqId(m.req_id));
        }
        let before = self.events.len();
        self.events.retain(|ev| ev.token != token);
        Ok(before - self.events.len())
    }

    /// The oldest queued or already-arrived watch event of `token`, without
    /// blocking. Other events stay queued in order.
    pub fn take_watch_event(&mut self, token: &str) -> Result<Option<WatchEvent>, Error> {
        if let Some(m) = self.pump()? {
            // No request is outstanding, so no reply may arrive.
            return Err(Error::UnknownReqId(m.req_id));
        }
        match self.events.iter().position(|ev| ev.token == token) {
            Some(i) => Ok(self.events.remove(i)),
            None => Ok(None),
        }
    }

    /// Blocks (via the transport) until a watch event is available.
    pub fn next_watch_event(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(ev) = self.poll_watch_event()? {
                return Ok(ev);
            }
            self.wait(0)?;
        }
    }
}
