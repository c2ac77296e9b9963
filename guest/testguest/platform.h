/* What kindling offers the guest beyond a PC: the exit port and the boot-timer port
 * (see notes/layout.md and README). */
#pragma once

#include <stdint.h>

/* A one-byte write of N makes kindling exit with status N. */
#define KINDLING_EXIT_PORT 0xF4
/* Any write makes kindling log the time since it started (Firecracker's guests write 123). */
#define KINDLING_BOOT_TIMER_PORT 0x3F0
#define KINDLING_BOOT_TIMER_VALUE 123

/* Exit codes of the test guest. */
#define TG_PASS 0
#define TG_FAIL 1
#define TG_UNKNOWN_TEST 3

/* Ends the VM with `code` through the exit port; never returns. */
__attribute__((noreturn)) void platform_exit(uint8_t code);
