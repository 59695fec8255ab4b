//! Limits from the config, not the code: a guest created with
//! `max_event_channels=16` runs out of ports where the toolstack says, names
//! the error, and keeps using what fits; the same scenario without the
//! limit shows the default. (`max_grant_frames=1` is in services.rs and
//! apps.rs.)

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{line, Mode};

/// `evtchn: exhausted after <n> more ports (highest port <h>): <err>`:
/// Xen's limit is the highest usable port (`max_evtchn_port`; port 0 is
/// reserved), so the ports must have filled up exactly to `limit`.
fn check_limit(o: &Outcome, limit: u64) -> Result<(), String> {
    let l = line(o, "evtchn: exhausted after ")?;
    let highest: u64 = l
        .split("highest port ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no highest port in {l:?}"))?;
    if highest != limit {
        return Err(format!(
            "highest port {highest} with max_event_channels={limit}"
        ));
    }
    println!("    figure: event channels with max_event_channels={limit}: {l}");
    Ok(())
}

fn limit(name: &str, max: Option<u64>) -> Scenario {
    let s = Mode::Pv
        .scenario(name)
        .extra("test=evtchn-limit")
        .marker("evtchn: loopback after exhaustion: ok")
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff));
    match max {
        Some(m) => s
            .config_line(format!("max_event_channels = {m}"))
            .check(move |o| check_limit(o, m)),
        // libxl's default max_event_channels is 1023.
        None => s.check(|o| check_limit(o, 1023)),
    }
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        limit("limits-evtchn-16", Some(16)),
        limit("limits-evtchn-default", None),
    ]
}
