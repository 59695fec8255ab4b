//! PVH entry (`type="pvh"`): boot/pvh.S (PHYS32_ENTRY note, 32-bit entry,
//! boot page tables, long mode, IDT stubs) calls [`xenfront_pvh_entry`],
//! which sets up what the PV builder would have given us and enters the same
//! `kernel::start` as PV (src/arch/x86_64/pv/entry.rs). Everything
//! PVH-specific lives here:
//!
//! 1. hypercall page: find Xen's CPUID leaves, write the page's physical
//!    address to the MSR they name (before any hypercall);
//! 2. GDT with a TSS (IST1 = a separate #DF stack) and IDT: exceptions are
//!    fatal (`fatal: ...`, shutdown crash, like PV);
//! 3. shared_info: `XENMEM_add_to_physmap` over the same .bss page PV
//!    remaps, then `event::init` as on PV;
//! 4. console and XenStore from the HVM params, memory map and command line
//!    from hvm_start_info → [`Platform::from_pvh`].
//!
//! Memory is identity-mapped (VA == PA) for the first 4 GiB by the boot
//! tables; [`with_boot_tables`] gives them to Rust as an
//! `x86_64::structures::paging::OffsetPageTable` (offset 0).
//!
//! Before the console exists, failures are written to port 0xE9, which Xen
//! shows in its log as `(dN) ...` lines (PVH only; `guest_loglvl=all`).

use core::arch::global_asm;
use core::fmt::{self, Write};

use spin::{Mutex, Once};
use x86_64::instructions::port::Port;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::Cr2;
use x86_64::registers::model_specific::Msr;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::paging::{Mapper, OffsetPageTable, Page, PageTable, Size2MiB, Translate};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::x86_64::trap::{exception_name, TrapFrame};
use crate::event;
use crate::heap;
use crate::hypercall::{self, hvm_param, AddToPhysmap, Errno, ShutdownReason, DOMID_SELF};
use crate::kernel;
use crate::platform::{Platform, MAX_MEMMAP};
use crate::print;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::xen_abi::start_info::{HvmStartInfo, MemmapEntry, CMDLINE_MAX, HVM_START_MAGIC};

global_asm!(
    concat!(
        include_str!("../../../../boot/trapframe.S"),
        include_str!("../../../../boot/pvh.S")
    ),
    options(att_syntax)
);

/// The vector Xen raises for event-channel upcalls
/// (`HVM_PARAM_CALLBACK_IRQ` = `(2 << 56) | vector`); Linux uses the same.
pub const CALLBACK_VECTOR: u8 = 0xf3;

/// Boot page tables cover VA == PA below this (boot/pvh.S).
pub const IDENTITY_LIMIT: u64 = 4 << 30;

unsafe extern "C" {
    /// Filled by Xen once its physical address is written to the MSR.
    static hypercall_page: [u8; PAGE_SIZE];
    /// .bss page whose frame is replaced by shared_info (boot/pv.S).
    static mut shared_info_page: [u8; PAGE_SIZE];
    /// Lowest word of the 64 KiB boot stack (boot/pv.S): holds the canary.
    static mut __boot_stack_bottom: u64;
    /// Boot PML4 built by `_pvh_start` (boot/pvh.S).
    static mut pvh_pml4: PageTable;
    /// The `hlt` of `xenfront_pvh_idle` (boot/pvh.S).
    static xenfront_pvh_idle_hlt: u8;

    fn xenfront_pvh_callback();
    fn xenfront_pvh_trap_divide();
    fn xenfront_pvh_trap_debug();
    fn xenfront_pvh_trap_nmi();
    fn xenfront_pvh_trap_int3();
    fn xenfront_pvh_trap_overflow();
    fn xenfront_pvh_trap_bounds();
    fn xenfront_pvh_trap_invalid_op();
    fn xenfront_pvh_trap_no_device();
    fn xenfront_pvh_trap_double_fault();
    fn xenfront_pvh_trap_invalid_tss();
    fn xenfront_pvh_trap_no_segment();
    fn xenfront_pvh_trap_stack_segment();
    fn xenfront_pvh_trap_gp();
    fn xenfront_pvh_trap_page_fault();
    fn xenfront_pvh_trap_x87();
    fn xenfront_pvh_trap_alignment();
    fn xenfront_pvh_trap_machine_check();
    fn xenfront_pvh_trap_simd();
    fn xenfront_pvh_trap_other();
}

