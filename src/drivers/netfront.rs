//! netfront, the pure protocol part: what Linux netback offers and how
//! its keys are read, the frontend's connection keys, the transmit slot
//! builder and the checks of every response. No hypercalls and no grants
//! here; the guest driver builds on these pieces.
//!
//! * [`BackendFeatures`] — netback's `feature-*` keys, read strictly; a
//!   backend without `feature-rx-copy` cannot serve us (netback refuses a
//!   frontend without `request-rx-copy`, `devices.md` §2).
//! * [`parse_mac`] — the `mac` key (`aa:bb:cc:dd:ee:ff`, unicast).
//! * [`connect_keys`] — `tx-ring-ref`, `rx-ring-ref`, one or two event
//!   channels, `request-rx-copy` = 1, `feature-rx-notify` = 1 (without it
//!   netback polls every 30 ms), the offloads we take, with state
//!   `Connected` (netback connects only to a Connected frontend).
//! * [`plan_tx`] — a packet's tx slots over bounce pages, built so that
//!   netback's hard rules can never be broken: the first slot's `size` is
//!   the whole packet, no slot crosses a page (that *disables the vif*),
//!   at most [`MAX_TX_SLOTS`] data slots, at least 14 bytes, an extra-info
//!   slot right after the first when GSO is asked for.
//! * [`TxTable`] and [`RxRing`] — responses copied out once and checked:
//!   tx ids outstanding, `RSP_NULL` only for extra slots; rx responses in
//!   request order with the request's id, offset + length inside the page,
//!   flags known, packets chained by `NETRXF_more_data` within limits.
//!   Anything else is a [`NetError`] that disconnects.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::shared::PAGE_SIZE;
use crate::xen_abi::netif::{
    NetifExtraInfo, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETRXF_CSUM_BLANK,
    NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_GSO_PREFIX, NETRXF_MORE_DATA,
    NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4,
    XEN_NETIF_GSO_TYPE_TCPV6, XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_NR_SLOTS_MIN, XEN_NETIF_RSP_DROPPED,
    XEN_NETIF_RSP_ERROR, XEN_NETIF_RSP_NULL, XEN_NETIF_RSP_OKAY,
};
use crate::xenbus::{parse_canonical_decimal, Keys, XenbusState};

/// An Ethernet header: netback drops anything shorter.
pub const MIN_PACKET: usize = 14;
/// Most data slots of one packet: netback drops a packet of more than
/// `XEN_NETBK_LEGACY_SLOTS_MAX` (18) and disables the vif at 20 or more.
pub const MAX_TX_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN;
/// Most bytes of one received packet we assemble (a GSO packet fills at
/// most 17 pages; anything longer is a broken backend).
pub const MAX_RX_PACKET: usize = 0x10000 + PAGE_SIZE;

