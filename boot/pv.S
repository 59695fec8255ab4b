/*
 * xenfront PV boot: Xen ELF notes, the PV entry point, the hypercall page,
 * the boot stack and the page that gets the shared_info frame.
 *
 * Included with global_asm!(include_str!(...)) from
 * src/arch/x86_64/pv/entry.rs, AT&T syntax.
 * (No curly braces in this file: global_asm! treats them as placeholders.)
 *
 * PV entry state (guest-abi.md §2): 64-bit, ring 3, paging on with the
 * start-of-day 1:1 region (VA = pfn << 12 since VIRT_BASE is 0),
 * rsi = virtual address of start_info, rsp = a builder-provided stack.
 */

/* One Xen note: namesz, descsz, type, "Xen\0", desc, each padded to 4. */
.macro XEN_NOTE type, desc:vararg
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long \type
1:  .asciz "Xen"
2:  .balign 4
3:  \desc
4:  .balign 4
    .popsection
.endm

/* Numbers from xen/include/public/elfnote.h. */
XEN_NOTE 6,  .asciz "xenfront"          /* GUEST_OS */
XEN_NOTE 7,  .asciz "0.1.0"             /* GUEST_VERSION */
XEN_NOTE 8,  .asciz "generic"           /* LOADER */
XEN_NOTE 5,  .asciz "xen-3.0"           /* XEN_VERSION */
XEN_NOTE 3,  .quad 0                    /* VIRT_BASE */
XEN_NOTE 4,  .quad 0                    /* PADDR_OFFSET */
XEN_NOTE 1,  .quad _start               /* ENTRY (PV, virtual) */
XEN_NOTE 2,  .quad hypercall_page       /* HYPERCALL_PAGE */
/* No FEATURES note: like Mini-OS x86_64 we require no optional feature.
 * PHYS32_ENTRY (18, the PVH entry `_pvh_start`) is in boot/pvh.S. */

    .section .text.boot, "ax", @progbits
    .code64
    .globl _start
    .type _start, @function
_start:
    cld
    lea     __boot_stack_top(%rip), %rsp
    xor     %ebp, %ebp
    mov     %rsi, %rdi              /* start_info VA: first Rust argument */
    call    xenfront_pv_entry       /* never returns */
1:  ud2
    jmp     1b
    .size _start, . - _start

/* The PV domain builder fills this page with the hypercall stubs
 * (one per hypercall, 32 bytes apart). int3 until then. */
    .section .text.hypercall_page, "ax", @progbits
    .balign 4096
    .globl hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc
    .size hypercall_page, 4096

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .globl shared_info_page
/* Its PTE is pointed at the shared_info frame during boot (update_va_mapping),
 * so the RAM page behind it is never used. */
shared_info_page:
    .skip 4096
    .globl __boot_stack_bottom
__boot_stack_bottom:
    .skip 65536
    .globl __boot_stack_top
__boot_stack_top:
