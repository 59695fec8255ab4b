//! The demo ring protocol (xf-ring-back / xf-ring-front).
//!
//! Request and response have the same 12-byte shape
//! `{ id: u32 @0, status: u32 @4, operation: u32 @8 }`. The backend answers
//! each request with `id` and `operation` copied and `status + 1`
//! (wrapping). On a 4 KiB page that gives 256 slots.

use crate::ring::Entry;
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub id: u32,
    pub status: u32,
    pub operation: u32,
}

impl Entry for Msg {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..8].copy_from_slice(&self.status.to_le_bytes());
        out[8..12].copy_from_slice(&self.operation.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Msg {
            id: w(0),
            status: w(4),
            operation: w(8),
        }
    }
}

/// The backend's answer to `req`.
pub fn answer(req: &Msg) -> Msg {
    Msg {
        id: req.id,
        status: req.status.wrapping_add(1),
        operation: req.operation,
    }
}

/// First id xf-ring-front uses; ids are `ID_BASE + i` for request `i`.
pub const ID_BASE: u32 = 0x1000;

/// Request number `i` as xf-ring-front sends it.
pub fn request(i: u32) -> Msg {
    Msg {
        id: ID_BASE.wrapping_add(i),
        status: i.wrapping_mul(0x9e37_79b9),
        operation: i % 7,
    }
}

/// Why a response was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadResponse {
    UnknownId(u32),
    NotSent(u32),
    Duplicate(u32),
    WrongOperation { id: u32, got: u32, want: u32 },
    WrongStatus { id: u32, got: u32, want: u32 },
}

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadResponse::UnknownId(id) => write!(f, "unknown id {id:#x}"),
            BadResponse::NotSent(id) => write!(f, "response for id {id:#x} before it was sent"),
            BadResponse::Duplicate(id) => write!(f, "duplicate response for id {id:#x}"),
            BadResponse::WrongOperation { id, got, want } => {
                write!(f, "id {id:#x}: operation {got} want {want}")
            }
            BadResponse::WrongStatus { id, got, want } => {
                write!(f, "id {id:#x}: status {got:#x} want {want:#x}")
            }
        }
    }
}

/// Front-side bookkeeping: which of `total` requests were sent / answered.
pub struct Tracker {
    sent: Vec<bool>,
    answered: Vec<bool>,
    n_sent: u32,
    n_answered: u32,
}

impl Tracker {
    pub fn new(total: u32) -> Self {
        Self {
            sent: vec![false; total as usize],
            answered: vec![false; total as usize],
            n_sent: 0,
            n_answered: 0,
        }
    }

    pub fn total(&self) -> u32 {
        self.sent.len() as u32
    }

    pub fn sent(&self) -> u32 {
        self.n_sent
    }

    pub fn answered(&self) -> u32 {
        self.n_answered
    }

    pub fn done(&self) -> bool {
        self.n_answered == self.total()
    }

    /// The next request to send, if any, marked as sent.
    pub fn next_request(&mut self) -> Option<Msg> {
        if self.n_sent == self.total() {
            return None;
        }
        let i = self.n_sent;
        self.sent[i as usize] = true;
        self.n_sent += 1;
        Some(request(i))
    }

    /// Undo `next_request` (the ring turned out to be full).
    pub fn unsend(&mut self) {
        assert!(self.n_sent > 0);
        self.n_sent -= 1;
        self.sent[self.n_sent as usize] = false;
    }

    /// Check one response and record it.
    pub fn check(&mut self, rsp: &Msg) -> Result<(), BadResponse> {
        let i = rsp.id.wrapping_sub(ID_BASE);
        if i >= self.total() {
            return Err(BadResponse::UnknownId(rsp.id));
        }
        let iu = i as usize;
        if !self.sent[iu] {
            return Err(BadResponse::NotSent(rsp.id));
        }
        if self.answered[iu] {
            return Err(BadResponse::Duplicate(rsp.id));
        }
        let want = answer(&request(i));
        if rsp.operation != want.operation {
            return Err(BadResponse::WrongOperation {
                id: rsp.id,
                got: rsp.operation,
                want: want.operation,
            });
        }
        if rsp.status != want.status {
            return Err(BadResponse::WrongStatus {
                id: rsp.id,
                got: rsp.status,
                want: want.status,
            });
        }
        self.answered[iu] = true;
        self.n_answered += 1;
        Ok(())
    }

    /// Ids sent but not answered (at most `limit` of them).
    pub fn missing(&self, limit: usize) -> Vec<u32> {
        (0..self.n_sent)
            .filter(|&i| !self.answered[i as usize])
            .take(limit)
            .map(|i| ID_BASE + i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_roundtrip_layout() {
        let m = Msg {
            id: 0x0403_0201,
            status: 0x0807_0605,
            operation: 0x0c0b_0a09,
        };
        let mut b = [0u8; 12];
        m.encode(&mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(Msg::decode(&b), m);
    }

    #[test]
    fn answer_rule() {
        let r = answer(&Msg {
            id: 9,
            status: u32::MAX,
            operation: 3,
        });
        assert_eq!((r.id, r.status, r.operation), (9, 0, 3));
    }

    #[test]
    fn tracker_accepts_good_and_rejects_bad() {
        let mut t = Tracker::new(4);
        let a = t.next_request().unwrap();
        let b = t.next_request().unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(t.check(&answer(&b)), Ok(()));
        assert_eq!(t.check(&answer(&b)), Err(BadResponse::Duplicate(b.id)));
        let c = request(2);
        assert_eq!(t.check(&answer(&c)), Err(BadResponse::NotSent(c.id)));
        assert_eq!(
            t.check(&Msg {
                id: 7,
                ..answer(&a)
            }),
            Err(BadResponse::UnknownId(7))
        );
        assert!(matches!(
            t.check(&Msg {
                status: a.status,
                ..a
            }),
            Err(BadResponse::WrongStatus { .. })
        ));
        assert!(matches!(
            t.check(&Msg {
                operation: 99,
                ..answer(&a)
            }),
            Err(BadResponse::WrongOperation { .. })
        ));
        assert_eq!(t.missing(10), vec![a.id]);
        assert_eq!(t.check(&answer(&a)), Ok(()));
        assert_eq!(t.answered(), 2);
        assert!(!t.done());
        t.next_request();
        t.unsend();
        assert_eq!(t.sent(), 2);
    }
}
