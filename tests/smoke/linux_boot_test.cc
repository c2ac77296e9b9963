// Smoke tests: boot the project's Linux guest (guest/make-guest.sh artifacts in
// KINDLING_GUEST_DIR) with build/kindling and check what its /init reports. Each boot is a
// real Linux boot to busybox user space: ~10-15 s on a PVM host at 128 MiB, well under a
// second with hardware virtualization. They skip only when /dev/kvm is unusable; missing guest
// artifacts are a failure (`make test` builds them first).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/temp_image.h"

namespace kindling::smoke {
namespace {

namespace fs = std::filesystem;

// The guest's /init reads kindling.check=...; `quiet` keeps the console (an exit per byte on
// PVM hosts) short.
constexpr const char* kBaseCmdline = "console=ttyS0 reboot=k panic=-1 acpi=off pci=off quiet";
constexpr const char* kMem = "128M";
// kindling's own --timeout, and the deadline after which the test kills it.
constexpr int kGuestTimeoutS = 150;
constexpr std::chrono::seconds kDeadline{170};

using test::ChildResult;

// Runs kindling (args[0]) with stdout and stderr in one stream, interleaved as written;
// SIGKILL at kDeadline.
ChildResult run_kindling(const std::vector<std::string>& args) {
  test::ChildOptions opts;
  opts.deadline = kDeadline;
  opts.merge_output = true;
  return test::run_child(args, opts);
}

// The seconds of kindling's "guest boot-timer: user space reached after X s" line, if any.
std::optional<double> boot_timer_seconds(const std::string& output) {
  const std::string key = "user space reached after ";
  const size_t at = output.find(key);
  if (at == std::string::npos) return std::nullopt;
  char* end = nullptr;
  const char* start = output.c_str() + at + key.size();
  const double v = std::strtod(start, &end);
  if (end == start) return std::nullopt;
  return v;
}

std::string guest(const char* name) {
  return std::string(KINDLING_GUEST_DIR) + "/" + name;
}

std::string tail(const std::string& s, size_t n = 4000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

class LinuxBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!test::kvm_usable(why)) {
      GTEST_SKIP() << "no usable KVM (" << why << "): the smoke tests boot a Linux guest";
    }
    for (const char* f : {"vmlinux", "rootfs.img", "initramfs.cpio", "pattern.bin"}) {
      ASSERT_TRUE(fs::exists(guest(f)))
          << guest(f) << " is missing: build the guest artifacts first (`make guest`, or "
          << "guest/make-guest.sh " << KINDLING_GUEST_DIR << ")";
    }
  }

  // Boots vmlinux with `args` appended and the checks `checks` on the command line.
  ChildResult boot(const std::vector<std::string>& args, const std::string& checks) {
    std::vector<std::string> argv = {
        KINDLING_BIN, "run",
        "--kernel",   guest("vmlinux"),
        "--mem",      kMem,
        "--timeout",  std::to_string(kGuestTimeoutS),
        "--cmdline",  std::string(kBaseCmdline) + " kindling.check=" + checks};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_kindling(argv);
  }

  // The run ended by the guest's own reset (exit 0) after its /init printed PASS; reports the
  // boot-timer figure.
  void expect_pass(const ChildResult& r) {
    ASSERT_TRUE(r.exited) << "kindling killed after " << r.seconds << " s\n" << tail(r.out);
    EXPECT_EQ(r.exit_code, 0) << tail(r.out);
    EXPECT_NE(r.out.find("KINDLING-VERDICT: PASS"), std::string::npos) << tail(r.out);
    EXPECT_EQ(r.out.find("KINDLING-VERDICT: FAIL"), std::string::npos) << tail(r.out);
    report_boot_timer(r);
  }

  void report_boot_timer(const ChildResult& r) {
    const auto t = boot_timer_seconds(r.out);
    if (t) {
      std::printf("[ boot-timer ] %s: user space reached after %.3f s (run %.1f s)\n",
                  ::testing::UnitTest::GetInstance()->current_test_info()->name(), *t, r.seconds);
      RecordProperty("boot_timer_s", std::to_string(*t));
    }
  }
};

