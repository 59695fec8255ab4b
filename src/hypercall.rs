//! Hypercalls: one typed function per hypercall, the only module that enters
//! Xen (drivers go through `event`, `time`, ... which call in here).
//!
//! Convention (guest-abi.md §4): call `hypercall_page + nr * 32`; arguments in
//! rdi, rsi, rdx, r10, r8; result in rax, negative = `-errno`. Debug Xen
//! overwrites the argument registers, so all of them are clobbered. The page
//! is filled by the PV domain builder (HYPERCALL_PAGE note in boot/pv.S).

pub use crate::errno::Errno;

/// Hypercall numbers (xen/include/public/xen.h).
pub mod nr {
    /// `__HYPERVISOR_set_trap_table`.
    pub const SET_TRAP_TABLE: usize = 0;
    /// `__HYPERVISOR_mmu_update`.
    pub const MMU_UPDATE: usize = 1;
    /// `__HYPERVISOR_set_callbacks`.
    pub const SET_CALLBACKS: usize = 4;
    /// `__HYPERVISOR_set_timer_op`.
    pub const SET_TIMER_OP: usize = 15;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: usize = 24;
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: usize = 12;
    /// `__HYPERVISOR_update_va_mapping`.
    pub const UPDATE_VA_MAPPING: usize = 14;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: usize = 17;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: usize = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: usize = 32;
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    /// 4 KiB page in .text, filled by Xen with one 32-byte stub per hypercall.
    static hypercall_page: [u8; 4096];
}

/// Raw five-argument hypercall.
///
/// # Safety
/// The arguments must be valid for hypercall `nr`: pointers must point to
/// live, correctly laid out memory of the size Xen expects for that command.
#[cfg(target_os = "none")]
#[inline]
unsafe fn hypercall(nr: usize, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    debug_assert!(nr < 128);
    // Taking the address of the extern static does not read it.
    let stub = &raw const hypercall_page as usize + nr * 32;
    let ret: i64;
    // SAFETY: the caller guarantees the arguments are valid for `nr`. The stub
    // is the builder-provided code for `nr`; it returns with `ret`. All
    // argument registers, rax, rcx and r11 are declared clobbered, and the
    // "memory" clobber (no `nomem`) makes the compiler assume Xen reads and
    // writes memory through the pointers. The stub uses the stack (no
    // `nostack`); the target has no red zone.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Host builds (unit tests) have no Xen: every hypercall fails with ENOSYS.
#[cfg(not(target_os = "none"))]
unsafe fn hypercall(_nr: usize, _a1: u64, _a2: u64, _a3: u64, _a4: u64, _a5: u64) -> i64 {
    -Errno::ENOSYS.code()
}

fn check(ret: i64) -> Result<u64, Errno> {
    Errno::from_ret(ret)
}

// ---------------------------------------------------------------- sched_op

/// `SHUTDOWN_*` reasons (sched.h); Dom0 sees them in `xl` / libxl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: domain exited normally; clean up and kill.
    Poweroff = 0,
    /// `SHUTDOWN_reboot`: clean up, kill, and then restart.
    Reboot = 1,
    /// `SHUTDOWN_suspend`: clean up, save suspend info, kill.
    Suspend = 2,
    /// `SHUTDOWN_crash`: tell controller we've crashed.
    Crash = 3,
    /// `SHUTDOWN_watchdog`: restart because the watchdog time expired.
    Watchdog = 4,
}

mod schedop {
    pub const YIELD: u64 = 0;
    pub const BLOCK: u64 = 1;
    pub const SHUTDOWN: u64 = 2;
    pub const POLL: u64 = 3;
}

#[repr(C)]
struct SchedShutdown {
    reason: u32,
}

#[repr(C)]
struct SchedPoll {
    ports: *const u32,
    nr_ports: u32,
    timeout: u64,
}

