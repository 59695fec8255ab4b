//! PV entry: boot/pv.S (ELF notes, `_start`, hypercall page, stack) jumps to
//! [`xenfront_pv_entry`], which turns start_info into a [`Platform`] and
//! enters the kernel. A PVH entry will build the same `Platform` from
//! hvm_start_info and call the same `kernel::start`.

use core::arch::global_asm;

use x86_64::structures::paging::PageTableFlags;

use crate::event;
use crate::heap;
use crate::hypercall::{self, uvmf, ShutdownReason};
use crate::kernel;
use crate::mm;
use crate::platform::Platform;
use crate::shared::{SharedMem, PAGE_SIZE};
use crate::xen_abi::start_info::StartInfo;

use super::traps;

global_asm!(include_str!("../../../../boot/pv.S"), options(att_syntax));

unsafe extern "C" {
    /// Page in .bss whose mapping is replaced by the shared_info frame.
    static mut shared_info_page: [u8; PAGE_SIZE];
}

/// Read-only machine-to-physical table (MACH2PHYS_VIRT_START/END).
const M2P_START: u64 = 0xFFFF_8000_0000_0000;
const M2P_ENTRIES: u64 = (0xFFFF_8040_0000_0000 - M2P_START) / 8;

/// PTE bits for a kernel data page: present, writable, user (x86_64 PV
/// kernels run in ring 3).
const DATA_PROT: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::USER_ACCESSIBLE);

fn mfn_to_pfn(mfn: u64) -> Option<u64> {
    if mfn >= M2P_ENTRIES {
        return None;
    }
    let entry = (M2P_START + mfn * 8) as *const u64;
    // SAFETY: Xen maps the M2P read-only into every PV guest at M2P_START;
    // `mfn` is inside its bounds (checked above). Volatile: Xen owns it.
    Some(unsafe { core::ptr::read_volatile(entry) })
}

/// Map the shared_info frame over `shared_info_page`.
fn map_shared_info(machine_addr: u64) -> Result<SharedMem<'static>, hypercall::Errno> {
    let va = &raw mut shared_info_page as *mut u8;
    // SAFETY: no reference to `shared_info_page` exists anywhere: it is only
    // ever reached through the SharedMem built below, after the remap.
    unsafe {
        hypercall::update_va_mapping(va as u64, machine_addr | DATA_PROT.bits(), uvmf::INVLPG)?
    };
    // SAFETY: `va` now maps shared_info for the life of the kernel; it is
    // page-aligned and accessed only through SharedMem.
    Ok(unsafe { SharedMem::from_raw(va, PAGE_SIZE) })
}

/// Rust side of the PV entry, called by `_start` with rsi = start_info.
#[unsafe(no_mangle)]
extern "C" fn xenfront_pv_entry(start_info: *const StartInfo) -> ! {
    // SAFETY: the domain builder passes the VA of the mapped, page-aligned
    // start_info page; we copy it once and never look at the page again.
    let si = unsafe { core::ptr::read_volatile(start_info) };
    if !si.magic_ok() {
        // Not started by a PV builder: nothing to print to.
        kernel::shutdown(ShutdownReason::Crash);
    }
    // Without shared_info the kernel still runs: waits fall back to
    // bounded yields and time reads as 0.
    if let Ok(mem) = map_shared_info(si.shared_info) {
        event::init(mem);
        // Traps and the event upcall (PV entry stubs). On failure events
        // stay masked and the kernel keeps polling.
        let _ = traps::install();
    }
    heap::init();
    // All RAM mapped, frame allocator, heap growth; the outcome is printed
    // by kernel_main (`mm:` line) once the console exists.
    let _ = mm::init_pv(&si);
    let platform = Platform::from_pv(&si, mfn_to_pfn);
    kernel::start(&platform)
}
