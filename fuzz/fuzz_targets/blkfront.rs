//! Peer data: what a block backend (Linux blkback, or a hostile one)
//! controls. Its XenStore keys (`sectors`, `sector-size`, `info`,
//! `feature-*`, … : each absent, a plausible value, a near miss, any
//! decimal, or any bytes) through `BackendInfo::parse` and
//! `RingFeatures::parse`, checked against a model of the documented rules,
//! then the connection keys built for what it offers (`connect_keys`,
//! written through `write_keys`); its responses (any id, operation,
//! status: right, replayed, for a slot never used, bit-flipped) against
//! the table of requests in flight (`Outstanding`), interleaved with new
//! requests and a disconnect's drain; and the request planner (`plan_io`,
//! `plan_discard`, `flush_request`) for any offset, length, buffer
//! position and limits, each plan encoded as the guest sends it (direct
//! and indirect requests, indirect pages, bounce copies). Also the bounce
//! page pool. Invariants: no panic; a key's error names the key and its
//! value; a response is either exactly right (its request completes once,
//! with its data) or a typed error that disconnects and leaves the table
//! as it was; every planned segment has `first_sect <= last_sect <= 7` and
//! a multiple of `sector-size / 512` sectors, requests have at most
//! `max_segments` segments, tile the buffer in order and sum to the
//! length; the wire forms say what the plan says.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use xenfront::drivers::blkfront::{
    connect_keys, flush_request, plan_discard, plan_io, BackendInfo, BlkError, Discard, IoLimits,
    Op, Outstanding, PagePool, Planned, QueueRing, RingFeatures, Status, BACKEND_KEYS,
    MAX_INDIRECT_SEGMENTS, MAX_RING_PAGE_ORDER, RING_FEATURE_KEYS,
};
use xenfront::shared::{SharedMem, PAGE_SIZE};
use xenfront::xen_abi::blkif::{
    indirect_pages, BlkifRequestSegment, BlkifResponse, BLKIF_DISCARD_SECURE,
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
    BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, SEGS_PER_INDIRECT_FRAME,
};
use xenfront::xenbus::{write_keys, TxStore, XenbusState};
use xenfront::xenstore::{self, TxId};
use xenfront_fuzz::{Input, Pages};

const DIR: &str = "/local/domain/0/backend/vbd/5/51712";
/// Largest I/O the planner is asked to plan (its output grows with the
/// length: 4 KiB per segment).
const MAX_PLANNED: u64 = 16 << 20;
/// Largest plan whose bytes are bounced through pages.
const MAX_COPIED: u64 = 64 << 10;

// ------------------------------------------------------------ backend keys

/// Values blkback writes, and near misses of them.
const VALUES: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"7",
    b"8",
    b"11",
    b"12",
    b"20",
    b"21",
    b"256",
    b"511",
    b"512",
    b"1024",
    b"2048",
    b"4096",
    b"8192",
    b"131072",
    b"131071",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"36028797018963967",
    b"36028797018963968",
    b"18446744073709551615",
    b"18446744073709551616",
    b"",
    b"00",
    b"01",
    b"-1",
    b"+1",
    b" 1",
    b"1 ",
    b"1\n",
    b"1\0",
    b"0x4",
    b"\xff",
];

fn number(inp: &mut Input<'_>) -> u64 {
    match inp.u8() % 4 {
        0 => u64::from(inp.u8()),
        1 => 1u64 << (inp.u8() % 64),
        2 => u64::from(inp.u32()),
        _ => inp.u64(),
    }
}

fn key_value(inp: &mut Input<'_>) -> Option<Vec<u8>> {
    match inp.u8() % 6 {
        0 => None,
        1 | 2 => Some(VALUES[inp.below(VALUES.len())].to_vec()),
        3 => Some(number(inp).to_string().into_bytes()),
        4 => {
            // A plausible value with one byte changed, added or dropped.
            let mut v = VALUES[inp.below(VALUES.len())].to_vec();
            let at = inp.below(v.len() + 1);
            match inp.u8() % 3 {
                0 if at < v.len() => v[at] = inp.u8(),
                1 => v.insert(at, inp.u8()),
                _ if at < v.len() => {
                    v.remove(at);
                }
                _ => {}
            }
            Some(v)
        }
        _ => Some(inp.bytes(48).to_vec()),
    }
}

/// Canonical decimal, written independently of the library's parser.
fn canon(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && &s[..1] == "0") {
        return None;
    }
    s.parse().ok()
}

/// Why the model refuses a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    Missing,
    Value,
}

