//! Peer data: the byte stream xenstored (Dom0) writes into the XenStore
//! reply ring, and the payloads in it. Arbitrary bytes go through the
//! streaming `Decoder` (fed in fuzzer-chosen pieces, and whole),
//! `decode_message`, every reply parser (`parse_ok`, `parse_string(s)`,
//! `parse_watch_event`, `XsError::from_payload`, `Perm::parse`,
//! `parse_shutdown`) and request encoding with arbitrary paths, tokens and
//! values. Invariants: no panic; decoded payloads ≤ XENSTORE_PAYLOAD_MAX;
//! any split of the stream decodes to the same messages and error; each
//! decoded message re-encodes to exactly its bytes; a decoder that failed
//! stays failed; parsers accept only what their format allows and round
//! trip; every encoded request decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenfront::xenstore::{
    decode_message, encode_message, parse_ok, parse_shutdown, parse_string, parse_strings,
    parse_watch_event, Decoder, Error, Header, Message, MsgType, Perm, PermKind, Request, TxId,
    XsError, ABS_PATH_MAX, HEADER_SIZE, REL_PATH_MAX, XENSTORE_PAYLOAD_MAX,
};
use xenfront_fuzz::Input;

/// What a decoder made of a whole stream: the messages with their byte
/// ranges, and the error that stopped it (with the offset).
#[derive(Debug, PartialEq)]
struct Decoded {
    msgs: Vec<(Message, usize, usize)>,
    err: Option<(Error, usize)>,
    mid: bool,
}

/// Feeds `stream` to a fresh decoder in pieces of `piece(i)` bytes.
fn decode(stream: &[u8], mut piece: impl FnMut(usize) -> usize) -> Decoded {
    let mut d = Decoder::new();
    let mut out = Decoded {
        msgs: Vec::new(),
        err: None,
        mid: false,
    };
    let mut pos = 0;
    let mut start = 0;
    let mut i = 0;
    while pos < stream.len() {
        let end = (pos + piece(i).max(1)).min(stream.len());
        i += 1;
        let mut chunk = &stream[pos..end];
        while !chunk.is_empty() {
            match d.push(chunk) {
                Ok((used, m)) => {
                    assert!(
                        used > 0 && used <= chunk.len(),
                        "used {used} of {}",
                        chunk.len()
                    );
                    chunk = &chunk[used..];
                    pos += used;
                    if let Some(m) = m {
                        assert!(m.payload.len() <= XENSTORE_PAYLOAD_MAX);
                        assert!(MsgType::from_u32(m.ty as u32) == Some(m.ty));
                        out.msgs.push((m, start, pos));
                        start = pos;
                        assert!(!d.is_mid_message());
                    } else {
                        assert!(chunk.is_empty(), "a partial message took all input");
                    }
                }
                Err(e) => {
                    assert!(
                        matches!(e, Error::BadType(_) | Error::Oversized { .. }),
                        "{e:?}"
                    );
                    // Failed for good, whatever comes next.
                    assert_eq!(d.push(&stream[pos..]), Err(Error::Desynced));
                    assert_eq!(d.push(b""), Err(Error::Desynced));
                    // The error is reported when the header completes.
                    let hdr_end = start + HEADER_SIZE;
                    out.err = Some((e, hdr_end));
                    return out;
                }
            }
        }
    }
    out.mid = d.is_mid_message();
    assert_eq!(out.mid, start < stream.len());
    // A reset decoder takes a message again.
    d.reset();
    let m = encode_message(MsgType::Read, 1, 0, b"x").unwrap();
    assert!(d.push(&m).unwrap().1.is_some());
    out
}

fn check_payload_parsers(p: &[u8]) {
    let body = p.strip_suffix(&[0]).unwrap_or(p);
    if parse_ok(p).is_ok() {
        assert!(p == b"OK\0" || p == b"OK");
    }
    match parse_strings(p) {
        Ok(v) => {
            assert_eq!(v.join("\0").as_bytes(), body);
            assert!(v.iter().all(|s| !s.contains('\0')));
            // Re-encoded as xenstored would, it parses the same.
            let mut again = Vec::new();
            for s in &v {
                again.extend_from_slice(s.as_bytes());
                again.push(0);
            }
            if !(v.len() == 1 && v[0].is_empty()) {
                assert_eq!(parse_strings(&again).as_ref(), Ok(&v));
            }
        }
        Err(e) => assert_eq!(e, Error::BadPayload("not UTF-8")),
    }
    match parse_string(p) {
        Ok(s) => {
            assert_eq!(s.as_bytes(), body);
            assert!(!s.contains('\0'));
        }
        Err(e) => assert!(matches!(e, Error::BadPayload(_))),
    }
    if let Ok(ev) = parse_watch_event(p) {
        assert_eq!(
            parse_strings(p).unwrap(),
            vec![ev.path.clone(), ev.token.clone()]
        );
        let again = [ev.path.as_bytes(), b"\0", ev.token.as_bytes(), b"\0"].concat();
        assert_eq!(parse_watch_event(&again), Ok(ev));
    }
    let e = XsError::from_payload(p);
    match &e {
        XsError::Unknown(s) => assert!(s.len() <= 3 * 64),
        known => assert_eq!(XsError::from_payload(known.name().as_bytes()), e),
    }
    let _ = format!("{}", Error::Xs(e));
    for piece in body.split(|&b| b == 0).take(8) {
        if let Ok(perm) = Perm::parse(piece) {
            let k = match perm.kind {
                PermKind::None => 'n',
                PermKind::Read => 'r',
                PermKind::Write => 'w',
                PermKind::Both => 'b',
            };
            assert_eq!(piece[0], k as u8);
            assert_eq!(
                Perm::parse(format!("{k}{}", perm.domid).as_bytes()),
                Ok(perm)
            );
        }
    }
    match parse_shutdown(p) {
        Ok(None) => assert!(body.is_empty()),
        Ok(Some(_)) => assert!(matches!(body, b"poweroff" | b"halt" | b"reboot")),
        Err(v) => assert_eq!(v, body),
    }
    let shown = format!(
        "{}",
        Error::BadValue {
            path: "p".into(),
            value: p.to_vec(),
            expected: "x",
        }
    );
    assert!(shown.len() <= 64 * 4 + 32);
}

