//! Host tests of netfront's pure parts: backend keys, the MAC, the
//! connection keys, the tx slot builder (against a model of Linux 6.1
//! netback's request checks, over every packet size) and the tx/rx
//! response checks under a hostile backend.

use super::*;
use std::collections::BTreeMap;

const DIR: &str = "/local/domain/0/backend/vif/5/0";

/// What Linux 6.1 netback writes at probe (devices.md §2).
fn linux_keys() -> BTreeMap<&'static str, &'static [u8]> {
    [
        ("feature-rx-copy", &b"1"[..]),
        ("feature-sg", b"1"),
        ("feature-gso-tcpv4", b"1"),
        ("feature-gso-tcpv6", b"1"),
        ("feature-ipv6-csum-offload", b"1"),
        ("feature-split-event-channels", b"1"),
        ("feature-ctrl-ring", b"1"),
        ("multi-queue-max-queues", b"2"),
    ]
    .into_iter()
    .collect()
}

fn parse(keys: &BTreeMap<&'static str, &'static [u8]>) -> Result<BackendFeatures, NetError> {
    BackendFeatures::parse(DIR, |k| keys.get(k).copied())
}

#[test]
fn linux_netback_features() {
    let f = parse(&linux_keys()).unwrap();
    assert_eq!(
        f,
        BackendFeatures {
            sg: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            ipv6_csum: true,
            split_event_channels: true,
            ctrl_ring: true,
            max_queues: 2,
        }
    );
    assert_eq!(FEATURE_KEYS.len(), linux_keys().len());
}

#[test]
fn backend_keys_refused() {
    let mut k = linux_keys();
    k.remove("feature-rx-copy");
    assert!(matches!(parse(&k), Err(NetError::Unsupported(_))));
    let mut k = linux_keys();
    k.insert("feature-rx-copy", b"0");
    assert!(matches!(parse(&k), Err(NetError::Unsupported(_))));
    for (key, bad) in [
        ("feature-sg", &b"2"[..]),
        ("feature-sg", b"yes"),
        ("feature-gso-tcpv4", b""),
        ("multi-queue-max-queues", b"0"),
        ("multi-queue-max-queues", b"01"),
        ("multi-queue-max-queues", b"4294967296"),
    ] {
        let mut k = linux_keys();
        k.insert(key, bad);
        match parse(&k) {
            Err(NetError::BadValue { path, value, .. }) => {
                assert_eq!(path, format!("{DIR}/{key}"));
                assert_eq!(value, bad);
            }
            other => panic!("{key}={bad:?}: {other:?}"),
        }
    }
    // Only rx-copy is required.
    let k: BTreeMap<_, _> = [("feature-rx-copy", &b"1"[..])].into_iter().collect();
    assert_eq!(
        parse(&k).unwrap(),
        BackendFeatures {
            max_queues: 1,
            ..Default::default()
        }
    );
}

