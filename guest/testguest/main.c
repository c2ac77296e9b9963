/* The test guest: kindling boots it like an ELF kernel (64-bit entry, RSI = boot_params) and
 * `test=<name>` on the command line picks what it does; the result leaves through the exit
 * port (or, with `then=idle`, it halts until the host stops the VM). With no `test=`, it runs
 * `hello`. */
#include <asm/bootparam.h>

#include "apic.h"
#include "heap.h"
#include "idt.h"
#include "io.h"
#include "libc.h"
#include "platform.h"
#include "tests.h"
#include "uart.h"

void kmain(const struct boot_params* bp);

__attribute__((noreturn)) void platform_exit(uint8_t code) {
  outb(KINDLING_EXIT_PORT, code);
  halt_forever();
}

void kmain(const struct boot_params* bp) {
  static struct tg_context ctx;
  uart_init();
  idt_init();
  pic_disable();
  /* boot_params and the command line are what the VMM wrote (64-bit boot protocol). */
  ctx.cmdline = bp->hdr.cmd_line_ptr ? (const char*)(uintptr_t)bp->hdr.cmd_line_ptr : "";
  ctx.bp = bp;
  mp_read(&ctx.mp);
  heap_init(bp);

  char name[32] = "hello";
  cmdline_get(ctx.cmdline, "test", name, sizeof(name));
  const struct tg_test* t = tg_find_test(name);
  if (!t) {
    printf("testguest: unknown test '%s'; tests:\n", name);
    tg_list_tests();
    platform_exit(TG_UNKNOWN_TEST);
  }
  int rc = t->run(&ctx);
  /* `then=idle`: stay alive after the test so the host can stop (or kill) a VM whose guest
   * has finished its I/O. */
  char then[8];
  if (cmdline_get(ctx.cmdline, "then", then, sizeof(then)) == 0 && strcmp(then, "idle") == 0) {
    printf("testguest: %s finished with %d; idling\n", name, rc);
    halt_forever();
  }
  platform_exit((uint8_t)rc);
}
