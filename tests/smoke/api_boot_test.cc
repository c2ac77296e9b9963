// Smoke test of the API socket, driven as Firecracker's getting-started guide drives
// Firecracker: `curl --unix-socket` configures and starts a Linux guest through the API alone,
// reads GET /vm/config and swaps a drive's image for a bigger one (the guest sees the new
// size), then the guest reboots and kindling exits 0; and SendCtrlAltDel reboots a guest.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/background.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/temp_image.h"

namespace kindling::smoke {
namespace {

namespace fs = std::filesystem;
using Clock = test::Background::Clock;

// The whole run (boot, swap, reboot) must end before this; kindling's own --timeout is
// a little shorter.
constexpr std::chrono::seconds kDeadline{180};
constexpr const char* kKindlingTimeout = "170";

std::string guest(const char* name) {
  return std::string(KINDLING_GUEST_DIR) + "/" + name;
}

// Waits until `path` contains `text`; true when it does. Gives up at the deadline, or at once
// when `vm` has exited (the text can no longer come; a failing test then ends in seconds, not
// at the deadline).
bool wait_for_text(test::Background& vm, const std::string& path, const std::string& text,
                   Clock::time_point until) {
  while (Clock::now() < until) {
    auto s = test::read_file(path);
    if (s && s->find(text) != std::string::npos) return true;
    if (auto status = vm.wait_until(Clock::now())) {
      s = test::read_file(path);  // what it wrote before it exited
      if (s && s->find(text) != std::string::npos) return true;
      ADD_FAILURE() << "kindling exited with " << *status << " before the console said: " << text;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

class ApiBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!test::kvm_usable(why)) GTEST_SKIP() << "no usable KVM (" << why << "): boots Linux";
    for (const char* f : {"acpi/vmlinux", "rootfs.img"}) {
      ASSERT_TRUE(fs::exists(guest(f))) << guest(f) << " is missing: run `make guest` first";
    }
  }

  // curl --unix-socket: "BODY [STATUS]".
  std::string curl(const std::string& method, const std::string& path,
                   const std::string& body = {}) {
    std::vector<std::string> args = {"/usr/bin/curl",          "-sS", "-w", " [%{http_code}]",
                                     "--unix-socket",          sock_, "-X", method,
                                     "http://localhost" + path};
    if (!body.empty()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "-d", body});
    }
    test::ChildOptions o;
    o.deadline = std::chrono::milliseconds(60000);
    test::ChildResult r = test::run_child(args, o);
    if (!r.exited || r.exit_code != 0) {
      return r.out + " (curl exit " + std::to_string(r.exit_code) + " signal " +
             std::to_string(r.term_signal) + ": " + r.err + ")";
    }
    return r.out;
  }

  test::TempDir dir_;
  std::string sock_ = dir_.path() + "/api.sock";
};

