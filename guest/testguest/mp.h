/* Reads the MP table (Intel MP spec 1.4) that kindling writes at 0x9FC00: CPU count, I/O APIC
 * address and the I/O APIC pin of an ISA IRQ. */
#pragma once

#include <stdint.h>

/* What the test guest takes from the MP table. */
struct mp_info {
  int found; /* 1 when a valid floating pointer and config table were found */
  int cpus;  /* enabled processor entries */
  uint8_t cpu_apic_ids[64];
  uint64_t ioapic_addr; /* from the I/O APIC entry (0 if none) */
  int isa_irq_pin[24];  /* I/O APIC pin of ISA IRQ n, -1 if no entry */
};

/* Scans [0x9FC00, 0xA0000) and [0xF0000, 0x100000) and parses the table. */
void mp_read(struct mp_info* info);