// ------------------------------------------------------------ early output

/// Port 0xE9: Xen's debug console for HVM/PVH guests.
struct E9;

impl Write for E9 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut port = Port::<u8>::new(0xe9);
        for b in s.bytes() {
            // SAFETY: port 0xE9 is Xen's write-only debug port; writing it
            // has no effect on guest memory.
            unsafe { port.write(b) };
        }
        Ok(())
    }
}

/// One line on port 0xE9 (Xen's log), prefixed `xenfront: pvh: `.
fn early(args: fmt::Arguments<'_>) {
    let _ = writeln!(E9, "xenfront: pvh: {args}");
}

/// Stop for good when even hypercalls are unavailable.
fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// A boot failure before the console exists: say it on port 0xE9, then
/// shut down with reason crash (hypercalls work by then).
fn boot_fail(args: fmt::Arguments<'_>) -> ! {
    early(args);
    kernel::shutdown(ShutdownReason::Crash)
}

// ---------------------------------------------------------- hypercall page

fn cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid(leaf)
}

/// First Xen CPUID leaf (0x40000000, 0x40000100, ...): signature
/// "XenVMMXenVMM" and at least two more leaves.
fn xen_cpuid_base() -> Option<u32> {
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
        let r = cpuid(base);
        r.ebx == 0x566e_6558
            && r.ecx == 0x6558_4d4d
            && r.edx == 0x4d4d_566e
            && r.eax.wrapping_sub(base) >= 2
    })
}

/// Ask Xen to fill `hypercall_page` (CPUID leaf base+2 names the MSR).
fn install_hypercall_page() -> Result<(), &'static str> {
    let base = xen_cpuid_base().ok_or("no Xen CPUID leaves")?;
    let leaf = cpuid(base + 2);
    if leaf.eax == 0 {
        return Err("Xen offers no hypercall page");
    }
    // Identity-mapped: the VA is the guest-physical address.
    let page = &raw const hypercall_page as u64;
    // SAFETY: the MSR is the one Xen designated for the hypercall page; the
    // value is the page-aligned physical address of our own page reserved
    // for exactly this (boot/pv.S), which nothing else uses.
    unsafe { Msr::new(leaf.ebx).write(page) };
    Ok(())
}

// ------------------------------------------------------------- page tables

static BOOT_TABLES: Mutex<()> = Mutex::new(());

