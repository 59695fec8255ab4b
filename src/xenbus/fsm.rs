//! The frontend side of the XenBus handshake as a pure, event-driven
//! state machine: [`Frontend`] is told the backend's state (and the time)
//! and answers with the one [`Action`] the driver must carry out next. It
//! issues no XenStore request itself, so every transition, including a
//! hostile backend's, is host-tested.
//!
//! Where the rules come from: xenbus.h (the states), blkif.h/netif.h (node
//! docs), Linux 6.1 `xen-blkfront.c` `blkback_changed` (InitWait → talk to
//! the backend; Connected → connect; Closing → close), and
//! `xen-blkback/xenbus.c` `frontend_changed` (connects when the frontend
//! is Initialised *or* Connected; mirrors Closing/Closed; a frontend going
//! Closed → Initialising makes a Closed backend return to InitWait).
//!
//! # Driving it
//!
//! Level-triggered: feed the backend's *current* state whenever its watch
//! fires, and again after carrying out any action other than
//! [`Action::Wait`] (the backend may have moved while we worked, and a
//! state it already had does not fire the watch again). Feeding the same
//! state twice is harmless. Between events, sleep until the watch fires or
//! [`Frontend::deadline`], then call [`Frontend::on_deadline`].
//!
//! ```text
//! a = fe.start(now)
//! loop:
//!     match a:
//!         Wait { deadline_ns }  → sleep until the backend-state watch fires
//!                                 or deadline_ns; a = fe.on_deadline(now);
//!                                 if that is still Wait, feed (below)
//!         SetState(s)           → write our state s; feed
//!         WriteKeys { state }   → grant the rings, alloc the port, write the
//!                                 keys + state in one transaction
//!                                 (write_keys); feed
//!         Connect { write_connected } → read the backend's properties,
//!                                 write Connected if asked; feed
//!         Closing               → issue no new I/O, write Closing; feed
//!         Closed { error }      → fail in-flight I/O, revoke grants
//!                                 (deferred while mapped), close the port,
//!                                 write Closed; feed; stop (or start again)
//!     if a step failed: a = fe.fail(e, now)
//! feed: a = fe.on_backend_value(<backend>/state, its value or None, now)
//! ```

extern crate alloc;

use super::{XenbusError, XenbusState};

/// The state a frontend announces together with its keys: blkfront writes
/// `Initialised` and goes `Connected` after the backend did (Linux
/// blkfront); netfront goes straight to `Connected`, because Linux netback
/// connects only to a Connected frontend (`devices.md` §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectState {
    /// Keys + `Initialised`; `Connected` once the backend is.
    Initialised,
    /// Keys + `Connected` at once.
    Connected,
}

impl ConnectState {
    /// The state written with the keys.
    pub fn state(self) -> XenbusState {
        match self {
            ConnectState::Initialised => XenbusState::Initialised,
            ConnectState::Connected => XenbusState::Connected,
        }
    }
}

/// How long each wait for the backend may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From writing `Initialising` until the backend is `InitWait` (also
    /// the wait for a stale backend to let go before a reconnect).
    pub init_wait_ns: u64,
    /// From writing the keys until the backend is `Connected`. Linux
    /// blkback connects only once its hotplug script wrote
    /// `physical-device`, so this includes the script's run.
    pub connect_ns: u64,
    /// From writing `Closing` until the backend follows.
    pub close_ns: u64,
}

impl Default for Timeouts {
    /// 10 s, 30 s (hotplug scripts under nested QEMU are slow), 10 s.
    fn default() -> Self {
        Timeouts {
            init_wait_ns: 10_000_000_000,
            connect_ns: 30_000_000_000,
            close_ns: 10_000_000_000,
        }
    }
}

