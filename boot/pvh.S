/*
 * xenfront PVH boot: the PHYS32_ENTRY note, the 32-bit entry `_pvh_start`,
 * the boot GDT and page tables, the switch to long mode, and the interrupt
 * entry stubs (IDT) used only by a PVH kernel.
 *
 * Included with global_asm!(include_str!(...)) from
 * src/arch/x86_64/pvh/entry.rs, AT&T syntax, after boot/pv.S (it reuses
 * that file's boot stack). No curly braces.
 *
 * PVH entry state (guest-abi.md §3): 32-bit protected mode, paging off,
 * ebx = guest-physical address of hvm_start_info, flat cs/ds/es/ss, no
 * stack, no usable GDT/IDT. The image sits at its link address (p_paddr ==
 * p_vaddr, 1 MiB), so after the switch it runs identity-mapped.
 *
 * Boot page tables (.bss, zeroed by the loader): one PML4 entry -> one PDPT
 * with four entries -> four page directories of 512 2 MiB pages each:
 * VA == PA for the first 4 GiB. 4 GiB, not 1: the toolstack puts the
 * console and XenStore pages (HVM "special pages") just below 0xFF000000.
 * src/arch/x86_64/pvh/entry.rs describes these tables with x86_64::structures::paging types.
 */

/* PHYS32_ENTRY (18): 32-bit physical entry for PVH (elfnote.h). */
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                         /* namesz: "Xen\0" */
    .long 4                         /* descsz */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long _pvh_start
    .balign 4
    .popsection

/* Page-table entry bits. */
.set PVH_PTE_P,  0x1
.set PVH_PTE_RW, 0x2
.set PVH_PTE_PS, 0x80
.set PVH_NR_PD, 4                   /* page directories: 4 x 1 GiB */

    .section .text.boot, "ax", @progbits
    .code32
    .globl _pvh_start
    .type _pvh_start, @function
_pvh_start:
    cld
    cli
    cmpl    $0x336ec578, (%ebx)     /* XEN_HVM_START_MAGIC_VALUE */
    jne     .Lpvh_bad_magic
    mov     %ebx, %esi              /* hvm_start_info paddr, kept in esi */
    mov     $__boot_stack_top, %esp

    /* Page directories: entry i of the 2048 maps (i << 21) with a 2 MiB page. */
    mov     $pvh_pd, %edi
    mov     $(PVH_PTE_P | PVH_PTE_RW | PVH_PTE_PS), %eax
    xor     %edx, %edx
    mov     $(512 * PVH_NR_PD), %ecx
1:  mov     %eax, (%edi)
    mov     %edx, 4(%edi)
    add     $0x200000, %eax
    adc     $0, %edx
    add     $8, %edi
    loop    1b
    /* PDPT entries 0..3 -> the page directories. */
    mov     $pvh_pdpt, %edi
    mov     $(pvh_pd + PVH_PTE_P + PVH_PTE_RW), %eax
    mov     $PVH_NR_PD, %ecx
2:  mov     %eax, (%edi)
    add     $4096, %eax
    add     $8, %edi
    loop    2b
    /* PML4 entry 0 -> the PDPT. */
    movl    $(pvh_pdpt + PVH_PTE_P + PVH_PTE_RW), pvh_pml4

    lgdt    pvh_gdt_desc
    mov     %cr4, %eax
    or      $0x20, %eax             /* CR4.PAE */
    mov     %eax, %cr4
    mov     $pvh_pml4, %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx       /* EFER */
    rdmsr
    or      $0x100, %eax            /* EFER.LME */
    wrmsr
    mov     %cr0, %eax
    or      $0x80000001, %eax       /* CR0.PG | CR0.PE */
    mov     %eax, %cr0
    ljmp    $0x08, $.Lpvh_long

.Lpvh_bad_magic:
    /* Not a PVH start: say so on port 0xE9 (Xen's log) and stop. */
    mov     $.Lpvh_bad_magic_msg, %esi
3:  lodsb
    test    %al, %al
    jz      4f
    outb    %al, $0xe9
    jmp     3b
4:  hlt
    jmp     4b

    .code64
.Lpvh_long:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    lea     __boot_stack_top(%rip), %rsp
    xor     %ebp, %ebp
    mov     %esi, %edi              /* hvm_start_info paddr (zero-extended) */
    call    xenfront_pvh_entry      /* never returns */
5:  ud2
    jmp     5b
    .size _pvh_start, . - _pvh_start

    .section .rodata.pvh, "a", @progbits
.Lpvh_bad_magic_msg:
    .asciz "xenfront: PVH entry without hvm_start_info magic\n"

/* Boot GDT: null, 64-bit kernel code (0x08), flat data (0x10). In .data:
 * the CPU sets the accessed bits. */
    .section .data.pvh_gdt, "aw", @progbits
    .balign 16
    .globl pvh_gdt
pvh_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: code, L=1, DPL 0 */
    .quad 0x00cf92000000ffff        /* 0x10: data, 4 GiB, DPL 0 */
.Lpvh_gdt_end:
    .balign 8
