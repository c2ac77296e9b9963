/* exec_baseline: the floor under kindling's exec-to-first-run figure. A static program that
 * prints CLOCK_REALTIME as soon as main() runs, so tests/bench/run.sh can time the host's own
 * exec of a static binary in the same minutes it times kindling's (on a busy or nested host
 * that alone varies from under 1 ms to several). */
#include <stdio.h>
#include <time.h>

int main(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  printf("main-at %lld.%09ld\n", (long long)now.tv_sec, now.tv_nsec);
  return 0;
}
