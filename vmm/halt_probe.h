// Noticing a guest that has halted for good: every vCPU halted (KVM_MP_STATE_HALTED) with
// interrupts off, as Linux leaves the machine after "System halted" when it has no way to power
// off. Only an NMI or INIT could wake such a CPU, and nothing sends one, so KVM_RUN never
// returns by itself (see ../shared/docs/HOST.md): the main thread asks periodically, kicking
// each vCPU out of KVM_RUN, and each vCPU thread answers by looking at its own state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace kindling::vmm {

class Vcpu;

// Rounds of questions from the main thread, answers from the vCPU threads. Thread-safe.
class HaltProbe {
 public:
  explicit HaltProbe(size_t vcpus);

  // Main thread: starts a new round (then kick every vCPU out of KVM_RUN).
  void ask();
  // vCPU thread `index`, after KVM_RUN returned: answers the round if one is open, reading
  // the vCPU's MP state and RFLAGS (it owns the vCPU fd, so the ioctls are safe here).
  void answer_if_asked(size_t index, Vcpu& vcpu);
  // Main thread: true when every vCPU answered the last round with "halted, interrupts off".
  bool all_halted() const;

 private:
  struct Slot {
    std::atomic<uint64_t> answered{0};  // the round last answered
    std::atomic<bool> halted{false};    // that answer
  };
  size_t count_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> round_{0};
};

}  // namespace kindling::vmm