#[test]
fn mac_addresses() {
    assert_eq!(
        parse_mac("mac", b"00:16:3e:0a:Bc:ff"),
        Ok([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff])
    );
    for bad in [
        &b""[..],
        b"00:16:3e:0a:bc",
        b"00:16:3e:0a:bc:ff:00",
        b"00:16:3e:0a:bc:f",
        b"00:16:3e:0a:bc:fff",
        b"0016:3e:0a:bc:ff:",
        b"00-16-3e-0a-bc-ff",
        b"01:16:3e:0a:bc:ff", // multicast
        b"ff:ff:ff:ff:ff:ff", // broadcast
        b"00:16:3e:0a:bc:+f",
        b"00:16:3e:0a:bc:ff\0",
    ] {
        assert!(
            matches!(parse_mac("mac", bad), Err(NetError::BadValue { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn connection_keys() {
    let k = connect_keys(
        8,
        9,
        Ports::Split { tx: 5, rx: 6 },
        &Offloads {
            sg: true,
            gso_tcpv4: true,
            no_csum_offload: false,
        },
    );
    let w: BTreeMap<&str, &[u8]> = k.writes().collect();
    assert_eq!(w["tx-ring-ref"], b"8");
    assert_eq!(w["rx-ring-ref"], b"9");
    assert_eq!(w["event-channel-tx"], b"5");
    assert_eq!(w["event-channel-rx"], b"6");
    assert_eq!(w["request-rx-copy"], b"1");
    assert_eq!(w["feature-rx-notify"], b"1");
    assert_eq!(w["feature-sg"], b"1");
    assert_eq!(w["feature-gso-tcpv4"], b"1");
    assert_eq!(w["state"], b"4");
    assert!(k.removes().any(|r| r == "event-channel"));
    // One port; GSO is never offered without sg.
    let k = connect_keys(
        8,
        9,
        Ports::One(5),
        &Offloads {
            sg: false,
            gso_tcpv4: true,
            no_csum_offload: true,
        },
    );
    let w: BTreeMap<&str, &[u8]> = k.writes().collect();
    assert_eq!(w["event-channel"], b"5");
    assert_eq!(w["feature-gso-tcpv4"], b"0");
    assert_eq!(w["feature-no-csum-offload"], b"1");
    assert!(k.removes().any(|r| r == "event-channel-tx"));
}

// --------------------------------------------------------------- transmit

/// What Linux 6.1 netback does with one packet's requests
/// (`xenvif_tx_build_gops` / `xenvif_count_requests` /
/// `xenvif_get_extras`): `Err(true)` disables the vif, `Err(false)` drops
/// the packet, `Ok(bytes)` accepts it. Requests are read as the ring
/// holds them (extra slots as their 8-byte image).
fn netback(reqs: &[NetifTxRequest], sg: bool) -> Result<usize, bool> {
    let first = reqs.first().ok_or(true)?;
    let mut i = 1;
    if first.flags & NETTXF_EXTRA_INFO != 0 {
        // xenvif_get_extras: type in 1..MAX, no MORE unless another follows.
        let e = reqs.get(i).ok_or(true)?;
        let kind = (e.gref & 0xff) as u8;
        let flags = ((e.gref >> 8) & 0xff) as u8;
        if kind == 0 || kind >= crate::xen_abi::netif::XEN_NETIF_EXTRA_TYPE_MAX {
            return Err(true);
        }
        if flags & XEN_NETIF_EXTRA_FLAG_MORE != 0 {
            return Err(true); // we never chain extras; treat as broken
        }
        i += 1;
    }
    // xenvif_count_requests.
    let mut more = first.flags & NETTXF_MORE_DATA != 0;
    let mut rest = Vec::new();
    while more {
        let r = reqs.get(i).ok_or(true)?;
        if rest.len() + 1 >= 20 {
            return Err(true); // "Malicious frontend"
        }
        rest.push(*r);
        more = r.flags & NETTXF_MORE_DATA != 0;
        i += 1;
    }
    if i != reqs.len() {
        return Err(true); // slots that belong to no packet
    }
    if rest.len() + 1 > 18 {
        return Err(false);
    }
    if !sg && !rest.is_empty() {
        return Err(false);
    }
    let mut first_len = usize::from(first.size);
    for r in &rest {
        if usize::from(r.size) > first_len {
            return Err(false); // "Invalid tx request"
        }
        first_len -= usize::from(r.size);
        if usize::from(r.offset) + usize::from(r.size) > PAGE_SIZE {
            return Err(true); // "Cross page boundary"
        }
    }
    if usize::from(first.offset) + first_len > PAGE_SIZE {
        return Err(true);
    }
    if usize::from(first.size) < MIN_PACKET {
        return Err(false);
    }
    Ok(usize::from(first.size))
}

fn requests(p: &TxPlan) -> Vec<NetifTxRequest> {
    (0..p.ring_slots())
        .map(|i| p.request(i, i as u16, |pg| 1000 + pg))
        .collect()
}

#[test]
fn tx_plans_always_pass_netback() {
    for sg in [false, true] {
        for len in 0..=XEN_NETIF_MAX_TX_SIZE + 2 {
            for (csum, gso) in [
                (false, None),
                (true, None),
                (
                    true,
                    Some(Gso {
                        mss: 1448,
                        ipv6: false,
                    }),
                ),
            ] {
                let Ok(p) = plan_tx(len, csum, sg, gso) else {
                    // Refused only for a reason.
                    assert!(
                        !(MIN_PACKET..=XEN_NETIF_MAX_TX_SIZE).contains(&len)
                            || (!sg && (len > PAGE_SIZE || gso.is_some())),
                        "len {len} sg {sg} gso {gso:?} refused"
                    );
                    continue;
                };
                let reqs = requests(&p);
                assert_eq!(netback(&reqs, sg), Ok(len), "len {len} sg {sg} gso {gso:?}");
                // Bytes laid out page after page from offset 0.
                let bytes: usize = p
                    .slots
                    .iter()
                    .map(|s| match s {
                        TxSlot::Data { len, .. } => usize::from(*len),
                        TxSlot::Extra(_) => 0,
                    })
                    .sum();
                assert_eq!(bytes, len);
                assert_eq!(p.pages as usize, len.div_ceil(PAGE_SIZE));
                if csum {
                    assert_ne!(reqs[0].flags & NETTXF_CSUM_BLANK, 0);
                }
            }
        }
    }
}

#[test]
fn tx_model_catches_broken_slots() {
    // The model is not vacuous: the breakages netback punishes.
    let p = plan_tx(9000, false, true, None).unwrap();
    let mut r = requests(&p);
    r[1].offset = 100; // 4096 bytes from 100: crosses the page
    assert_eq!(netback(&r, true), Err(true));
    let mut r = requests(&p);
    r[0].size = 100; // first size below the rest
    assert_eq!(netback(&r, true), Err(false));
    let mut r = requests(&p);
    r[2].flags |= NETTXF_MORE_DATA; // runs past the packet
    assert_eq!(netback(&r, true), Err(true));
    let one = plan_tx(13, false, true, None);
    assert_eq!(
        one,
        Err(NetError::Packet(
            "shorter than an Ethernet header (14 bytes)"
        ))
    );
    let mut r = requests(&plan_tx(14, false, true, None).unwrap());
    r[0].size = 13;
    assert_eq!(netback(&r, true), Err(false));
}

#[test]
fn tx_extra_slot_image() {
    let p = plan_tx(
        60000,
        true,
        true,
        Some(Gso {
            mss: 1448,
            ipv6: false,
        }),
    )
    .unwrap();
    assert!(matches!(p.slots[1], TxSlot::Extra(_)));
    let r = p.request(1, 7, |_| 0);
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&r.gref.to_le_bytes());
    b[4..6].copy_from_slice(&r.offset.to_le_bytes());
    b[6..8].copy_from_slice(&r.flags.to_le_bytes());
    // type GSO, flags 0, size 1448, gso type TCPv4, pad, features 0.
    assert_eq!(&b[..8], &[1, 0, 0xa8, 0x05, 1, 0, 0, 0]);
    assert_eq!(p.slots.len(), 15 + 1);
}

#[test]
fn tx_table_under_a_hostile_backend() {
    let mut t: TxTable<u32> = TxTable::new(4);
    let a = t.insert(10).unwrap();
    let b = t.insert(20).unwrap();
    t.sent_extra();
    assert_eq!(t.in_flight(), 2);
    let ok = |id, status| NetifTxResponse { id, status };
    assert_eq!(
        t.complete(ok(b, XEN_NETIF_RSP_OKAY)),
        Ok(TxDone::Slot { data: 20, ok: true })
    );
    // A duplicate, an id never issued, one out of range.
    assert_eq!(t.complete(ok(b, 0)), Err(NetError::TxUnknownId(b)));
    assert_eq!(t.complete(ok(3, 0)), Err(NetError::TxUnknownId(3)));
    assert_eq!(t.complete(ok(999, 0)), Err(NetError::TxUnknownId(999)));
    // One RSP_NULL for the one extra slot, no more.
    assert_eq!(
        t.complete(ok(0xdead, XEN_NETIF_RSP_NULL)),
        Ok(TxDone::Extra)
    );
    assert!(matches!(
        t.complete(ok(0xdead, XEN_NETIF_RSP_NULL)),
        Err(NetError::TxBadStatus { .. })
    ));
    assert!(matches!(
        t.complete(ok(a, 5)),
        Err(NetError::TxBadStatus { status: 5, .. })
    ));
    assert_eq!(
        t.complete(ok(a, XEN_NETIF_RSP_DROPPED)),
        Ok(TxDone::Slot {
            data: 10,
            ok: false
        })
    );
    assert_eq!(t.in_flight(), 0);
    for _ in 0..4 {
        assert!(t.insert(1).is_some());
    }
    assert_eq!(t.insert(1), None);
}

#[test]
fn tx_table_random_responses_never_panic() {
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t: TxTable<u64> = TxTable::new(256);
    let mut live = std::collections::HashSet::new();
    for _ in 0..200_000 {
        if next() % 2 == 0 {
            if let Some(id) = t.insert(next()) {
                assert!(live.insert(id));
            }
        } else {
            let rsp = NetifTxResponse {
                id: next() as u16 % 300,
                status: (next() % 5) as i16 - 2,
            };
            match t.complete(rsp) {
                Ok(TxDone::Slot { .. }) => assert!(live.remove(&rsp.id)),
                Ok(TxDone::Extra) => unreachable!("no extra was sent"),
                Err(_) => {}
            }
        }
        assert_eq!(t.in_flight(), live.len());
    }
}

// ----------------------------------------------------------------- receive

fn rsp(id: u16, offset: u16, flags: u16, status: i16) -> NetifRxResponse {
    NetifRxResponse {
        id,
        offset,
        flags,
        status,
    }
}

#[test]
fn rx_packets_in_request_order() {
    let mut r = RxRing::new(256);
    // One-slot packet at index 300 (slot 44), checksum validated.
    let p = r
        .take(300, rsp(44, 0, NETRXF_DATA_VALIDATED, 1514))
        .unwrap()
        .unwrap();
    assert_eq!(p.len, 1514);
    assert!(p.csum_ok && !p.error);
    assert_eq!(
        p.pieces,
        [RxPiece {
            slot: 44,
            offset: 0,
            len: 1514
        }]
    );
    // Three pieces, then an extra slot ends the packet.
    assert_eq!(r.take(301, rsp(45, 0, NETRXF_MORE_DATA, 4096)), Ok(None));
    assert_eq!(r.take(302, rsp(46, 0, NETRXF_MORE_DATA, 4096)), Ok(None));
    assert_eq!(r.take(303, rsp(47, 0, NETRXF_EXTRA_INFO, 100)), Ok(None));
    let p = r.take(304, rsp(0x0001, 0, 0, 0)).unwrap().unwrap();
    assert_eq!(p.len, 8292);
    assert_eq!(p.slots, [45, 46, 47, 48]);
    assert!(!p.csum_ok);
    // An error status drops the packet but its slot is given back.
    let p = r
        .take(305, rsp(49, 0, 0, XEN_NETIF_RSP_ERROR))
        .unwrap()
        .unwrap();
    assert!(p.error);
    assert_eq!(p.slots, [49]);
}

#[test]
fn rx_hostile_responses() {
    let mut r = RxRing::new(256);
    assert_eq!(
        r.take(7, rsp(8, 0, 0, 60)),
        Err(NetError::RxWrongId { want: 7, got: 8 })
    );
    let mut r = RxRing::new(256);
    assert_eq!(
        r.take(7, rsp(7, 4000, 0, 200)),
        Err(NetError::RxBadExtent {
            offset: 4000,
            status: 200
        })
    );
    let mut r = RxRing::new(256);
    assert!(matches!(
        r.take(7, rsp(7, 0, 0x80, 60)),
        Err(NetError::RxBadPacket(_))
    ));
    let mut r = RxRing::new(256);
    assert!(matches!(
        r.take(7, rsp(7, 0, NETRXF_GSO_PREFIX, 60)),
        Err(NetError::RxBadPacket(_))
    ));
    // A chain that never ends is cut off.
    let mut r = RxRing::new(256);
    let mut res = Ok(None);
    for i in 0..100u32 {
        res = r.take(i, rsp(i as u16, 0, NETRXF_MORE_DATA, 4096));
        if res.is_err() {
            break;
        }
    }
    assert!(matches!(res, Err(NetError::RxBadPacket(_))));
}

#[test]
fn rx_random_responses_never_panic() {
    let mut x = 0x0bad_cafe_f00d_1234u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut r = RxRing::new(256);
    let mut idx = 0u32;
    for _ in 0..200_000 {
        let honest = next() % 4 != 0;
        let id = if honest { r.id_at(idx) } else { next() as u16 };
        let resp = rsp(
            id,
            next() as u16 % 4200,
            next() as u16 & 0x1f,
            next() as i16,
        );
        match r.take(idx, resp) {
            Ok(Some(p)) => {
                assert!(p.len <= MAX_RX_PACKET);
                for piece in &p.pieces {
                    assert!(usize::from(piece.offset) + usize::from(piece.len) <= PAGE_SIZE);
                }
            }
            Ok(None) => {}
            Err(_) => r = RxRing::new(256),
        }
        idx = idx.wrapping_add(1);
    }
}