TEST_F(ApiBootTest, ConfigureStartAndSwapADriveThroughTheApi) {
  const auto until = Clock::now() + kDeadline;
  test::TempImage small(1 << 20);
  test::TempImage big(2 << 20);
  const std::string console = dir_.path() + "/console.log";
  const std::string out = dir_.path() + "/kindling.out";
  test::Background vm({KINDLING_BIN, "run", "--api-sock", sock_, "--console-log", console,
                       "--timeout", kKindlingTimeout},
                      out);
  ASSERT_TRUE(vm.started());
  while (!fs::exists(sock_) && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(fs::status(sock_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  EXPECT_EQ(curl("PUT", "/boot-source",
                 R"({"kernel_image_path": ")" + guest("acpi/vmlinux") +
                     R"(", "boot_args": "console=ttyS0 reboot=k panic=-1 pci=off quiet )"
                     R"(kindling.check=grow-vdb=4096"})"),
            " [204]");
  EXPECT_EQ(curl("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 128})"), " [204]");
  EXPECT_EQ(curl("PUT", "/drives/rootfs",
                 R"({"drive_id": "rootfs", "path_on_host": ")" + guest("rootfs.img") +
                     R"(", "is_root_device": true, "is_read_only": true})"),
            " [204]");
  EXPECT_EQ(curl("PUT", "/drives/data",
                 R"({"drive_id": "data", "path_on_host": ")" + small.path() +
                     R"(", "is_root_device": false})"),
            " [204]");
  EXPECT_NE(curl("GET", "/").find("\"Not started\""), std::string::npos);
  ASSERT_EQ(curl("PUT", "/actions", R"({"action_type": "InstanceStart"})"), " [204]")
      << test::read_file(out).value_or("");
  EXPECT_NE(curl("GET", "/").find("\"Running\""), std::string::npos);
  EXPECT_NE(curl("PUT", "/boot-source", R"({"kernel_image_path": "/x"})").find("[400]"),
            std::string::npos);
  const std::string cfg = curl("GET", "/vm/config");
  EXPECT_NE(cfg.find("\"drive_id\":\"data\""), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("\"mem_size_mib\":128"), std::string::npos) << cfg;

  ASSERT_TRUE(
      wait_for_text(vm, console, "init: grow-vdb: waiting for 4096 sectors (now 2048)", until))
      << test::read_file(console).value_or("(no console)");
  EXPECT_EQ(curl("PATCH", "/drives/data",
                 R"({"drive_id": "data", "path_on_host": ")" + big.path() + R"("})"),
            " [204]");
  ASSERT_TRUE(wait_for_text(vm, console, "init: grow-vdb: vdb now has 4096 sectors", until))
      << test::read_file(console).value_or("(no console)");
  // The guest's checks passed: it reboots (reboot -f with reboot=k) and kindling exits 0.
  const std::optional<int> status = vm.wait_until(until);
  ASSERT_TRUE(status) << "kindling still running after the checks\n"
                      << test::read_file(console).value_or("");
  EXPECT_EQ(*status, 0) << test::read_file(out).value_or("");
  const std::string guest_said = test::read_file(console).value_or("");
  EXPECT_NE(guest_said.find("KINDLING-VERDICT: PASS"), std::string::npos) << guest_said;
  EXPECT_FALSE(fs::exists(sock_)) << "the socket file is removed on exit";
}

// SendCtrlAltDel, as Firecracker's: the scan codes reach the guest's AT keyboard driver
// through the i8042 and IRQ 1, Linux's keyboard layer restarts at once (reboot=k: through the
// i8042's reset line) and kindling exits 0, before the guest's own check ends its wait (which
// would print a verdict).
TEST_F(ApiBootTest, SendCtrlAltDelRebootsTheGuest) {
  const auto until = Clock::now() + kDeadline;
  const std::string console = dir_.path() + "/console.log";
  const std::string out = dir_.path() + "/kindling.out";
  test::Background vm(
      {KINDLING_BIN, "run", "--api-sock", sock_, "--console-log", console, "--timeout",
       kKindlingTimeout, "--log-level", "info", "--kernel", guest("acpi/vmlinux"), "--disk",
       guest("rootfs.img") + ",ro", "--root", "--cmdline",
       "console=ttyS0 reboot=k panic=-1 pci=off quiet kindling.check=wait-cad"},
      out);
  ASSERT_TRUE(vm.started());
  while (!fs::exists(sock_) && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The flags configured the VM; without --config the API starts it.
  ASSERT_EQ(curl("PUT", "/actions", R"({"action_type": "InstanceStart"})"), " [204]")
      << test::read_file(out).value_or("");
  ASSERT_TRUE(wait_for_text(vm, console, "init: wait-cad: waiting for Ctrl-Alt-Del", until))
      << test::read_file(console).value_or("(no console)")
      << test::read_file(out).value_or("(no output)");
  EXPECT_NE(curl("GET", "/").find("\"Running\""), std::string::npos);
  EXPECT_EQ(curl("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})"), " [204]");
  const std::optional<int> status = vm.wait_until(until);
  ASSERT_TRUE(status) << "kindling still running after Ctrl-Alt-Del\n"
                      << test::read_file(console).value_or("");
  EXPECT_EQ(*status, 0) << test::read_file(out).value_or("");
  const std::string guest_said = test::read_file(console).value_or("");
  EXPECT_EQ(guest_said.find("KINDLING-VERDICT"), std::string::npos)
      << "the guest's check ended before the keys rebooted it:\n"
      << guest_said;
  EXPECT_NE(test::read_file(out).value_or("").find("i8042: guest pulsed the reset line"),
            std::string::npos)
      << test::read_file(out).value_or("");
}

}  // namespace
}  // namespace kindling::smoke
