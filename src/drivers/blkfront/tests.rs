//! Host tests of blkfront's pure parts: backend keys, the request
//! planner (property-style, checked by a model of Linux blkback's request
//! parsing), the outstanding table, and the pieces together over a ring.

use super::*;
use crate::ring::{BackRing, FrontRing};
use crate::shared::TestPages;
use crate::xen_abi::blkif::{SECTORS_PER_PAGE, SLOT_SIZE};
use std::collections::{BTreeMap, HashSet};

const DIR: &str = "/local/domain/0/backend/vbd/5/51712";

/// What Linux 6.1 blkback writes (devices.md §1), for a 64 MiB disk.
fn linux_keys() -> BTreeMap<&'static str, Vec<u8>> {
    [
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
    ]
    .into_iter()
    .map(|(k, v)| (k, v.as_bytes().to_vec()))
    .collect()
}

fn parse(keys: &BTreeMap<&'static str, Vec<u8>>) -> Result<BackendInfo, BlkError> {
    BackendInfo::parse(DIR, |k| keys.get(k).map(|v| v.as_slice()))
}

// ------------------------------------------------------------- features

#[test]
fn linux_blkback_keys() {
    let keys = linux_keys();
    assert_eq!(keys.len(), BACKEND_KEYS.len());
    let i = parse(&keys).unwrap();
    assert_eq!(
        i,
        BackendInfo {
            sectors: 131072,
            sector_size: 512,
            physical_sector_size: 512,
            info: 0,
            flush: true,
            barrier: false,
            discard: Some(Discard {
                granularity: 4096,
                alignment: 0,
                secure: false
            }),
            persistent: true,
            max_indirect_segments: 256,
            max_ring_page_order: 4,
            max_queues: 2,
        }
    );
    assert_eq!(i.bytes(), 64 << 20);
    assert!(!i.read_only());
    assert_eq!(i.max_segments(), 256);
    assert_eq!(i.ring_page_order(9), 4);
    assert_eq!(i.ring_page_order(2), 2);
    let l = i.limits();
    assert_eq!(
        (l.max_segments, l.read_only, l.flush, l.discard),
        (256, false, true, true)
    );
}

#[test]
fn minimal_backend_defaults() {
    let keys: BTreeMap<_, _> = [("sectors", "8"), ("sector-size", "4096"), ("info", "4")]
        .into_iter()
        .map(|(k, v)| (k, v.as_bytes().to_vec()))
        .collect();
    let i = parse(&keys).unwrap();
    assert_eq!(i.physical_sector_size, 4096);
    assert!(i.read_only());
    assert!(!i.flush && !i.barrier && !i.persistent && i.discard.is_none());
    assert_eq!(i.max_indirect_segments, 0);
    assert_eq!(i.max_segments(), 11);
    assert_eq!(i.max_ring_page_order, 0);
    assert_eq!(i.ring_page_order(4), 0);
    assert_eq!(i.max_queues, 1);
    // A backend offering fewer than 12 indirect segments: direct only.
    let mut k = keys.clone();
    k.insert("feature-max-indirect-segments", b"11".to_vec());
    assert_eq!(parse(&k).unwrap().max_segments(), 11);
    k.insert("feature-max-indirect-segments", b"12".to_vec());
    assert_eq!(parse(&k).unwrap().max_segments(), 12);
    k.insert("feature-max-indirect-segments", b"4096".to_vec());
    assert_eq!(parse(&k).unwrap().max_segments(), MAX_INDIRECT_SEGMENTS);
}

#[test]
fn required_keys() {
    for key in ["sectors", "sector-size", "info"] {
        let mut k = linux_keys();
        k.remove(key);
        assert_eq!(
            parse(&k),
            Err(BlkError::Missing {
                path: format!("{DIR}/{key}")
            })
        );
    }
}

#[test]
fn bad_values_name_key_and_value() {
    let cases: &[(&str, &[&str])] = &[
        (
            "sector-size",
            &[
                "0", "256", "511", "513", "1000", "8192", "0512", "512 ", "-512",
            ],
        ),
        ("sectors", &["0", "", "x", "1\0", "36028797018963968"]),
        ("physical-sector-size", &["256", "3000", "0"]),
        ("info", &["8", "16", "4294967295", "-1", "0x4"]),
        ("feature-flush-cache", &["2", "yes", "", "01", "true"]),
        ("feature-barrier", &["2"]),
        ("feature-discard", &["-1"]),
        ("discard-secure", &["1\n"]),
        ("feature-persistent", &["10"]),
        ("discard-granularity", &["4294967296", "4k"]),
        ("discard-alignment", &["4096", "5000"]),
        ("feature-max-indirect-segments", &["4294967296", "-1"]),
        ("max-ring-page-order", &["21", "99", "4 "]),
        ("multi-queue-max-queues", &["0", "4294967296"]),
    ];
    for (key, values) in cases {
        for v in *values {
            let mut k = linux_keys();
            k.insert(key, v.as_bytes().to_vec());
            match parse(&k) {
                Err(BlkError::BadValue { path, value, .. }) => {
                    assert_eq!(path, format!("{DIR}/{key}"));
                    assert_eq!(value, v.as_bytes());
                }
                other => panic!("{key} = {v:?}: {other:?}"),
            }
        }
    }
    // sectors must cover whole logical sectors.
    let mut k = linux_keys();
    k.insert("sector-size", b"4096".to_vec());
    k.insert("physical-sector-size", b"4096".to_vec());
    k.insert("sectors", b"131071".to_vec());
    assert!(matches!(parse(&k), Err(BlkError::BadValue { .. })));
    // Physical below logical.
    k.insert("sectors", b"131072".to_vec());
    k.insert("physical-sector-size", b"512".to_vec());
    let e = parse(&k).unwrap_err();
    assert_eq!(
        format!("{e}"),
        format!(
            "blkfront: {DIR}/physical-sector-size = \"512\" is not a power of two, \
             at least sector-size"
        )
    );
}

#[test]
fn read_over_the_real_client() {
    use crate::xenbus::fake::{xenstore_with, FakeStore};
    let mut st = FakeStore::default();
    for (k, v) in linux_keys() {
        if k != "discard-secure" {
            st.put(&format!("{DIR}/{k}"), &v);
        }
    }
    xenstore_with(st, 0, |xs| {
        let i = BackendInfo::read(xs, DIR).unwrap();
        assert_eq!(i.sectors, 131072);
        assert_eq!(i.discard.map(|d| d.secure), Some(false));
        assert_eq!(
            BackendInfo::read(xs, "/local/domain/0/backend/vbd/5/1"),
            Err(BlkError::Missing {
                path: "/local/domain/0/backend/vbd/5/1/sector-size".into()
            })
        );
    });
}

// --------------------------------------------------------------- planner

fn limits(sector_size: u32, max_segments: u32, disk_sectors: u64) -> IoLimits {
    IoLimits {
        sector_size,
        disk_sectors,
        max_segments,
        read_only: false,
        flush: true,
        discard: true,
    }
}

/// `(operation, sector, [(gref, first_sect, last_sect)])`.
type Parsed = (u8, u64, Vec<(u32, u8, u8)>);

