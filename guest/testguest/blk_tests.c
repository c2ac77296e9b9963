/* The virtio-blk tests of the test guest (see blk_tests.h). Each prints
 * `testguest: <name>: ok ...` or `testguest: <name>: FAIL ...` and returns the verdict. */
#include "blk_tests.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "blk_pattern.h"
#include "blk_util.h"
#include "idt.h"
#include "io.h"
#include "libc.h"
#include "platform.h"

#define SECTOR BLK_PATTERN_SECTOR
/* Bytes of a successful IN/GET_ID: data + status; OUT/FLUSH: the status byte only. */
#define USED_IN(bytes) ((bytes) + 1u)
#define USED_OUT 1u

static struct vblk disk0;
static struct vblk disk1;
static struct vblk_req reqs[64];

/* Writes, flushes and reads back BLK_RW_COUNT sectors. */
int blk_rw(struct tg_context* ctx) {
  const char* t = "blk-rw";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  if (!vblk_has(&disk0, VIRTIO_BLK_F_FLUSH)) return blk_fail(t, "FLUSH not offered");
  if (disk0.capacity < BLK_RW_FIRST + BLK_RW_COUNT) return blk_fail(t, "disk too small");
  const uint32_t seed = blk_seed(ctx);
  const uint32_t half = BLK_RW_COUNT / 2;
  uint8_t* wbuf = blk_buffer(BLK_RW_COUNT * SECTOR);
  uint8_t* rbuf = blk_buffer(BLK_RW_COUNT * SECTOR);
  if (!wbuf || !rbuf) return TG_FAIL;
  blk_fill(wbuf, seed, BLK_RW_FIRST, BLK_RW_COUNT);
  blk_poison(rbuf, BLK_RW_COUNT * SECTOR);
  struct vblk_req* r = &reqs[0];
  if (!blk_expect(t, "write 1",
                  vblk_do(&disk0, r, VIRTIO_BLK_T_OUT, BLK_RW_FIRST, wbuf, half * SECTOR),
                  VIRTIO_BLK_S_OK) ||
      !blk_expect(t, "write 2",
                  vblk_do(&disk0, r, VIRTIO_BLK_T_OUT, BLK_RW_FIRST + half, wbuf + half * SECTOR,
                          half * SECTOR),
                  VIRTIO_BLK_S_OK) ||
      !blk_expect(t, "flush", vblk_do(&disk0, r, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK)) {
    return TG_FAIL;
  }
  if (r->used_len != USED_OUT) return blk_fail(t, "flush used.len %u", r->used_len);
  if (!blk_expect(t, "read",
                  vblk_do(&disk0, r, VIRTIO_BLK_T_IN, BLK_RW_FIRST, rbuf, BLK_RW_COUNT * SECTOR),
                  VIRTIO_BLK_S_OK)) {
    return TG_FAIL;
  }
  if (r->used_len != USED_IN(BLK_RW_COUNT * SECTOR)) {
    return blk_fail(t, "read used.len %u, expected %u", r->used_len,
                    USED_IN(BLK_RW_COUNT * SECTOR));
  }
  int64_t bad = blk_check(rbuf, seed, BLK_RW_FIRST, BLK_RW_COUNT);
  if (bad >= 0) return blk_fail(t, "sector %ld reads back wrong", (long)bad);
  printf("testguest: blk-rw: ok wrote, flushed and read back sectors %u-%u (seed %u)\n",
         BLK_RW_FIRST, BLK_RW_FIRST + BLK_RW_COUNT - 1, seed);
  return TG_PASS;
}

/* GET_ID returns 20 bytes of serial; compared with `blk.serial=` when given. */
int blk_id(struct tg_context* ctx) {
  const char* t = "blk-id";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  char* id = blk_buffer(4096);
  if (!id) return TG_FAIL;
  memset(id, 0x55, VIRTIO_BLK_ID_BYTES + 1);
  struct vblk_req* r = &reqs[0];
  if (!blk_expect(t, "GET_ID", vblk_do(&disk0, r, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES),
                  VIRTIO_BLK_S_OK)) {
    return TG_FAIL;
  }
  if (r->used_len != USED_IN(VIRTIO_BLK_ID_BYTES)) return blk_fail(t, "used.len %u", r->used_len);
  if (id[VIRTIO_BLK_ID_BYTES] != 0x55) return blk_fail(t, "device wrote past the buffer");
  char serial[VIRTIO_BLK_ID_BYTES + 1];
  memcpy(serial, id, VIRTIO_BLK_ID_BYTES);
  serial[VIRTIO_BLK_ID_BYTES] = '\0';
  char want[VIRTIO_BLK_ID_BYTES + 8];
  if (cmdline_get(ctx->cmdline, "blk.serial", want, sizeof(want)) == 0) {
    /* GET_ID pads with NULs; a 20-byte serial has none. */
    if (strlen(want) > VIRTIO_BLK_ID_BYTES || strcmp(serial, want) != 0) {
      return blk_fail(t, "serial '%s', expected '%s'", serial, want);
    }
    for (size_t i = strlen(want); i < VIRTIO_BLK_ID_BYTES; ++i) {
      if (id[i] != 0) return blk_fail(t, "serial not NUL-padded at byte %u", (unsigned)i);
    }
  } else if (serial[0] == '\0') {
    return blk_fail(t, "empty serial");
  }
  printf("testguest: blk-id: ok serial '%s'\n", serial);
  return TG_PASS;
}

/* Issues one request over `nseg` segments and checks its status and used length. */
static bool multi_io(const char* t, uint32_t type, uint64_t sector, struct vblk_seg* segs, int nseg,
                     bool indirect) {
  struct vblk_req* r = &reqs[0];
  uint32_t bytes = 0;
  for (int i = 0; i < nseg; ++i) bytes += segs[i].len;
  vblk_prepare(r, type, sector);
  if (vblk_add(&disk0, r, segs, nseg, indirect) != 0) {
    printf("testguest: %s: FAIL ring full\n", t);
    return false;
  }
  vblk_kick(&disk0);
  uint8_t status = vblk_wait(&disk0, r) ? r->status : 0xFF;
  if (!blk_expect(t, indirect ? "indirect request" : "multi-descriptor request", status,
                  VIRTIO_BLK_S_OK)) {
    return false;
  }
  uint32_t want = type == VIRTIO_BLK_T_IN ? USED_IN(bytes) : USED_OUT;
  if (r->used_len != want) {
    printf("testguest: %s: FAIL used.len %u, expected %u\n", t, r->used_len, want);
    return false;
  }
  return true;
}

/* Splits `bytes` at buf into segments of the given lengths (cycled). */
static int split(uint8_t* buf, uint32_t bytes, const uint32_t* lens, int nlens,
                 struct vblk_seg* segs) {
  int n = 0;
  for (uint32_t off = 0; off < bytes && n < VBLK_MAX_SEGS; ++n) {
    uint32_t len = lens[n % nlens];
    if (len > bytes - off) len = bytes - off;
    segs[n].addr = buf + off;
    segs[n].len = len;
    off += len;
  }
  return n;
}

/* Multi-descriptor and multi-sector requests; indirect tables when negotiated. */
int blk_multi(struct tg_context* ctx) {
  const char* t = "blk-multi";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  if (disk0.capacity < BLK_MULTI_BIG_FIRST + BLK_MULTI_BIG_COUNT)
    return blk_fail(t, "disk too small");
  const uint32_t seed = blk_seed(ctx);
  const bool ind = vblk_has(&disk0, VIRTIO_RING_F_INDIRECT_DESC);
  const uint32_t half = BLK_MULTI_COUNT / 2;
  uint8_t* a = blk_buffer(BLK_MULTI_COUNT * SECTOR + 4096);
  uint8_t* big = blk_buffer(BLK_MULTI_BIG_COUNT * SECTOR);
  uint8_t* rbuf = blk_buffer(BLK_MULTI_BIG_COUNT * SECTOR);
  if (!a || !big || !rbuf) return TG_FAIL;
  struct vblk_seg segs[VBLK_MAX_SEGS];
  /* 8 sectors as 512 + 1024 + 2048 + 512 bytes, the buffer 512 bytes off a page boundary. */
  static const uint32_t mixed[] = {512, 1024, 2048, 512};
  uint8_t* w = a + 512;
  blk_fill(w, seed, BLK_MULTI_FIRST, BLK_MULTI_COUNT);
  int n = split(w, half * SECTOR, mixed, 4, segs);
  if (!multi_io(t, VIRTIO_BLK_T_OUT, BLK_MULTI_FIRST, segs, n, false)) return TG_FAIL;
  /* The next 8 sectors as 8 single-sector descriptors, through an indirect table if offered. */
  static const uint32_t one[] = {512};
  n = split(w + half * SECTOR, half * SECTOR, one, 1, segs);
  if (!multi_io(t, VIRTIO_BLK_T_OUT, BLK_MULTI_FIRST + half, segs, n, ind)) return TG_FAIL;
  /* 64 KiB in one descriptor. */
  blk_fill(big, seed, BLK_MULTI_BIG_FIRST, BLK_MULTI_BIG_COUNT);
  segs[0].addr = big;
  segs[0].len = BLK_MULTI_BIG_COUNT * SECTOR;
  if (!multi_io(t, VIRTIO_BLK_T_OUT, BLK_MULTI_BIG_FIRST, segs, 1, false)) return TG_FAIL;
  if (!blk_expect(t, "flush", vblk_do(&disk0, &reqs[0], VIRTIO_BLK_T_FLUSH, 0, 0, 0), 0)) {
    return TG_FAIL;
  }
  /* Read the 16 sectors back as 1536 + 4096 + 2560 bytes. */
  static const uint32_t back[] = {1536, 4096, 2560};
  blk_poison(rbuf, BLK_MULTI_BIG_COUNT * SECTOR);
  n = split(rbuf, BLK_MULTI_COUNT * SECTOR, back, 3, segs);
  if (!multi_io(t, VIRTIO_BLK_T_IN, BLK_MULTI_FIRST, segs, n, false)) return TG_FAIL;
  int64_t bad = blk_check(rbuf, seed, BLK_MULTI_FIRST, BLK_MULTI_COUNT);
  if (bad >= 0) return blk_fail(t, "sector %ld reads back wrong", (long)bad);
  /* Read the 128 sectors back in 16 KiB pieces (indirect if offered). */
  static const uint32_t quarter[] = {16384};
  blk_poison(rbuf, BLK_MULTI_BIG_COUNT * SECTOR);
  n = split(rbuf, BLK_MULTI_BIG_COUNT * SECTOR, quarter, 1, segs);
  if (!multi_io(t, VIRTIO_BLK_T_IN, BLK_MULTI_BIG_FIRST, segs, n, ind)) return TG_FAIL;
  bad = blk_check(rbuf, seed, BLK_MULTI_BIG_FIRST, BLK_MULTI_BIG_COUNT);
  if (bad >= 0) return blk_fail(t, "sector %ld reads back wrong", (long)bad);
  printf(
      "testguest: blk-multi: ok 4-descriptor write, 8-descriptor %s write, 64 KiB write, "
      "3- and 4-descriptor reads (sectors %u-%u, %u-%u)\n",
      ind ? "indirect" : "direct", BLK_MULTI_FIRST, BLK_MULTI_FIRST + BLK_MULTI_COUNT - 1,
      BLK_MULTI_BIG_FIRST, BLK_MULTI_BIG_FIRST + BLK_MULTI_BIG_COUNT - 1);
  return TG_PASS;
}

/* Adds `count` requests of BLK_BATCH_SECTORS each (in `order`: 1 ascending, -1 descending) and
 * kicks once; waits for all and checks each status. */
static bool batch(const char* t, uint32_t type, uint8_t* buf, int count, int order) {
  for (int k = 0; k < count; ++k) {
    int i = order > 0 ? k : count - 1 - k;
    struct vblk_seg seg = {buf + (uint32_t)i * BLK_BATCH_SECTORS * SECTOR,
                           BLK_BATCH_SECTORS * SECTOR};
    vblk_prepare(&reqs[i], type, BLK_BATCH_FIRST + (uint64_t)i * BLK_BATCH_SECTORS);
    if (vblk_add(&disk0, &reqs[i], &seg, 1, false) != 0) {
      printf("testguest: %s: FAIL ring full at request %d\n", t, k);
      return false;
    }
  }
  vblk_kick(&disk0);
  for (int i = 0; i < count; ++i) {
    uint8_t st = vblk_wait(&disk0, &reqs[i]) ? reqs[i].status : 0xFF;
    if (!blk_expect(t, type == VIRTIO_BLK_T_IN ? "batched read" : "batched write", st, 0)) {
      return false;
    }
  }
  return true;
}

/* N requests per notify, so the device can merge them; each completes with its own status. */
int blk_batch(struct tg_context* ctx) {
  const char* t = "blk-batch";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  int count = (int)blk_param(ctx, "batch", 16);
  if (count < 1 || count > 64 || count * 3 > disk0.qsize) {
    return blk_fail(t, "blk.batch=%d out of range for queue size %u", count, disk0.qsize);
  }
  const uint32_t sectors = (uint32_t)count * BLK_BATCH_SECTORS;
  if (disk0.capacity < BLK_BATCH_FIRST + sectors) return blk_fail(t, "disk too small");
  const uint32_t seed = blk_seed(ctx);
  uint8_t* wbuf = blk_buffer(sectors * SECTOR);
  uint8_t* rbuf = blk_buffer(sectors * SECTOR);
  if (!wbuf || !rbuf) return TG_FAIL;
  blk_fill(wbuf, seed, BLK_BATCH_FIRST, sectors);
  blk_poison(rbuf, sectors * SECTOR);
  uint32_t kicks = disk0.notifies;
  if (!batch(t, VIRTIO_BLK_T_OUT, wbuf, count, 1)) return TG_FAIL;
  if (!blk_expect(t, "flush", vblk_do(&disk0, &reqs[0], VIRTIO_BLK_T_FLUSH, 0, 0, 0), 0)) {
    return TG_FAIL;
  }
  if (!batch(t, VIRTIO_BLK_T_IN, rbuf, count, -1)) return TG_FAIL;
  kicks = disk0.notifies - kicks;
  for (int i = 0; i < count; ++i) {
    if (reqs[i].used_len != USED_IN(BLK_BATCH_SECTORS * SECTOR)) {
      return blk_fail(t, "read %d used.len %u", i, reqs[i].used_len);
    }
  }
  int64_t bad = blk_check(rbuf, seed, BLK_BATCH_FIRST, sectors);
  if (bad >= 0) return blk_fail(t, "sector %ld reads back wrong", (long)bad);
  printf(
      "testguest: blk-batch: ok %d writes and %d reads (reverse order), one notify per batch "
      "(%u notifies for %d requests), sectors %u-%u\n",
      count, count, kicks, 2 * count + 1, BLK_BATCH_FIRST, BLK_BATCH_FIRST + sectors - 1);
  return TG_PASS;
}

/* A read-only disk offers RO; writes fail with IOERR and change nothing; reads work. */
int blk_ro(struct tg_context* ctx) {
  const char* t = "blk-ro";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  if (!(disk0.offered & (1ull << VIRTIO_BLK_F_RO))) return blk_fail(t, "RO feature not offered");
  const uint32_t bytes = 8 * SECTOR;
  uint8_t* before = blk_buffer(bytes);
  uint8_t* wbuf = blk_buffer(bytes);
  uint8_t* after = blk_buffer(bytes);
  if (!before || !wbuf || !after) return TG_FAIL;
  struct vblk_req* r = &reqs[0];
  if (!blk_expect(t, "read", vblk_do(&disk0, r, VIRTIO_BLK_T_IN, 0, before, bytes), 0)) {
    return TG_FAIL;
  }
  blk_fill(wbuf, blk_seed(ctx), 0, 8);
  if (!blk_expect(t, "write", vblk_do(&disk0, r, VIRTIO_BLK_T_OUT, 0, wbuf, bytes),
                  VIRTIO_BLK_S_IOERR)) {
    return TG_FAIL;
  }
  blk_poison(after, bytes);
  if (!blk_expect(t, "read after write", vblk_do(&disk0, r, VIRTIO_BLK_T_IN, 0, after, bytes), 0)) {
    return TG_FAIL;
  }
  if (memcmp(before, after, bytes) != 0) return blk_fail(t, "sectors changed by a failed write");
  printf("testguest: blk-ro: ok RO offered, write -> IOERR, data unchanged\n");
  return TG_PASS;
}

/* Requests at and across the end of the disk fail with IOERR; the last sector reads. */
int blk_eof(struct tg_context* ctx) {
  const char* t = "blk-eof";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  const uint64_t cap = disk0.capacity;
  if (cap < 2) return blk_fail(t, "disk too small");
  uint8_t* buf = blk_buffer(2 * SECTOR);
  if (!buf) return TG_FAIL;
  struct vblk_req* r = &reqs[0];
  blk_fill(buf, blk_seed(ctx), cap - 1, 2);
  const struct {
    const char* what;
    uint32_t type;
    uint64_t sector;
    uint32_t bytes;
    uint8_t want;
  } cases[] = {
      {"read at capacity", VIRTIO_BLK_T_IN, cap, SECTOR, VIRTIO_BLK_S_IOERR},
      {"read across the end", VIRTIO_BLK_T_IN, cap - 1, 2 * SECTOR, VIRTIO_BLK_S_IOERR},
      {"write at capacity", VIRTIO_BLK_T_OUT, cap, SECTOR, VIRTIO_BLK_S_IOERR},
      {"write across the end", VIRTIO_BLK_T_OUT, cap - 1, 2 * SECTOR, VIRTIO_BLK_S_IOERR},
      {"read at sector 2^64-1", VIRTIO_BLK_T_IN, ~0ull, SECTOR, VIRTIO_BLK_S_IOERR},
      {"read of the last sector", VIRTIO_BLK_T_IN, cap - 1, SECTOR, VIRTIO_BLK_S_OK},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    uint8_t st = vblk_do(&disk0, r, cases[i].type, cases[i].sector, buf, cases[i].bytes);
    if (!blk_expect(t, cases[i].what, st, cases[i].want)) return TG_FAIL;
  }
  printf("testguest: blk-eof: ok requests past sector %lu -> IOERR, last sector reads\n",
         (unsigned long)cap);
  return TG_PASS;
}

/* Two disks at once: different patterns in flight together, flushed, read back. */
int blk_two(struct tg_context* ctx) {
  const char* t = "blk-two";
  if (blk_open(ctx, 0, &disk0) != 0 || blk_open(ctx, 1, &disk1) != 0) return TG_FAIL;
  const uint32_t seed = blk_seed(ctx);
  const uint32_t bytes = BLK_TWO_COUNT * SECTOR;
  struct vblk* disks[2] = {&disk0, &disk1};
  uint8_t* bufs[2] = {blk_buffer(bytes), blk_buffer(bytes)};
  if (!bufs[0] || !bufs[1]) return TG_FAIL;
  for (int pass = 0; pass < 2; ++pass) {
    uint32_t type = pass == 0 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    for (int k = 0; k < 2; ++k) {
      if (pass == 0) blk_fill(bufs[k], seed + (uint32_t)k, BLK_TWO_FIRST, BLK_TWO_COUNT);
      if (pass == 1) blk_poison(bufs[k], bytes);
      struct vblk_seg seg = {bufs[k], bytes};
      vblk_prepare(&reqs[k], type, BLK_TWO_FIRST);
      if (vblk_add(disks[k], &reqs[k], &seg, 1, false) != 0) return blk_fail(t, "ring full");
    }
    vblk_kick(&disk0);
    vblk_kick(&disk1);
    for (int k = 0; k < 2; ++k) {
      uint8_t st = vblk_wait(disks[k], &reqs[k]) ? reqs[k].status : 0xFF;
      if (!blk_expect(t, k == 0 ? "vda" : "vdb", st, 0)) return TG_FAIL;
    }
    for (int k = 0; pass == 0 && k < 2; ++k) {
      if (!blk_expect(t, "flush", vblk_do(disks[k], &reqs[k], VIRTIO_BLK_T_FLUSH, 0, 0, 0), 0)) {
        return TG_FAIL;
      }
    }
  }
  for (int k = 0; k < 2; ++k) {
    int64_t bad = blk_check(bufs[k], seed + (uint32_t)k, BLK_TWO_FIRST, BLK_TWO_COUNT);
    if (bad >= 0) return blk_fail(t, "vd%c sector %ld reads back wrong", 'a' + k, (long)bad);
  }
  printf("testguest: blk-two: ok vda (seed %u) and vdb (seed %u) written and read together\n", seed,
         seed + 1);
  return TG_PASS;
}

/* Spins `n` times (lets an interrupt that is on its way arrive). */
static void settle(uint32_t n) {
  for (volatile uint32_t i = 0; i < n; ++i) cpu_relax();
}

/* Waits (bounded, interrupts on) until the device has taken more than `seen` interrupts. */
static bool wait_interrupt(struct vblk* d, uint32_t seen) {
  struct deadline dl = deadline_start();
  while (d->interrupts <= seen) {
    if (deadline_expired(&dl)) return false;
  }
  return true;
}

/* InterruptStatus/ACK by polling, then interrupts through the I/O APIC: one per request when
 * asked, none when suppressed, one for a batch when used_event says so (EVENT_IDX). */
int blk_irq(struct tg_context* ctx) {
  const char* t = "blk-irq";
  if (blk_open(ctx, 0, &disk0) != 0) return TG_FAIL;
  uint8_t* buf = blk_buffer(8 * 4096);
  if (!buf) return TG_FAIL;
  struct vblk_req* r = &reqs[0];
  /* 1. Pin still masked: InterruptStatus bit 0 after a completion, cleared by ACK. */
  vblk_want_interrupt(&disk0, 1);
  if (!blk_expect(t, "read", vblk_do(&disk0, r, VIRTIO_BLK_T_IN, 0, buf, 4096), 0)) {
    return TG_FAIL;
  }
  settle(1000);
  uint32_t isr = vblk_isr(&disk0);
  if (!(isr & VIRTIO_MMIO_INT_VRING))
    return blk_fail(t, "InterruptStatus %x after completion", isr);
  vblk_ack(&disk0, VIRTIO_MMIO_INT_VRING);
  uint32_t acked = vblk_isr(&disk0);
  if (acked & VIRTIO_MMIO_INT_VRING) return blk_fail(t, "InterruptStatus %x after ACK", acked);
  /* 2. Routed: the interrupt arrives and the handler sees bit 0. */
  const int pin = blk_irq_pin(ctx, &disk0);
  const uint8_t vector = VEC_VIRTIO_BASE;
  vblk_route_irq(&disk0, blk_ioapic(ctx), pin, vector);
  irq_enable();
  uint32_t seen = disk0.interrupts;
  vblk_want_interrupt(&disk0, 1);
  uint8_t st = vblk_do(&disk0, r, VIRTIO_BLK_T_IN, 8, buf, 4096);
  bool arrived = wait_interrupt(&disk0, seen);
  if (!blk_expect(t, "read with interrupt", st, 0)) return TG_FAIL;
  if (!arrived) return blk_fail(t, "no interrupt (GSI %u, I/O APIC pin %d)", disk0.gsi, pin);
  if (!(disk0.last_isr & VIRTIO_MMIO_INT_VRING)) {
    return blk_fail(t, "handler read InterruptStatus %x", disk0.last_isr);
  }
  /* 3. Suppressed (used_event far behind): the request completes, no interrupt. */
  vblk_no_interrupt(&disk0);
  seen = disk0.interrupts;
  if (!blk_expect(t, "quiet read", vblk_do(&disk0, r, VIRTIO_BLK_T_IN, 16, buf, 4096), 0)) {
    return TG_FAIL;
  }
  settle(20000);
  if (disk0.interrupts != seen) return blk_fail(t, "interrupt despite used_event");
  /* 4. Eight requests, used_event at the eighth: exactly one interrupt. */
  const bool idx = vblk_has(&disk0, VIRTIO_RING_F_EVENT_IDX);
  seen = disk0.interrupts;
  vblk_want_interrupt(&disk0, idx ? 8 : 1);
  for (int i = 0; i < 8; ++i) {
    struct vblk_seg seg = {buf + i * 4096, 4096};
    vblk_prepare(&reqs[i], VIRTIO_BLK_T_IN, (uint64_t)i * 64);
    if (vblk_add(&disk0, &reqs[i], &seg, 1, false) != 0) return blk_fail(t, "ring full");
    vblk_kick(&disk0); /* one kick each: the device may complete them in several batches */
  }
  for (int i = 0; i < 8; ++i) {
    if (!blk_expect(t, "batched read", vblk_wait(&disk0, &reqs[i]) ? reqs[i].status : 0xFF, 0)) {
      return TG_FAIL;
    }
  }
  arrived = wait_interrupt(&disk0, seen);
  settle(20000);
  uint32_t got = disk0.interrupts - seen;
  irq_disable();
  vblk_unroute_irq(&disk0, blk_ioapic(ctx), pin);
  if (!arrived) return blk_fail(t, "no interrupt for the batch");
  if (idx && got != 1) return blk_fail(t, "%u interrupts for a batch with used_event at 8", got);
  printf(
      "testguest: blk-irq: ok InterruptStatus/ACK, interrupt on GSI %u (pin %d, vector 0x%x), "
      "none when suppressed, %u for 8 requests (%s), %u interrupts in all\n",
      disk0.gsi, pin, vector, got, idx ? "EVENT_IDX" : "no EVENT_IDX", disk0.interrupts);
  return TG_PASS;
}
