//! The demo ring endpoints' main loops, independent of the devices so that
//! host tests can run a frontend against a backend over one page, with a
//! fake event channel between two threads.

use std::io;
use std::time::{Duration, Instant};

use crate::demo::{answer, BadResponse, Msg, Tracker};
use crate::evtchn::Evtchn;
use crate::ring::{BackRing, FrontRing, RingError};

/// One end of an event channel.
pub trait Channel {
    /// Signal the other end.
    fn notify(&mut self) -> io::Result<()>;
    /// Wait for a signal from the other end; `false` on timeout.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool>;
}

/// A bound `/dev/xen/evtchn` port.
pub struct PortChannel<'a> {
    pub ev: &'a Evtchn,
    pub port: u32,
}

impl Channel for PortChannel<'_> {
    fn notify(&mut self) -> io::Result<()> {
        self.ev.notify(self.port)
    }
    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        // Only one port is bound per device handle in these tools.
        Ok(self.ev.wait(timeout)?.is_some())
    }
}

// ---- backend --------------------------------------------------------------

/// Deliberate misbehaviour, to test the guest's validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// When about to answer request number `at` (0-based), publish an
    /// `rsp_prod` beyond anything the guest sent, notify, and stop.
    BadIndex {
        at: u64,
    },
    /// Answer request number `at` with id `!id` (never used by the guest).
    BadId {
        at: u64,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct BackCfg {
    /// Stop after answering this many requests.
    pub count: Option<u64>,
    /// Stop after this long without an event and without work.
    pub idle: Duration,
    /// Stop abruptly (caller exits) after answering this many.
    pub die_after: Option<u64>,
    pub fault: Fault,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackStats {
    pub answered: u64,
    pub notifies: u64,
    pub events: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackEnd {
    /// `count` requests answered.
    Count,
    /// Nothing happened for `idle`.
    Idle,
    /// The frontend's `req_prod` was out of range.
    Protocol(RingError),
    /// `die_after` reached: responses pushed, caller should `_exit` now.
    Die,
    /// `Fault::BadIndex` done: `value` published.
    BadIndexPublished { value: u32, req_cons: u32 },
}

/// Serve the demo protocol until one of the [`BackEnd`] conditions.
/// `log` receives progress lines worth printing (fault injections).
pub fn serve_back(
    ring: &mut BackRing<'_, Msg, Msg>,
    ch: &mut dyn Channel,
    cfg: &BackCfg,
    log: &mut dyn FnMut(&str),
) -> io::Result<(BackEnd, BackStats)> {
    let mut st = BackStats::default();
    if cfg.die_after == Some(0) {
        return Ok((BackEnd::Die, st));
    }
    loop {
        let reqs = match ring.take_requests() {
            Ok(r) => r,
            Err(e) => return Ok((BackEnd::Protocol(e), st)),
        };
        for req in &reqs {
            let n = st.answered;
            match cfg.fault {
                Fault::BadIndex { at } if at == n => {
                    if ring.push_responses() {
                        ch.notify()?;
                        st.notifies += 1;
                    }
                    let req_cons = ring.req_cons();
                    let value = req_cons.wrapping_add(ring.size()).wrapping_add(1);
                    ring.publish_raw_rsp_prod(value);
                    ch.notify()?;
                    st.notifies += 1;
                    return Ok((BackEnd::BadIndexPublished { value, req_cons }, st));
                }
                Fault::BadId { at } if at == n => {
                    let mut r = answer(req);
                    r.id = !req.id;
                    ring.respond(&r);
                    log(&format!(
                        "sent bad id {:#x} for request id {:#x}",
                        r.id, req.id
                    ));
                }
                _ => ring.respond(&answer(req)),
            }
            st.answered += 1;
            if cfg.die_after == Some(st.answered) {
                if ring.push_responses() {
                    ch.notify()?;
                    st.notifies += 1;
                }
                return Ok((BackEnd::Die, st));
            }
        }
        if !reqs.is_empty() && ring.push_responses() {
            ch.notify()?;
            st.notifies += 1;
        }
        if cfg.count.is_some_and(|c| st.answered >= c) {
            return Ok((BackEnd::Count, st));
        }
        if !reqs.is_empty() || ring.final_check_requests() {
            continue;
        }
        if ch.wait(cfg.idle)? {
            st.events += 1;
        } else {
            return Ok((BackEnd::Idle, st));
        }
    }
}

// ---- frontend -------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub struct FrontCfg {
    /// Give up after this long without any response.
    pub timeout: Duration,
    /// While waiting, re-notify at this interval (the first notify may have
    /// been sent before the guest bound the port).
    pub kick: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    pub notifies: u64,
    pub events: u64,
    pub kicks: u64,
}

#[derive(Debug)]
pub enum FrontError {
    Ring(RingError),
    Bad(BadResponse),
    Timeout(Duration),
    Io(io::Error),
}

impl std::fmt::Display for FrontError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrontError::Ring(e) => write!(f, "protocol error: {e}"),
            FrontError::Bad(e) => write!(f, "bad response: {e}"),
            FrontError::Timeout(d) => write!(f, "no response for {} ms", d.as_millis()),
            FrontError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// Send every request of `t`, keeping the ring as full as it gets, and
/// check every response. On error `t` tells how far it got.
pub fn run_front(
    ring: &mut FrontRing<'_, Msg, Msg>,
    ch: &mut dyn Channel,
    t: &mut Tracker,
    cfg: &FrontCfg,
) -> Result<FrontStats, FrontError> {
    let mut st = FrontStats::default();
    let mut last_progress = Instant::now();
    while !t.done() {
        let mut produced = 0;
        while let Some(req) = t.next_request() {
            if !ring.produce(&req) {
                t.unsend();
                break;
            }
            produced += 1;
        }
        if produced > 0 && ring.push_requests() {
            ch.notify().map_err(FrontError::Io)?;
            st.notifies += 1;
        }
        let rsps = ring.take_responses().map_err(FrontError::Ring)?;
        for r in &rsps {
            t.check(r).map_err(FrontError::Bad)?;
        }
        if !rsps.is_empty() {
            last_progress = Instant::now();
        }
        if t.done() {
            break;
        }
        if produced > 0 || !rsps.is_empty() || ring.final_check_responses() {
            continue;
        }
        if ch.wait(cfg.kick).map_err(FrontError::Io)? {
            st.events += 1;
        } else {
            if last_progress.elapsed() >= cfg.timeout {
                return Err(FrontError::Timeout(cfg.timeout));
            }
            ch.notify().map_err(FrontError::Io)?;
            st.kicks += 1;
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::ID_BASE;
    use crate::shmem::TestPage;
    use std::sync::{Arc, Condvar, Mutex};

    /// Two ends of a fake event channel between threads.
    struct Fake {
        me: usize,
        st: Arc<(Mutex<[u32; 2]>, Condvar)>,
    }

    fn pair() -> (Fake, Fake) {
        let st = Arc::new((Mutex::new([0; 2]), Condvar::new()));
        (
            Fake {
                me: 0,
                st: st.clone(),
            },
            Fake { me: 1, st },
        )
    }

    impl Channel for Fake {
        fn notify(&mut self) -> io::Result<()> {
            let (m, c) = &*self.st;
            m.lock().unwrap()[1 - self.me] += 1;
            c.notify_all();
            Ok(())
        }
        fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
            let (m, c) = &*self.st;
            let g = m.lock().unwrap();
            let (mut g, _) = c
                .wait_timeout_while(g, timeout, |p| p[self.me] == 0)
                .unwrap();
            let fired = g[self.me] > 0;
            g[self.me] = 0;
            Ok(fired)
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn back_cfg() -> BackCfg {
        BackCfg {
            count: None,
            idle: MS(300),
            die_after: None,
            fault: Fault::None,
        }
    }

    fn front_cfg() -> FrontCfg {
        FrontCfg {
            timeout: MS(300),
            kick: MS(20),
        }
    }

    /// Run a front (`total` requests) and a back over one page.
    fn run(
        total: u32,
        bc: BackCfg,
        fc: FrontCfg,
    ) -> (
        Result<FrontStats, FrontError>,
        Tracker,
        (BackEnd, BackStats),
        Vec<String>,
    ) {
        let mut page = TestPage::new();
        let mem = page.mem();
        let mut front: FrontRing<Msg, Msg> = FrontRing::init(mem);
        let mut back: BackRing<Msg, Msg> = BackRing::attach(mem);
        let (mut fch, mut bch) = pair();
        let mut t = Tracker::new(total);
        std::thread::scope(|s| {
            let b = s.spawn(move || {
                let mut lines = Vec::new();
                let r = serve_back(&mut back, &mut bch, &bc, &mut |l| lines.push(l.to_string()))
                    .unwrap();
                (r, lines)
            });
            let fr = run_front(&mut front, &mut fch, &mut t, &fc);
            let (br, lines) = b.join().unwrap();
            (fr, t, br, lines)
        })
    }

    #[test]
    fn many_more_requests_than_slots() {
        let bc = BackCfg {
            count: Some(5000),
            ..back_cfg()
        };
        let (fr, t, (end, bs), _) = run(5000, bc, front_cfg());
        fr.unwrap();
        assert!(t.done());
        assert_eq!(end, BackEnd::Count);
        assert_eq!(bs.answered, 5000);
    }

    /// No kicks: every wakeup must come from the ring's notify rules (a lost
    /// wakeup would stall for the 10 s kick interval).
    #[test]
    fn no_lost_wakeups() {
        let start = Instant::now();
        let bc = BackCfg {
            count: Some(20_000),
            idle: MS(10_000),
            ..back_cfg()
        };
        let fc = FrontCfg {
            timeout: MS(10_000),
            kick: MS(10_000),
        };
        let (fr, _, (end, _), _) = run(20_000, bc, fc);
        let st = fr.unwrap();
        assert_eq!(end, BackEnd::Count);
        assert_eq!(st.kicks, 0);
        assert!(start.elapsed() < MS(5_000), "{:?}", start.elapsed());
    }

    #[test]
    fn back_goes_idle_after_front_is_done() {
        let (fr, t, (end, bs), _) = run(10, back_cfg(), front_cfg());
        fr.unwrap();
        assert_eq!(t.answered(), 10);
        assert_eq!((end, bs.answered), (BackEnd::Idle, 10));
    }

    #[test]
    fn bad_id_is_caught_by_the_front() {
        let bc = BackCfg {
            fault: Fault::BadId { at: 3 },
            ..back_cfg()
        };
        let (fr, t, (end, _), lines) = run(100, bc, front_cfg());
        let bad = !(ID_BASE + 3);
        match fr {
            Err(FrontError::Bad(BadResponse::UnknownId(id))) => assert_eq!(id, bad),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.answered(), 3);
        assert_eq!(end, BackEnd::Idle);
        assert_eq!(
            lines,
            vec![format!(
                "sent bad id {bad:#x} for request id {:#x}",
                ID_BASE + 3
            )]
        );
    }

    #[test]
    fn bad_index_is_caught_by_the_front() {
        let bc = BackCfg {
            fault: Fault::BadIndex { at: 7 },
            ..back_cfg()
        };
        let (fr, t, (end, _), _) = run(100, bc, front_cfg());
        assert!(
            matches!(fr, Err(FrontError::Ring(RingError::BadRspProd { .. }))),
            "{fr:?}"
        );
        assert!(t.answered() <= 7);
        assert!(matches!(end, BackEnd::BadIndexPublished { .. }));
    }

    #[test]
    fn dead_backend_times_the_front_out() {
        let bc = BackCfg {
            die_after: Some(300),
            ..back_cfg()
        };
        let (fr, t, (end, bs), _) = run(1000, bc, front_cfg());
        assert!(matches!(fr, Err(FrontError::Timeout(_))), "{fr:?}");
        assert_eq!((end, bs.answered), (BackEnd::Die, 300));
        assert_eq!(t.answered(), 300);
        assert_eq!(t.missing(1), vec![ID_BASE + 300]);
    }

    #[test]
    fn back_rejects_overfull_front() {
        let mut page = TestPage::new();
        let mem = page.mem();
        let _f: FrontRing<Msg, Msg> = FrontRing::init(mem);
        mem.store_u32(crate::ring::REQ_PROD, 1000);
        let mut back: BackRing<Msg, Msg> = BackRing::attach(mem);
        let (_a, mut b) = pair();
        let (end, _) = serve_back(&mut back, &mut b, &back_cfg(), &mut |_| {}).unwrap();
        assert!(matches!(
            end,
            BackEnd::Protocol(RingError::BadReqProd { req_prod: 1000, .. })
        ));
    }

    #[test]
    fn zero_requests_is_immediately_done() {
        let (fr, t, _, _) = run(
            0,
            BackCfg {
                idle: MS(10),
                ..back_cfg()
            },
            front_cfg(),
        );
        assert_eq!(fr.unwrap(), FrontStats::default());
        assert!(t.done());
    }
}
