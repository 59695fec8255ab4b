//! blkfront, the pure protocol part (issue 14): what the backend offers,
//! how an I/O becomes blkif requests, and how responses are checked. No
//! hypercalls and no grants are issued here; the guest side (ring pages,
//! grants, event channel, the [`xenbus`](crate::xenbus) handshake) builds
//! on these pieces.
//!
//! * [`RingFeatures`] (written before `InitWait`: indirect segments, ring
//!   order, queues) and [`BackendInfo`] (complete once `Connected`:
//!   `sectors`, `sector-size`, `info`, `feature-*`, …) — the backend's
//!   keys, each validated strictly; an error names the key and the value.
//! * [`connect_keys`] — the frontend's connection keys (one or several
//!   queues, one page or `ring-page-order` pages) for the one-transaction
//!   [`write_keys`](crate::xenbus::write_keys).
//! * [`plan_io`] — splits a sector-aligned read or write into requests of
//!   at most [`IoLimits::max_segments`] segments over 4 KiB buffer pages
//!   ([`Planned`]), direct (≤ 11 segments) or indirect (≤ 256);
//!   [`Planned::direct`] / [`Planned::indirect`] +
//!   [`Planned::write_indirect_segments`] give the wire form;
//!   [`Planned::copy_to_pages`] / [`Planned::copy_from_pages`] move a
//!   request's bytes to and from bounce pages, [`PagePool`] hands them
//!   out.
//!   [`flush_request`] and [`plan_discard`] for the other operations.
//! * [`Outstanding`] — the table of requests in flight: ids, a free list,
//!   and [`Outstanding::complete`], which validates a copied-out response
//!   (id known and outstanding, operation echoed, status one of the three
//!   blkif.h defines). Anything else is a [`BlkError`] for which
//!   [`BlkError::disconnects`] is true.
//!
//! Units (blkif.h; `devices.md` §1): `sectors`, `sector_number`,
//! `nr_sectors`, `first_sect`/`last_sect` are 512-byte units whatever
//! `sector-size` says, as Linux blkfront and blkback use them (Mini-OS
//! reads `sectors` in `sector-size` units; `feature-large-sector-size` is
//! deprecated).
//!
//! **Alignment.** Linux blkback (`dispatch_rw_block_io`) fails a request
//! whose `sector_number` or *any segment's* sector count is not a multiple
//! of `sector-size / 512` ("Misaligned I/O request"), and one with
//! `last_sect ≥ 8` or `last_sect < first_sect` (also per indirect segment,
//! `xen_blkbk_parse_indirect`). [`plan_io`] therefore takes only I/O whose
//! disk offset, length and position in its first buffer page are all
//! multiples of the sector size; page boundaries (multiples of 4096) then
//! keep every segment aligned. Unaligned application I/O (a byte at
//! offset 511, a 4097-byte buffer at any address) is the block API's job:
//! it bounces through aligned pages, reading the partial sectors first
//! (read-modify-write) for writes.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ring::RingError;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::xen_abi::blkif::{
    BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, BlkifResponse,
    BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, SECTOR_UNIT, SEGS_PER_INDIRECT_FRAME,
    VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE,
};
use crate::xenbus::{parse_canonical_decimal, Keys, XenbusState};
use crate::xenstore::{self, TxId, XenStore, XsError, XsTransport};

/// Most segments we put in one indirect request: Linux blkback's
/// `MAX_INDIRECT_SEGMENTS` (256 × 4 KiB = 1 MiB), which it advertises as
/// `feature-max-indirect-segments`.
pub const MAX_INDIRECT_SEGMENTS: u32 = 256;
/// Largest ring we use: order 4 = 16 pages = 512 slots (Linux
/// `XENBUS_MAX_RING_GRANT_ORDER`; blkback's `max-ring-page-order` is 4).
pub const MAX_RING_PAGE_ORDER: u32 = 4;
/// Largest `max-ring-page-order` value accepted from a backend (a bigger
/// one is garbage: 2^20 ring pages).
pub const MAX_ADVERTISED_RING_PAGE_ORDER: u32 = 20;
/// The `protocol` value of the x86_64 ABI (`XEN_IO_PROTO_ABI_X86_64`,
/// protocols.h).
pub const PROTOCOL: &str = "x86_64-abi";
/// The backend keys [`BackendInfo::parse`] reads.
pub const BACKEND_KEYS: [&str; 14] = [
    "sectors",
    "sector-size",
    "physical-sector-size",
    "info",
    "feature-flush-cache",
    "feature-barrier",
    "feature-discard",
    "discard-granularity",
    "discard-alignment",
    "discard-secure",
    "feature-persistent",
    "feature-max-indirect-segments",
    "max-ring-page-order",
    "multi-queue-max-queues",
];

