// Smoke tests: boot the project's Linux guest (guest/make-guest.sh artifacts in
// KINDLING_GUEST_DIR) with build/kindling and check what its /init reports. Each boot is a
// real Linux boot to busybox user space: ~10-15 s on a PVM host at 128 MiB, well under a
// second with hardware virtualization. They skip only when /dev/kvm is unusable; missing guest
// artifacts are a failure (`make test` builds them first).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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
// PVM hosts) short. kindling's default line, so the kernels read the ACPI tables.
constexpr const char* kBaseCmdline = "console=ttyS0 reboot=k panic=-1 pci=off quiet";
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

  // Boots `kernel` (default: the first kernel's vmlinux) with `args` appended and the checks
  // `checks` on the command line (after `cmdline`).
  ChildResult boot(const std::vector<std::string>& args, const std::string& checks,
                   const std::string& kernel = guest("vmlinux"),
                   const std::string& cmdline = kBaseCmdline, int timeout_s = kGuestTimeoutS) {
    std::vector<std::string> argv = {KINDLING_BIN, "run",
                                     "--kernel",   kernel,
                                     "--mem",      kMem,
                                     "--timeout",  std::to_string(timeout_s),
                                     "--cmdline",  cmdline + " kindling.check=" + checks};
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
  // This kernel reads both the ACPI tables (DSDT) and the command-line devices: the disk is
  // described twice and must still be one disk.
  const ChildResult r =
      boot({"--disk", guest("rootfs.img") + ",ro", "--root"}, "root-vda,acpi=on,disks=1");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: root-vda: / is on vda"), std::string::npos) << tail(r.out);
  EXPECT_NE(r.out.find("init: acpi: on"), std::string::npos) << tail(r.out);
}

// --no-acpi: no tables, so the kernel falls back to the MP table (2 CPUs) and the
// command-line devices.
TEST_F(LinuxBootTest, NoAcpiBootsFromTheMpTable) {
  const ChildResult r =
      boot({"--no-acpi", "--cpus", "2", "--disk", guest("rootfs.img") + ",ro", "--root"},
           "root-vda,acpi=off,disks=1,cpus=2");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: acpi: off"), std::string::npos) << tail(r.out);
  EXPECT_NE(r.out.find("init: cpus: 2 online"), std::string::npos) << tail(r.out);
}

// One initrd-only boot (no disk, 1 CPU) serves three checks: user space runs from the
// initramfs alone, the boot-timer port reports a time within the run, and `acpi=off` on the
// command line still boots (MP table) with the tables present.
TEST_F(LinuxBootTest, InitrdOnlyBootReportsBootTime) {
  const ChildResult r = boot({"--initrd", guest("initramfs.cpio")}, "cpus=1,acpi=off,disks=0",
                             guest("vmlinux"), std::string(kBaseCmdline) + " acpi=off");
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
           "root-vda,write-vdb,disks=2");
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

// 512-byte blocks the file occupies on the host.
uint64_t host_blocks(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) : 0;
}

// DISCARD end to end: an ext4 disk (made here with mke2fs -d) holds a file to delete and one to
// keep; the guest deletes, runs fstrim and checks the kept file's checksum. The host file must
// have given back the deleted file's blocks, and the kept file reads back unchanged (debugfs).
// Over io_uring, whose FALLOCATE path the guest's DISCARDs then take.
TEST_F(LinuxBootTest, FstrimFreesHostBlocksAndKeepsData) {
  test::TempDir dir;
  const std::string src = dir.path() + "/src", img = dir.path() + "/data.ext4";
  fs::create_directory(src);
  std::vector<uint8_t> keep(1 << 20), del(8 << 20);
  test::fill_random(keep.data(), keep.size(), 11);
  test::fill_random(del.data(), del.size(), 12);
  for (const auto& [name, data] : {std::pair{"/keep.bin", &keep}, std::pair{"/del.bin", &del}}) {
    std::ofstream f(src + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data->data()),
            static_cast<std::streamsize>(data->size()));
    ASSERT_TRUE(f.good()) << name;
  }
  const std::string sha = "cd " + src + " && sha256sum keep.bin > keep.sha256";
  ASSERT_EQ(std::system(sha.c_str()), 0);
  const std::string mk =
      "mke2fs -q -F -t ext4 -O ^has_journal -b 4096 -d " + src + " " + img + " 32M >/dev/null 2>&1";
  ASSERT_EQ(std::system(mk.c_str()), 0) << mk;
  const uint64_t before = host_blocks(img);
  const ChildResult r = boot(
      {"--disk", guest("rootfs.img") + ",ro", "--root", "--disk", img, "--io-engine", "io_uring"},
      "trim-vdb");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: trim-vdb: deleted, trimmed, keep.bin intact"), std::string::npos)
      << tail(r.out);
  const uint64_t after = host_blocks(img);
  EXPECT_LE(after + (6 << 20) / 512, before)
      << "st_blocks " << before << " -> " << after << ": del.bin's 8 MiB not given back";
  const std::string dump =
      "debugfs -R 'dump /keep.bin " + dir.path() + "/keep.out' " + img + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(dump.c_str()), 0);
  const auto back = test::read_file(dir.path() + "/keep.out");
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->size() == keep.size() &&
              std::memcmp(back->data(), keep.data(), keep.size()) == 0)
      << "keep.bin changed";
}

