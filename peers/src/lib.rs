//! Dom0-side peers: thin safe wrappers over Linux's `/dev/xen` devices, an
//! io/ring.h ring for the peer side, and the pieces the test binaries share.
//!
//! Only stock interfaces are used: `/dev/xen/gntdev`, `/dev/xen/gntalloc`,
//! `/dev/xen/evtchn`, and the `xenstore-*` tools. See `docs/peers.md` for the
//! binaries' command lines and output.

pub mod args;
pub mod demo;
pub mod evtchn;
pub mod gntalloc;
pub mod gntdev;
pub mod pattern;
pub mod peer;
pub mod ring;
pub mod shmem;
pub mod sys;
pub mod xs;

pub use evtchn::Evtchn;
pub use gntalloc::{Gntalloc, Shared};
pub use gntdev::{Gntdev, Mapping};

/// Print `<tag>: error: <msg>` to stderr and exit with status 2 (the
/// "could not run the test" status; 1 is reserved for a failed check).
pub fn die(tag: &str, msg: impl std::fmt::Display) -> ! {
    eprintln!("{tag}: error: {msg}");
    std::process::exit(2)
}

/// Milliseconds as a `Duration`.
pub fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

/// `count / elapsed` as a whole number per second (0 if no time passed).
pub fn per_sec(count: u64, elapsed: std::time::Duration) -> u64 {
    let us = elapsed.as_micros();
    if us == 0 {
        return 0;
    }
    (count as u128 * 1_000_000 / us) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn rate() {
        assert_eq!(super::per_sec(500, super::ms(250)), 2000);
        assert_eq!(super::per_sec(5, super::ms(0)), 0);
    }
}