/// The model of `BackendInfo::parse` (blkfront.rs docs and devices.md
/// §1): the keys it refuses (a key whose check depends on another is
/// judged only when that one is good), and the result when it refuses
/// none.
fn model(keys: &BTreeMap<&str, Vec<u8>>) -> (BTreeMap<&'static str, Bad>, Option<BackendInfo>) {
    let mut bad = BTreeMap::new();
    let num = |k: &str| keys.get(k).map(|v| canon(v));
    let u32_max = u64::from(u32::MAX);
    // Absent: Ok(None); bad: Err; good: Ok(Some(n)).
    let check = |bad: &mut BTreeMap<&'static str, Bad>,
                 k: &'static str,
                 required: bool,
                 ok: &dyn Fn(u64) -> bool| {
        match num(k) {
            None if required => {
                bad.insert(k, Bad::Missing);
                None
            }
            None => Some(None),
            Some(Some(n)) if ok(n) => Some(Some(n)),
            Some(_) => {
                bad.insert(k, Bad::Value);
                None
            }
        }
    };
    let pow2_in = |n: u64, lo: u64, hi: u64| n.is_power_of_two() && n >= lo && n <= hi;
    let ss = check(&mut bad, "sector-size", true, &|n| pow2_in(n, 512, 4096)).flatten();
    let (sectors, phys) = match ss {
        Some(ss) => (
            check(&mut bad, "sectors", true, &|n| {
                n != 0 && n % (ss / 512) == 0 && n <= u64::MAX / 512
            })
            .flatten(),
            check(&mut bad, "physical-sector-size", false, &|n| {
                pow2_in(n, ss, 1 << 31)
            })
            .map(|p| p.unwrap_or(ss)),
        ),
        None => (None, None),
    };
    let info = check(&mut bad, "info", true, &|n| n & !7 == 0).flatten();
    let flag = |bad: &mut BTreeMap<&'static str, Bad>, k| {
        check(bad, k, false, &|n| n <= 1).map(|v| v == Some(1))
    };
    let flush = flag(&mut bad, "feature-flush-cache");
    let barrier = flag(&mut bad, "feature-barrier");
    let discard = flag(&mut bad, "feature-discard");
    let secure = flag(&mut bad, "discard-secure");
    let persistent = flag(&mut bad, "feature-persistent");
    let gran =
        check(&mut bad, "discard-granularity", false, &|n| n <= u32_max).map(|g| g.unwrap_or(0));
    let align = match gran {
        Some(g) => check(&mut bad, "discard-alignment", false, &|n| {
            n <= u32_max && (g == 0 || n < g)
        })
        .map(|a| a.unwrap_or(0)),
        None => None,
    };
    let ring = ring_model(keys, &mut bad);
    if !bad.is_empty() {
        return (bad, None);
    }
    let ring = ring.unwrap();
    let info = BackendInfo {
        sectors: sectors.unwrap(),
        sector_size: ss.unwrap() as u32,
        physical_sector_size: phys.unwrap() as u32,
        info: info.unwrap() as u32,
        flush: flush.unwrap(),
        barrier: barrier.unwrap(),
        discard: discard.unwrap().then_some(Discard {
            granularity: gran.unwrap() as u32,
            alignment: align.unwrap() as u32,
            secure: secure.unwrap(),
        }),
        persistent: persistent.unwrap(),
        max_indirect_segments: ring.max_indirect_segments,
        max_ring_page_order: ring.max_ring_page_order,
        max_queues: ring.max_queues,
    };
    (bad, Some(info))
}

/// The model of `RingFeatures::parse`; adds the keys it refuses to `bad`.
fn ring_model(
    keys: &BTreeMap<&str, Vec<u8>>,
    bad: &mut BTreeMap<&'static str, Bad>,
) -> Option<RingFeatures> {
    let mut get = |k: &'static str, default: u64, ok: &dyn Fn(u64) -> bool| match keys.get(k) {
        None => Some(default),
        Some(v) => match canon(v).filter(|&n| ok(n)) {
            Some(n) => Some(n),
            None => {
                bad.insert(k, Bad::Value);
                None
            }
        },
    };
    let ind = get("feature-max-indirect-segments", 0, &|n| {
        n <= u64::from(u32::MAX)
    });
    let order = get("max-ring-page-order", 0, &|n| n <= 20);
    let queues = get("multi-queue-max-queues", 1, &|n| {
        n != 0 && n <= u64::from(u32::MAX)
    });
    Some(RingFeatures {
        max_indirect_segments: ind? as u32,
        max_ring_page_order: order? as u32,
        max_queues: queues? as u32,
    })
}

/// An error of the key parsers names one key the model refuses, for the
/// model's reason, with the value as read.
fn check_key_error(
    e: &BlkError,
    keys: &BTreeMap<&str, Vec<u8>>,
    bad: &BTreeMap<&'static str, Bad>,
    allowed: &[&str],
) {
    let text = e.to_string();
    assert!(!e.disconnects(), "{e:?}");
    let (path, why) = match e {
        BlkError::Missing { path } => (path, Bad::Missing),
        BlkError::BadValue {
            path,
            value,
            expected,
        } => {
            let key = path.rsplit('/').next().unwrap();
            assert_eq!(Some(value), keys.get(key), "{e:?}");
            assert!(!expected.is_empty());
            (path, Bad::Value)
        }
        other => panic!("key parser: {other:?}"),
    };
    assert!(text.contains(path.as_str()), "{text}");
    let key = path.strip_prefix(DIR).and_then(|k| k.strip_prefix('/'));
    let key = key.unwrap_or_else(|| panic!("error names {path}, not below {DIR}"));
    assert!(allowed.contains(&key), "{key}");
    assert_eq!(bad.get(key), Some(&why), "{e:?}, model refuses {bad:?}");
}