/// Where the frontend is in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started, or down (after an error or an orderly close; our
    /// state is `Closed`). [`Frontend::start`] connects (again).
    Closed,
    /// We wrote `Closed` to make a backend still holding an earlier
    /// connection let go; waiting for it to be `Closed` (or `InitWait`)
    /// before writing `Initialising` (blkback returns to InitWait only
    /// from Closed).
    Resetting,
    /// We wrote `Initialising`; waiting for the backend's `InitWait`.
    Initialising,
    /// Keys written with our `Initialised`/`Connected`; waiting for the
    /// backend's `Connected`.
    WaitConnected,
    /// Both ends connected.
    Connected,
    /// We wrote `Closing`; waiting for the backend to follow.
    Closing,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: wait for the backend's state to change, or until
    /// `deadline_ns` (then call [`Frontend::on_deadline`]); `None` means
    /// no deadline (connected, or down).
    Wait {
        /// When the current wait gives up.
        deadline_ns: Option<u64>,
    },
    /// Write our `state` key.
    SetState(XenbusState),
    /// Grant the rings, allocate the event channel, and write the
    /// connection keys together with our `state` = `state` in one
    /// transaction ([`write_keys`](super::write_keys)).
    WriteKeys {
        /// The state to write with the keys.
        state: XenbusState,
    },
    /// The backend is connected: read its properties (blkfront: `sectors`,
    /// `info`, `sector-size`, features), and write our state `Connected`
    /// if `write_connected`.
    Connect {
        /// Whether our state still has to become `Connected`.
        write_connected: bool,
    },
    /// Our close: issue no new I/O, write our state `Closing`.
    Closing,
    /// Down: fail the requests in flight (with `error`, or "closed"),
    /// revoke the ring and data grants (deferred while the backend still
    /// maps them), close the event channel, write our state `Closed`.
    Closed {
        /// Why, unless it was our own orderly close.
        error: Option<XenbusError>,
    },
}

/// The frontend state machine of one device (see the module doc).
///
/// ```
/// use xenfront::xenbus::{Action, ConnectState, Frontend, Timeouts, XenbusState as S};
/// let mut fe = Frontend::new(ConnectState::Initialised, Timeouts::default());
/// assert_eq!(fe.start(0), Action::SetState(S::Initialising));
/// assert_eq!(fe.on_backend_state(S::InitWait, 1), Action::WriteKeys { state: S::Initialised });
/// assert_eq!(fe.on_backend_state(S::Connected, 2), Action::Connect { write_connected: true });
/// // `xl block-detach`: the backend closes, we go down with a named error.
/// assert!(matches!(fe.on_backend_state(S::Closing, 3), Action::Closed { error: Some(_) }));
/// ```
#[derive(Clone, Debug)]
pub struct Frontend {
    connect: ConnectState,
    timeouts: Timeouts,
    phase: Phase,
    /// When the current wait began.
    since_ns: u64,
    deadline_ns: Option<u64>,
    /// The backend's last state (`None`: not seen, or its key is gone).
    backend: Option<XenbusState>,
    /// The state our last action wrote (or asked to write).
    ours: Option<XenbusState>,
    /// Why the last connection (attempt) ended, if not by our close.
    error: Option<XenbusError>,
    connections: u32,
}

impl Frontend {
    /// A frontend that announces its keys with `connect`'s state, not
    /// started ([`Phase::Closed`]).
    pub fn new(connect: ConnectState, timeouts: Timeouts) -> Frontend {
        Frontend {
            connect,
            timeouts,
            phase: Phase::Closed,
            since_ns: 0,
            deadline_ns: None,
            backend: None,
            ours: None,
            error: None,
            connections: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The backend's last state seen (`None` before the first, or after
    /// its key disappeared or held garbage).
    pub fn backend_state(&self) -> Option<XenbusState> {
        self.backend
    }

    /// The state our last action wrote (`None` before the first).
    pub fn our_state(&self) -> Option<XenbusState> {
        self.ours
    }

    /// When the current wait gives up, if it can.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline_ns
    }

    /// Why the last connection (attempt) ended, unless by our close.
    pub fn error(&self) -> Option<&XenbusError> {
        self.error.as_ref()
    }

    /// How many times the backend got to `Connected` with us.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    fn enter(&mut self, phase: Phase, now_ns: u64, timeout_ns: Option<u64>) {
        self.phase = phase;
        self.since_ns = now_ns;
        self.deadline_ns = timeout_ns.map(|t| now_ns.saturating_add(t));
    }

