//! The XenStore wire protocol (xen/include/public/io/xs_wire.h): every
//! message is a 16-byte header `xsd_sockmsg { type, req_id, tx_id, len }`
//! (u32 little-endian) followed by `len ≤ XENSTORE_PAYLOAD_MAX` (4096)
//! payload bytes. [`Decoder`] accepts bytes in arbitrary pieces (messages
//! straddle the ring wrap and arrive split), never buffers more than one
//! message, and turns oversized lengths, unknown types and malformed
//! payloads into typed [`Error`]s. Also here: request encoding, reply
//! parsers and the module's error type.

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::xen_abi::xs_wire::{MSG_LEN, MSG_REQ_ID, MSG_TX_ID, MSG_TYPE};

/// `XENSTORE_PAYLOAD_MAX`: largest payload of any message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Size of `struct xsd_sockmsg`
/// ([`XsdSockmsg`](crate::xen_abi::xs_wire::XsdSockmsg)).
pub const HEADER_SIZE: usize = crate::xen_abi::xs_wire::HEADER_SIZE;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;

/// `enum xsd_sockmsg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_CONTROL`: debug/control commands (was XS_DEBUG).
    Control = 0,
    /// `XS_DIRECTORY`: list a node's children.
    Directory = 1,
    /// `XS_READ`: read a node's value.
    Read = 2,
    /// `XS_GET_PERMS`: read a node's permissions.
    GetPerms = 3,
    /// `XS_WATCH`: watch a path (and its children).
    Watch = 4,
    /// `XS_UNWATCH`: remove a watch.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: start a transaction.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: commit or abort a transaction.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`: introduce a domain (Dom0 only).
    Introduce = 8,
    /// `XS_RELEASE`: release a domain (Dom0 only).
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    GetDomainPath = 10,
    /// `XS_WRITE`: write a node's value.
    Write = 11,
    /// `XS_MKDIR`: create a node.
    Mkdir = 12,
    /// `XS_RM`: remove a node and its children.
    Rm = 13,
    /// `XS_SET_PERMS`: set a node's permissions.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: a watch fired (unsolicited).
    WatchEvent = 15,
    /// `XS_ERROR`: the reply to a failed request.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`: resume a domain (Dom0 only).
    Resume = 18,
    /// `XS_SET_TARGET`: give a domain rights over another (Dom0 only).
    SetTarget = 19,
    /// `XS_RESET_WATCHES`: drop all of our watches.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: one part of a long directory listing.
    DirectoryPart = 22,
}

impl MsgType {
    /// Decodes a wire type; `None` for unknown values (20 was removed).
    pub fn from_u32(v: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// Errors xenstored reports in an `ERROR` reply (payload = errno name + NUL,
/// `xsd_errors[]` in xs_wire.h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsError {
    /// `ENOENT`: No such node.
    ENOENT,
    /// `EACCES`: Permission denied.
    EACCES,
    /// `EINVAL`: Invalid argument (bad path, value or request).
    EINVAL,
    /// `EEXIST`: Node exists.
    EEXIST,
    /// `EISDIR`: Is a directory.
    EISDIR,
    /// `ENOMEM`: Out of memory.
    ENOMEM,
    /// `ENOSPC`: No space left (a quota is exhausted).
    ENOSPC,
    /// `EIO`: I/O error.
    EIO,
    /// `ENOTEMPTY`: Directory not empty.
    ENOTEMPTY,
    /// `ENOSYS`: Function not implemented.
    ENOSYS,
    /// `EROFS`: Read-only file system.
    EROFS,
    /// `EBUSY`: Device or resource busy.
    EBUSY,
    /// `EAGAIN`: Try again (the transaction conflicted).
    EAGAIN,
    /// `EISCONN`: Already connected.
    EISCONN,
    /// `E2BIG`: Too big (node, request or quota).
    E2BIG,
    /// `EPERM`: Operation not permitted.
    EPERM,
    /// Any other (printable) name; non-UTF-8 bytes are replaced.
    Unknown(String),
}

impl XsError {
    /// Parses an `ERROR` payload such as `b"ENOENT\0"`.
    pub fn from_payload(p: &[u8]) -> XsError {
        let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
        let name = &p[..end];
        use XsError::*;
        match name {
            b"ENOENT" => ENOENT,
            b"EACCES" => EACCES,
            b"EINVAL" => EINVAL,
            b"EEXIST" => EEXIST,
            b"EISDIR" => EISDIR,
            b"ENOMEM" => ENOMEM,
            b"ENOSPC" => ENOSPC,
            b"EIO" => EIO,
            b"ENOTEMPTY" => ENOTEMPTY,
            b"ENOSYS" => ENOSYS,
            b"EROFS" => EROFS,
            b"EBUSY" => EBUSY,
            b"EAGAIN" => EAGAIN,
            b"EISCONN" => EISCONN,
            b"E2BIG" => E2BIG,
            b"EPERM" => EPERM,
            other => Unknown(String::from_utf8_lossy(&other[..other.len().min(64)]).into_owned()),
        }
    }