/// Run `f` on the boot page tables (boot/pvh.S) described as an
/// `OffsetPageTable` with offset 0 (identity). Extend them from here (e.g.
/// RAM above 4 GiB, with frames from the memory manager).
pub fn with_boot_tables<R>(f: impl FnOnce(&mut OffsetPageTable<'_>) -> R) -> R {
    let _guard = BOOT_TABLES.lock();
    // SAFETY: `pvh_pml4` is the live, identity-mapped PML4 (in cr3) built by
    // `_pvh_start`; the lock makes this the only reference to it while `f`
    // runs, and all lower tables are reachable at their physical address
    // (offset 0).
    let pml4: *mut PageTable = &raw mut pvh_pml4;
    // SAFETY: as above.
    let mut mapper = unsafe { OffsetPageTable::new(&mut *pml4, VirtAddr::new(0)) };
    f(&mut mapper)
}

/// Whether guest-physical page `pfn` is reachable at VA == PA.
pub fn identity_mapped(pfn: u64) -> bool {
    let Some(pa) = pfn.checked_mul(PAGE_SIZE as u64) else {
        return false;
    };
    let Ok(va) = VirtAddr::try_new(pa) else {
        return false;
    };
    with_boot_tables(|m| m.translate_addr(va) == Some(PhysAddr::new(pa)))
}

/// Unmap every 2 MiB page of the boot identity map that touches no region
/// of the memory map and neither ring page, so that stray pointers fault
/// (#PF, reported as fatal) as they do on PV instead of reading holes.
/// Returns how many 2 MiB pages stay mapped.
fn unmap_holes(platform: &Platform) -> u64 {
    const HUGE: u64 = 2 << 20;
    let rings = [platform.console, platform.store];
    let keep = |start: u64| {
        let end = start + HUGE;
        platform
            .memmap
            .entries()
            .iter()
            .any(|e| e.addr < end && start < e.addr.saturating_add(e.size))
            || rings
                .iter()
                .flatten()
                .any(|r| (start..end).contains(&(r.pfn << 12)))
    };
    let mut kept = 0;
    with_boot_tables(|m| {
        for start in (0..IDENTITY_LIMIT).step_by(HUGE as usize) {
            if keep(start) {
                kept += 1;
                continue;
            }
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(start));
            // Nothing lives in a hole; the flush is done once below.
            if let Ok((_, flush)) = m.unmap(page) {
                flush.ignore();
            }
        }
    });
    x86_64::instructions::tlb::flush_all();
    kept
}

// ---------------------------------------------------------- GDT, TSS, IST

/// Size of the double-fault stack (IST1).
const DF_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct DfStack([u8; DF_STACK_SIZE]);

/// IST1: the stack #DF runs on, so that a fault caused by a broken or
/// overflowed stack is reported (`fatal: double fault ... rsp=...`) instead
/// of escalating to a triple fault (the boot stack has no guard page).
static mut DF_STACK: DfStack = DfStack([0; DF_STACK_SIZE]);

/// IST index (0-based, i.e. IST1) of [`DF_STACK`].
const DF_IST_INDEX: u16 = 0;

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<GlobalDescriptorTable> = Once::new();

/// Replace the boot GDT (boot/pvh.S, no TSS) with one that has the same
/// code (0x08) and data (0x10) selectors plus a 64-bit TSS whose IST1 is
/// [`DF_STACK`], and load TR. In .bss, away from the boot stack.
fn load_gdt_tss() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let top = (&raw const DF_STACK as u64) + DF_STACK_SIZE as u64;
        tss.interrupt_stack_table[DF_IST_INDEX as usize] = VirtAddr::new(top);
        tss
    });
    let mut sel = [None; 3];
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        sel[0] = Some(gdt.append(Descriptor::kernel_code_segment()));
        sel[1] = Some(gdt.append(Descriptor::kernel_data_segment()));
        sel[2] = Some(gdt.append(Descriptor::tss_segment(tss)));
        gdt
    });
    let (Some(code), Some(data), Some(tss_sel)) = (sel[0], sel[1], sel[2]) else {
        return;
    };
    gdt.load();
    // SAFETY: the selectors name the descriptors just appended to the
    // loaded GDT (64-bit code, flat data — the same 0x08/0x10 layout as the
    // boot GDT — and an available 64-bit TSS that lives for ever).
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
    }
}

/// Written at the bottom of the boot stack at entry and checked on every
/// upcall: the boot stack has no guard page, so an overflow would otherwise
/// silently overwrite shared_info and .data below it.
const STACK_CANARY: u64 = 0x6b63_6174_735f_6678; // "xf_stack"

fn arm_stack_canary() {
    // SAFETY: the lowest word of the boot stack; the stack never gets that
    // deep unless it overflows, which is what the canary detects.
    unsafe { (&raw mut __boot_stack_bottom).write_volatile(STACK_CANARY) }
}

fn stack_canary_ok() -> bool {
    // SAFETY: as in `arm_stack_canary`; a plain read.
    unsafe { (&raw const __boot_stack_bottom).read_volatile() == STACK_CANARY }
}

// -------------------------------------------------------------------- IDT

static IDT: Once<InterruptDescriptorTable> = Once::new();