pvh_gdt_desc:
    .word .Lpvh_gdt_end - pvh_gdt - 1
    .quad pvh_gdt

    .section .bss.pvh_pt, "aw", @nobits
    .balign 4096
    .globl pvh_pml4
pvh_pml4:
    .skip 4096
    .globl pvh_pdpt
pvh_pdpt:
    .skip 4096
    .globl pvh_pd
pvh_pd:
    .skip 4096 * PVH_NR_PD

/*
 * Interrupt entry (PVH only; PV uses boot/pv_entry.S). The CPU pushes
 * ss, rsp, rflags, cs, rip (and an error code for some exceptions) on the
 * current stack (ring 0 -> ring 0, no IST). Each stub normalises to the same
 * frame as the PV stubs: 15 GPRs, vector, error, rip, cs, rflags, rsp, ss
 * (struct TrapFrame in src/arch/x86_64/trap.rs).
 */
/* SAVE_ALL / RESTORE_ALL: boot/trapframe.S (assembled in front of this file). */

    .section .text.pvh_entry, "ax", @progbits

/*
 * Xen event upcall on the HVM callback vector (HVM_PARAM_CALLBACK_IRQ type
 * vector): an interrupt gate, so IF is clear while it runs; no LAPIC EOI.
 * event::upcall clears evtchn_upcall_pending first thing.
 */
    .globl xenfront_pvh_callback
    .type xenfront_pvh_callback, @function
xenfront_pvh_callback:
    pushq   $0                      /* error */
    pushq   $-1                     /* vector: event upcall */
    SAVE_ALL
    cld                             /* SysV: DF clear (the interrupted code
                                       may be in a backward rep movs);
                                       iretq restores its rflags */
    mov     %rsp, %rdi              /* &TrapFrame */
    mov     %rsp, %rbx
    and     $-16, %rsp
    call    xenfront_pvh_upcall
    mov     %rbx, %rsp
    RESTORE_ALL
    add     $16, %rsp               /* vector, error */
    iretq
    .size xenfront_pvh_callback, . - xenfront_pvh_callback

/*
 * Idle until the next interrupt: `sti; hlt`. The STI shadow makes the pair
 * atomic on hardware (an upcall that became pending with IF clear is taken
 * *in* hlt, and hlt returns). QEMU TCG's emulated SVM can lose that shadow
 * when a vmexit lands between the two (docs/boot.md, "PVH idle and the two
 * emulator faults"): the upcall is then delivered with RIP at the hlt, and
 * the hlt would sleep past the event it was waiting for. xenfront_pvh_upcall
 * steps RIP over the hlt in that case, so the caller re-checks instead.
 */
    .globl xenfront_pvh_idle
    .type xenfront_pvh_idle, @function
xenfront_pvh_idle:
    sti
    .globl xenfront_pvh_idle_hlt
xenfront_pvh_idle_hlt:
    hlt
    ret
    .size xenfront_pvh_idle, . - xenfront_pvh_idle

.macro PVH_TRAP_NOERR name, vec
    .globl \name
\name:
    pushq   $0
    pushq   $\vec
    jmp     .Lpvh_trap_common
.endm

.macro PVH_TRAP_ERR name, vec
    .globl \name
\name:
    pushq   $\vec
    jmp     .Lpvh_trap_common
.endm

PVH_TRAP_NOERR xenfront_pvh_trap_divide, 0
PVH_TRAP_NOERR xenfront_pvh_trap_debug, 1
PVH_TRAP_NOERR xenfront_pvh_trap_nmi, 2
PVH_TRAP_NOERR xenfront_pvh_trap_int3, 3
PVH_TRAP_NOERR xenfront_pvh_trap_overflow, 4
PVH_TRAP_NOERR xenfront_pvh_trap_bounds, 5
PVH_TRAP_NOERR xenfront_pvh_trap_invalid_op, 6
PVH_TRAP_NOERR xenfront_pvh_trap_no_device, 7
PVH_TRAP_ERR   xenfront_pvh_trap_double_fault, 8
PVH_TRAP_ERR   xenfront_pvh_trap_invalid_tss, 10
PVH_TRAP_ERR   xenfront_pvh_trap_no_segment, 11
PVH_TRAP_ERR   xenfront_pvh_trap_stack_segment, 12
PVH_TRAP_ERR   xenfront_pvh_trap_gp, 13
PVH_TRAP_ERR   xenfront_pvh_trap_page_fault, 14
PVH_TRAP_NOERR xenfront_pvh_trap_x87, 16
PVH_TRAP_ERR   xenfront_pvh_trap_alignment, 17
PVH_TRAP_NOERR xenfront_pvh_trap_machine_check, 18
PVH_TRAP_NOERR xenfront_pvh_trap_simd, 19
/* Any other vector: spurious, reported as fatal with vector 255. */
PVH_TRAP_NOERR xenfront_pvh_trap_other, 255

.Lpvh_trap_common:
    SAVE_ALL
    cld
    mov     %rsp, %rdi              /* &TrapFrame */
    and     $-16, %rsp
    call    xenfront_pvh_trap       /* never returns */
6:  ud2
    jmp     6b

    .code64

.purgem SAVE_ALL
.purgem RESTORE_ALL
