//! libxenvchan, both roles, wire-compatible with Xen's `tools/libs/vchan`
//! (and so with the stock `vchan-socket-proxy`).
//!
//! Shared control page (granted by the **server** to the client),
//! [`VchanInterface`](crate::xen_abi::vchan::VchanInterface):
//!
//! | offset | field |
//! |---|---|
//! | 0  | `left { cons: u32, prod: u32 }`: client writes, server reads |
//! | 8  | `right { cons: u32, prod: u32 }`: server writes, client reads |
//! | 16 | `left_order: u16`, 18 `right_order: u16` |
//! | 20 | `cli_live`, 21 `srv_live`, 22 `cli_notify`, 23 `srv_notify` (u8) |
//! | 24 | `grants[]: u32`: left's ring pages first, then right's |
//!
//! Ring placement by order (log2 of the byte size): 10 → offset 1024 of the
//! control page, 11 → offset 2048, 12..=20 → `2^(order-12)` separately
//! granted pages. Indices are free-running `u32`, `idx & (size − 1)`.
//!
//! Notify protocol exactly as `io.c`: to ask for a wake-up, OR the bit into
//! the **peer's** notify byte (`request_notify`), full barrier, re-check.
//! After producing (data, `wmb`, `prod += n`) or consuming (data, `mb`,
//! `cons += n`): `mb`, `prev = fetch_and(own byte, !bit)`, send the event
//! only if `prev & bit`.
//!
//! Safety model: our own indices (`cons` of the read ring, `prod` of the
//! write ring) are kept privately and only written to the page; the peer's
//! index is read once per check and must satisfy `prod − cons ≤ size`, else
//! [`VchanError::BadIndex`] and the endpoint stays failed. Orders and grant
//! counts from a server are validated before anything is mapped (a grant
//! list may not overlap an in-page ring). Every wait is bounded.
//!
//! Liveness: the peer's `*_live` byte says "closed" only if the peer (or
//! its kernel's unmap notify) wrote it; a process killed between binding
//! the event channel and mapping the page, or a destroyed domain, never
//! does. So every wait loop also probes our port
//! ([`VchanEnv::port_state`]) before each sleep. When the remote end of an
//! interdomain channel closes, Xen turns our port back into `unbound`.
//! A client's port is interdomain from the start, anything else means the
//! server is gone. A server's offered port is unbound until the client
//! binds ("not yet"); it is gone once seen interdomain (or once the client
//! set `cli_live = 1`, which it does only after binding) and unbound again.
//! Either way the waiting call returns [`VchanError::PeerGone`] at the
//! first probe after the death, i.e. within about one [`SLICE_NS`] (Xen
//! sends no event for it), and every later wait returns it too. A client
//! that binds and dies between two probes without mapping anything leaves
//! no trace at all, but then nothing is lost either: Xen offers the port
//! to the same domain again, the page is untouched, and the listener stays
//! valid for the next client.
//!
//! Hardware and XenStore needs are the [`VchanEnv`] trait (plus the
//! driver [`Events`]), so host tests run a server and a client against each
//! other on two threads over heap pages.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::event::Events;
use crate::shared::{mb, rmb, wmb, MemOwner, SharedMem, PAGE_SIZE};
use crate::xenstore::Perm;

use crate::xen_abi::vchan::{
    CLI_LIVE, CLI_NOTIFY, GRANTS, GRANT_SIZE, LEFT, LEFT_ORDER, RIGHT, RIGHT_ORDER, RING_CONS,
    RING_PROD, SRV_LIVE, SRV_NOTIFY,
};
pub use crate::xen_abi::vchan::{NOTIFY_READ, NOTIFY_WRITE};
/// In-page ring of 1 KiB at offset 1024.
pub const SMALL_ORDER: u16 = 10;
/// In-page ring of 2 KiB at offset 2048.
pub const LARGE_ORDER: u16 = 11;
/// Largest ring: 1 MiB (256 pages).
pub const MAX_ORDER: u16 = 20;
const PAGE_SHIFT: u16 = 12;
/// libxenvchan formats `<path>/event-channel` into 64 bytes (with NUL).
pub const MAX_KEY_LEN: usize = 63;
/// Longest single sleep: liveness is re-checked at least this often.
pub const SLICE_NS: u64 = 100_000_000;

/// `*_live` value: the end has closed (or never connected and left).
pub const LIVE_EXITED: u8 = 0;
/// `*_live` value: the end is connected.
pub const LIVE_CONNECTED: u8 = 1;
/// `*_live` value: not connected yet (the server sets `cli_live` to it).
pub const LIVE_NOT_YET: u8 = 2;

/// A failed hypercall or XenStore operation in the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvError {
    /// The operation that failed, e.g. `"grant"`.
    pub what: &'static str,
    /// Its error, formatted.
    pub detail: String,
}

impl EnvError {
    /// An error of operation `what` with `detail` formatted.
    pub fn new(what: &'static str, detail: impl fmt::Display) -> Self {
        EnvError {
            what,
            detail: format!("{detail}"),
        }
    }
}