fn path_ok(p: &str) -> bool {
    let max = if p.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    !p.is_empty() && p.len() <= max && !p.contains('\0')
}

fn check_request(req: Request<'_>, req_id: u32, tx: u32) {
    match req.encode(req_id, TxId(tx)) {
        Ok(bytes) => {
            let payload = req.payload().expect("encoded, so valid");
            assert!(payload.len() <= XENSTORE_PAYLOAD_MAX);
            let (m, used) = decode_message(&bytes).expect("own encoding decodes");
            assert_eq!(used, bytes.len());
            assert_eq!(
                m,
                Message {
                    ty: req.msg_type(),
                    req_id,
                    tx_id: tx,
                    payload,
                }
            );
        }
        Err(Error::RequestTooLarge { len }) => assert!(len > XENSTORE_PAYLOAD_MAX),
        Err(Error::BadPath) => {}
        Err(Error::BadPayload(_)) => assert!(matches!(req, Request::SetPerms(_, []))),
        Err(e) => panic!("{req:?}: {e:?}"),
    }
}

fn check_requests(inp: &mut Input<'_>) {
    let path = inp.string(4000);
    let token = inp.string(300);
    let value = inp.bytes(5000);
    let (req_id, tx) = (inp.u32(), inp.u32());
    let mut perms = Vec::new();
    for _ in 0..inp.below(6) {
        let kind = [
            PermKind::None,
            PermKind::Read,
            PermKind::Write,
            PermKind::Both,
        ][inp.below(4)];
        perms.push(Perm {
            kind,
            domid: inp.u16(),
        });
    }
    let p = path.as_str();
    let t = token.as_str();
    for req in [
        Request::Read(p),
        Request::Write(p, value),
        Request::Directory(p),
        Request::Mkdir(p),
        Request::Rm(p),
        Request::GetPerms(p),
        Request::SetPerms(p, &perms),
        Request::Watch(p, t),
        Request::Unwatch(p, t),
        Request::TransactionStart,
        Request::TransactionEnd(tx & 1 == 0),
        Request::GetDomainPath(req_id as u16),
    ] {
        check_request(req, req_id, tx);
    }
    // Path checks are exactly the limits.
    assert_eq!(
        Request::Read(p).encode(req_id, TxId(tx)).is_ok(),
        path_ok(p)
    );
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    // Pieces: a seed for the split, then the stream.
    let seed = inp.u64();
    let stream = inp.rest();

    let whole = decode(stream, |_| usize::MAX);
    let mut x = seed | 1;
    let split = decode(stream, |_| {
        // xorshift: pieces of 1..=64 bytes, sometimes larger.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x & 0x100 != 0 {
            (x as usize & 0x3f) + 1
        } else {
            (x as usize >> 9) % 1500 + 1
        }
    });
    assert_eq!(whole, split);
    let bytes1 = decode(stream, |_| 1);
    assert_eq!(whole, bytes1);

    // Each message re-encodes to its bytes.
    for (m, a, b) in &whole.msgs {
        let again = encode_message(m.ty, m.req_id, m.tx_id, &m.payload).unwrap();
        assert_eq!(&again[..], &stream[*a..*b]);
        check_payload_parsers(&m.payload);
    }

    // One-shot decode agrees with the streaming decoder.
    match decode_message(stream) {
        Ok((m, used)) => {
            let (first, a, b) = &whole.msgs[0];
            assert_eq!((&m, 0, used), (first, *a, *b));
        }
        Err(Error::Truncated { need, have }) => {
            assert!(whole.msgs.is_empty() && whole.err.is_none());
            assert_eq!(have, stream.len());
            assert!(need > have && need <= HEADER_SIZE + XENSTORE_PAYLOAD_MAX);
        }
        Err(e) => {
            assert!(whole.msgs.is_empty());
            assert_eq!(whole.err.as_ref().map(|(e, _)| e), Some(&e));
        }
    }

    // Header wire form round trips for any 16 bytes.
    if let Some(h) = stream.first_chunk::<HEADER_SIZE>() {
        assert_eq!(&Header::from_bytes(h).to_bytes(), h);
    }
    for t in 0..32u32 {
        if let Some(ty) = MsgType::from_u32(t) {
            assert_eq!(ty as u32, t);
        }
    }

    // The stream as a payload, and requests made from it.
    check_payload_parsers(&stream[..stream.len().min(XENSTORE_PAYLOAD_MAX)]);
    let mut req_inp = Input::new(stream);
    check_requests(&mut req_inp);
});
