//! Device drivers. Drivers never issue hypercalls themselves: they get the
//! event-channel operations they need (notify, wait) from the event layer
//! through a small trait, which also makes them testable on the host.

pub mod console;
pub mod demo;
pub mod vchan;

#[cfg(test)]
pub(crate) mod fake_evtchn;
