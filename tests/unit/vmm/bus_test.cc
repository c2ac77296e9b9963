#include "vmm/bus.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/support/log_capture.h"

namespace kindling::vmm {
namespace {

// Records every access and answers reads with a fixed byte.
class RecordingDevice : public BusDevice {
 public:
  explicit RecordingDevice(uint8_t fill = 0x5a) : fill_(fill) {}
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back({offset, data.size()});
    for (auto& b : data) b = fill_;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back({offset, data.size()});
    last_written.assign(data.begin(), data.end());
  }
  struct Access {
    uint64_t offset;
    size_t size;
  };
  std::vector<Access> reads, writes;
  std::vector<uint8_t> last_written;

 private:
  uint8_t fill_;
};

TEST(BusTest, DispatchesWithOffsetRelativeToBase) {
  Bus bus("pio");
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(0x3f8, 8, dev));
  uint8_t data[1] = {0};
  EXPECT_TRUE(bus.read(0x3fd, data));
  EXPECT_EQ(data[0], 0x5a);
  ASSERT_EQ(dev->reads.size(), 1u);
  EXPECT_EQ(dev->reads[0].offset, 5u);
  const uint8_t out[2] = {1, 2};
  EXPECT_TRUE(bus.write(0x3f8, out));
  ASSERT_EQ(dev->writes.size(), 1u);
  EXPECT_EQ(dev->writes[0].offset, 0u);
  EXPECT_EQ(dev->last_written, (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(bus.unclaimed_accesses(), 0u);
}

TEST(BusTest, PicksTheRightDeviceAmongSeveral) {
  Bus bus("mmio");
  auto a = std::make_shared<RecordingDevice>(0xaa);
  auto b = std::make_shared<RecordingDevice>(0xbb);
  ASSERT_TRUE(bus.insert(0xd0000000, 0x1000, a));
  ASSERT_TRUE(bus.insert(0xd0001000, 0x1000, b));  // adjacent is fine
  uint8_t v[4];
  bus.read(0xd0000ffc, v);
  EXPECT_EQ(v[0], 0xaa);
  bus.read(0xd0001000, v);
  EXPECT_EQ(v[0], 0xbb);
  EXPECT_EQ(b->reads.at(0).offset, 0u);
}

TEST(BusTest, UnclaimedReadIsAllOnesAndCounted) {
  Bus bus("pio");
  ASSERT_TRUE(bus.insert(0x60, 5, std::make_shared<RecordingDevice>()));
  uint8_t v[4] = {0, 0, 0, 0};
  EXPECT_FALSE(bus.read(0x2f8, v));
  for (uint8_t b : v) EXPECT_EQ(b, 0xff);
  const uint8_t w[1] = {7};
  EXPECT_FALSE(bus.write(0x80, w));
  EXPECT_EQ(bus.unclaimed_accesses(), 2u);
}

TEST(BusTest, AccessStraddlingTheEndOfARangeIsUnclaimed) {
  Bus bus("mmio");
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(0x1000, 0x10, dev));
  uint8_t v[4];
  EXPECT_FALSE(bus.read(0x100e, v));
  EXPECT_TRUE(dev->reads.empty());
  EXPECT_EQ(bus.unclaimed_accesses(), 1u);
  EXPECT_TRUE(bus.read(0x100c, v));
}

TEST(BusTest, AddressJustBelowARangeIsUnclaimed) {
  Bus bus("pio");
  ASSERT_TRUE(bus.insert(0x70, 2, std::make_shared<RecordingDevice>()));
  uint8_t v[1];
  EXPECT_FALSE(bus.read(0x6f, v));
  EXPECT_FALSE(bus.read(0x72, v));
  EXPECT_TRUE(bus.read(0x71, v));
}

struct OverlapCase {
  uint64_t base, len;
  bool ok;
};

class BusOverlapTest : public ::testing::TestWithParam<OverlapCase> {};

TEST_P(BusOverlapTest, RejectsOverlapsAcceptsNeighbours) {
  Bus bus("mmio");
  ASSERT_TRUE(bus.insert(0x1000, 0x100, std::make_shared<RecordingDevice>()));
  ASSERT_TRUE(bus.insert(0x2000, 0x100, std::make_shared<RecordingDevice>()));
  const OverlapCase c = GetParam();
  auto r = bus.insert(c.base, c.len, std::make_shared<RecordingDevice>());
  EXPECT_EQ(r.has_value(), c.ok);
  if (!r) {
    EXPECT_EQ(r.error().code, BusError::kOverlap);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BusOverlapTest,
                         ::testing::Values(OverlapCase{0x1000, 0x100, false},   // identical
                                           OverlapCase{0x0f80, 0x100, false},   // tail overlaps
                                           OverlapCase{0x10ff, 0x10, false},    // head overlaps
                                           OverlapCase{0x1010, 0x10, false},    // inside
                                           OverlapCase{0x0800, 0x2000, false},  // covers both
                                           OverlapCase{0x0f00, 0x100, true},    // ends at base
                                           OverlapCase{0x1100, 0xf00, true},    // fills the gap
                                           OverlapCase{0x2100, 0x10, true}));   // after all

TEST(BusTest, RejectsEmptyWrappingAndNullRanges) {
  Bus bus("mmio");
  auto dev = std::make_shared<RecordingDevice>();
  auto empty = bus.insert(0x10, 0, dev);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, BusError::kEmptyRange);
  auto wrap = bus.insert(~0ULL - 4, 16, dev);
  ASSERT_FALSE(wrap);
  EXPECT_EQ(wrap.error().code, BusError::kOverflow);
  auto null = bus.insert(0x10, 1, nullptr);
  ASSERT_FALSE(null);
  EXPECT_EQ(null.error().code, BusError::kNullDevice);
  EXPECT_NE(wrap.error().message().find("mmio"), std::string::npos);
}

TEST(BusTest, OneDeviceAtTwoRangesSeesOffsetsOfEach) {
  Bus bus("pio");
  auto dev = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(0x60, 1, dev));
  ASSERT_TRUE(bus.insert(0x64, 1, dev));
  uint8_t v[1];
  bus.read(0x64, v);
  bus.read(0x60, v);
  ASSERT_EQ(dev->reads.size(), 2u);
  EXPECT_EQ(dev->reads[0].offset, 0u);
  EXPECT_EQ(dev->reads[1].offset, 0u);
}

// Every unclaimed access is counted, but a guest probing unknown ports in a loop gets a few
// debug lines, not one per access.
TEST(BusTest, UnclaimedAccessFloodIsRateLimited) {
  Bus bus("pio");
  uint8_t v[1] = {0};
  size_t lines = test::count_log_lines(log::Level::kDebug, "pio: unclaimed", [&] {
    for (int i = 0; i < 1000; ++i) EXPECT_FALSE(bus.read(0x2f8, v));
  });
  EXPECT_EQ(bus.unclaimed_accesses(), 1000u);
  EXPECT_GT(lines, 0u);
  EXPECT_LE(lines, log::RateLimit::kDefaultBurst);
}

}  // namespace
}  // namespace kindling::vmm