/// Why a vchan operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VchanError {
    /// The peer's index violates `prod − cons ≤ size`.
    BadIndex {
        /// Which ring: `"read"` or `"write"`.
        ring: &'static str,
        /// The producer index read from the page.
        prod: u32,
        /// The consumer index read from the page.
        cons: u32,
        /// The ring size in bytes.
        size: u32,
    },
    /// The server's control page has unusable ring orders / grants.
    BadOrders {
        /// `left_order` from the control page.
        left: u16,
        /// `right_order` from the control page.
        right: u16,
    },
    /// A XenStore key is not a decimal number (or is 0).
    BadKey {
        /// The key's name.
        key: &'static str,
        /// What it held.
        value: String,
    },
    /// The server's keys are not (yet) there.
    NotReady,
    /// `<path>/event-channel` longer than libxenvchan allows.
    PathTooLong,
    /// Requested ring larger than 1 MiB.
    TooBig,
    /// The peer closed the connection (or never connected and left): its
    /// `*_live` byte is 0 (written by the peer, or by its kernel's unmap
    /// notify). Data it sent before is delivered first.
    Closed,
    /// The peer vanished without a word: its end of the event channel is
    /// closed (process killed, domain destroyed) while its `*_live` byte
    /// still says connected / not yet. Handle it like [`Closed`](Self::Closed)
    /// (close, then listen or connect again); it differs only in that the
    /// peer did not say goodbye, so what we last sent may be lost (what it
    /// sent is still delivered first). Sticky: every later wait returns it
    /// at once.
    PeerGone,
    /// No progress for `ms` milliseconds.
    Timeout {
        /// The timeout that expired.
        ms: u64,
    },
    /// The environment failed.
    Env(EnvError),
}

impl From<EnvError> for VchanError {
    fn from(e: EnvError) -> Self {
        VchanError::Env(e)
    }
}

impl fmt::Display for VchanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VchanError::BadIndex {
                ring,
                prod,
                cons,
                size,
            } => write!(
                f,
                "protocol error: {ring} ring prod {prod:#x} cons {cons:#x} exceeds size {size}"
            ),
            VchanError::BadOrders { left, right } => {
                write!(
                    f,
                    "protocol error: bad ring orders left {left} right {right}"
                )
            }
            VchanError::BadKey { key, value } => write!(f, "bad XenStore value {key} = {value:?}"),
            VchanError::NotReady => write!(f, "server keys not present"),
            VchanError::PathTooLong => write!(f, "XenStore path too long"),
            VchanError::TooBig => write!(f, "ring larger than 1 MiB"),
            VchanError::Closed => write!(f, "peer closed"),
            VchanError::PeerGone => write!(f, "peer gone (its event channel closed)"),
            VchanError::Timeout { ms } => write!(f, "no progress for {ms} ms"),
            VchanError::Env(e) => write!(f, "{}: {}", e.what, e.detail),
        }
    }
}

impl core::error::Error for VchanError {}

/// State of our end of the event channel, as `EVTCHNOP_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Offered to the peer domain, nobody bound (yet, or any more: Xen
    /// reverts our end to this when the remote end closes).
    Unbound,
    /// Connected to the peer's port.
    Interdomain,
    /// Closed, not an interdomain port at all, or the status query failed.
    Closed,
}

/// What the vchan endpoints need from the kernel (grant table, event
/// channels, XenStore). The [`Events`] half carries notify/clear/wait/now.
///
/// Pages are owners ([`MemOwner`]): the endpoint keeps them and takes a
/// view, which borrows the page, at each access; handing a page back
/// ([`unshare_page`](Self::unshare_page), [`unmap_page`](Self::unmap_page))
/// takes it by value, so no view outlives it.
pub trait VchanEnv: Events {
    /// A page we share (kept until [`unshare_page`](Self::unshare_page)).
    type Share: MemOwner;
    /// A foreign page we mapped (kept until [`unmap_page`](Self::unmap_page)).
    type Map: MemOwner;
    /// Our own domain id.
    fn self_domid(&mut self) -> Result<u16, EnvError>;
    /// A zeroed page granted writable to `domid`: (grant ref, handle).
    fn share_page(&mut self, domid: u16) -> Result<(u32, Self::Share), EnvError>;
    /// Revoke the grant; if the peer still maps the page, defer its reuse.
    fn unshare_page(&mut self, share: Self::Share);
    /// Map `gref` of `domid` (one page).
    fn map_page(&mut self, domid: u16, gref: u32, readonly: bool) -> Result<Self::Map, EnvError>;
    /// Unmap a page.
    fn unmap_page(&mut self, map: Self::Map);
    /// `EVTCHNOP_alloc_unbound` for `remote`.
    fn alloc_unbound(&mut self, remote: u16) -> Result<u32, EnvError>;
    /// `EVTCHNOP_bind_interdomain`.
    fn bind_interdomain(&mut self, remote: u16, remote_port: u32) -> Result<u32, EnvError>;
    /// `EVTCHNOP_close`.
    fn close_port(&mut self, port: u32);
    /// `EVTCHNOP_status` of our `port` (how a vanished peer shows).
    fn port_state(&mut self, port: u32) -> PortState;
    /// Write `entries` and set `perms` on each, in one transaction.
    fn xs_publish(&mut self, entries: &[(&str, &str)], perms: &[Perm]) -> Result<(), EnvError>;
    /// Read a key; `Ok(None)` if absent or not readable (yet).
    fn xs_read(&mut self, path: &str) -> Result<Option<Vec<u8>>, EnvError>;
    /// Remove a key or directory (best effort).
    fn xs_rm(&mut self, path: &str);
}