/// Why netfront cannot go on (every variant but [`NetError::Packet`]
/// means the backend broke the protocol or cannot serve us: disconnect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A backend key's value is not what the protocol allows.
    BadValue {
        /// The key.
        path: String,
        /// Its value, as read.
        value: Vec<u8>,
        /// What it should be.
        expected: &'static str,
    },
    /// A key that must exist does not.
    Missing {
        /// The key.
        path: String,
    },
    /// The backend cannot serve this frontend.
    Unsupported(&'static str),
    /// A packet we were asked to send is not sendable (too short, too
    /// long, too many pages): refused before anything is queued.
    Packet(&'static str),
    /// A tx response with an id not outstanding.
    TxUnknownId(u16),
    /// A tx response with a status netif.h does not define (or `NULL`
    /// where no extra slot is outstanding).
    TxBadStatus {
        /// Its id.
        id: u16,
        /// Its status.
        status: i16,
    },
    /// An rx response that does not answer the request in its slot.
    RxWrongId {
        /// The id expected (the request's).
        want: u16,
        /// The id in the response.
        got: u16,
    },
    /// An rx response whose data would lie outside its page.
    RxBadExtent {
        /// Its offset.
        offset: u16,
        /// Its status (the length).
        status: i16,
    },
    /// An rx response with flags we did not ask for or a chain too long.
    RxBadPacket(&'static str),
}

impl NetError {
    /// Whether the device must disconnect.
    pub fn disconnects(&self) -> bool {
        !matches!(self, NetError::Packet(_))
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::BadValue {
                path,
                value,
                expected,
            } => {
                write!(f, "netfront: {path} = ")?;
                crate::xenbus::fmt_value(f, value)?;
                write!(f, " is not {expected}")
            }
            NetError::Missing { path } => write!(f, "netfront: backend key {path} missing"),
            NetError::Unsupported(why) => write!(f, "netfront: backend cannot serve us: {why}"),
            NetError::Packet(why) => write!(f, "netfront: packet refused: {why}"),
            NetError::TxUnknownId(id) => write!(f, "netfront: bad tx response: unknown id {id}"),
            NetError::TxBadStatus { id, status } => {
                write!(f, "netfront: bad tx response: id {id}: status {status}")
            }
            NetError::RxWrongId { want, got } => {
                write!(f, "netfront: bad rx response: id {got}, want {want}")
            }
            NetError::RxBadExtent { offset, status } => write!(
                f,
                "netfront: bad rx response: {status} bytes at offset {offset} leave the page"
            ),
            NetError::RxBadPacket(why) => write!(f, "netfront: bad rx response: {why}"),
        }
    }
}

impl core::error::Error for NetError {}

// ---------------------------------------------------------------- backend

/// The backend keys [`BackendFeatures::parse`] reads.
pub const FEATURE_KEYS: [&str; 8] = [
    "feature-rx-copy",
    "feature-sg",
    "feature-gso-tcpv4",
    "feature-gso-tcpv6",
    "feature-ipv6-csum-offload",
    "feature-split-event-channels",
    "feature-ctrl-ring",
    "multi-queue-max-queues",
];

/// What netback offers at probe time (Linux 6.1 `netback_probe`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendFeatures {
    /// `feature-sg`: packets of several slots.
    pub sg: bool,
    /// `feature-gso-tcpv4`: TSO for IPv4.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum: bool,
    /// `feature-split-event-channels`: one port for tx, one for rx.
    pub split_event_channels: bool,
    /// `feature-ctrl-ring`.
    pub ctrl_ring: bool,
    /// `multi-queue-max-queues` (1 when absent).
    pub max_queues: u32,
}

fn flag(dir: &str, key: &str, v: Option<&[u8]>) -> Result<bool, NetError> {
    match v {
        None => Ok(false),
        Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(v) => Err(NetError::BadValue {
            path: format!("{dir}/{key}"),
            value: v.into(),
            expected: "0 or 1",
        }),
    }
}

impl BackendFeatures {
    /// Parses [`FEATURE_KEYS`] below `dir` (`get`: a key's value, `None`
    /// when absent). `feature-rx-copy` must be 1.
    pub fn parse<'v>(
        dir: &str,
        mut get: impl FnMut(&str) -> Option<&'v [u8]>,
    ) -> Result<BackendFeatures, NetError> {
        if !flag(dir, "feature-rx-copy", get("feature-rx-copy"))? {
            return Err(NetError::Unsupported(
                "no feature-rx-copy (netback copies into our pages or not at all)",
            ));
        }
        let mut f = |k: &str| flag(dir, k, get(k));
        let mut out = BackendFeatures {
            sg: f("feature-sg")?,
            gso_tcpv4: f("feature-gso-tcpv4")?,
            gso_tcpv6: f("feature-gso-tcpv6")?,
            ipv6_csum: f("feature-ipv6-csum-offload")?,
            split_event_channels: f("feature-split-event-channels")?,
            ctrl_ring: f("feature-ctrl-ring")?,
            max_queues: 1,
        };
        if let Some(v) = get("multi-queue-max-queues") {
            out.max_queues = parse_canonical_decimal(v)
                .filter(|&n| n >= 1 && n <= u64::from(u32::MAX))
                .ok_or_else(|| NetError::BadValue {
                    path: format!("{dir}/multi-queue-max-queues"),
                    value: v.into(),
                    expected: "a nonzero u32",
                })? as u32;
        }
        Ok(out)
    }
}

