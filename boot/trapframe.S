/*
 * xenfront: the register save/restore shared by the PV (boot/pv_entry.S)
 * and PVH (boot/pvh.S) entry stubs, which build the same struct TrapFrame
 * (src/arch/x86_64/trap.rs): r15 .. rax (15 GPRs), vector, error, then the
 * CPU's rip, cs, rflags, rsp, ss. Assembled in front of each of those files
 * (src/arch/x86_64/pv/traps.rs, src/arch/x86_64/pvh/entry.rs); each ends
 * with `.purgem` for both macros, so the next one may define them again.
 */

/* Push the 15 general purpose registers; rax ends up highest. */
.macro SAVE_ALL
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
.endm

.macro RESTORE_ALL
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
.endm
