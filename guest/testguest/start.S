/* Entry from kindling's 64-bit boot path: long mode, identity paging, interrupts off,
 * RSI = boot_params. The loader zero-fills .bss (ELF p_memsz > p_filesz), so no clearing
 * here (every instruction is emulated on PVM hosts). */
        .section .note.GNU-stack, "", @progbits

        .section .text.boot, "ax"
        .code64
        .global _start
_start:
        cli
        lea boot_stack_top(%rip), %rsp
        mov %rsi, %rdi
        call kmain
1:      cli
        hlt
        jmp 1b

        .bss
        .balign 16
boot_stack:
        .skip 16384
boot_stack_top:
