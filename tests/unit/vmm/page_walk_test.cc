#include "vmm/pvm/page_walk.h"

#include <asm/processor-flags.h>
#include <gtest/gtest.h>

#include <array>

namespace kindling::vmm {
namespace {

constexpr uint64_t kP = 1, kRw = 2, kPs = 0x80;
constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000;
constexpr uint64_t kPdptHigh = 0x5000, kPdHigh = 0x6000, kPml5 = 0x7000;
constexpr uint64_t kEferLmeLma = (1 << 8) | (1 << 10);

// Guest RAM [0, 16 MiB) plus [1 GiB, 1 GiB + 4 MiB), with page tables that map:
//   0x400000 (4 KiB pages via PT)   -> 0x800000, 0x402000 -> 0x900000, 0x403000 -> 0x700000
//   0x600000 (2 MiB page)           -> 0xA00000
//   0x80000000 (1 GiB page)         -> 0x40000000
//   0xffffffff80000000 (2 MiB page) -> 0x200000
class PageWalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create({{0, 16ULL << 20}, {1ULL << 30, 4ULL << 20}});
    ASSERT_TRUE(m);
    mem_ = std::make_unique<memory::GuestMemory>(std::move(*m));
    put(kPml4, 0, kPdpt | kP | kRw);
    put(kPml4, 511, kPdptHigh | kP);
    put(kPdpt, 0, kPd | kP);
    put(kPdpt, 2, (1ULL << 30) | kP | kPs);
    put(kPd, 2, kPt | kP);
    put(kPd, 3, 0xA00000 | kP | kPs);
    put(kPd, 5, 0x20000000 | kP);  // a page table outside RAM
    put(kPt, 0, 0x800000 | kP);
    put(kPt, 2, 0x900000 | kP);
    put(kPt, 3, 0x700000 | kP);
    put(kPdptHigh, 510, kPdHigh | kP);
    put(kPdHigh, 0, 0x200000 | kP | kPs);
    put(kPml5, 0, kPml4 | kP);
  }
  void put(uint64_t table, uint64_t index, uint64_t entry) {
    ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(table + index * 8), entry));
  }
  PagingState long_mode() const {
    return {X86_CR0_PE | X86_CR0_PG, kPml4, X86_CR4_PAE, kEferLmeLma};
  }
  uint64_t walk(uint64_t linear) {
    auto r = translate_linear(*mem_, long_mode(), linear);
    EXPECT_TRUE(r) << r.error().message();
    return r ? r->value : ~0ULL;
  }
  PageWalkError walk_error(uint64_t linear, PagingState ps) {
    auto r = translate_linear(*mem_, ps, linear);
    EXPECT_FALSE(r);
    return r ? PageWalkError::kNotPresent : r.error().code;
  }
  std::unique_ptr<memory::GuestMemory> mem_;
};

TEST_F(PageWalkTest, FourKilobytePages) {
  EXPECT_EQ(walk(0x400123), 0x800123u);
  EXPECT_EQ(walk(0x402fff), 0x900fffu);
}

TEST_F(PageWalkTest, TwoMegabytePages) {
  EXPECT_EQ(walk(0x600000), 0xA00000u);
  EXPECT_EQ(walk(0x7fffff), 0xBFFFFFu);
}

TEST_F(PageWalkTest, OneGigabytePages) {
  EXPECT_EQ(walk(0x80001234), 0x40001234u);
}

TEST_F(PageWalkTest, KernelHalfAddress) {
  EXPECT_EQ(walk(0xffffffff80000010), 0x200010u);
}

TEST_F(PageWalkTest, FiveLevelPaging) {
  PagingState ps = long_mode();
  ps.cr3 = kPml5;
  ps.cr4 |= X86_CR4_LA57;
  auto r = translate_linear(*mem_, ps, 0x400123);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, 0x800123u);
}

TEST_F(PageWalkTest, NotPresentAtEachLevel) {
  const PagingState ps = long_mode();
  EXPECT_EQ(walk_error(0x0000008000000000, ps), PageWalkError::kNotPresent);  // PML4[1]
  EXPECT_EQ(walk_error(0x00000000c0000000, ps), PageWalkError::kNotPresent);  // PDPT[3]
  EXPECT_EQ(walk_error(0x0000000000800000, ps), PageWalkError::kNotPresent);  // PD[4]
  EXPECT_EQ(walk_error(0x0000000000401000, ps), PageWalkError::kNotPresent);  // PT[1]
}

TEST_F(PageWalkTest, PageTableOutsideRamIsAMemoryError) {
  EXPECT_EQ(walk_error(0xA00000, long_mode()), PageWalkError::kMemory);
}

TEST_F(PageWalkTest, NonCanonicalAddress) {
  EXPECT_EQ(walk_error(0x0000800000000000, long_mode()), PageWalkError::kNonCanonical);
}

TEST_F(PageWalkTest, PagingOffIsIdentity) {
  const PagingState real{X86_CR0_PE, 0, 0, 0};
  auto r = translate_linear(*mem_, real, 0x12345);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, 0x12345u);
}

TEST_F(PageWalkTest, LegacyPagingModesAreUnsupported) {
  const PagingState pae32{X86_CR0_PE | X86_CR0_PG, kPml4, X86_CR4_PAE, 0};
  EXPECT_EQ(walk_error(0x1000, pae32), PageWalkError::kUnsupportedMode);
}

TEST_F(PageWalkTest, ReadAcrossPagesFollowsEachPage) {
  const std::array<uint8_t, 4> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x900ffc), a));
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x700000), b));
  std::array<uint8_t, 8> out{};
  ASSERT_TRUE(read_linear(*mem_, long_mode(), 0x402ffc, out));
  EXPECT_EQ(out, (std::array<uint8_t, 8>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST_F(PageWalkTest, ReadIntoAnUnmappedPageFails) {
  std::array<uint8_t, 8> out{};
  auto r = read_linear(*mem_, long_mode(), 0x400ffc, out);  // 0x401000 is not present
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, PageWalkError::kNotPresent);
}

}  // namespace
}  // namespace kindling::vmm