/// One request as Linux 6.1 blkback sees it after `dispatch_rw_block_io`
/// / `xen_blkbk_parse_indirect`: decoded from the slot bytes (and the
/// indirect pages), every check it makes applied. Returns
/// `(operation, sector, [(gref, first, last)])`.
fn blkback_parse(
    slot: BlkifRequest,
    indirect_pages: &[SharedMem<'_>],
    sector_size: u32,
    disk_sectors: u64,
    max_indirect: usize,
) -> Result<Parsed, &'static str> {
    let mut words = [0u64; SLOT_SIZE / 8];
    let m = SharedMem::from_words(&mut words);
    m.write(0, slot);
    let (op, sector, segs) = if slot.operation == BLKIF_OP_INDIRECT {
        let r: BlkifRequestIndirect = m.read(0);
        let n = usize::from(r.nr_segments);
        if n == 0 || n > max_indirect {
            return Err("bad indirect nseg");
        }
        let pages = crate::xen_abi::blkif::indirect_pages(n);
        if pages != indirect_pages.len() {
            return Err("indirect pages");
        }
        let mut segs = Vec::new();
        for i in 0..n {
            let s: BlkifRequestSegment =
                indirect_pages[i / SEGS_PER_INDIRECT_FRAME].read((i % SEGS_PER_INDIRECT_FRAME) * 8);
            segs.push((s.gref, s.first_sect, s.last_sect));
        }
        assert!(r.indirect_grefs[pages..].iter().all(|&g| g == 0));
        (r.indirect_op, r.sector_number, segs)
    } else {
        let r: BlkifRequest = m.read(0);
        let n = usize::from(r.nr_segments);
        if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err("bad nseg");
        }
        let segs = r.seg[..n]
            .iter()
            .map(|s| (s.gref, s.first_sect, s.last_sect))
            .collect();
        (r.operation, r.sector_number, segs)
    };
    let per = u64::from(sector_size / 512);
    let mut nr_sects = 0u64;
    for &(_, first, last) in &segs {
        if last >= SECTORS_PER_PAGE || last < first {
            return Err("first_sect/last_sect");
        }
        let nsec = u64::from(last - first) + 1;
        if (sector | nsec) & (per - 1) != 0 {
            return Err("Misaligned I/O request");
        }
        nr_sects += nsec;
    }
    if sector + nr_sects > disk_sectors {
        return Err("access beyond end of device");
    }
    Ok((op, sector, segs))
}

/// Checks one plan against the I/O it came from; returns the total
/// segments.
fn check_plan(plan: &[Planned], offset: u64, len: u64, buf_offset: usize, l: &IoLimits) -> usize {
    let per = u64::from(l.sector_size / 512);
    let max = l.max_segments as usize;
    let mut io = 0u64;
    // Absolute buffer byte where the next segment must start.
    let mut at = buf_offset as u64;
    let mut nsegs = 0;
    for (k, r) in plan.iter().enumerate() {
        assert_eq!(r.io_offset, io, "requests are contiguous");
        assert_eq!(r.sector * 512, offset + io);
        assert_eq!(r.sector % per, 0);
        assert!(!r.segments.is_empty() && r.segments.len() <= max);
        if k + 1 < plan.len() {
            assert_eq!(r.segments.len(), max, "requests are as large as allowed");
        }
        assert_eq!(r.is_indirect(), r.segments.len() > 11);
        let mut bytes = 0u64;
        for s in &r.segments {
            assert!(s.first_sect <= s.last_sect && s.last_sect <= 7);
            assert_eq!(u64::from(s.last_sect - s.first_sect + 1) % per, 0);
            // The segments tile the buffer exactly, in order.
            assert_eq!(
                u64::from(s.page) * 4096 + s.page_offset() as u64,
                at,
                "segment starts where the last ended"
            );
            at += s.bytes() as u64;
            bytes += s.bytes() as u64;
        }
        assert_eq!(bytes, r.len);
        io += r.len;
        nsegs += r.segments.len();
    }
    assert_eq!(io, len, "the requests cover the I/O");
    assert_eq!(at, buf_offset as u64 + len);
    // As few segments as page boundaries allow.
    let pages = (buf_offset as u64 + len).div_ceil(4096) - buf_offset as u64 / 4096;
    assert_eq!(nsegs as u64, if len == 0 { 0 } else { pages });
    nsegs
}

/// Encodes a plan's requests the way the guest side will (direct ones
/// into the slot, indirect ones into the slot and indirect pages, page `p`
/// granted as `1000 + p`, indirect page `j` as `9000 + j`) and parses them
/// back as blkback does.
fn encode_and_parse(plan: &[Planned], op: Op, l: &IoLimits) {
    let ind = TestPages::new(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    for (n, r) in plan.iter().enumerate() {
        let id = n as u64 * 3 + 1;
        let gref = |p: u32| 1000 + p;
        let (slot, pages) = if r.is_indirect() {
            assert!(r.direct(op, id, 7, gref).is_none());
            let np = r.indirect_pages();
            let grefs: Vec<u32> = (0..np as u32).map(|j| 9000 + j).collect();
            assert!(r.indirect(op, id, 7, &grefs[1..]).is_none());
            let req = r.indirect(op, id, 7, &grefs).unwrap();
            assert_eq!(
                (req.id, req.handle, req.nr_segments),
                (id, 7, r.segments.len() as u16)
            );
            let views: Vec<SharedMem<'_>> = (0..np)
                .map(|j| ind.mem().sub(j * 4096, 4096).unwrap())
                .collect();
            assert!(!r.write_indirect_segments(&views[1..], gref));
            assert!(r.write_indirect_segments(&views, gref));
            (req.to_slot(), views)
        } else {
            assert!(r.indirect(op, id, 7, &[]).is_none());
            let req = r.direct(op, id, 7, gref).unwrap();
            assert_eq!((req.id, req.handle), (id, 7));
            (req, Vec::new())
        };
        let (got_op, sector, segs) = blkback_parse(
            slot,
            &pages,
            l.sector_size,
            l.disk_sectors,
            MAX_INDIRECT_SEGMENTS as usize,
        )
        .unwrap_or_else(|e| panic!("blkback rejects request {n}: {e}: {r:?}"));
        assert_eq!(got_op, op.blkif());
        assert_eq!(sector, r.sector);
        let want: Vec<(u32, u8, u8)> = r
            .segments
            .iter()
            .map(|s| (1000 + s.page, s.first_sect, s.last_sect))
            .collect();
        assert_eq!(segs, want);
    }
}

#[test]
fn planner_properties() {
    let mut plans = 0;
    let mut indirect = 0;
    for ss in [512u32, 1024, 2048, 4096] {
        let disk = 64 << 11; // 64 MiB in 512-byte sectors
        for max in [11u32, 12, 32, 256] {
            let l = limits(ss, max, disk);
            let ssz = u64::from(ss);
            let buf_offsets: Vec<usize> =
                (0..4096 / ss as usize).map(|i| i * ss as usize).collect();
            let offsets = [0, ssz, 7 * ssz, 4096 * 3, (disk * 512) / 2 + ssz];
            let mut lens: Vec<u64> = (1..=40).map(|i| i * ssz).collect();
            lens.extend([4096 * 11, 4096 * 11 + ssz, 4096 * 256, 4096 * 256 + ssz]);
            lens.extend([1 << 20, (1 << 20) + 4096 * 11, 3 << 20]);
            for &bo in &buf_offsets {
                for &off in &offsets {
                    for &len in &lens {
                        let plan = plan_io(Op::Read, off, len, bo, &l).unwrap();
                        check_plan(&plan, off, len, bo, &l);
                        plans += 1;
                        indirect += plan.iter().filter(|r| r.is_indirect()).count();
                        // Encoding every request of every plan is slow;
                        // a sample of them goes through the blkback model.
                        if plans % 7 == 0 || len >= 1 << 20 {
                            encode_and_parse(&plan, Op::Write, &l);
                        }
                    }
                }
            }
        }
    }
    assert!(
        plans > 5000 && indirect > 1000,
        "{plans} plans, {indirect} indirect"
    );
}

#[test]
fn planner_examples() {
    let l = limits(512, 11, 1 << 20);
    // One sector at 512: one request, one segment, sector 1 of page 0.
    let p = plan_io(Op::Read, 512, 512, 0, &l).unwrap();
    assert_eq!(
        p,
        vec![Planned {
            sector: 1,
            io_offset: 0,
            len: 512,
            segments: vec![Segment {
                page: 0,
                first_sect: 0,
                last_sect: 0
            }],
        }]
    );
    // 8 KiB starting at 3584 in the buffer page: 3 segments.
    let p = plan_io(Op::Read, 0, 8192, 3584, &l).unwrap();
    assert_eq!(
        p[0].segments,
        vec![
            Segment {
                page: 0,
                first_sect: 7,
                last_sect: 7
            },
            Segment {
                page: 1,
                first_sect: 0,
                last_sect: 7
            },
            Segment {
                page: 2,
                first_sect: 0,
                last_sect: 6
            },
        ]
    );
    // 1 MiB page-aligned with 256 indirect segments: one request, one
    // indirect page; with 11: 24 requests (23 × 44 KiB + 12 KiB).
    let p = plan_io(Op::Write, 0, 1 << 20, 0, &limits(512, 256, 1 << 20)).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].indirect_pages(), 1);
    let p = plan_io(Op::Write, 0, 1 << 20, 0, &l).unwrap();
    assert_eq!(p.len(), 24);
    assert_eq!(p[23].len, 12288);
    assert_eq!(p[23].sector, 23 * 88);
    // Nothing to do.
    assert_eq!(plan_io(Op::Read, 0, 0, 0, &l), Ok(vec![]));
}

