#include "virtio_blk.h"

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "apic.h"
#include "idt.h"
#include "io.h"
#include "libc.h"

/* "virt" (virtio 1.x, 4.2.2). */
#define VIRTIO_MMIO_MAGIC 0x74726976u
/* The features the driver can use (virtio 1.x, 5.2.3 and 6). */
#define VBLK_WANTED                                                       \
  ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_EVENT_IDX) |     \
   (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_BLK_F_FLUSH) | \
   (1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_SEG_MAX))
/* Descriptors one indirect table holds: header, data segments, status. */
#define VBLK_TABLE (VBLK_MAX_SEGS + 2)
/* Ring offsets inside the area vblk_init() gets (desc 16-, avail 2-, used 4-byte aligned). */
#define RING_AVAIL_OFF 0x1000
#define RING_USED_OFF 0x2000
#define RING_TABLES_OFF 0x3000

static uint32_t reg_read(const struct vblk* d, uint32_t off) {
  return mmio_read32(d->base + off);
}
static void reg_write(const struct vblk* d, uint32_t off, uint32_t v) {
  mmio_write32(d->base + off, v);
}

/* Orders the driver's ring writes before the index store and the index store before reads of
 * the device's event index (virtio 1.x, 2.7.13 and 2.7.10); on x86 only the latter needs a fence
 * beyond the compiler barrier. */
static inline void full_fence(void) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* --- command line ---------------------------------------------------------------------- */

/* Parses a number at *p (0x hex or decimal, optional K/M suffix) and advances *p. */
static uint64_t parse_num(const char** p) {
  const char* s = *p;
  uint64_t v = 0;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s += 2;
    for (;; ++s) {
      int digit = (*s >= '0' && *s <= '9')   ? *s - '0'
                  : (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10
                  : (*s >= 'A' && *s <= 'F') ? *s - 'A' + 10
                                             : -1;
      if (digit < 0) break;
      v = v * 16 + (uint64_t)digit;
    }
  } else {
    for (; *s >= '0' && *s <= '9'; ++s) v = v * 10 + (uint64_t)(*s - '0');
  }
  if (*s == 'K' || *s == 'k') v <<= 10, ++s;
  if (*s == 'M' || *s == 'm') v <<= 20, ++s;
  *p = s;
  return v;
}

int vblk_find_slots(const char* cmdline, struct vblk_slot* slots, int max) {
  static const char key[] = "virtio_mmio.device=";
  const size_t klen = sizeof(key) - 1;
  int n = 0;
  for (const char* p = cmdline; p && *p && n < max;) {
    while (*p == ' ') ++p;
    if (memcmp(p, key, klen) == 0) {
      p += klen;
      struct vblk_slot s = {0, 0, 0};
      s.size = (uint32_t)parse_num(&p);
      if (*p == '@') {
        ++p;
        s.base = parse_num(&p);
        if (*p == ':') {
          ++p;
          s.gsi = (uint32_t)parse_num(&p);
          if (s.base && s.size) slots[n++] = s;
        }
      }
    }
    while (*p && *p != ' ') ++p;
  }
  return n;
}

/* --- initialization -------------------------------------------------------------------- */

uint64_t vblk_ring_bytes(void) {
  return RING_TABLES_OFF + (uint64_t)VBLK_MAX_QUEUE * VBLK_TABLE * sizeof(struct vring_desc);
}

bool vblk_has(const struct vblk* d, unsigned bit) {
  return (d->features >> bit) & 1;
}

void vblk_reset(struct vblk* d) {
  reg_write(d, VIRTIO_MMIO_STATUS, 0);
}

static void set_status(struct vblk* d, uint32_t bits) {
  reg_write(d, VIRTIO_MMIO_STATUS, reg_read(d, VIRTIO_MMIO_STATUS) | bits);
}

