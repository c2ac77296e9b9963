#include "mp.h"

#include "libc.h"

/* MP spec 4.1 / 4.2 layouts, only the fields read here. */
struct mp_fp {
  char signature[4];
  uint32_t physptr;
  uint8_t length, spec, checksum, feature1, feature2, feature3[3];
} __attribute__((packed));

struct mp_config {
  char signature[4];
  uint16_t length;
  uint8_t spec, checksum;
  char oem[8], product[12];
  uint32_t oem_ptr;
  uint16_t oem_size, entry_count;
  uint32_t lapic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum, reserved;
} __attribute__((packed));

static uint8_t sum_bytes(const uint8_t* p, uint32_t n) {
  uint8_t s = 0;
  while (n--) s += *p++;
  return s;
}

static const struct mp_fp* find_fp(uint64_t start, uint64_t end) {
  for (uint64_t a = start; a + sizeof(struct mp_fp) <= end; a += 16) {
    const struct mp_fp* fp = (const struct mp_fp*)(uintptr_t)a;
    if (memcmp(fp->signature, "_MP_", 4) == 0 && sum_bytes((const uint8_t*)fp, sizeof(*fp)) == 0) {
      return fp;
    }
  }
  return 0;
}

static void parse_entries(const uint8_t* p, const uint8_t* end, int count, struct mp_info* info) {
  for (int i = 0; i < count && p < end; ++i) {
    switch (p[0]) {
      case 0: /* processor, 20 bytes: apic id at 1, flags at 3 (bit 0 enabled) */
        if ((p[3] & 1) && info->cpus < 64) info->cpu_apic_ids[info->cpus++] = p[1];
        p += 20;
        break;
      case 2: /* I/O APIC: address at 4 */
        memcpy(&info->ioapic_addr, p + 4, 4);
        p += 8;
        break;
      case 3: /* I/O interrupt: src bus irq at 5, dst pin at 7 */
        if (p[5] < 24) info->isa_irq_pin[p[5]] = p[7];
        p += 8;
        break;
      default: /* bus, local interrupt: 8 bytes */
        p += 8;
        break;
    }
  }
}

void mp_read(struct mp_info* info) {
  memset(info, 0, sizeof(*info));
  for (int i = 0; i < 24; ++i) info->isa_irq_pin[i] = -1;
  const struct mp_fp* fp = find_fp(0x9FC00, 0xA0000);
  if (!fp) fp = find_fp(0xF0000, 0x100000);
  if (!fp || fp->physptr == 0) return;
  const struct mp_config* cfg = (const struct mp_config*)(uintptr_t)fp->physptr;
  if (memcmp(cfg->signature, "PCMP", 4) != 0 || sum_bytes((const uint8_t*)cfg, cfg->length) != 0) {
    return;
  }
  const uint8_t* base = (const uint8_t*)cfg;
  parse_entries(base + sizeof(*cfg), base + cfg->length, cfg->entry_count, info);
  info->found = 1;
}
