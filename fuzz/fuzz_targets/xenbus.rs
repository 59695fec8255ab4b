//! Peer and toolstack data of the XenBus device layer: the backend's
//! `state` value (any bytes) through `XenbusState::parse`; the frontend's
//! `device/<class>` listing, `backend` and `backend-id` keys (any bytes,
//! or paths built from good, bad and near-miss components) through
//! `parse_device_ids`, `parse_backend_id`, `BackendPath::parse` and
//! `FrontendInfo::parse`, each checked against a model of the documented
//! rules; the frontend state machine (`Frontend`) driven by a backend that
//! moves to any state, writes garbage, vanishes and never arrives, with
//! clock jumps, closes, driver failures and restarts; and the connection
//! keys (`Keys`) written by `write_keys` through a store that conflicts
//! (`EAGAIN`) and fails anywhere. Invariants: no panic; errors name the
//! key and the value; a parsed backend path rebuilds to exactly its value;
//! every waiting phase has a deadline, the one its timeout gives, and
//! reaching it ends the wait with `BackendNeverReached`; keys are written
//! once per attempt and the machine never connects without them; feeding
//! the same state twice never repeats an action; `write_keys` uses one
//! transaction per attempt, always ends it, makes at most `max_attempts`,
//! and returns the store's error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenfront::xenbus::{
    parse_backend_id, parse_device_ids, write_keys, Action, BackendPath, ConnectState, Frontend,
    FrontendInfo, Keys, Phase, Timeouts, TxStore, XenbusError, XenbusState, DOMID_FIRST_RESERVED,
    MAX_BACKEND_PATH,
};
use xenfront::xenstore::{self, TxId, XsError};
use xenfront_fuzz::Input;

/// Canonical decimal, written independently of the library's parser.
fn canon(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && &s[..1] == "0") {
        return None;
    }
    s.parse().ok()
}

fn domid(v: &[u8]) -> Option<u16> {
    canon(v)
        .filter(|&n| n < u64::from(DOMID_FIRST_RESERVED))
        .map(|n| n as u16)
}

/// Strings that are nearly right.
const NEAR: &[&str] = &[
    "",
    ".",
    "..",
    "0",
    "00",
    "05",
    "5",
    "7",
    "-1",
    "+1",
    "1 ",
    " 1",
    "1\n",
    "1\0",
    "0x1",
    "32751",
    "32752",
    "65535",
    "65536",
    "51712",
    "4294967295",
    "4294967296",
    "vbd",
    "v bd",
    "v/bd",
    "qdisk",
    "vif",
    "local",
    "Local",
    "domain",
    "backend",
    "frontend",
    "a_b-c",
    "é",
];

fn near(inp: &mut Input<'_>) -> Vec<u8> {
    match inp.u8() % 4 {
        0..=1 => NEAR[inp.below(NEAR.len())].as_bytes().to_vec(),
        2 => match inp.u8() % 3 {
            0 => inp.u8().to_string(),
            1 => inp.u16().to_string(),
            _ => inp.u64().to_string(),
        }
        .into_bytes(),
        _ => inp.bytes(24).to_vec(),
    }
}

// ------------------------------------------------------------------ state

fn state(inp: &mut Input<'_>) {
    let path = String::from_utf8_lossy(inp.bytes(40)).into_owned();
    let value = match inp.u8() % 3 {
        0 => vec![b'0' + inp.u8() % 12],
        1 => near(inp),
        _ => inp.bytes(200).to_vec(),
    };
    let ok = value.len() == 1 && (b'0'..=b'8').contains(&value[0]);
    match XenbusState::parse(&path, &value) {
        Ok(s) => {
            assert!(ok, "{value:?} accepted");
            assert_eq!(&s.value()[..], &value[..]);
            assert_eq!(XenbusState::from_u64(u64::from(s.as_u8())), Some(s));
            assert_eq!(XenbusState::ALL[s.as_u8() as usize], s);
            assert_eq!(s.to_string(), format!("{} ({})", s.name(), s.as_u8()));
        }
        Err(e) => {
            assert!(!ok, "{value:?} refused");
            assert_eq!(
                e,
                XenbusError::BadState {
                    path: path.clone(),
                    value: value.clone()
                }
            );
            let text = e.to_string();
            // The value is quoted escaped, at most 64 bytes of it.
            let quoted = text
                .strip_prefix(&format!("xenbus: {path} = "))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(quoted.is_ascii() && quoted.len() <= 4 * 64 + 40, "{text}");
        }
    }
    let n = match inp.u8() % 3 {
        0 => u64::from(inp.u8()),
        1 => u64::from(inp.u32()),
        _ => inp.u64(),
    };
    assert_eq!(XenbusState::from_u64(n).is_some(), n <= 8);
}

