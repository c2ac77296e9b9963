#include "heap.h"

/* E820 type of usable RAM. */
#define E820_RAM 1
/* The identity map kindling builds covers the first 4 GiB; the MMIO hole starts at 3 GiB. */
#define HEAP_LIMIT 0xC0000000ull

/* End of the image (.bss included), from testguest.ld. */
extern char _end[];

static uint64_t heap_next;
static uint64_t heap_end;

void heap_init(const struct boot_params* bp) {
  uint64_t start = (uint64_t)(uintptr_t)_end;
  heap_next = heap_end = start;
  for (int i = 0; i < bp->e820_entries && i < E820_MAX_ENTRIES_ZEROPAGE; ++i) {
    const struct boot_e820_entry* e = &bp->e820_table[i];
    if (e->type == E820_RAM && e->addr <= start && start < e->addr + e->size) {
      heap_end = e->addr + e->size;
    }
  }
  if (heap_end > HEAP_LIMIT) heap_end = HEAP_LIMIT;
}

void* heap_alloc(uint64_t bytes, uint64_t align) {
  uint64_t p = (heap_next + align - 1) & ~(align - 1);
  if (p < heap_next || p + bytes < p || p + bytes > heap_end) return 0;
  heap_next = p + bytes;
  return (void*)(uintptr_t)p;
}

uint64_t heap_left(void) {
  return heap_end - heap_next;
}
