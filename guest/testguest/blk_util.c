#include "blk_util.h"

#include <stdarg.h>

#include "apic.h"
#include "blk_pattern.h"
#include "heap.h"
#include "libc.h"
#include "platform.h"

static const char* const disk_names[VBLK_MAX_DEVICES] = {"vda", "vdb", "vdc", "vdd"};

int blk_open(struct tg_context* ctx, int index, struct vblk* d) {
  struct vblk_slot slots[VBLK_MAX_DEVICES];
  int n = vblk_find_slots(ctx->cmdline, slots, VBLK_MAX_DEVICES);
  if (index >= n) {
    printf("testguest: no virtio_mmio.device for disk %d on the command line (%d found)\n", index,
           n);
    return -1;
  }
  void* rings = heap_alloc(vblk_ring_bytes(), 4096);
  if (!rings) {
    printf("testguest: out of memory for the rings\n");
    return -1;
  }
  if (vblk_init(d, &slots[index], rings) != 0) return -1;
  printf(
      "testguest: %s: virtio-blk at %lx gsi %u: %lu sectors, blk_size %u, seg_max %u, "
      "queue %u, features %lx\n",
      disk_names[index], (unsigned long)d->base, d->gsi, (unsigned long)d->capacity, d->blk_size,
      d->seg_max, d->qsize, (unsigned long)d->features);
  return 0;
}

int blk_irq_pin(const struct tg_context* ctx, const struct vblk* d) {
  if (d->gsi < 24 && ctx->mp.isa_irq_pin[d->gsi] >= 0) return ctx->mp.isa_irq_pin[d->gsi];
  return (int)d->gsi;
}

uint64_t blk_ioapic(const struct tg_context* ctx) {
  return ctx->mp.ioapic_addr ? ctx->mp.ioapic_addr : IOAPIC_BASE;
}

long blk_param(const struct tg_context* ctx, const char* key, long def) {
  char name[32] = "blk.";
  char value[24];
  size_t k = strlen(name);
  for (size_t i = 0; key[i] && k + 1 < sizeof(name); ++i) name[k++] = key[i];
  name[k] = '\0';
  if (cmdline_get(ctx->cmdline, name, value, sizeof(value)) != 0) return def;
  long v = parse_ulong(value);
  return v < 0 ? def : v;
}

uint32_t blk_seed(const struct tg_context* ctx) {
  return (uint32_t)blk_param(ctx, "seed", 1);
}

void blk_fill(void* buf, uint32_t seed, uint64_t first, uint32_t sectors) {
  uint64_t* w = buf;
  for (uint32_t s = 0; s < sectors; ++s) {
    for (uint32_t i = 0; i < BLK_PATTERN_WORDS; ++i) *w++ = blk_pattern_word(seed, first + s, i);
  }
}

int64_t blk_check(const void* buf, uint32_t seed, uint64_t first, uint32_t sectors) {
  const uint64_t* w = buf;
  for (uint32_t s = 0; s < sectors; ++s) {
    for (uint32_t i = 0; i < BLK_PATTERN_WORDS; ++i) {
      if (*w++ != blk_pattern_word(seed, first + s, i)) return (int64_t)(first + s);
    }
  }
  return -1;
}

void blk_poison(void* buf, uint32_t bytes) {
  uint64_t* w = buf;
  for (uint32_t i = 0; i < bytes / 8; ++i) w[i] = 0xDEADBEEFDEADBEEFull;
}

void* blk_buffer(uint64_t bytes) {
  void* p = heap_alloc(bytes, 4096);
  if (!p) printf("testguest: out of memory for a %lu-byte buffer\n", (unsigned long)bytes);
  return p;
}

int blk_fail(const char* test, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("testguest: %s: FAIL ", test);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  return TG_FAIL;
}

bool blk_expect(const char* test, const char* what, uint8_t got, uint8_t want) {
  if (got == want) return true;
  printf("testguest: %s: FAIL %s: status %u, expected %u%s\n", test, what, got, want,
         got == 0xFF ? " (no completion)" : "");
  return false;
}
