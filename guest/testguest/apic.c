#include "apic.h"

#include "idt.h"
#include "io.h"

/* Local APIC register offsets (Intel SDM vol. 3, table 11-1). */
#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
/* SVR bit 8: APIC software enable. */
#define LAPIC_SVR_ENABLE (1u << 8)
/* ICR fields (SDM 11.6.1): delivery mode, level assert, delivery status. */
#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define ICR_LEVEL_ASSERT (1u << 14)
#define ICR_BUSY (1u << 12)

/* I/O APIC indirect registers (82093AA datasheet 3.1): select, window, redirection table. */
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WIN 0x10
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
/* Redirection entry bit 16: masked. */
#define IOAPIC_MASKED (1u << 16)

static void lapic_write(uint32_t reg, uint32_t v) {
  mmio_write32(LAPIC_BASE + reg, v);
}
static uint32_t lapic_read(uint32_t reg) {
  return mmio_read32(LAPIC_BASE + reg);
}

void lapic_enable(void) {
  lapic_write(LAPIC_TPR, 0);
  lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | VEC_SPURIOUS);
}

uint8_t lapic_id(void) {
  return (uint8_t)(lapic_read(LAPIC_ID) >> 24);
}

void lapic_eoi(void) {
  lapic_write(LAPIC_EOI, 0);
}

static int lapic_send_ipi(uint8_t dest, uint32_t low) {
  lapic_write(LAPIC_ICR_HIGH, (uint32_t)dest << 24);
  lapic_write(LAPIC_ICR_LOW, low);
  struct deadline d = deadline_start();
  while (lapic_read(LAPIC_ICR_LOW) & ICR_BUSY) {
    if (deadline_expired(&d)) return -1;
  }
  return 0;
}

int lapic_start_ap(uint8_t apic_id, uint64_t trampoline) {
  uint32_t sipi = ICR_STARTUP | (uint32_t)(trampoline >> 12);
  /* KVM needs none of the 10 ms / 200 us waits of the MP spec's universal algorithm; the
   * second SIPI is ignored by a CPU that already left wait-for-SIPI. */
  if (lapic_send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT) != 0) return -1;
  if (lapic_send_ipi(apic_id, sipi) != 0) return -1;
  return lapic_send_ipi(apic_id, sipi);
}

/* 8259A ports and initialization words (Intel 8259A datasheet): ICW1 edge + ICW4 needed,
 * ICW2 vector base, ICW3 cascade on IRQ 2, ICW4 8086 mode, OCW1 mask. */
#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define PIC_ICW1_INIT_ICW4 0x11
#define PIC_ICW4_8086 0x01
#define PIC1_VECTOR_BASE 0xE0
#define PIC2_VECTOR_BASE 0xE8

void pic_disable(void) {
  outb(PIC1_CMD, PIC_ICW1_INIT_ICW4);
  outb(PIC2_CMD, PIC_ICW1_INIT_ICW4);
  outb(PIC1_DATA, PIC1_VECTOR_BASE);
  outb(PIC2_DATA, PIC2_VECTOR_BASE);
  outb(PIC1_DATA, 1 << 2); /* slave on IRQ 2 */
  outb(PIC2_DATA, 2);      /* slave identity */
  outb(PIC1_DATA, PIC_ICW4_8086);
  outb(PIC2_DATA, PIC_ICW4_8086);
  outb(PIC1_DATA, 0xFF);
  outb(PIC2_DATA, 0xFF);
}

static void ioapic_write(uint64_t base, uint32_t reg, uint32_t v) {
  mmio_write32(base + IOAPIC_REGSEL, reg);
  mmio_write32(base + IOAPIC_WIN, v);
}

void ioapic_route(uint64_t base, uint8_t pin, uint8_t vector, uint8_t dest) {
  /* Destination first, then the low half, which unmasks. */
  ioapic_write(base, IOAPIC_REDTBL(pin) + 1, (uint32_t)dest << 24);
  ioapic_write(base, IOAPIC_REDTBL(pin), vector);
}

void ioapic_mask(uint64_t base, uint8_t pin) {
  ioapic_write(base, IOAPIC_REDTBL(pin), IOAPIC_MASKED);
}
