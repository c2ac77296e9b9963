/* 256 interrupt stubs, 16 bytes apart from isr_stubs, and the common entry that saves the
 * general registers, calls isr_dispatch(frame) and returns with iretq. Vectors whose
 * exceptions push an error code (SDM vol. 3, table 6-1) get no dummy one. */
        .section .note.GNU-stack, "", @progbits
        .text
        .code64

        .balign 16
        .global isr_stubs
isr_stubs:
        .set vec, 0
        .rept 256
        .balign 16
        .if (vec == 8) | ((vec >= 10) & (vec <= 14)) | (vec == 17) | (vec == 21) | (vec == 29) | (vec == 30)
        .else
        pushq $0
        .endif
        pushq $vec
        jmp isr_common
        .set vec, vec + 1
        .endr

isr_common:
        pushq %rax
        pushq %rcx
        pushq %rdx
        pushq %rbx
        pushq %rbp
        pushq %rsi
        pushq %rdi
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, %rdi
        cld
        call isr_dispatch
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rdi
        popq %rsi
        popq %rbp
        popq %rbx
        popq %rdx
        popq %rcx
        popq %rax
        addq $16, %rsp
        iretq
