#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tests/unit/vmm/fake_cpu.h"
#include "vmm/exit_loop.h"

namespace kindling::vmm {
namespace {

// The gate in front of the emulation assist: PVM hosts only.
class EmulationFailureGateTest : public LongModeCpuTest {
 protected:
  void SetUp() override {
    LongModeCpuTest::SetUp();
    cpu_.regs.rflags |= X86_EFLAGS_AC;
  }
  const std::vector<uint8_t> clac_ = {0x0f, 0x01, 0xca};
};

TEST_F(EmulationFailureGateTest, WithoutPvmTheFailureIsReportedAndTheVcpuUntouched) {
  const AssistOutcome o = on_emulation_failure(cpu_, *mem_, clac_, false);
  EXPECT_FALSE(o.handled);
  EXPECT_NE(o.error.find("emulation failure at RIP 0x10000, bytes 0f 01 ca"), std::string::npos)
      << o.error;
  EXPECT_NE(o.error.find("only on PVM hosts"), std::string::npos) << o.error;
  EXPECT_EQ(cpu_.sets(), 0);
  EXPECT_EQ(cpu_.msr_reads, 0);
  EXPECT_FALSE(cpu_.injected);
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);
}

TEST_F(EmulationFailureGateTest, WithoutPvmEvenInt3IsNotCompleted) {
  const std::vector<uint8_t> int3 = {0xcc};
  EXPECT_FALSE(on_emulation_failure(cpu_, *mem_, int3, false).handled);
  EXPECT_FALSE(cpu_.injected);
}

TEST_F(EmulationFailureGateTest, OnPvmTheAssistRuns) {
  const AssistOutcome o = on_emulation_failure(cpu_, *mem_, clac_, true);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kClac);
  EXPECT_EQ(cpu_.regs.rip, 0x10003u);
  EXPECT_EQ(cpu_.regs.rflags, uint64_t{X86_EFLAGS_FIXED});
}

}  // namespace
}  // namespace kindling::vmm