/// The frontend's `mac` key: six hex pairs separated by `:`, a unicast
/// address (the group bit of the first octet clear).
pub fn parse_mac(path: &str, v: &[u8]) -> Result<[u8; 6], NetError> {
    let bad = || NetError::BadValue {
        path: path.into(),
        value: v.into(),
        expected: "a unicast MAC address aa:bb:cc:dd:ee:ff",
    };
    let s = core::str::from_utf8(v).map_err(|_| bad())?;
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return Err(bad());
    }
    Ok(mac)
}

/// The event channels of one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// `event-channel`: one port for both rings.
    One(u32),
    /// `event-channel-tx` / `event-channel-rx`.
    Split {
        /// The tx ring's port.
        tx: u32,
        /// The rx ring's port.
        rx: u32,
    },
}

/// What the frontend takes of the backend's offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Packets of several tx slots (`feature-sg`).
    pub sg: bool,
    /// TSO for IPv4 (`feature-gso-tcpv4`; needs `sg`).
    pub gso_tcpv4: bool,
    /// We verify received checksums ourselves: `feature-no-csum-offload`
    /// = 1, so netback fills them in for frames from Dom0's stack.
    pub no_csum_offload: bool,
}

/// The frontend keys of a one-queue connection (netif.h; Linux 6.1
/// `talk_to_netback`, read by netback's `connect_data_rings` and
/// `read_xenbus_vif_flags`), with our state `Connected` last: netback
/// connects when the frontend is Connected (`devices.md` §2).
pub fn connect_keys(tx_ring_ref: u32, rx_ring_ref: u32, ports: Ports, o: &Offloads) -> Keys {
    let mut keys = Keys::new();
    keys.set_u64("tx-ring-ref", u64::from(tx_ring_ref))
        .set_u64("rx-ring-ref", u64::from(rx_ring_ref));
    match ports {
        Ports::One(p) => {
            keys.set_u64("event-channel", u64::from(p))
                .remove("event-channel-tx")
                .remove("event-channel-rx");
        }
        Ports::Split { tx, rx } => {
            keys.set_u64("event-channel-tx", u64::from(tx))
                .set_u64("event-channel-rx", u64::from(rx))
                .remove("event-channel");
        }
    }
    let b = |on: bool| if on { &b"1"[..] } else { &b"0"[..] };
    keys.set("request-rx-copy", b"1")
        .set("feature-rx-notify", b"1")
        .set("feature-sg", b(o.sg))
        .set("feature-gso-tcpv4", b(o.sg && o.gso_tcpv4))
        .set("feature-no-csum-offload", b(o.no_csum_offload))
        .remove("multi-queue-num-queues")
        .set_state(XenbusState::Connected);
    keys
}

// ---------------------------------------------------------------- transmit

/// TCP segmentation asked of the backend for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// The MSS.
    pub mss: u16,
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
}

/// One tx slot of a planned packet: `page` is an index into the packet's
/// bounce pages (the packet's bytes lie from offset 0 of page 0 on, one
/// page after the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxSlot {
    /// Data: `len` bytes at `offset` of bounce page `page`; `size` is what
    /// goes on the wire (the whole packet for the first slot).
    Data {
        /// Bounce page index.
        page: u32,
        /// Offset in the page.
        offset: u16,
        /// This slot's bytes.
        len: u16,
        /// The request's `size` field.
        size: u16,
        /// `NETTXF_*`.
        flags: u16,
    },
    /// The GSO extra-info slot (right after the first data slot).
    Extra(NetifExtraInfo),
}

/// The slots of one packet ([`plan_tx`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPlan {
    /// In ring order.
    pub slots: Vec<TxSlot>,
    /// Bounce pages the packet occupies.
    pub pages: u32,
}

