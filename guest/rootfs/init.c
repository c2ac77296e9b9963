/* kindling guest /init, PID 1's first program: a few hundred bytes, no libc.
 *
 * It marks the moment user space is reached on kindling's boot-timer port (one byte, 123, as
 * Firecracker's guests write it, to port 0x3F0 through /dev/port), then hands PID 1 to the
 * shell script that does the rest: `/bin/sh /etc/kindling/init.sh` (guest/rootfs/init.sh).
 *
 * Why a program and not the script's first line: on PVM hosts a new process costs seconds of
 * emulated kernel code (exec, page faults), so marking from the script measured the shell's
 * start-up and a `dd` besides; here the mark is two system calls after the kernel runs /init,
 * as Firecracker's own test init does it.
 *
 * Built by guest/stage-rootfs.sh: cc -static -nostdlib -ffreestanding. x86-64 Linux only. */

enum {
  kSysWrite = 1,
  kSysOpen = 2,
  kSysClose = 3,
  kSysPwrite64 = 18,
  kSysExecve = 59,
  kSysExit = 60,
  kOpenWriteOnly = 1,
  kBootTimerPort = 0x3f0,
  kBootTimerByte = 123,
};

static long sys(long n, long a, long b, long c, long d) {
  register long r10 __asm__("r10") = d;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}

static void say(const char* s) {
  long n = 0;
  while (s[n] != 0) ++n;
  sys(kSysWrite, 2, (long)s, n, 0);
}

__attribute__((noreturn, used)) void init_main(long* sp) {
  long argc = sp[0];
  char** envp = (char**)(sp + 1 + argc + 1);
  /* No /dev/port (a kernel without DEVPORT, a tree without the node): no mark, boot on. */
  long fd = sys(kSysOpen, (long)"/dev/port", kOpenWriteOnly, 0, 0);
  if (fd >= 0) {
    const char byte = kBootTimerByte;
    sys(kSysPwrite64, fd, (long)&byte, 1, kBootTimerPort);
    sys(kSysClose, fd, 0, 0, 0);
  }
  static char sh[] = "/bin/sh";
  static char script[] = "/etc/kindling/init.sh";
  char* argv[] = {sh, script, 0};
  sys(kSysExecve, (long)sh, (long)argv, (long)envp, 0);
  say("init: cannot run /bin/sh /etc/kindling/init.sh\n");
  for (;;) sys(kSysExit, 1, 0, 0, 0);
}

/* The kernel enters with the stack holding argc, argv[], NULL, envp[], NULL. */
__asm__(
    ".globl _start\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call init_main\n"
    "  hlt\n");
