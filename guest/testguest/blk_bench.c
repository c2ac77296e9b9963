/* blk-bench: the guest side of the full virtio-blk path (guest notify -> ioeventfd -> I/O
 * thread -> engine -> irqfd -> guest). Keeps `qd` requests in flight, refills after every
 * completion batch with one kick, and prints its own count, the time by the TSC (calibrated
 * against PIT channel 2) and how many notifies it made. */
#include "blk_pattern.h"
#include "blk_tests.h"
#include "blk_util.h"
#include "idt.h"
#include "io.h"
#include "libc.h"
#include "platform.h"

/* PIT (8254) channel 2, gated through port 0x61 (PC/AT system control port B). */
#define PIT_HZ 1193182
#define PIT_CMD 0x43
#define PIT_CH2 0x42
#define PORT_B 0x61
#define PORT_B_GATE2 0x01
#define PORT_B_SPEAKER 0x02
#define PORT_B_OUT2 0x20
/* Channel 2, low then high byte, mode 0 (interrupt on terminal count), binary. */
#define PIT_CH2_ONESHOT 0xB0
/* Calibration window: 1/20 s. */
#define CAL_DIVISOR 20

#define SECTOR BLK_PATTERN_SECTOR
#define BENCH_MAX_QD 64

static struct vblk disk;
static struct vblk_req slots[BENCH_MAX_QD];