#[test]
fn bounce_copies() {
    // Every aligned buffer offset and a spread of lengths, 11 and 256
    // segments: the bytes land where the segments say, and come back.
    let pages = TestPages::new(258);
    let page_of = |p: u32| pages.mem().sub(p as usize * 4096, 4096).unwrap();
    for max in [11, 256] {
        let l = limits(512, max, 1 << 22);
        for bo in (0..4096).step_by(512) {
            let mut lens = vec![512u64, 4096, 4608, 45056];
            if bo % 3584 == 0 {
                lens.push(1 << 20);
            }
            for len in lens {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
                // The pages the I/O touches, plus one.
                let span = (bo + len as usize).div_ceil(4096) * 4096 + 4096;
                pages.mem().fill(0, span, 0xee);
                let plan = plan_io(Op::Write, 0, len, bo, &l).unwrap();
                for r in &plan {
                    let part = &data[r.io_offset as usize..(r.io_offset + r.len) as usize];
                    assert!(!r.copy_to_pages(&part[1..], page_of));
                    assert!(r.copy_to_pages(part, page_of));
                }
                // The buffer pages now hold the data at bo.., nothing else.
                let mut all = vec![0u8; span];
                pages.mem().copy_out(0, &mut all);
                assert_eq!(&all[bo..bo + len as usize], &data[..]);
                assert!(all[..bo].iter().all(|&b| b == 0xee));
                assert!(all[bo + len as usize..].iter().all(|&b| b == 0xee));
                for r in &plan {
                    let mut back = vec![0u8; r.len as usize];
                    assert!(r.copy_from_pages(&mut back, page_of));
                    let want = &data[r.io_offset as usize..(r.io_offset + r.len) as usize];
                    assert_eq!(back, want);
                    assert!(!r.copy_from_pages(&mut back[..0], page_of));
                }
            }
        }
    }
    // Short views are refused before anything is copied.
    let r = &plan_io(Op::Write, 0, 4096, 0, &limits(512, 11, 8)).unwrap()[0];
    assert!(!r.copy_to_pages(&[1u8; 4096], |_| pages.mem().sub(0, 2048).unwrap()));
}

#[test]
fn page_pool() {
    let mut pool = PagePool::new(8);
    assert_eq!((pool.capacity(), pool.available()), (8, 8));
    let a = pool.take(3).unwrap();
    let b = pool.take(5).unwrap();
    assert_eq!(pool.take(1), None);
    assert_eq!(pool.available(), 0);
    let all: HashSet<u32> = a.iter().chain(&b).copied().collect();
    assert_eq!(all, (0..8).collect());
    // All or nothing.
    assert!(pool.give_back(&a));
    assert_eq!(pool.take(4), None);
    assert_eq!(pool.available(), 3);
    // The pages just returned come back first.
    let c = pool.take(3).unwrap();
    assert_eq!(
        c.iter().copied().collect::<HashSet<_>>(),
        a.iter().copied().collect()
    );
    // Caller bugs: returned twice, never taken, out of range, repeated.
    assert!(pool.give_back(&c));
    assert!(!pool.give_back(&c[..1]));
    assert!(!pool.give_back(&[8]));
    assert!(!pool.give_back(&[b[0], b[0]]));
    assert_eq!(pool.available(), 3, "a refused return changes nothing");
    assert!(pool.give_back(&b));
    assert_eq!(pool.available(), 8);
    assert_eq!(pool.take(0), Some(vec![]));

    // Bouncing a plan through the pool: request k's page p is pool page
    // q[p - first_page()].
    let l = limits(512, 11, 1 << 20);
    let plan = plan_io(Op::Write, 0, 100 * 4096, 0, &l).unwrap();
    let mut pool = PagePool::new(22);
    let backing = TestPages::new(22);
    let data: Vec<u8> = (0..100 * 4096u32).map(|i| (i / 512) as u8).collect();
    let mut held = Vec::new();
    for r in &plan {
        let q = match pool.take(r.segments.len()) {
            Some(q) => q,
            None => {
                // Full: complete the oldest request first.
                let (old_r, old_q): (&Planned, Vec<u32>) = held.remove(0);
                let mut back = vec![0u8; old_r.len as usize];
                assert!(old_r.copy_from_pages(&mut back, |p| backing
                    .mem()
                    .sub(
                        old_q[(p - old_r.first_page()) as usize] as usize * 4096,
                        4096
                    )
                    .unwrap()));
                let at = old_r.io_offset as usize;
                assert_eq!(back, &data[at..at + back.len()]);
                assert!(pool.give_back(&old_q));
                pool.take(r.segments.len()).unwrap()
            }
        };
        let part = &data[r.io_offset as usize..(r.io_offset + r.len) as usize];
        assert!(r.copy_to_pages(part, |p| backing
            .mem()
            .sub(q[(p - r.first_page()) as usize] as usize * 4096, 4096)
            .unwrap()));
        held.push((r, q));
    }
    assert_eq!(plan.len(), 10);
}