fn addr(stub: unsafe extern "C" fn()) -> VirtAddr {
    VirtAddr::new(stub as usize as u64)
}

/// Load the IDT: every exception and any unexpected vector is fatal;
/// [`CALLBACK_VECTOR`] is the event upcall.
fn load_idt() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        // SAFETY: every address is a stub of boot/pvh.S written for that
        // vector: it expects the CPU frame with an error code exactly for the
        // `*_ERR` vectors (8, 10-14, 17) and none otherwise, and never returns
        // except for the callback stub, which ends in iretq. IST1 is set up
        // by `load_gdt_tss`, which runs before this.
        unsafe {
            idt.divide_error
                .set_handler_addr(addr(xenfront_pvh_trap_divide));
            idt.debug.set_handler_addr(addr(xenfront_pvh_trap_debug));
            idt.non_maskable_interrupt
                .set_handler_addr(addr(xenfront_pvh_trap_nmi));
            idt.breakpoint
                .set_handler_addr(addr(xenfront_pvh_trap_int3));
            idt.overflow
                .set_handler_addr(addr(xenfront_pvh_trap_overflow));
            idt.bound_range_exceeded
                .set_handler_addr(addr(xenfront_pvh_trap_bounds));
            idt.invalid_opcode
                .set_handler_addr(addr(xenfront_pvh_trap_invalid_op));
            idt.device_not_available
                .set_handler_addr(addr(xenfront_pvh_trap_no_device));
            idt.double_fault
                .set_handler_addr(addr(xenfront_pvh_trap_double_fault))
                .set_stack_index(DF_IST_INDEX);
            idt.invalid_tss
                .set_handler_addr(addr(xenfront_pvh_trap_invalid_tss));
            idt.segment_not_present
                .set_handler_addr(addr(xenfront_pvh_trap_no_segment));
            idt.stack_segment_fault
                .set_handler_addr(addr(xenfront_pvh_trap_stack_segment));
            idt.general_protection_fault
                .set_handler_addr(addr(xenfront_pvh_trap_gp));
            idt.page_fault
                .set_handler_addr(addr(xenfront_pvh_trap_page_fault));
            idt.x87_floating_point
                .set_handler_addr(addr(xenfront_pvh_trap_x87));
            idt.alignment_check
                .set_handler_addr(addr(xenfront_pvh_trap_alignment));
            idt.machine_check
                .set_handler_addr(addr(xenfront_pvh_trap_machine_check));
            idt.simd_floating_point
                .set_handler_addr(addr(xenfront_pvh_trap_simd));
            for v in 32..=255u8 {
                let stub = if v == CALLBACK_VECTOR {
                    xenfront_pvh_callback
                } else {
                    xenfront_pvh_trap_other
                };
                idt[v].set_handler_addr(addr(stub));
            }
        }
        idt
    });
    idt.load();
}

/// Rust side of every exception stub. Never returns.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pvh_trap(frame: &TrapFrame) -> ! {
    let name = exception_name(frame.vector);
    if frame.vector == 8 {
        fatal(format_args!(
            "{name} at rip={:#x} (err={:#x}, rsp={:#x})",
            frame.rip, frame.error, frame.rsp
        ))
    } else if frame.vector == 14 {
        let cr2 = Cr2::read_raw();
        fatal(format_args!(
            "{name} at rip={:#x} (err={:#x}, cr2={cr2:#x})",
            frame.rip, frame.error
        ))
    } else {
        fatal(format_args!(
            "{name} at rip={:#x} (err={:#x})",
            frame.rip, frame.error
        ))
    }
}

/// Rust side of the callback-vector stub (IF clear while it runs): the
/// same 2-level scan as the PV upcall. No EOI: the callback via is not
/// routed through the LAPIC.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pvh_upcall(frame: &mut TrapFrame) {
    if !stack_canary_ok() {
        fatal(format_args!(
            "boot stack overflow (canary at {:#x} overwritten) at rip={:#x} rsp={:#x}",
            &raw const __boot_stack_bottom as u64, frame.rip, frame.rsp
        ));
    }
    let hlt = &raw const xenfront_pvh_idle_hlt as u64;
    if event::upcall_at_idle_hlt(frame.rip, hlt) {
        frame.rip += 1; // `hlt` is one byte (f4): resume at the `ret`
    }
    event::upcall();
}

