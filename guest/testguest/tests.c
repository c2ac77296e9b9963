#include "tests.h"

#include <linux/serial_reg.h>

#include "apic.h"
#include "blk_tests.h"
#include "idt.h"
#include "io.h"
#include "libc.h"
#include "platform.h"
#include "ring3.h"
#include "smp.h"
#include "uart.h"

/* PIT (8253/8254): input clock, command port, channel 0 data port. */
#define PIT_HZ 1193182
#define PIT_CMD 0x43
#define PIT_CH0 0x40
/* Channel 0, low then high byte, mode 2 (rate generator), binary. */
#define PIT_CH0_RATE_GEN 0x34
#define PIT_IRQ 0
#define TIMER_HZ 100

static volatile uint32_t irq_count;
static volatile uint64_t trap_rip;

static int hello(struct tg_context* ctx) {
  (void)ctx;
  printf("testguest: hello\n");
  return TG_PASS;
}

static void timer_handler(struct irq_frame* f) {
  (void)f;
  irq_count = irq_count + 1;
  lapic_eoi();
}

/* Routes ISA `irq` (pin from the MP table) to `vector` on this CPU's local APIC. */
static uint8_t route_isa_irq(struct tg_context* ctx, int irq, uint8_t vector) {
  int pin = ctx->mp.isa_irq_pin[irq] >= 0 ? ctx->mp.isa_irq_pin[irq] : irq;
  uint64_t base = ctx->mp.ioapic_addr ? ctx->mp.ioapic_addr : IOAPIC_BASE;
  lapic_enable();
  ioapic_route(base, (uint8_t)pin, vector, lapic_id());
  return (uint8_t)pin;
}

static void unroute(struct tg_context* ctx, uint8_t pin) {
  irq_disable();
  ioapic_mask(ctx->mp.ioapic_addr ? ctx->mp.ioapic_addr : IOAPIC_BASE, pin);
}

/* Waits with interrupts on until irq_count reaches `n`; false on timeout. */
static int wait_irqs(uint32_t n) {
  struct deadline d = deadline_start();
  irq_enable();
  while (irq_count < n) {
    if (deadline_expired(&d)) return 0;
  }
  return 1;
}

/* PIT channel 0 at 100 Hz through the I/O APIC. The first tick is awaited by spinning (bounded);
 * once ticks are known to arrive, a second one is awaited with hlt to prove hlt wakes up. */
static int irq(struct tg_context* ctx) {
  idt_set_handler(VEC_TIMER, timer_handler);
  uint8_t pin = route_isa_irq(ctx, PIT_IRQ, VEC_TIMER);
  uint16_t divisor = PIT_HZ / TIMER_HZ;
  outb(PIT_CMD, PIT_CH0_RATE_GEN);
  outb(PIT_CH0, (uint8_t)divisor);
  outb(PIT_CH0, (uint8_t)(divisor >> 8));
  if (!wait_irqs(1)) {
    unroute(ctx, pin);
    printf("testguest: irq: no timer interrupt (IOAPIC pin %u, vector 0x%x)\n", pin, VEC_TIMER);
    return TG_FAIL;
  }
  uint32_t seen = irq_count;
  __asm__ volatile("sti; hlt" ::: "memory");
  unroute(ctx, pin);
  printf("testguest: irq: timer interrupts arrived (IOAPIC pin %u, vector 0x%x, %u ticks%s)\n", pin,
         VEC_TIMER, irq_count, irq_count > seen ? ", hlt woke up" : "");
  return TG_PASS;
}

static void uart_handler(struct irq_frame* f) {
  (void)f;
  uart_read_iir();
  uart_set_ier(0);
  irq_count = irq_count + 1;
  lapic_eoi();
}

/* The UART's THR-empty interrupt (IER THRI) on ISA IRQ 4. */
static int uartirq(struct tg_context* ctx) {
  idt_set_handler(VEC_UART, uart_handler);
  uint8_t pin = route_isa_irq(ctx, COM1_IRQ, VEC_UART);
  uart_set_ier(UART_IER_THRI);
  int ok = wait_irqs(1);
  uart_set_ier(0);
  unroute(ctx, pin);
  if (!ok) {
    printf("testguest: uartirq: no THR-empty interrupt (IOAPIC pin %u)\n", pin);
    return TG_FAIL;
  }
  printf("testguest: uartirq: THR-empty interrupt arrived (IOAPIC pin %u, vector 0x%x)\n", pin,
         VEC_UART);
  return TG_PASS;
}

static void breakpoint_handler(struct irq_frame* f) {
  trap_rip = f->rip;
}

/* int3 is a trap: the handler sees RIP after the 1-byte instruction and returns there. */
static int int3(struct tg_context* ctx) {
  (void)ctx;
  idt_set_handler(VEC_BP, breakpoint_handler);
  __asm__ volatile("int3" ::: "memory");
  if (trap_rip == 0) {
    printf("testguest: int3: handler did not run\n");
    return TG_FAIL;
  }
  printf("testguest: int3: #BP handled, returned to rip %lx\n", (unsigned long)trap_rip);
  return TG_PASS;
}

