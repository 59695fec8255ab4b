//! Xen system time (ns since Xen booted) from vcpu_info[0].time in
//! shared_info, extrapolated with the TSC (guest-abi.md §7).

use crate::event;

/// vcpu_time_info of vCPU 0: version @32, tsc_timestamp @40, system_time @48,
/// tsc_to_system_mul @56, tsc_shift @60.
const VERSION: usize = 32;
const TSC_TIMESTAMP: usize = 40;
const SYSTEM_TIME: usize = 48;
const MUL: usize = 56;
const SHIFT: usize = 60;

/// Scale a TSC delta to ns with Xen's (mul, shift) pair.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> shift.unsigned_abs()
    };
    ((d as u128 * mul as u128) >> 32) as u64
}

#[cfg(target_os = "none")]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; PV guests may execute it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_os = "none"))]
fn rdtsc() -> u64 {
    0
}

/// Current Xen system time in ns, or 0 before shared_info is mapped.
pub fn now_ns() -> u64 {
    let Some(si) = event::shared_info() else {
        return 0;
    };
    // Bounded retry: Xen updates the record with an odd version in between.
    for _ in 0..1000 {
        let v1: u32 = si.load_u32(VERSION);
        if v1 & 1 != 0 {
            continue;
        }
        let tsc_ts: u64 = si.read(TSC_TIMESTAMP);
        let sys: u64 = si.read(SYSTEM_TIME);
        let mul: u32 = si.read(MUL);
        let shift: i8 = si.read(SHIFT);
        let tsc = rdtsc();
        crate::shared::rmb();
        if si.load_u32(VERSION) == v1 {
            return sys.wrapping_add(scale_delta(tsc.wrapping_sub(tsc_ts), mul, shift));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling() {
        // mul = 2^32 means 1 tick = 1 ns at shift 0.
        assert_eq!(scale_delta(1000, u32::MAX, 0), 999);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        assert_eq!(scale_delta(0, 12345, 3), 0);
    }
}
