/* Local APIC (xAPIC MMIO at 0xFEE00000) and I/O APIC (0xFEC00000) programming. */
#pragma once

#include <stdint.h>

#define LAPIC_BASE 0xFEE00000ull
#define IOAPIC_BASE 0xFEC00000ull

/* Software-enables this CPU's local APIC (spurious vector 0xFF, TPR 0). */
void lapic_enable(void);
/* This CPU's local APIC id. */
uint8_t lapic_id(void);
/* Signals end of interrupt for the vector being serviced. */
void lapic_eoi(void);
/* Sends INIT then two start-up IPIs for the page at `trampoline` (below 1 MiB, 4 KiB
 * aligned) to the CPU with local APIC id `apic_id`; returns 0, or -1 if the ICR stays busy. */
int lapic_start_ap(uint8_t apic_id, uint64_t trampoline);

/* Remaps the legacy 8259 PICs away from the exception vectors and masks every line: with the
 * BSP's LINT0 in ExtINT mode (virtual wire, KVM's reset state) the PIC would otherwise deliver
 * the PIT and the UART at vectors 0 and 4 besides the I/O APIC. */
void pic_disable(void);

/* Routes I/O APIC `pin` to `vector` on local APIC `dest` (fixed, physical, edge, high). */
void ioapic_route(uint64_t ioapic_base, uint8_t pin, uint8_t vector, uint8_t dest);
/* Masks I/O APIC `pin`. */
void ioapic_mask(uint64_t ioapic_base, uint8_t pin);