TEST_F(LinuxBootTest, RootOnVirtioBlkReachesInit) {
  const ChildResult r = boot({"--disk", guest("rootfs.img") + ",ro", "--root"}, "root-vda");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: root-vda: / is on vda"), std::string::npos) << tail(r.out);
}

// One initrd-only boot (no disk, 1 CPU) serves two checks: user space runs from the initramfs
// alone, and the boot-timer port reports a time within the run.
TEST_F(LinuxBootTest, InitrdOnlyBootReportsBootTime) {
  const ChildResult r = boot({"--initrd", guest("initramfs.cpio")}, "cpus=1");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: cpus: 1 online"), std::string::npos) << tail(r.out);
  const auto t = boot_timer_seconds(r.out);
  ASSERT_TRUE(t) << "no boot-timer line\n" << tail(r.out);
  EXPECT_GT(*t, 0.0);
  EXPECT_LT(*t, r.seconds);
}

TEST_F(LinuxBootTest, GuestWritesPatternToSecondDisk) {
  test::TempImage data(4 << 20);
  const auto pattern = test::read_file(guest("pattern.bin"));
  ASSERT_TRUE(pattern && !pattern->empty());
  const ChildResult r =
      boot({"--disk", guest("rootfs.img") + ",ro", "--root", "--disk", data.path()},
           "root-vda,write-vdb");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: write-vdb: wrote and read back"), std::string::npos);
  data.shadow_write(0, reinterpret_cast<const uint8_t*>(pattern->data()), pattern->size());
  EXPECT_TRUE(data.matches_shadow()) << "expected the pattern, then the old bytes";
}

TEST_F(LinuxBootTest, ReadOnlySecondDiskRefusesWrites) {
  test::TempImage data(1 << 20, test::ImageFs::kDisk, 7);
  const ChildResult r = boot(
      {"--disk", guest("rootfs.img") + ",ro", "--root", "--disk", data.path() + ",ro"}, "ro-vdb");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: ro-vdb: write refused"), std::string::npos) << tail(r.out);
  EXPECT_TRUE(data.matches_shadow()) << "the read-only image changed";
}

TEST_F(LinuxBootTest, JsonConfigLaunch) {
  const test::TempDir dir;
  std::ostringstream config;
  config << "{\n"
         << "  \"boot-source\": {\n"
         << "    \"kernel_image_path\": \"" << guest("vmlinux") << "\",\n"
         << "    \"boot_args\": \"" << kBaseCmdline << " kindling.check=root-vda,cpus=1\"\n"
         << "  },\n"
         << "  \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"" << guest("rootfs.img")
         << "\", \"is_root_device\": true, \"is_read_only\": true}],\n"
         << "  \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128}\n"
         << "}\n";
  const std::string json = dir.write("vm.json", config.str());
  const ChildResult r = run_kindling(
      {KINDLING_BIN, "run", "--config", json, "--timeout", std::to_string(kGuestTimeoutS)});
  expect_pass(r);
  EXPECT_NE(r.out.find("init: root-vda: / is on vda"), std::string::npos) << tail(r.out);
}

TEST_F(LinuxBootTest, TwoCpusOnline) {
  const ChildResult r =
      boot({"--cpus", "2", "--disk", guest("rootfs.img") + ",ro", "--root"}, "cpus=2,root-vda");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: cpus: 2 online"), std::string::npos) << tail(r.out);
}

TEST_F(LinuxBootTest, FailedCheckIsAFailVerdict) {
  // The verdict line is what the other tests trust: a check that cannot pass must say FAIL.
  const ChildResult r = boot({"--initrd", guest("initramfs.cpio")}, "cpus=3");
  ASSERT_TRUE(r.exited) << tail(r.out);
  EXPECT_EQ(r.exit_code, 0) << tail(r.out);
  EXPECT_NE(r.out.find("KINDLING-VERDICT: FAIL"), std::string::npos) << tail(r.out);
  EXPECT_EQ(r.out.find("KINDLING-VERDICT: PASS"), std::string::npos) << tail(r.out);
}

}  // namespace
}  // namespace kindling::smoke