/// Server order choice as `libxenvchan_server_init` (`left_min` = bytes
/// the client writes, `right_min` = bytes the server writes).
pub fn choose_orders(left_min: usize, right_min: usize) -> Result<(u16, u16), VchanError> {
    const SMALL: usize = 1 << SMALL_ORDER;
    const LARGE: usize = 1 << LARGE_ORDER;
    if left_min > 1 << MAX_ORDER || right_min > 1 << MAX_ORDER {
        return Err(VchanError::TooBig);
    }
    let min_order = |s: usize| -> u16 {
        let mut o = PAGE_SHIFT;
        while s > 1 << o {
            o += 1;
        }
        o
    };
    let (mut l, mut r) = (min_order(left_min), min_order(right_min));
    if left_min <= SMALL && right_min <= LARGE {
        (l, r) = (SMALL_ORDER, LARGE_ORDER);
    } else if left_min <= LARGE && right_min <= SMALL {
        (l, r) = (LARGE_ORDER, SMALL_ORDER);
    } else if left_min <= LARGE {
        l = LARGE_ORDER;
    } else if right_min <= LARGE {
        r = LARGE_ORDER;
    }
    Ok((l, r))
}

/// Pages a ring of `order` needs outside the control page.
fn ring_pages(order: u16) -> usize {
    if order >= PAGE_SHIFT {
        1 << (order - PAGE_SHIFT)
    } else {
        0
    }
}

/// In-page offset of a ring of `order` (10 or 11).
fn in_page_offset(order: u16) -> Option<usize> {
    match order {
        SMALL_ORDER => Some(1024),
        LARGE_ORDER => Some(2048),
        _ => None,
    }
}

/// Validates a pair of orders the way `init_gnt_cli` does, plus: the grant
/// list must end before any in-page ring starts.
pub fn check_orders(left: u16, right: u16) -> Result<(), VchanError> {
    let bad = VchanError::BadOrders { left, right };
    for o in [left, right] {
        if !(SMALL_ORDER..=MAX_ORDER).contains(&o) {
            return Err(bad);
        }
    }
    if left == right && left < PAGE_SHIFT {
        return Err(bad);
    }
    let grants_end = GRANTS + GRANT_SIZE * (ring_pages(left) + ring_pages(right));
    let first_ring = [left, right]
        .iter()
        .filter_map(|&o| in_page_offset(o))
        .min()
        .unwrap_or(PAGE_SIZE);
    if grants_end > first_ring {
        return Err(bad);
    }
    Ok(())
}

/// Where a ring's bytes are in the endpoint's pages: `seg` bytes from
/// offset `base` of each page from `first` on. An in-page ring is one
/// segment of the ring's size in the control page (page 0); a ring of its
/// own is whole pages.
struct Buf {
    first: usize,
    base: usize,
    seg: usize,
}

impl Buf {
    /// Calls `f(view, offset_in_view, range_of_private_buffer)` for each
    /// page piece of `off..off+len` (no wrap: callers split at the ring end).
    fn pieces<P: MemOwner>(
        &self,
        pages: &[P],
        mut off: usize,
        len: usize,
        mut f: impl FnMut(&SharedMem<'_>, usize, core::ops::Range<usize>),
    ) {
        let mut done = 0;
        while done < len {
            let (i, o) = (off / self.seg, off % self.seg);
            let n = (len - done).min(self.seg - o);
            f(&pages[self.first + i].mem(), self.base + o, done..done + n);
            done += n;
            off += n;
        }
    }
    fn copy_in<P: MemOwner>(&self, pages: &[P], off: usize, src: &[u8]) {
        self.pieces(pages, off, src.len(), |m, o, r| m.copy_in(o, &src[r]));
    }
    fn copy_out<P: MemOwner>(&self, pages: &[P], off: usize, dst: &mut [u8]) {
        self.pieces(pages, off, dst.len(), |m, o, r| m.copy_out(o, &mut dst[r]));
    }
}

struct Half {
    /// Offset of this ring's `ring_shared` in the control page.
    shr: usize,
    size: u32,
    buf: Buf,
}

impl Half {
    fn cons_off(&self) -> usize {
        self.shr + RING_CONS
    }
    fn prod_off(&self) -> usize {
        self.shr + RING_PROD
    }
}

/// Transfer counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VchanStats {
    /// Bytes taken from the read ring.
    pub bytes_read: u64,
    /// Bytes put on the write ring.
    pub bytes_written: u64,
    /// Event-channel notifications sent.
    pub notifies: u64,
    /// Sleeps waiting for the peer.
    pub waits: u64,
}

