/* Ring 3 for the SYSCALL tests: a GDT with Linux's selector layout and a TSS, page tables with
 * one user 2 MiB page, SYSCALL's MSRs, and the two tests that use them. */
#pragma once

#include "tests.h"

/* A user `syscall` must reach LSTAR in ring 0 (natively, or through kindling's PVM repair). */
int ring3_syscall(struct tg_context* ctx);
/* A user `jmp` to LSTAR must get an ordinary #PF in the kernel, never ring 0 at LSTAR. */
int ring3_forged_syscall(struct tg_context* ctx);
