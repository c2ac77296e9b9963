#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "common/log.h"
#include "devices/acpi_pm.h"
#include "devices/exit_port.h"
#include "devices/ports.h"

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

struct AcpiPmProbe {
  int power_offs = 0, resets = 0;
  AcpiPm pm{[this] { ++power_offs; }, [this] { ++resets; }};
  void write(uint16_t port, uint8_t v) {
    pm.write(port - kAcpiPmBase, std::span<const uint8_t>(&v, 1));
  }
};

TEST(AcpiPm, SleepTypeFiveWithSlpEnPowersOff) {
  AcpiPmProbe p;
  // What Linux's acpi_hw_extended_sleep writes for S5: SLP_TYP << 2 | SLP_EN.
  p.write(kAcpiSleepControlPort, (kAcpiSlpTypS5 << 2) | (1 << 5));
  EXPECT_EQ(p.power_offs, 1);
  EXPECT_EQ(p.resets, 0);
}

TEST(AcpiPm, OtherSleepWritesDoNothing) {
  AcpiPmProbe p;
  p.write(kAcpiSleepControlPort, kAcpiSlpTypS5 << 2);                  // SLP_EN clear
  p.write(kAcpiSleepControlPort, (3 << 2) | (1 << 5));                 // S3
  p.write(kAcpiSleepControlPort, (1 << 5));                            // S0
  p.write(kAcpiSleepStatusPort, 0x80);                                 // WAK_STS write-to-clear
  p.write(kAcpiResetPort, static_cast<uint8_t>(kAcpiResetValue + 1));  // not the reset value
  EXPECT_EQ(p.power_offs, 0);
  EXPECT_EQ(p.resets, 0);
  uint8_t status = 0xFF;
  p.pm.read(kAcpiSleepStatusPort - kAcpiPmBase, std::span<uint8_t>(&status, 1));
  EXPECT_EQ(status, 0);  // WAK_STS clear
}

TEST(AcpiPm, ResetValueResets) {
  AcpiPmProbe p;
  p.write(kAcpiResetPort, kAcpiResetValue);
  EXPECT_EQ(p.resets, 1);
  EXPECT_EQ(p.power_offs, 0);
}

}  // namespace
}  // namespace kindling::devices
