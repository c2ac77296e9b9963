#include "vmm/halt_probe.h"

#include <asm/processor-flags.h>
#include <linux/kvm.h>

namespace kindling::vmm {

HaltProbe::HaltProbe(size_t vcpus) : count_(vcpus), slots_(std::make_unique<Slot[]>(vcpus)) {}

void HaltProbe::ask() {
  round_.fetch_add(1, std::memory_order_acq_rel);
}

bool HaltProbe::asked(size_t index) const {
  if (index >= count_) return false;
  return slots_[index].answered.load(std::memory_order_relaxed) !=
         round_.load(std::memory_order_acquire);
}

void HaltProbe::answer(size_t index, uint32_t mp_state, uint64_t rflags) {
  if (index >= count_) return;
  const uint64_t round = round_.load(std::memory_order_acquire);
  State state = State::kRunning;
  if (mp_state == KVM_MP_STATE_HALTED && (rflags & X86_EFLAGS_IF) == 0) {
    state = State::kHaltedForGood;
  } else if (mp_state == KVM_MP_STATE_UNINITIALIZED || mp_state == KVM_MP_STATE_INIT_RECEIVED) {
    state = State::kNeverStarted;
  }
  Slot& s = slots_[index];
  s.state.store(state, std::memory_order_relaxed);
  // Publishes `state` with the round it answers.
  s.answered.store(round, std::memory_order_release);
}

bool HaltProbe::all_halted() const {
  const uint64_t round = round_.load(std::memory_order_acquire);
  if (round == 0) return false;
  bool any_halted = false;
  for (size_t i = 0; i < count_; ++i) {
    if (slots_[i].answered.load(std::memory_order_acquire) != round) return false;
    const State s = slots_[i].state.load(std::memory_order_relaxed);
    if (s == State::kRunning) return false;
    any_halted = any_halted || s == State::kHaltedForGood;
  }
  return any_halted;
}

}  // namespace kindling::vmm
