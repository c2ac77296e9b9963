// End-to-end: the kindling binary boots the test guest (and a few tiny hand-made kernels) on
// the real /dev/kvm and is judged by its exit status and output.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/integration/tiny_kernel.h"
#include "tests/support/child_process.h"
#include "vmm/kvm.h"

namespace kindling::test {
namespace {

// End of every tiny kernel: cli; hlt; jmp back to hlt.
const std::vector<unsigned char> kHaltForever = {0xfa, 0xf4, 0xeb, 0xfd};

std::vector<unsigned char> with_halt(std::vector<unsigned char> code) {
  code.insert(code.end(), kHaltForever.begin(), kHaltForever.end());
  return code;
}

class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!kvm_usable(why)) GTEST_SKIP() << why;
  }
  static ChildResult run(std::vector<std::string> args, const ChildOptions& opts = {}) {
    args.insert(args.begin(), {KINDLING_BIN, "run"});
    return run_child(args, opts);
  }
  static ChildResult guest(const std::string& test, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--kernel",  TESTGUEST_ELF, "--cmdline",   "test=" + test,
                                     "--timeout", "20",          "--log-level", "info"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  }
};

TEST_F(VmTest, HelloPrintsAndExitsZero) {
  const ChildResult r = guest("hello");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("testguest: hello"), std::string::npos) << r.out;
  // Boot statistics and exit counts are logged at info level.
  EXPECT_NE(r.err.find("VM built in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("exits: pio="), std::string::npos) << r.err;
}

TEST_F(VmTest, TimerInterruptArrivesThroughIoapic) {
  const ChildResult r = guest("irq");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("timer interrupts arrived"), std::string::npos) << r.out;
}

TEST_F(VmTest, SerialInterruptArrivesThroughIrqfd) {
  const ChildResult r = guest("uartirq");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("THR-empty interrupt arrived"), std::string::npos) << r.out;
}

TEST_F(VmTest, Int3ReachesTheGuestHandler) {
  const ChildResult r = guest("int3");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("#BP handled"), std::string::npos) << r.out;
  // On PVM hosts KVM's emulator cannot run int3: the assist must have done it.
  if (vmm::host_is_pvm()) {
    EXPECT_NE(r.err.find("assist[int3]=1"), std::string::npos) << r.err;
  }
}

TEST_F(VmTest, Ud2ReachesTheGuestHandler) {
  const ChildResult r = guest("ud2");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("#UD handled"), std::string::npos) << r.out;
}

TEST_F(VmTest, TripleFaultExitsOneWithAnErrorLine) {
  const ChildResult r = guest("triplefault");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("kindling: error: guest stopped: vCPU 0: triple fault"), std::string::npos)
      << r.err;
}

TEST_F(VmTest, TwoVcpusBothRun) {
  const ChildResult r = guest("smp", {"--cpus", "2"});
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("2 cpus running"), std::string::npos) << r.out;
}

TEST_F(VmTest, BootTimerLogsTheTime) {
  const ChildResult r = guest("bootmark");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("guest boot-timer: user space reached after"), std::string::npos) << r.err;
}

TEST_F(VmTest, UserSyscallReachesLstarInRingZero) {
  const ChildResult r = guest("syscall");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("syscall: at LSTAR in ring 0"), std::string::npos) << r.out;
  // On PVM hosts the `syscall` stays in ring 3 and the SYSCALL repair completes it.
  if (vmm::host_is_pvm()) {
    EXPECT_NE(r.err.find("assist[syscall-repair]=1"), std::string::npos) << r.err;
  }
}

TEST_F(VmTest, UserJumpToLstarGetsAnOrdinaryPageFault) {
  // Ring 3 sets RCX/R11 as it likes and jumps to LSTAR: the guest kernel must see the #PF of a
  // user fetch from a supervisor page, never run LSTAR's code in ring 0.
  const ChildResult r = guest("syscall-forge");
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ordinary page fault at LSTAR from ring 3"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("reached ring 0"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("assist[syscall-repair]"), std::string::npos) << r.err;
}

