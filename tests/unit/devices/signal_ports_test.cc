#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "common/log.h"
#include "devices/exit_port.h"

namespace kindling::devices {
namespace {

TEST(ExitPort, ByteWriteCallsOnExitWithTheValue) {
  std::vector<int> codes;
  ExitPort port([&](uint8_t n) { codes.push_back(n); });
  const uint8_t v = 42;
  port.write(0, std::span<const uint8_t>(&v, 1));
  const uint8_t wide[4] = {3, 0xAA, 0xBB, 0xCC};
  port.write(0, wide);
  EXPECT_EQ(codes, (std::vector<int>{42, 3}));
  uint8_t r = 0xFF;
  port.read(0, std::span<uint8_t>(&r, 1));
  EXPECT_EQ(r, 0);
}

TEST(BootTimer, ReportsOnceTheTimeOfTheFirstWrite) {
  BootTimer timer;
  EXPECT_FALSE(timer.reported_seconds().has_value());
  double before = log::uptime_seconds();
  const uint8_t v = 123;
  testing::internal::CaptureStderr();
  timer.write(0, std::span<const uint8_t>(&v, 1));
  std::string printed = testing::internal::GetCapturedStderr();
  double after = log::uptime_seconds();
  ASSERT_TRUE(timer.reported_seconds().has_value());
  double t = *timer.reported_seconds();
  EXPECT_GE(t, before);
  EXPECT_LE(t, after);
  EXPECT_NE(printed.find("guest boot-timer: user space reached after "), std::string::npos);
  EXPECT_NE(printed.find(" s\n"), std::string::npos);

  testing::internal::CaptureStderr();
  timer.write(0, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(*timer.reported_seconds(), t);
}

}  // namespace
}  // namespace kindling::devices