// -------------------------------------------------------------- discovery

/// The documented checks of `BackendPath::parse`, in order: the first
/// that fails, or the parsed path.
fn backend_model(v: &[u8]) -> Result<(u16, String, u16, u32), &'static str> {
    let shape = "not /local/domain/<n>/backend/<type>/<domid>/<id>";
    if v.is_empty() {
        return Err("empty");
    }
    if v.len() > MAX_BACKEND_PATH {
        return Err("too long");
    }
    let s = std::str::from_utf8(v).map_err(|_| "not UTF-8")?;
    let rest = s.strip_prefix('/').ok_or("not absolute")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| ["", ".", ".."].contains(p)) {
        return Err("empty, `.` or `..` component");
    }
    if !parts.iter().all(|p| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err("character outside [A-Za-z0-9_-]");
    }
    if parts.len() != 7 || parts[0] != "local" || parts[1] != "domain" || parts[3] != "backend" {
        return Err(shape);
    }
    let d = domid(parts[2].as_bytes()).ok_or("backend domain is not a domid")?;
    let f = domid(parts[5].as_bytes()).ok_or("frontend domain is not a domid")?;
    let id = canon(parts[6].as_bytes())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("device id is not a decimal u32")?;
    Ok((d, parts[4].to_string(), f, id))
}

/// A `backend` value: usually the right shape with some components
/// replaced by near misses, sometimes anything.
fn backend_value(inp: &mut Input<'_>, dom: u16, fe: u16, id: u32) -> Vec<u8> {
    if inp.u8() % 8 == 0 {
        return inp.bytes(300).to_vec();
    }
    let kinds = ["vbd", "qdisk", "vbd3", "vif", "vscsi"];
    let mut parts: Vec<Vec<u8>> = vec![
        b"local".to_vec(),
        b"domain".to_vec(),
        dom.to_string().into_bytes(),
        b"backend".to_vec(),
        kinds[inp.below(kinds.len())].as_bytes().to_vec(),
        fe.to_string().into_bytes(),
        id.to_string().into_bytes(),
    ];
    let mask = inp.u8();
    for (i, p) in parts.iter_mut().enumerate() {
        if mask >> i & 1 == 1 && inp.bool() {
            *p = near(inp);
        }
    }
    match inp.u8() % 8 {
        0 => {
            parts.remove(inp.below(parts.len()));
        }
        1 => {
            let at = inp.below(parts.len() + 1);
            parts.insert(at, near(inp));
        }
        2 => {
            // A long kind, around the length limit.
            parts[4] = vec![b'v'; MAX_BACKEND_PATH - 40 + inp.below(48)];
        }
        _ => {}
    }
    let mut v = Vec::new();
    let lead = inp.u8() % 8;
    if lead != 0 {
        v.push(b'/');
    }
    if lead == 1 {
        v.push(b'/');
    }
    v.extend(parts.join(&b'/'));
    if inp.u8() % 8 == 0 {
        v.push(b'/');
    }
    v
}