impl TxPlan {
    /// Ring slots it takes (data and extra).
    pub fn ring_slots(&self) -> usize {
        self.slots.len()
    }

    /// The wire request of slot `i`: `gref_of(page)` names a bounce page's
    /// grant, `id` is the slot's tx id. An extra slot is the
    /// `netif_extra_info` image in a request-sized slot.
    pub fn request(&self, i: usize, id: u16, gref_of: impl Fn(u32) -> u32) -> NetifTxRequest {
        match self.slots[i] {
            TxSlot::Data {
                page,
                offset,
                size,
                flags,
                ..
            } => NetifTxRequest {
                gref: gref_of(page),
                offset,
                flags,
                id,
                size,
            },
            TxSlot::Extra(e) => {
                // The 8 extra-info bytes at the slot's start; the rest
                // (`id`, `size`) zero: netback reads only the 8.
                let b = |lo: u8, hi: u8| u16::from_le_bytes([lo, hi]);
                let g = e.gso_size.to_le_bytes();
                let f = e.gso_features.to_le_bytes();
                NetifTxRequest {
                    gref: u32::from_le_bytes([e.kind, e.flags, g[0], g[1]]),
                    offset: b(e.gso_type, 0),
                    flags: b(f[0], f[1]),
                    id: 0,
                    size: 0,
                }
            }
        }
    }
}

/// Plans a packet of `len` bytes laid out from offset 0 of its first
/// bounce page on. `csum_blank`: the transport checksum is left for the
/// backend (`NETTXF_csum_blank | NETTXF_data_validated`, as Linux netfront
/// sends CHECKSUM_PARTIAL skbs). `sg`: the backend takes packets of
/// several slots (without it a packet must fit one page). `gso`: TSO;
/// needs `sg` and `csum_blank`.
///
/// The result obeys netback's rules (`devices.md` §2): first slot `size` =
/// `len`, each slot inside its page, `more_data` on every data slot but
/// the last, the extra slot right after the first, at most
/// [`MAX_TX_SLOTS`] data slots.
pub fn plan_tx(
    len: usize,
    csum_blank: bool,
    sg: bool,
    gso: Option<Gso>,
) -> Result<TxPlan, NetError> {
    if len < MIN_PACKET {
        return Err(NetError::Packet(
            "shorter than an Ethernet header (14 bytes)",
        ));
    }
    if len > XEN_NETIF_MAX_TX_SIZE {
        return Err(NetError::Packet("longer than 65535 bytes"));
    }
    if !sg && len > PAGE_SIZE {
        return Err(NetError::Packet("longer than a page without feature-sg"));
    }
    if gso.is_some() && !(sg && csum_blank) {
        return Err(NetError::Packet(
            "GSO needs scatter-gather and checksum offload",
        ));
    }
    let pages = len.div_ceil(PAGE_SIZE);
    if pages > MAX_TX_SLOTS {
        return Err(NetError::Packet("more than 18 slots"));
    }
    let mut flags0 = if csum_blank {
        NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED
    } else {
        0
    };
    if gso.is_some() {
        flags0 |= NETTXF_EXTRA_INFO;
    }
    let mut slots = Vec::with_capacity(pages + 1);
    for p in 0..pages {
        let chunk = (len - p * PAGE_SIZE).min(PAGE_SIZE);
        let mut flags = if p == 0 { flags0 } else { 0 };
        if p + 1 < pages {
            flags |= NETTXF_MORE_DATA;
        }
        slots.push(TxSlot::Data {
            page: p as u32,
            offset: 0,
            len: chunk as u16,
            size: if p == 0 { len as u16 } else { chunk as u16 },
            flags,
        });
        if p == 0 {
            if let Some(g) = gso {
                slots.push(TxSlot::Extra(NetifExtraInfo {
                    kind: XEN_NETIF_EXTRA_TYPE_GSO,
                    flags: 0,
                    gso_size: g.mss,
                    gso_type: if g.ipv6 {
                        XEN_NETIF_GSO_TYPE_TCPV6
                    } else {
                        XEN_NETIF_GSO_TYPE_TCPV4
                    },
                    _pad: 0,
                    gso_features: 0,
                }));
            }
        }
    }
    Ok(TxPlan {
        slots,
        pages: pages as u32,
    })
}

