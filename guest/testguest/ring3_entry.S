/* Ring 3 entry and exit for ring3.c: the iretq into user mode, the LSTAR entry point, the #PF
 * entry that starts with `clac` as Linux's does, and the user code copied into the user page. */
        .section .note.GNU-stack, "", @progbits
        .text
        .code64

/* void ring3_enter(uint64_t rip, uint64_t rsp, uint64_t rdi): iretq to CS 0x33 / SS 0x2b
 * with RFLAGS IF|bit 1 and RDI = the third argument. */
        .global ring3_enter
ring3_enter:
        mov %rdi, %rax
        mov %rdx, %rdi
        pushq $0x2b
        pushq %rsi
        pushq $0x202
        pushq $0x33
        pushq %rax
        iretq

/* LSTAR: where SYSCALL lands in ring 0 (RSP is still the user's). */
        .balign 16
        .global ring3_lstar
ring3_lstar:
        lea ring3_kernel_stack_top(%rip), %rsp
        mov %rcx, %rdi
        mov %r11, %rsi
        call ring3_syscall_entered
1:      hlt
        jmp 1b

/* The #PF gate with SMAP: clac first, as every Linux exception entry (the exit kindling's
 * SYSCALL repair looks at on PVM hosts), then the ordinary vector-14 stub of isr.S. */
        .global ring3_pf_entry
ring3_pf_entry:
        clac
        jmp isr_stubs + 14 * 16

/* User code, copied into the user page (position-independent). Entry with RDI = LSTAR. */
        .global ring3_user_code, ring3_user_syscall, ring3_user_forge, ring3_user_code_end
ring3_user_code:
ring3_user_syscall:
        syscall
1:      jmp 1b
ring3_user_forge:
        /* RCX and R11 as a forger picks them: RCX the entry of this code (no syscall before
         * it), R11 an RFLAGS value the CPU does not hold. */
        lea ring3_user_forge(%rip), %rcx
        mov $0x246, %r11
        jmp *%rdi
ring3_user_code_end:

        .bss
        .balign 16
        .skip 4096
ring3_kernel_stack_top:
