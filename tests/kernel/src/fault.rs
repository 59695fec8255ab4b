//! Deliberate CPU faults: the `pagefault`, `invalid-op` and `divide-error`
//! scenarios prove that the kernel's trap path reports and crashes.

/// An address beyond everything the kernel maps (the start-of-day
/// region is a few MiB at VA 0).
pub const UNMAPPED: u64 = 0xdead_0000;

/// Read [`UNMAPPED`]: #PF with cr2 = UNMAPPED.
pub fn page_fault() -> u64 {
    // SAFETY: not sound as a memory access, on purpose: the address is
    // not mapped, so the read faults and the #PF handler shuts down; the
    // value is never produced.
    unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) }
}

/// `ud2`: #UD.
pub fn invalid_opcode() {
    // SAFETY: ud2 raises #UD, whose handler never returns.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
}

/// `div` by zero: #DE (Rust's `/` would panic before dividing).
pub fn divide_error() {
    // SAFETY: divides by zero on purpose; the #DE handler never returns.
    // rax/rdx are declared clobbered.
    unsafe {
        core::arch::asm!(
            "xor edx, edx",
            "xor ecx, ecx",
            "div ecx",
            out("eax") _, out("edx") _, out("ecx") _,
            options(nomem, nostack)
        )
    }
}
