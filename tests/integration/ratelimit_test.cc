// End-to-end drive rate limiters: the kindling binary boots the test guest with a limited disk
// (from --disk and from a JSON config); the guest's benchmark completes every request, and the
// device's --stats show that the limiter held requests back. No duration is asserted.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/temp_image.h"

namespace kindling::test {
namespace {

constexpr uint64_t kImageBytes = 8ULL << 20;
// 300 reads at depth 8; a 100-request bucket refilled at 100/s holds back the other 200.
constexpr const char* kBench = "test=blk-bench blk.n=300 blk.bs=4096 blk.qd=8 blk.pattern=seq";

// The number after `key` in the --stats block, or -1.
long stat_value(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtol(text.c_str() + at + key.size(), nullptr, 10);
}

class RateLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!kvm_usable(why)) GTEST_SKIP() << why;
    if (disk_temp_dir().empty()) GTEST_SKIP() << "no disk (non-tmpfs) directory for images";
  }

  static void expect_throttled_bench(const ChildResult& r) {
    ASSERT_TRUE(r.exited) << "killed at the deadline\n" << r.out << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("testguest: blk-bench: ok"), std::string::npos) << r.out << r.err;
    EXPECT_GE(stat_value(r.err, "rate limiter: throttled "), 1) << r.err;
    EXPECT_NE(r.err.find("requests: 300 (read 300"), std::string::npos) << r.err;
  }
};

TEST_F(RateLimitTest, DiskFlagLimitsOps) {
  TempImage img(kImageBytes);
  const ChildResult r =
      run_child({KINDLING_BIN, "run", "--kernel", TESTGUEST_ELF, "--cmdline", kBench, "--timeout",
                 "30", "--stats", "--disk", img.path() + ",ro,iops=100"});
  expect_throttled_bench(r);
}

TEST_F(RateLimitTest, JsonConfigLimitsBandwidth) {
  TempImage img(kImageBytes);
  const TempDir dir;
  std::ostringstream config;
  // 400 KiB per second in a 400 KiB bucket: 100 of the 300 reads fit, the rest wait.
  config << R"({"boot-source": {"kernel_image_path": ")" << TESTGUEST_ELF << R"(", "boot_args": ")"
         << kBench << R"("},
  "drives": [{"drive_id": "data", "path_on_host": ")"
         << img.path() << R"(", "is_root_device": false, "is_read_only": true,
    "rate_limiter": {"bandwidth": {"size": 409600, "refill_time": 1000}}}],
  "stats": true})";
  const std::string path = dir.write("vm.json", config.str());
  const ChildResult r = run_child({KINDLING_BIN, "run", "--config", path, "--timeout", "30"});
  expect_throttled_bench(r);
}

}  // namespace
}  // namespace kindling::test
