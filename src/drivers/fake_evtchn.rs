//! Host-test stand-in for an interdomain event channel between two threads
//! (test only): a pending flag per end, a "closed" flag per end (the port
//! status a kernel would read with EVTCHNOP_status), and a monotonic clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::event::Events;

#[derive(Debug)]
struct Link {
    pending: [AtomicBool; 2],
    closed: [AtomicBool; 2],
    notifies: [AtomicU64; 2],
    epoch: Instant,
}

/// One end of the channel.
#[derive(Debug, Clone)]
pub(crate) struct End {
    link: Arc<Link>,
    me: usize,
}

/// A connected pair of ends.
pub(crate) fn pair() -> (End, End) {
    let link = Arc::new(Link {
        pending: [AtomicBool::new(false), AtomicBool::new(false)],
        closed: [AtomicBool::new(false), AtomicBool::new(false)],
        notifies: [AtomicU64::new(0), AtomicU64::new(0)],
        epoch: Instant::now(),
    });
    (
        End {
            link: link.clone(),
            me: 0,
        },
        End { link, me: 1 },
    )
}

impl End {
    /// This end goes away (like a killed Dom0 process: the port closes and,
    /// with an unmap notify armed, the other end gets one last event).
    pub(crate) fn close(&self, last_event: bool) {
        self.link.closed[self.me].store(true, Ordering::SeqCst);
        if last_event {
            self.link.pending[1 - self.me].store(true, Ordering::SeqCst);
        }
    }

    /// Whether the other end closed.
    pub(crate) fn peer_closed(&self) -> bool {
        self.link.closed[1 - self.me].load(Ordering::SeqCst)
    }

    /// Notifications this end sent.
    pub(crate) fn sent(&self) -> u64 {
        self.link.notifies[self.me].load(Ordering::SeqCst)
    }
}

impl Events for End {
    fn notify(&self, _port: u32) {
        self.link.notifies[self.me].fetch_add(1, Ordering::SeqCst);
        if !self.link.closed[self.me].load(Ordering::SeqCst) {
            self.link.pending[1 - self.me].store(true, Ordering::SeqCst);
        }
    }
    fn clear(&self, _port: u32) {
        self.link.pending[self.me].store(false, Ordering::SeqCst);
    }
    fn wait(&self, _port: u32, deadline_ns: u64) {
        while !self.link.pending[self.me].load(Ordering::SeqCst) && self.now_ns() < deadline_ns {
            std::thread::yield_now();
        }
    }
    fn now_ns(&self) -> u64 {
        self.link.epoch.elapsed().as_nanos() as u64
    }
}
