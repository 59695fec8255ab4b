//! `shared_info` and what it contains (`xen/include/public/xen.h`,
//! `arch-x86/xen.h`, `arch-x86/xen-x86_64.h`), x86_64 layout.
//!
//! One page, written by Xen and read (event bits also written) by the
//! guest: PV maps its machine address from `start_info.shared_info`, PVH
//! places it with `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`.

use core::mem::{offset_of, size_of};

/// `XEN_LEGACY_MAX_VCPUS`: `vcpu_info` slots inside shared_info (x86).
pub const LEGACY_MAX_VCPUS: usize = 32;

/// Event-channel words of the 2-level ABI: `sizeof(xen_ulong_t) * 8`.
pub const EVTCHN_WORDS: usize = 64;

/// `struct vcpu_time_info` (xen.h): Xen's system-time record of one vCPU,
/// updated under `version` (odd while Xen writes it).
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Odd while an update is in progress.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC at the last update of `system_time`.
    pub tsc_timestamp: u64,
    /// Xen system time (ns since boot) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-ns multiplier (32.32 fixed point, after `tsc_shift`).
    pub tsc_to_system_mul: u32,
    /// Shift applied to a TSC delta before the multiplication.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (arch-x86/xen.h).
#[repr(C)]
pub struct ArchVcpuInfo {
    /// PV: the faulting address of the last page fault.
    pub cr2: u64,
    /// Padding (`sizeof(vcpu_info_t) == 64`).
    pub pad: u64,
}