/// A store that records one transaction and agrees to everything.
#[derive(Default)]
struct Rec {
    open: bool,
    writes: Vec<(String, Vec<u8>)>,
    rms: Vec<String>,
    commits: u32,
}

impl TxStore for Rec {
    fn tx_start(&mut self) -> Result<TxId, xenstore::Error> {
        assert!(!self.open);
        self.open = true;
        Ok(TxId(7))
    }
    fn tx_write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), xenstore::Error> {
        assert!(self.open && tx == TxId(7));
        self.writes.push((path.into(), value.into()));
        Ok(())
    }
    fn tx_rm(&mut self, tx: TxId, path: &str) -> Result<(), xenstore::Error> {
        assert!(self.open && tx == TxId(7));
        self.rms.push(path.into());
        Ok(())
    }
    fn tx_end(&mut self, tx: TxId, commit: bool) -> Result<(), xenstore::Error> {
        assert!(self.open && tx == TxId(7) && commit);
        self.open = false;
        self.commits += 1;
        Ok(())
    }
}

/// The frontend's keys for what the backend offers: accepted exactly when
/// the ring order, the queue count and the references fit, and then
/// written as blkback's `connect_ring` reads them.
fn connection(inp: &mut Input<'_>, rf: &RingFeatures) {
    let order = inp.below(7) as u32;
    let nq = inp.below(6);
    let pages = 1usize << order;
    let lens: Vec<usize> = (0..nq)
        .map(|_| {
            if inp.u8() % 8 == 0 {
                inp.below(40)
            } else {
                pages
            }
        })
        .collect();
    let refs: Vec<Vec<u32>> = lens
        .iter()
        .enumerate()
        .map(|(q, &n)| (0..n as u32).map(|j| 1000 * q as u32 + j + 8).collect())
        .collect();
    let queues: Vec<QueueRing<'_>> = refs
        .iter()
        .enumerate()
        .map(|(q, r)| QueueRing {
            ring_refs: r,
            event_channel: 20 + q as u32,
        })
        .collect();
    let persistent = inp.bool();
    let state = XenbusState::ALL[inp.below(9)];
    let fits = order <= MAX_RING_PAGE_ORDER
        && (order == 0 || order <= rf.max_ring_page_order)
        && nq >= 1
        && nq as u64 <= u64::from(rf.max_queues)
        && lens.iter().all(|&n| n == pages);
    let keys = match connect_keys(rf, order, &queues, persistent, state) {
        Ok(k) => {
            assert!(fits, "order {order}, {nq} queues, {lens:?} for {rf:?}");
            k
        }
        Err(e) => {
            assert!(!fits, "{e:?}");
            assert!(matches!(e, BlkError::Config(_)) && !e.disconnects());
            return;
        }
    };
    let mut st = Rec::default();
    assert_eq!(write_keys(&mut st, "device/vbd/51712", &keys, 4), Ok(1));
    assert_eq!(st.commits, 1);
    let w: HashMap<String, Vec<u8>> = st
        .writes
        .iter()
        .map(|(p, v)| {
            (
                p.strip_prefix("device/vbd/51712/").unwrap().to_string(),
                v.clone(),
            )
        })
        .collect();
    assert_eq!(w.len(), st.writes.len(), "a key written twice");
    let (last, v) = st.writes.last().unwrap();
    assert_eq!(
        (last.as_str(), v.as_slice()),
        ("device/vbd/51712/state", &state.value()[..])
    );
    assert_eq!(w["protocol"], b"x86_64-abi");
    assert_eq!(
        w["feature-persistent"],
        if persistent { b"1" } else { b"0" }
    );
    for r in &st.rms {
        let k = r.strip_prefix("device/vbd/51712/").unwrap();
        assert!(!w.contains_key(k), "{k} removed and written");
    }
    let dec = |k: &str| canon(w.get(k).unwrap_or_else(|| panic!("{k} missing")));
    if order > 0 {
        assert_eq!(dec("ring-page-order"), Some(u64::from(order)));
    } else {
        assert!(!w.contains_key("ring-page-order"));
    }
    let multi = nq > 1;
    if multi {
        assert_eq!(dec("multi-queue-num-queues"), Some(nq as u64));
    }
    for (q, qr) in queues.iter().enumerate() {
        let dir = if multi {
            format!("queue-{q}/")
        } else {
            String::new()
        };
        assert_eq!(
            dec(&format!("{dir}event-channel")),
            Some(u64::from(qr.event_channel))
        );
        for (j, r) in qr.ring_refs.iter().enumerate() {
            let k = if order == 0 {
                format!("{dir}ring-ref")
            } else {
                format!("{dir}ring-ref{j}")
            };
            assert_eq!(dec(&k), Some(u64::from(*r)), "{k}");
        }
    }
    let expect = 3 + usize::from(order > 0) + usize::from(multi) + nq * (1 + pages);
    assert_eq!(w.len(), expect, "{:?}", st.writes);
}