/// The tx requests in flight: a slot's id is its index here (< the ring
/// size), so a response names its request directly; extra slots are
/// counted, as netback answers each with `RSP_NULL` and an id it does not
/// set.
#[derive(Clone, Debug)]
pub struct TxTable<T> {
    busy: Vec<Option<T>>,
    free: Vec<u16>,
    extras: u32,
}

/// A checked tx response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxDone<T> {
    /// A data slot's request is answered: its data and whether the packet
    /// went out (`false`: `RSP_ERROR`/`RSP_DROPPED`).
    Slot {
        /// What the request carried.
        data: T,
        /// `RSP_OKAY`.
        ok: bool,
    },
    /// An extra slot's `RSP_NULL`.
    Extra,
}

impl<T> TxTable<T> {
    /// A table of `slots` ids (the tx ring's size, ≤ 65536).
    pub fn new(slots: u32) -> TxTable<T> {
        let n = slots.min(1 << 16) as usize;
        let mut busy = Vec::with_capacity(n);
        busy.resize_with(n, || None);
        TxTable {
            busy,
            free: (0..n as u32).rev().map(|i| i as u16).collect(),
            extras: 0,
        }
    }

    /// Free ids.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Requests (data slots) in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.len() - self.free.len()
    }

    /// Extra slots whose `RSP_NULL` is still due.
    pub fn extras_due(&self) -> u32 {
        self.extras
    }

    /// An id for a data slot carrying `data`, or `None` when all are in use.
    pub fn insert(&mut self, data: T) -> Option<u16> {
        let id = self.free.pop()?;
        self.busy[usize::from(id)] = Some(data);
        Some(id)
    }

    /// Notes an extra slot sent (its response is an `RSP_NULL`).
    pub fn sent_extra(&mut self) {
        self.extras += 1;
    }

    /// Checks a copied-out response and frees its id.
    pub fn complete(&mut self, rsp: NetifTxResponse) -> Result<TxDone<T>, NetError> {
        if rsp.status == XEN_NETIF_RSP_NULL {
            if self.extras == 0 {
                return Err(NetError::TxBadStatus {
                    id: rsp.id,
                    status: rsp.status,
                });
            }
            self.extras -= 1;
            return Ok(TxDone::Extra);
        }
        let ok = match rsp.status {
            XEN_NETIF_RSP_OKAY => true,
            XEN_NETIF_RSP_ERROR | XEN_NETIF_RSP_DROPPED => false,
            status => return Err(NetError::TxBadStatus { id: rsp.id, status }),
        };
        let data = self
            .busy
            .get_mut(usize::from(rsp.id))
            .and_then(Option::take)
            .ok_or(NetError::TxUnknownId(rsp.id))?;
        self.free.push(rsp.id);
        Ok(TxDone::Slot { data, ok })
    }
}

// ----------------------------------------------------------------- receive

/// One piece of a received packet: `len` bytes at `offset` of the page
/// posted in rx slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPiece {
    /// The rx ring index's slot (`index & (size - 1)`), which names the
    /// posted page.
    pub slot: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// Bytes.
    pub len: u16,
}

/// A received packet's pieces, in order, and what the backend said of
/// its checksum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxPacket {
    /// The pieces.
    pub pieces: Vec<RxPiece>,
    /// Bytes in all pieces.
    pub len: usize,
    /// `NETRXF_data_validated` or `NETRXF_csum_blank`: the checksum need
    /// not (cannot, when blank) be verified.
    pub csum_ok: bool,
    /// A piece came with an error status: the packet is dropped (its
    /// pages are reposted all the same).
    pub error: bool,
    /// Slots consumed, pieces and extra slots: each is reposted.
    pub slots: Vec<u16>,
}