/// `struct vcpu_info` (xen.h), 64 bytes.
#[repr(C)]
pub struct VcpuInfo {
    /// Set by Xen when an upcall is due (any bit of `evtchn_pending_sel`).
    pub evtchn_upcall_pending: u8,
    /// The PV guest's virtual interrupt flag: 1 = upcalls masked.
    pub evtchn_upcall_mask: u8,
    /// One bit per word of `shared_info.evtchn_pending` with work in it.
    pub evtchn_pending_sel: u64,
    /// Architecture part.
    pub arch: ArchVcpuInfo,
    /// System time of this vCPU.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (arch-x86/xen.h), x86_64.
#[repr(C)]
pub struct ArchSharedInfo {
    /// Highest PFN + 1 of the P2M (PV).
    pub max_pfn: u64,
    /// Frame list list of the P2M, for save/restore (PV).
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// CR3 of the virtually mapped P2M (PV, 0 = none).
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list (PV).
    pub p2m_vaddr: u64,
    /// Bumped around every change of the linear P2M list (PV).
    pub p2m_generation: u64,
}

/// `struct shared_info` (xen.h), x86_64.
#[repr(C)]
pub struct SharedInfo {
    /// Per-vCPU upcall state and time, for vCPUs 0..32.
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// One pending bit per event-channel port (set by Xen).
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// One mask bit per port (owned by the guest).
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Odd while Xen updates the wall clock.
    pub wc_version: u32,
    /// Wall clock at system time 0: seconds since the epoch, low 32 bits.
    pub wc_sec: u32,
    /// Wall clock at system time 0: nanoseconds.
    pub wc_nsec: u32,
    /// Wall clock seconds, high 32 bits (not on i386).
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}

/// Offset of `vcpu_info[vcpu]` in shared_info.
pub const fn vcpu_info(vcpu: usize) -> usize {
    offset_of!(SharedInfo, vcpu_info) + vcpu * size_of::<VcpuInfo>()
}

/// `vcpu_info[0].evtchn_upcall_pending`.
pub const VCPU0_UPCALL_PENDING: usize = vcpu_info(0) + offset_of!(VcpuInfo, evtchn_upcall_pending);
/// `vcpu_info[0].evtchn_upcall_mask`.
pub const VCPU0_UPCALL_MASK: usize = vcpu_info(0) + offset_of!(VcpuInfo, evtchn_upcall_mask);
/// `vcpu_info[0].evtchn_pending_sel` (u64).
pub const VCPU0_PENDING_SEL: usize = vcpu_info(0) + offset_of!(VcpuInfo, evtchn_pending_sel);
/// `vcpu_info[0].arch.cr2` (u64).
pub const VCPU0_CR2: usize = vcpu_info(0) + offset_of!(VcpuInfo, arch.cr2);

/// `vcpu_info[0].time.version`.
pub const VCPU0_TIME_VERSION: usize = vcpu_info(0) + offset_of!(VcpuInfo, time.version);
/// `vcpu_info[0].time.tsc_timestamp` (u64).
pub const VCPU0_TSC_TIMESTAMP: usize = vcpu_info(0) + offset_of!(VcpuInfo, time.tsc_timestamp);
/// `vcpu_info[0].time.system_time` (u64).
pub const VCPU0_SYSTEM_TIME: usize = vcpu_info(0) + offset_of!(VcpuInfo, time.system_time);
/// `vcpu_info[0].time.tsc_to_system_mul` (u32).
pub const VCPU0_TSC_TO_SYSTEM_MUL: usize =
    vcpu_info(0) + offset_of!(VcpuInfo, time.tsc_to_system_mul);
/// `vcpu_info[0].time.tsc_shift` (i8).
pub const VCPU0_TSC_SHIFT: usize = vcpu_info(0) + offset_of!(VcpuInfo, time.tsc_shift);

/// `evtchn_pending[0]`: port `p` is bit `p % 64` of word `p / 64`.
pub const EVTCHN_PENDING: usize = offset_of!(SharedInfo, evtchn_pending);
/// `evtchn_mask[0]`, indexed like [`EVTCHN_PENDING`].
pub const EVTCHN_MASK: usize = offset_of!(SharedInfo, evtchn_mask);

/// `wc_version`.
pub const WC_VERSION: usize = offset_of!(SharedInfo, wc_version);
/// `wc_sec`.
pub const WC_SEC: usize = offset_of!(SharedInfo, wc_sec);
/// `wc_nsec`.
pub const WC_NSEC: usize = offset_of!(SharedInfo, wc_nsec);
/// `wc_sec_hi`.
pub const WC_SEC_HI: usize = offset_of!(SharedInfo, wc_sec_hi);

// The x86_64 ABI's numbers (guest-abi.md §7).
const _: () = {
    assert!(size_of::<VcpuTimeInfo>() == 32);
    assert!(offset_of!(VcpuTimeInfo, tsc_timestamp) == 8);
    assert!(offset_of!(VcpuTimeInfo, system_time) == 16);
    assert!(offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);
    assert!(offset_of!(VcpuTimeInfo, tsc_shift) == 28);
    assert!(offset_of!(VcpuTimeInfo, flags) == 29);

    assert!(size_of::<ArchVcpuInfo>() == 16);

    assert!(size_of::<VcpuInfo>() == 64);
    assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
    assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
    assert!(offset_of!(VcpuInfo, arch) == 16);
    assert!(offset_of!(VcpuInfo, time) == 32);

    assert!(size_of::<ArchSharedInfo>() == 48);

    assert!(EVTCHN_PENDING == 2048);
    assert!(EVTCHN_MASK == 2560);
    assert!(WC_VERSION == 3072);
    assert!(WC_SEC == 3076);
    assert!(WC_NSEC == 3080);
    assert!(WC_SEC_HI == 3084);
    assert!(offset_of!(SharedInfo, arch) == 3088);
    assert!(size_of::<SharedInfo>() == 3136);

    assert!(VCPU0_UPCALL_PENDING == 0);
    assert!(VCPU0_UPCALL_MASK == 1);
    assert!(VCPU0_PENDING_SEL == 8);
    assert!(VCPU0_CR2 == 16);
    assert!(VCPU0_TIME_VERSION == 32);
    assert!(VCPU0_TSC_TIMESTAMP == 40);
    assert!(VCPU0_SYSTEM_TIME == 48);
    assert!(VCPU0_TSC_TO_SYSTEM_MUL == 56);
    assert!(VCPU0_TSC_SHIFT == 60);
};