static int negotiate(struct vblk* d) {
  reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  uint64_t offered = reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
  reg_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  offered |= (uint64_t)reg_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
  d->offered = offered;
  d->features = offered & VBLK_WANTED;
  if (!vblk_has(d, VIRTIO_F_VERSION_1)) {
    printf("testguest: virtio-blk at %lx: no VERSION_1 (features %lx)\n", (unsigned long)d->base,
           (unsigned long)offered);
    return -1;
  }
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
  set_status(d, VIRTIO_CONFIG_S_FEATURES_OK);
  if (!(reg_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK)) {
    printf("testguest: virtio-blk at %lx: FEATURES_OK refused\n", (unsigned long)d->base);
    return -1;
  }
  return 0;
}

static void write_addr(struct vblk* d, uint32_t low_reg, const void* p) {
  uint64_t a = (uint64_t)(uintptr_t)p;
  reg_write(d, low_reg, (uint32_t)a);
  reg_write(d, low_reg + 4, (uint32_t)(a >> 32));
}

static int setup_queue(struct vblk* d, uint8_t* rings) {
  reg_write(d, VIRTIO_MMIO_QUEUE_SEL, 0);
  if (reg_read(d, VIRTIO_MMIO_QUEUE_READY) != 0) {
    printf("testguest: virtio-blk: queue 0 already ready after reset\n");
    return -1;
  }
  uint32_t max = reg_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
  if (max == 0) {
    printf("testguest: virtio-blk: queue 0 not available\n");
    return -1;
  }
  uint32_t n = VBLK_MAX_QUEUE;
  while (n > max) n >>= 1;
  d->qsize = (uint16_t)n;
  d->desc = (struct vring_desc*)rings;
  d->avail = (struct vring_avail*)(rings + RING_AVAIL_OFF);
  d->used = (struct vring_used*)(rings + RING_USED_OFF);
  d->indirect = (struct vring_desc*)(rings + RING_TABLES_OFF);
  memset(rings, 0, RING_TABLES_OFF);
  for (uint16_t i = 0; i < n; ++i) d->desc[i].next = (uint16_t)(i + 1);
  d->free_head = 0;
  d->num_free = (uint16_t)n;
  d->avail_idx = d->kicked_idx = d->last_used = 0;
  d->in_flight = 0;
  reg_write(d, VIRTIO_MMIO_QUEUE_NUM, n);
  write_addr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, d->desc);
  write_addr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, d->avail);
  write_addr(d, VIRTIO_MMIO_QUEUE_USED_LOW, d->used);
  reg_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
  return 0;
}

static void read_config(struct vblk* d) {
  const uint64_t cfg = d->base + VIRTIO_MMIO_CONFIG;
  uint32_t gen;
  do {
    gen = reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
    d->capacity = mmio_read32(cfg + 0) | ((uint64_t)mmio_read32(cfg + 4) << 32);
    d->seg_max = vblk_has(d, VIRTIO_BLK_F_SEG_MAX) ? mmio_read32(cfg + 0x0C) : 1;
    d->blk_size = vblk_has(d, VIRTIO_BLK_F_BLK_SIZE) ? mmio_read32(cfg + 0x14) : 512;
  } while (gen != reg_read(d, VIRTIO_MMIO_CONFIG_GENERATION));
}

int vblk_init(struct vblk* d, const struct vblk_slot* slot, void* rings) {
  memset(d, 0, sizeof(*d));
  d->base = slot->base;
  d->gsi = slot->gsi;
  uint32_t magic = reg_read(d, VIRTIO_MMIO_MAGIC_VALUE);
  uint32_t version = reg_read(d, VIRTIO_MMIO_VERSION);
  uint32_t id = reg_read(d, VIRTIO_MMIO_DEVICE_ID);
  if (magic != VIRTIO_MMIO_MAGIC || version != 2 || id != VIRTIO_ID_BLOCK) {
    printf("testguest: no virtio-blk at %lx (magic %x version %u device %u)\n",
           (unsigned long)d->base, magic, version, id);
    return -1;
  }
  vblk_reset(d);
  if (reg_read(d, VIRTIO_MMIO_STATUS) != 0) {
    printf("testguest: virtio-blk at %lx: reset did not clear Status\n", (unsigned long)d->base);
    return -1;
  }
  set_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
  set_status(d, VIRTIO_CONFIG_S_DRIVER);
  if (negotiate(d) != 0 || setup_queue(d, rings) != 0) {
    set_status(d, VIRTIO_CONFIG_S_FAILED);
    return -1;
  }
  read_config(d);
  vblk_no_interrupt(d);
  set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
  return 0;
}