/// The byte-stream core of one endpoint (no environment), over its pages
/// `P`: the control page first, then the pages of the left ring, then
/// those of the right ring (the order of `grants[]`). Views of them are
/// taken at each access.
pub struct Stream<P: MemOwner> {
    pages: Vec<P>,
    server: bool,
    rd: Half,
    wr: Half,
    rd_cons: u32,
    wr_prod: u32,
    stats: VchanStats,
    failed: Option<VchanError>,
}

impl<P: MemOwner> Stream<P> {
    /// The control page.
    fn ctrl(&self) -> SharedMem<'_> {
        self.pages[0].mem()
    }

    /// Our notify byte (what *we* must signal) and the peer's.
    fn own_notify(&self) -> usize {
        if self.server {
            SRV_NOTIFY
        } else {
            CLI_NOTIFY
        }
    }
    fn peer_notify(&self) -> usize {
        if self.server {
            CLI_NOTIFY
        } else {
            SRV_NOTIFY
        }
    }

    /// The peer's `*_live` byte.
    pub fn peer_live(&self) -> u8 {
        self.ctrl()
            .load_u8(if self.server { CLI_LIVE } else { SRV_LIVE })
    }

    /// libxenvchan `is_open`: the peer's live byte is non-zero (for a
    /// server, "not yet connected" (2) counts as open).
    pub fn is_open(&self) -> bool {
        self.peer_live() != LIVE_EXITED
    }

    /// Counters.
    pub fn stats(&self) -> VchanStats {
        self.stats
    }

    /// The error that broke this stream, if any.
    pub fn failed(&self) -> Option<&VchanError> {
        self.failed.as_ref()
    }

    fn fail(&mut self, e: VchanError) -> VchanError {
        self.failed.get_or_insert(e).clone()
    }

    fn check(&self) -> Result<(), VchanError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn request_notify(&self, bit: u8) {
        self.ctrl().fetch_or_u8(self.peer_notify(), bit);
        mb();
    }

    /// After producing/consuming: clear our bit, `true` if the peer asked.
    fn take_notify(&self, bit: u8) -> bool {
        mb();
        self.ctrl().fetch_and_u8(self.own_notify(), !bit) & bit != 0
    }

    /// Validated bytes readable now.
    pub fn data_ready(&mut self) -> Result<u32, VchanError> {
        self.check()?;
        let prod = self.ctrl().load_u32(self.rd.prod_off());
        let ready = prod.wrapping_sub(self.rd_cons);
        if ready > self.rd.size {
            let e = VchanError::BadIndex {
                ring: "read",
                prod,
                cons: self.rd_cons,
                size: self.rd.size,
            };
            return Err(self.fail(e));
        }
        Ok(ready)
    }

    /// Validated bytes writable now.
    pub fn buffer_space(&mut self) -> Result<u32, VchanError> {
        self.check()?;
        let cons = self.ctrl().load_u32(self.wr.cons_off());
        let used = self.wr_prod.wrapping_sub(cons);
        if used > self.wr.size {
            let e = VchanError::BadIndex {
                ring: "write",
                prod: self.wr_prod,
                cons,
                size: self.wr.size,
            };
            return Err(self.fail(e));
        }
        Ok(self.wr.size - used)
    }

    /// Non-blocking read of up to `dst.len()` bytes. Returns the count and
    /// whether the peer must be notified. Asks for a wake-up when less than
    /// `dst.len()` was available (`fast_get_data_ready`).
    pub fn read_nb(&mut self, dst: &mut [u8]) -> Result<(usize, bool), VchanError> {
        let mut ready = self.data_ready()? as usize;
        if ready < dst.len() {
            self.request_notify(NOTIFY_WRITE);
            ready = self.data_ready()? as usize;
        }
        let n = ready.min(dst.len());
        if n == 0 {
            return Ok((0, false));
        }
        rmb(); // data after the index
        let size = self.rd.size as usize;
        let idx = (self.rd_cons & (self.rd.size - 1)) as usize;
        let first = n.min(size - idx);
        self.rd.buf.copy_out(&self.pages, idx, &mut dst[..first]);
        self.rd.buf.copy_out(&self.pages, 0, &mut dst[first..n]);
        mb(); // consume, then publish
        self.rd_cons = self.rd_cons.wrapping_add(n as u32);
        self.ctrl().store_u32(self.rd.cons_off(), self.rd_cons);
        self.stats.bytes_read += n as u64;
        Ok((n, self.take_notify(NOTIFY_READ)))
    }

    /// Non-blocking write of up to `src.len()` bytes: count and whether the
    /// peer must be notified.
    pub fn write_nb(&mut self, src: &[u8]) -> Result<(usize, bool), VchanError> {
        let mut space = self.buffer_space()? as usize;
        if space < src.len() {
            self.request_notify(NOTIFY_READ);
            space = self.buffer_space()? as usize;
        }
        let n = space.min(src.len());
        if n == 0 {
            return Ok((0, false));
        }
        mb(); // indices read, then data written
        let size = self.wr.size as usize;
        let idx = (self.wr_prod & (self.wr.size - 1)) as usize;
        let first = n.min(size - idx);
        self.wr.buf.copy_in(&self.pages, idx, &src[..first]);
        self.wr.buf.copy_in(&self.pages, 0, &src[first..n]);
        wmb(); // data, then index
        self.wr_prod = self.wr_prod.wrapping_add(n as u32);
        self.ctrl().store_u32(self.wr.prod_off(), self.wr_prod);
        self.stats.bytes_written += n as u64;
        Ok((n, self.take_notify(NOTIFY_WRITE)))
    }

    /// Ring sizes (read, write).
    pub fn sizes(&self) -> (u32, u32) {
        (self.rd.size, self.wr.size)
    }
}

