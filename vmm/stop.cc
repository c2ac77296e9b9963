#include "vmm/stop.h"

#include <sys/signalfd.h>

#include <csignal>

namespace kindling::vmm {

const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::kGuestReset:
      return "guest reset";
    case StopReason::kGuestPowerOff:
      return "guest power-off";
    case StopReason::kGuestHalt:
      return "guest halted";
    case StopReason::kExitPort:
      return "guest exit port";
    case StopReason::kGuestFault:
      return "guest fault";
    case StopReason::kHostSignal:
      return "host signal";
    case StopReason::kTimeout:
      return "timeout";
    case StopReason::kHostError:
      return "host error";
  }
  return "stop";
}

const char* to_string(SignalError e) {
  switch (e) {
    case SignalError::kMask:
      return "cannot set the signal mask";
    case SignalError::kHandler:
      return "cannot install a signal handler";
    case SignalError::kSignalFd:
      return "cannot create a signalfd";
  }
  return "signal error";
}

void StopControl::request(StopReason reason, int exit_code, std::string detail) {
  {
    std::lock_guard lock(mu_);
    if (requested_.load(std::memory_order_relaxed)) return;
    reason_ = reason;
    exit_code_ = exit_code;
    detail_ = std::move(detail);
    requested_.store(true, std::memory_order_release);
  }
  // A failed wakeup write can only be EBADF/EINVAL here; the vCPU loops still see requested().
  (void)wakeup_.signal();
}

int StopControl::exit_code() const {
  std::lock_guard lock(mu_);
  return exit_code_;
}

StopReason StopControl::reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

std::string StopControl::detail() const {
  std::lock_guard lock(mu_);
  return detail_;
}

namespace {

// The kick only has to interrupt KVM_RUN; the vCPU loop then checks the stop request.
void kick_handler(int) {}

}  // namespace

int vcpu_kick_signal() {
  return SIGRTMIN;
}

void consume_kick_signal() {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, vcpu_kick_signal());
  const timespec none{0, 0};
  while (::sigtimedwait(&kick, nullptr, &none) > 0) {
  }
}

Result<UniqueFd, SignalErr> setup_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = kick_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (::sigaction(vcpu_kick_signal(), &sa, nullptr) < 0) {
    return fail_errno(SignalError::kHandler, "vCPU kick signal");
  }
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  if (::sigaction(SIGPIPE, &ign, nullptr) < 0) return fail_errno(SignalError::kHandler, "SIGPIPE");

  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGINT);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGHUP);
  sigset_t blocked = term;
  sigaddset(&blocked, vcpu_kick_signal());
  if (int e = ::pthread_sigmask(SIG_BLOCK, &blocked, nullptr); e != 0) {
    return fail(SignalError::kMask, e);
  }
  int fd = ::signalfd(-1, &term, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return fail_errno(SignalError::kSignalFd);
  return UniqueFd(fd);
}

}  // namespace kindling::vmm