#[test]
fn planner_refusals() {
    let l = limits(4096, 11, 1024); // 512 KiB, 4K sectors
    for (off, len, bo) in [
        (512u64, 4096u64, 0usize),
        (0, 512, 0),
        (0, 4096, 512),
        (0, 4096, 4096),
        (4095, 4096, 0),
    ] {
        assert_eq!(
            plan_io(Op::Read, off, len, bo, &l),
            Err(BlkError::Misaligned {
                offset: off,
                len,
                buf_offset: bo,
                sector_size: 4096
            })
        );
    }
    assert!(plan_io(Op::Read, 512 * 1024 - 4096, 4096, 0, &l).is_ok());
    for (off, len) in [
        (512 * 1024 - 4096, 8192u64),
        (512 * 1024, 4096),
        (u64::MAX - 4095, 8192),
    ] {
        assert_eq!(
            plan_io(Op::Read, off, len, 0, &l),
            Err(BlkError::BeyondEnd {
                offset: off,
                len,
                disk_bytes: 512 * 1024
            })
        );
    }
    let ro = IoLimits {
        read_only: true,
        ..l
    };
    assert_eq!(plan_io(Op::Write, 0, 4096, 0, &ro), Err(BlkError::ReadOnly));
    assert!(plan_io(Op::Read, 0, 4096, 0, &ro).is_ok());
    assert_eq!(
        plan_discard(0, 4096, false, 1, 2, &ro),
        Err(BlkError::ReadOnly)
    );
}

#[test]
fn flush_and_discard() {
    let l = limits(512, 11, 2048);
    let f = flush_request(5, 51712, &l).unwrap();
    assert_eq!(
        (f.operation, f.nr_segments, f.id, f.handle, f.sector_number),
        (BLKIF_OP_FLUSH_DISKCACHE, 0, 5, 51712, 0)
    );
    let d = plan_discard(4096, 8192, true, 6, 51712, &l).unwrap();
    assert_eq!(
        (d.operation, d.flag, d.id, d.sector_number, d.nr_sectors),
        (BLKIF_OP_DISCARD, BLKIF_DISCARD_SECURE, 6, 8, 16)
    );
    assert_eq!(plan_discard(0, 512, false, 1, 1, &l).unwrap().flag, 0);
    assert!(matches!(
        plan_discard(0, 2048 * 512 + 512, false, 1, 1, &l),
        Err(BlkError::BeyondEnd { .. })
    ));
    let none = IoLimits {
        flush: false,
        discard: false,
        ..l
    };
    assert!(matches!(
        flush_request(1, 1, &none),
        Err(BlkError::NotSupported(_))
    ));
    assert!(matches!(
        plan_discard(0, 512, false, 1, 1, &none),
        Err(BlkError::NotSupported(_))
    ));
}

// ---------------------------------------------------------- outstanding

fn rsp(id: u64, operation: u8, status: i16) -> BlkifResponse {
    BlkifResponse {
        id,
        operation,
        status,
        ..Default::default()
    }
}

#[test]
fn outstanding_ids_free_list_and_full() {
    let mut t = Outstanding::new(32);
    let mut ids = HashSet::new();
    for i in 0..32u32 {
        let id = t.insert(BLKIF_OP_READ, false, i).unwrap();
        assert!(ids.insert(id));
    }
    assert!(t.is_full());
    assert_eq!(t.insert(BLKIF_OP_READ, false, 99), None);
    assert_eq!(t.in_flight(), 32);
    // Complete every other one, then reuse: new ids, never seen before.
    let v: Vec<u64> = ids.iter().copied().collect();
    for &id in v.iter().step_by(2) {
        let c = t.complete(rsp(id, BLKIF_OP_READ, BLKIF_RSP_OKAY)).unwrap();
        assert_eq!((c.id, c.status), (id, Status::Okay));
    }
    assert_eq!(t.in_flight(), 16);
    for _ in 0..16 {
        let id = t.insert(BLKIF_OP_WRITE, false, 0).unwrap();
        assert!(ids.insert(id), "id {id:#x} reused");
    }
    assert!(t.is_full());
    let drained = t.drain();
    assert_eq!(drained.len(), 32);
    assert_eq!(t.in_flight(), 0);
    assert!(t.drain().is_empty());
}

#[test]
fn outstanding_rejects_bad_responses() {
    let mut t = Outstanding::new(4);
    let a = t.insert(BLKIF_OP_WRITE, false, "a").unwrap();
    let b = t.insert(BLKIF_OP_READ, true, "b").unwrap();
    let f = t.insert(BLKIF_OP_FLUSH_DISKCACHE, false, "f").unwrap();
    // Ids out of the table, or of a generation never issued.
    for id in [4u64, u64::from(u32::MAX), 1 << 32, a | (5 << 32), u64::MAX] {
        assert_eq!(
            t.complete(rsp(id, BLKIF_OP_WRITE, 0)),
            Err(BlkError::UnknownId(id))
        );
    }
    // A free slot's current generation: never issued either.
    assert_eq!(
        t.complete(rsp(3, BLKIF_OP_READ, 0)),
        Err(BlkError::UnknownId(3))
    );
    // Operation not echoed.
    assert_eq!(
        t.complete(rsp(a, BLKIF_OP_READ, 0)),
        Err(BlkError::WrongOperation {
            id: a,
            got: BLKIF_OP_READ,
            want: BLKIF_OP_WRITE
        })
    );
    assert_eq!(
        t.complete(rsp(a, BLKIF_OP_INDIRECT, 0)),
        Err(BlkError::WrongOperation {
            id: a,
            got: BLKIF_OP_INDIRECT,
            want: BLKIF_OP_WRITE
        }),
        "INDIRECT only for an indirect request"
    );
    assert!(matches!(
        t.complete(rsp(b, BLKIF_OP_WRITE, 0)),
        Err(BlkError::WrongOperation { .. })
    ));
    // Statuses outside blkif.h's three.
    for s in [1i16, -3, i16::MIN, i16::MAX] {
        let e = t.complete(rsp(f, BLKIF_OP_FLUSH_DISKCACHE, s)).unwrap_err();
        assert_eq!(e, BlkError::BadStatus { id: f, status: s });
        assert!(e.disconnects());
    }
    // Nothing was freed by the bad responses.
    assert_eq!(t.in_flight(), 3);
    // The right responses: indirect answered with the inner op (Linux
    // blkback) — and, for another one, with BLKIF_OP_INDIRECT.
    let c = t.complete(rsp(b, BLKIF_OP_READ, BLKIF_RSP_ERROR)).unwrap();
    assert_eq!(
        (c.data, c.status, c.operation),
        ("b", Status::Error, BLKIF_OP_READ)
    );
    let b2 = t.insert(BLKIF_OP_READ, true, "b2").unwrap();
    assert_ne!(b2, b);
    assert_eq!(
        t.complete(rsp(b2, BLKIF_OP_INDIRECT, 0)).unwrap().data,
        "b2"
    );
    let c = t
        .complete(rsp(f, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RSP_EOPNOTSUPP))
        .unwrap();
    assert_eq!(c.status, Status::NotSupported);
    // Answered already: a duplicate, whether or not the slot is reused.
    assert_eq!(
        t.complete(rsp(f, BLKIF_OP_FLUSH_DISKCACHE, 0)),
        Err(BlkError::Duplicate(f))
    );
    assert_eq!(
        t.complete(rsp(b, BLKIF_OP_READ, 0)),
        Err(BlkError::Duplicate(b))
    );
    assert_eq!(t.complete(rsp(a, BLKIF_OP_WRITE, 0)).unwrap().data, "a");
    assert_eq!(t.in_flight(), 0);
    for e in [
        BlkError::UnknownId(1),
        BlkError::Duplicate(1),
        BlkError::Ring(RingError::Full),
    ] {
        assert!(e.disconnects());
    }
    assert!(!BlkError::ReadOnly.disconnects());
    assert_eq!(
        format!("{}", BlkError::UnknownId(0xfffffef4)),
        "blkfront: bad response: unknown id 0xfffffef4"
    );
}