static void invalid_opcode_handler(struct irq_frame* f) {
  trap_rip = f->rip;
  f->rip += 2; /* #UD is a fault: skip the 2-byte ud2 */
}

static int ud2(struct tg_context* ctx) {
  (void)ctx;
  idt_set_handler(VEC_UD, invalid_opcode_handler);
  __asm__ volatile("ud2" ::: "memory");
  if (trap_rip == 0) {
    printf("testguest: ud2: handler did not run\n");
    return TG_FAIL;
  }
  printf("testguest: ud2: #UD handled at rip %lx\n", (unsigned long)trap_rip);
  return TG_PASS;
}

/* With an empty IDT, #UD cannot be delivered: #GP, then #DF, then a triple fault. */
static int triplefault(struct tg_context* ctx) {
  (void)ctx;
  printf("testguest: triplefault: loading an empty IDT and executing ud2\n");
  idt_load_empty();
  __asm__ volatile("ud2" ::: "memory");
  printf("testguest: triplefault: still running\n");
  return TG_FAIL;
}

/* Starts every other CPU (count from `cpus=N`, else the MP table) and waits for them. */
static int smp(struct tg_context* ctx) {
  char buf[16];
  int cpus = ctx->mp.cpus > 0 ? ctx->mp.cpus : 1;
  if (cmdline_get(ctx->cmdline, "cpus", buf, sizeof(buf)) == 0 && parse_ulong(buf) > 0) {
    cpus = (int)parse_ulong(buf);
  }
  if (cpus > SMP_MAX_APS + 1) cpus = SMP_MAX_APS + 1;
  uint8_t ids[SMP_MAX_APS + 1];
  for (int i = 0; i < cpus; ++i) ids[i] = i < ctx->mp.cpus ? ctx->mp.cpu_apic_ids[i] : (uint8_t)i;
  int running = 1 + (cpus > 1 ? smp_start_aps(ids, cpus) : 0);
  printf("testguest: %d cpus running\n", running);
  if (running != cpus) {
    printf("testguest: smp: expected %d cpus\n", cpus);
    return TG_FAIL;
  }
  return TG_PASS;
}

static int bootmark(struct tg_context* ctx) {
  (void)ctx;
  outb(KINDLING_BOOT_TIMER_PORT, KINDLING_BOOT_TIMER_VALUE);
  printf("testguest: bootmark written\n");
  return TG_PASS;
}

/* Stays alive until the host stops the VM (signal, --timeout): for host-side tests of a
 * running VM. The hlt with interrupts off never returns under an in-kernel irqchip. */
static int idle(struct tg_context* ctx) {
  (void)ctx;
  printf("testguest: idle: waiting for the host to stop the VM\n");
  halt_forever();
}

static const struct tg_test tests[] = {
    {"hello", "print a line and exit 0", hello},
    {"irq", "PIT timer interrupt through the IOAPIC (and hlt wake-up)", irq},
    {"uartirq", "UART THR-empty interrupt through the IOAPIC", uartirq},
    {"int3", "#BP handler runs and iretq returns", int3},
    {"ud2", "#UD handler runs and skips the instruction", ud2},
    {"triplefault", "empty IDT + ud2: the VM must stop with a triple fault", triplefault},
    {"smp", "start all CPUs with INIT-SIPI-SIPI and count them", smp},
    {"bootmark", "write the boot-timer port", bootmark},
    {"syscall", "a user `syscall` reaches LSTAR in ring 0", ring3_syscall},
    {"syscall-forge", "a user `jmp` to LSTAR gets a #PF, never ring 0", ring3_forged_syscall},
    {"idle", "print a line, then halt until the host stops the VM", idle},
    {"blk-rw", "virtio-blk: write a pattern, FLUSH, read back and compare", blk_rw},
    {"blk-id", "virtio-blk: GET_ID equals blk.serial=", blk_id},
    {"blk-multi", "virtio-blk: multi-descriptor, indirect and 64 KiB requests", blk_multi},
    {"blk-batch", "virtio-blk: blk.batch= requests per notify, each checked", blk_batch},
    {"blk-ro", "virtio-blk: read-only disk offers RO, writes get IOERR", blk_ro},
    {"blk-irq", "virtio-blk: interrupts, InterruptStatus/ACK, EVENT_IDX suppression", blk_irq},
    {"blk-eof", "virtio-blk: requests past the end get IOERR", blk_eof},
    {"blk-two", "virtio-blk: two disks written and read together", blk_two},
    {"blk-bench", "virtio-blk: blk.n= requests of blk.bs= at depth blk.qd=", blk_bench},
};

const struct tg_test* tg_find_test(const char* name) {
  for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); ++i) {
    if (strcmp(tests[i].name, name) == 0) return &tests[i];
  }
  return NULL;
}

void tg_list_tests(void) {
  for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); ++i) {
    printf("  %s: %s\n", tests[i].name, tests[i].what);
  }
}
