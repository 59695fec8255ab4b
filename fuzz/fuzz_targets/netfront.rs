//! Peer data: what a network backend (Linux netback, or a hostile one)
//! controls. Its `feature-*` keys and the frontend's `mac` (any bytes)
//! through `BackendFeatures::parse` and `parse_mac`; its tx responses (any
//! id and status) against the table of requests in flight (`TxTable`),
//! interleaved with new requests and extra slots; its rx responses (any
//! id, offset, flags and status, at any ring index) through `RxRing`; and
//! the tx slot builder (`plan_tx`) for any length and offload choice.
//! Invariants: no panic; a key's error names the key; a tx response
//! either completes exactly one outstanding request or is an error that
//! leaves the table as it was; every received packet's pieces lie inside
//! their pages and sum to its length; every tx plan puts the whole length
//! in the first slot's `size`, keeps each slot inside its page and uses
//! at most 18 data slots.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use xenfront::drivers::netfront::{
    parse_mac, plan_tx, BackendFeatures, Gso, NetError, RxRing, TxDone, TxSlot, TxTable,
    FEATURE_KEYS, MAX_RX_PACKET, MAX_TX_SLOTS,
};
use xenfront::shared::PAGE_SIZE;
use xenfront::xen_abi::netif::{NetifRxResponse, NetifTxResponse, XEN_NETIF_RSP_NULL};
use xenfront_fuzz::Input;

const DIR: &str = "/local/domain/0/backend/vif/5/0";

fn keys(inp: &mut Input<'_>) {
    let mut values: HashMap<&str, Vec<u8>> = HashMap::new();
    for k in FEATURE_KEYS {
        if inp.bool() {
            let v = match inp.below(4) {
                0 => b"1".to_vec(),
                1 => b"0".to_vec(),
                _ => inp.bytes(12).to_vec(),
            };
            values.insert(k, v);
        }
    }
    match BackendFeatures::parse(DIR, |k| values.get(k).map(|v| v.as_slice())) {
        Ok(f) => {
            assert_eq!(values.get("feature-rx-copy").map(|v| v.as_slice()), Some(&b"1"[..]));
            assert!(f.max_queues >= 1);
        }
        Err(NetError::BadValue { path, .. }) => assert!(path.starts_with(DIR)),
        Err(NetError::Unsupported(_)) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
    let mac = inp.bytes(24);
    if let Ok(m) = parse_mac("mac", mac) {
        assert_eq!(m[0] & 1, 0);
        assert_eq!(mac.len(), 17);
    }
}

fn tx(inp: &mut Input<'_>) {
    let mut t: TxTable<u64> = TxTable::new(256);
    let mut live: BTreeMap<u16, u64> = BTreeMap::new();
    let mut extras = 0u32;
    for step in 0..inp.below(512) as u64 {
        match inp.below(4) {
            0 => {
                if let Some(id) = t.insert(step) {
                    assert!(live.insert(id, step).is_none());
                }
            }
            1 => {
                t.sent_extra();
                extras += 1;
            }
            _ => {
                let rsp = NetifTxResponse {
                    id: if inp.bool() {
                        live.keys().next().copied().unwrap_or(0)
                    } else {
                        inp.u16()
                    },
                    status: inp.u16() as i16 % 4,
                };
                let before = t.in_flight();
                match t.complete(rsp) {
                    Ok(TxDone::Slot { data, .. }) => {
                        assert_eq!(live.remove(&rsp.id), Some(data));
                        assert_eq!(t.in_flight(), before - 1);
                    }
                    Ok(TxDone::Extra) => {
                        assert_eq!(rsp.status, XEN_NETIF_RSP_NULL);
                        extras -= 1;
                    }
                    Err(_) => assert_eq!(t.in_flight(), before),
                }
            }
        }
        assert_eq!(t.in_flight(), live.len());
        assert_eq!(t.extras_due(), extras);
    }
}

fn rx(inp: &mut Input<'_>) {
    let mut r = RxRing::new(256);
    let mut idx = inp.u32();
    for _ in 0..inp.below(600) {
        let honest = inp.bool();
        let rsp = NetifRxResponse {
            id: if honest { r.id_at(idx) } else { inp.u16() },
            offset: inp.u16() % 4200,
            flags: inp.u16() & 0x3f,
            status: inp.u16() as i16,
        };
        match r.take(idx, rsp) {
            Ok(Some(p)) => {
                assert!(p.len <= MAX_RX_PACKET);
                let sum: usize = p.pieces.iter().map(|x| usize::from(x.len)).sum();
                assert_eq!(sum, p.len);
                for x in &p.pieces {
                    assert!(usize::from(x.offset) + usize::from(x.len) <= PAGE_SIZE);
                    assert!(u32::from(x.slot) < 256);
                }
            }
            Ok(None) => {}
            Err(_) => r = RxRing::new(256),
        }
        idx = idx.wrapping_add(1);
    }
}

fn plans(inp: &mut Input<'_>) {
    let len = inp.below(70_000);
    let (csum, sg) = (inp.bool(), inp.bool());
    let gso = inp.bool().then(|| Gso {
        mss: inp.u16(),
        ipv6: inp.bool(),
    });
    let Ok(p) = plan_tx(len, csum, sg, gso) else {
        return;
    };
    let mut data = 0;
    let mut first = None;
    for s in &p.slots {
        if let TxSlot::Data {
            page,
            offset,
            len: n,
            size,
            ..
        } = *s
        {
            assert!(usize::from(offset) + usize::from(n) <= PAGE_SIZE);
            assert!(page < p.pages);
            first.get_or_insert(size);
            data += 1;
        }
    }
    assert!(data <= MAX_TX_SLOTS);
    assert_eq!(first.map(usize::from), Some(len));
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.below(4) {
        0 => keys(&mut inp),
        1 => tx(&mut inp),
        2 => rx(&mut inp),
        _ => plans(&mut inp),
    }
});