/// `SCHEDOP_shutdown`: for a domU this does not return on success.
pub fn sched_shutdown(reason: ShutdownReason) -> Result<(), Errno> {
    let arg = SchedShutdown {
        reason: reason as u32,
    };
    // SAFETY: `arg` is a live sched_shutdown for the duration of the call.
    check(unsafe {
        hypercall(
            nr::SCHED_OP,
            schedop::SHUTDOWN,
            &arg as *const _ as u64,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// `SCHEDOP_yield`: give up the CPU, stay runnable.
pub fn sched_yield() -> Result<(), Errno> {
    // SAFETY: yield takes no argument.
    check(unsafe { hypercall(nr::SCHED_OP, schedop::YIELD, 0, 0, 0, 0) }).map(drop)
}

/// `SCHEDOP_block`: sleep until an event is pending (unmasks events).
pub fn sched_block() -> Result<(), Errno> {
    // SAFETY: block takes no argument.
    check(unsafe { hypercall(nr::SCHED_OP, schedop::BLOCK, 0, 0, 0, 0) }).map(drop)
}

/// `SCHEDOP_poll`: sleep until one of `ports` is pending or Xen system time
/// reaches `timeout_abs_ns` (0 = no timeout). Works with events masked.
pub fn sched_poll(ports: &[u32], timeout_abs_ns: u64) -> Result<(), Errno> {
    let arg = SchedPoll {
        ports: ports.as_ptr(),
        nr_ports: u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?,
        timeout: timeout_abs_ns,
    };
    // SAFETY: `arg` and the `ports` slice it points to outlive the call.
    check(unsafe {
        hypercall(
            nr::SCHED_OP,
            schedop::POLL,
            &arg as *const _ as u64,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

// ------------------------------------------------------------- xen_version

mod xenver {
    pub const VERSION: u64 = 0;
    pub const EXTRAVERSION: u64 = 1;
    pub const GET_FEATURES: u64 = 6;
}

/// `XENVER_version`: (major, minor).
pub fn xen_version() -> Result<(u16, u16), Errno> {
    // SAFETY: XENVER_version takes no buffer.
    let v = check(unsafe { hypercall(nr::XEN_VERSION, xenver::VERSION, 0, 0, 0, 0) })?;
    Ok(((v >> 16) as u16, v as u16))
}

/// `XENVER_extraversion`: e.g. `.5+72-g01140da4e8`, NUL padded.
pub fn xen_extraversion() -> Result<[u8; 16], Errno> {
    let mut buf = [0u8; 16];
    // SAFETY: `buf` is the 16-byte xen_extraversion_t Xen writes into.
    check(unsafe {
        hypercall(
            nr::XEN_VERSION,
            xenver::EXTRAVERSION,
            buf.as_mut_ptr() as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(buf)
}

#[repr(C)]
struct FeatureInfo {
    submap_idx: u32,
    submap: u32,
}

/// `XENVER_get_features`: the 32-bit XENFEAT_* submap number `idx`.
pub fn xen_get_features(idx: u32) -> Result<u32, Errno> {
    let mut info = FeatureInfo {
        submap_idx: idx,
        submap: 0,
    };
    // SAFETY: `info` is a live xen_feature_info Xen fills in.
    check(unsafe {
        hypercall(
            nr::XEN_VERSION,
            xenver::GET_FEATURES,
            &mut info as *mut _ as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(info.submap)
}

// ------------------------------------------------------------------ hvm_op

/// `__HYPERVISOR_hvm_op`.
const HVM_OP: usize = 34;

/// `HVM_PARAM_*` indices (hvm/params.h) used by a PVH guest.
pub mod hvm_param {
    /// `HVM_PARAM_CALLBACK_IRQ`: how event upcalls are delivered (PVH: a
    /// vector, type 2 in bits 63:56).
    pub const CALLBACK_IRQ: u32 = 0;
    /// `HVM_PARAM_STORE_PFN`: frame of the XenStore ring page.
    pub const STORE_PFN: u32 = 1;
    /// `HVM_PARAM_STORE_EVTCHN`: event channel of the XenStore ring.
    pub const STORE_EVTCHN: u32 = 2;
    /// `HVM_PARAM_CONSOLE_PFN`: frame of the PV console ring page.
    pub const CONSOLE_PFN: u32 = 17;
    /// `HVM_PARAM_CONSOLE_EVTCHN`: event channel of the PV console.
    pub const CONSOLE_EVTCHN: u32 = 18;
}

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HvmParam {
    /// `domid_t`: the domain whose parameter this is (`DOMID_SELF`).
    pub domid: u16,
    /// `HVM_PARAM_*` index ([`hvm_param`]).
    pub index: u32,
    /// IN for set, OUT for get.
    pub value: u64,
}

fn hvm_param_op(cmd: u64, index: u32, value: u64) -> Result<u64, Errno> {
    let mut arg = HvmParam {
        domid: DOMID_SELF,
        index,
        value,
    };
    // SAFETY: `arg` is a live xen_hvm_param for the duration of the call;
    // get writes `value` back into it.
    check(unsafe { hypercall(HVM_OP, cmd, &mut arg as *mut _ as u64, 0, 0, 0) })?;
    Ok(arg.value)
}

/// `HVMOP_get_param` for our own domain (HVM/PVH only; PV gets -ENOSYS or
/// -EINVAL).
pub fn hvm_get_param(index: u32) -> Result<u64, Errno> {
    hvm_param_op(1, index, 0)
}

/// `HVMOP_set_param` for our own domain.
pub fn hvm_set_param(index: u32, value: u64) -> Result<(), Errno> {
    hvm_param_op(0, index, value).map(drop)
}

// -------------------------------------------------------- event_channel_op

/// An `EVTCHNOP_*` argument struct (event_channel.h), tied to its command.
///
/// # Safety
/// `CMD` must be the command whose argument layout is `Self`.
pub unsafe trait EvtchnOp {
    /// The `EVTCHNOP_*` command number.
    const CMD: u64;
}

/// `EVTCHNOP_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnSend {
    /// IN: local port to notify.
    pub port: u32,
}

/// `EVTCHNOP_alloc_unbound`: offer a port to `remote_dom`; `port` is out.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnAllocUnbound {
    /// IN: domain that gets the port (`DOMID_SELF`).
    pub dom: u16,
    /// IN: the only domain allowed to bind it.
    pub remote_dom: u16,
    /// OUT: the new local port.
    pub port: u32,
}

/// `EVTCHNOP_bind_interdomain`: `local_port` is out.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnBindInterdomain {
    /// IN: the domain that offered the port.
    pub remote_dom: u16,
    /// IN: its unbound port.
    pub remote_port: u32,
    /// OUT: our end of the channel.
    pub local_port: u32,
}

/// `EVTCHNOP_bind_virq`: `port` is out.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnBindVirq {
    /// IN: `VIRQ_*` number (xen.h).
    pub virq: u32,
    /// IN: vCPU to deliver it to.
    pub vcpu: u32,
    /// OUT: the bound local port.
    pub port: u32,
}

/// `EVTCHNOP_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnClose {
    /// IN: local port to close.
    pub port: u32,
}

/// `EVTCHNOP_unmask`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EvtchnUnmask {
    /// IN: local port to unmask.
    pub port: u32,
}

/// `EVTCHNOP_status` argument: `dom`/`port` in, the rest out (event_channel.h
/// `evtchn_status`; the union is 8 bytes, interpreted by [`EvtchnState`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnStatusOp {
    /// IN: domain owning the port (`DOMID_SELF`).
    pub dom: u16,
    /// Padding (C alignment of `port`).
    pub _pad: u16,
    /// IN: the port to query.
    pub port: u32,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the port is bound to.
    pub vcpu: u32,
    /// OUT: the status-specific union (`unbound.dom`, `interdomain.{dom,
    /// port}`, `pirq`, `virq`).
    pub u: [u32; 2],
}

/// What a port is connected to (`EVTCHNSTAT_*`), decoded from
/// [`EvtchnStatusOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnState {
    /// `EVTCHNSTAT_closed`: not in use.
    Closed,
    /// `EVTCHNSTAT_unbound`: offered to `remote_dom`, nobody bound yet.
    Unbound {
        /// The domain allowed to bind it.
        remote_dom: u16,
    },
    /// `EVTCHNSTAT_interdomain`: connected to `remote_port` of `dom`.
    Interdomain {
        /// The peer domain.
        dom: u16,
        /// The peer's port.
        remote_port: u32,
    },
    /// `EVTCHNSTAT_pirq`: bound to this physical IRQ.
    Pirq(u32),
    /// `EVTCHNSTAT_virq`: bound to this `VIRQ_*`.
    Virq(u32),
    /// `EVTCHNSTAT_ipi`: an inter-vCPU channel.
    Ipi,
    /// A status value this kernel does not know.
    Other(u32),
}

impl EvtchnStatusOp {
    /// Decodes `status` and the union into an [`EvtchnState`].
    pub fn state(&self) -> EvtchnState {
        match self.status {
            0 => EvtchnState::Closed,
            1 => EvtchnState::Unbound {
                remote_dom: self.u[0] as u16,
            },
            2 => EvtchnState::Interdomain {
                dom: self.u[0] as u16,
                remote_port: self.u[1],
            },
            3 => EvtchnState::Pirq(self.u[0]),
            4 => EvtchnState::Virq(self.u[0]),
            5 => EvtchnState::Ipi,
            s => EvtchnState::Other(s),
        }
    }
}

// SAFETY (all impls below): command numbers from event_channel.h, each paired
// with its argument struct, laid out as in the C header.
unsafe impl EvtchnOp for EvtchnBindInterdomain {
    const CMD: u64 = 0;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnBindVirq {
    const CMD: u64 = 1;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnClose {
    const CMD: u64 = 3;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnSend {
    const CMD: u64 = 4;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnAllocUnbound {
    const CMD: u64 = 6;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnUnmask {
    const CMD: u64 = 9;
}
// SAFETY: see above.
unsafe impl EvtchnOp for EvtchnStatusOp {
    const CMD: u64 = 5;
}

/// `event_channel_op(T::CMD, op)`; out fields are written back into `op`.
pub fn event_channel_op<T: EvtchnOp>(op: &mut T) -> Result<(), Errno> {
    // SAFETY: `T: EvtchnOp` guarantees `op` has the layout Xen expects for
    // `T::CMD`; the mutable borrow keeps it alive and exclusive.
    check(unsafe { hypercall(nr::EVENT_CHANNEL_OP, T::CMD, op as *mut T as u64, 0, 0, 0) })
        .map(drop)
}

/// `EVTCHNOP_send` on `port`.
pub fn evtchn_send(port: u32) -> Result<(), Errno> {
    event_channel_op(&mut EvtchnSend { port })
}

// ------------------------------------------------------- time and vcpu_op

/// `set_timer_op(abs_ns)`: one-shot timer at Xen system time `abs_ns`,
/// signalled on VIRQ_TIMER; 0 cancels.
pub fn set_timer_op(abs_ns: u64) -> Result<(), Errno> {
    // SAFETY: scalar argument only.
    check(unsafe { hypercall(nr::SET_TIMER_OP, abs_ns, 0, 0, 0, 0) }).map(drop)
}

/// `VCPUOP_stop_periodic_timer` on `vcpu`: PV vCPUs start with a 10 ms
/// periodic VIRQ_TIMER; a tickless kernel turns it off.
pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<(), Errno> {
    const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
    // SAFETY: this command takes no argument struct (NULL).
    check(unsafe {
        hypercall(
            nr::VCPU_OP,
            VCPUOP_STOP_PERIODIC_TIMER,
            vcpu as u64,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

// ------------------------------------------------------- PV traps, callbacks

/// `FLAT_KERNEL_CS` (x86_64 PV kernels run in ring 3).
pub const FLAT_KERNEL_CS: u16 = 0xe033;

/// One `trap_info` entry (arch-x86/xen.h) for [`set_trap_table`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapInfo {
    /// Exception vector.
    pub vector: u8,
    /// Bits 0-1: DPL allowed to `int n` it; 4: mask events on entry.
    pub flags: u8,
    /// Code selector of the handler ([`FLAT_KERNEL_CS`]).
    pub cs: u16,
    /// Handler address; 0 ends the table.
    pub address: u64,
}

/// `set_trap_table(table)`. The table must end with an all-zero entry
/// (address 0); this is checked.
///
/// # Safety
/// Every non-terminating entry's `address` must be an entry stub that copes
/// with the PV bounce frame (guest-abi.md §2): Xen jumps there on the
/// exception.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<(), Errno> {
    if table.last().is_none_or(|t| t.address != 0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `table` is a live, terminated trap_info array (Xen copies it);
    // the caller vouches for the handler addresses.
    check(unsafe { hypercall(nr::SET_TRAP_TABLE, table.as_ptr() as u64, 0, 0, 0, 0) }).map(drop)
}

/// `set_callbacks(event, failsafe, syscall)` (x86_64: three addresses).
///
/// # Safety
/// `event` and `failsafe` must be entry stubs for the PV callback frames
/// (guest-abi.md §2); `syscall` may be 0 (no user mode).
pub unsafe fn set_callbacks(event: u64, failsafe: u64, syscall: u64) -> Result<(), Errno> {
    // SAFETY: scalar arguments; the caller vouches for the addresses.
    check(unsafe { hypercall(nr::SET_CALLBACKS, event, failsafe, syscall, 0, 0) }).map(drop)
}

// ------------------------------------------------------------------ PV mm

/// `UVMF_*` flags for [`update_va_mapping`].
pub mod uvmf {
    /// `UVMF_NONE`: no TLB flush.
    pub const NONE: u64 = 0;
    /// `UVMF_TLB_FLUSH`: flush the whole TLB.
    pub const TLB_FLUSH: u64 = 1;
    /// `UVMF_INVLPG`: flush only the one VA.
    pub const INVLPG: u64 = 2;
    /// `UVMF_ALL`: on all vCPUs (default: the local one).
    pub const ALL: u64 = 4;
}

/// `update_va_mapping(va, pte, flags)`: set the L1 entry mapping `va`.
///
/// # Safety
/// Changing a mapping can pull memory out from under live references: no
/// Rust reference may point into the page at `va` across this call unless
/// the new frame is meant to back it.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), Errno> {
    // SAFETY: scalar arguments only; the caller upholds the aliasing rule.
    check(unsafe { hypercall(nr::UPDATE_VA_MAPPING, va, pte, flags, 0, 0) }).map(drop)
}

/// One `mmu_update` request: `ptr` = machine address | command, `val`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MmuUpdate {
    /// Machine address of the PTE (or the MFN, for `MMU_MACHPHYS_UPDATE`),
    /// `MMU_*` command in the low 2 bits.
    pub ptr: u64,
    /// The new contents (PTE, or PFN for the M2P).
    pub val: u64,
}

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `mmu_update(reqs, count, &done, DOMID_SELF)`; returns how many were done.
///
/// # Safety
/// The requests rewrite page tables (or the M2P): the caller must not break
/// mappings that live references rely on.
pub unsafe fn mmu_update(reqs: &[MmuUpdate]) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    // SAFETY: `reqs` and `done` outlive the call; the caller upholds the
    // mapping rules.
    check(unsafe {
        hypercall(
            nr::MMU_UPDATE,
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            &mut done as *mut u32 as u64,
            DOMID_SELF as u64,
            0,
        )
    })?;
    Ok(done)
}

// -------------------------------------------------------------- memory_op

/// `XENMEM_add_to_physmap` argument (memory.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AddToPhysmap {
    /// Which domain to change the mapping for (`DOMID_SELF`).
    pub domid: u16,
    /// Number of pages to go through, for `XENMAPSPACE_gmfn_range` only.
    pub size: u16,
    /// `XENMAPSPACE_*`: 0 shared_info, 1 grant_table.
    pub space: u32,
    /// Index into the space (grant table frame; bit 31 = status frame).
    pub idx: u64,
    /// Guest frame where the source page goes.
    pub gpfn: u64,
}

/// `memory_op(XENMEM_add_to_physmap, arg)` (PVH: shared_info, grant frames).
///
/// # Safety
/// Replaces whatever backs `arg.gpfn`; no live reference may rely on it.
pub unsafe fn memory_op_add_to_physmap(arg: &AddToPhysmap) -> Result<(), Errno> {
    const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
    // SAFETY: `arg` is a live xen_add_to_physmap; the caller upholds the
    // aliasing rule for the target frame.
    check(unsafe {
        hypercall(
            nr::MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP,
            arg as *const _ as u64,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

// --------------------------------------------------------- grant_table_op

use crate::grant_table::{
    op as gntop, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable, GnttabUnmapGrantRef,
};

/// `__HYPERVISOR_grant_table_op`.
const GRANT_TABLE_OP: usize = 20;

/// `GNTTABOP_query_size` for our own table. The per-op `status` is left in
/// the result for the caller to decode (`GntStatusError::check`).
pub fn gnttab_query_size() -> Result<GnttabQuerySize, Errno> {
    let mut q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    // SAFETY: `q` is a live gnttab_query_size, count 1.
    check(unsafe {
        hypercall(
            GRANT_TABLE_OP,
            u64::from(gntop::QUERY_SIZE),
            &mut q as *mut _ as u64,
            1,
            0,
            0,
        )
    })?;
    Ok(q)
}

/// `GNTTABOP_setup_table`: grow our table to `frames.len()` frames; Xen
/// writes the frame numbers (PV: MFNs) into `frames`. Returns the per-op
/// `GNTST_*` status.
pub fn gnttab_setup_table(frames: &mut [u64]) -> Result<i16, Errno> {
    let mut op = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: u32::try_from(frames.len()).map_err(|_| Errno::EINVAL)?,
        frame_list: frames.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `op` is live and its frame_list points at `frames`, which has
    // room for exactly `nr_frames` entries and outlives the call.
    check(unsafe {
        hypercall(
            GRANT_TABLE_OP,
            u64::from(gntop::SETUP_TABLE),
            &mut op as *mut _ as u64,
            1,
            0,
            0,
        )
    })?;
    Ok(op.status)
}

/// `GNTTABOP_map_grant_ref` (one op); `status`/`handle` are written back.
///
/// # Safety
/// With `GNTMAP_host_map`, `op.host_addr` (PV: a VA whose L1 table exists)
/// gets a new mapping: nothing may rely on what was mapped there.
pub unsafe fn gnttab_map_grant_ref(op: &mut GnttabMapGrantRef) -> Result<(), Errno> {
    // SAFETY: `op` is a live gnttab_map_grant_ref, count 1; the caller
    // vouches for host_addr.
    check(unsafe {
        hypercall(
            GRANT_TABLE_OP,
            u64::from(gntop::MAP_GRANT_REF),
            op as *mut _ as u64,
            1,
            0,
            0,
        )
    })
    .map(drop)
}

/// `GNTTABOP_unmap_grant_ref` (one op); `status` is written back.
///
/// # Safety
/// The mapping at `op.host_addr` goes away: no reference may point into it.
pub unsafe fn gnttab_unmap_grant_ref(op: &mut GnttabUnmapGrantRef) -> Result<(), Errno> {
    // SAFETY: `op` is a live gnttab_unmap_grant_ref, count 1; the caller
    // vouches that nothing uses the mapping.
    check(unsafe {
        hypercall(
            GRANT_TABLE_OP,
            u64::from(gntop::UNMAP_GRANT_REF),
            op as *mut _ as u64,
            1,
            0,
            0,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    // Layouts are checked against the C headers' offsets (guest-abi.md).
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn host_has_no_xen() {
        assert_eq!(xen_version(), Err(Errno::ENOSYS));
        assert_eq!(evtchn_send(1), Err(Errno::ENOSYS));
    }

    #[test]
    fn layouts() {
        assert_eq!(offset_of!(SchedPoll, nr_ports), 8);
        assert_eq!(offset_of!(SchedPoll, timeout), 16);
        assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
        assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);
        assert_eq!(size_of::<MmuUpdate>(), 16);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(size_of::<TrapInfo>(), 16);
        assert_eq!(offset_of!(TrapInfo, address), 8);
        assert_eq!(size_of::<EvtchnStatusOp>(), 24);
        assert_eq!(offset_of!(EvtchnStatusOp, status), 8);
        assert_eq!(offset_of!(EvtchnStatusOp, u), 16);
    }

    #[test]
    fn status_decoding() {
        let mut op = EvtchnStatusOp {
            status: 2,
            u: [0, 7],
            ..Default::default()
        };
        assert_eq!(
            op.state(),
            EvtchnState::Interdomain {
                dom: 0,
                remote_port: 7
            }
        );
        op.status = 1;
        assert_eq!(op.state(), EvtchnState::Unbound { remote_dom: 0 });
        op.status = 4;
        assert_eq!(op.state(), EvtchnState::Virq(0));
        op.status = 9;
        assert_eq!(op.state(), EvtchnState::Other(9));
        // SAFETY: an unterminated (empty) table is rejected before any call.
        assert_eq!(unsafe { set_trap_table(&[]) }, Err(Errno::EINVAL));
    }
}