    /// The errno name, as on the wire.
    pub fn name(&self) -> &str {
        use XsError::*;
        match self {
            ENOENT => "ENOENT",
            EACCES => "EACCES",
            EINVAL => "EINVAL",
            EEXIST => "EEXIST",
            EISDIR => "EISDIR",
            ENOMEM => "ENOMEM",
            ENOSPC => "ENOSPC",
            EIO => "EIO",
            ENOTEMPTY => "ENOTEMPTY",
            ENOSYS => "ENOSYS",
            EROFS => "EROFS",
            EBUSY => "EBUSY",
            EAGAIN => "EAGAIN",
            EISCONN => "EISCONN",
            E2BIG => "E2BIG",
            EPERM => "EPERM",
            Unknown(s) => s,
        }
    }
}

/// Everything that can go wrong talking to xenstored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered with an `ERROR` reply.
    Xs(XsError),
    /// A header announced more than `XENSTORE_PAYLOAD_MAX` bytes.
    Oversized {
        /// The announced length.
        len: u32,
    },
    /// A header carried an unknown message type.
    BadType(u32),
    /// One-shot decode: fewer bytes than the header/length require.
    Truncated {
        /// Bytes the message needs.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// A reply payload did not have the shape its type requires.
    BadPayload(&'static str),
    /// A reply of the wrong type for the request.
    UnexpectedReply {
        /// The request's type (the success reply's type).
        expected: MsgType,
        /// The reply's type.
        got: MsgType,
    },
    /// A reply whose `req_id` matches no outstanding request. The client
    /// no longer returns this (it drops such replies and counts them,
    /// [`XenStore::stray_replies`](super::XenStore::stray_replies)); kept
    /// for callers that match on it.
    UnknownReqId(u32),
    /// The request payload would exceed `XENSTORE_PAYLOAD_MAX`.
    RequestTooLarge {
        /// The payload length the request would have.
        len: usize,
    },
    /// Empty path, embedded NUL, or longer than the path limits.
    BadPath,
    /// The peer's ring index is impossible (`prod − cons > 1024`).
    BadRingIndex {
        /// The producer index read from the page.
        prod: u32,
        /// The consumer index read from the page.
        cons: u32,
    },
    /// The interface page is too small.
    BadRingPage,
    /// The decoder previously failed; the stream is out of sync.
    Desynced,
    /// The transport gave up waiting.
    Timeout,
    /// `transaction()` saw `EAGAIN` `MAX_TRANSACTION_RETRIES` times.
    TooManyRetries,
    /// A value read through a typed helper (`read_u64`, `read_string`) is
    /// not what the helper parses.
    BadValue {
        /// The path as the caller gave it.
        path: String,
        /// The value as read.
        value: Vec<u8>,
        /// What the value should have been, e.g. `"a decimal u64"`.
        expected: &'static str,
    },
    /// The client's connection is unusable for good (returned by the call
    /// that found out and by every later one).
    Broken(Broken),
}

/// Why a client stopped talking to xenstored. Nothing re-aligns a byte
/// stream safely once a message boundary is lost, so the client stops
/// rather than guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A reply header announced more than `XENSTORE_PAYLOAD_MAX` bytes.
    Oversized {
        /// The announced length.
        len: u32,
    },
    /// A reply header carried an unknown message type.
    BadType(u32),
    /// The decoder had already failed.
    Desynced,
    /// A request was cut: only `sent` of its `len` bytes reached the ring
    /// before its deadline, and xenstored would read the next request as
    /// its rest.
    PartialSend {
        /// Bytes written to the ring.
        sent: usize,
        /// Bytes of the request.
        len: usize,
    },
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Oversized { len } => write!(f, "reply header announces {len} bytes"),
            Broken::BadType(t) => write!(f, "reply header has unknown type {t}"),
            Broken::Desynced => write!(f, "reply stream out of sync"),
            Broken::PartialSend { sent, len } => {
                write!(f, "request cut after {sent} of {len} bytes")
            }
        }
    }
}

