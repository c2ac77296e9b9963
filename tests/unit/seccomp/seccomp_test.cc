// The allow-lists through install() and Worker: in death-test children (the filters cannot be
// taken off), each kind's real filter on a thread, a forbidden syscall caught with the line,
// and the allowed paths still working.
#include "common/seccomp/seccomp.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/seccomp/allow_lists.h"
#include "common/seccomp/worker.h"
#include "vmm/kvm_abi.h"

namespace kindling::seccomp {
namespace {

constexpr ThreadKind kAllKinds[] = {ThreadKind::kMain,    ThreadKind::kVcpu,
                                    ThreadKind::kBlockIo, ThreadKind::kBlockSync,
                                    ThreadKind::kConsole, ThreadKind::kApi};

// Runs `body` on a new thread confined to `kind` as `name`, then exits the process with 0 (the
// filter stays on the thread only; exit from the main thread, which has none).
template <typename F>
void confined_thread(ThreadKind kind, const char* name, F body) {
  std::thread t([&] {
    if (auto ok = install(kind, name); !ok) {
      std::fprintf(stderr, "install: %s\n", ok.error().message().c_str());
      std::_Exit(3);
    }
    body();
  });
  t.join();
  std::_Exit(0);
}

// What every thread does: log lines, locks, heap, clocks, a short sleep on a condition.
void everyday_work() {
  std::mutex mu;
  { std::lock_guard lock(mu); }
  std::vector<char> big(8 << 20, 1);  // past the mmap threshold
  std::string s(1000, 'x');
  (void)!::write(STDERR_FILENO, "", 0);
  (void)std::chrono::steady_clock::now();
  if (big[100] + s[10] == 0) std::abort();
}

class SeccompTest : public ::testing::TestWithParam<ThreadKind> {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_P(SeccompTest, ForbiddenSyscallIsCaughtWithTheLine) {
  const ThreadKind kind = GetParam();
  EXPECT_EXIT(confined_thread(kind, "probe", [] { (void)::socket(AF_INET, SOCK_STREAM, 0); }),
              ::testing::ExitedWithCode(kExitSeccomp),
              "^kindling: seccomp: thread 'probe' made forbidden syscall socket \\(41\\)\n$");
}

TEST_P(SeccompTest, EverydayWorkIsAllowed) {
  EXPECT_EXIT(confined_thread(GetParam(), "probe", everyday_work), ::testing::ExitedWithCode(0),
              "");
}

INSTANTIATE_TEST_SUITE_P(Kinds, SeccompTest, ::testing::ValuesIn(kAllKinds), [](const auto& info) {
  std::string n = to_string(info.param);
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

TEST(Seccomp, VcpuIoctlsAreFilteredByRequest) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // KVM_RUN passes the filter (and fails on a bad fd); a terminal ioctl does not.
  EXPECT_EXIT(confined_thread(ThreadKind::kVcpu, "vcpu0",
                              [] {
                                if (::ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF) std::_Exit(4);
                                if (::ioctl(-1, KVM_GET_REGS, nullptr) != -1) std::_Exit(4);
                              }),
              ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(confined_thread(ThreadKind::kVcpu, "vcpu0",
                              [] {
                                termios t{};
                                (void)::ioctl(STDIN_FILENO, TCGETS, &t);
                              }),
              ::testing::ExitedWithCode(kExitSeccomp),
              "thread 'vcpu0' made forbidden syscall ioctl \\(16\\)");
  // A vCPU thread makes no socket (nor opens files, but the sanitizer build's runtime needs
  // openat on every thread, so the lists allow it there).
  EXPECT_EXIT(confined_thread(ThreadKind::kVcpu, "vcpu1",
                              [] { (void)::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }),
              ::testing::ExitedWithCode(kExitSeccomp),
              "thread 'vcpu1' made forbidden syscall socket \\(41\\)");
}

TEST(Seccomp, BlockIoThreadHasTheIoUringCallsButCannotSetUpARing) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(confined_thread(ThreadKind::kBlockIo, "blk-vda",
                              [] {
                                // Allowed (and failing on a bad fd): the engine's data path.
                                if (::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0) != -1) {
                                  std::_Exit(4);
                                }
                                if (::syscall(SYS_io_uring_register, -1, 0, nullptr, 0) != -1) {
                                  std::_Exit(4);
                                }
                              }),
              ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(confined_thread(ThreadKind::kBlockIo, "blk-vda",
                              [] { (void)::syscall(SYS_io_uring_setup, 1, nullptr); }),
              ::testing::ExitedWithCode(kExitSeccomp),
              "thread 'blk-vda' made forbidden syscall io_uring_setup \\(425\\)");
}

TEST(Seccomp, LongNamesAreCutToFifteenCharacters) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(confined_thread(ThreadKind::kConsole, "a-very-long-thread-name",
                              [] { (void)::socket(AF_UNIX, SOCK_STREAM, 0); }),
              ::testing::ExitedWithCode(kExitSeccomp), "thread 'a-very-long-thr' made");
}

TEST(Seccomp, WorkerRunsJobsUnderItsFilter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The worker is started (and confined) by an unconfined thread; a job handed to it later from
  // anywhere runs under the worker's filter only.
  EXPECT_EXIT(
      {
        auto w = Worker::start(ThreadKind::kBlockIo, "blk-worker", true);
        if (!w) std::_Exit(3);
        int fds[2];
        if (::pipe(fds) != 0) std::_Exit(3);
        bool ok = false;
        (*w)->run([&] { ok = ::write(fds[1], "x", 1) == 1; });
        (*w)->wait();
        if (!ok || (*w)->has_job()) std::_Exit(4);
        (*w)->run([] { (void)::socket(AF_INET, SOCK_DGRAM, 0); });
        (*w)->wait();
        std::_Exit(5);
      },
      ::testing::ExitedWithCode(kExitSeccomp),
      "^kindling: seccomp: thread 'blk-worker' made forbidden syscall socket \\(41\\)\n$");
}

// launch() returns before the thread is confined (the disks' I/O threads build their filters
// while the VM is built); a job handed to it at once still runs only under the filter, and
// confined() then reports success.
TEST(Seccomp, LaunchedWorkerConfinesItselfBeforeItsFirstJob) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto w = Worker::launch(ThreadKind::kBlockIo, "blk-launched", true);
        if (!w) std::_Exit(3);
        if (!(*w)->run([] { (void)::socket(AF_INET, SOCK_DGRAM, 0); })) std::_Exit(4);
        (*w)->wait();
        std::_Exit(5);
      },
      ::testing::ExitedWithCode(kExitSeccomp),
      "^kindling: seccomp: thread 'blk-launched' made forbidden syscall socket \\(41\\)\n$");
  auto w = Worker::launch(ThreadKind::kBlockIo, "blk-launched", true);
  ASSERT_TRUE(w);
  EXPECT_TRUE((*w)->confined());
}

