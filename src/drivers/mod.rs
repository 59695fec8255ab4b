//! Device drivers. Drivers never issue hypercalls themselves: they get the
//! event-channel operations they need (notify, wait) from the event layer
//! through small traits ([`Events`](crate::event::Events),
//! [`PeerProbe`](crate::event::PeerProbe)), which also makes them testable
//! on the host. Core services never import from here.

pub mod blkfront;
pub mod console;
pub mod demo;
pub mod netfront;
pub mod vchan;

#[cfg(test)]
pub(crate) mod fake_evtchn;