/// Why a blkfront operation failed, or why the device must disconnect
/// ([`BlkError::disconnects`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// A backend key that must exist does not.
    Missing {
        /// The key.
        path: String,
    },
    /// Our connection parameters do not fit what the backend offers (ring
    /// order, queue count, ring references).
    Config(&'static str),
    /// A backend key's value is not what the protocol allows.
    BadValue {
        /// The key.
        path: String,
        /// Its value, as read.
        value: Vec<u8>,
        /// What it should be.
        expected: &'static str,
    },
    /// Reading the backend's keys failed.
    Store(xenstore::Error),
    /// A write to a read-only disk (`info` has `VDISK_READONLY`): refused,
    /// never sent.
    ReadOnly,
    /// The backend does not offer the operation (`feature-flush-cache`,
    /// `feature-discard`).
    NotSupported(&'static str),
    /// Disk offset, length or buffer position not a multiple of the
    /// sector size.
    Misaligned {
        /// Byte offset on the disk.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Byte position in the first buffer page.
        buf_offset: usize,
        /// The disk's logical sector size.
        sector_size: u32,
    },
    /// The I/O ends past the end of the disk.
    BeyondEnd {
        /// Byte offset on the disk.
        offset: u64,
        /// Bytes.
        len: u64,
        /// The disk's size in bytes.
        disk_bytes: u64,
    },
    /// The ring's producer index was impossible.
    Ring(RingError),
    /// A response id that was never issued.
    UnknownId(u64),
    /// A response for a request that is no longer outstanding.
    Duplicate(u64),
    /// A response that does not echo its request's operation.
    WrongOperation {
        /// The response's id.
        id: u64,
        /// The operation it carried.
        got: u8,
        /// The request's operation.
        want: u8,
    },
    /// A status other than `BLKIF_RSP_{OKAY,ERROR,EOPNOTSUPP}`.
    BadStatus {
        /// The response's id.
        id: u64,
        /// The status it carried.
        status: i16,
    },
}

impl BlkError {
    /// Whether the backend broke the protocol and the device must
    /// disconnect (ring index, response id, operation, status).
    pub fn disconnects(&self) -> bool {
        matches!(
            self,
            BlkError::Ring(_)
                | BlkError::UnknownId(_)
                | BlkError::Duplicate(_)
                | BlkError::WrongOperation { .. }
                | BlkError::BadStatus { .. }
        )
    }
}

impl From<RingError> for BlkError {
    fn from(e: RingError) -> Self {
        BlkError::Ring(e)
    }
}

impl From<xenstore::Error> for BlkError {
    fn from(e: xenstore::Error) -> Self {
        BlkError::Store(e)
    }
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Missing { path } => write!(f, "blkfront: backend key {path} missing"),
            BlkError::Config(why) => write!(f, "blkfront: cannot connect: {why}"),
            BlkError::BadValue {
                path,
                value,
                expected,
            } => {
                write!(f, "blkfront: {path} = ")?;
                crate::xenbus::fmt_value(f, value)?;
                write!(f, " is not {expected}")
            }
            BlkError::Store(e) => write!(f, "blkfront: {e}"),
            BlkError::ReadOnly => f.write_str("blkfront: write to a read-only disk"),
            BlkError::NotSupported(op) => write!(f, "blkfront: backend does not offer {op}"),
            BlkError::Misaligned {
                offset,
                len,
                buf_offset,
                sector_size,
            } => write!(
                f,
                "blkfront: I/O of {len} bytes at {offset} (buffer at page offset \
                 {buf_offset}) is not aligned to the {sector_size}-byte sector"
            ),
            BlkError::BeyondEnd {
                offset,
                len,
                disk_bytes,
            } => write!(
                f,
                "blkfront: I/O of {len} bytes at {offset} ends past the disk's {disk_bytes} bytes"
            ),
            BlkError::Ring(e) => write!(f, "blkfront: protocol error: {e}"),
            BlkError::UnknownId(id) => write!(f, "blkfront: bad response: unknown id {id:#x}"),
            BlkError::Duplicate(id) => {
                write!(f, "blkfront: bad response: id {id:#x} not outstanding")
            }
            BlkError::WrongOperation { id, got, want } => write!(
                f,
                "blkfront: bad response: id {id:#x}: operation {got} want {want}"
            ),
            BlkError::BadStatus { id, status } => {
                write!(f, "blkfront: bad response: id {id:#x}: status {status}")
            }
        }
    }
}

impl core::error::Error for BlkError {}

// ---------------------------------------------------------------- features

/// Reads `key`'s value with `get` as a canonical decimal accepted by `ok`
/// (`None` when absent); anything else names the key and the value.
fn key_num<'v>(
    dir: &str,
    get: &mut impl FnMut(&str) -> Option<&'v [u8]>,
    key: &str,
    expected: &'static str,
    ok: &dyn Fn(u64) -> bool,
) -> Result<Option<u64>, BlkError> {
    match get(key) {
        None => Ok(None),
        Some(v) => match parse_canonical_decimal(v).filter(|&n| ok(n)) {
            Some(n) => Ok(Some(n)),
            None => Err(BlkError::BadValue {
                path: format!("{dir}/{key}"),
                value: v.into(),
                expected,
            }),
        },
    }
}