    fn wait(&self) -> Action {
        Action::Wait {
            deadline_ns: self.deadline_ns,
        }
    }

    /// Carries out the bookkeeping of an action we return.
    fn act(&mut self, a: Action) -> Action {
        self.ours = match &a {
            Action::Wait { .. } => self.ours,
            Action::SetState(s) => Some(*s),
            Action::WriteKeys { state } => Some(*state),
            Action::Connect { .. } => Some(XenbusState::Connected),
            Action::Closing => Some(XenbusState::Closing),
            Action::Closed { .. } => Some(XenbusState::Closed),
        };
        a
    }

    /// Goes down with `error` (or after an orderly close, `None`).
    fn down(&mut self, error: Option<XenbusError>, now_ns: u64) -> Action {
        self.enter(Phase::Closed, now_ns, None);
        if error.is_some() {
            self.error.clone_from(&error);
        }
        self.act(Action::Closed { error })
    }

    /// Starts (or, from [`Phase::Closed`], restarts) the handshake: write
    /// `Initialising`, or first `Closed` if the backend still holds an
    /// earlier connection. In any other phase it is already under way
    /// ([`Action::Wait`]).
    pub fn start(&mut self, now_ns: u64) -> Action {
        if self.phase != Phase::Closed {
            return self.wait();
        }
        self.error = None;
        match self.backend {
            Some(XenbusState::Initialised | XenbusState::Connected | XenbusState::Closing) => {
                self.enter(Phase::Resetting, now_ns, Some(self.timeouts.init_wait_ns));
                self.act(Action::SetState(XenbusState::Closed))
            }
            _ => {
                self.enter(
                    Phase::Initialising,
                    now_ns,
                    Some(self.timeouts.init_wait_ns),
                );
                self.act(Action::SetState(XenbusState::Initialising))
            }
        }
    }

    /// The backend's state is `state` (level-triggered: call with the
    /// current value after each watch event and each action).
    pub fn on_backend_state(&mut self, state: XenbusState, now_ns: u64) -> Action {
        use XenbusState as S;
        self.backend = Some(state);
        let phase = self.phase;
        let reset = XenbusError::BackendReset { phase, state };
        match phase {
            Phase::Closed => self.wait(),
            Phase::Resetting => match state {
                S::Closed | S::InitWait | S::Unknown | S::Initialising => {
                    self.enter(
                        Phase::Initialising,
                        now_ns,
                        Some(self.timeouts.init_wait_ns),
                    );
                    self.act(Action::SetState(S::Initialising))
                }
                S::Initialised | S::Connected | S::Closing => self.wait(),
                S::Reconfiguring | S::Reconfigured => self.down(Some(reset), now_ns),
            },
            Phase::Initialising => match state {
                // Not there yet; a Closed backend returns to InitWait when
                // it sees our Initialising (blkback "prepare for reconnect").
                S::Unknown | S::Initialising | S::Closed => self.wait(),
                S::InitWait => {
                    self.enter(Phase::WaitConnected, now_ns, Some(self.timeouts.connect_ns));
                    self.act(Action::WriteKeys {
                        state: self.connect.state(),
                    })
                }
                // Linux blkfront treats Connected here as a missed InitWait;
                // but no backend connects to keys it has not seen, so this
                // is an earlier connection's (or a confused) backend.
                S::Initialised | S::Connected => {
                    self.down(Some(XenbusError::BackendAhead { state }), now_ns)
                }
                S::Closing => self.down(Some(XenbusError::BackendClosing { state }), now_ns),
                S::Reconfiguring | S::Reconfigured => self.down(Some(reset), now_ns),
            },
            Phase::WaitConnected => match state {
                // InitWait: hotplug not done yet (or the watch fired for the
                // state we answered); Initialised: a backend on its way.
                S::InitWait | S::Initialised => self.wait(),
                S::Connected => {
                    self.enter(Phase::Connected, now_ns, None);
                    self.connections += 1;
                    self.act(Action::Connect {
                        write_connected: self.connect == ConnectState::Initialised,
                    })
                }
                // The backend refused our keys (blkback xenbus_dev_fatal)
                // or is being detached.
                S::Closing | S::Closed => {
                    self.down(Some(XenbusError::BackendClosing { state }), now_ns)
                }
                S::Unknown | S::Initialising | S::Reconfiguring | S::Reconfigured => {
                    self.down(Some(reset), now_ns)
                }
            },
            Phase::Connected => match state {
                // Linux re-announces Connected for a resize; the driver may
                // re-read `sectors` on the watch event itself.
                S::Connected => self.wait(),
                // `xl block-detach`: the backend closes first (Linux
                // blkfront_closing goes straight to Closed).
                S::Closing | S::Closed => {
                    self.down(Some(XenbusError::BackendClosing { state }), now_ns)
                }
                // The ring is no longer served: the backend restarted.
                _ => self.down(Some(reset), now_ns),
            },
            Phase::Closing => match state {
                S::Closing | S::Closed => self.down(None, now_ns),
                _ => self.wait(),
            },
        }
    }

