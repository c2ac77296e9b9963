#include "vmm/halt_probe.h"

#include <asm/processor-flags.h>
#include <linux/kvm.h>

#include "vmm/vcpu.h"

namespace kindling::vmm {

HaltProbe::HaltProbe(size_t vcpus) : count_(vcpus), slots_(std::make_unique<Slot[]>(vcpus)) {}

void HaltProbe::ask() {
  round_.fetch_add(1, std::memory_order_acq_rel);
}

void HaltProbe::answer_if_asked(size_t index, Vcpu& vcpu) {
  if (index >= count_) return;
  const uint64_t round = round_.load(std::memory_order_acquire);
  Slot& s = slots_[index];
  if (s.answered.load(std::memory_order_relaxed) == round) return;
  bool halted = false;
  auto state = vcpu.mp_state();
  if (state && *state == KVM_MP_STATE_HALTED) {
    auto regs = vcpu.get_regs();
    halted = regs && (regs->rflags & X86_EFLAGS_IF) == 0;
  }
  s.halted.store(halted, std::memory_order_relaxed);
  // Publishes `halted` with the round it answers.
  s.answered.store(round, std::memory_order_release);
}

bool HaltProbe::all_halted() const {
  const uint64_t round = round_.load(std::memory_order_acquire);
  if (round == 0) return false;
  for (size_t i = 0; i < count_; ++i) {
    if (slots_[i].answered.load(std::memory_order_acquire) != round) return false;
    if (!slots_[i].halted.load(std::memory_order_relaxed)) return false;
  }
  return true;
}

}  // namespace kindling::vmm
