/* AP start-up trampoline (see smp.h). Copied to TRAMPOLINE_ADDR; a SIPI with vector
 * TRAMPOLINE_ADDR >> 12 starts it in real mode at CS = 0x1000, IP = 0. It loads its own GDT
 * (same selectors as kindling's boot GDT: 0x10 64-bit code, 0x18 data; 0x20 32-bit code),
 * enters protected mode, turns on PAE, loads CR3 (patched in by the BSP), sets EFER.LME,
 * enables paging and far-jumps to 64-bit code, which leaves the page for ap_long_mode. */
#include "smp.h"

#define REL(sym) (TRAMPOLINE_ADDR + (sym) - trampoline_start)
#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xC0000080
#define EFER_LME 0x100
#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define SEL_CODE32 0x20

        .section .note.GNU-stack, "", @progbits

        .section .rodata
        .global trampoline_start, trampoline_end, trampoline_cr3
        .balign 16
        .code16
trampoline_start:
        cli
        mov %cs, %ax
        mov %ax, %ds
        lgdtl tramp_gdt_ptr - trampoline_start
        mov %cr0, %eax
        or $CR0_PE, %eax
        mov %eax, %cr0
        ljmpl $SEL_CODE32, $REL(tramp_pm32)

        .code32
tramp_pm32:
        mov $SEL_DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %cr4, %eax
        or $CR4_PAE, %eax
        mov %eax, %cr4
        mov REL(trampoline_cr3), %eax
        mov %eax, %cr3
        mov $MSR_EFER, %ecx
        rdmsr
        or $EFER_LME, %eax
        wrmsr
        mov %cr0, %eax
        or $CR0_PG, %eax
        mov %eax, %cr0
        ljmp $SEL_CODE64, $REL(tramp_lm64)

        .code64
tramp_lm64:
        movabs $ap_long_mode, %rax
        jmp *%rax

        .balign 8
tramp_gdt:
        .quad 0
        .quad 0
        .quad 0x00AF9B000000FFFF
        .quad 0x00CF93000000FFFF
        .quad 0x00CF9B000000FFFF
tramp_gdt_end:
tramp_gdt_ptr:
        .word tramp_gdt_end - tramp_gdt - 1
        .long REL(tramp_gdt)
        .balign 4
trampoline_cr3:
        .long 0
trampoline_end:

/* 64-bit AP entry, at its link address: take the next stack slot and run ap_main(slot). */
        .text
        .code64
ap_long_mode:
        mov $SEL_DATA, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $1, %eax
        lock xaddl %eax, ap_next_slot(%rip)
        cmp $SMP_MAX_APS, %eax
        jae 2f
        lea 1(%rax), %rdx
        imul $AP_STACK_SIZE, %rdx, %rdx
        lea ap_stacks(%rip), %rsp
        add %rdx, %rsp
        mov %eax, %edi
        call ap_main
2:      cli
        hlt
        jmp 2b