    /// The backend's `state` key vanished (`ENOENT`): the device was
    /// removed. Ends a connection (or attempt) with
    /// [`XenbusError::BackendGone`]; completes our own close.
    pub fn on_backend_gone(&mut self, now_ns: u64) -> Action {
        self.backend = None;
        match self.phase {
            Phase::Closed => self.wait(),
            Phase::Closing => self.down(None, now_ns),
            _ => self.down(Some(XenbusError::BackendGone), now_ns),
        }
    }

    /// The backend's `state` key `path` read as `value` (`None`: it does
    /// not exist). A value that is not a state is
    /// [`XenbusError::BadState`] and ends the connection: a backend that
    /// writes garbage cannot be trusted with our pages.
    pub fn on_backend_value(&mut self, path: &str, value: Option<&[u8]>, now_ns: u64) -> Action {
        let Some(v) = value else {
            return self.on_backend_gone(now_ns);
        };
        match XenbusState::parse(path, v) {
            Ok(s) => self.on_backend_state(s, now_ns),
            Err(e) => {
                self.backend = None;
                match self.phase {
                    Phase::Closed => self.wait(),
                    _ => self.down(Some(e), now_ns),
                }
            }
        }
    }

    /// The clock says `now_ns`: if the current wait's deadline has passed,
    /// give up with [`XenbusError::BackendNeverReached`] (naming the state
    /// waited for, the backend's last state and the time waited) and go
    /// down; otherwise [`Action::Wait`].
    pub fn on_deadline(&mut self, now_ns: u64) -> Action {
        let Some(deadline) = self.deadline_ns else {
            return self.wait();
        };
        if now_ns < deadline {
            return self.wait();
        }
        let state = match self.phase {
            Phase::Resetting => XenbusState::Closed,
            Phase::Initialising => XenbusState::InitWait,
            Phase::WaitConnected => XenbusState::Connected,
            Phase::Closing => XenbusState::Closing,
            Phase::Closed | Phase::Connected => return self.wait(),
        };
        let error = XenbusError::BackendNeverReached {
            state,
            seen: self.backend,
            waited_ms: now_ns.saturating_sub(self.since_ns) / 1_000_000,
        };
        self.down(Some(error), now_ns)
    }

    /// Our own, orderly close: once connected (or keys written), write
    /// `Closing` and wait for the backend to follow; before that there is
    /// nothing to tear down but our state (→ `Closed`). Drain in-flight
    /// I/O before calling this if it should complete.
    pub fn close(&mut self, now_ns: u64) -> Action {
        match self.phase {
            Phase::Connected | Phase::WaitConnected => {
                self.enter(Phase::Closing, now_ns, Some(self.timeouts.close_ns));
                self.act(Action::Closing)
            }
            Phase::Initialising | Phase::Resetting => self.down(None, now_ns),
            Phase::Closing | Phase::Closed => self.wait(),
        }
    }