/* --- requests -------------------------------------------------------------------------- */

void vblk_prepare(struct vblk_req* r, uint32_t type, uint64_t sector) {
  r->hdr.type = type;
  r->hdr.ioprio = 0;
  r->hdr.sector = sector;
  r->status = 0xFF; /* a value the device never writes */
  r->done = 0;
  r->used_len = 0;
}

static void fill(struct vring_desc* e, const void* addr, uint32_t len, uint16_t flags) {
  e->addr = (uint64_t)(uintptr_t)addr;
  e->len = len;
  e->flags = flags;
}

/* Writes the chain's descriptors into `t` (following `next` links from t[first]). */
static void build_chain(struct vring_desc* t, uint16_t first, bool linked_by_index,
                        struct vblk_req* r, const struct vblk_seg* segs, int nseg) {
  const bool device_writes = r->hdr.type == VIRTIO_BLK_T_IN || r->hdr.type == VIRTIO_BLK_T_GET_ID;
  const uint16_t data_flags = device_writes ? VRING_DESC_F_WRITE : 0;
  uint16_t i = first;
  for (int k = 0; k < nseg + 2; ++k) {
    struct vring_desc* e = &t[i];
    uint16_t next = linked_by_index ? (uint16_t)(k + 1) : e->next;
    if (k == 0) {
      fill(e, &r->hdr, sizeof(r->hdr), VRING_DESC_F_NEXT);
    } else if (k <= nseg) {
      fill(e, segs[k - 1].addr, segs[k - 1].len, data_flags | VRING_DESC_F_NEXT);
    } else {
      fill(e, &r->status, 1, VRING_DESC_F_WRITE);
    }
    e->next = next;
    i = next;
  }
}

int vblk_add(struct vblk* d, struct vblk_req* r, const struct vblk_seg* segs, int nseg,
             bool indirect) {
  if (nseg < 0 || nseg > VBLK_MAX_SEGS) return -1;
  uint16_t need = indirect ? 1 : (uint16_t)(nseg + 2);
  if (d->num_free < need) return -1;
  uint16_t head = d->free_head;
  if (indirect) {
    struct vring_desc* table = &d->indirect[(uint32_t)head * VBLK_TABLE];
    build_chain(table, 0, true, r, segs, nseg);
    d->free_head = d->desc[head].next;
    fill(&d->desc[head], table, (uint32_t)(nseg + 2) * sizeof(struct vring_desc),
         VRING_DESC_F_INDIRECT);
  } else {
    uint16_t tail = head;
    for (uint16_t k = 1; k < need; ++k) tail = d->desc[tail].next;
    d->free_head = d->desc[tail].next;
    build_chain(d->desc, head, false, r, segs, nseg);
  }
  d->num_free = (uint16_t)(d->num_free - need);
  r->head = head;
  r->done = 0;
  d->owner[head] = r;
  d->avail->ring[d->avail_idx & (d->qsize - 1)] = head;
  d->avail_idx++;
  d->in_flight++;
  return 0;
}