/// Reads `keys` below `dir`; absent ones (`ENOENT`) are left out.
fn read_keys<T: XsTransport>(
    xs: &mut XenStore<'_, T>,
    dir: &str,
    keys: &[&'static str],
) -> Result<BTreeMap<&'static str, Vec<u8>>, BlkError> {
    let mut values = BTreeMap::new();
    for &key in keys {
        match xs.read(TxId::NONE, &format!("{dir}/{key}")) {
            Ok(v) => {
                values.insert(key, v);
            }
            Err(xenstore::Error::Xs(XsError::ENOENT)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(values)
}

/// The backend keys [`RingFeatures::parse`] reads.
pub const RING_FEATURE_KEYS: [&str; 3] = [
    "feature-max-indirect-segments",
    "max-ring-page-order",
    "multi-queue-max-queues",
];

/// What the backend offers for the rings, written at probe time, before
/// `InitWait` (Linux 6.1 blkback `xen_blkbk_probe`; `devices.md` §1): what
/// the frontend needs to lay out its rings and write its keys, before the
/// disk's own keys ([`BackendInfo`]) exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFeatures {
    /// `feature-max-indirect-segments` (0: no indirect requests).
    pub max_indirect_segments: u32,
    /// `max-ring-page-order` (0: one page, `ring-ref`).
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues` (1 when absent; 0 is refused).
    pub max_queues: u32,
}

impl RingFeatures {
    /// Parses [`RING_FEATURE_KEYS`] below `dir` (all optional).
    pub fn parse<'v>(
        dir: &str,
        mut get: impl FnMut(&str) -> Option<&'v [u8]>,
    ) -> Result<RingFeatures, BlkError> {
        let u32_max = u64::from(u32::MAX);
        let mut num = |key: &str, expected: &'static str, ok: &dyn Fn(u64) -> bool| {
            key_num(dir, &mut get, key, expected, ok)
        };
        let max_indirect_segments =
            num("feature-max-indirect-segments", "a u32", &|n| n <= u32_max)?.unwrap_or(0) as u32;
        let max_ring_page_order = num("max-ring-page-order", "a ring order up to 20", &|n| {
            n <= u64::from(MAX_ADVERTISED_RING_PAGE_ORDER)
        })?
        .unwrap_or(0) as u32;
        let max_queues = num("multi-queue-max-queues", "a nonzero u32", &|n| {
            n != 0 && n <= u32_max
        })?
        .unwrap_or(1) as u32;
        Ok(RingFeatures {
            max_indirect_segments,
            max_ring_page_order,
            max_queues,
        })
    }

    /// Reads [`RING_FEATURE_KEYS`] below `dir` and parses them.
    pub fn read<T: XsTransport>(
        xs: &mut XenStore<'_, T>,
        dir: &str,
    ) -> Result<RingFeatures, BlkError> {
        let values = read_keys(xs, dir, &RING_FEATURE_KEYS)?;
        RingFeatures::parse(dir, |k| values.get(k).map(|v| v.as_slice()))
    }

    /// Segments per request we use: up to [`MAX_INDIRECT_SEGMENTS`] when
    /// the backend takes more than 11 indirect ones (Linux blkfront uses
    /// indirect requests only then), else 11.
    pub fn max_segments(&self) -> u32 {
        if self.max_indirect_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST as u32 {
            self.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS)
        } else {
            BLKIF_MAX_SEGMENTS_PER_REQUEST as u32
        }
    }

    /// The ring order to use, given ours at most `want`.
    pub fn ring_page_order(&self, want: u32) -> u32 {
        want.min(self.max_ring_page_order).min(MAX_RING_PAGE_ORDER)
    }
}

/// Discard parameters (`feature-discard` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discard {
    /// `discard-granularity` in bytes (0: not given).
    pub granularity: u32,
    /// `discard-alignment` in bytes, below the granularity.
    pub alignment: u32,
    /// `discard-secure`: `BLKIF_DISCARD_SECURE` is honoured.
    pub secure: bool,
}

/// What the backend offers, from its keys (Linux 6.1 blkback writes them
/// at probe and in `connect()`; `devices.md` §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// `sectors`: the disk's size in **512-byte** units (nonzero).
    pub sectors: u64,
    /// `sector-size`: logical sector size, a power of two 512..=4096.
    pub sector_size: u32,
    /// `physical-sector-size` (default: `sector_size`), a power of two ≥
    /// `sector_size`.
    pub physical_sector_size: u32,
    /// `info`: `VDISK_*` bits.
    pub info: u32,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard` and its parameters.
    pub discard: Option<Discard>,
    /// `feature-persistent`: the backend keeps grants mapped.
    pub persistent: bool,
    /// `feature-max-indirect-segments` (0: no indirect requests).
    pub max_indirect_segments: u32,
    /// `max-ring-page-order` (0: one page, `ring-ref`).
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues` (1 when absent).
    pub max_queues: u32,
}

fn is_pow2_in(v: u64, lo: u64, hi: u64) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

impl BackendInfo {
    /// Parses the keys below the backend directory `dir`; `get(key)` gives
    /// a key's value (`None`: absent). `sectors`, `sector-size` and `info`
    /// are required (Linux blkfront's `xenbus_gather` of the three); the
    /// rest default to "not offered". Numbers are canonical decimals,
    /// booleans exactly `0` or `1`.
    pub fn parse<'v>(
        dir: &str,
        mut get: impl FnMut(&str) -> Option<&'v [u8]>,
    ) -> Result<BackendInfo, BlkError> {
        let mut num = |key: &str, expected: &'static str, ok: &dyn Fn(u64) -> bool| {
            key_num(dir, &mut get, key, expected, ok)
        };
        let missing = |key: &str| BlkError::Missing {
            path: format!("{dir}/{key}"),
        };
        let sector_size = num("sector-size", "a power of two from 512 to 4096", &|n| {
            is_pow2_in(n, 512, 4096)
        })?
        .ok_or_else(|| missing("sector-size"))? as u32;
        let per = u64::from(sector_size) / SECTOR_UNIT;
        let sectors = num(
            "sectors",
            "a nonzero count of 512-byte sectors, a multiple of sector-size/512",
            &|n| n != 0 && n.is_multiple_of(per) && n <= u64::MAX / SECTOR_UNIT,
        )?
        .ok_or_else(|| missing("sectors"))?;
        let physical_sector_size = num(
            "physical-sector-size",
            "a power of two, at least sector-size",
            &|n| is_pow2_in(n, u64::from(sector_size), 1 << 31),
        )?
        .unwrap_or(u64::from(sector_size)) as u32;
        let info = num(
            "info",
            "VDISK_* bits (CDROM 1, REMOVABLE 2, READONLY 4)",
            &|n| n & !u64::from(VDISK_CDROM | VDISK_REMOVABLE | VDISK_READONLY) == 0,
        )?
        .ok_or_else(|| missing("info"))? as u32;
        let mut flag = |key: &str| num(key, "0 or 1", &|n| n <= 1).map(|v| v == Some(1));
        let flush = flag("feature-flush-cache")?;
        let barrier = flag("feature-barrier")?;
        let discard_on = flag("feature-discard")?;
        let secure = flag("discard-secure")?;
        let persistent = flag("feature-persistent")?;
        let u32_max = u64::from(u32::MAX);
        let granularity = num("discard-granularity", "a u32", &|n| n <= u32_max)?.unwrap_or(0);
        let alignment = num(
            "discard-alignment",
            "a u32 below discard-granularity",
            &|n| n <= u32_max && (granularity == 0 || n < granularity),
        )?
        .unwrap_or(0);
        let ring = RingFeatures::parse(dir, &mut get)?;
        Ok(BackendInfo {
            sectors,
            sector_size,
            physical_sector_size,
            info,
            flush,
            barrier,
            discard: discard_on.then_some(Discard {
                granularity: granularity as u32,
                alignment: alignment as u32,
                secure,
            }),
            persistent,
            max_indirect_segments: ring.max_indirect_segments,
            max_ring_page_order: ring.max_ring_page_order,
            max_queues: ring.max_queues,
        })
    }

    /// Reads [`BACKEND_KEYS`] below `dir` (absent keys are `ENOENT`) and
    /// parses them.
    pub fn read<T: XsTransport>(
        xs: &mut XenStore<'_, T>,
        dir: &str,
    ) -> Result<BackendInfo, BlkError> {
        let values = read_keys(xs, dir, &BACKEND_KEYS)?;
        BackendInfo::parse(dir, |k| values.get(k).map(|v| v.as_slice()))
    }

    /// The ring features among the keys.
    pub fn ring_features(&self) -> RingFeatures {
        RingFeatures {
            max_indirect_segments: self.max_indirect_segments,
            max_ring_page_order: self.max_ring_page_order,
            max_queues: self.max_queues,
        }
    }

    /// `info` has `VDISK_READONLY`.
    pub fn read_only(&self) -> bool {
        self.info & VDISK_READONLY != 0
    }

    /// The disk's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR_UNIT
    }

    /// Segments per request we use ([`RingFeatures::max_segments`]).
    pub fn max_segments(&self) -> u32 {
        self.ring_features().max_segments()
    }

    /// The ring order to use ([`RingFeatures::ring_page_order`]).
    pub fn ring_page_order(&self, want: u32) -> u32 {
        self.ring_features().ring_page_order(want)
    }

    /// The limits [`plan_io`] works to.
    pub fn limits(&self) -> IoLimits {
        IoLimits {
            sector_size: self.sector_size,
            disk_sectors: self.sectors,
            max_segments: self.max_segments(),
            read_only: self.read_only(),
            flush: self.flush,
            discard: self.discard.is_some(),
        }
    }
}

// ------------------------------------------------------------ connection

/// One queue's ring as the frontend set it up: the grant references of
/// its `1 << order` pages, in order, and its event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRing<'r> {
    /// `ring-ref` / `ring-ref0..`: the ring pages' grants.
    pub ring_refs: &'r [u32],
    /// `event-channel`: the port allocated for the backend.
    pub event_channel: u32,
}

/// The frontend keys of a connection (blkif.h node docs; Linux 6.1
/// `talk_to_blkback` / `write_per_ring_nodes`, read back by blkback's
/// `connect_ring` / `read_per_ring_refs`), with our `state` last, for
/// [`write_keys`](crate::xenbus::write_keys):
///
/// * order 0: `ring-ref`; order n > 0: `ring-page-order` = n and
///   `ring-ref0..ring-ref{2^n-1}` (blkback takes any `ring-page-order`,
///   even 0, as "numbered refs", so a stale one is removed for order 0);
///   n must be ≤ the backend's `max-ring-page-order` and
///   [`MAX_RING_PAGE_ORDER`];
/// * one queue: `event-channel` and the refs in the device directory;
///   several (≤ `multi-queue-max-queues`): `multi-queue-num-queues` and
///   `queue-<i>/{ring-ref…, event-channel}`, `ring-page-order` staying at
///   the top;
/// * `protocol` = `x86_64-abi`, `feature-persistent` = 0/1.
pub fn connect_keys(
    info: &RingFeatures,
    order: u32,
    queues: &[QueueRing<'_>],
    persistent: bool,
    state: XenbusState,
) -> Result<Keys, BlkError> {
    if order > MAX_RING_PAGE_ORDER || (order > 0 && order > info.max_ring_page_order) {
        return Err(BlkError::Config(
            "ring-page-order above the backend's max-ring-page-order",
        ));
    }
    if queues.is_empty() {
        return Err(BlkError::Config("no queue"));
    }
    if queues.len() as u64 > u64::from(info.max_queues) {
        return Err(BlkError::Config("more queues than multi-queue-max-queues"));
    }
    let pages = 1usize << order;
    if queues.iter().any(|q| q.ring_refs.len() != pages) {
        return Err(BlkError::Config("ring references are not 1 << order"));
    }
    let mut keys = Keys::new();
    if order == 0 {
        keys.remove("ring-page-order");
    } else {
        keys.set_u64("ring-page-order", u64::from(order));
    }
    let multi = queues.len() > 1;
    if multi {
        keys.remove("ring-ref")
            .remove("event-channel")
            .set_u64("multi-queue-num-queues", queues.len() as u64);
    } else {
        keys.remove("multi-queue-num-queues");
    }
    if order > 0 && !multi {
        keys.remove("ring-ref");
    }
    for (i, q) in queues.iter().enumerate() {
        let dir = if multi {
            format!("queue-{i}/")
        } else {
            String::new()
        };
        if order == 0 {
            keys.set_u64(&format!("{dir}ring-ref"), u64::from(q.ring_refs[0]));
        } else {
            for (j, r) in q.ring_refs.iter().enumerate() {
                keys.set_u64(&format!("{dir}ring-ref{j}"), u64::from(*r));
            }
        }
        keys.set_u64(&format!("{dir}event-channel"), u64::from(q.event_channel));
    }
    keys.set("protocol", PROTOCOL.as_bytes())
        .set("feature-persistent", if persistent { b"1" } else { b"0" })
        .set_state(state);
    Ok(keys)
}

// ---------------------------------------------------------------- requests

/// The data direction of an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Disk to memory.
    Read,
    /// Memory to disk.
    Write,
}

impl Op {
    /// `BLKIF_OP_READ` / `BLKIF_OP_WRITE`.
    pub fn blkif(self) -> u8 {
        match self {
            Op::Read => BLKIF_OP_READ,
            Op::Write => BLKIF_OP_WRITE,
        }
    }
}

/// What requests may look like for one disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoLimits {
    /// Logical sector size in bytes (512..=4096, a power of two).
    pub sector_size: u32,
    /// Disk size in 512-byte sectors.
    pub disk_sectors: u64,
    /// Segments per request (11 direct, or up to 256 indirect).
    pub max_segments: u32,
    /// Writes are refused.
    pub read_only: bool,
    /// Flush is offered.
    pub flush: bool,
    /// Discard is offered.
    pub discard: bool,
}

/// One segment: 512-byte sectors `first_sect..=last_sect` of buffer page
/// `page` (an index into the I/O's buffer pages, which the caller maps to
/// grant references).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the buffer page.
    pub page: u32,
    /// First sector in the page (0..=7).
    pub first_sect: u8,
    /// Last sector in the page (`first_sect..=7`).
    pub last_sect: u8,
}

impl Segment {
    /// Bytes the segment covers.
    pub fn bytes(&self) -> usize {
        (usize::from(self.last_sect - self.first_sect) + 1) * SECTOR_UNIT as usize
    }

    /// Its byte offset in its page.
    pub fn page_offset(&self) -> usize {
        usize::from(self.first_sect) * SECTOR_UNIT as usize
    }
}

/// One blkif request of an I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// First disk sector, 512-byte units.
    pub sector: u64,
    /// Byte offset of its data in the I/O (and in the buffer, after the
    /// first page's offset).
    pub io_offset: u64,
    /// Bytes.
    pub len: u64,
    /// The segments, in order (1..=max_segments).
    pub segments: Vec<Segment>,
}

impl Planned {
    /// Whether it needs `BLKIF_OP_INDIRECT` (more than 11 segments).
    pub fn is_indirect(&self) -> bool {
        self.segments.len() > BLKIF_MAX_SEGMENTS_PER_REQUEST
    }

    /// Indirect pages it needs (0 for a direct request).
    pub fn indirect_pages(&self) -> usize {
        if self.is_indirect() {
            crate::xen_abi::blkif::indirect_pages(self.segments.len())
        } else {
            0
        }
    }

    fn wire_segment(s: &Segment, gref_of: &mut impl FnMut(u32) -> u32) -> BlkifRequestSegment {
        BlkifRequestSegment {
            gref: gref_of(s.page),
            first_sect: s.first_sect,
            last_sect: s.last_sect,
            _pad: 0,
        }
    }

    /// The direct request (`None` if it has more than 11 segments);
    /// `gref_of(page)` is the grant of buffer page `page`; `handle` is the
    /// device (Linux blkfront: the id of `device/vbd/<id>`; blkback does
    /// not check it).
    pub fn direct(
        &self,
        op: Op,
        id: u64,
        handle: u16,
        mut gref_of: impl FnMut(u32) -> u32,
    ) -> Option<BlkifRequest> {
        if self.is_indirect() {
            return None;
        }
        let mut req = BlkifRequest {
            operation: op.blkif(),
            nr_segments: self.segments.len() as u8,
            handle,
            id,
            sector_number: self.sector,
            ..Default::default()
        };
        for (w, s) in req.seg.iter_mut().zip(&self.segments) {
            *w = Self::wire_segment(s, &mut gref_of);
        }
        Some(req)
    }

    /// The indirect request (`None` if it fits a direct one, or if
    /// `indirect_grefs` is not [`indirect_pages`](Self::indirect_pages)
    /// long): `indirect_grefs` are the grants of the pages that
    /// [`write_indirect_segments`](Self::write_indirect_segments) fills.
    pub fn indirect(
        &self,
        op: Op,
        id: u64,
        handle: u16,
        indirect_grefs: &[u32],
    ) -> Option<BlkifRequestIndirect> {
        if !self.is_indirect()
            || indirect_grefs.len() != self.indirect_pages()
            || indirect_grefs.len() > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
        {
            return None;
        }
        let mut req = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: op.blkif(),
            nr_segments: self.segments.len() as u16,
            id,
            sector_number: self.sector,
            handle,
            ..Default::default()
        };
        req.indirect_grefs[..indirect_grefs.len()].copy_from_slice(indirect_grefs);
        Some(req)
    }

    /// Copies this request's `len` bytes from `data` (anywhere in memory)
    /// into the pages its segments name, at the segments' offsets;
    /// `page_of(p)` is a view of buffer page `p` (a bounce page: a
    /// persistent grant, or an aligned page standing in for an unaligned
    /// application buffer). Copies nothing and returns `false` if `data`
    /// is not `len` bytes or a view is shorter than a page.
    pub fn copy_to_pages<'m>(
        &self,
        data: &[u8],
        mut page_of: impl FnMut(u32) -> SharedMem<'m>,
    ) -> bool {
        if data.len() as u64 != self.len {
            return false;
        }
        let views: Vec<SharedMem<'m>> = self.segments.iter().map(|s| page_of(s.page)).collect();
        if views.iter().any(|v| v.len() < PAGE_SIZE) {
            return false;
        }
        let mut at = 0;
        for (s, v) in self.segments.iter().zip(&views) {
            v.copy_in(s.page_offset(), &data[at..at + s.bytes()]);
            at += s.bytes();
        }
        true
    }

    /// The reverse of [`copy_to_pages`](Self::copy_to_pages): this
    /// request's `len` bytes from its segments' pages into `out`.
    pub fn copy_from_pages<'m>(
        &self,
        out: &mut [u8],
        mut page_of: impl FnMut(u32) -> SharedMem<'m>,
    ) -> bool {
        if out.len() as u64 != self.len {
            return false;
        }
        let views: Vec<SharedMem<'m>> = self.segments.iter().map(|s| page_of(s.page)).collect();
        if views.iter().any(|v| v.len() < PAGE_SIZE) {
            return false;
        }
        let mut at = 0;
        for (s, v) in self.segments.iter().zip(&views) {
            v.copy_out(s.page_offset(), &mut out[at..at + s.bytes()]);
            at += s.bytes();
        }
        true
    }

    /// Writes the segments as `blkif_request_segment`s into the indirect
    /// pages (512 per page, in order); `pages` must be
    /// [`indirect_pages`](Self::indirect_pages) 4 KiB views. Returns
    /// whether it did.
    pub fn write_indirect_segments(
        &self,
        pages: &[SharedMem<'_>],
        mut gref_of: impl FnMut(u32) -> u32,
    ) -> bool {
        if pages.len() != self.indirect_pages() || pages.iter().any(|p| p.len() < PAGE_SIZE) {
            return false;
        }
        let size = core::mem::size_of::<BlkifRequestSegment>();
        for (i, s) in self.segments.iter().enumerate() {
            let page = &pages[i / SEGS_PER_INDIRECT_FRAME];
            page.write(
                (i % SEGS_PER_INDIRECT_FRAME) * size,
                Self::wire_segment(s, &mut gref_of),
            );
        }
        true
    }
}

fn check_span(offset: u64, len: u64, buf_offset: usize, limits: &IoLimits) -> Result<(), BlkError> {
    let ss = u64::from(limits.sector_size);
    // BackendInfo::parse only yields these; limits filled in by hand may not.
    if !is_pow2_in(ss, SECTOR_UNIT, PAGE_SIZE as u64) {
        return Err(BlkError::Config(
            "sector size is not a power of two from 512 to 4096",
        ));
    }
    if !offset.is_multiple_of(ss)
        || !len.is_multiple_of(ss)
        || !(buf_offset as u64).is_multiple_of(ss)
        || buf_offset >= PAGE_SIZE
    {
        return Err(BlkError::Misaligned {
            offset,
            len,
            buf_offset,
            sector_size: limits.sector_size,
        });
    }
    let disk_bytes = limits.disk_sectors.saturating_mul(SECTOR_UNIT);
    match offset.checked_add(len) {
        Some(end) if end <= disk_bytes => Ok(()),
        _ => Err(BlkError::BeyondEnd {
            offset,
            len,
            disk_bytes,
        }),
    }
}

/// Splits an I/O of `len` bytes at disk byte `offset`, whose buffer starts
/// at byte `buf_offset` of its first 4 KiB page and continues through the
/// following pages, into requests of at most `limits.max_segments`
/// segments. Each segment is the part of the I/O in one buffer page.
///
/// Requires `offset`, `len` and `buf_offset` to be multiples of the
/// sector size (see the module doc: blkback checks every segment) and the
/// I/O to end within the disk; a write to a read-only disk is
/// [`BlkError::ReadOnly`]. `len` = 0 plans nothing.
///
/// ```
/// use xenfront::drivers::blkfront::{plan_io, IoLimits, Op};
/// let disk = IoLimits {
///     sector_size: 512,
///     disk_sectors: 1 << 20,
///     max_segments: 11, // no indirect requests
///     read_only: false,
///     flush: true,
///     discard: false,
/// };
/// // 64 KiB from a buffer that starts 512 bytes into its first page:
/// // 17 pages touched, so two requests (11 + 6 segments).
/// let plan = plan_io(Op::Read, 4096, 65536, 512, &disk).unwrap();
/// assert_eq!(plan.len(), 2);
/// assert_eq!(plan[0].sector, 8); // 512-byte units
/// assert_eq!(plan[0].segments.len(), 11);
/// assert_eq!((plan[0].segments[0].first_sect, plan[0].segments[0].last_sect), (1, 7));
/// assert_eq!(plan[1].segments.len(), 6);
/// assert_eq!(plan[0].len + plan[1].len, 65536);
/// ```
pub fn plan_io(
    op: Op,
    offset: u64,
    len: u64,
    buf_offset: usize,
    limits: &IoLimits,
) -> Result<Vec<Planned>, BlkError> {
    if op == Op::Write && limits.read_only {
        return Err(BlkError::ReadOnly);
    }
    check_span(offset, len, buf_offset, limits)?;
    let page = PAGE_SIZE as u64;
    let max_segments = (limits.max_segments as usize).max(1);
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = pos;
        let mut segments = Vec::new();
        while pos < len && segments.len() < max_segments {
            let abs = buf_offset as u64 + pos;
            let in_page = abs % page;
            let n = (page - in_page).min(len - pos);
            segments.push(Segment {
                page: (abs / page) as u32,
                first_sect: (in_page / SECTOR_UNIT) as u8,
                last_sect: ((in_page + n) / SECTOR_UNIT - 1) as u8,
            });
            pos += n;
        }
        out.push(Planned {
            sector: (offset + start) / SECTOR_UNIT,
            io_offset: start,
            len: pos - start,
            segments,
        });
    }
    Ok(out)
}

/// A byte range of the disk cut at its logical sectors: the partial
/// sector at its start (`head`), the whole sectors (`middle`), the partial
/// sector at its end (`tail`). The block API reads a partial sector whole
/// and copies out the part asked for, and writes one by read-modify-write;
/// the whole sectors go to the device as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// `(sector start, offset in the sector, bytes)` of a leading partial
    /// sector.
    pub head: Option<(u64, usize, usize)>,
    /// `(disk offset, bytes)` of the whole sectors (both sector multiples).
    pub middle: Option<(u64, u64)>,
    /// `(sector start, bytes)` of a trailing partial sector (its data
    /// starts at the sector's start).
    pub tail: Option<(u64, usize)>,
}

impl Span {
    /// Cuts `len` bytes at disk byte `offset` for a disk of `sector_size`
    /// (a power of two). `len` = 0 is an empty span; a range inside one
    /// sector is a `head` alone.
    ///
    /// ```
    /// use xenfront::drivers::blkfront::Span;
    /// // One byte at 511, and 4097 bytes at 100, on a 512-byte-sector disk.
    /// let s = Span::cut(511, 1, 512);
    /// assert_eq!((s.head, s.middle, s.tail), (Some((0, 511, 1)), None, None));
    /// let s = Span::cut(100, 4097, 512);
    /// assert_eq!(s.head, Some((0, 100, 412)));
    /// assert_eq!(s.middle, Some((512, 3584)));
    /// assert_eq!(s.tail, Some((4096, 101)));
    /// ```
    pub fn cut(offset: u64, len: u64, sector_size: u32) -> Span {
        let ss = u64::from(sector_size.max(1));
        let mut span = Span::default();
        if len == 0 {
            return span;
        }
        let end = offset.saturating_add(len);
        let mut pos = offset;
        if !pos.is_multiple_of(ss) {
            let start = pos - pos % ss;
            let n = (start + ss).min(end) - pos;
            span.head = Some((start, (pos - start) as usize, n as usize));
            pos += n;
        }
        let whole = (end - pos) / ss * ss;
        if whole > 0 {
            span.middle = Some((pos, whole));
            pos += whole;
        }
        if pos < end {
            span.tail = Some((pos, (end - pos) as usize));
        }
        span
    }
}

/// A `BLKIF_OP_FLUSH_DISKCACHE` with no segments (legal: blkback takes
/// `nseg == 0` for a flush), or [`BlkError::NotSupported`].
pub fn flush_request(id: u64, handle: u16, limits: &IoLimits) -> Result<BlkifRequest, BlkError> {
    if !limits.flush {
        return Err(BlkError::NotSupported("flush (feature-flush-cache)"));
    }
    Ok(BlkifRequest {
        operation: BLKIF_OP_FLUSH_DISKCACHE,
        handle,
        id,
        ..Default::default()
    })
}

/// A `BLKIF_OP_DISCARD` of `len` bytes at `offset` (sector-aligned, within
/// the disk, not on a read-only disk).
pub fn plan_discard(
    offset: u64,
    len: u64,
    secure: bool,
    id: u64,
    handle: u16,
    limits: &IoLimits,
) -> Result<BlkifRequestDiscard, BlkError> {
    if !limits.discard {
        return Err(BlkError::NotSupported("discard (feature-discard)"));
    }
    if limits.read_only {
        return Err(BlkError::ReadOnly);
    }
    check_span(offset, len, 0, limits)?;
    Ok(BlkifRequestDiscard {
        operation: BLKIF_OP_DISCARD,
        flag: if secure { BLKIF_DISCARD_SECURE } else { 0 },
        handle,
        id,
        sector_number: offset / SECTOR_UNIT,
        nr_sectors: len / SECTOR_UNIT,
        ..Default::default()
    })
}

// ------------------------------------------------------------ bounce pool

/// A fixed pool of bounce pages, by index (the caller keeps the pages and
/// their grants: with `feature-persistent` they stay granted, and the
/// backend keeps them mapped, across requests; Linux blkfront's
/// persistent grant list). A request takes all the pages it needs or none
/// (no partial allocation can deadlock two requests), and the most
/// recently returned pages are handed out first, so a small working set
/// stays mapped in the backend.
#[derive(Clone, Debug)]
pub struct PagePool {
    free: Vec<u32>,
    in_use: Vec<bool>,
}

impl PagePool {
    /// A pool of pages `0..pages`, all free.
    pub fn new(pages: u32) -> PagePool {
        PagePool {
            free: (0..pages).rev().collect(),
            in_use: alloc::vec![false; pages as usize],
        }
    }

    /// Pages in the pool.
    pub fn capacity(&self) -> u32 {
        self.in_use.len() as u32
    }

    /// Pages free.
    pub fn available(&self) -> u32 {
        self.free.len() as u32
    }

    /// `n` pages, or `None` (taking none) if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        let pages = self.free.split_off(self.free.len() - n);
        for &p in &pages {
            self.in_use[p as usize] = true;
        }
        Some(pages)
    }

    /// Returns pages taken earlier. A page that is not in use (returned
    /// twice, or never from this pool) is a bug of the caller: nothing is
    /// returned and the answer is `false`.
    pub fn give_back(&mut self, pages: &[u32]) -> bool {
        let mut seen = alloc::collections::BTreeSet::new();
        let ok = pages
            .iter()
            .all(|&p| self.in_use.get(p as usize).copied().unwrap_or(false) && seen.insert(p));
        if !ok {
            return false;
        }
        for &p in pages.iter().rev() {
            self.in_use[p as usize] = false;
            self.free.push(p);
        }
        true
    }
}

