//! Event delivery soak (`test=soak secs=N`), PV and PVH: loopback upcalls,
//! idle blocks and polls woken by the timer for `XF_SOAK_SECS` seconds
//! (default 60). Every send must reach its handler exactly once; the guest
//! reports progress every 10 s, so a death is placed in time (and the lab
//! ships the dead vCPU's registers, see docs/lab.md).
//!
//! Experiment knobs (docs/lab.md, "PVH guests: the emulator's world-switch
//! fault"): `XF_SOAK_PIN=0,1,all` adds PVH soaks pinned to those pCPUs (`all`: unpinned),
//! `XF_LINUX_PVH_REPEAT=N` adds N runs of Debian's Linux as PVH, and the
//! lab's `XF_LAB_HVM_CPUS=any` lifts the default pin.

use lab::{Outcome, Scenario, Shutdown};

use crate::common::{for_each_mode, line, Mode};

fn secs() -> u64 {
    std::env::var("XF_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Numbers in `s`, in order.
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn check(o: &Outcome) -> Result<(), String> {
    // "soak: done in T ms: S sends -> C handler calls, U upcalls (R upcalls/s),
    //  Z sleeps, P polls, K idle hlt skips"
    let l = line(o, "soak: done in ")?;
    let n = numbers(l);
    let [ms, sent, calls, upcalls, _rate, sleeps, polls, _skips] = n[..] else {
        return Err(format!("unexpected soak line {l:?}"));
    };
    if sent == 0 || calls != sent || upcalls < calls / 2 || sleeps == 0 || polls == 0 {
        return Err(format!("soak counts do not add up: {l:?}"));
    }
    if ms < secs() * 1000 {
        return Err(format!("soak ended after {ms} ms, asked for {} s", secs()));
    }
    Ok(())
}

fn soak(m: Mode, name: &str) -> Scenario {
    m.scenario(name)
        .extra(format!("test=soak secs={}", secs()))
        .timeout_secs(secs() + 120)
        .marker("Test result: SUCCESS")
        .shutdown(Some(Shutdown::Poweroff))
        .check(check)
}

pub fn scenarios() -> Vec<Scenario> {
    let mut v = for_each_mode(|m: Mode| soak(m, "soak"));
    // Experiment: XF_SOAK_PIN=0,1,all adds PVH soaks pinned to those pCPUs
    // (`all`: unpinned); a cpu may repeat, each soak gets its own name.
    let pins = std::env::var("XF_SOAK_PIN").unwrap_or_default();
    for (i, cpu) in pins.split(',').filter(|c| !c.is_empty()).enumerate() {
        v.push(
            soak(Mode::Pvh, &format!("soak-pin{cpu}-{i}")).config_line(format!("cpus = \"{cpu}\"")),
        );
    }
    // Experiment: XF_LINUX_PVH_REPEAT=N adds N runs of Debian's Linux as PVH.
    let n: usize = std::env::var("XF_LINUX_PVH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for i in 0..n {
        let mut s = lab::baseline::linux_pvh();
        s.name = format!("pvh-soak-linux{i}");
        v.push(s);
    }
    v
}
