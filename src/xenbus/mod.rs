//! The XenBus device layer: what every split-driver frontend (blkfront,
//! netfront, …) does with XenStore before and after its rings run.
//!
//! Pure logic, no hypercalls and no global state, tested on the host:
//!
//! * `state.rs` — [`XenbusState`] (`xen/include/public/io/xenbus.h`) and
//!   its strict parser.
//! * `discovery.rs` — `device/<class>/<id>` listings, the frontend's
//!   `backend` and `backend-id` keys ([`parse_device_ids`],
//!   [`BackendPath`], [`parse_backend_id`], [`FrontendInfo`]).
//! * `fsm.rs` — [`Frontend`], the frontend state machine as an
//!   event-driven value: the caller feeds it the backend's state and the
//!   clock and carries out the [`Action`] it returns.
//! * `keys.rs` — [`Keys`] and [`write_keys`]: the connection keys in one
//!   XenStore transaction, redone on `EAGAIN` a bounded number of times,
//!   over the small [`TxStore`] trait (implemented for
//!   [`XenStore`](crate::xenstore::XenStore)).
//!
//! The handshake (xenbus.h, blkif.h/netif.h node docs; Linux 6.1
//! `xen-blkfront.c` `blkback_changed`, `xen-blkback/xenbus.c`
//! `frontend_changed`; research notes in `devices.md` §1–2):
//!
//! ```text
//!  frontend                         backend
//!  state=Initialising (1)           probe: features, state=InitWait (2)
//!  ── sees InitWait ──►  grant rings, alloc port,
//!      one transaction: ring-ref…, event-channel, protocol, state=3 (or 4)
//!                                   hotplug done + front 3/4 → map,
//!                                   write sectors/info/…, state=Connected (4)
//!  ── sees Connected ──► read properties, state=Connected (4)
//!  … I/O …
//!  backend Closing/Closed (xl block-detach) → fail in-flight I/O,
//!      revoke grants (deferred while mapped), state=Closed (6)
//!  our close: state=Closing (5) → backend Closing/Closed → state=Closed (6)
//!  reconnect: backend Closed → state=Initialising → backend InitWait …
//! ```
//!
//! Every wait has a deadline the caller's clock decides
//! ([`Timeouts`]); a backend that never gets there is a named error
//! ([`XenbusError::BackendNeverReached`]), not a hang.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod discovery;
#[cfg(test)]
pub(crate) mod fake;
mod fsm;
mod keys;
mod state;

pub use discovery::{
    parse_backend_id, parse_device_ids, BackendPath, FrontendInfo, DOMID_FIRST_RESERVED,
    MAX_BACKEND_PATH,
};
pub use fsm::{Action, ConnectState, Frontend, Phase, Timeouts};
pub use keys::{write_keys, Keys, TxStore, MAX_TX_ATTEMPTS};
pub use state::XenbusState;

use crate::xenstore;

/// Everything the device layer reports. Values that came from XenStore
/// are kept (bytes, as read) so that the message names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// A `state` value that is not a decimal `XenbusState` (0..=8).
    BadState {
        /// The key read.
        path: String,
        /// Its value, as read.
        value: Vec<u8>,
    },
    /// A `device/<class>` entry that is not a canonical decimal id.
    BadDeviceId {
        /// The directory listed.
        dir: String,
        /// The entry.
        name: String,
    },
    /// The frontend's `backend` key is not an absolute
    /// `/local/domain/<n>/backend/<type>/<domid>/<id>` path.
    BadBackendPath {
        /// The key read.
        path: String,
        /// Its value, as read.
        value: Vec<u8>,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `backend-id` is not a decimal domid below `DOMID_FIRST_RESERVED`.
    BadBackendId {
        /// The key read.
        path: String,
        /// Its value, as read.
        value: Vec<u8>,
    },
    /// `backend` and `backend-id` disagree about the backend's domain, or
    /// the backend path names another frontend.
    BackendMismatch {
        /// The `backend` value.
        backend: String,
        /// What disagrees.
        why: &'static str,
    },
    /// The backend did not reach `state` within the deadline.
    BackendNeverReached {
        /// The state we waited for.
        state: XenbusState,
        /// The backend's last state, if it had one.
        seen: Option<XenbusState>,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The backend was already `Initialised`/`Connected` before we wrote
    /// our keys: a stale or confused backend we cannot use.
    BackendAhead {
        /// Its state.
        state: XenbusState,
    },
    /// The backend is closing (`xl block-detach`, or it refused our keys).
    BackendClosing {
        /// Its state (Closing or Closed).
        state: XenbusState,
    },
    /// The backend went back to an earlier state (reset) or to one this
    /// protocol never uses, while we were `phase`.
    BackendReset {
        /// Our phase.
        phase: Phase,
        /// Its state.
        state: XenbusState,
    },
    /// The backend's `state` key disappeared (device removed).
    BackendGone,
    /// A connection key name that is empty, absolute or has empty or
    /// `.`/`..` components.
    BadKey(String),
    /// The transaction conflicted (`EAGAIN`) on every attempt.
    TooManyRetries {
        /// The directory written.
        dir: String,
        /// Attempts made.
        attempts: u32,
    },
    /// XenStore failed.
    Store(xenstore::Error),
}

impl From<xenstore::Error> for XenbusError {
    fn from(e: xenstore::Error) -> Self {
        XenbusError::Store(e)
    }
}

/// Writes a value read from XenStore quoted, non-printable bytes escaped,
/// at most 64 bytes of it.
pub(crate) fn fmt_value(f: &mut fmt::Formatter<'_>, v: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in v.iter().take(64) {
        for c in core::ascii::escape_default(b) {
            fmt::Write::write_char(f, c as char)?;
        }
    }
    f.write_str(if v.len() > 64 { "\"..." } else { "\"" })
}

