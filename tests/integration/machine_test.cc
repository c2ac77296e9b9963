// Machine::run's own loop, in this process: the periodic hook (kindling's metrics line) runs on
// run()'s thread while the guest runs, and not after it stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/child_process.h"
#include "vmm/machine.h"
#include "vmm/stop.h"

namespace kindling::test {
namespace {

TEST(MachineRun, PeriodicHookRunsOnTheRunThreadWhileTheGuestRuns) {
  std::string why;
  if (!kvm_usable(why)) GTEST_SKIP() << why;
  // As main() does before any thread starts: the kick that stops the vCPU thread is a signal.
  auto signals = vmm::setup_stop_signals();
  ASSERT_TRUE(signals) << signals.error().message();
  vmm::VmConfig config;
  config.kernel_path = TESTGUEST_ELF;
  config.cmdline = "test=idle";  // prints a line, then halts until the host stops the VM
  config.mem_bytes = 32ULL << 20;
  config.timeout_s = 1.5;
  config.seccomp = false;  // this is the test's own process
  vmm::MachineOptions opts;
  opts.pvm_host = vmm::host_is_pvm();
  opts.console_input_fd = -1;
  auto m = vmm::Machine::create(config, opts);
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_TRUE((*m)->boot());
  const std::thread::id runner = std::this_thread::get_id();
  int calls = 0;
  bool elsewhere = false;
  (*m)->set_periodic(std::chrono::milliseconds(100), [&] {
    ++calls;
    elsewhere |= std::this_thread::get_id() != runner;
  });
  const vmm::RunResult r = (*m)->run(signals->get());
  EXPECT_EQ(r.reason, vmm::StopReason::kTimeout) << r.detail;
  const int after_stop = calls;
  // 1.5 s at one call per 100 ms: 15 on an idle host; a loaded one may run the loop late.
  EXPECT_GE(calls, 5);
  EXPECT_LE(calls, 15);
  EXPECT_FALSE(elsewhere) << "the hook must run on run()'s thread";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(calls, after_stop) << "no call after run() returned";
}

}  // namespace
}  // namespace kindling::test
