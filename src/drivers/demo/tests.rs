use super::*;
use crate::drivers::fake_evtchn::{pair, End};
use crate::shared::TestPages;
use crate::xen_abi::ring::{REQ_PROD, RSP_PROD};
use std::collections::HashSet;

impl PeerProbe for End {
    fn peer_gone(&self, _port: u32) -> bool {
        self.peer_closed()
    }
}

const SEC: u64 = 1_000_000_000;

#[test]
fn layout() {
    assert_eq!(core::mem::size_of::<DemoMsg>(), 12);
    let p = TestPages::new(1);
    let f = DemoFront::new(p.mem(), 1).unwrap();
    assert_eq!(f.slots(), 256);
    let m = DemoMsg {
        id: 0x0403_0201,
        status: 0x0807_0605,
        operation: 0x0c0b_0a09,
    };
    p.mem().write(64, m);
    let mut b = [0u8; 12];
    p.mem().copy_out(64, &mut b);
    assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn ids_are_distinct_and_slots_reused() {
    let p = TestPages::new(1);
    let (fe, _be) = pair();
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    let mut back = BackRing::<DemoMsg, DemoMsg>::attach(p.mem()).unwrap();
    let mut ids = HashSet::new();
    for round in 0..40u32 {
        while let Some(id) = f.try_send(round, 1).unwrap() {
            assert!(ids.insert(id), "id {id:#x} reused");
        }
        assert_eq!(f.outstanding(), 256);
        f.flush(&fe);
        while let Some(r) = back.take_request().unwrap() {
            back.push_response(answer(r)).unwrap();
        }
        back.push_responses_and_check_notify();
        while f.poll().unwrap().is_some() {}
        assert_eq!(f.outstanding(), 0);
    }
    assert_eq!(ids.len(), 40 * 256);
}

/// Front and back on two threads, 10 000 requests through 256 slots.
#[test]
fn two_threads_10000_requests() {
    const N: u64 = 10_000;
    let p = TestPages::new(1);
    let (fe, be) = pair();
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    p.mem().store_u8(ALIVE_OFFSET, 1);
    let (fs, bs) = std::thread::scope(|s| {
        let mem = p.mem();
        let back = s.spawn(move || {
            let mut b = DemoBack::attach(mem, 2, true).unwrap();
            let end = b.serve(&be, None, 30 * SEC).unwrap();
            assert_eq!(end, BackEnd::FrontGone);
            b.stats()
        });
        let fs = f.run(&fe, 0, N, 30 * SEC).unwrap();
        // Front leaves: alive byte cleared + last event (gntalloc notify).
        p.mem().store_u8(ALIVE_OFFSET, 0);
        fe.notify(1);
        (fs, back.join().unwrap())
    });
    assert_eq!(fs.sent, N);
    assert_eq!(fs.completed, N);
    assert_eq!(bs.answered, N);
    assert_eq!(fs.notifies, fe.sent() - 1);
    assert!(fs.notifies <= N, "notifications {}", fs.notifies);
    eprintln!(
        "demo 2 threads: {N} requests, {} front notifies ({:.3}/req), {} back notifies, {} front waits",
        fs.notifies,
        fs.notifies as f64 / N as f64,
        bs.notifies,
        fs.waits
    );
}

/// Manual backend helper: consume all requests.
fn take_all(b: &mut BackRing<'_, DemoMsg, DemoMsg>) -> Vec<DemoMsg> {
    let mut v = Vec::new();
    while let Some(r) = b.take_request().unwrap() {
        v.push(r);
    }
    v
}

/// Front and a manual back over `p`, `n` requests sent and taken.
fn setup(
    p: &TestPages,
    n: u32,
) -> (
    DemoFront<'_>,
    BackRing<'_, DemoMsg, DemoMsg>,
    Vec<DemoMsg>,
    End,
) {
    let (fe, _be) = pair();
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    for i in 0..n {
        f.try_send(i * 10, i % 3).unwrap().unwrap();
    }
    f.flush(&fe);
    let mut b = BackRing::attach(p.mem()).unwrap();
    let reqs = take_all(&mut b);
    assert_eq!(reqs.len(), n as usize);
    (f, b, reqs, fe)
}

#[test]
fn bad_rsp_prod_disconnects() {
    let p = TestPages::new(1);
    let (mut f, _b, _reqs, fe) = setup(&p, 3);
    p.mem().store_u32(RSP_PROD, 3 + 256 + 1);
    let e = f.poll().unwrap_err();
    assert!(
        matches!(e, DemoError::Ring(RingError::BadIndex { .. })),
        "{e}"
    );
    // Sticky: even a corrected index does not reconnect.
    p.mem().store_u32(RSP_PROD, 0);
    assert_eq!(f.poll(), Err(e));
    assert_eq!(f.run(&fe, 0, 10, SEC), Err(e));
    assert_eq!(f.try_send(0, 0), Err(e));
    assert!(format!("{e}").starts_with("protocol error:"));
}

#[test]
fn unknown_id_disconnects() {
    let p = TestPages::new(1);
    let (mut f, mut b, reqs, _fe) = setup(&p, 2);
    let mut r = answer(reqs[0]);
    r.id = !r.id;
    b.push_response(r).unwrap();
    b.push_responses_and_check_notify();
    assert_eq!(f.poll(), Err(DemoError::UnknownId(!reqs[0].id)));
    assert_eq!(f.failed(), Some(DemoError::UnknownId(!reqs[0].id)));
}

#[test]
fn duplicate_id_disconnects() {
    let p = TestPages::new(1);
    let (mut f, mut b, reqs, _fe) = setup(&p, 2);
    b.push_response(answer(reqs[0])).unwrap();
    b.push_response(answer(reqs[0])).unwrap();
    b.push_responses_and_check_notify();
    assert_eq!(f.poll(), Ok(Some(reqs[0])));
    assert_eq!(f.poll(), Err(DemoError::Duplicate(reqs[0].id)));
}

#[test]
fn wrong_status_and_operation_disconnect() {
    let p = TestPages::new(1);
    let (mut f, mut b, reqs, _fe) = setup(&p, 2);
    b.push_response(reqs[1]).unwrap(); // status not incremented
    b.push_responses_and_check_notify();
    assert_eq!(
        f.poll(),
        Err(DemoError::WrongStatus {
            id: reqs[1].id,
            got: 10,
            want: 11
        })
    );
    let p = TestPages::new(1);
    let (mut f, mut b, reqs, _fe) = setup(&p, 2);
    b.push_response(DemoMsg {
        operation: 9,
        ..answer(reqs[1])
    })
    .unwrap();
    b.push_responses_and_check_notify();
    assert_eq!(
        f.poll(),
        Err(DemoError::WrongOperation {
            id: reqs[1].id,
            got: 9,
            want: 1
        })
    );
}

/// Like xf-ring-back --die-after 100: answers 100, then its port closes
/// and the unmap notify delivers one last event.
#[test]
fn backend_dies_mid_run() {
    let p = TestPages::new(1);
    let (fe, be) = pair();
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    std::thread::scope(|s| {
        let mem = p.mem();
        s.spawn(move || {
            let mut b = DemoBack::attach(mem, 2, false).unwrap();
            assert_eq!(b.serve(&be, Some(100), 30 * SEC), Ok(BackEnd::Count));
            be.close(true);
        });
        let t0 = std::time::Instant::now();
        assert_eq!(
            f.run(&fe, 0, 1000, 30 * SEC),
            Err(DemoError::PeerGone { done: 100 })
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    });
}

/// A backend that never answers and never goes away: bounded timeout.
#[test]
fn silent_backend_times_out() {
    let p = TestPages::new(1);
    let (fe, _be) = pair();
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    let e = f.run(&fe, 0, 10, SEC / 5).unwrap_err();
    assert!(matches!(e, DemoError::Timeout { done: 0, .. }), "{e}");
}

#[test]
fn backend_sees_bad_req_prod_and_front_leaving() {
    let p = TestPages::new(1);
    let (fe, be) = pair();
    let _f = DemoFront::new(p.mem(), 1).unwrap();
    p.mem().store_u8(ALIVE_OFFSET, 1);
    let mut b = DemoBack::attach(p.mem(), 2, true).unwrap();
    p.mem().store_u32(REQ_PROD, 257);
    let e = b.serve(&be, None, SEC).unwrap_err();
    assert!(
        matches!(e, DemoError::Ring(RingError::BadIndex { .. })),
        "{e}"
    );
    assert_eq!(b.serve(&be, None, SEC), Err(e));

    let p = TestPages::new(1);
    let mut f = DemoFront::new(p.mem(), 1).unwrap();
    p.mem().store_u8(ALIVE_OFFSET, 1);
    let mut b = DemoBack::attach(p.mem(), 2, true).unwrap();
    f.try_send(1, 2).unwrap();
    f.flush(&fe);
    // The front is gone but its last request is still answered.
    p.mem().store_u8(ALIVE_OFFSET, 0);
    assert_eq!(b.serve(&be, None, SEC), Ok(BackEnd::FrontGone));
    assert_eq!(b.stats().answered, 1);
    // Without the flag (never set) and no events: idle timeout.
    let p = TestPages::new(1);
    let _f = DemoFront::new(p.mem(), 1).unwrap();
    let mut b = DemoBack::attach(p.mem(), 2, false).unwrap();
    assert!(matches!(
        b.serve(&be, None, SEC / 5),
        Err(DemoError::Timeout { .. })
    ));
}

/// A hostile frontend that puts a full ring of new requests up every time
/// the backend looks (each round starts by clearing the port's event),
/// and at some point says it is gone (its event channel closed) while it
/// keeps producing: the backend must publish as it goes and notice the
/// frontend leaving, not spin answering for ever.
struct Flood {
    mem: SharedMem<'static>,
    prod: core::sync::atomic::AtomicU32,
    rounds: core::sync::atomic::AtomicU32,
    gone_after: u32,
}

impl Flood {
    fn refill(&self) {
        use core::sync::atomic::Ordering::Relaxed;
        let prod = self.prod.load(Relaxed);
        for k in 0..256u32 {
            let i = prod.wrapping_add(k);
            let m = DemoMsg {
                id: i,
                status: 0,
                operation: 7,
            };
            self.mem.write(64 + (i % 256) as usize * 12, m);
        }
        self.prod.store(prod.wrapping_add(256), Relaxed);
        self.mem.store_u32(REQ_PROD, prod.wrapping_add(256));
    }
}

impl Events for Flood {
    fn notify(&self, _port: u32) {}
    fn clear(&self, _port: u32) {
        self.rounds
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        self.refill();
    }
    fn wait(&self, _port: u32, _deadline: u64) {}
    fn now_ns(&self) -> u64 {
        0
    }
}

impl PeerProbe for Flood {
    fn peer_gone(&self, _port: u32) -> bool {
        self.rounds.load(core::sync::atomic::Ordering::Relaxed) >= self.gone_after
    }
}

#[test]
fn endless_producer_does_not_pin_the_backend() {
    // Leaked: the backend thread is detached (if it spins for ever, the
    // test fails below instead of hanging), so the page must outlive it.
    let p: &'static TestPages = Box::leak(Box::new(TestPages::new(1)));
    let _f = DemoFront::new(p.mem(), 1).unwrap();
    let flood = std::sync::Arc::new(Flood {
        mem: p.mem(),
        prod: Default::default(),
        rounds: Default::default(),
        gone_after: 100,
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let (mem, mem2, f) = (p.mem(), p.mem(), flood.clone());
    std::thread::spawn(move || {
        let mut b = DemoBack::attach(mem, 2, false).unwrap();
        let r = b.serve(&*f, None, 30 * SEC);
        let _ = tx.send((r, b.stats()));
    });
    let (end, st) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the backend kept answering a flooding frontend that had left");
    assert_eq!(end, Ok(BackEnd::FrontGone));
    assert!(st.answered >= 99 * 256, "{st:?}");
    // Every answer was published on the page, not kept private.
    assert_eq!(u64::from(mem2.load_u32(RSP_PROD)), st.answered);
}
