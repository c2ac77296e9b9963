#include "common/seccomp/seccomp.h"

#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "common/seccomp/allow_lists.h"

namespace kindling::seccomp {
namespace {

// Syscall numbers the violation line can name (x86_64 stops below 460 in Linux 6.1).
constexpr long kMaxNamedSyscall = 512;

// Filled once, before the first filter goes on, and only read afterwards (by the SIGSYS
// handler, which may not allocate): the one piece of process state this module keeps.
const char* g_syscall_names[kMaxNamedSyscall];
std::once_flag g_setup_once;
int g_setup_errno = 0;

// The calling thread's name for the violation line (static TLS: safe in a signal handler).
thread_local char t_thread_name[16] = "?";

// Appends `s` to buf[*at..cap) and NUL-terminates; truncates.
void append(char* buf, size_t cap, size_t* at, const char* s) {
  while (*s != '\0' && *at + 1 < cap) buf[(*at)++] = *s++;
  buf[*at] = '\0';
}

void append_number(char* buf, size_t cap, size_t* at, long v) {
  char digits[24];
  size_t n = 0;
  unsigned long u = v < 0 ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    digits[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) append(buf, cap, at, "-");
  char out[24];
  for (size_t i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  out[n] = '\0';
  append(buf, cap, at, out);
}

// SIGSYS from a filter: one line, then the whole process ends. Only write and exit_group,
// which every allow-list permits.
void on_sigsys(int, siginfo_t* info, void*) {
  char line[160];
  size_t at = 0;
  const long nr = info->si_syscall;
  append(line, sizeof(line), &at, "kindling: seccomp: thread '");
  append(line, sizeof(line), &at, t_thread_name);
  append(line, sizeof(line), &at, "' made forbidden syscall ");
  append(line, sizeof(line), &at, syscall_name(nr));
  append(line, sizeof(line), &at, " (");
  append_number(line, sizeof(line), &at, nr);
  append(line, sizeof(line), &at, ")\n");
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, at);
  ::_exit(kExitSeccomp);
}

void setup_process() {
  for (long nr = 0; nr < kMaxNamedSyscall; ++nr) {
    // libseccomp returns a malloc'd copy (kept for the life of the process) or nullptr.
    g_syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(nr));
  }
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, nullptr) != 0) g_setup_errno = errno;
}

// Owns a libseccomp filter context.
struct Ctx {
  scmp_filter_ctx ctx;
  ~Ctx() { seccomp_release(ctx); }
};

}  // namespace

const char* to_string(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kMain:
      return "main";
    case ThreadKind::kVcpu:
      return "vcpu";
    case ThreadKind::kBlockIo:
      return "block-io";
    case ThreadKind::kBlockSync:
      return "block-sync";
    case ThreadKind::kConsole:
      return "console";
    case ThreadKind::kApi:
      return "api";
  }
  return "?";
}

const char* to_string(SeccompError e) {
  switch (e) {
    case SeccompError::kBuild:
      return "cannot build the seccomp filter";
    case SeccompError::kLoad:
      return "cannot load the seccomp filter";
    case SeccompError::kSignal:
      return "cannot install the SIGSYS handler";
  }
  return "seccomp error";
}

const char* syscall_name(long nr) {
  if (nr < 0 || nr >= kMaxNamedSyscall || g_syscall_names[nr] == nullptr) return "?";
  return g_syscall_names[nr];
}

Result<void, SeccompErr> install(ThreadKind kind, std::string_view name) {
  std::call_once(g_setup_once, setup_process);
  if (g_setup_errno != 0) return fail(SeccompError::kSignal, g_setup_errno, "SIGSYS");
  const size_t n = std::min(name.size(), sizeof(t_thread_name) - 1);
  std::memcpy(t_thread_name, name.data(), n);
  t_thread_name[n] = '\0';
  (void)prctl(PR_SET_NAME, t_thread_name, 0, 0, 0);

  const std::string what = std::string("thread '") + t_thread_name + "' (" + to_string(kind) + ")";
  Ctx c{seccomp_init(SCMP_ACT_TRAP)};
  if (c.ctx == nullptr) return fail(SeccompError::kBuild, ENOMEM, what);
  std::set<long> unconditional;  // a syscall in several groups is added once
  for (const Rule& r : allow_list(kind)) {
    int rc = 0;
    if (r.requests.empty() && unconditional.insert(r.nr).second) {
      rc = seccomp_rule_add(c.ctx, SCMP_ACT_ALLOW, static_cast<int>(r.nr), 0);
    }
    for (unsigned long req : r.requests) {
      // The request is an unsigned int in the kernel's ioctl(); compare the low 32 bits only.
      rc = seccomp_rule_add(c.ctx, SCMP_ACT_ALLOW, static_cast<int>(r.nr), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, req));
      if (rc != 0) break;
    }
    if (rc != 0) {
      return fail(SeccompError::kBuild, -rc,
                  what + ": syscall " + std::to_string(r.nr) + " (" + syscall_name(r.nr) + ")");
    }
  }
  // A trap must reach the handler even where the thread blocks signals.
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  pthread_sigmask(SIG_UNBLOCK, &sys, nullptr);
  if (int rc = seccomp_load(c.ctx); rc != 0) return fail(SeccompError::kLoad, -rc, what);
  return {};
}

}  // namespace kindling::seccomp
