//! What the PV and PVH exception stubs share: the saved-register frame
//! both build (boot/trapframe.S) and the names of the x86 exception
//! vectors for the `fatal:` report.

/// Registers as saved by the PV (boot/pv_entry.S) and PVH (boot/pvh.S) stubs:
/// SAVE_ALL (boot/trapframe.S), then the normalised frame.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception vector, or -1 (as u64) for the event upcall; PVH: 255 for
    /// any vector without a stub of its own.
    pub vector: u64,
    /// CPU error code, 0 where the exception has none.
    pub error: u64,
    pub rip: u64,
    /// CS in bits 0-15; PV: the saved upcall mask in bits 32-39.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// What the CPU calls `vector` (PV and PVH fatal reports).
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "NMI",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point error",
        _ => "unexpected interrupt",
    }
}