/// A page of an endpoint: shared by us (server) or the peer's, mapped
/// (client).
pub enum VchanPage<E: VchanEnv> {
    /// Granted by us to the peer.
    Shared(E::Share),
    /// Granted by the peer, mapped.
    Mapped(E::Map),
}

impl<E: VchanEnv> MemOwner for VchanPage<E> {
    fn mem(&self) -> SharedMem<'_> {
        match self {
            VchanPage::Shared(s) => s.mem(),
            VchanPage::Mapped(m) => m.mem(),
        }
    }
}

/// Gives `page` back to the environment (revoke, or unmap).
fn release<E: VchanEnv>(env: &mut E, page: VchanPage<E>) {
    match page {
        VchanPage::Shared(s) => env.unshare_page(s),
        VchanPage::Mapped(m) => env.unmap_page(m),
    }
}

/// What the port probes learned about the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// Server: no client bound yet, as far as we saw.
    NotYet,
    /// Seen bound (port interdomain, or `cli_live == 1`).
    Seen,
    /// Seen, then the port was no longer interdomain, or the port is
    /// closed (sticky).
    Gone,
}

/// One vchan endpoint over an environment.
pub struct Vchan<E: VchanEnv> {
    env: E,
    stream: Stream<VchanPage<E>>,
    port: u32,
    /// Server: the XenStore directory it published.
    path: Option<String>,
    peer: Peer,
}

fn parse_key(key: &'static str, v: &[u8]) -> Result<u32, VchanError> {
    let bad = || VchanError::BadKey {
        key,
        value: String::from_utf8_lossy(v).into(),
    };
    let s = core::str::from_utf8(v).map_err(|_| bad())?;
    match s.trim_end_matches('\0').parse::<u32>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    }
}

/// Builds the two halves from the (validated) orders, over pages laid
/// out as [`Stream`] keeps them.
fn halves(server: bool, left: u16, right: u16) -> (Half, Half) {
    let mk = |shr: usize, order: u16, first: usize| {
        let size = 1u32 << order;
        let buf = match in_page_offset(order) {
            Some(base) => {
                assert!(base + size as usize <= PAGE_SIZE, "in-page ring");
                Buf {
                    first: 0,
                    base,
                    seg: size as usize,
                }
            }
            None => Buf {
                first,
                base: 0,
                seg: PAGE_SIZE,
            },
        };
        Half { shr, size, buf }
    };
    let l = mk(LEFT, left, 1);
    let r = mk(RIGHT, right, 1 + ring_pages(left));
    if server {
        (l, r) // server reads left, writes right
    } else {
        (r, l)
    }
}

impl<E: VchanEnv> Vchan<E> {
    /// `libxenvchan_server_init`: offer a vchan to `client` under XenStore
    /// directory `path` (absolute), rings of at least `left_min` (client →
    /// server) and `right_min` bytes (0, 0 → 1 KiB / 2 KiB in-page rings).
    /// On failure everything acquired is released and the env returned.
    pub fn server(
        mut env: E,
        client: u16,
        path: &str,
        left_min: usize,
        right_min: usize,
    ) -> Result<Self, (E, VchanError)> {
        if path.len() + "/event-channel".len() > MAX_KEY_LEN {
            return Err((env, VchanError::PathTooLong));
        }
        let (lo, ro) = match choose_orders(left_min, right_min) {
            Ok(o) => o,
            Err(e) => return Err((env, e)),
        };
        let me = match env.self_domid() {
            Ok(d) => d,
            Err(e) => return Err((env, e.into())),
        };
        let port = match env.alloc_unbound(client) {
            Ok(p) => p,
            Err(e) => return Err((env, e.into())),
        };
        let mut pages = Vec::new();
        let gref = match Self::server_pages(&mut env, client, lo, ro, &mut pages) {
            Ok(g) => g,
            Err(e) => {
                for p in pages {
                    release(&mut env, p);
                }
                env.close_port(port);
                return Err((env, e));
            }
        };
        let perms = Perm::owner_and_reader(me, client);
        let (rr, ec) = (format!("{path}/ring-ref"), format!("{path}/event-channel"));
        let (gs, ps) = (format!("{gref}"), format!("{port}"));
        if let Err(e) = env.xs_publish(&[(&rr, &gs), (&ec, &ps)], &perms) {
            for p in pages {
                release(&mut env, p);
            }
            env.close_port(port);
            return Err((env, e.into()));
        }
        let (rd, wr) = halves(true, lo, ro);
        Ok(Vchan {
            env,
            stream: Stream {
                pages,
                server: true,
                rd,
                wr,
                rd_cons: 0,
                wr_prod: 0,
                stats: VchanStats::default(),
                failed: None,
            },
            port,
            path: Some(path.into()),
            peer: Peer::NotYet,
        })
    }