    /// The driver failed to carry out an action (writing the keys,
    /// reading or validating the backend's properties, a bad response on
    /// the ring): go down with `error`. When already down, the error is
    /// only recorded.
    pub fn fail(&mut self, error: XenbusError, now_ns: u64) -> Action {
        if self.phase == Phase::Closed {
            self.error = Some(error);
            return self.wait();
        }
        self.down(Some(error), now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use XenbusState as S;

    const MS: u64 = 1_000_000;
    const T: Timeouts = Timeouts {
        init_wait_ns: 10_000 * MS,
        connect_ns: 30_000 * MS,
        close_ns: 5_000 * MS,
    };

    fn blk() -> Frontend {
        Frontend::new(ConnectState::Initialised, T)
    }

    fn wait(d: Option<u64>) -> Action {
        Action::Wait { deadline_ns: d }
    }

    fn closed(e: XenbusError) -> Action {
        Action::Closed { error: Some(e) }
    }

    /// Drives a fresh blkfront to `Connected` (backend Initialising →
    /// InitWait → Connected), starting at `t`.
    fn connected(t: u64) -> Frontend {
        let mut f = blk();
        assert_eq!(f.start(t), Action::SetState(S::Initialising));
        assert_eq!(
            f.on_backend_state(S::InitWait, t),
            Action::WriteKeys {
                state: S::Initialised
            }
        );
        assert_eq!(
            f.on_backend_state(S::Connected, t),
            Action::Connect {
                write_connected: true
            }
        );
        assert_eq!(f.phase(), Phase::Connected);
        f
    }

    #[test]
    fn blkfront_handshake() {
        let mut f = blk();
        assert_eq!(f.phase(), Phase::Closed);
        assert_eq!(f.on_deadline(u64::MAX), wait(None));
        assert_eq!(f.start(100), Action::SetState(S::Initialising));
        assert_eq!(f.our_state(), Some(S::Initialising));
        let d1 = Some(100 + T.init_wait_ns);
        assert_eq!(f.deadline(), d1);
        assert_eq!(f.start(101), wait(d1), "already started");
        assert_eq!(f.on_backend_state(S::Initialising, 200), wait(d1));
        assert_eq!(f.on_backend_state(S::Unknown, 200), wait(d1));
        assert_eq!(f.on_deadline(100 + T.init_wait_ns - 1), wait(d1));
        assert_eq!(
            f.on_backend_state(S::InitWait, 300),
            Action::WriteKeys {
                state: S::Initialised
            }
        );
        assert_eq!(f.phase(), Phase::WaitConnected);
        let d2 = Some(300 + T.connect_ns);
        // The watch fires again for states already answered.
        assert_eq!(f.on_backend_state(S::InitWait, 400), wait(d2));
        assert_eq!(f.on_backend_state(S::Initialised, 400), wait(d2));
        assert_eq!(
            f.on_backend_state(S::Connected, 500),
            Action::Connect {
                write_connected: true
            }
        );
        assert_eq!(f.our_state(), Some(S::Connected));
        assert_eq!(f.deadline(), None);
        assert_eq!(f.on_backend_state(S::Connected, 600), wait(None));
        assert_eq!(f.on_deadline(u64::MAX), wait(None));
        assert_eq!(f.connections(), 1);
        assert_eq!(f.error(), None);
    }

    #[test]
    fn netfront_goes_connected_with_its_keys() {
        let mut f = Frontend::new(ConnectState::Connected, T);
        f.start(0);
        assert_eq!(
            f.on_backend_state(S::InitWait, 0),
            Action::WriteKeys {
                state: S::Connected
            }
        );
        assert_eq!(f.our_state(), Some(S::Connected));
        assert_eq!(
            f.on_backend_state(S::Connected, 1),
            Action::Connect {
                write_connected: false
            }
        );
    }

    #[test]
    fn backend_never_reaches_initwait() {
        let mut f = blk();
        f.start(1_000 * MS);
        f.on_backend_state(S::Initialising, 2_000 * MS);
        let at = 1_000 * MS + T.init_wait_ns;
        assert_eq!(
            f.on_deadline(at + 7 * MS),
            closed(XenbusError::BackendNeverReached {
                state: S::InitWait,
                seen: Some(S::Initialising),
                waited_ms: 10_007
            })
        );
        assert_eq!(f.phase(), Phase::Closed);
        assert_eq!(f.our_state(), Some(S::Closed));
        assert!(matches!(
            f.error(),
            Some(XenbusError::BackendNeverReached { .. })
        ));
        // Never any state at all.
        let mut g = blk();
        g.start(0);
        assert_eq!(
            g.on_deadline(T.init_wait_ns),
            closed(XenbusError::BackendNeverReached {
                state: S::InitWait,
                seen: None,
                waited_ms: 10_000
            })
        );
    }

    #[test]
    fn hotplug_never_finishes() {
        let mut f = blk();
        f.start(0);
        f.on_backend_state(S::InitWait, 4_000 * MS);
        // The connect deadline runs from the keys, not from the start.
        assert_eq!(
            f.on_deadline(4_000 * MS + T.connect_ns - 1),
            wait(Some(4_000 * MS + T.connect_ns))
        );
        assert_eq!(
            f.on_deadline(4_000 * MS + T.connect_ns),
            closed(XenbusError::BackendNeverReached {
                state: S::Connected,
                seen: Some(S::InitWait),
                waited_ms: 30_000
            })
        );
    }

    #[test]
    fn backend_detach_then_reconnect() {
        let mut f = connected(0);
        assert_eq!(
            f.on_backend_state(S::Closing, 10),
            closed(XenbusError::BackendClosing { state: S::Closing })
        );
        assert_eq!(f.phase(), Phase::Closed);
        assert_eq!(f.on_backend_state(S::Closed, 11), wait(None));
        // Reconnect: the backend is Closed, so Initialising right away.
        assert_eq!(f.start(20), Action::SetState(S::Initialising));
        assert_eq!(f.error(), None, "cleared by start");
        assert_eq!(
            f.on_backend_state(S::Closed, 21),
            wait(Some(20 + T.init_wait_ns))
        );
        assert_eq!(
            f.on_backend_state(S::InitWait, 22),
            Action::WriteKeys {
                state: S::Initialised
            }
        );
        assert_eq!(
            f.on_backend_state(S::Connected, 23),
            Action::Connect {
                write_connected: true
            }
        );
        assert_eq!(f.connections(), 2);
        // Closed without Closing first (backend crashed its way down).
        assert_eq!(
            f.on_backend_state(S::Closed, 30),
            closed(XenbusError::BackendClosing { state: S::Closed })
        );
    }

    #[test]
    fn our_close() {
        let mut f = connected(0);
        assert_eq!(f.close(100), Action::Closing);
        assert_eq!(f.our_state(), Some(S::Closing));
        let d = Some(100 + T.close_ns);
        assert_eq!(f.close(101), wait(d));
        assert_eq!(f.on_backend_state(S::Connected, 102), wait(d));
        assert_eq!(
            f.on_backend_state(S::Closing, 103),
            Action::Closed { error: None }
        );
        assert_eq!(f.error(), None);
        assert_eq!(f.close(104), wait(None));
        // The backend may jump straight to Closed, or vanish.
        let mut g = connected(0);
        g.close(0);
        assert_eq!(
            g.on_backend_state(S::Closed, 1),
            Action::Closed { error: None }
        );
        let mut h = connected(0);
        h.close(0);
        assert_eq!(
            h.on_backend_value("be/state", None, 1),
            Action::Closed { error: None }
        );
        // A backend that never follows: down anyway, named.
        let mut k = connected(0);
        k.close(1_000 * MS);
        assert_eq!(
            k.on_deadline(1_000 * MS + T.close_ns),
            closed(XenbusError::BackendNeverReached {
                state: S::Closing,
                seen: Some(S::Connected),
                waited_ms: 5_000
            })
        );
        // Closing before the keys: nothing to wait for.
        let mut m = blk();
        m.start(0);
        assert_eq!(m.close(1), Action::Closed { error: None });
        // Closing while waiting for Connected: the keys are out.
        let mut n = blk();
        n.start(0);
        n.on_backend_state(S::InitWait, 0);
        assert_eq!(n.close(1), Action::Closing);
    }

    #[test]
    fn backend_connected_before_our_keys() {
        for early in [S::Connected, S::Initialised] {
            let mut f = blk();
            f.start(0);
            assert_eq!(
                f.on_backend_state(early, 1),
                closed(XenbusError::BackendAhead { state: early })
            );
            // Restart: first make it let go (Closed), wait for its Closed,
            // then Initialising.
            assert_eq!(f.start(2), Action::SetState(S::Closed));
            assert_eq!(f.phase(), Phase::Resetting);
            assert_eq!(f.on_backend_state(early, 3), wait(Some(2 + T.init_wait_ns)));
            assert_eq!(
                f.on_backend_state(S::Closing, 4),
                wait(Some(2 + T.init_wait_ns))
            );
            assert_eq!(
                f.on_backend_state(S::Closed, 5),
                Action::SetState(S::Initialising)
            );
            assert_eq!(
                f.on_backend_state(S::InitWait, 6),
                Action::WriteKeys {
                    state: S::Initialised
                }
            );
        }
        // A backend that never lets go.
        let mut f = blk();
        f.start(0);
        f.on_backend_state(S::Connected, 0);
        f.start(0);
        assert_eq!(
            f.on_deadline(T.init_wait_ns),
            closed(XenbusError::BackendNeverReached {
                state: S::Closed,
                seen: Some(S::Connected),
                waited_ms: 10_000
            })
        );
    }

    #[test]
    fn backend_goes_back() {
        for back in [S::InitWait, S::Initialised, S::Initialising, S::Unknown] {
            let mut f = connected(0);
            assert_eq!(
                f.on_backend_state(back, 1),
                closed(XenbusError::BackendReset {
                    phase: Phase::Connected,
                    state: back
                })
            );
        }
        // While waiting for Connected, going back to Initialising/Unknown.
        for back in [S::Initialising, S::Unknown, S::Reconfiguring] {
            let mut f = blk();
            f.start(0);
            f.on_backend_state(S::InitWait, 0);
            assert_eq!(
                f.on_backend_state(back, 1),
                closed(XenbusError::BackendReset {
                    phase: Phase::WaitConnected,
                    state: back
                })
            );
        }
        // Reconfiguring is pvSCSI's; not in our handshake.
        let mut f = blk();
        f.start(0);
        assert_eq!(
            f.on_backend_state(S::Reconfigured, 1),
            closed(XenbusError::BackendReset {
                phase: Phase::Initialising,
                state: S::Reconfigured
            })
        );
    }

    #[test]
    fn backend_refuses_keys() {
        for st in [S::Closing, S::Closed] {
            let mut f = blk();
            f.start(0);
            f.on_backend_state(S::InitWait, 0);
            assert_eq!(
                f.on_backend_state(st, 1),
                closed(XenbusError::BackendClosing { state: st })
            );
        }
        let mut f = blk();
        f.start(0);
        assert_eq!(
            f.on_backend_state(S::Closing, 1),
            closed(XenbusError::BackendClosing { state: S::Closing })
        );
    }

    #[test]
    fn garbage_and_gone() {
        let p = "/local/domain/0/backend/vbd/5/51712/state";
        let mut f = blk();
        f.start(0);
        f.on_backend_value(p, Some(b"2"), 0);
        assert_eq!(
            f.on_backend_value(p, Some(b"4\n"), 1),
            closed(XenbusError::BadState {
                path: p.into(),
                value: b"4\n".to_vec()
            })
        );
        assert_eq!(f.backend_state(), None);
        // Down already: garbage is ignored.
        assert_eq!(f.on_backend_value(p, Some(b"x"), 2), wait(None));
        let mut g = connected(0);
        assert_eq!(
            g.on_backend_value(p, Some(b"4"), 1),
            wait(None),
            "a valid value goes through"
        );
        assert_eq!(
            g.on_backend_value(p, None, 2),
            closed(XenbusError::BackendGone)
        );
        let mut h = blk();
        h.start(0);
        assert_eq!(h.on_backend_gone(1), closed(XenbusError::BackendGone));
        assert_eq!(h.on_backend_gone(2), wait(None));
    }

    #[test]
    fn driver_failures() {
        let mut f = blk();
        f.start(0);
        f.on_backend_state(S::InitWait, 0);
        let e = XenbusError::Store(crate::xenstore::Error::Timeout);
        assert_eq!(f.fail(e.clone(), 1), closed(e.clone()));
        assert_eq!(f.error(), Some(&e));
        // Recorded only, once down.
        let e2 = XenbusError::BackendGone;
        assert_eq!(f.fail(e2.clone(), 2), wait(None));
        assert_eq!(f.error(), Some(&e2));
    }

    /// Invariants under long random sequences of backend states, garbage,
    /// disappearance, clock jumps, closes, failures and restarts.
    #[test]
    fn random_hostile_sequences() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for style in [ConnectState::Initialised, ConnectState::Connected] {
            let mut f = Frontend::new(style, T);
            let mut now = 0u64;
            // Per attempt: keys written, then connected.
            let (mut keys, mut conn) = (false, false);
            let mut log: Vec<Action> = Vec::new();
            for _ in 0..200_000 {
                now += rnd(3_000) * MS;
                // Half the time a cooperative backend, else anything.
                let good = match f.phase() {
                    Phase::Initialising => S::InitWait,
                    Phase::WaitConnected | Phase::Connected => S::Connected,
                    Phase::Closing => S::Closing,
                    Phase::Resetting | Phase::Closed => S::Closed,
                };
                let a = match rnd(14) {
                    0..=4 => f.on_backend_state(good, now),
                    5..=7 => f.on_backend_state(S::ALL[rnd(9) as usize], now),
                    8 => f.on_backend_value("s", Some(&[rnd(256) as u8]), now),
                    9 => f.on_backend_gone(now),
                    10 => f.on_deadline(now),
                    11 => f.close(now),
                    12 => f.fail(XenbusError::BackendGone, now),
                    _ => f.start(now),
                };
                match &a {
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
                        keys = true;
                    }
                    Action::Connect { write_connected } => {
                        assert!(keys && !conn, "connect without keys");
                        assert_eq!(*write_connected, style == ConnectState::Initialised);
                        assert_eq!(f.backend_state(), Some(S::Connected));
                        conn = true;
                    }
                    Action::Closing => {
                        assert!(keys);
                        assert_eq!(f.phase(), Phase::Closing);
                    }
                    Action::Closed { .. } => {
                        assert_eq!(f.phase(), Phase::Closed);
                        (keys, conn) = (false, false);
                    }
                    Action::Wait { deadline_ns } => assert_eq!(*deadline_ns, f.deadline()),
                }
                // A deadline exactly in the waiting phases.
                let waiting = matches!(
                    f.phase(),
                    Phase::Resetting | Phase::Initialising | Phase::WaitConnected | Phase::Closing
                );
                assert_eq!(f.deadline().is_some(), waiting, "{:?}", f.phase());
                if let Some(d) = f.deadline() {
                    assert!(d > now || matches!(a, Action::Wait { .. }));
                }
                log.push(a);
            }
            let n = |p: fn(&Action) -> bool| log.iter().filter(|a| p(a)).count();
            // The sequences reach every action many times.
            assert!(n(|a| matches!(a, Action::Connect { .. })) > 100);
            assert!(n(|a| matches!(a, Action::Closing)) > 100);
            assert!(n(|a| matches!(a, Action::Closed { error: None })) > 100);
            assert!(n(|a| matches!(a, Action::SetState(S::Closed))) > 100);
        }
    }
}