fn backend_keys(inp: &mut Input<'_>) {
    let mut keys: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    // Start from Linux blkback's keys, or from nothing.
    if inp.bool() {
        for (k, v) in [
            ("sectors", "131072"),
            ("sector-size", "512"),
            ("physical-sector-size", "512"),
            ("info", "0"),
            ("feature-flush-cache", "1"),
            ("feature-barrier", "0"),
            ("feature-discard", "1"),
            ("discard-granularity", "4096"),
            ("discard-alignment", "0"),
            ("discard-secure", "0"),
            ("feature-persistent", "1"),
            ("feature-max-indirect-segments", "256"),
            ("max-ring-page-order", "4"),
            ("multi-queue-max-queues", "2"),
        ] {
            keys.insert(k, v.as_bytes().to_vec());
        }
    }
    for _ in 0..1 + inp.below(BACKEND_KEYS.len()) {
        let k = BACKEND_KEYS[inp.below(BACKEND_KEYS.len())];
        match key_value(inp) {
            Some(v) => keys.insert(k, v),
            None => keys.remove(k),
        };
    }
    let (bad, want) = model(&keys);
    let mut asked = Vec::new();
    let got = BackendInfo::parse(DIR, |k| {
        asked.push(k.to_string());
        keys.get(k).map(|v| v.as_slice())
    });
    let once: HashSet<&String> = asked.iter().collect();
    assert_eq!(once.len(), asked.len(), "a key read twice: {asked:?}");
    assert!(
        asked.iter().all(|k| BACKEND_KEYS.contains(&k.as_str())),
        "{asked:?}"
    );
    let mut ring_bad = BTreeMap::new();
    let ring_want = ring_model(&keys, &mut ring_bad);
    let ring = RingFeatures::parse(DIR, |k| {
        assert!(RING_FEATURE_KEYS.contains(&k), "{k}");
        keys.get(k).map(|v| v.as_slice())
    });
    match &ring {
        Ok(r) => assert_eq!(Some(*r), ring_want),
        Err(e) => check_key_error(e, &keys, &ring_bad, &RING_FEATURE_KEYS),
    }
    let info = match got {
        Ok(i) => {
            assert_eq!(Some(&i), want.as_ref(), "model refuses {bad:?}");
            i
        }
        Err(e) => {
            assert!(want.is_none(), "{e:?} for {keys:?}");
            check_key_error(&e, &keys, &bad, &BACKEND_KEYS);
            // The ring features alone may still parse.
            return;
        }
    };
    // What the driver derives from it.
    assert_eq!(ring.as_ref(), Ok(&info.ring_features()));
    assert_eq!(info.bytes(), info.sectors * 512);
    assert_eq!(info.read_only(), info.info & 4 != 0);
    let ms = info.max_segments();
    assert!((BLKIF_MAX_SEGMENTS_PER_REQUEST as u32..=MAX_INDIRECT_SEGMENTS).contains(&ms));
    if info.max_indirect_segments <= 11 {
        assert_eq!(ms, 11);
    }
    for want in 0..8 {
        assert_eq!(
            info.ring_page_order(want),
            want.min(info.max_ring_page_order).min(MAX_RING_PAGE_ORDER)
        );
    }
    let l = info.limits();
    assert_eq!(
        l,
        IoLimits {
            sector_size: info.sector_size,
            disk_sectors: info.sectors,
            max_segments: ms,
            read_only: info.read_only(),
            flush: info.flush,
            discard: info.discard.is_some(),
        }
    );
    connection(inp, &info.ring_features());
    // I/O on the disk it describes.
    for _ in 0..4 {
        if inp.is_empty() {
            break;
        }
        plan_one(inp, &l);
    }
}

// ---------------------------------------------------------------- planner

fn check_segments(r: &Planned, per: u64, max: usize) {
    assert!(
        !r.segments.is_empty() && r.segments.len() <= max,
        "{} segments",
        r.segments.len()
    );
    assert_eq!(
        r.is_indirect(),
        r.segments.len() > BLKIF_MAX_SEGMENTS_PER_REQUEST
    );
    let mut bytes = 0u64;
    for s in &r.segments {
        assert!(s.first_sect <= s.last_sect && s.last_sect <= 7, "{s:?}");
        assert_eq!(u64::from(s.last_sect - s.first_sect + 1) % per, 0, "{s:?}");
        assert_eq!(
            s.bytes(),
            (usize::from(s.last_sect - s.first_sect) + 1) * 512
        );
        assert_eq!(s.page_offset(), usize::from(s.first_sect) * 512);
        bytes += s.bytes() as u64;
    }
    assert_eq!(bytes, r.len);
}

