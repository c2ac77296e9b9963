// The allow-lists, one table per concern, composed per thread kind at the bottom. Found with
// strace on real boots (both engines, --console-log, --timeout, --exit-on-halt, a guest
// poweroff and reset, SIGINT/SIGTERM) and kept to what the code calls; see seccomp.h.
#include "common/seccomp/allow_lists.h"

#include <asm/ioctls.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <sys/syscall.h>

#include <span>

namespace kindling::seccomp {
namespace {

// KVM_GET_MSRS as the kernel numbers it: its struct ends in a flexible array that C++ sizes
// differently (see vmm/kvm_abi.h, whose kGetMsrs a vmm unit test compares with this one).
struct KvmMsrsHeader {
  __u32 nmsrs;
  __u32 pad;
};
constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmMsrsHeader);

// Every thread: ending (exit for a thread, exit_group for the process and the SIGSYS handler),
// locks and condition variables, signal returns, heap (malloc arenas grow with mprotect and
// give memory back with madvise), clocks (the vDSO falls back to the syscall on some
// clocksources), and write: log lines go to stderr from any thread.
const Rule kEveryThread[] = {
    {SYS_exit, {}},
    {SYS_exit_group, {}},
    {SYS_futex, {}},
    {SYS_rt_sigreturn, {}},
    {SYS_restart_syscall, {}},
    {SYS_rt_sigprocmask, {}},
    {SYS_mmap, {}},
    {SYS_munmap, {}},
    {SYS_mprotect, {}},
    {SYS_madvise, {}},
    {SYS_brk, {}},
    {SYS_mremap, {}},
    {SYS_clock_gettime, {}},
    {SYS_gettimeofday, {}},
    {SYS_write, {}},
    {SYS_sched_yield, {}},
    {SYS_getpid, {}},
    {SYS_gettid, {}},
};

// vCPU: the ioctls of the exit loop on the vCPU fd (run, register access for the PVM emulation
// assist and the halt probe), and what devices do on an exit: the serial line writes the
// console (stdout or --console-log) and signals eventfds (irqfds, the stop wakeup).
const Rule kVcpuRun[] = {
    {SYS_ioctl,
     {KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_VCPU_EVENTS,
      KVM_SET_VCPU_EVENTS, kKvmGetMsrs, KVM_GET_MP_STATE}},
    {SYS_read, {}},             // eventfd consume
    {SYS_rt_sigtimedwait, {}},  // a kick that arrived outside KVM_RUN is taken (vmm/stop.cc)
    {SYS_clock_nanosleep, {}},  // an AP waiting for its SIPI retries KVM_RUN after a pause
    {SYS_nanosleep, {}},
    {SYS_writev, {}},
};
// A virtio-mmio register write on a vCPU thread activates or resets a device: the device
// builds its epoll set and stop eventfd, hands the work to its parked I/O thread, and on reset
// closes them again.
const Rule kDeviceActivation[] = {
    {SYS_eventfd2, {}},
    {SYS_epoll_create1, {}},
    {SYS_epoll_ctl, {}},
    {SYS_close, {}},
};

// A disk's I/O thread: epoll on its eventfds and the rate limiter's timerfd, and the engines:
// libaio, sync, io_uring (whose ring is created with the engine, on the main thread).
const Rule kBlockIo[] = {
    {SYS_epoll_wait, {}},
    {SYS_epoll_pwait, {}},
    {SYS_read, {}},
    {SYS_poll, {}},
    {SYS_ppoll, {}},
    {SYS_io_submit, {}},
    {SYS_io_getevents, {}},
    {SYS_io_pgetevents, {}},
    {SYS_preadv, {}},
    {SYS_pwritev, {}},
    {SYS_pread64, {}},
    {SYS_pwrite64, {}},
    {SYS_fdatasync, {}},
    {SYS_fsync, {}},
    {SYS_io_uring_enter, {}},
    {SYS_io_uring_register, {}},
    {SYS_fallocate, {}},  // DISCARD and WRITE_ZEROES (libaio, sync and io_uring's fallback)
    {SYS_epoll_ctl, {}},  // PATCH /drives: the new engine's notifier replaces the old one
    // The rate limiter arms its timerfd (made with the device, on the main thread).
    {SYS_timerfd_settime, {}},
};
// The libaio engine's fdatasync helper.
const Rule kBlockSync[] = {
    {SYS_fdatasync, {}},
};

// Console input: poll stdin and the stop eventfd, read them.
const Rule kConsole[] = {
    {SYS_poll, {}},
    {SYS_ppoll, {}},
    {SYS_read, {}},
};

// The main thread once the VM runs: wait for a stop (poll on the stop eventfd and the
// signalfd, timeouts), kick vCPUs (tgkill), sleep while they stop, join; then tear down:
// drain and sync the disks, unregister ioeventfds, unmap and close, restore the terminal.
const Rule kMainLoop[] = {
    {SYS_poll, {}},
    {SYS_ppoll, {}},
    {SYS_read, {}},
    {SYS_tgkill, {}},
    {SYS_clock_nanosleep, {}},
    {SYS_nanosleep, {}},
    {SYS_close, {}},
    {SYS_fdatasync, {}},
    {SYS_fsync, {}},
    {SYS_io_destroy, {}},
    {SYS_io_getevents, {}},
    {SYS_io_submit, {}},
    {SYS_io_uring_enter, {}},     // the io_uring engine drains at teardown
    {SYS_io_uring_register, {}},  // and unregisters the image (its lock goes with it)
    {SYS_unlink, {}},             // the API socket file goes at exit
    {SYS_epoll_ctl, {}},
    {SYS_flock, {}},
    {SYS_writev, {}},
    {SYS_fstat, {}},
    {SYS_newfstatat, {}},
    {SYS_lseek, {}},
    {SYS_ioctl, {KVM_IOEVENTFD, KVM_IRQFD, TCGETS, TCSETS, TCSETSW, TCSETSF}},
};

// The API server (vmm/api/api_server.h, a Unix socket): accept and serve connections; a drive hot
// swap opens, locks, probes and syncs an image and builds a new engine for it.
const Rule kApiServer[] = {
    {SYS_dup2, {}},           {SYS_dup3, {}},  // PUT /logger
    {SYS_accept4, {}},        {SYS_accept, {}},
    {SYS_read, {}},           {SYS_recvfrom, {}},
    {SYS_recvmsg, {}},        {SYS_sendto, {}},
    {SYS_sendmsg, {}},        {SYS_writev, {}},
    {SYS_poll, {}},           {SYS_ppoll, {}},
    {SYS_select, {}},         {SYS_pselect6, {}},
    {SYS_close, {}},          {SYS_shutdown, {}},
    {SYS_setsockopt, {}},     {SYS_getsockopt, {}},
    {SYS_getsockname, {}},    {SYS_getpeername, {}},
    {SYS_fcntl, {}},          {SYS_openat, {}},
    {SYS_fstat, {}},          {SYS_newfstatat, {}},
    {SYS_statx, {}},          {SYS_lseek, {}},
    {SYS_flock, {}},          {SYS_fdatasync, {}},
    {SYS_eventfd2, {}},       {SYS_epoll_ctl, {}},
    {SYS_io_setup, {}},       {SYS_io_destroy, {}},
    {SYS_io_submit, {}},      {SYS_io_getevents, {}},
    {SYS_io_uring_setup, {}}, {SYS_io_uring_register, {}},
    {SYS_pread64, {}},        {SYS_ioctl, {BLKGETSIZE64, BLKSSZGET, BLKPBSZGET, FIONBIO}},
};

// The sanitizer runtimes (ASan, UBSan, LSan) when a report is printed or at exit: reading
// /proc/self/maps and the executable, the leak check's stop-the-world (a ptrace helper thread),
// spawning the symbolizer, and their own signal handling.
const Rule kSanitizerRuntime[] = {
    {SYS_openat, {}},
    {SYS_open, {}},
    {SYS_read, {}},
    {SYS_readlink, {}},
    {SYS_readlinkat, {}},
    {SYS_close, {}},
    {SYS_fstat, {}},
    {SYS_newfstatat, {}},
    {SYS_lseek, {}},
    {SYS_getdents64, {}},
    {SYS_clone, {}},
    {SYS_clone3, {}},
    {SYS_ptrace, {}},
    {SYS_wait4, {}},
    {SYS_prctl, {}},
    {SYS_sigaltstack, {}},
    {SYS_rt_sigaction, {}},
    {SYS_kill, {}},
    {SYS_tgkill, {}},
    {SYS_pipe, {}},
    {SYS_pipe2, {}},
    {SYS_dup2, {}},
    {SYS_dup3, {}},
    {SYS_execve, {}},
    {SYS_getrlimit, {}},
    {SYS_setrlimit, {}},
    {SYS_prlimit64, {}},
    {SYS_uname, {}},
    {SYS_sched_getaffinity, {}},
    {SYS_nanosleep, {}},
    {SYS_clock_nanosleep, {}},
    {SYS_getppid, {}},
    {SYS_writev, {}},
    {SYS_munmap, {}},
    {SYS_mmap, {}},
    {SYS_poll, {}},
};

void add(std::vector<Rule>& out, std::span<const Rule> g) {
  out.insert(out.end(), g.begin(), g.end());
}

}  // namespace

bool sanitizer_build() {
#if defined(KINDLING_SANITIZER_RUNTIME) || defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

std::vector<Rule> allow_list(ThreadKind kind) {
  std::vector<Rule> rules;
  add(rules, kEveryThread);
  switch (kind) {
    case ThreadKind::kMain:
      add(rules, kMainLoop);
      break;
    case ThreadKind::kVcpu:
      add(rules, kVcpuRun);
      add(rules, kDeviceActivation);
      break;
    case ThreadKind::kBlockIo:
      add(rules, kBlockIo);
      break;
    case ThreadKind::kBlockSync:
      add(rules, kBlockSync);
      break;
    case ThreadKind::kConsole:
      add(rules, kConsole);
      break;
    case ThreadKind::kApi:
      add(rules, kApiServer);
      add(rules, kDeviceActivation);
      break;
  }
  if (sanitizer_build()) add(rules, kSanitizerRuntime);
  return rules;
}

}  // namespace kindling::seccomp
