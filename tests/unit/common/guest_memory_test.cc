#include "common/memory/guest_memory.h"

#include <gtest/gtest.h>

#include <array>
#include <limits>

namespace kindling::memory {
namespace {

TEST(GuestMemory, RamSplitsAroundMmioHole) {
  auto m = GuestMemory::create_ram(kMmioHoleStart + (64ULL << 20));
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->regions().size(), 2u);
  EXPECT_EQ(m->regions()[0].base.value, 0u);
  EXPECT_EQ(m->regions()[0].size, kMmioHoleStart);
  EXPECT_EQ(m->regions()[1].base.value, kMmioHoleEnd);
  EXPECT_EQ(m->regions()[1].size, 64ULL << 20);
  EXPECT_FALSE(m->contains(GuestAddress(kMmioHoleStart), 1));
  EXPECT_EQ(m->total_size(), kMmioHoleStart + (64ULL << 20));
}

TEST(GuestMemory, RejectsBadSizes) {
  EXPECT_FALSE(GuestMemory::create_ram(0));
  EXPECT_FALSE(GuestMemory::create_ram(4095));
  EXPECT_FALSE(GuestMemory::create({{0x2000, 0x1000}, {0x1000, 0x1000}}));  // unsorted
}

TEST(GuestMemory, ChecksEveryRangeIncludingHolesAndOverflow) {
  auto m = GuestMemory::create({{0, 0x2000}, {0x4000, 0x1000}});
  ASSERT_TRUE(m);
  struct Case {
    uint64_t addr, len;
    bool ok;
  } cases[] = {
      {0, 0x2000, true},
      {0x1fff, 1, true},
      {0x1fff, 2, false},  // crosses into hole
      {0x2000, 1, false},
      {0x3fff, 2, false},
      {0x4000, 0x1000, true},
      {0x4fff, 1, true},
      {0x5000, 1, false},
      {0x2000, 0, true},                                 // empty at region end
      {std::numeric_limits<uint64_t>::max(), 2, false},  // wraps
      {1, std::numeric_limits<uint64_t>::max(), false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(m->slice(GuestAddress(c.addr), c.len).has_value(), c.ok)
        << std::hex << c.addr << "+" << c.len;
  }
}

TEST(GuestMemory, ReadWriteObjects) {
  auto m = GuestMemory::create({{0, 0x1000}});
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->write_obj<uint32_t>(GuestAddress(0x10), 0xdeadbeef));
  EXPECT_EQ(*m->read_obj<uint32_t>(GuestAddress(0x10)), 0xdeadbeefu);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x10)), 0xefu);
  EXPECT_FALSE(m->write_obj<uint64_t>(GuestAddress(0xffc), 1));
  std::array<uint8_t, 4> buf{};
  EXPECT_FALSE(m->read(GuestAddress(0xffe), buf));
  // A failed write leaves memory untouched (all-or-nothing).
  EXPECT_EQ(*m->read_obj<uint16_t>(GuestAddress(0xffc)), 0u);
}

}  // namespace
}  // namespace kindling::memory
