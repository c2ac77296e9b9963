#include "idt.h"

#include "io.h"
#include "libc.h"
#include "platform.h"

/* Intel SDM vol. 3, 6.14.1: 64-bit IDT gate descriptor. */
struct idt_gate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate is 16 bytes");

struct descriptor_ptr {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

/* Present, DPL 0, 64-bit interrupt gate (interrupts off in the handler). */
#define GATE_INTERRUPT 0x8E
/* Each stub in isr.S is 16 bytes, from isr_stubs. */
#define ISR_STUB_SIZE 16

extern const char isr_stubs[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler handlers[256];

static void default_handler(struct irq_frame* f) {
  printf("testguest: unexpected exception/interrupt %u (error %x) at rip %lx\n",
         (unsigned)f->vector, (unsigned)f->error_code, (unsigned long)f->rip);
  platform_exit(TG_FAIL);
}

/* Called by isr_common with the saved frame. */
void isr_dispatch(struct irq_frame* frame);
void isr_dispatch(struct irq_frame* frame) {
  irq_handler fn = handlers[frame->vector & 0xFF];
  (fn ? fn : default_handler)(frame);
}

static void write_gate(int v, uint64_t addr) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  idt[v].offset_low = (uint16_t)addr;
  idt[v].selector = cs;
  idt[v].ist = 0;
  idt[v].type_attr = GATE_INTERRUPT;
  idt[v].offset_mid = (uint16_t)(addr >> 16);
  idt[v].offset_high = (uint32_t)(addr >> 32);
  idt[v].reserved = 0;
}

void idt_init(void) {
  for (int v = 0; v < 256; ++v) write_gate(v, (uint64_t)(uintptr_t)(isr_stubs + v * ISR_STUB_SIZE));
  idt_load();
}

void idt_set_gate(uint8_t vector, const void* entry) {
  write_gate(vector, (uint64_t)(uintptr_t)(entry ? entry : isr_stubs + vector * ISR_STUB_SIZE));
}

void idt_load(void) {
  struct descriptor_ptr p = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
  __asm__ volatile("lidt %0" : : "m"(p));
}

void idt_set_handler(uint8_t vector, irq_handler fn) {
  handlers[vector] = fn;
}

void idt_load_empty(void) {
  struct descriptor_ptr p = {0, 0};
  __asm__ volatile("lidt %0" : : "m"(p));
}