/// `XENFEAT_hvm_callback_vector`.
const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;

/// Have Xen raise [`CALLBACK_VECTOR`] for event upcalls
/// (`HVM_PARAM_CALLBACK_IRQ` = `(2 << 56) | vector`), then let them in.
fn install_callback() -> Result<(), &'static str> {
    let feats = hypercall::xen_get_features(0).map_err(|_| "XENVER_get_features failed")?;
    if feats & (1 << XENFEAT_HVM_CALLBACK_VECTOR) == 0 {
        return Err("Xen lacks XENFEAT_hvm_callback_vector");
    }
    hypercall::hvm_set_param(hvm_param::CALLBACK_IRQ, (2 << 56) | CALLBACK_VECTOR as u64)
        .map_err(|_| "HVMOP_set_param(CALLBACK_IRQ) failed")?;
    event::enable_vector_upcalls();
    Ok(())
}

static IN_FATAL: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Print `fatal: <what>` (console and port 0xE9) and shut down with reason
/// crash — the same report as the PV trap path.
pub fn fatal(what: fmt::Arguments<'_>) -> ! {
    if IN_FATAL.swap(true, core::sync::atomic::Ordering::SeqCst) {
        kernel::shutdown(ShutdownReason::Crash);
    }
    early(format_args!("fatal: {what}"));
    // SAFETY: the interrupted code (which may hold the console lock) never
    // resumes: we shut down below. Single vCPU, IF clear in the gate.
    unsafe { print::force_unlock() };
    crate::println!("fatal: {what}");
    kernel::finish(ShutdownReason::Crash)
}

// ------------------------------------------------------------ shared_info

/// Put the shared_info frame at the pfn of `shared_info_page` (the RAM page
/// behind it is given back to Xen).
fn map_shared_info() -> Result<SharedMem<'static>, Errno> {
    let va = &raw mut shared_info_page as *mut u8;
    let arg = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: 0, // XENMAPSPACE_shared_info
        idx: 0,
        gpfn: va as u64 >> 12, // identity-mapped: VA == PA
    };
    // SAFETY: no reference to `shared_info_page` exists: it is only reached
    // through the SharedMem built below, after the remap.
    unsafe { hypercall::memory_op_add_to_physmap(&arg)? };
    // SAFETY: the page at `va` is shared_info from now on, for the life of
    // the kernel; page-aligned, accessed only through SharedMem.
    Ok(unsafe { SharedMem::from_raw(va, PAGE_SIZE) })
}

// --------------------------------------------------------- hvm_start_info

/// Copy `len` bytes at guest-physical `paddr` if the boot tables cover them.
fn phys_read<T: Copy>(paddr: u64) -> Option<T> {
    let size = core::mem::size_of::<T>() as u64;
    let end = paddr.checked_add(size)?;
    if paddr == 0 || end > IDENTITY_LIMIT {
        return None;
    }
    // SAFETY: [paddr, end) lies below 4 GiB, identity-mapped by the boot
    // tables; Xen put plain data there (hvm_start_info and what it points
    // to) and nothing writes it concurrently. Unaligned-safe read.
    Some(unsafe { core::ptr::read_unaligned(paddr as *const T) })
}

/// The NUL-terminated command line at `paddr` (at most CMDLINE_MAX - 1
/// bytes; longer lines are cut).
fn read_cmdline(paddr: u64, buf: &mut [u8; CMDLINE_MAX]) -> Option<usize> {
    if paddr == 0 {
        return Some(0);
    }
    for (i, slot) in buf[..CMDLINE_MAX - 1].iter_mut().enumerate() {
        let b: u8 = phys_read(paddr + i as u64)?;
        if b == 0 {
            return Some(i);
        }
        *slot = b;
    }
    Some(CMDLINE_MAX - 1)
}