impl Planned {
    /// The buffer page of its first segment: its segments use pages
    /// `first_page()..first_page() + segments.len()`, one each, so a
    /// request bounced through pool pages `q` reads page `p` as
    /// `q[p - first_page()]`.
    pub fn first_page(&self) -> u32 {
        self.segments.first().map_or(0, |s| s.page)
    }
}

// ------------------------------------------------------------- responses

/// A response's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `BLKIF_RSP_OKAY`.
    Okay,
    /// `BLKIF_RSP_ERROR`: the I/O failed.
    Error,
    /// `BLKIF_RSP_EOPNOTSUPP`: the backend does not do this operation.
    NotSupported,
}

/// A validated response and what its request carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion<T> {
    /// The request's id.
    pub id: u64,
    /// The request's operation (`BLKIF_OP_*`; the inner one of an
    /// indirect request).
    pub operation: u8,
    /// Its status.
    pub status: Status,
    /// The caller's data for it.
    pub data: T,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    /// Generation of the next id from this slot.
    next_gen: u32,
    /// Generation, operation, indirect flag and data of the request in
    /// flight.
    busy: Option<(u32, u8, bool, T)>,
}

/// The requests in flight: one slot per ring entry, ids
/// `generation << 32 | slot` (a slot's ids never repeat for 2^32 reuses,
/// so a late duplicate is told apart from a fresh request), and a free
/// list. The backend's id is checked against it before anything is done
/// with the response (Linux blkfront `blkif_interrupt`: id below the ring
/// size, request waiting, operation echoed).
#[derive(Clone, Debug)]
pub struct Outstanding<T> {
    slots: Vec<Entry<T>>,
    free: Vec<u32>,
}