TEST_F(VmTest, ClacAndStacAreCompleted) {
  // stac; pushfq; pop rbx; shr rbx,18; and ebx,1; clac; pushfq; pop rax; shr rax,18;
  // and eax,1; lea eax,[rax+rbx*2]; out 0xf4,al  -> exit status 2 (AC set, then clear)
  const std::string kernel = write_tiny_kernel(
      "clac", with_halt({0x0f, 0x01, 0xcb, 0x9c, 0x5b, 0x48, 0xc1, 0xeb, 0x12, 0x83,
                         0xe3, 0x01, 0x0f, 0x01, 0xca, 0x9c, 0x58, 0x48, 0xc1, 0xe8,
                         0x12, 0x83, 0xe0, 0x01, 0x8d, 0x04, 0x58, 0xe6, 0xf4}));
  const ChildResult r = run({"--kernel", kernel, "--timeout", "20", "--log-level", "info"});
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  if (vmm::host_is_pvm()) {
    EXPECT_NE(r.err.find("assist[clac]=1"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("assist[stac]=1"), std::string::npos) << r.err;
  }
}

TEST_F(VmTest, PopcntGivesTheRightCount) {
  // mov rdi, 0xff00ff; popcnt rax, rdi; out 0xf4, al  -> exit status 16
  const std::string kernel =
      write_tiny_kernel("popcnt", with_halt({0x48, 0xc7, 0xc7, 0xff, 0x00, 0xff, 0x00, 0xf3, 0x48,
                                             0x0f, 0xb8, 0xc7, 0xe6, 0xf4}));
  const ChildResult r = run({"--kernel", kernel, "--timeout", "20", "--log-level", "info"});
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 16) << r.err;
  if (vmm::host_is_pvm()) {
    EXPECT_NE(r.err.find("assist[popcnt]=1"), std::string::npos) << r.err;
  }
}

TEST_F(VmTest, UnhandledEmulationFailureStopsWithRipAndBytes) {
  // xsave is what a Linux kernel without `noxsave` runs; PVM's emulator fails on it and the
  // assist does not handle it. On hardware-virtualization hosts it simply runs.
  if (!vmm::host_is_pvm()) GTEST_SKIP() << "only PVM hosts fail to emulate xsave";
  // mov rax,cr4; or rax,OSXSAVE; mov cr4,rax; mov eax,1; xor edx,edx; mov edi,0x200000;
  // xsave [rdi]  (at 0x100018)
  const std::string kernel = write_tiny_kernel(
      "xsave",
      with_halt({0x0f, 0x20, 0xe0, 0x48, 0x0d, 0x00, 0x00, 0x04, 0x00, 0x0f, 0x22, 0xe0, 0xb8, 0x01,
                 0x00, 0x00, 0x00, 0x31, 0xd2, 0xbf, 0x00, 0x00, 0x20, 0x00, 0x0f, 0xae, 0x27}));
  const ChildResult r = run({"--kernel", kernel, "--timeout", "20"});
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("kindling: error: guest stopped: vCPU 0: emulation failure at RIP "
                       "0x100018, bytes 0f ae 27"),
            std::string::npos)
      << r.err;
}

TEST_F(VmTest, MissingKernelIsOneErrorLineAndExitTwo) {
  const ChildResult r = run({"--kernel", "/nonexistent/vmlinux", "--timeout", "20"});
  ASSERT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("kindling: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/vmlinux"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(VmTest, SigtermStopsARunningGuestPromptly) {
  const std::string kernel = write_tiny_kernel("halt", kHaltForever);
  ChildOptions opts;
  opts.send_signal = SIGTERM;
  opts.signal_after = std::chrono::milliseconds(500);
  const ChildResult r = run({"--kernel", kernel, "--timeout", "20", "--cpus", "2"}, opts);
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 143) << r.err;
  EXPECT_LT(r.signal_to_exit, 2.0);
}

TEST_F(VmTest, SigintExits130) {
  const std::string kernel = write_tiny_kernel("halt", kHaltForever);
  ChildOptions opts;
  opts.send_signal = SIGINT;
  const ChildResult r = run({"--kernel", kernel, "--timeout", "20"}, opts);
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_LT(r.signal_to_exit, 2.0);
}

TEST_F(VmTest, TimeoutExits124) {
  const std::string kernel = write_tiny_kernel("spin", {0xeb, 0xfe});  // jmp $
  const ChildResult r = run({"--kernel", kernel, "--timeout", "1"});
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 124) << r.err;
  EXPECT_LT(r.seconds, 5.0);
}

}  // namespace
}  // namespace kindling::test