void vblk_kick(struct vblk* d) {
  /* Ring entries and descriptors before the index (x86 keeps stores in order). */
  __atomic_store_n(&d->avail->idx, d->avail_idx, __ATOMIC_RELEASE);
  /* The index store before the read of avail_event (store-load: needs the fence). */
  full_fence();
  uint16_t old = d->kicked_idx, now = d->avail_idx;
  d->kicked_idx = now;
  bool need;
  if (vblk_has(d, VIRTIO_RING_F_EVENT_IDX)) {
    volatile uint16_t* avail_event = (volatile uint16_t*)&d->used->ring[d->qsize];
    need = vring_need_event(*avail_event, now, old);
  } else {
    need = !(__atomic_load_n(&d->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY);
  }
  if (need) {
    reg_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    d->notifies++;
  } else {
    d->suppressed++;
  }
}

static void free_chain(struct vblk* d, uint16_t head) {
  uint16_t n = 1, tail = head;
  while (!(d->desc[tail].flags & VRING_DESC_F_INDIRECT) &&
         (d->desc[tail].flags & VRING_DESC_F_NEXT) && n < d->qsize) {
    tail = d->desc[tail].next;
    ++n;
  }
  d->desc[tail].next = d->free_head;
  d->free_head = head;
  d->num_free = (uint16_t)(d->num_free + n);
}

int vblk_reap(struct vblk* d) {
  /* used.idx before the used elements it covers. */
  uint16_t idx = __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE);
  int n = 0;
  while (d->last_used != idx) {
    struct vring_used_elem e = d->used->ring[d->last_used & (d->qsize - 1)];
    d->last_used++;
    struct vblk_req* r = e.id < d->qsize ? d->owner[e.id] : 0;
    if (!r) {
      printf("testguest: virtio-blk: used id %u is not in flight\n", e.id);
      continue;
    }
    d->owner[e.id] = 0;
    free_chain(d, (uint16_t)e.id);
    r->used_len = e.len;
    r->done = 1;
    d->in_flight--;
    ++n;
  }
  return n;
}

static volatile uint16_t* used_event(struct vblk* d) {
  return &d->avail->ring[d->qsize];
}

void vblk_want_interrupt(struct vblk* d, uint16_t after) {
  if (vblk_has(d, VIRTIO_RING_F_EVENT_IDX)) {
    *used_event(d) = (uint16_t)(d->last_used + (after ? after - 1 : 0));
  } else {
    d->avail->flags = 0;
  }
  full_fence();
}

void vblk_no_interrupt(struct vblk* d) {
  if (vblk_has(d, VIRTIO_RING_F_EVENT_IDX)) {
    /* The device interrupts when used.idx passes used_event: put it 32768 behind. */
    *used_event(d) = (uint16_t)(d->last_used - 0x8000);
  } else {
    d->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
  }
  full_fence();
}

bool vblk_wait(struct vblk* d, struct vblk_req* r) {
  struct deadline dl = deadline_start();
  while (!r->done) {
    vblk_reap(d);
    if (r->done) break;
    if (deadline_expired(&dl)) return false;
  }
  return true;
}

uint8_t vblk_do(struct vblk* d, struct vblk_req* r, uint32_t type, uint64_t sector, void* buf,
                uint32_t len) {
  struct vblk_seg seg = {buf, len};
  vblk_prepare(r, type, sector);
  if (vblk_add(d, r, &seg, buf ? 1 : 0, false) != 0) return 0xFF;
  vblk_kick(d);
  return vblk_wait(d, r) ? r->status : 0xFF;
}

/* --- interrupts ------------------------------------------------------------------------ */

uint32_t vblk_isr(const struct vblk* d) {
  return reg_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
}

void vblk_ack(const struct vblk* d, uint32_t bits) {
  reg_write(d, VIRTIO_MMIO_INTERRUPT_ACK, bits);
}

static struct vblk* irq_devices[256];

static void vblk_irq(struct irq_frame* f) {
  struct vblk* d = irq_devices[f->vector & 0xFF];
  if (d) {
    uint32_t isr = vblk_isr(d);
    d->last_isr = isr;
    vblk_ack(d, isr);
    d->interrupts = d->interrupts + 1;
  }
  lapic_eoi();
}

void vblk_route_irq(struct vblk* d, uint64_t ioapic, int pin, uint8_t vector) {
  irq_devices[vector] = d;
  idt_set_handler(vector, vblk_irq);
  lapic_enable();
  ioapic_route(ioapic, (uint8_t)pin, vector, lapic_id());
}

void vblk_unroute_irq(struct vblk* d, uint64_t ioapic, int pin) {
  (void)d;
  ioapic_mask(ioapic, (uint8_t)pin);
}
