#include "smp.h"

#include "apic.h"
#include "idt.h"
#include "io.h"
#include "libc.h"

extern const char trampoline_start[], trampoline_end[], trampoline_cr3[];

/* Used by ap_long_mode (trampoline.S): the next free stack slot, and the stacks. */
volatile uint32_t ap_next_slot;
uint8_t ap_stacks[SMP_MAX_APS][AP_STACK_SIZE] __attribute__((aligned(16)));

static volatile uint32_t ap_running;

/* First C code of an AP, on its own stack. */
void ap_main(uint32_t slot);
void ap_main(uint32_t slot) {
  (void)slot;
  idt_load();
  __atomic_fetch_add(&ap_running, 1, __ATOMIC_SEQ_CST);
  halt_forever();
}

static void install_trampoline(void) {
  uint8_t* page = (uint8_t*)(uintptr_t)TRAMPOLINE_ADDR;
  memcpy(page, trampoline_start, (size_t)(trampoline_end - trampoline_start));
  uint32_t cr3 = (uint32_t)read_cr3();
  memcpy(page + (trampoline_cr3 - trampoline_start), &cr3, sizeof(cr3));
}

int smp_start_aps(const uint8_t* apic_ids, int count) {
  install_trampoline();
  lapic_enable();
  uint8_t self = lapic_id();
  int wanted = 0;
  for (int i = 0; i < count; ++i) {
    if (apic_ids[i] == self || wanted == SMP_MAX_APS) continue;
    if (lapic_start_ap(apic_ids[i], TRAMPOLINE_ADDR) != 0) {
      printf("testguest: smp: IPI to apic %u never left the ICR\n", apic_ids[i]);
      continue;
    }
    ++wanted;
  }
  struct deadline d = deadline_start();
  while (__atomic_load_n(&ap_running, __ATOMIC_SEQ_CST) < (uint32_t)wanted) {
    if (deadline_expired(&d)) break;
  }
  return (int)__atomic_load_n(&ap_running, __ATOMIC_SEQ_CST);
}
