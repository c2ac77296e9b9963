// seccomp through the real thread entry points: a vCPU thread's MMIO write reaches a test
// device that makes a forbidden syscall (caught, with the line and exit 148), and the same run
// without filters passes; the kindling binary with and without --no-seccomp.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/bus_device.h"
#include "common/seccomp/seccomp.h"
#include "tests/integration/tiny_kernel.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_image.h"
#include "vmm/machine.h"
#include "vmm/stop.h"

namespace kindling::test {
namespace {

constexpr uint64_t kTrapBase = 0xd0000000;

// mov eax, 0xd0000000; mov dword [rax], 1 (an MMIO exit to the trap device); then 7 to the exit
// port (mov al, 7; out 0xf4, al); then cli; hlt.
const std::vector<unsigned char> kWriteTrapThenExit7 = {0xb8, 0x00, 0x00, 0x00, 0xd0, 0xc7, 0x00,
                                                        0x01, 0x00, 0x00, 0x00, 0xb0, 0x07, 0xe6,
                                                        0xf4, 0xfa, 0xf4, 0xeb, 0xfd};

// An MMIO device whose write opens (and closes) a socket: nothing a vCPU thread may do.
class SocketDevice : public BusDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0); }
  void write(uint64_t, std::span<const uint8_t>) override {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) ::close(fd);
  }
};

// Builds a VM around the trap device and runs it on this process's threads (the main thread
// stays unconfined: it is the test's). Returns the exit status.
int run_trap_vm(bool seccomp) {
  // As main() does before any thread starts: without it, the kick that stops the vCPU thread at
  // the end of the run is an unhandled real-time signal and kills the process.
  auto signals = vmm::setup_stop_signals();
  if (!signals) return 203;
  vmm::VmConfig config;
  config.kernel_path = write_tiny_kernel("seccomp_trap", kWriteTrapThenExit7);
  config.mem_bytes = 64ULL << 20;
  config.timeout_s = 20;
  config.seccomp = seccomp;
  vmm::MachineOptions opts;
  opts.pvm_host = vmm::host_is_pvm();
  opts.console_input_fd = -1;
  auto m = vmm::Machine::create(config, opts);
  if (!m) return 200;
  if (!(*m)->attach_virtio_mmio({kTrapBase, 0x1000, 5}, std::make_shared<SocketDevice>(), "")) {
    return 201;
  }
  if (!(*m)->boot()) return 202;
  return (*m)->run(signals->get()).exit_code;
}

class SeccompVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!kvm_usable(why)) GTEST_SKIP() << why;
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(SeccompVmTest, ForbiddenSyscallOnAVcpuThreadIsCaught) {
  EXPECT_EXIT(std::_Exit(run_trap_vm(true)), ::testing::ExitedWithCode(seccomp::kExitSeccomp),
              "kindling: seccomp: thread 'vcpu0' made forbidden syscall socket \\(41\\)\n");
}

TEST_F(SeccompVmTest, WithoutFiltersTheSameGuestRunsToItsExitPort) {
  EXPECT_EXIT(std::_Exit(run_trap_vm(false)), ::testing::ExitedWithCode(7), "");
}

ChildResult kindling(std::vector<std::string> extra) {
  std::vector<std::string> args = {KINDLING_BIN, "run",        "--kernel",  TESTGUEST_ELF,
                                   "--cmdline",  "test=hello", "--timeout", "20"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_child(args, {});
}

TEST_F(SeccompVmTest, BinaryRunsWithAndWithoutFilters) {
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--no-seccomp"}}) {
    const ChildResult r = kindling(extra);
    ASSERT_TRUE(r.exited) << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("testguest: hello"), std::string::npos) << r.out;
    EXPECT_EQ(r.err.find("seccomp"), std::string::npos) << r.err;
  }
}

// Every engine serves the test guest's reads, writes and flushes with the filters on, through
// activation (on the vCPU thread), the I/O thread and teardown (on the main thread): io_uring
// once registered guest RAM from the vCPU thread and unregistered its file from main, both
// outside their lists.
TEST_F(SeccompVmTest, EveryEngineServesTheGuestUnderTheFilters) {
  for (const char* engine : {"libaio", "io_uring", "sync"}) {
    TempImage image(8 << 20);
    const ChildResult r =
        run_child({KINDLING_BIN, "run", "--kernel", TESTGUEST_ELF, "--cmdline", "test=blk-rw",
                   "--timeout", "60", "--disk", image.path(), "--io-engine", engine},
                  {});
    ASSERT_TRUE(r.exited) << engine << ": " << r.err;
    EXPECT_EQ(r.exit_code, 0) << engine << ": " << r.err;
    EXPECT_NE(r.out.find("blk-rw: ok"), std::string::npos) << engine << ": " << r.out;
    EXPECT_EQ(r.err.find("seccomp"), std::string::npos) << engine << ": " << r.err;
  }
}

}  // namespace
}  // namespace kindling::test