/// Checks a plan against its I/O and encodes it as the guest sends it.
fn check_plan(
    inp: &mut Input<'_>,
    plan: &[Planned],
    op: Op,
    offset: u64,
    len: u64,
    bo: usize,
    l: &IoLimits,
) {
    let per = u64::from(l.sector_size / 512);
    let max = (l.max_segments as usize).max(1);
    let mut io = 0u64;
    let mut at = bo as u64;
    let mut nsegs = 0u64;
    for (k, r) in plan.iter().enumerate() {
        assert_eq!(r.io_offset, io, "requests are contiguous");
        assert_eq!(r.sector * 512, offset + io);
        assert_eq!(r.sector % per, 0);
        check_segments(r, per, max);
        if k + 1 < plan.len() {
            assert_eq!(r.segments.len(), max, "requests are as large as allowed");
        }
        assert_eq!(r.first_page(), r.segments[0].page);
        for (j, s) in r.segments.iter().enumerate() {
            // The segments tile the buffer in order, one page each.
            assert_eq!(u64::from(s.page) * 4096 + s.page_offset() as u64, at);
            assert_eq!(s.page, r.first_page() + j as u32);
            at += s.bytes() as u64;
        }
        io += r.len;
        nsegs += r.segments.len() as u64;
    }
    assert_eq!(io, len, "the requests cover the I/O");
    assert_eq!(at, bo as u64 + len);
    let pages = (bo as u64 + len).div_ceil(4096) - bo as u64 / 4096;
    assert_eq!(nsegs, if len == 0 { 0 } else { pages });
    // The wire forms of a few of the requests.
    for (n, r) in plan.iter().enumerate().take(3) {
        encode(r, op, n as u64 * 5 + 1, inp.u16());
    }
    if len <= MAX_COPIED && !plan.is_empty() {
        bounce(inp, plan, bo, len);
    }
}

fn encode(r: &Planned, op: Op, id: u64, handle: u16) {
    let gref = |p: u32| p.wrapping_mul(3).wrapping_add(1000);
    let n = r.segments.len();
    match r.direct(op, id, handle, gref) {
        Some(req) => {
            assert!(n <= BLKIF_MAX_SEGMENTS_PER_REQUEST);
            assert_eq!(
                (
                    req.operation,
                    req.nr_segments as usize,
                    req.handle,
                    req.id,
                    req.sector_number
                ),
                (op.blkif(), n, handle, id, r.sector)
            );
            for (w, s) in req.seg.iter().zip(&r.segments) {
                assert_eq!(
                    (w.gref, w.first_sect, w.last_sect),
                    (gref(s.page), s.first_sect, s.last_sect)
                );
            }
            assert!(req.seg[n..].iter().all(|w| w.gref == 0 && w.last_sect == 0));
            assert!(r.indirect(op, id, handle, &[]).is_none());
            assert_eq!(r.indirect_pages(), 0);
        }
        None => {
            assert!(n > BLKIF_MAX_SEGMENTS_PER_REQUEST);
            let np = r.indirect_pages();
            assert_eq!(np, n.div_ceil(SEGS_PER_INDIRECT_FRAME));
            assert_eq!(np, indirect_pages(n));
            let grefs: Vec<u32> = (0..np as u32).map(|j| 9000 + j).collect();
            assert!(r.indirect(op, id, handle, &grefs[1..]).is_none());
            let Some(req) = r.indirect(op, id, handle, &grefs) else {
                assert!(np > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, "{n} segments");
                return;
            };
            assert_eq!(
                (
                    req.operation,
                    req.indirect_op,
                    req.nr_segments as usize,
                    req.id,
                    req.sector_number,
                    req.handle
                ),
                (BLKIF_OP_INDIRECT, op.blkif(), n, id, r.sector, handle)
            );
            assert_eq!(&req.indirect_grefs[..np], &grefs[..]);
            assert!(req.indirect_grefs[np..].iter().all(|&g| g == 0));
            let pages = Pages::new(np);
            let views: Vec<SharedMem<'_>> = (0..np).map(|j| pages.page(j)).collect();
            assert!(!r.write_indirect_segments(&views[1..], gref));
            assert!(r.write_indirect_segments(&views, gref));
            for (i, s) in r.segments.iter().enumerate() {
                let w: BlkifRequestSegment = views[i / SEGS_PER_INDIRECT_FRAME].read(
                    (i % SEGS_PER_INDIRECT_FRAME) * core::mem::size_of::<BlkifRequestSegment>(),
                );
                assert_eq!(
                    (w.gref, w.first_sect, w.last_sect),
                    (gref(s.page), s.first_sect, s.last_sect)
                );
            }
        }
    }
}