TEST(Seccomp, UnconfinedWorkerRunsAnything) {
  auto w = Worker::start(ThreadKind::kBlockIo, "free", false);
  ASSERT_TRUE(w);
  int fd = -1;
  EXPECT_TRUE((*w)->run([&] { fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  EXPECT_FALSE((*w)->run([] {})) << "a second job before wait()";
  (*w)->wait();
  EXPECT_GE(fd, 0);
  if (fd >= 0) ::close(fd);
}

TEST(Seccomp, TheVcpuListUsesTheKernelsKvmGetMsrsNumber) {
  // allow_lists.cc builds KVM_GET_MSRS itself (the uapi struct's C++ size is wrong).
  bool found = false;
  for (const Rule& r : allow_list(ThreadKind::kVcpu)) {
    if (r.nr == SYS_ioctl) {
      found |=
          std::find(r.requests.begin(), r.requests.end(), vmm::abi::kGetMsrs) != r.requests.end();
    }
  }
  EXPECT_TRUE(found);
}

TEST(Seccomp, SyscallNamesForTheLine) {
  EXPECT_EXIT(
      {
        // install() fills the table; any kind will do in this child.
        std::thread([] { (void)install(ThreadKind::kMain, "x"); }).join();
        std::fprintf(stderr, "%s %s %s", syscall_name(41), syscall_name(-1), syscall_name(100000));
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "socket \\? \\?");
}

}  // namespace
}  // namespace kindling::seccomp
