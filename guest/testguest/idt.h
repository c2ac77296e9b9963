/* The guest's own IDT: 256 interrupt gates to the stubs in isr.S, dispatched to C handlers. */
#pragma once

#include <stdint.h>

/* What isr.S pushes, lowest address first: general registers, vector, error code, then the
 * CPU's interrupt frame. Handlers may change rip (to skip an instruction). */
struct irq_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
  uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
  uint64_t vector, error_code;
  uint64_t rip, cs, rflags, rsp, ss;
};

/* Exception vectors used by the tests. */
#define VEC_BP 3
#define VEC_UD 6
/* Interrupt vectors the tests route through the IOAPIC, and the IPI/spurious vectors. */
#define VEC_TIMER 0x20
#define VEC_UART 0x24
/* virtio-mmio devices: VEC_VIRTIO_BASE + disk index. */
#define VEC_VIRTIO_BASE 0x30
#define VEC_SPURIOUS 0xFF

typedef void (*irq_handler)(struct irq_frame* frame);

/* Builds the IDT (every vector to the default handler) and loads it on this CPU. */
void idt_init(void);
/* Loads the already built IDT (application processors). */
void idt_load(void);
/* Installs a handler for one vector. */
void idt_set_handler(uint8_t vector, irq_handler fn);
/* Points `vector`'s gate at `entry` (code that ends in the vector's isr.S stub), or back at
 * the stub itself when entry is NULL. */
void idt_set_gate(uint8_t vector, const void* entry);
/* Loads an IDT with limit 0: the next exception triple-faults. */
void idt_load_empty(void);