#[test]
fn outstanding_random_order() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut t = Outstanding::new(512);
    let mut live: Vec<(u64, u8, u64)> = Vec::new();
    let mut next = 0u64;
    let mut done = HashSet::new();
    for _ in 0..100_000 {
        if rnd(2) == 0 && !t.is_full() {
            let op = [BLKIF_OP_READ, BLKIF_OP_WRITE][rnd(2) as usize];
            let id = t.insert(op, false, next).unwrap();
            assert!(!live.iter().any(|l| l.0 == id));
            live.push((id, op, next));
            next += 1;
        } else if !live.is_empty() {
            let (id, op, data) = live.swap_remove(rnd(live.len() as u64) as usize);
            assert_eq!(t.complete(rsp(id, op, 0)).unwrap().data, data);
            done.insert(id);
            // A replay of any completed id is refused.
            let old = *done.iter().next().unwrap();
            if !live.iter().any(|l| l.0 == old) {
                assert!(t.complete(rsp(old, op, 0)).is_err());
            }
        }
        assert_eq!(t.in_flight() as usize, live.len());
    }
}

/// A hostile backend writing arbitrary response slots: every response is
/// either exactly right (its request is completed once) or a typed error
/// that leaves the table as it was; nothing panics.
#[test]
fn outstanding_under_random_responses() {
    let mut seed = 0x0bad_cafe_dead_beefu64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let page = TestPages::new(1);
    let mut front = FrontRing::<BlkifRequest, BlkifResponse>::init_shared(page.mem()).unwrap();
    let mut back = BackRing::<BlkifRequest, BlkifResponse>::attach(page.mem()).unwrap();
    let mut t = Outstanding::new(front.nr_ents());
    let mut live: BTreeMap<u64, u8> = BTreeMap::new();
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..50_000 {
        while !t.is_full() {
            let op = [BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE][rnd() as usize % 3];
            let id = t.insert(op, false, ()).unwrap();
            live.insert(id, op);
            front
                .push_request(BlkifRequest {
                    operation: op,
                    id,
                    ..Default::default()
                })
                .unwrap();
        }
        front.push_requests_and_check_notify();
        let req = back.take_request().unwrap().unwrap();
        // Sometimes right, sometimes anything at all.
        let raw = match rnd() % 4 {
            0 => rsp(req.id, req.operation, 0),
            1 => rsp(req.id, rnd() as u8 % 8, (rnd() % 5) as i16 - 2),
            2 => rsp(req.id ^ (1 << (rnd() % 64)), req.operation, 0),
            _ => BlkifResponse {
                id: rnd(),
                operation: rnd() as u8,
                _pad0: rnd() as u8,
                status: rnd() as i16,
                _pad1: rnd() as u32,
            },
        };
        back.push_response(raw).unwrap();
        back.push_responses_and_check_notify();
        let got = front.take_response().unwrap().unwrap();
        assert_eq!(got, raw, "copied out as written");
        let before = t.in_flight();
        match t.complete(got) {
            Ok(c) => {
                assert_eq!(live.remove(&c.id), Some(c.operation));
                assert_eq!(c.operation, got.operation);
                assert!((-2..=0).contains(&got.status));
                assert_eq!(t.in_flight(), before - 1);
                ok += 1;
            }
            Err(e) => {
                assert!(e.disconnects());
                assert_eq!(t.in_flight(), before);
                // The honest answer still completes it afterwards.
                if let Some(&op) = live.get(&req.id) {
                    t.complete(rsp(req.id, op, 0)).unwrap();
                    live.remove(&req.id);
                }
                bad += 1;
            }
        }
        assert_eq!(t.in_flight() as usize, live.len());
    }
    assert!(ok > 10_000 && bad > 10_000, "{ok} ok, {bad} bad");
}

// ------------------------------------------------------ over a real ring

/// A blkback model on a BackRing: parses each request as blkback does,
/// answers OKAY (with the inner op for indirect ones), or a bad id when
/// told to.
fn serve(
    back: &mut BackRing<'_, BlkifRequest, BlkifResponse>,
    ind: &TestPages,
    l: &IoLimits,
    bad_id: bool,
) -> usize {
    let mut n = 0;
    while let Some(req) = back.take_request().unwrap() {
        let indirect = req.operation == BLKIF_OP_INDIRECT;
        let views: Vec<SharedMem<'_>> = if indirect {
            vec![ind.mem().sub(0, 4096).unwrap()]
        } else {
            vec![]
        };
        let (op, _, _) = blkback_parse(req, &views, l.sector_size, l.disk_sectors, 256).unwrap();
        let id = if bad_id { req.id ^ 0xdead } else { req.id };
        back.push_response(rsp(id, op, BLKIF_RSP_OKAY)).unwrap();
        n += 1;
    }
    back.push_responses_and_check_notify();
    n
}

#[test]
fn pieces_together_over_a_ring() {
    let info = parse(&linux_keys()).unwrap();
    let l = info.limits();
    let ring_page = TestPages::new(1);
    let ind = TestPages::new(1);
    let mut front = FrontRing::<BlkifRequest, BlkifResponse>::init_shared(ring_page.mem()).unwrap();
    let mut back = BackRing::<BlkifRequest, BlkifResponse>::attach(ring_page.mem()).unwrap();
    let mut table = Outstanding::new(front.nr_ents());
    assert_eq!(table.capacity(), 32);
    // A 1 MiB write at 4 KiB (one indirect request), then a 20 KiB read
    // at 512 (direct), then a flush.
    let mut sent = Vec::new();
    for (op, off, len) in [(Op::Write, 4096u64, 1u64 << 20), (Op::Read, 512, 20480)] {
        for r in plan_io(op, off, len, 0, &l).unwrap() {
            let id = table.insert(op.blkif(), r.is_indirect(), r.sector).unwrap();
            let slot = if r.is_indirect() {
                assert!(r.write_indirect_segments(&[ind.mem()], |p| p + 100));
                r.indirect(op, id, 51712, &[77]).unwrap().to_slot()
            } else {
                r.direct(op, id, 51712, |p| p + 100).unwrap()
            };
            front.push_request(slot).unwrap();
            sent.push(id);
        }
    }
    let id = table.insert(BLKIF_OP_FLUSH_DISKCACHE, false, 0).unwrap();
    front
        .push_request(flush_request(id, 51712, &l).unwrap())
        .unwrap();
    sent.push(id);
    front.push_requests_and_check_notify();
    // The flush has no segments; the model takes it like a read of none.
    let mut n = 0;
    while let Some(req) = back.take_request().unwrap() {
        if req.operation == BLKIF_OP_FLUSH_DISKCACHE {
            assert_eq!(req.nr_segments, 0);
            back.push_response(rsp(req.id, req.operation, 0)).unwrap();
        } else {
            let indirect = req.operation == BLKIF_OP_INDIRECT;
            let views = if indirect { vec![ind.mem()] } else { vec![] };
            let (op, _, segs) = blkback_parse(req, &views, 512, l.disk_sectors, 256).unwrap();
            assert!(segs.iter().all(|s| s.0 >= 100));
            back.push_response(rsp(req.id, op, 0)).unwrap();
        }
        n += 1;
    }
    back.push_responses_and_check_notify();
    assert_eq!(n, sent.len());
    let mut got = Vec::new();
    while let Some(r) = front.take_response().unwrap() {
        let c = table.complete(r).unwrap();
        assert_eq!(c.status, Status::Okay);
        got.push(c.id);
    }
    assert_eq!(got, sent);
    assert_eq!(table.in_flight(), 0);

    // A backend that answers with an id we never issued: a typed error
    // that disconnects; the request is still in the table to be failed.
    let r = &plan_io(Op::Read, 0, 4096, 0, &l).unwrap()[0];
    let id = table.insert(BLKIF_OP_READ, false, 1).unwrap();
    front
        .push_request(r.direct(Op::Read, id, 1, |p| p).unwrap())
        .unwrap();
    front.push_requests_and_check_notify();
    assert_eq!(serve(&mut back, &ind, &l, true), 1);
    let bad = front.take_response().unwrap().unwrap();
    let e = table.complete(bad).unwrap_err();
    assert_eq!(e, BlkError::UnknownId(id ^ 0xdead));
    assert!(e.disconnects());
    assert_eq!(table.drain(), vec![(id, BLKIF_OP_READ, 1)]);
}