/* TSC ticks per second measured over a PIT channel 2 one-shot; 0 if OUT2 never rises. */
static uint64_t tsc_hz(void) {
  uint16_t count = PIT_HZ / CAL_DIVISOR;
  outb(PORT_B, (uint8_t)((inb(PORT_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2));
  outb(PIT_CMD, PIT_CH2_ONESHOT);
  outb(PIT_CH2, (uint8_t)count);
  outb(PIT_CH2, (uint8_t)(count >> 8));
  uint64_t t0 = rdtsc();
  struct deadline d = deadline_start();
  while (!(inb(PORT_B) & PORT_B_OUT2)) {
    if (deadline_expired(&d)) return 0;
  }
  return (rdtsc() - t0) * CAL_DIVISOR;
}

/* xorshift64: the random offsets, reproducible from the seed. */
static uint64_t next_random(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

struct bench {
  uint32_t n, bs, qd;
  bool random, write, irq;
  uint64_t blocks; /* bs-sized blocks on the disk */
  uint64_t rng, next_seq;
  uint32_t seed;
  uint8_t* buffers;
  uint32_t issued, completed, errors, timeouts;
};

static void issue(struct bench* b, int slot) {
  uint64_t block = b->random ? next_random(&b->rng) % b->blocks : b->next_seq++ % b->blocks;
  uint64_t sector = block * (b->bs / SECTOR);
  uint8_t* buf = b->buffers + (uint64_t)slot * b->bs;
  if (b->write) blk_fill(buf, b->seed, sector, b->bs / SECTOR);
  struct vblk_seg seg = {buf, b->bs};
  vblk_prepare(&slots[slot], b->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector);
  slots[slot].user = (uint64_t)slot;
  if (vblk_add(&disk, &slots[slot], &seg, 1, false) == 0) b->issued++;
}

/* Waits for at least one completion: the interrupt (bounded), else by polling. */
static void wait_some(struct bench* b) {
  if (b->irq) {
    uint32_t seen = disk.interrupts;
    vblk_want_interrupt(&disk, 1);
    if (vblk_reap(&disk) > 0) return;
    struct deadline d = deadline_start();
    while (disk.interrupts == seen) {
      if (deadline_expired(&d)) {
        b->timeouts++;
        break;
      }
    }
    vblk_reap(&disk);
    return;
  }
  struct deadline d = deadline_start();
  while (vblk_reap(&disk) == 0) {
    if (deadline_expired(&d)) {
      b->timeouts++;
      return;
    }
  }
}

/* Runs the loop: fill the queue, then per completion batch refill with one kick. */
static void run(struct bench* b) {
  for (uint32_t i = 0; i < b->qd && b->issued < b->n; ++i) issue(b, (int)i);
  vblk_kick(&disk);
  while (b->completed < b->issued) {
    wait_some(b);
    if (b->timeouts > 3) return;
    bool refilled = false;
    for (uint32_t i = 0; i < b->qd; ++i) {
      struct vblk_req* r = &slots[i];
      if (!r->done) continue;
      r->done = 0;
      b->completed++;
      if (r->status != VIRTIO_BLK_S_OK) b->errors++;
      if (b->issued < b->n) {
        issue(b, (int)i);
        refilled = true;
      }
    }
    if (refilled) vblk_kick(&disk);
  }
}

static void print_hundredths(const char* name, uint64_t num, uint64_t den) {
  uint64_t v = den ? num * 100 / den : 0;
  printf(" %s=%lu.%02lu", name, (unsigned long)(v / 100), (unsigned long)(v % 100));
}

int blk_bench(struct tg_context* ctx) {
  const char* t = "blk-bench";
  if (blk_open(ctx, 0, &disk) != 0) return TG_FAIL;
  struct bench b;
  memset(&b, 0, sizeof(b));
  char word[16] = "rand";
  cmdline_get(ctx->cmdline, "blk.pattern", word, sizeof(word));
  b.random = strcmp(word, "seq") != 0;
  char op[16] = "read";
  cmdline_get(ctx->cmdline, "blk.op", op, sizeof(op));
  b.write = strcmp(op, "write") == 0;
  b.n = (uint32_t)blk_param(ctx, "n", 1000);
  b.bs = (uint32_t)blk_param(ctx, "bs", 4096);
  b.qd = (uint32_t)blk_param(ctx, "qd", 32);
  b.irq = blk_param(ctx, "irq", 1) != 0;
  b.seed = blk_seed(ctx);
  b.rng = 0x9E3779B97F4A7C15ull ^ b.seed;
  if (b.bs < SECTOR || b.bs % SECTOR || b.bs > (1u << 20))
    return blk_fail(t, "bad blk.bs=%u", b.bs);
  if (b.qd < 1 || b.qd > BENCH_MAX_QD || b.qd * 3 > disk.qsize) {
    return blk_fail(t, "blk.qd=%u out of range (queue %u)", b.qd, disk.qsize);
  }
  b.blocks = disk.capacity / (b.bs / SECTOR);
  if (b.blocks == 0) return blk_fail(t, "disk smaller than one block");
  b.buffers = blk_buffer((uint64_t)b.qd * b.bs);
  if (!b.buffers) return TG_FAIL;
  int pin = -1;
  if (b.irq) {
    pin = blk_irq_pin(ctx, &disk);
    vblk_route_irq(&disk, blk_ioapic(ctx), pin, VEC_VIRTIO_BASE);
    irq_enable();
  }
  uint64_t hz = tsc_hz();
  uint64_t t0 = rdtsc();
  run(&b);
  uint64_t ticks = rdtsc() - t0;
  if (b.irq) {
    irq_disable();
    vblk_unroute_irq(&disk, blk_ioapic(ctx), pin);
  }
  uint64_t us = hz ? ticks * 1000000 / hz : 0;
  bool ok = b.completed == b.n && b.errors == 0 && b.timeouts == 0;
  printf(
      "testguest: blk-bench: %s n=%u bs=%u qd=%u op=%s pattern=%s irq=%u completed=%u "
      "errors=%u timeouts=%u notifies=%u suppressed=%u interrupts=%u tsc=%lu tsc_hz=%lu us=%lu "
      "iops=%lu",
      ok ? "ok" : "FAIL", b.n, b.bs, b.qd, b.write ? "write" : "read", b.random ? "rand" : "seq",
      b.irq ? 1u : 0u, b.completed, b.errors, b.timeouts, disk.notifies, disk.suppressed,
      disk.interrupts, (unsigned long)ticks, (unsigned long)hz, (unsigned long)us,
      (unsigned long)(us ? (uint64_t)b.completed * 1000000 / us : 0));
  print_hundredths("req_per_notify", b.completed, disk.notifies);
  printf("\n");
  return ok ? TG_PASS : TG_FAIL;
}