/// The bytes of each request go to (and come back from) exactly the
/// buffer positions its segments name.
fn bounce(inp: &mut Input<'_>, plan: &[Planned], bo: usize, len: u64) {
    let npages = (bo as u64 + len).div_ceil(4096) as usize;
    let pages = Pages::new(npages);
    let salt = inp.u8();
    let data: Vec<u8> = (0..len as usize)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt ^ (i >> 9) as u8)
        .collect();
    let part = |r: &Planned| &data[r.io_offset as usize..(r.io_offset + r.len) as usize];
    let mut all = vec![0u8; npages * PAGE_SIZE];
    // Data of the wrong length, or a view shorter than a page: refused,
    // nothing copied.
    for r in plan {
        assert!(!r.copy_to_pages(&part(r)[1..], |p| pages.page(p as usize)));
        assert!(!r.copy_to_pages(part(r), |p| pages.page(p as usize).sub(0, 512).unwrap()));
    }
    pages.mem().copy_out(0, &mut all);
    assert!(all.iter().all(|&b| b == 0), "a refused copy wrote");
    for r in plan {
        assert!(r.copy_to_pages(part(r), |p| pages.page(p as usize)));
    }
    pages.mem().copy_out(0, &mut all);
    assert_eq!(
        &all[bo..bo + len as usize],
        &data[..],
        "bytes land where the segments say"
    );
    assert!(all[..bo].iter().all(|&b| b == 0) && all[bo + len as usize..].iter().all(|&b| b == 0));
    for r in plan {
        let mut out = vec![0u8; r.len as usize];
        assert!(r.copy_from_pages(&mut out, |p| pages.page(p as usize)));
        assert_eq!(
            &out[..],
            &data[r.io_offset as usize..(r.io_offset + r.len) as usize]
        );
        let mut short = vec![0u8; r.len as usize + 1];
        assert!(!r.copy_from_pages(&mut short, |p| pages.page(p as usize)));
    }
}

/// What `plan_io` must answer, from its documentation.
fn expect(op: Op, offset: u64, len: u64, bo: usize, l: &IoLimits) -> Result<(), BlkError> {
    if op == Op::Write && l.read_only {
        return Err(BlkError::ReadOnly);
    }
    span(offset, len, bo, l)
}

fn span(offset: u64, len: u64, bo: usize, l: &IoLimits) -> Result<(), BlkError> {
    let ss = u64::from(l.sector_size);
    if offset % ss != 0 || len % ss != 0 || bo as u64 % ss != 0 || bo >= 4096 {
        return Err(BlkError::Misaligned {
            offset,
            len,
            buf_offset: bo,
            sector_size: l.sector_size,
        });
    }
    let disk_bytes = l.disk_sectors.saturating_mul(512);
    match offset.checked_add(len) {
        Some(end) if end <= disk_bytes => Ok(()),
        _ => Err(BlkError::BeyondEnd {
            offset,
            len,
            disk_bytes,
        }),
    }
}

fn plan_one(inp: &mut Input<'_>, l: &IoLimits) {
    let ss = u64::from(l.sector_size);
    let op = if inp.bool() { Op::Write } else { Op::Read };
    let offset = match inp.u8() % 5 {
        0 => u64::from(inp.u16()) * ss,
        1 => u64::from(inp.u32()) * ss,
        2 => l
            .disk_sectors
            .saturating_mul(512)
            .saturating_sub(u64::from(inp.u16()) * ss),
        3 => inp.u64(),
        _ => u64::from(inp.u16()),
    };
    let len = match inp.u8() % 5 {
        0 => u64::from(inp.u8()) * ss,
        1 => u64::from(inp.u16() % 4097) * ss,
        2 => l.disk_sectors.saturating_mul(512).wrapping_sub(offset),
        3 => inp.u64(),
        _ => u64::from(inp.u16()),
    };
    let bo = match inp.u8() % 4 {
        0 | 1 => inp.below(4096 / ss as usize) * ss as usize,
        2 => inp.u16() as usize,
        _ => inp.u64() as usize,
    };
    let want = expect(op, offset, len, bo, l);
    if want.is_ok() && len > MAX_PLANNED {
        return;
    }
    match plan_io(op, offset, len, bo, l) {
        Ok(plan) => {
            assert_eq!(want, Ok(()));
            check_plan(inp, &plan, op, offset, len, bo, l);
        }
        Err(e) => {
            assert_eq!(Err(e.clone()), want);
            assert!(!e.disconnects());
            let _ = e.to_string();
        }
    }
    // Discard and flush of the same span.
    let secure = inp.bool();
    let (id, handle) = (inp.u64(), inp.u16());
    let want = if !l.discard {
        Err(BlkError::NotSupported("discard (feature-discard)"))
    } else if l.read_only {
        Err(BlkError::ReadOnly)
    } else {
        span(offset, len, 0, l)
    };
    match plan_discard(offset, len, secure, id, handle, l) {
        Ok(d) => {
            assert_eq!(want, Ok(()));
            assert_eq!(
                (
                    d.operation,
                    d.flag,
                    d.handle,
                    d.id,
                    d.sector_number,
                    d.nr_sectors
                ),
                (
                    BLKIF_OP_DISCARD,
                    if secure { BLKIF_DISCARD_SECURE } else { 0 },
                    handle,
                    id,
                    offset / 512,
                    len / 512
                )
            );
            assert_eq!(d.sector_number % (ss / 512), 0);
            assert_eq!(d.nr_sectors % (ss / 512), 0);
        }
        Err(e) => {
            assert!(matches!(want, Err(ref w) if *w == e), "{e:?} want {want:?}");
            let _ = e.to_string();
        }
    }
    match flush_request(id, handle, l) {
        Ok(f) => {
            assert!(l.flush);
            assert_eq!(
                (f.operation, f.nr_segments, f.id, f.handle, f.sector_number),
                (BLKIF_OP_FLUSH_DISKCACHE, 0, id, handle, 0)
            );
        }
        Err(e) => {
            assert!(!l.flush);
            assert!(matches!(e, BlkError::NotSupported(_)));
        }
    }
}