// ------------------------------------------------------------ connection

/// What Linux blkback's `connect_ring` / `read_per_ring_refs` read back
/// from the frontend directory: (order, [(refs, port)], protocol,
/// persistent).
fn blkback_connect_ring(
    get: impl Fn(&str) -> Option<Vec<u8>>,
) -> (u32, Vec<(Vec<u32>, u32)>, String, bool) {
    let num =
        |k: &str| -> Option<u32> { get(k).map(|v| String::from_utf8(v).unwrap().parse().unwrap()) };
    let (pages, multi_ref, order) = match num("ring-page-order") {
        None => (1, false, 0),
        Some(o) => (1 << o, true, o),
    };
    let nq = num("multi-queue-num-queues").unwrap_or(1);
    let mut queues = Vec::new();
    for q in 0..nq {
        let dir = if nq > 1 {
            format!("queue-{q}/")
        } else {
            String::new()
        };
        let port = num(&format!("{dir}event-channel")).unwrap();
        let refs = (0..pages)
            .map(|i| {
                let k = if multi_ref {
                    format!("{dir}ring-ref{i}")
                } else {
                    format!("{dir}ring-ref")
                };
                num(&k).unwrap()
            })
            .collect();
        queues.push((refs, port));
    }
    let proto = String::from_utf8(get("protocol").unwrap()).unwrap();
    (order, queues, proto, num("feature-persistent") == Some(1))
}

#[test]
fn connection_keys() {
    use crate::xenbus::fake::{xenstore_with, FakeStore};
    use crate::xenbus::{write_keys, XenbusState, MAX_TX_ATTEMPTS};
    let info = parse(&linux_keys()).unwrap();
    let refs: Vec<u32> = (100..164).collect();
    let fe = "device/vbd/51712";
    let cases: Vec<(u32, usize)> = vec![(0, 1), (2, 1), (4, 1), (0, 2), (1, 2), (4, 2)];
    // Each case written over the previous one's keys (a reconnect with
    // other parameters): stale keys must not mislead the backend.
    let mut st = FakeStore::default();
    st.put(&format!("{fe}/ring-page-order"), b"3");
    st.put(&format!("{fe}/multi-queue-num-queues"), b"4");
    let mut store = Some(st);
    for (order, nq) in cases {
        let pages = 1usize << order;
        let queues: Vec<QueueRing<'_>> = (0..nq)
            .map(|q| QueueRing {
                ring_refs: &refs[q * pages..(q + 1) * pages],
                event_channel: 7 + q as u32,
            })
            .collect();
        let keys = connect_keys(
            &info.ring_features(),
            order,
            &queues,
            true,
            XenbusState::Initialised,
        )
        .unwrap();
        assert_eq!(keys.writes().last(), Some(("state", &b"3"[..])));
        xenstore_with(store.take().unwrap(), 1, |xs| {
            assert_eq!(write_keys(xs, fe, &keys, MAX_TX_ATTEMPTS), Ok(2));
            let st = &xs.transport().store;
            let (o, qs, proto, persistent) =
                blkback_connect_ring(|k| st.get(&format!("{fe}/{k}")).map(|v| v.to_vec()));
            assert_eq!((o, proto.as_str(), persistent), (order, "x86_64-abi", true));
            let want: Vec<(Vec<u32>, u32)> = queues
                .iter()
                .map(|q| (q.ring_refs.to_vec(), q.event_channel))
                .collect();
            assert_eq!(qs, want, "order {order}, {nq} queues");
            let mut keep = FakeStore::default();
            keep.tree = st.tree.clone();
            store = Some(keep);
        });
    }
    // Order 0, one queue: exactly the single-page key set.
    let k = connect_keys(
        &info.ring_features(),
        0,
        &[QueueRing {
            ring_refs: &[8],
            event_channel: 9,
        }],
        false,
        XenbusState::Initialised,
    )
    .unwrap();
    assert_eq!(
        k.writes().collect::<Vec<_>>(),
        vec![
            ("ring-ref", &b"8"[..]),
            ("event-channel", b"9"),
            ("protocol", b"x86_64-abi"),
            ("feature-persistent", b"0"),
            ("state", b"3"),
        ]
    );
    assert_eq!(
        k.removes().collect::<Vec<_>>(),
        vec!["ring-page-order", "multi-queue-num-queues"]
    );
}

