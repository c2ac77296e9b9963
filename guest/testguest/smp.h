/* Starting application processors: a real-mode trampoline copied to 0x10000 (SIPI vector 0x10,
 * a page kindling leaves free, see vmm/layout.h) takes each AP to long mode on the BSP's page
 * tables; the AP then takes a stack, loads the IDT, checks in and halts. */
#pragma once

/* Physical address of the trampoline page. */
#define TRAMPOLINE_ADDR 0x10000
/* Most APs the guest has stacks for. */
#define SMP_MAX_APS 63
/* Bytes of each AP's stack (ap_stacks in smp.c); the trampoline computes stack tops from it. */
#define AP_STACK_SIZE 4096

#ifndef __ASSEMBLER__
#include <stdint.h>

/* Starts the CPUs with the given local APIC ids (the BSP's own id is skipped) and waits
 * (bounded) until they checked in; returns how many APs run. */
int smp_start_aps(const uint8_t* apic_ids, int count);
#endif