fn discovery(inp: &mut Input<'_>) {
    // device/<class> listings.
    let dir = "device/vbd";
    let mut names: Vec<String> = Vec::new();
    for _ in 0..inp.below(10) {
        let n = match inp.u8() % 4 {
            0 | 1 => inp.u32().to_string(),
            2 if !names.is_empty() => names[inp.below(names.len())].clone(),
            _ => String::from_utf8_lossy(&near(inp)).into_owned(),
        };
        names.push(n);
    }
    let ids: Vec<Option<u32>> = names
        .iter()
        .map(|n| canon(n.as_bytes()).and_then(|v| u32::try_from(v).ok()))
        .collect();
    let mut sorted: Vec<u32> = ids.iter().flatten().copied().collect();
    sorted.sort_unstable();
    let dup = sorted.windows(2).any(|w| w[0] == w[1]);
    match parse_device_ids(dir, &names) {
        Ok(got) => {
            assert!(ids.iter().all(Option::is_some) && !dup, "{names:?}");
            assert_eq!(got, sorted);
        }
        Err(XenbusError::BadDeviceId { dir: d, name }) => {
            assert_eq!(d, dir);
            let bad_name = names
                .iter()
                .zip(&ids)
                .any(|(n, id)| id.is_none() && *n == name);
            let dup_name = ids.iter().all(Option::is_some)
                && sorted
                    .windows(2)
                    .any(|w| w[0] == w[1] && w[0].to_string() == name);
            assert!(bad_name || dup_name, "{name:?} of {names:?}");
        }
        Err(e) => panic!("{e:?}"),
    }

    // backend-id.
    let bid = match inp.u8() % 3 {
        0 => inp.u16().to_string().into_bytes(),
        1 => near(inp),
        _ => inp.bytes(12).to_vec(),
    };
    let path = "device/vbd/51712/backend-id";
    match parse_backend_id(path, &bid) {
        Ok(d) => assert_eq!(Some(d), domid(&bid)),
        Err(e) => {
            assert!(domid(&bid).is_none());
            assert_eq!(
                e,
                XenbusError::BadBackendId {
                    path: path.into(),
                    value: bid.clone()
                }
            );
            let _ = e.to_string();
        }
    }

    // backend, alone and with backend-id.
    let dom = if inp.bool() { 0 } else { inp.u16() % 0x8000 };
    let fe = if inp.bool() { 5 } else { inp.u16() % 0x8000 };
    let id = if inp.bool() { 51712 } else { inp.u32() };
    let value = backend_value(inp, dom, fe, id);
    let key = "device/vbd/51712/backend";
    let want = backend_model(&value);
    let be = match BackendPath::parse(key, &value) {
        Ok(p) => {
            let (d, kind, f, i) = want.unwrap_or_else(|w| panic!("accepted: {w}"));
            assert_eq!(
                (p.domid, p.kind.as_str(), p.frontend, p.devid),
                (d, kind.as_str(), f, i)
            );
            assert_eq!(p.path.as_bytes(), &value[..]);
            // Canonical numbers: the parts rebuild the value exactly.
            assert_eq!(p.path, format!("/local/domain/{d}/backend/{kind}/{f}/{i}"));
            assert_eq!(p.key("state"), format!("{}/state", p.path));
            Some(p)
        }
        Err(e) => {
            let text = e.to_string();
            match e {
                XenbusError::BadBackendPath {
                    path,
                    value: v,
                    why,
                } => {
                    assert_eq!((path.as_str(), &v[..]), (key, &value[..]));
                    assert_eq!(
                        Err(why),
                        want.map(|_| ()),
                        "{:?}",
                        String::from_utf8_lossy(&value)
                    );
                    assert!(text.contains(key) && text.ends_with(why));
                }
                other => panic!("{other:?}"),
            }
            None
        }
    };
    let class = ["vbd", "vif", "vscsi"][inp.below(3)];
    let fid = if inp.bool() { id } else { inp.u32() };
    let own = match inp.u8() % 3 {
        0 => None,
        1 => Some(fe),
        _ => Some(inp.u16()),
    };
    let bid2 = if inp.bool() {
        dom.to_string().into_bytes()
    } else {
        bid
    };
    let got = FrontendInfo::parse(class, fid, &value, &bid2, own);
    let dir = format!("device/{class}/{fid}");
    let want: Result<(), String> = match (&be, domid(&bid2)) {
        (None, _) => Err(format!("{dir}/backend")),
        (Some(_), None) => Err(format!("{dir}/backend-id")),
        (Some(p), Some(b)) if p.domid != b => Err("its domain is not backend-id".into()),
        (Some(p), _) if p.devid != fid => Err("its device id is not the frontend's".into()),
        (Some(p), _) if own.is_some_and(|o| o != p.frontend) => {
            Err("it names another frontend domain".into())
        }
        _ => Ok(()),
    };
    match got {
        Ok(i) => {
            assert_eq!(want, Ok(()));
            let p = be.unwrap();
            assert_eq!(
                (i.class.as_str(), i.id, i.dir.as_str(), i.backend_id),
                (class, fid, dir.as_str(), p.domid)
            );
            assert_eq!(i.state_path(), format!("{dir}/state"));
            assert_eq!(i.backend_state_path(), format!("{}/state", p.path));
            assert_eq!(i.backend, p);
        }
        Err(e) => {
            let w = want.expect_err("refused");
            let _ = e.to_string();
            match e {
                XenbusError::BadBackendPath { path, .. }
                | XenbusError::BadBackendId { path, .. } => {
                    assert_eq!(path, w)
                }
                XenbusError::BackendMismatch { backend, why } => {
                    assert_eq!(why, w);
                    assert_eq!(backend.as_bytes(), &value[..]);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

// ----------------------------------------------------------- state machine

fn timeout(inp: &mut Input<'_>, default: u64) -> u64 {
    match inp.u8() % 5 {
        0 | 1 => default,
        2 => u64::from(inp.u32()) * 1_000,
        3 => u64::from(inp.u8()),
        _ => inp.u64(),
    }
}

fn some_error(inp: &mut Input<'_>) -> XenbusError {
    match inp.u8() % 4 {
        0 => XenbusError::BackendGone,
        1 => XenbusError::Store(xenstore::Error::Timeout),
        2 => XenbusError::Store(xenstore::Error::Xs(XsError::EACCES)),
        _ => XenbusError::BadKey(String::from_utf8_lossy(inp.bytes(8)).into_owned()),
    }
}

fn waiting(p: Phase) -> bool {
    matches!(
        p,
        Phase::Resetting | Phase::Initialising | Phase::WaitConnected | Phase::Closing
    )
}

fn fsm(inp: &mut Input<'_>) {
    use XenbusState as S;
    let style = if inp.bool() {
        ConnectState::Initialised
    } else {
        ConnectState::Connected
    };
    let d = Timeouts::default();
    let t = Timeouts {
        init_wait_ns: timeout(inp, d.init_wait_ns),
        connect_ns: timeout(inp, d.connect_ns),
        close_ns: timeout(inp, d.close_ns),
    };
    let mut f = Frontend::new(style, t);
    assert_eq!(
        (f.phase(), f.deadline(), f.our_state()),
        (Phase::Closed, None, None)
    );
    let path = "/local/domain/0/backend/vbd/5/51712/state";
    let mut now = inp.u64() >> (inp.u8() % 65).min(63);
    // When the current phase began; keys written / connected this attempt.
    let mut since = now;
    let (mut keys, mut conn) = (false, false);
    let mut connections = 0u32;
    let mut steps = 0;
    while !inp.is_empty() && steps < 3000 {
        steps += 1;
        // The clock: small steps, big jumps, rarely backwards.
        now = match inp.u8() % 8 {
            0..=3 => now.saturating_add(u64::from(inp.u16()) * 1_000_000),
            4 => now.saturating_add(u64::from(inp.u32()) * 1_000),
            5 => f.deadline().unwrap_or(now),
            6 => now.saturating_add(inp.u64() >> (inp.u8() % 64)),
            _ => now.saturating_sub(u64::from(inp.u16())),
        };
        let good = match f.phase() {
            Phase::Initialising => S::InitWait,
            Phase::WaitConnected | Phase::Connected => S::Connected,
            Phase::Closing => S::Closing,
            Phase::Resetting | Phase::Closed => S::Closed,
        };
        let phase = f.phase();
        let backend = f.backend_state();
        let ours = f.our_state();
        let error = f.error().cloned();
        let deadline = f.deadline();
        let op = inp.u8() % 16;
        let mut fed = None;
        let a = match op {
            0..=4 => {
                fed = Some(good);
                f.on_backend_state(good, now)
            }
            5..=7 => {
                let s = S::ALL[inp.below(9)];
                fed = Some(s);
                f.on_backend_state(s, now)
            }
            8 => {
                let v = match inp.u8() % 3 {
                    0 => good.value().to_vec(),
                    1 => near(inp),
                    _ => inp.bytes(16).to_vec(),
                };
                let a = f.on_backend_value(path, Some(&v), now);
                match XenbusState::parse(path, &v) {
                    Ok(s) => {
                        fed = Some(s);
                        assert_eq!(f.backend_state(), Some(s));
                    }
                    Err(e) => {
                        assert_eq!(f.backend_state(), None);
                        if phase == Phase::Closed {
                            assert_eq!(a, Action::Wait { deadline_ns: None });
                        } else {
                            assert_eq!(a, Action::Closed { error: Some(e) });
                        }
                    }
                }
                a
            }
            9 => {
                let a = if inp.bool() {
                    f.on_backend_gone(now)
                } else {
                    f.on_backend_value(path, None, now)
                };
                assert_eq!(f.backend_state(), None);
                let want = match phase {
                    Phase::Closed => Action::Wait { deadline_ns: None },
                    Phase::Closing => Action::Closed { error: None },
                    _ => Action::Closed {
                        error: Some(XenbusError::BackendGone),
                    },
                };
                assert_eq!(a, want);
                a
            }
            10 | 11 => {
                let a = f.on_deadline(now);
                match deadline {
                    Some(dl) if now >= dl && waiting(phase) => {
                        // Every wait ends at its deadline, named.
                        let state = match phase {
                            Phase::Resetting => S::Closed,
                            Phase::Initialising => S::InitWait,
                            Phase::WaitConnected => S::Connected,
                            _ => S::Closing,
                        };
                        assert_eq!(
                            a,
                            Action::Closed {
                                error: Some(XenbusError::BackendNeverReached {
                                    state,
                                    seen: backend,
                                    waited_ms: now.saturating_sub(since) / 1_000_000,
                                })
                            }
                        );
                    }
                    _ => assert_eq!(
                        a,
                        Action::Wait {
                            deadline_ns: deadline
                        }
                    ),
                }
                a
            }
            12 => f.close(now),
            13 => {
                let e = some_error(inp);
                let a = f.fail(e.clone(), now);
                assert_eq!(f.error(), Some(&e));
                if phase == Phase::Closed {
                    assert_eq!(a, Action::Wait { deadline_ns: None });
                } else {
                    assert_eq!(a, Action::Closed { error: Some(e) });
                }
                a
            }
            _ => {
                let a = f.start(now);
                if phase == Phase::Closed {
                    assert_eq!(f.error(), None, "cleared by start");
                    let want = match backend {
                        Some(S::Initialised | S::Connected | S::Closing) => S::Closed,
                        _ => S::Initialising,
                    };
                    assert_eq!(a, Action::SetState(want));
                } else {
                    assert_eq!(
                        a,
                        Action::Wait {
                            deadline_ns: deadline
                        }
                    );
                }
                a
            }
        };
        if let Some(s) = fed {
            assert_eq!(f.backend_state(), Some(s));
        }
        // Our state follows the actions.
        let want_ours = match &a {
            Action::Wait { .. } => ours,
            Action::SetState(s) => Some(*s),
            Action::WriteKeys { state } => Some(*state),
            Action::Connect { .. } => Some(S::Connected),
            Action::Closing => Some(S::Closing),
            Action::Closed { .. } => Some(S::Closed),
        };
        assert_eq!(f.our_state(), want_ours);
        match &a {
            Action::Wait { deadline_ns } => {
                assert_eq!(*deadline_ns, f.deadline());
                assert_eq!(f.phase(), phase, "a wait changes no phase");
                assert_eq!(f.deadline(), deadline);
            }
            Action::SetState(S::Initialising) => {
                assert_eq!(f.phase(), Phase::Initialising);
                (keys, conn) = (false, false);
            }
            Action::SetState(s) => {
                assert_eq!(*s, S::Closed);
                assert_eq!(f.phase(), Phase::Resetting);
            }
            Action::WriteKeys { state } => {
                assert!(!keys, "keys twice in one attempt");
                assert_eq!(*state, style.state());
                assert_eq!(f.backend_state(), Some(S::InitWait));
                assert_eq!(f.phase(), Phase::WaitConnected);
                keys = true;
            }
            Action::Connect { write_connected } => {
                assert!(keys && !conn, "connect without keys");
                assert_eq!(*write_connected, style == ConnectState::Initialised);
                assert_eq!(f.backend_state(), Some(S::Connected));
                assert_eq!(f.phase(), Phase::Connected);
                conn = true;
                connections += 1;
            }
            Action::Closing => {
                assert!(keys);
                assert_eq!(f.phase(), Phase::Closing);
            }
            Action::Closed { error: e } => {
                assert_eq!(f.phase(), Phase::Closed);
                match e {
                    Some(e) => {
                        assert_eq!(f.error(), Some(e));
                        let _ = e.to_string();
                    }
                    None if op != 13 => assert_eq!(f.error(), error.as_ref()),
                    None => {}
                }
                (keys, conn) = (false, false);
            }
        }
        if !matches!(a, Action::Wait { .. }) {
            since = now;
        }
        assert_eq!(f.connections(), connections);
        // Every wait has a deadline: the one its timeout gives.
        assert_eq!(
            f.deadline().is_some(),
            waiting(f.phase()),
            "{:?}",
            f.phase()
        );
        if !matches!(a, Action::Wait { .. }) {
            let want = match f.phase() {
                Phase::Resetting | Phase::Initialising => Some(t.init_wait_ns),
                Phase::WaitConnected => Some(t.connect_ns),
                Phase::Closing => Some(t.close_ns),
                Phase::Closed | Phase::Connected => None,
            };
            assert_eq!(f.deadline(), want.map(|w| now.saturating_add(w)));
        }
        // Level-triggered: the same state again repeats nothing.
        if let (Some(s), false) = (fed, matches!(a, Action::Wait { .. })) {
            if inp.bool() {
                let before = (f.phase(), f.deadline(), f.our_state());
                let again = f.on_backend_state(s, now);
                assert_ne!(again, a, "{s:?} fed twice");
                if matches!(again, Action::Wait { .. }) {
                    assert_eq!(before, (f.phase(), f.deadline(), f.our_state()));
                } else {
                    // A real next step (the caller feeds after each
                    // action): account for it.
                    match &again {
                        Action::WriteKeys { .. } => {
                            assert!(!keys);
                            keys = true;
                        }
                        Action::SetState(S::Initialising) => (keys, conn) = (false, false),
                        Action::Closed { .. } => (keys, conn) = (false, false),
                        other => panic!("{s:?} fed twice after {a:?}: {other:?}"),
                    }
                    since = now;
                }
            }
        }
    }
}

// ------------------------------------------------------------------- keys

const GOOD_KEYS: &[&str] = &[
    "ring-ref",
    "ring-ref0",
    "ring-ref15",
    "event-channel",
    "state",
    "protocol",
    "ring-page-order",
    "multi-queue-num-queues",
    "queue-0/ring-ref",
    "queue-1/event-channel",
    "feature-persistent",
    "A_b-9",
];
const BAD_KEYS: &[&str] = &[
    "",
    "/ring-ref",
    "ring-ref/",
    "queue-0//ring-ref",
    "./state",
    "queue-0/../state",
    "..",
    ".",
    "ring ref",
    "state\0",
    "ring-ref\n",
    "é",
    "a:b",
];

fn key_name(inp: &mut Input<'_>) -> String {
    match inp.u8() % 8 {
        0..=4 => GOOD_KEYS[inp.below(GOOD_KEYS.len())].into(),
        5 | 6 => BAD_KEYS[inp.below(BAD_KEYS.len())].into(),
        _ => String::from_utf8_lossy(inp.bytes(16)).into_owned(),
    }
}

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Start,
    Write(u32, String),
    Rm(u32, String),
    End(u32, bool),
}

/// A store whose every answer comes from the input: mostly success,
/// often `EAGAIN`, sometimes another error.
struct Script<'i, 'a> {
    inp: &'i mut Input<'a>,
    open: Option<u32>,
    next: u32,
    /// Each call and whether it succeeded (a removal's ENOENT counts as
    /// success).
    log: Vec<(Call, bool)>,
    /// The last error returned by a call whose error matters (not an
    /// abort, not a tolerated ENOENT of a removal).
    last_err: Option<xenstore::Error>,
}

impl Script<'_, '_> {
    fn answer(&mut self) -> Result<(), xenstore::Error> {
        match self.inp.u8() % 16 {
            0..=9 => Ok(()),
            10..=12 => Err(xenstore::Error::Xs(XsError::EAGAIN)),
            13 => Err(xenstore::Error::Xs(XsError::ENOENT)),
            14 => Err(xenstore::Error::Xs(XsError::EACCES)),
            _ => Err(xenstore::Error::Timeout),
        }
    }
}

impl TxStore for Script<'_, '_> {
    fn tx_start(&mut self) -> Result<TxId, xenstore::Error> {
        assert!(self.open.is_none(), "a transaction left open");
        let r = self.answer();
        self.log.push((Call::Start, r.is_ok()));
        if let Err(e) = &r {
            self.last_err = Some(e.clone());
        }
        r?;
        self.next += 1;
        self.open = Some(self.next);
        Ok(TxId(self.next))
    }
    fn tx_write(&mut self, tx: TxId, path: &str, _value: &[u8]) -> Result<(), xenstore::Error> {
        assert_eq!(Some(tx.0), self.open, "write outside its transaction");
        let r = self.answer();
        self.log.push((Call::Write(tx.0, path.into()), r.is_ok()));
        if let Err(e) = &r {
            self.last_err = Some(e.clone());
        }
        r
    }
    fn tx_rm(&mut self, tx: TxId, path: &str) -> Result<(), xenstore::Error> {
        assert_eq!(Some(tx.0), self.open, "rm outside its transaction");
        let r = self.answer();
        let ok = match &r {
            Err(xenstore::Error::Xs(XsError::ENOENT)) | Ok(()) => true,
            Err(e) => {
                self.last_err = Some(e.clone());
                false
            }
        };
        self.log.push((Call::Rm(tx.0, path.into()), ok));
        r
    }
    fn tx_end(&mut self, tx: TxId, commit: bool) -> Result<(), xenstore::Error> {
        assert_eq!(
            Some(tx.0),
            self.open.take(),
            "end of a transaction not open"
        );
        let r = self.answer();
        self.log.push((Call::End(tx.0, commit), r.is_ok()));
        if let (Err(e), true) = (&r, commit) {
            self.last_err = Some(e.clone());
        }
        r
    }
}

fn keys(inp: &mut Input<'_>) {
    let mut k = Keys::new();
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut removes: Vec<String> = Vec::new();
    for _ in 0..inp.below(24) {
        let name = key_name(inp);
        match inp.u8() % 5 {
            0 | 1 => {
                let v = inp.bytes(12).to_vec();
                k.set(&name, &v);
                match writes.iter_mut().find(|(n, _)| *n == name) {
                    Some(w) => w.1 = v,
                    None => writes.push((name.clone(), v)),
                }
                removes.retain(|r| *r != name);
            }
            2 => {
                let n = inp.u64();
                k.set_u64(&name, n);
                let v = n.to_string().into_bytes();
                match writes.iter_mut().find(|(w, _)| *w == name) {
                    Some(w) => w.1 = v,
                    None => writes.push((name.clone(), v)),
                }
                removes.retain(|r| *r != name);
            }
            3 => {
                let s = XenbusState::ALL[inp.below(9)];
                k.set_state(s);
                let v = s.value().to_vec();
                match writes.iter_mut().find(|(w, _)| w == "state") {
                    Some(w) => w.1 = v,
                    None => writes.push(("state".into(), v)),
                }
                removes.retain(|r| r != "state");
            }
            _ => {
                k.remove(&name);
                writes.retain(|(w, _)| *w != name);
                if !removes.contains(&name) {
                    removes.push(name);
                }
            }
        }
        let got: Vec<(String, Vec<u8>)> = k
            .writes()
            .map(|(a, b)| (a.to_string(), b.to_vec()))
            .collect();
        assert_eq!(got, writes);
        assert_eq!(k.removes().collect::<Vec<_>>(), removes);
    }
    let dir = if inp.bool() {
        "device/vbd/51712".to_string()
    } else {
        String::from_utf8_lossy(inp.bytes(20)).into_owned()
    };
    let max = inp.below(12) as u32;
    let valid = writes
        .iter()
        .map(|w| &w.0)
        .chain(&removes)
        .all(|k| key_ok(k));
    let mut st = Script {
        inp,
        open: None,
        next: 0,
        log: Vec::new(),
        last_err: None,
    };
    let r = write_keys(&mut st, &dir, &k, max);
    assert!(st.open.is_none(), "transaction left open");
    let starts = st.log.iter().filter(|c| c.0 == Call::Start).count() as u32;
    assert!(starts <= max, "{starts} attempts of {max}");
    // Each attempt: start, removals, writes in order until one fails, one
    // end: a commit after all of them, else an abort.
    let want_calls: Vec<Call> = removes
        .iter()
        .map(|r| Call::Rm(0, format!("{dir}/{r}")))
        .chain(
            writes
                .iter()
                .map(|(w, _)| Call::Write(0, format!("{dir}/{w}"))),
        )
        .collect();
    let mut i = 0;
    let mut committed = false;
    while i < st.log.len() {
        let (c, ok) = &st.log[i];
        assert_eq!(*c, Call::Start);
        i += 1;
        if !ok {
            continue;
        }
        let mut n = 0;
        let mut failed = false;
        while let Some((c @ (Call::Write(..) | Call::Rm(..)), ok)) = st.log.get(i) {
            assert!(!failed, "a call after a failed one");
            // (The store checks each call's transaction id.)
            let c = match c.clone() {
                Call::Write(_, p) => Call::Write(0, p),
                Call::Rm(_, p) => Call::Rm(0, p),
                _ => unreachable!(),
            };
            assert_eq!(Some(&c), want_calls.get(n), "calls out of order");
            failed = !ok;
            n += 1;
            i += 1;
        }
        match st.log.get(i) {
            Some((Call::End(_, commit), ok)) => {
                assert_eq!(*commit, !failed && n == want_calls.len(), "commit or abort");
                assert!(failed || n == want_calls.len(), "stopped early");
                committed = *commit && *ok;
                i += 1;
            }
            other => panic!("attempt not ended: {other:?}"),
        }
    }
    match r {
        Ok(n) => {
            assert!(valid);
            assert_eq!(n, starts);
            assert!(committed && n >= 1 && n <= max);
        }
        Err(XenbusError::BadKey(b)) => {
            assert!(!valid && !key_ok(&b), "{b:?}");
            assert!(st.log.is_empty(), "a bad key reached the store");
        }
        Err(XenbusError::TooManyRetries { dir: d, attempts }) => {
            assert!(valid);
            assert_eq!((d.as_str(), attempts, starts), (dir.as_str(), max, max));
            let _ = XenbusError::TooManyRetries { dir: d, attempts }.to_string();
        }
        Err(XenbusError::Store(e)) => {
            assert!(valid);
            assert_ne!(e, xenstore::Error::Xs(XsError::EAGAIN));
            assert_eq!(Some(e), st.last_err, "not the store's last error");
        }
        Err(e) => panic!("{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 4 {
        0 => state(&mut inp),
        1 => discovery(&mut inp),
        2 => fsm(&mut inp),
        _ => keys(&mut inp),
    }
});
