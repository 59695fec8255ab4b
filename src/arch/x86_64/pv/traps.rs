//! PV-only exception and event entry: registers boot/pv_entry.S with Xen
//! (`set_trap_table`, `set_callbacks`) and holds the Rust side of those
//! stubs. A PVH kernel will instead load an IDT and take the upcall on a
//! HVM callback vector; both end in [`event::upcall`] and [`fatal`].
//!
//! Every CPU exception is fatal: it prints
//! `fatal: <exception> at rip=0x... (err=0x...)` (plus `cr2=` for a page
//! fault, read from vcpu_info.arch.cr2) and shuts down with reason crash, so
//! a bug never hangs silently.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::event;
use crate::hypercall::{self, Errno, ShutdownReason, TrapInfo, FLAT_KERNEL_CS};
use crate::kernel;
use crate::print;
use crate::println;
use crate::xen_abi::xen::VCPU0_CR2;

use crate::arch::x86_64::trap::{exception_name, TrapFrame};

global_asm!(
    concat!(
        include_str!("../../../../boot/trapframe.S"),
        include_str!("../../../../boot/pv_entry.S")
    ),
    options(att_syntax)
);

/// Failsafe frame after the stub popped rcx and r11.
#[repr(C)]
#[derive(Debug)]
pub struct FailsafeFrame {
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

unsafe extern "C" {
    fn xenfront_hypervisor_callback();
    fn xenfront_failsafe_callback();
    fn xenfront_trap_divide();
    fn xenfront_trap_debug();
    fn xenfront_trap_int3();
    fn xenfront_trap_overflow();
    fn xenfront_trap_bounds();
    fn xenfront_trap_invalid_op();
    fn xenfront_trap_no_device();
    fn xenfront_trap_double_fault();
    fn xenfront_trap_invalid_tss();
    fn xenfront_trap_no_segment();
    fn xenfront_trap_stack_segment();
    fn xenfront_trap_gp();
    fn xenfront_trap_page_fault();
    fn xenfront_trap_x87();
    fn xenfront_trap_alignment();
    fn xenfront_trap_machine_check();
    fn xenfront_trap_simd();
}

/// trap_info.flags: mask events on entry ("interrupt gate").
const TI_MASK_EVENTS: u8 = 4;

fn ti(vector: u8, dpl: u8, stub: unsafe extern "C" fn()) -> TrapInfo {
    TrapInfo {
        vector,
        flags: TI_MASK_EVENTS | dpl,
        cs: FLAT_KERNEL_CS,
        address: stub as usize as u64,
    }
}

/// Register the trap table and the event/failsafe callbacks, then let
/// events through. Call once, after `event::init`.
pub fn install() -> Result<(), Errno> {
    let table = [
        ti(0, 0, xenfront_trap_divide),
        ti(1, 0, xenfront_trap_debug),
        ti(3, 3, xenfront_trap_int3),
        ti(4, 3, xenfront_trap_overflow),
        ti(5, 0, xenfront_trap_bounds),
        ti(6, 0, xenfront_trap_invalid_op),
        ti(7, 0, xenfront_trap_no_device),
        ti(8, 0, xenfront_trap_double_fault),
        ti(10, 0, xenfront_trap_invalid_tss),
        ti(11, 0, xenfront_trap_no_segment),
        ti(12, 0, xenfront_trap_stack_segment),
        ti(13, 0, xenfront_trap_gp),
        ti(14, 0, xenfront_trap_page_fault),
        ti(16, 0, xenfront_trap_x87),
        ti(17, 0, xenfront_trap_alignment),
        ti(18, 0, xenfront_trap_machine_check),
        ti(19, 0, xenfront_trap_simd),
        TrapInfo {
            vector: 0,
            flags: 0,
            cs: 0,
            address: 0,
        },
    ];
    // SAFETY: every entry points at a TRAP_* stub of boot/pv_entry.S, which
    // handles the PV bounce frame for exactly that vector (error code or
    // not); the table ends with the zero entry.
    unsafe { hypercall::set_trap_table(&table)? };
    // SAFETY: the two stubs handle the PV event and failsafe frames; there
    // is no user mode, so no syscall entry.
    unsafe {
        hypercall::set_callbacks(
            xenfront_hypervisor_callback as *const () as u64,
            xenfront_failsafe_callback as *const () as u64,
            0,
        )?
    };
    event::enable_upcalls();
    Ok(())
}

/// Rust side of the event upcall (events masked; returns through iret).
#[unsafe(no_mangle)]
extern "C" fn xenfront_pv_upcall(_frame: &mut TrapFrame) {
    event::upcall();
}

static IN_FATAL: AtomicBool = AtomicBool::new(false);

/// Rust side of every CPU exception stub. Never returns.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pv_trap(frame: &TrapFrame) -> ! {
    // Read cr2 first: a later fault would overwrite it.
    let cr2 = event::shared_info()
        .map(|si| si.load_u32(VCPU0_CR2) as u64 | (si.load_u32(VCPU0_CR2 + 4) as u64) << 32);
    if frame.vector == 14 {
        fatal(format_args!(
            "{} at rip={:#x} (err={:#x}, cr2={:#x})",
            exception_name(frame.vector),
            frame.rip,
            frame.error,
            cr2.unwrap_or(0)
        ))
    } else {
        fatal(format_args!(
            "{} at rip={:#x} (err={:#x})",
            exception_name(frame.vector),
            frame.rip,
            frame.error
        ))
    }
}

/// Rust side of the failsafe callback. Never returns.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pv_failsafe(frame: &FailsafeFrame) -> ! {
    fatal(format_args!(
        "failsafe callback at rip={:#x} (ds={:#x} es={:#x} fs={:#x} gs={:#x})",
        frame.rip, frame.ds, frame.es, frame.fs, frame.gs
    ))
}

/// Print `fatal: <what>` and shut down with reason crash.
pub fn fatal(what: core::fmt::Arguments<'_>) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        // Faulted while reporting a fault: just stop.
        kernel::shutdown(ShutdownReason::Crash);
    }
    // SAFETY: the interrupted code (which may hold the console lock) never
    // resumes: we shut down below. Single vCPU, events masked by the gate.
    unsafe { print::force_unlock() };
    println!("fatal: {what}");
    kernel::finish(ShutdownReason::Crash)
}
