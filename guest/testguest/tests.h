/* The test table: `test=<name>` on the command line picks one; its return value is the exit
 * status kindling reports. Add a test by writing a function and one table row in tests.c. */
#pragma once

#include <stddef.h>

#include <asm/bootparam.h>

#include "mp.h"

/* What every test can use. */
struct tg_context {
  const char* cmdline;          /* the kernel command line from boot_params */
  struct mp_info mp;            /* the MP table kindling wrote */
  const struct boot_params* bp; /* the zero page (e820 map) */
};

/* One test: its name on the command line, a line of description, and the code. */
struct tg_test {
  const char* name;
  const char* what;
  int (*run)(struct tg_context* ctx);
};

/* The test called `name`, or NULL. */
const struct tg_test* tg_find_test(const char* name);
/* Prints the names of all tests. */
void tg_list_tests(void);