// Fault injection end to end (--disk PATH,fault=RULE, a testing extension): the guest gets
// I/O errors for the failing sectors of vdb and nothing else, the root disk keeps working, the
// VM ends cleanly, and the image changed only where the guest's good write went.
TEST_F(LinuxBootTest, FailingSectorsAreIoErrorsInTheGuest) {
  test::TempImage data(4 << 20, test::ImageFs::kDisk, 21);
  const auto pattern = test::read_file(guest("pattern.bin"));
  ASSERT_TRUE(pattern && pattern->size() >= 4096);
  const ChildResult r = boot({"--stats", "--disk", guest("rootfs.img") + ",ro", "--root", "--disk",
                              data.path() + ",fault=eio@2048+8,fault=short@4096+8"},
                             "root-vda,faults-vdb,disks=2");
  expect_pass(r);
  EXPECT_NE(r.out.find("init: faults-vdb: I/O errors inside the failing sectors, the rest works"),
            std::string::npos)
      << tail(r.out);
  EXPECT_NE(r.out.find("fault injection (testing): eio:rw@2048+8"), std::string::npos)
      << tail(r.out);
  data.shadow_write(257 * 4096, reinterpret_cast<const uint8_t*>(pattern->data()), 4096);
  EXPECT_TRUE(data.matches_shadow()) << "only the write after the failing sectors may land";
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

// With ACPI on, this kernel takes its CPUs from the MADT (the MP table is not read).
TEST_F(LinuxBootTest, TwoCpusOnline) {
  const ChildResult r = boot({"--cpus", "2", "--disk", guest("rootfs.img") + ",ro", "--root"},
                             "cpus=2,root-vda,acpi=on");
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

// The second kernel (guest/make-guest.sh's acpi/): configured as Firecracker's and distro
// kernels are, it finds CPUs and disks through ACPI alone (no MP table parser, no command-line
// devices). Booted from its vmlinux and from its bzImage (decompressed by kindling).
class AcpiKernelBootTest : public LinuxBootTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    LinuxBootTest::SetUp();
    if (IsSkipped()) return;
    for (const char* f : {"acpi/vmlinux", "acpi/bzImage"}) {
      ASSERT_TRUE(fs::exists(guest(f))) << guest(f) << " is missing: `make guest` builds it";
    }
  }
  std::string kernel() const { return guest(GetParam()); }
};

// Root on virtio-blk, a second disk written and checked byte for byte by the host, 2 CPUs.
TEST_P(AcpiKernelBootTest, RootDataDiskAndTwoCpus) {
  test::TempImage data(4 << 20);
  const auto pattern = test::read_file(guest("pattern.bin"));
  ASSERT_TRUE(pattern && !pattern->empty());
  const ChildResult r =
      boot({"--cpus", "2", "--disk", guest("rootfs.img") + ",ro", "--root", "--disk", data.path()},
           "root-vda,write-vdb,cpus=2,disks=2,acpi=on", kernel());
  expect_pass(r);
  EXPECT_NE(r.out.find("init: root-vda: / is on vda"), std::string::npos) << tail(r.out);
  EXPECT_NE(r.out.find("init: cpus: 2 online"), std::string::npos) << tail(r.out);
  EXPECT_NE(r.out.find("init: write-vdb: wrote and read back"), std::string::npos);
  data.shadow_write(0, reinterpret_cast<const uint8_t*>(pattern->data()), pattern->size());
  EXPECT_TRUE(data.matches_shadow()) << "expected the pattern, then the old bytes";
}

TEST_P(AcpiKernelBootTest, EnteredThroughPvhByDefault) {
  const ChildResult r =
      boot({"--log-level", "info", "--disk", guest("rootfs.img") + ",ro", "--root"},
           "root-vda,disks=1", kernel());
  expect_pass(r);
  EXPECT_NE(r.out.find("boot protocol pvh"), std::string::npos) << tail(r.out);
}

TEST_P(AcpiKernelBootTest, ReadOnlySecondDiskRefusesWrites) {
  test::TempImage data(1 << 20, test::ImageFs::kDisk, 7);
  const ChildResult r =
      boot({"--disk", guest("rootfs.img") + ",ro", "--root", "--disk", data.path() + ",ro"},
           "root-vda,ro-vdb,disks=2", kernel());
  expect_pass(r);
  EXPECT_NE(r.out.find("init: ro-vdb: write refused"), std::string::npos) << tail(r.out);
  EXPECT_TRUE(data.matches_shadow()) << "the read-only image changed";
}

INSTANTIATE_TEST_SUITE_P(Images, AcpiKernelBootTest,
                         ::testing::Values("acpi/vmlinux", "acpi/bzImage"), [](const auto& info) {
                           return std::string(info.param) == "acpi/vmlinux" ? "vmlinux" : "bzImage";
                         });