/// Writes `v` quoted, non-printable bytes escaped, at most 64 bytes.
fn write_escaped(f: &mut fmt::Formatter<'_>, v: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in &v[..v.len().min(64)] {
        for c in core::ascii::escape_default(b) {
            fmt::Write::write_char(f, c as char)?;
        }
    }
    f.write_str(if v.len() > 64 { "\"..." } else { "\"" })
}

impl From<XsError> for Error {
    fn from(e: XsError) -> Self {
        Error::Xs(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xs(e) => write!(f, "xenstored: {}", e.name()),
            Error::BadValue {
                path,
                value,
                expected,
            } => {
                write!(f, "xenstore: {path} = ")?;
                write_escaped(f, value)?;
                write!(f, " is not {expected}")
            }
            Error::Broken(why) => write!(f, "xenstore: connection broken: {why}"),
            other => write!(f, "xenstore: {other:?}"),
        }
    }
}

impl core::error::Error for Error {}

/// `struct xsd_sockmsg`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `type`: an `XS_*` [`MsgType`] number.
    pub ty: u32,
    /// `req_id`: echoed in the reply.
    pub req_id: u32,
    /// `tx_id`: transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// `len`: payload bytes following the header.
    pub len: u32,
}

impl Header {
    /// Little-endian wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[MSG_TYPE..MSG_TYPE + 4].copy_from_slice(&self.ty.to_le_bytes());
        b[MSG_REQ_ID..MSG_REQ_ID + 4].copy_from_slice(&self.req_id.to_le_bytes());
        b[MSG_TX_ID..MSG_TX_ID + 4].copy_from_slice(&self.tx_id.to_le_bytes());
        b[MSG_LEN..MSG_LEN + 4].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses the wire form (no validation).
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: u(MSG_TYPE),
            req_id: u(MSG_REQ_ID),
            tx_id: u(MSG_TX_ID),
            len: u(MSG_LEN),
        }
    }
}

/// A complete, validated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message type.
    pub ty: MsgType,
    /// The request id (echoed by xenstored).
    pub req_id: u32,
    /// The transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// The payload, at most `XENSTORE_PAYLOAD_MAX` bytes.
    pub payload: Vec<u8>,
}

/// A transaction id (`0` = no transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxId(pub u32);

impl TxId {
    /// Outside any transaction.
    pub const NONE: TxId = TxId(0);
}

/// Permission kind: `n` none, `r` read, `w` write, `b` both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermKind {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

/// One permission entry, e.g. `r5`. In a list the first entry names the
/// owner and the default for all other domains; the rest are per-domain ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// What the domain may do.
    pub kind: PermKind,
    /// The domain.
    pub domid: u16,
}

impl Perm {
    /// The permissions of keys a domain publishes for one peer (ring refs,
    /// event channels): the first entry names the owner and, with
    /// [`PermKind::None`], denies everyone else; the second lets `reader`
    /// read. Only the owner can write (xenstore.txt, "permissions").
    pub fn owner_and_reader(owner: u16, reader: u16) -> [Perm; 2] {
        [
            Perm {
                kind: PermKind::None,
                domid: owner,
            },
            Perm {
                kind: PermKind::Read,
                domid: reader,
            },
        ]
    }

    /// Parses `n|r|w|b` followed by a decimal domid.
    pub fn parse(s: &[u8]) -> Result<Perm, Error> {
        let (&k, digits) = s.split_first().ok_or(Error::BadPayload("empty perm"))?;
        let kind = match k {
            b'n' => PermKind::None,
            b'r' => PermKind::Read,
            b'w' => PermKind::Write,
            b'b' => PermKind::Both,
            _ => return Err(Error::BadPayload("perm kind")),
        };
        let domid = parse_decimal(digits).ok_or(Error::BadPayload("perm domid"))?;
        let domid = u16::try_from(domid).map_err(|_| Error::BadPayload("perm domid"))?;
        Ok(Perm { kind, domid })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            PermKind::None => b'n',
            PermKind::Read => b'r',
            PermKind::Write => b'w',
            PermKind::Both => b'b',
        });
        out.extend_from_slice(self.domid.to_string().as_bytes());
    }
}

/// A fired watch: the path that changed and the token given to `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed.
    pub path: String,
    /// The token given to `watch`.
    pub token: String,
}

/// Strict decimal: ASCII digits only (no sign, space, NUL or prefix),
/// at least one, fitting a `u64`.
pub(super) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

// ---------------------------------------------------------------------------
// Encoding

