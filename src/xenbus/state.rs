//! `enum xenbus_state` of `xen/include/public/io/xenbus.h`, written as a
//! decimal string in `<dir>/state` by each end.

extern crate alloc;

use core::fmt;

use super::{parse_canonical_decimal, XenbusError};

/// The state of one end of a XenBus device (`XenbusState*` in xenbus.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum XenbusState {
    /// `XenbusStateUnknown` (0): no state yet (or read failed, in Linux).
    Unknown = 0,
    /// `XenbusStateInitialising` (1): setting up; the toolstack's start.
    Initialising = 1,
    /// `XenbusStateInitWait` (2): backend: features published, waiting
    /// for the frontend's keys (and its hotplug script).
    InitWait = 2,
    /// `XenbusStateInitialised` (3): frontend: keys written, waiting for
    /// the backend to connect.
    Initialised = 3,
    /// `XenbusStateConnected` (4): the rings are running.
    Connected = 4,
    /// `XenbusStateClosing` (5): going down; the other end should close.
    Closing = 5,
    /// `XenbusStateClosed` (6): down; a frontend may go `Initialising`
    /// again to reconnect.
    Closed = 6,
    /// `XenbusStateReconfiguring` (7): pvSCSI only.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured` (8): pvSCSI only.
    Reconfigured = 8,
}

impl XenbusState {
    /// All states, by number.
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The state numbered `n`, if any.
    pub fn from_u64(n: u64) -> Option<XenbusState> {
        usize::try_from(n)
            .ok()
            .and_then(|i| XenbusState::ALL.get(i).copied())
    }

    /// Its number, as written in XenStore.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The XenStore value: `b"0"` … `b"8"`.
    pub fn value(self) -> [u8; 1] {
        [b'0' + self.as_u8()]
    }

    /// The xenbus.h name without the `XenbusState` prefix.
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }

    /// Parses the value of the key `path` strictly: a canonical decimal
    /// number 0..=8, nothing else (no sign, space, newline, NUL or leading
    /// zero). Linux's `xenbus_read_driver_state` reads any `%d` and maps a
    /// failure to `Unknown`; we name the bad value instead.
    pub fn parse(path: &str, value: &[u8]) -> Result<XenbusState, XenbusError> {
        parse_canonical_decimal(value)
            .and_then(XenbusState::from_u64)
            .ok_or_else(|| XenbusError::BadState {
                path: path.into(),
                value: value.into(),
            })
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    #[test]
    fn numbers_as_xenbus_h() {
        let nums: Vec<u8> = XenbusState::ALL.iter().map(|s| s.as_u8()).collect();
        assert_eq!(nums, (0..=8).collect::<Vec<u8>>());
        assert_eq!(XenbusState::InitWait as u8, 2);
        assert_eq!(XenbusState::Closed as u8, 6);
        assert_eq!(XenbusState::Reconfigured as u8, 8);
        for s in XenbusState::ALL {
            assert_eq!(XenbusState::parse("state", &s.value()), Ok(s));
            assert_eq!(XenbusState::from_u64(u64::from(s.as_u8())), Some(s));
        }
        assert_eq!(XenbusState::from_u64(9), None);
        assert_eq!(XenbusState::from_u64(u64::MAX), None);
        assert_eq!(format!("{}", XenbusState::Connected), "Connected (4)");
    }

    #[test]
    fn garbage_is_named() {
        for bad in [
            &b""[..],
            b"9",
            b"10",
            b"04",
            b"4\0",
            b"4\n",
            b" 4",
            b"-1",
            b"+4",
            b"four",
            b"4.0",
            b"\xff",
            b"99999999999999999999999",
        ] {
            let e = XenbusState::parse("/be/state", bad).unwrap_err();
            assert_eq!(
                e,
                XenbusError::BadState {
                    path: "/be/state".into(),
                    value: bad.to_vec()
                }
            );
        }
    }
}