fn planner(inp: &mut Input<'_>) {
    let ss = [512u32, 1024, 2048, 4096][inp.below(4)];
    let per = u64::from(ss / 512);
    let disk_sectors = match inp.u8() % 4 {
        0 => u64::from(inp.u32()) * per,
        1 => u64::from(inp.u16()) * per,
        2 => u64::MAX / 512 / per * per,
        _ => inp.u64(),
    };
    let max_segments = match inp.u8() % 5 {
        0 => BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
        1 => MAX_INDIRECT_SEGMENTS,
        2 => u32::from(inp.u8()),
        3 => u32::from(inp.u16()) % 4200,
        _ => inp.u32(),
    };
    let flags = inp.u8();
    let l = IoLimits {
        sector_size: ss,
        disk_sectors,
        max_segments,
        read_only: flags & 1 != 0,
        flush: flags & 2 != 0,
        discard: flags & 4 != 0,
    };
    for _ in 0..8 {
        plan_one(inp, &l);
        if inp.is_empty() {
            break;
        }
    }
}

// ------------------------------------------------------------ responses

/// Requests in flight under responses from a hostile backend.
fn outstanding(inp: &mut Input<'_>) {
    let cap = match inp.u8() % 6 {
        0 => 1,
        1 => 2,
        2 => 32,
        3 => 64,
        4 => 512,
        _ => inp.below(600) as u32,
    };
    let mut t: Outstanding<u32> = Outstanding::new(cap);
    assert_eq!(
        (t.capacity(), t.in_flight(), t.is_full()),
        (cap, 0, cap == 0)
    );
    // id -> (operation, indirect, data)
    let mut live: BTreeMap<u64, (u8, bool, u32)> = BTreeMap::new();
    let mut issued: HashSet<u64> = HashSet::new();
    let mut old: Vec<u64> = Vec::new();
    let mut next = 0u32;
    let mut steps = 0;
    while !inp.is_empty() && steps < 2000 {
        steps += 1;
        match inp.u8() % 8 {
            0..=2 => {
                // A burst of requests.
                for _ in 0..1 + inp.below(8) {
                    let op = match inp.u8() % 8 {
                        0..=2 => BLKIF_OP_READ,
                        3..=5 => BLKIF_OP_WRITE,
                        6 => BLKIF_OP_FLUSH_DISKCACHE,
                        _ => inp.u8(),
                    };
                    let indirect = inp.u8() % 4 == 0;
                    let full = t.is_full();
                    match t.insert(op, indirect, next) {
                        Some(id) => {
                            assert!(!full);
                            assert!((id & 0xffff_ffff) < u64::from(cap), "{id:#x}");
                            assert!(issued.insert(id), "id {id:#x} issued twice");
                            live.insert(id, (op, indirect, next));
                        }
                        None => assert!(full && live.len() == cap as usize),
                    }
                    next += 1;
                }
            }
            3..=6 => {
                let pick = |inp: &mut Input<'_>, v: &[u64]| -> Option<u64> {
                    (!v.is_empty()).then(|| v[inp.below(v.len())])
                };
                let lv: Vec<u64> = live.keys().copied().collect();
                let id = match inp.u8() % 6 {
                    0 | 1 => pick(inp, &lv),
                    2 => pick(inp, &old),
                    3 => pick(inp, &lv).map(|id| id ^ (1 << (inp.u8() % 64))),
                    4 => Some(u64::from(inp.u32() % (cap + 2)) | u64::from(inp.u8() % 4) << 32),
                    _ => Some(inp.u64()),
                }
                .unwrap_or_else(|| inp.u64());
                let want_op = live.get(&id).map(|e| e.0);
                let operation = match inp.u8() % 4 {
                    0 | 1 => want_op.unwrap_or(BLKIF_OP_READ),
                    2 => BLKIF_OP_INDIRECT,
                    _ => inp.u8(),
                };
                let status = match inp.u8() % 6 {
                    0..=2 => BLKIF_RSP_OKAY,
                    3 => BLKIF_RSP_ERROR,
                    4 => BLKIF_RSP_EOPNOTSUPP,
                    _ => inp.u16() as i16,
                };
                let rsp = BlkifResponse {
                    id,
                    operation,
                    _pad0: inp.u8(),
                    status,
                    _pad1: inp.u32(),
                };
                let before = t.in_flight();
                let r = t.complete(rsp);
                match (live.get(&id).copied(), r) {
                    (Some((op, ind, data)), Ok(c)) => {
                        assert!(operation == op || (ind && operation == BLKIF_OP_INDIRECT));
                        let st = match status {
                            BLKIF_RSP_OKAY => Status::Okay,
                            BLKIF_RSP_ERROR => Status::Error,
                            BLKIF_RSP_EOPNOTSUPP => Status::NotSupported,
                            s => panic!("status {s} accepted"),
                        };
                        assert_eq!((c.id, c.operation, c.status, c.data), (id, op, st, data));
                        assert_eq!(t.in_flight(), before - 1);
                        live.remove(&id);
                        old.push(id);
                    }
                    (Some((op, ind, _)), Err(e)) => {
                        assert!(e.disconnects() && t.in_flight() == before, "{e:?}");
                        if operation != op && !(ind && operation == BLKIF_OP_INDIRECT) {
                            assert_eq!(
                                e,
                                BlkError::WrongOperation {
                                    id,
                                    got: operation,
                                    want: op
                                }
                            );
                        } else {
                            assert_eq!(e, BlkError::BadStatus { id, status });
                        }
                        let _ = e.to_string();
                    }
                    (None, Ok(c)) => panic!("completed {c:?}, never outstanding"),
                    (None, Err(e)) => {
                        assert!(e.disconnects() && t.in_flight() == before, "{e:?}");
                        if issued.contains(&id) {
                            assert_eq!(e, BlkError::Duplicate(id));
                        } else {
                            assert_eq!(e, BlkError::UnknownId(id));
                        }
                        let _ = e.to_string();
                    }
                }
            }
            _ => {
                // Disconnect: everything in flight fails, in slot order.
                let drained = t.drain();
                let mut want: Vec<(u64, u8, u32)> =
                    live.iter().map(|(&id, &(op, _, d))| (id, op, d)).collect();
                want.sort_by_key(|w| w.0 & 0xffff_ffff);
                assert_eq!(drained, want);
                old.extend(live.keys());
                live.clear();
                assert_eq!(t.in_flight(), 0);
            }
        }
        assert_eq!(t.in_flight() as usize, live.len());
        assert_eq!(t.is_full(), live.len() == cap as usize);
    }
}