fn check_path(p: &str) -> Result<(), Error> {
    let max = if p.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if p.is_empty() || p.len() > max || p.bytes().any(|b| b == 0) {
        return Err(Error::BadPath);
    }
    Ok(())
}

fn check_token(t: &str) -> Result<(), Error> {
    if t.is_empty() || t.bytes().any(|b| b == 0) {
        return Err(Error::BadPath);
    }
    Ok(())
}

/// A request, before encoding. Paths not starting with `/` are relative to
/// the caller's `/local/domain/<domid>` (resolved by xenstored).
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// `XS_READ` of a path.
    Read(&'a str),
    /// `XS_WRITE` of a path and its value.
    Write(&'a str, &'a [u8]),
    /// `XS_DIRECTORY` of a path.
    Directory(&'a str),
    /// `XS_MKDIR` of a path.
    Mkdir(&'a str),
    /// `XS_RM` of a path.
    Rm(&'a str),
    /// `XS_GET_PERMS` of a path.
    GetPerms(&'a str),
    /// `XS_SET_PERMS` of a path: owner first, then ACL entries.
    SetPerms(&'a str, &'a [Perm]),
    /// `XS_WATCH` of a path with a token.
    Watch(&'a str, &'a str),
    /// `XS_UNWATCH` of a path and token.
    Unwatch(&'a str, &'a str),
    /// `XS_TRANSACTION_START`.
    TransactionStart,
    /// `true` = commit (`T`), `false` = abort (`F`).
    TransactionEnd(bool),
    /// `XS_GET_DOMAIN_PATH` of a domid.
    GetDomainPath(u16),
}

impl Request<'_> {
    /// The wire type (also the type of the success reply).
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Read(_) => MsgType::Read,
            Request::Write(..) => MsgType::Write,
            Request::Directory(_) => MsgType::Directory,
            Request::Mkdir(_) => MsgType::Mkdir,
            Request::Rm(_) => MsgType::Rm,
            Request::GetPerms(_) => MsgType::GetPerms,
            Request::SetPerms(..) => MsgType::SetPerms,
            Request::Watch(..) => MsgType::Watch,
            Request::Unwatch(..) => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd(_) => MsgType::TransactionEnd,
            Request::GetDomainPath(_) => MsgType::GetDomainPath,
        }
    }

    /// The payload, validated (paths, tokens, `XENSTORE_PAYLOAD_MAX`).
    pub fn payload(&self) -> Result<Vec<u8>, Error> {
        let mut p = Vec::new();
        let path0 = |p: &mut Vec<u8>, s: &str| -> Result<(), Error> {
            check_path(s)?;
            p.extend_from_slice(s.as_bytes());
            p.push(0);
            Ok(())
        };
        match *self {
            Request::Read(s)
            | Request::Directory(s)
            | Request::Mkdir(s)
            | Request::Rm(s)
            | Request::GetPerms(s) => path0(&mut p, s)?,
            Request::Write(s, v) => {
                path0(&mut p, s)?;
                p.extend_from_slice(v); // value: not NUL-terminated
            }
            Request::SetPerms(s, perms) => {
                path0(&mut p, s)?;
                if perms.is_empty() {
                    return Err(Error::BadPayload("set_perms needs an owner entry"));
                }
                for perm in perms {
                    perm.encode(&mut p);
                    p.push(0);
                }
            }
            Request::Watch(s, t) | Request::Unwatch(s, t) => {
                path0(&mut p, s)?;
                check_token(t)?;
                p.extend_from_slice(t.as_bytes());
                p.push(0);
            }
            Request::TransactionStart => p.push(0),
            Request::TransactionEnd(commit) => {
                p.extend_from_slice(if commit { b"T\0" } else { b"F\0" })
            }
            Request::GetDomainPath(d) => {
                p.extend_from_slice(d.to_string().as_bytes());
                p.push(0);
            }
        }
        if p.len() > XENSTORE_PAYLOAD_MAX {
            return Err(Error::RequestTooLarge { len: p.len() });
        }
        Ok(p)
    }

    /// Header + payload, ready for the ring.
    pub fn encode(&self, req_id: u32, tx: TxId) -> Result<Vec<u8>, Error> {
        encode_message(self.msg_type(), req_id, tx.0, &self.payload()?)
    }
}

/// Encodes any message (also used by test peers for replies).
pub fn encode_message(
    ty: MsgType,
    req_id: u32,
    tx_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    if payload.len() > XENSTORE_PAYLOAD_MAX {
        return Err(Error::RequestTooLarge { len: payload.len() });
    }
    let h = Header {
        ty: ty as u32,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decoding

/// Streaming decoder: feed bytes in any split, get whole messages out.
/// Holds at most one message (≤ 16 + 4096 bytes). After a framing error it
/// stays failed ([`Error::Desynced`]) until [`reset`](Decoder::reset): the
/// byte stream can no longer be trusted to be aligned on headers.
#[derive(Debug, Default)]
pub struct Decoder {
    hdr: [u8; HEADER_SIZE],
    hdr_len: usize,
    header: Option<(MsgType, Header)>,
    payload: Vec<u8>,
    failed: bool,
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Forgets any partial message and a previous failure.
    pub fn reset(&mut self) {
        *self = Decoder::default();
    }

    /// Whether a message is partially received.
    pub fn is_mid_message(&self) -> bool {
        self.hdr_len > 0
    }

    /// Consumes bytes from `input` up to the end of at most one message.
    /// Returns how many bytes were used and the message if it completed.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), Error> {
        if self.failed {
            return Err(Error::Desynced);
        }
        let mut used = 0;
        if self.header.is_none() {
            let n = (HEADER_SIZE - self.hdr_len).min(input.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
            self.hdr_len += n;
            used += n;
            if self.hdr_len < HEADER_SIZE {
                return Ok((used, None));
            }
            let h = Header::from_bytes(&self.hdr);
            let ty = match MsgType::from_u32(h.ty) {
                Some(t) => t,
                None => {
                    self.failed = true;
                    return Err(Error::BadType(h.ty));
                }
            };
            if h.len as usize > XENSTORE_PAYLOAD_MAX {
                self.failed = true;
                return Err(Error::Oversized { len: h.len });
            }
            self.payload = Vec::with_capacity(h.len as usize);
            self.header = Some((ty, h));
        }
        let (ty, h) = self.header.expect("header set above");
        let want = h.len as usize - self.payload.len();
        let n = want.min(input.len() - used);
        self.payload.extend_from_slice(&input[used..used + n]);
        used += n;
        if self.payload.len() < h.len as usize {
            return Ok((used, None));
        }
        let msg = Message {
            ty,
            req_id: h.req_id,
            tx_id: h.tx_id,
            payload: core::mem::take(&mut self.payload),
        };
        self.header = None;
        self.hdr_len = 0;
        Ok((used, Some(msg)))
    }
}

/// One-shot decode of a message at the start of `bytes`: the message and
/// the number of bytes it occupied.
pub fn decode_message(bytes: &[u8]) -> Result<(Message, usize), Error> {
    let mut d = Decoder::new();
    match d.push(bytes)? {
        (n, Some(m)) => Ok((m, n)),
        (_, None) => {
            let need = if bytes.len() < HEADER_SIZE {
                HEADER_SIZE
            } else {
                HEADER_SIZE
                    + Header::from_bytes(bytes[..HEADER_SIZE].try_into().expect("16 bytes")).len
                        as usize
            };
            Err(Error::Truncated {
                need,
                have: bytes.len(),
            })
        }
    }
}

/// `OK\0` (tolerating a missing NUL).
pub fn parse_ok(p: &[u8]) -> Result<(), Error> {
    match p {
        b"OK\0" | b"OK" => Ok(()),
        _ => Err(Error::BadPayload("expected OK")),
    }
}

/// A NUL-separated string list (`name\0name\0…`; empty payload = empty list).
pub fn parse_strings(p: &[u8]) -> Result<Vec<String>, Error> {
    let body = p.strip_suffix(&[0]).unwrap_or(p);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .map(|s| {
            core::str::from_utf8(s)
                .map(|s| s.to_string())
                .map_err(|_| Error::BadPayload("not UTF-8"))
        })
        .collect()
}

/// A single NUL-terminated (or unterminated) string.
pub fn parse_string(p: &[u8]) -> Result<String, Error> {
    let body = p.strip_suffix(&[0]).unwrap_or(p);
    if body.contains(&0) {
        return Err(Error::BadPayload("embedded NUL"));
    }
    core::str::from_utf8(body)
        .map(|s| s.to_string())
        .map_err(|_| Error::BadPayload("not UTF-8"))
}

/// `WATCH_EVENT` payload: `path\0token\0`.
pub fn parse_watch_event(p: &[u8]) -> Result<WatchEvent, Error> {
    let mut v = parse_strings(p)?;
    if v.len() != 2 {
        return Err(Error::BadPayload("watch event needs path and token"));
    }
    let token = v.pop().expect("len 2");
    let path = v.pop().expect("len 2");
    Ok(WatchEvent { path, token })
}