// The Linux 64-bit entry still boots this kernel when asked for (auto takes its PVH entry).
TEST_F(LinuxBootTest, AcpiKernelThroughTheLinuxEntry) {
  const ChildResult r = boot({"--boot-protocol", "linux", "--log-level", "info", "--disk",
                              guest("rootfs.img") + ",ro", "--root"},
                             "root-vda,acpi=on,disks=1", guest("acpi/vmlinux"));
  expect_pass(r);
  EXPECT_NE(r.out.find("boot protocol linux"), std::string::npos) << tail(r.out);
}

// Without ACPI tables this kernel has no way to find its disks: the boot must not pretend.
TEST_F(LinuxBootTest, AcpiOnlyKernelWithoutTablesFindsNoDisk) {
  const ChildResult r = boot(
      {"--no-acpi", "--initrd", guest("initramfs.cpio"), "--disk", guest("rootfs.img") + ",ro"},
      "disks=0,acpi=off", guest("acpi/vmlinux"));
  expect_pass(r);
  EXPECT_NE(r.out.find("init: disks: 0 virtio disks"), std::string::npos) << tail(r.out);
}

// How a guest ends the VM (kindling.end= in /init: poweroff -f, reboot -f or halt -f), with
// and without ACPI and reboot=k, and what kindling then does.
struct PowerCase {
  const char* name;
  const char* kernel;  // in the guest folder
  const char* end;     // kindling.end=
  const char* reboot;  // the reboot= switch ("" for none: the kernel's default, ACPI first)
  std::vector<std::string> args;
  int timeout_s;  // kindling's --timeout
  int exit_code;
  const char* stopped;  // in kindling's "VM stopped ...: REASON (DETAIL)" info line
};

class PowerTest : public LinuxBootTest, public ::testing::WithParamInterface<PowerCase> {};

TEST_P(PowerTest, EndsTheVmAsDocumented) {
  const PowerCase& c = GetParam();
  std::string cmdline = "console=ttyS0 panic=-1 pci=off quiet kindling.end=" + std::string(c.end);
  if (*c.reboot != 0) cmdline += " reboot=" + std::string(c.reboot);
  std::vector<std::string> args = {"--log-level", "info", "--disk", guest("rootfs.img") + ",ro",
                                   "--root"};
  args.insert(args.end(), c.args.begin(), c.args.end());
  const ChildResult r = boot(args, "root-vda", guest(c.kernel), cmdline, c.timeout_s);
  ASSERT_TRUE(r.exited) << "kindling killed after " << r.seconds << " s\n" << tail(r.out);
  EXPECT_NE(r.out.find("KINDLING-VERDICT: PASS"), std::string::npos) << tail(r.out);
  EXPECT_EQ(r.exit_code, c.exit_code) << tail(r.out);
  EXPECT_NE(r.out.find(c.stopped), std::string::npos) << "want: " << c.stopped << "\n"
                                                      << tail(r.out);
}

INSTANTIATE_TEST_SUITE_P(
    Ends, PowerTest,
    ::testing::Values(
        // clang-format off
        // ACPI: power-off through the FADT's sleep control register (S5), whatever reboot= says.
        PowerCase{"AcpiPoweroff", "acpi/vmlinux", "poweroff", "", {}, kGuestTimeoutS, 0, "guest power-off (guest powered off (ACPI S5))"},
        PowerCase{"AcpiPoweroffRebootK", "acpi/vmlinux", "poweroff", "k", {}, kGuestTimeoutS, 0, "guest power-off (guest powered off (ACPI S5))"},
        // ACPI: reboot through the FADT's reset register, or the i8042 with reboot=k.
        PowerCase{"AcpiReboot", "acpi/vmlinux", "reboot", "", {}, kGuestTimeoutS, 0, "guest reset (guest reset through the ACPI reset register)"},
        PowerCase{"AcpiRebootK", "acpi/vmlinux", "reboot", "k", {}, kGuestTimeoutS, 0, "guest reset (guest reset through the i8042)"},
        // halt stops every CPU with interrupts off: reported, and with --exit-on-halt the end.
        PowerCase{"AcpiHaltExitOnHalt", "acpi/vmlinux", "halt", "k", {"--exit-on-halt"}, kGuestTimeoutS, 0, "guest halted (every vCPU halted with interrupts off)"},
        PowerCase{"AcpiHaltRuns", "acpi/vmlinux", "halt", "", {}, 40, 124, "guest halted: every vCPU stopped with interrupts off (--exit-on-halt"},
        // Without ACPI tables a power-off can only halt ("reboot: System halted").
        PowerCase{"NoAcpiPoweroffHalts", "vmlinux", "poweroff", "k", {"--no-acpi", "--exit-on-halt"}, kGuestTimeoutS, 0, "guest halted (every vCPU halted with interrupts off)"}  // clang-format on
        ),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kindling::smoke
