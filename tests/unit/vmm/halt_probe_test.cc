// The halt probe's rounds: a guest counts as halted for good only when every vCPU answered the
// latest round, at least one is halted with interrupts off and the rest are so too or were
// never started.
#include "vmm/halt_probe.h"

#include <asm/processor-flags.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>

namespace kindling::vmm {
namespace {

constexpr uint64_t kIf = X86_EFLAGS_IF;
constexpr uint64_t kNoIf = X86_EFLAGS_FIXED;

TEST(HaltProbe, NothingBeforeTheFirstRound) {
  HaltProbe p(1);
  EXPECT_FALSE(p.asked(0));
  EXPECT_FALSE(p.all_halted());
}

TEST(HaltProbe, OneVcpuHaltedWithInterruptsOff) {
  HaltProbe p(1);
  p.ask();
  EXPECT_TRUE(p.asked(0));
  EXPECT_FALSE(p.all_halted());  // not answered yet
  p.answer(0, KVM_MP_STATE_HALTED, kNoIf);
  EXPECT_FALSE(p.asked(0));
  EXPECT_TRUE(p.all_halted());
  // A new round needs a new answer.
  p.ask();
  EXPECT_FALSE(p.all_halted());
  p.answer(0, KVM_MP_STATE_HALTED, kNoIf);
  EXPECT_TRUE(p.all_halted());
}

TEST(HaltProbe, IdleOrRunningIsNotHalted) {
  HaltProbe p(1);
  p.ask();
  p.answer(0, KVM_MP_STATE_HALTED, kIf | kNoIf);  // idle `hlt`: an interrupt wakes it
  EXPECT_FALSE(p.all_halted());
  p.ask();
  p.answer(0, KVM_MP_STATE_RUNNABLE, kNoIf);  // between `cli` and `hlt`
  EXPECT_FALSE(p.all_halted());
}

TEST(HaltProbe, EveryVcpuMustAgree) {
  HaltProbe p(3);
  p.ask();
  p.answer(0, KVM_MP_STATE_HALTED, kNoIf);
  p.answer(1, KVM_MP_STATE_HALTED, kNoIf);
  EXPECT_FALSE(p.all_halted());  // vCPU 2 has not answered
  p.answer(2, KVM_MP_STATE_RUNNABLE, kIf);
  EXPECT_FALSE(p.all_halted());  // vCPU 2 runs
  p.ask();
  for (size_t i = 0; i < 3; ++i) p.answer(i, KVM_MP_STATE_HALTED, kNoIf);
  EXPECT_TRUE(p.all_halted());
}

TEST(HaltProbe, NeverStartedApsDoNotKeepAHaltedGuestAlive) {
  HaltProbe p(3);
  p.ask();
  p.answer(0, KVM_MP_STATE_HALTED, kNoIf);
  p.answer(1, KVM_MP_STATE_UNINITIALIZED, kNoIf);
  p.answer(2, KVM_MP_STATE_INIT_RECEIVED, kNoIf);
  EXPECT_TRUE(p.all_halted());
  // ...but APs that never started are not a halted guest by themselves.
  p.ask();
  p.answer(0, KVM_MP_STATE_UNINITIALIZED, kNoIf);
  p.answer(1, KVM_MP_STATE_UNINITIALIZED, kNoIf);
  p.answer(2, KVM_MP_STATE_INIT_RECEIVED, kNoIf);
  EXPECT_FALSE(p.all_halted());
}

TEST(HaltProbe, OutOfRangeIndexIsIgnored) {
  HaltProbe p(1);
  p.ask();
  EXPECT_FALSE(p.asked(5));
  p.answer(5, KVM_MP_STATE_HALTED, kNoIf);
  EXPECT_FALSE(p.all_halted());
}

}  // namespace
}  // namespace kindling::vmm
