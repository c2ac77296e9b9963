// Noticing a guest that has halted for good: every started vCPU halted (KVM_MP_STATE_HALTED)
// with interrupts off, as Linux leaves the machine after "System halted" when it has no way to
// power off, and any other vCPU never started (waiting for an INIT/SIPI that a halted BSP will
// not send). Only an NMI or INIT could wake such a CPU, and nothing sends one, so KVM_RUN never
// returns by itself (see ../shared/docs/HOST.md): the main thread asks periodically, kicking
// each vCPU out of KVM_RUN, and each vCPU thread answers with its own state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace kindling::vmm {

// Rounds of questions from the main thread, answers from the vCPU threads. Thread-safe.
class HaltProbe {
 public:
  explicit HaltProbe(size_t vcpus);

  // Main thread: starts a new round (then kick every vCPU out of KVM_RUN).
  void ask();
  // vCPU thread `index`: true while a round is open that it has not answered.
  bool asked(size_t index) const;
  // vCPU thread `index`: answers the open round with its KVM MP state and RFLAGS (read by the
  // thread that owns the vCPU fd, between two KVM_RUNs).
  void answer(size_t index, uint32_t mp_state, uint64_t rflags);
  // Main thread: true when every vCPU answered the last round, at least one is halted with
  // interrupts off, and the others are halted so too or were never started.
  bool all_halted() const;

 private:
  enum class State : uint8_t { kRunning, kHaltedForGood, kNeverStarted };
  struct Slot {
    std::atomic<uint64_t> answered{0};          // the round last answered
    std::atomic<State> state{State::kRunning};  // that answer
  };
  size_t count_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> round_{0};
};

}  // namespace kindling::vmm
