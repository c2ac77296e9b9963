#include "devices/cmos.h"

#include <gtest/gtest.h>

#include <ctime>

namespace kindling::devices {
namespace {

// 2024-02-29 13:45:07 UTC, a Thursday.
std::time_t fixed_time() {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 1;
  tm.tm_mday = 29;
  tm.tm_hour = 13;
  tm.tm_min = 45;
  tm.tm_sec = 7;
  return timegm(&tm);
}

class CmosTest : public ::testing::Test {
 protected:
  uint8_t reg(uint8_t index) {
    dev_.write(0, std::span<const uint8_t>(&index, 1));
    uint8_t v = 0;
    dev_.read(1, std::span<uint8_t>(&v, 1));
    return v;
  }
  void set(uint8_t index, uint8_t value) {
    dev_.write(0, std::span<const uint8_t>(&index, 1));
    dev_.write(1, std::span<const uint8_t>(&value, 1));
  }
  Cmos dev_{fixed_time};
};

TEST_F(CmosTest, ClockRegistersAreBcdUtc) {
  EXPECT_EQ(reg(0x00), 0x07);
  EXPECT_EQ(reg(0x02), 0x45);
  EXPECT_EQ(reg(0x04), 0x13);
  EXPECT_EQ(reg(0x06), 0x05);  // Thursday, Sunday = 1
  EXPECT_EQ(reg(0x07), 0x29);
  EXPECT_EQ(reg(0x08), 0x02);
  EXPECT_EQ(reg(0x09), 0x24);
  EXPECT_EQ(reg(0x32), 0x20);
}

TEST_F(CmosTest, StatusRegistersSayReadyBcd24h) {
  EXPECT_EQ(reg(0x0A) & 0x80, 0);  // no update in progress: Linux never waits
  EXPECT_EQ(reg(0x0B), 0x02);      // 24-hour, BCD
  EXPECT_EQ(reg(0x0C), 0x00);
  EXPECT_EQ(reg(0x0D), 0x80);  // valid RAM and time
  set(0x0A, 0xA6);             // UIP is read-only
  EXPECT_EQ(reg(0x0A), 0x26);
}

TEST_F(CmosTest, BinaryAndTwelveHourModes) {
  set(0x0B, 0x02 | 0x04);
  EXPECT_EQ(reg(0x00), 7);
  EXPECT_EQ(reg(0x02), 45);
  EXPECT_EQ(reg(0x04), 13);
  set(0x0B, 0x00);
  EXPECT_EQ(reg(0x04), 0x80 | 0x01);  // 1 PM in BCD
}

TEST_F(CmosTest, NmiBitIsMaskedFromTheIndex) {
  EXPECT_EQ(reg(0x80 | 0x02), 0x45);
}

TEST_F(CmosTest, ClockIsNotSettableButRamIs) {
  set(0x00, 0x59);
  EXPECT_EQ(reg(0x00), 0x07);
  EXPECT_EQ(reg(0x40), 0x00);
  set(0x40, 0xAB);
  EXPECT_EQ(reg(0x40), 0xAB);
  uint8_t idx = 0;
  dev_.read(0, std::span<uint8_t>(&idx, 1));
  EXPECT_EQ(idx, 0xFF);
}

TEST(Cmos, DefaultClockIsTheHostTime) {
  Cmos dev;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  uint8_t idx = 0x09;
  dev.write(0, std::span<const uint8_t>(&idx, 1));
  uint8_t year = 0;
  dev.read(1, std::span<uint8_t>(&year, 1));
  int y = (tm.tm_year + 1900) % 100;
  EXPECT_EQ(year, ((y / 10) << 4) | (y % 10));
}

}  // namespace
}  // namespace kindling::devices