impl<T> Outstanding<T> {
    /// A table of `capacity` slots (the ring's size).
    pub fn new(capacity: u32) -> Outstanding<T> {
        let mut slots = Vec::with_capacity(capacity as usize);
        slots.resize_with(capacity as usize, || Entry {
            next_gen: 0,
            busy: None,
        });
        Outstanding {
            slots,
            free: (0..capacity).rev().collect(),
        }
    }

    /// Slots.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.capacity() - self.free.len() as u32
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Takes a slot for a request of `operation` (`BLKIF_OP_*`; for an
    /// indirect request the inner `BLKIF_OP_READ`/`WRITE` and `indirect`
    /// = true) carrying `data`; its id, or `None` when full.
    pub fn insert(&mut self, operation: u8, indirect: bool, data: T) -> Option<u64> {
        let slot = self.free.pop()?;
        let e = &mut self.slots[slot as usize];
        let gen = e.next_gen;
        e.next_gen = e.next_gen.wrapping_add(1);
        e.busy = Some((gen, operation, indirect, data));
        Some((u64::from(gen) << 32) | u64::from(slot))
    }

    /// Checks a response copied out of the ring against the table and, if
    /// it is right, frees its slot and returns the request's data. The
    /// operation must be the request's (for an indirect request: its
    /// inner operation, as Linux blkback answers, or `BLKIF_OP_INDIRECT`);
    /// the status one of blkif.h's three. Every error here means the
    /// backend is broken ([`BlkError::disconnects`]); the slot is left
    /// as it was.
    pub fn complete(&mut self, rsp: BlkifResponse) -> Result<Completion<T>, BlkError> {
        let id = rsp.id;
        let slot = (id & 0xffff_ffff) as usize;
        let gen = (id >> 32) as u32;
        let Some(e) = self.slots.get_mut(slot) else {
            return Err(BlkError::UnknownId(id));
        };
        let (want, indirect) = match &e.busy {
            Some((g, op, ind, _)) if *g == gen => (*op, *ind),
            // Issued earlier from this slot: answered already.
            _ if gen < e.next_gen => return Err(BlkError::Duplicate(id)),
            _ => return Err(BlkError::UnknownId(id)),
        };
        if rsp.operation != want && !(indirect && rsp.operation == BLKIF_OP_INDIRECT) {
            return Err(BlkError::WrongOperation {
                id,
                got: rsp.operation,
                want,
            });
        }
        let status = match rsp.status {
            BLKIF_RSP_OKAY => Status::Okay,
            BLKIF_RSP_ERROR => Status::Error,
            BLKIF_RSP_EOPNOTSUPP => Status::NotSupported,
            status => return Err(BlkError::BadStatus { id, status }),
        };
        let (_, operation, _, data) = e.busy.take().expect("checked above");
        self.free.push(slot as u32);
        Ok(Completion {
            id,
            operation,
            status,
            data,
        })
    }

    /// The data of every request in flight, in slot order (to find the
    /// oldest, whose deadline comes first).
    pub fn in_flight_data(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .filter_map(|e| e.busy.as_ref().map(|(_, _, _, d)| d))
    }

    /// Empties the table (on disconnect: every request in flight fails):
    /// `(id, operation, data)` of each, in slot order.
    pub fn drain(&mut self) -> Vec<(u64, u8, T)> {
        let mut out = Vec::new();
        for (slot, e) in self.slots.iter_mut().enumerate() {
            if let Some((gen, op, _, data)) = e.busy.take() {
                out.push(((u64::from(gen) << 32) | slot as u64, op, data));
                self.free.push(slot as u32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