#[test]
fn connection_refusals() {
    let big = parse(&linux_keys()).unwrap().ring_features();
    let small = RingFeatures {
        max_ring_page_order: 0,
        max_queues: 1,
        ..big
    };
    let r = [1u32; 32];
    let q = |n: usize| QueueRing {
        ring_refs: &r[..n],
        event_channel: 1,
    };
    let st = XenbusState::Initialised;
    let err = |info: &RingFeatures, order: u32, qs: &[QueueRing<'_>]| match connect_keys(
        info, order, qs, false, st,
    ) {
        Err(BlkError::Config(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(err(&small, 1, &[q(2)]).contains("max-ring-page-order"));
    assert!(err(&big, 5, &[q(32)]).contains("max-ring-page-order"));
    assert!(err(&small, 0, &[q(1), q(1)]).contains("multi-queue-max-queues"));
    assert!(err(&big, 0, &[q(1), q(1), q(1)]).contains("multi-queue-max-queues"));
    assert_eq!(err(&big, 0, &[]), "no queue");
    assert!(err(&big, 2, &[q(4), q(3)]).contains("1 << order"));
    assert!(err(&big, 0, &[q(2)]).contains("1 << order"));
    assert!(connect_keys(&small, 0, &[q(1)], true, st).is_ok());
    assert!(connect_keys(&big, 4, &[q(16), q(16)], true, st).is_ok());
}

#[test]
fn ring_features_at_probe() {
    // Before InitWait, blkback has written only these (no sectors yet).
    let keys: BTreeMap<&str, &[u8]> = [
        ("feature-max-indirect-segments", &b"256"[..]),
        ("max-ring-page-order", b"4"),
        ("multi-queue-max-queues", b"2"),
    ]
    .into_iter()
    .collect();
    let f = RingFeatures::parse(DIR, |k| keys.get(k).copied()).unwrap();
    assert_eq!(
        f,
        RingFeatures {
            max_indirect_segments: 256,
            max_ring_page_order: 4,
            max_queues: 2
        }
    );
    assert_eq!(f, parse(&linux_keys()).unwrap().ring_features());
    assert_eq!((f.max_segments(), f.ring_page_order(9)), (256, 4));
    let none = RingFeatures::parse(DIR, |_| None).unwrap();
    assert_eq!(
        (
            none.max_segments(),
            none.ring_page_order(4),
            none.max_queues
        ),
        (11, 0, 1)
    );
    assert_eq!(
        RingFeatures::parse(DIR, |k| (k == "multi-queue-max-queues")
            .then_some(&b"0"[..])),
        Err(BlkError::BadValue {
            path: format!("{DIR}/multi-queue-max-queues"),
            value: b"0".to_vec(),
            expected: "a nonzero u32"
        })
    );
}

// ------------------------------------- the handshake against a blkback model

mod handshake {
    use super::*;
    use crate::xenbus::fake::{xenstore_with, FakeStore, FakeTransport};
    use crate::xenbus::{
        write_keys, Action, ConnectState, Frontend, Phase, Timeouts, XenbusError, XenbusState,
        MAX_TX_ATTEMPTS,
    };
    use crate::xenstore::XenStore;
    use XenbusState as S;

    const FE: &str = "device/vbd/51712";
    const MS: u64 = 1_000_000;
    type Xs<'a> = XenStore<'a, FakeTransport<'a>>;

    /// Linux 6.1 blkback's side (xenbus.c `xen_blkbk_probe`,
    /// `frontend_changed`, `connect`), acting on the store between the
    /// frontend's steps; the hotplug script "finishes" after
    /// `hotplug_steps` of them.
    struct Blkback {
        hotplug_steps: Option<u32>,
        online: bool,
        refuse_keys: bool,
        connects: u32,
    }

    fn state_of(st: &FakeStore, path: &str) -> Option<XenbusState> {
        st.get(path)
            .map(|v| XenbusState::parse(path, v).expect("valid state"))
    }

    impl Blkback {
        fn new(hotplug_steps: Option<u32>) -> Blkback {
            Blkback {
                hotplug_steps,
                online: true,
                refuse_keys: false,
                connects: 0,
            }
        }

        fn probe(st: &mut FakeStore) {
            st.put(&format!("{DIR}/feature-max-indirect-segments"), b"256");
            st.put(&format!("{DIR}/max-ring-page-order"), b"4");
            st.put(&format!("{DIR}/multi-queue-max-queues"), b"2");
            st.put(&format!("{DIR}/state"), b"2");
        }

        fn set(st: &mut FakeStore, s: XenbusState) {
            st.put(&format!("{DIR}/state"), &s.value());
        }

        fn step(&mut self, st: &mut FakeStore) {
            if let Some(n) = self.hotplug_steps.as_mut() {
                *n = n.saturating_sub(1);
            }
            let Some(be) = state_of(st, &format!("{DIR}/state")) else {
                return; // removed
            };
            let fe = state_of(st, &format!("{FE}/state"));
            match fe {
                Some(S::Initialising) if be == S::Closed => Self::set(st, S::InitWait),
                Some(S::Initialised | S::Connected)
                    if be == S::InitWait && self.hotplug_steps == Some(0) =>
                {
                    if self.refuse_keys {
                        return Self::set(st, S::Closing);
                    }
                    let (order, queues, proto, _) =
                        blkback_connect_ring(|k| st.get(&format!("{FE}/{k}")).map(|v| v.to_vec()));
                    assert_eq!(proto, "x86_64-abi");
                    assert_eq!(queues.len(), 1);
                    assert_eq!(queues[0].0.len(), 1 << order);
                    for (k, v) in linux_keys() {
                        st.put(&format!("{DIR}/{k}"), &v);
                    }
                    self.connects += 1;
                    Self::set(st, S::Connected);
                }
                Some(S::Closing) if be != S::Closed => Self::set(st, S::Closing),
                Some(S::Closed) => {
                    Self::set(st, S::Closed);
                    if !self.online {
                        st.tree.retain(|k, _| !k.starts_with(DIR));
                    }
                }
                _ => {}
            }
        }
    }

    /// The guest driver's loop: carries out each action, feeds the
    /// backend's state back, lets the backend model act while "asleep"
    /// (100 ms a round). Returns the `Closed` action's error, or `None`
    /// when `until` holds first.
    fn run(
        xs: &mut Xs<'_>,
        fe: &mut Frontend,
        bb: &mut Blkback,
        now: &mut u64,
        mut a: Action,
        until: impl Fn(&Frontend) -> bool,
    ) -> Option<Option<XenbusError>> {
        let be_state = format!("{DIR}/state");
        let feed = |xs: &mut Xs<'_>, fe: &mut Frontend, now: u64| {
            let v = xs.transport().store.get(&be_state).map(|v| v.to_vec());
            fe.on_backend_value(&be_state, v.as_deref(), now)
        };
        for _ in 0..10_000 {
            // Stop only once the last action is carried out.
            if until(fe) && matches!(a, Action::Wait { .. }) {
                return None;
            }
            a = match a {
                Action::Wait { .. } => {
                    bb.step(&mut xs.transport_mut().store);
                    *now += 100 * MS;
                    match fe.on_deadline(*now) {
                        Action::Wait { .. } => feed(xs, fe, *now),
                        other => other,
                    }
                }
                Action::SetState(s) => {
                    xs.write(TxId::NONE, &format!("{FE}/state"), &s.value())
                        .unwrap();
                    feed(xs, fe, *now)
                }
                Action::WriteKeys { state } => {
                    let feats = RingFeatures::read(xs, DIR).unwrap();
                    let order = feats.ring_page_order(4);
                    let refs: Vec<u32> = (0..1u32 << order).map(|i| 100 + i).collect();
                    let q = [QueueRing {
                        ring_refs: &refs,
                        event_channel: 9,
                    }];
                    let keys = connect_keys(&feats, order, &q, true, state).unwrap();
                    match write_keys(xs, FE, &keys, MAX_TX_ATTEMPTS) {
                        Ok(_) => feed(xs, fe, *now),
                        Err(e) => fe.fail(e, *now),
                    }
                }
                Action::Connect { write_connected } => {
                    let info = BackendInfo::read(xs, DIR).unwrap();
                    assert_eq!(info.sectors, 131072);
                    if write_connected {
                        xs.write(TxId::NONE, &format!("{FE}/state"), b"4").unwrap();
                    }
                    feed(xs, fe, *now)
                }
                Action::Closing => {
                    xs.write(TxId::NONE, &format!("{FE}/state"), b"5").unwrap();
                    feed(xs, fe, *now)
                }
                Action::Closed { error } => {
                    xs.write(TxId::NONE, &format!("{FE}/state"), b"6").unwrap();
                    // Let the backend see our Closed.
                    bb.step(&mut xs.transport_mut().store);
                    return Some(error);
                }
            };
        }
        panic!("no end: {:?}", fe.phase());
    }

    fn with_disk(f: impl FnOnce(&mut Xs<'_>)) {
        let mut st = FakeStore::default();
        st.put(&format!("{FE}/state"), b"1");
        Blkback::probe(&mut st);
        xenstore_with(st, 1, f);
    }

    fn connected(fe: &Frontend) -> bool {
        fe.phase() == Phase::Connected
    }

    #[test]
    fn connect_close_reconnect() {
        with_disk(|xs| {
            let (mut now, mut bb) = (0, Blkback::new(Some(5)));
            let mut fe = Frontend::new(ConnectState::Initialised, Timeouts::default());
            let a = fe.start(now);
            assert_eq!(run(xs, &mut fe, &mut bb, &mut now, a, connected), None);
            assert_eq!(bb.connects, 1);
            let st = &xs.transport().store;
            assert_eq!(st.get(&format!("{FE}/ring-page-order")), Some(&b"4"[..]));
            assert_eq!(st.get(&format!("{FE}/ring-ref15")), Some(&b"115"[..]));
            assert_eq!(st.get(&format!("{FE}/state")), Some(&b"4"[..]));
            // Our close: Closing, the backend follows, Closed.
            let a = fe.close(now);
            assert_eq!(
                run(xs, &mut fe, &mut bb, &mut now, a, |_| false),
                Some(None)
            );
            assert_eq!(
                state_of(&xs.transport().store, &format!("{DIR}/state")),
                Some(S::Closed)
            );
            // Reconnect. The frontend last saw the backend Closing, so it
            // re-asserts Closed and waits for the backend's Closed first
            // (blkback returns to InitWait only from Closed)...
            let a = fe.start(now);
            assert_eq!(a, Action::SetState(S::Closed));
            assert_eq!(fe.phase(), Phase::Resetting);
            assert_eq!(run(xs, &mut fe, &mut bb, &mut now, a, connected), None);
            assert_eq!((bb.connects, fe.connections()), (2, 2));
            // ... and once it has seen Closed, straight to Initialising.
            let a = fe.close(now);
            assert_eq!(
                run(xs, &mut fe, &mut bb, &mut now, a, |_| false),
                Some(None)
            );
            let v = xs
                .transport()
                .store
                .get(&format!("{DIR}/state"))
                .map(|v| v.to_vec());
            fe.on_backend_value("state", v.as_deref(), now);
            let a = fe.start(now);
            assert_eq!(a, Action::SetState(S::Initialising));
            assert_eq!(run(xs, &mut fe, &mut bb, &mut now, a, connected), None);
            assert_eq!((bb.connects, fe.connections()), (3, 3));
        });
    }

    #[test]
    fn block_detach_then_gone() {
        with_disk(|xs| {
            let (mut now, mut bb) = (0, Blkback::new(Some(0)));
            let mut fe = Frontend::new(ConnectState::Initialised, Timeouts::default());
            let a = fe.start(now);
            run(xs, &mut fe, &mut bb, &mut now, a, connected);
            // `xl block-detach`: online = 0, the backend closes first.
            bb.online = false;
            Blkback::set(&mut xs.transport_mut().store, S::Closing);
            let a = Action::Wait { deadline_ns: None };
            assert_eq!(
                run(xs, &mut fe, &mut bb, &mut now, a, |_| false),
                Some(Some(XenbusError::BackendClosing { state: S::Closing }))
            );
            // Our Closed made it remove its directory.
            assert_eq!(xs.transport().store.get(&format!("{DIR}/state")), None);
            let a = fe.start(now);
            assert_eq!(
                run(xs, &mut fe, &mut bb, &mut now, a, |_| false),
                Some(Some(XenbusError::BackendGone))
            );
        });
    }

    #[test]
    fn hotplug_never_finishes() {
        with_disk(|xs| {
            let (mut now, mut bb) = (0, Blkback::new(None));
            let mut fe = Frontend::new(ConnectState::Initialised, Timeouts::default());
            let a = fe.start(now);
            match run(xs, &mut fe, &mut bb, &mut now, a, |_| false) {
                Some(Some(XenbusError::BackendNeverReached {
                    state: S::Connected,
                    seen: Some(S::InitWait),
                    waited_ms,
                })) => assert!((30_000..30_200).contains(&waited_ms), "{waited_ms}"),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn backend_refuses_the_keys() {
        with_disk(|xs| {
            let (mut now, mut bb) = (0, Blkback::new(Some(1)));
            bb.refuse_keys = true;
            let mut fe = Frontend::new(ConnectState::Initialised, Timeouts::default());
            let a = fe.start(now);
            assert_eq!(
                run(xs, &mut fe, &mut bb, &mut now, a, |_| false),
                Some(Some(XenbusError::BackendClosing { state: S::Closing }))
            );
        });
    }
}

// ------------------------------------------------------------------ spans

/// Every cut covers exactly `[offset, offset + len)` in order: a head
/// inside one sector that starts unaligned, whole sectors, a tail that
/// starts on a sector and ends inside it.
#[test]
fn span_cuts_cover_the_range() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for ss in [512u32, 1024, 2048, 4096] {
        let s = u64::from(ss);
        for i in 0..20_000u64 {
            let offset = if i % 4 == 0 {
                next() % 8 * s
            } else {
                next() % (1 << 20)
            };
            let len = match i % 5 {
                0 => 0,
                1 => next() % 8,
                2 => next() % s * 3,
                _ => next() % (1 << 18),
            };
            let c = Span::cut(offset, len, ss);
            let mut pos = offset;
            if let Some((start, off, n)) = c.head {
                assert_ne!(offset % s, 0, "head only for an unaligned start");
                assert_eq!(start % s, 0);
                assert_eq!(start + off as u64, pos);
                assert!(n > 0 && off + n <= ss as usize);
                pos += n as u64;
            }
            if let Some((at, n)) = c.middle {
                assert_eq!((at, at % s, n % s), (pos, 0, 0));
                assert!(n > 0);
                pos += n;
            }
            if let Some((start, n)) = c.tail {
                assert_eq!((start, start % s), (pos, 0));
                assert!(n > 0 && (n as u64) < s);
                pos += n as u64;
            }
            assert_eq!(
                pos,
                offset + len,
                "cut of {len} at {offset}, sector {ss}: {c:?}"
            );
            if offset % s == 0 && len % s == 0 {
                assert_eq!((c.head, c.tail), (None, None), "aligned I/O goes as it is");
            }
        }
    }
}

#[test]
fn span_examples() {
    assert_eq!(Span::cut(0, 0, 512), Span::default());
    // Inside one sector: a head alone.
    assert_eq!(
        Span::cut(100, 10, 512),
        Span {
            head: Some((0, 100, 10)),
            middle: None,
            tail: None
        }
    );
    // 4096-byte sectors: one byte at 511 is a read-modify-write of sector 0.
    assert_eq!(Span::cut(511, 1, 4096).head, Some((0, 511, 1)));
    // Ends exactly on a sector: no tail.
    assert_eq!(
        Span::cut(511, 513, 512),
        Span {
            head: Some((0, 511, 1)),
            middle: Some((512, 512)),
            tail: None
        }
    );
}

#[test]
fn in_flight_data_lists_what_is_outstanding() {
    let mut t: Outstanding<u32> = Outstanding::new(4);
    let a = t.insert(BLKIF_OP_READ, false, 10).unwrap();
    let _b = t.insert(BLKIF_OP_READ, false, 20).unwrap();
    let mut v: Vec<u32> = t.in_flight_data().copied().collect();
    v.sort();
    assert_eq!(v, [10, 20]);
    t.complete(rsp(a, BLKIF_OP_READ, BLKIF_RSP_OKAY)).unwrap();
    assert_eq!(t.in_flight_data().copied().collect::<Vec<_>>(), [20]);
}

/// Hand-made limits with a sector size the protocol cannot have are
/// refused, not planned into a short or wrapped request.
#[test]
fn planner_refuses_impossible_sector_sizes() {
    for ss in [0u32, 1, 256, 768, 1000, 8192] {
        let l = limits(ss, 11, 1 << 20);
        for op in [Op::Read, Op::Write] {
            assert_eq!(
                plan_io(op, 0, u64::from(ss.max(512)), 0, &l),
                Err(BlkError::Config(
                    "sector size is not a power of two from 512 to 4096"
                )),
                "sector size {ss}"
            );
        }
    }
}
