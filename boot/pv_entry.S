/*
 * xenfront PV entry stubs: the event-channel upcall, the failsafe callback
 * and the CPU exception handlers registered with set_callbacks and
 * set_trap_table by src/arch/x86_64/pv/traps.rs. PV only: a PVH kernel gets an IDT and
 * native interrupt frames instead (it would slot in beside this file).
 *
 * Included with global_asm!(include_str!(...)), AT&T syntax, no curly braces.
 *
 * Bounce frame (guest-abi.md §2): Xen pushes, lowest address first,
 *     rcx, r11, [error code], rip, cs, rflags, rsp, ss
 * on the current stack (we never run in user mode), 16-byte aligned before
 * the push. Popping rcx and r11 leaves a native-looking exception frame with
 * the interrupted rcx/r11 back in their registers.
 *
 * Every stub then builds the same struct TrapFrame
 * (src/arch/x86_64/trap.rs):
 *     r15 .. rax (15 GPRs), vector, error, rip, cs, rflags, rsp, ss
 * with vector = -1 for the event upcall and error = 0 where the CPU pushes
 * none.
 */

/* SAVE_ALL / RESTORE_ALL: boot/trapframe.S (assembled in front of this file). */

    .section .text.pv_entry, "ax", @progbits
    .code64

/*
 * Event-channel upcall. Xen enters with evtchn_upcall_mask = 1 (events
 * masked) and the *previous* mask encoded as rflags.IF = !mask in the frame.
 *
 * Return: through the HYPERVISOR_iret slot of the hypercall page. Its stub
 * pushes rcx, r11, rax (which therefore must already hold the interrupted
 * values: RESTORE_ALL did that) and enters Xen, which pops rip, cs, rflags,
 * rsp, ss from the frame and *restores evtchn_upcall_mask from the saved
 * rflags.IF* in the same atomic step, then, on its way back to the guest,
 * re-checks evtchn_upcall_pending and delivers a new upcall at once if more
 * events arrived meanwhile. So there is no window in which an event can be
 * left pending with events enabled, and no need for Mini-OS's
 * "unmask, then iretq, with a critical region fixup" dance. The extra word
 * we push first is iret_context.flags: 0 = not VGCF_in_syscall, restore the
 * full frame.
 */
    .globl xenfront_hypervisor_callback
    .type xenfront_hypervisor_callback, @function
xenfront_hypervisor_callback:
    pop     %rcx
    pop     %r11
    pushq   $0                      /* error */
    pushq   $-1                     /* vector: event upcall */
    SAVE_ALL
    mov     %rsp, %rdi              /* &TrapFrame */
    mov     %rsp, %rbx              /* callee-saved: the frame */
    and     $-16, %rsp              /* SysV alignment for the call */
    cld                             /* SysV: DF=0 at calls; Xen keeps the interrupted DF (iret restores it) */
    call    xenfront_pv_upcall
    mov     %rbx, %rsp
    RESTORE_ALL
    add     $16, %rsp               /* vector, error */
    pushq   $0                      /* iret_context.flags */
    jmp     hypercall_page + 23 * 32    /* HYPERVISOR_iret: never returns here */
    .size xenfront_hypervisor_callback, . - xenfront_hypervisor_callback

/*
 * Failsafe callback: Xen could not load the guest's segment registers while
 * returning to it. Frame: rcx, r11, ds, es, fs, gs, rip, cs, rflags, rsp, ss.
 * Never expected; report and crash.
 */
    .globl xenfront_failsafe_callback
    .type xenfront_failsafe_callback, @function
xenfront_failsafe_callback:
    pop     %rcx
    pop     %r11
    mov     %rsp, %rdi              /* &FailsafeFrame: ds, es, fs, gs, rip, ... */
    and     $-16, %rsp
    cld                             /* SysV: DF=0 at calls; Xen keeps the interrupted DF (iret restores it) */
    call    xenfront_pv_failsafe    /* never returns */
1:  ud2
    jmp     1b
    .size xenfront_failsafe_callback, . - xenfront_failsafe_callback

/* CPU exceptions: all fatal. Normalise to a TrapFrame and call Rust. */
.macro TRAP_NOERR name, vec
    .globl \name
\name:
    pop     %rcx
    pop     %r11
    pushq   $0                      /* no error code from the CPU */
    pushq   $\vec
    jmp     xenfront_trap_common
.endm

.macro TRAP_ERR name, vec
    .globl \name
\name:
    pop     %rcx
    pop     %r11
    pushq   $\vec                   /* error code already pushed by Xen */
    jmp     xenfront_trap_common
.endm

TRAP_NOERR xenfront_trap_divide, 0
TRAP_NOERR xenfront_trap_debug, 1
TRAP_NOERR xenfront_trap_int3, 3
TRAP_NOERR xenfront_trap_overflow, 4
TRAP_NOERR xenfront_trap_bounds, 5
TRAP_NOERR xenfront_trap_invalid_op, 6
TRAP_NOERR xenfront_trap_no_device, 7
TRAP_ERR   xenfront_trap_double_fault, 8
TRAP_ERR   xenfront_trap_invalid_tss, 10
TRAP_ERR   xenfront_trap_no_segment, 11
TRAP_ERR   xenfront_trap_stack_segment, 12
TRAP_ERR   xenfront_trap_gp, 13
TRAP_ERR   xenfront_trap_page_fault, 14
TRAP_NOERR xenfront_trap_x87, 16
TRAP_ERR   xenfront_trap_alignment, 17
TRAP_NOERR xenfront_trap_machine_check, 18
TRAP_NOERR xenfront_trap_simd, 19

xenfront_trap_common:
    SAVE_ALL
    mov     %rsp, %rdi              /* &TrapFrame */
    and     $-16, %rsp
    cld                             /* SysV: DF=0 at calls; Xen keeps the interrupted DF (iret restores it) */
    call    xenfront_pv_trap        /* never returns */
1:  ud2
    jmp     1b

.purgem SAVE_ALL
.purgem RESTORE_ALL