/// (pfn, port) from two HVM params; (0, 0) if Xen does not know them.
fn ring_params(pfn: u32, port: u32) -> (u64, u32) {
    match (
        hypercall::hvm_get_param(pfn),
        hypercall::hvm_get_param(port),
    ) {
        (Ok(pfn), Ok(port)) => (pfn, port as u32),
        (Err(e), _) | (_, Err(e)) => {
            early(format_args!("HVM param {pfn}/{port}: {e}"));
            (0, 0)
        }
    }
}

/// Rust side of the PVH entry (`_pvh_start`, 64-bit, identity-mapped,
/// IF clear), with the guest-physical address of hvm_start_info.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pvh_entry(start_info_paddr: u64) -> ! {
    arm_stack_canary();
    load_gdt_tss();
    load_idt();
    if let Err(e) = install_hypercall_page() {
        early(format_args!("{e}: cannot make hypercalls, halting"));
        halt();
    }
    let Some(hsi) = phys_read::<HvmStartInfo>(start_info_paddr) else {
        boot_fail(format_args!(
            "hvm_start_info at {start_info_paddr:#x} not mapped"
        ))
    };
    if hsi.magic != HVM_START_MAGIC {
        boot_fail(format_args!("bad hvm_start_info magic {:#x}", hsi.magic));
    }
    // Memory map: hvm_start_info v1+, else XENMEM_memory_map (not needed on
    // Xen 4.17, which always provides it).
    let mut map = [MemmapEntry::default(); MAX_MEMMAP];
    let n = (hsi.memmap_entries as usize).min(MAX_MEMMAP);
    if hsi.version < 1 || hsi.memmap_paddr == 0 || n == 0 {
        boot_fail(format_args!(
            "hvm_start_info version {} has no memory map (XENMEM_memory_map not supported)",
            hsi.version
        ));
    }
    for (i, e) in map[..n].iter_mut().enumerate() {
        let at = hsi.memmap_paddr + (i * core::mem::size_of::<MemmapEntry>()) as u64;
        *e = phys_read(at)
            .unwrap_or_else(|| boot_fail(format_args!("memory map at {at:#x} not mapped")));
    }
    let mut cmdline = [0u8; CMDLINE_MAX];
    let cmd_len = read_cmdline(hsi.cmdline_paddr, &mut cmdline).unwrap_or_else(|| {
        boot_fail(format_args!(
            "command line at {:#x} not mapped",
            hsi.cmdline_paddr
        ))
    });
    // Without shared_info the kernel still runs (as on PV): waits fall back
    // to bounded yields and time reads as 0.
    match map_shared_info() {
        Ok(mem) => {
            event::init(mem);
            // Event upcalls on the callback vector (PV: pv::traps::install).
            if let Err(e) = install_callback() {
                boot_fail(format_args!("event callback vector: {e}"));
            }
        }
        Err(e) => early(format_args!("shared_info: add_to_physmap: {e}")),
    }
    heap::init();
    let console = ring_params(hvm_param::CONSOLE_PFN, hvm_param::CONSOLE_EVTCHN);
    let store = ring_params(hvm_param::STORE_PFN, hvm_param::STORE_EVTCHN);
    let platform = Platform::from_pvh(
        &hsi,
        &map[..n],
        &cmdline[..cmd_len],
        console,
        store,
        identity_mapped,
    );
    let kept = unmap_holes(&platform);
    // Frame allocator over the E820 RAM (the outcome is printed by
    // kernel_main's `mm:` line, as on PV).
    let _ = crate::mm::init_pvh(&platform.memmap);
    if kept == 0 {
        boot_fail(format_args!("memory map covers nothing"));
    }
    if platform.console.is_none() {
        early(format_args!(
            "no console (HVM param pfn {:#x}); running without output",
            console.0
        ));
    }
    kernel::start(&platform)
}