    /// Shares the control page and the rings' pages into `pages` (in
    /// [`Stream`] order) and fills in the control page; its grant ref.
    fn server_pages(
        env: &mut E,
        client: u16,
        lo: u16,
        ro: u16,
        pages: &mut Vec<VchanPage<E>>,
    ) -> Result<u32, VchanError> {
        let (gref, s) = env.share_page(client)?;
        pages.push(VchanPage::Shared(s));
        pages[0].mem().fill(0, PAGE_SIZE, 0);
        let mut gi = 0;
        for order in [lo, ro] {
            for _ in 0..ring_pages(order) {
                let (g, s) = env.share_page(client)?;
                pages.push(VchanPage::Shared(s));
                pages[0].mem().write(GRANTS + GRANT_SIZE * gi, g);
                gi += 1;
            }
        }
        let ctrl = pages[0].mem();
        ctrl.store_u16(LEFT_ORDER, lo);
        ctrl.store_u16(RIGHT_ORDER, ro);
        ctrl.store_u8(CLI_LIVE, LIVE_NOT_YET);
        ctrl.store_u8(SRV_LIVE, LIVE_CONNECTED);
        ctrl.store_u8(CLI_NOTIFY, NOTIFY_WRITE);
        Ok(gref)
    }

    /// `libxenvchan_client_init`: connect to the server `server` that
    /// published `path/ring-ref` and `path/event-channel`.
    /// [`VchanError::NotReady`] if the keys are absent.
    pub fn client(mut env: E, server: u16, path: &str) -> Result<Self, (E, VchanError)> {
        let read = |env: &mut E, key: &'static str| -> Result<u32, VchanError> {
            match env.xs_read(&format!("{path}/{key}"))? {
                None => Err(VchanError::NotReady),
                Some(v) => parse_key(key, &v),
            }
        };
        let gref = match read(&mut env, "ring-ref") {
            Ok(v) => v,
            Err(e) => return Err((env, e)),
        };
        let rport = match read(&mut env, "event-channel") {
            Ok(v) => v,
            Err(e) => return Err((env, e)),
        };
        let port = match env.bind_interdomain(server, rport) {
            Ok(p) => p,
            Err(e) => return Err((env, e.into())),
        };
        let mut pages = Vec::new();
        match Self::client_pages(&mut env, server, gref, &mut pages) {
            Ok((lo, ro)) => {
                let (rd, wr) = halves(false, lo, ro);
                let ctrl = pages[0].mem();
                // Pick up the indices (a persistent server may have
                // served an earlier client).
                let rd_cons = ctrl.load_u32(rd.cons_off());
                let wr_prod = ctrl.load_u32(wr.prod_off());
                ctrl.store_u8(CLI_LIVE, LIVE_CONNECTED);
                ctrl.store_u8(SRV_NOTIFY, NOTIFY_WRITE);
                mb();
                env.notify(port);
                Ok(Vchan {
                    env,
                    stream: Stream {
                        pages,
                        server: false,
                        rd,
                        wr,
                        rd_cons,
                        wr_prod,
                        stats: VchanStats::default(),
                        failed: None,
                    },
                    port,
                    path: None,
                    // Bound: the server's port was there.
                    peer: Peer::Seen,
                })
            }
            Err(e) => {
                for p in pages.into_iter().rev() {
                    release(&mut env, p);
                }
                env.close_port(port);
                Err((env, e))
            }
        }
    }

    /// Maps the control page and the rings' pages into `pages` (in
    /// [`Stream`] order); the validated (left, right) orders.
    fn client_pages(
        env: &mut E,
        server: u16,
        gref: u32,
        pages: &mut Vec<VchanPage<E>>,
    ) -> Result<(u16, u16), VchanError> {
        let m = env.map_page(server, gref, false)?;
        pages.push(VchanPage::Mapped(m));
        let lo = pages[0].mem().load_u16(LEFT_ORDER);
        let ro = pages[0].mem().load_u16(RIGHT_ORDER);
        check_orders(lo, ro)?;
        let mut gi = 0;
        for (k, order) in [lo, ro].into_iter().enumerate() {
            for _ in 0..ring_pages(order) {
                let g: u32 = pages[0].mem().read(GRANTS + GRANT_SIZE * gi);
                gi += 1;
                // The client writes left (RW), reads right (RO).
                let m = env.map_page(server, g, k == 1)?;
                pages.push(VchanPage::Mapped(m));
            }
        }
        Ok((lo, ro))
    }

    /// The byte-stream core (counters, non-blocking I/O).
    pub fn stream(&mut self) -> &mut Stream<VchanPage<E>> {
        &mut self.stream
    }

    /// The environment.
    pub fn env(&mut self) -> &mut E {
        &mut self.env
    }

    /// Our event-channel port.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Whether the peer is connected (client `cli_live == 1` for a server;
    /// `srv_live == 1` for a client).
    pub fn connected(&self) -> bool {
        self.stream.peer_live() == LIVE_CONNECTED
    }

    /// Whether a port probe found the peer gone (its end of the event
    /// channel closed without a goodbye); see [`VchanError::PeerGone`].
    pub fn peer_gone(&self) -> bool {
        self.peer == Peer::Gone
    }

    /// Probes our port (one `port_state`; wait loops call it only when
    /// they found nothing to do) and updates the bookkeeping: `true` once
    /// the peer is gone.
    fn probe_gone(&mut self) -> bool {
        if self.peer == Peer::Gone {
            return true;
        }
        // A client sets cli_live = 1 only after binding: even if it died
        // before any probe saw the port interdomain, it was there.
        if self.stream.peer_live() == LIVE_CONNECTED {
            self.peer = Peer::Seen;
        }
        let gone = match self.env.port_state(self.port) {
            PortState::Interdomain => {
                self.peer = Peer::Seen;
                false
            }
            PortState::Unbound => self.peer == Peer::Seen,
            PortState::Closed => true,
        };
        if gone {
            self.peer = Peer::Gone;
        }
        gone
    }

    /// Before a sleep: is the peer still there? [`VchanError::Closed`] if
    /// its live byte says it left (checked after the probe, so a peer that
    /// closes properly, live byte first, is never reported as gone),
    /// [`VchanError::PeerGone`] if its end of the event channel closed.
    fn check_peer(&mut self) -> Result<(), VchanError> {
        let gone = self.probe_gone();
        mb(); // port state, then the live byte
        if !self.stream.is_open() {
            Err(VchanError::Closed)
        } else if gone {
            Err(VchanError::PeerGone)
        } else {
            Ok(())
        }
    }

    fn sleep(&mut self, last_progress: u64, timeout_ns: u64) -> Result<(), VchanError> {
        let now = self.env.now_ns();
        let waited = now.saturating_sub(last_progress);
        if waited >= timeout_ns {
            return Err(VchanError::Timeout {
                ms: waited / 1_000_000,
            });
        }
        self.stream.stats.waits += 1;
        self.env
            .wait(self.port, now + SLICE_NS.min(timeout_ns - waited).max(1));
        Ok(())
    }

    fn notify_if(&mut self, n: bool) {
        if n {
            self.env.notify(self.port);
            self.stream.stats.notifies += 1;
        }
    }

    /// Server: wait until a client connected (`cli_live == 1`).
    /// [`VchanError::Closed`] if it connected and left already,
    /// [`VchanError::PeerGone`] if it bound our port and vanished (even
    /// before setting `cli_live`). An offered port nobody bound yet is
    /// waited on until `timeout_ns`. The probe state persists across
    /// calls, so calling this in short slices works the same.
    pub fn wait_connected(&mut self, timeout_ns: u64) -> Result<(), VchanError> {
        let start = self.env.now_ns();
        loop {
            self.env.clear(self.port);
            let gone = self.probe_gone();
            mb(); // port state, then the live byte
            match self.stream.peer_live() {
                LIVE_CONNECTED if !gone => return Ok(()),
                LIVE_CONNECTED => return Err(VchanError::PeerGone),
                LIVE_NOT_YET if self.stream.server => {}
                _ => return Err(VchanError::Closed),
            }
            if gone {
                return Err(VchanError::PeerGone);
            }
            self.sleep(start, timeout_ns)?;
        }
    }

    /// Non-blocking read (notifies the peer if it asked).
    pub fn read_nb(&mut self, dst: &mut [u8]) -> Result<usize, VchanError> {
        let (n, notify) = self.stream.read_nb(dst)?;
        self.notify_if(notify);
        Ok(n)
    }

    /// Non-blocking write (notifies the peer if it asked).
    pub fn write_nb(&mut self, src: &[u8]) -> Result<usize, VchanError> {
        let (n, notify) = self.stream.write_nb(src)?;
        self.notify_if(notify);
        Ok(n)
    }

    /// Full-duplex step: writes what fits of `out` and reads what is there
    /// into `inp`, waiting until at least one of them moved. Returns
    /// (written, read). [`VchanError::Closed`] once the peer closed and
    /// nothing is left to read, [`VchanError::PeerGone`] likewise once its
    /// event channel closed (nothing is written to a peer known gone).
    pub fn pump(
        &mut self,
        out: &[u8],
        inp: &mut [u8],
        timeout_ns: u64,
    ) -> Result<(usize, usize), VchanError> {
        let last = self.env.now_ns();
        loop {
            self.env.clear(self.port);
            let open = self.stream.is_open() && self.peer != Peer::Gone;
            let w = if open && !out.is_empty() {
                self.write_nb(out)?
            } else {
                0
            };
            let r = self.read_nb(inp)?;
            if w > 0 || r > 0 {
                return Ok((w, r));
            }
            if let Err(e) = self.check_peer() {
                // Sent just before it left: deliver that first.
                if !inp.is_empty() && self.stream.data_ready()? > 0 {
                    continue;
                }
                return Err(e);
            }
            self.sleep(last, timeout_ns)?;
        }
    }

    /// Reads at least one byte (what is there, up to `dst.len()`). Data
    /// still in the ring is returned even after the peer closed or went
    /// away; then [`VchanError::Closed`] / [`VchanError::PeerGone`].
    pub fn read(&mut self, dst: &mut [u8], timeout_ns: u64) -> Result<usize, VchanError> {
        let last = self.env.now_ns();
        loop {
            self.env.clear(self.port);
            let n = self.read_nb(dst)?;
            if n > 0 || dst.is_empty() {
                return Ok(n);
            }
            if let Err(e) = self.check_peer() {
                if self.stream.data_ready()? > 0 {
                    continue;
                }
                return Err(e);
            }
            self.sleep(last, timeout_ns)?;
        }
    }

    /// Writes all of `src`, waiting for space; fails if the peer closes
    /// ([`VchanError::Closed`]) or is found gone ([`VchanError::PeerGone`];
    /// the port is probed only when the ring is full, so a write that
    /// fits may still succeed towards a peer that just died).
    pub fn write_all(&mut self, mut src: &[u8], timeout_ns: u64) -> Result<(), VchanError> {
        let mut last = self.env.now_ns();
        while !src.is_empty() {
            self.env.clear(self.port);
            if !self.stream.is_open() {
                return Err(VchanError::Closed);
            }
            if self.peer == Peer::Gone {
                return Err(VchanError::PeerGone);
            }
            let n = self.write_nb(src)?;
            src = &src[n..];
            if n > 0 {
                last = self.env.now_ns();
                continue;
            }
            self.check_peer()?;
            self.sleep(last, timeout_ns)?;
        }
        Ok(())
    }

    /// Echoes everything read back to the peer until it closes (then
    /// `Ok(bytes echoed)`, after writing out what it sent) or `limit`
    /// bytes were echoed. Never blocks writing while input waits, so two
    /// full rings cannot deadlock. A peer found gone ends it with
    /// [`VchanError::PeerGone`] (the count is in [`Stream::stats`]).
    pub fn echo(&mut self, limit: u64, idle_ns: u64) -> Result<u64, VchanError> {
        let mut buf = alloc::vec![0u8; 8192];
        let (mut head, mut tail) = (0usize, 0usize);
        let mut echoed = 0u64;
        let mut last = self.env.now_ns();
        loop {
            self.env.clear(self.port);
            let mut progress = false;
            if tail < buf.len() {
                let n = self.read_nb(&mut buf[tail..])?;
                tail += n;
                progress |= n > 0;
            }
            if head < tail {
                if !self.stream.is_open() {
                    return Err(VchanError::Closed);
                }
                if self.peer == Peer::Gone {
                    return Err(VchanError::PeerGone);
                }
                let n = self.write_nb(&buf[head..tail])?;
                head += n;
                echoed += n as u64;
                progress |= n > 0;
                if head == tail {
                    (head, tail) = (0, 0);
                }
            }
            if echoed >= limit && head == tail {
                return Ok(echoed);
            }
            if progress {
                last = self.env.now_ns();
                continue;
            }
            match self.check_peer() {
                Ok(()) => {}
                Err(VchanError::Closed) if head == tail => return Ok(echoed),
                Err(e) => return Err(e),
            }
            self.sleep(last, idle_ns)?;
        }
    }

    /// `libxenvchan_close`: mark ourselves exited, release the pages and
    /// the port, notify, and (server) remove the XenStore directory. The
    /// environment comes back for a reconnect.
    pub fn close(self) -> E {
        let Vchan {
            mut env,
            stream,
            port,
            path,
            peer: _,
        } = self;
        let own_live = if stream.server { SRV_LIVE } else { CLI_LIVE };
        stream.ctrl().store_u8(own_live, LIVE_EXITED);
        mb();
        let pages = stream.pages.into_iter().rev();
        match path {
            Some(path) => {
                env.xs_rm(&path);
                env.notify(port);
                for p in pages {
                    release(&mut env, p);
                }
            }
            None => {
                for p in pages {
                    release(&mut env, p);
                }
                env.notify(port);
            }
        }
        env.close_port(port);
        env
    }
}

#[cfg(test)]
mod tests;