/// Strict decimal: ASCII digits only, at least one, no leading zero
/// (except `"0"` itself), fitting a `u64`. XenStore values are written by
/// `%u`/`%d`, so anything else is not what a writer meant.
pub(crate) fn parse_canonical_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenbusError::BadState { path, value } => {
                write!(f, "xenbus: {path} = ")?;
                fmt_value(f, value)?;
                f.write_str(" is not a XenbusState (0..8)")
            }
            XenbusError::BadDeviceId { dir, name } => {
                write!(f, "xenbus: {dir}/")?;
                fmt_value(f, name.as_bytes())?;
                f.write_str(" is not a device id")
            }
            XenbusError::BadBackendPath { path, value, why } => {
                write!(f, "xenbus: {path} = ")?;
                fmt_value(f, value)?;
                write!(f, ": {why}")
            }
            XenbusError::BadBackendId { path, value } => {
                write!(f, "xenbus: {path} = ")?;
                fmt_value(f, value)?;
                f.write_str(" is not a domid")
            }
            XenbusError::BackendMismatch { backend, why } => {
                write!(f, "xenbus: backend {backend}: {why}")
            }
            XenbusError::BackendNeverReached {
                state,
                seen,
                waited_ms,
            } => {
                write!(f, "xenbus: backend never reached {state} in {waited_ms} ms")?;
                match seen {
                    Some(s) => write!(f, " (it is {s})"),
                    None => f.write_str(" (no state seen)"),
                }
            }
            XenbusError::BackendAhead { state } => {
                write!(f, "xenbus: backend already {state} before our keys")
            }
            XenbusError::BackendClosing { state } => write!(f, "xenbus: backend {state}"),
            XenbusError::BackendReset { phase, state } => {
                write!(f, "xenbus: backend went {state} while we were {phase:?}")
            }
            XenbusError::BackendGone => f.write_str("xenbus: backend state gone"),
            XenbusError::BadKey(k) => write!(f, "xenbus: bad key name {k:?}"),
            XenbusError::TooManyRetries { dir, attempts } => {
                write!(f, "xenbus: {dir}: transaction conflicted {attempts} times")
            }
            XenbusError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for XenbusError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn canonical_decimal() {
        assert_eq!(parse_canonical_decimal(b"0"), Some(0));
        assert_eq!(parse_canonical_decimal(b"51712"), Some(51712));
        assert_eq!(
            parse_canonical_decimal(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"00",
            b"07",
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1\0",
            b"0x10",
            b"18446744073709551616",
            b"1\n",
        ] {
            assert_eq!(parse_canonical_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_name_path_and_value() {
        let e = XenbusError::BadState {
            path: "/local/domain/0/backend/vbd/5/51712/state".into(),
            value: b"4\n\xff".to_vec(),
        };
        assert_eq!(
            format!("{e}"),
            "xenbus: /local/domain/0/backend/vbd/5/51712/state = \"4\\n\\xff\" \
             is not a XenbusState (0..8)"
        );
        let e = XenbusError::BackendNeverReached {
            state: XenbusState::Connected,
            seen: Some(XenbusState::InitWait),
            waited_ms: 30000,
        };
        assert_eq!(
            format!("{e}"),
            "xenbus: backend never reached Connected (4) in 30000 ms (it is InitWait (2))"
        );
        let long = XenbusError::BadBackendId {
            path: "backend-id".into(),
            value: alloc::vec![b'9'; 100],
        };
        assert!(format!("{long}").ends_with("\"... is not a domid"));
    }
}
