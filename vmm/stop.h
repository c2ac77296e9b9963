// Stopping a VM: who asked first, with which exit status, and the host signals that ask.
#pragma once

#include <signal.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>

#include "common/event_fd.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace kindling::vmm {

// Why the VM stopped.
enum class StopReason {
  kGuestReset,     // i8042 reset, ACPI reset register or a KVM system event (exit 0)
  kGuestPowerOff,  // ACPI S5 through the FADT's sleep control register (exit 0)
  kGuestHalt,      // every vCPU halted with interrupts off, with --exit-on-halt (exit 0)
  kExitPort,       // the guest wrote its status to port 0xF4
  kGuestFault,     // triple fault, emulation failure, entry failure (exit 1)
  kHostSignal,     // SIGINT (130), SIGTERM (143), SIGHUP (129)
  kTimeout,        // --timeout expired (124)
  kHostError,      // kindling itself failed (exit 1)
};
// A short description ("guest reset", "timeout").
const char* to_string(StopReason r);

// Exit statuses of `kindling run` (see README).
inline constexpr int kExitGuestFault = 1;
inline constexpr int kExitTimeout = 124;

// The stop request shared by vCPU threads, devices and the main thread. The first request wins;
// later ones are ignored. Thread-safe.
class StopControl {
 public:
  // `wakeup` is signalled on the first request, for the main thread's poll().
  explicit StopControl(EventFd wakeup) : wakeup_(std::move(wakeup)) {}

  // Records the request (if it is the first) and wakes the main thread.
  void request(StopReason reason, int exit_code, std::string detail = {});
  // True once any request was made (cheap: vCPU loops check it after every exit).
  bool requested() const { return requested_.load(std::memory_order_acquire); }
  // The winning request's exit status, reason and detail (valid once requested()).
  int exit_code() const;
  StopReason reason() const;
  std::string detail() const;
  // Becomes readable on the first request.
  const EventFd& wakeup() const { return wakeup_; }

 private:
  EventFd wakeup_;
  std::atomic<bool> requested_{false};
  mutable std::mutex mu_;
  int exit_code_ = 0;
  StopReason reason_ = StopReason::kHostError;
  std::string detail_;
};

// Signal handling errors.
enum class SignalError { kMask, kHandler, kSignalFd };
const char* to_string(SignalError e);
using SignalErr = Error<SignalError>;

// The real-time signal that kicks a vCPU thread out of KVM_RUN; its handler does nothing.
int vcpu_kick_signal();

// Takes a pending kick off the calling thread. A kick that interrupts KVM_RUN is not delivered:
// KVM restores the blocking mask on the way out, so it stays pending and would make every
// later KVM_RUN return EINTR at once. The vCPU loop calls this after each interrupted run.
void consume_kick_signal();

// Must run in main() before any thread starts: blocks SIGINT, SIGTERM, SIGHUP and the kick
// signal (threads inherit the mask; the kick is unblocked only inside KVM_RUN through
// KVM_SET_SIGNAL_MASK), installs the kick handler, ignores SIGPIPE, and returns a signalfd
// that reads the blocked termination signals.
Result<UniqueFd, SignalErr> setup_stop_signals();

// The exit status for a host signal (128 + signo).
inline int exit_code_for_signal(int signo) {
  return 128 + signo;
}

}  // namespace kindling::vmm