// ------------------------------------------------------------ bounce pool

fn page_pool(inp: &mut Input<'_>) {
    let cap = inp.below(300) as u32;
    let mut pool = PagePool::new(cap);
    assert_eq!((pool.capacity(), pool.available()), (cap, cap));
    let mut in_use: BTreeSet<u32> = BTreeSet::new();
    let mut held: Vec<Vec<u32>> = Vec::new();
    let mut returned: Option<BTreeSet<u32>> = None;
    let mut steps = 0;
    while !inp.is_empty() && steps < 1000 {
        steps += 1;
        match inp.u8() % 3 {
            0 => {
                let n = if inp.bool() {
                    inp.below(12)
                } else {
                    inp.below(cap as usize + 2)
                };
                let avail = pool.available();
                match pool.take(n) {
                    Some(p) => {
                        assert!(n <= avail as usize && p.len() == n);
                        for &x in &p {
                            assert!(x < cap && in_use.insert(x), "page {x} handed out twice");
                        }
                        if let Some(r) = returned.take() {
                            if r.len() == n {
                                // The pages returned last are handed out first.
                                assert_eq!(r, p.iter().copied().collect());
                            }
                        }
                        assert_eq!(pool.available(), avail - n as u32);
                        held.push(p);
                    }
                    None => assert!(n > avail as usize && pool.available() == avail),
                }
            }
            1 if !held.is_empty() => {
                let p = held.swap_remove(inp.below(held.len()));
                assert!(pool.give_back(&p));
                for x in &p {
                    in_use.remove(x);
                }
                returned = Some(p.into_iter().collect());
            }
            _ => {
                // Pages not taken, twice, or out of range: refused whole.
                let mut p: Vec<u32> = (0..inp.below(6))
                    .map(|_| inp.u16() as u32 % (cap + 3))
                    .collect();
                if let Some(h) = held.first() {
                    if inp.bool() {
                        p.extend(h.iter().take(2));
                    }
                }
                let distinct = p.iter().collect::<BTreeSet<_>>().len() == p.len();
                let ok = distinct && p.iter().all(|x| in_use.contains(x));
                let avail = pool.available();
                assert_eq!(pool.give_back(&p), ok, "{p:?}");
                if ok {
                    for x in &p {
                        in_use.remove(x);
                        for h in held.iter_mut() {
                            h.retain(|y| y != x);
                        }
                    }
                    held.retain(|h| !h.is_empty());
                    returned = Some(p.iter().copied().collect());
                } else {
                    assert_eq!(pool.available(), avail);
                }
            }
        }
        assert_eq!(pool.available() as usize, cap as usize - in_use.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 4 {
        0 => backend_keys(&mut inp),
        1 => outstanding(&mut inp),
        2 => planner(&mut inp),
        _ => page_pool(&mut inp),
    }
});
