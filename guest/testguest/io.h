/* CPU and I/O primitives for the freestanding test guest. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes one byte to an I/O port. */
static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

/* Reads one byte from an I/O port. */
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

/* 32-bit MMIO write (APIC registers). */
static inline void mmio_write32(uint64_t addr, uint32_t v) {
  *(volatile uint32_t*)(uintptr_t)addr = v;
}

/* 32-bit MMIO read. */
static inline uint32_t mmio_read32(uint64_t addr) {
  return *(volatile uint32_t*)(uintptr_t)addr;
}

/* Time-stamp counter. */
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

/* Current page-table root. */
static inline uint64_t read_cr3(void) {
  uint64_t v;
  __asm__ volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}

/* Spin-loop hint. */
static inline void cpu_relax(void) {
  __asm__ volatile("pause" ::: "memory");
}
static inline void irq_enable(void) {
  __asm__ volatile("sti" ::: "memory");
}
static inline void irq_disable(void) {
  __asm__ volatile("cli" ::: "memory");
}

/* Stops this CPU for good (interrupts off). */
static inline __attribute__((noreturn)) void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

/* A bounded wait: ends after a TSC budget or a spin budget, whichever comes first, so a wait
 * never hangs (emulated guests spin slowly, native ones fast). */
struct deadline {
  uint64_t tsc_end;
  uint64_t spins_left;
};

/* About 4-6 s of TSC on common clocks (a host disk under load can take seconds for one
 * write), and at most 150 M spins. */
static inline struct deadline deadline_start(void) {
  struct deadline d = {rdtsc() + 12000000000ull, 150000000ull};
  return d;
}

/* Counts one spin; true once the wait is over. */
static inline bool deadline_expired(struct deadline* d) {
  cpu_relax();
  if (d->spins_left-- == 0) return true;
  return rdtsc() > d->tsc_end;
}