/// The receive side's bookkeeping: rx requests are posted with id = their
/// ring slot, and netback answers in request order (netif.h), so response
/// `i` must carry the id of request `i`. [`RxRing::take`] is fed the
/// responses one by one (copied out) and returns each packet when its
/// last piece has come.
#[derive(Clone, Debug)]
pub struct RxRing {
    size: u32,
    current: Option<RxPacket>,
    /// The previous response announced an extra slot.
    extra_next: bool,
    /// The last data response had `NETRXF_more_data`.
    more: bool,
}

impl RxRing {
    /// For a ring of `size` slots (a power of two).
    pub fn new(size: u32) -> RxRing {
        RxRing {
            size,
            current: None,
            extra_next: false,
            more: false,
        }
    }

    /// The id of the request posted at ring index `idx`.
    pub fn id_at(&self, idx: u32) -> u16 {
        (idx & (self.size - 1)) as u16
    }

    /// Response `rsp`, read at ring index `idx`: `Ok(Some(packet))` when it
    /// ends a packet, `Ok(None)` when more pieces follow (or it was an
    /// extra slot), an error when the backend broke the protocol.
    pub fn take(&mut self, idx: u32, rsp: NetifRxResponse) -> Result<Option<RxPacket>, NetError> {
        let want = self.id_at(idx);
        if self.extra_next {
            // An extra-info slot: netif_extra_info over the response (its
            // `type` and `flags` bytes where the id is), no id of its own;
            // consumed (we asked for no GSO on receive) and reposted.
            let extra_flags = (rsp.id >> 8) as u8;
            self.extra_next = extra_flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
            let p = self.current.get_or_insert_with(RxPacket::default);
            p.slots.push(want);
            if p.slots.len() > 2 * MAX_TX_SLOTS {
                return Err(NetError::RxBadPacket("a packet of too many slots"));
            }
            if self.extra_next || self.more {
                return Ok(None);
            }
            return Ok(self.current.take());
        }
        if rsp.id != want {
            return Err(NetError::RxWrongId { want, got: rsp.id });
        }
        let known = NETRXF_DATA_VALIDATED
            | NETRXF_CSUM_BLANK
            | NETRXF_MORE_DATA
            | NETRXF_EXTRA_INFO
            | NETRXF_GSO_PREFIX;
        if rsp.flags & !known != 0 {
            return Err(NetError::RxBadPacket("unknown flags"));
        }
        if rsp.flags & NETRXF_GSO_PREFIX != 0 {
            return Err(NetError::RxBadPacket("a GSO prefix we did not ask for"));
        }
        let p = self.current.get_or_insert_with(RxPacket::default);
        p.slots.push(want);
        if p.slots.len() > 2 * MAX_TX_SLOTS {
            return Err(NetError::RxBadPacket("a packet of too many slots"));
        }
        if p.pieces.is_empty() {
            p.csum_ok = rsp.flags & (NETRXF_DATA_VALIDATED | NETRXF_CSUM_BLANK) != 0;
        }
        if rsp.status < 0 {
            p.error = true;
        } else {
            let len = rsp.status as usize;
            if len == 0 && rsp.flags & NETRXF_MORE_DATA == 0 && p.pieces.is_empty() {
                p.error = true;
            }
            if usize::from(rsp.offset) + len > PAGE_SIZE {
                return Err(NetError::RxBadExtent {
                    offset: rsp.offset,
                    status: rsp.status,
                });
            }
            p.len += len;
            if p.len > MAX_RX_PACKET {
                return Err(NetError::RxBadPacket("a packet longer than 68 KiB"));
            }
            p.pieces.push(RxPiece {
                slot: want,
                offset: rsp.offset,
                len: len as u16,
            });
        }
        self.extra_next = rsp.flags & NETRXF_EXTRA_INFO != 0;
        self.more = rsp.flags & NETRXF_MORE_DATA != 0;
        if self.more || self.extra_next {
            return Ok(None);
        }
        Ok(self.current.take())
    }
}

#[cfg(test)]
mod tests;
