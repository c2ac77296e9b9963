#include "vmm/pvm/page_walk.h"

#include <asm/processor-flags.h>
#include <gtest/gtest.h>

#include <array>

namespace kindling::vmm {
namespace {

constexpr uint64_t kP = 1, kRw = 2, kUs = 4, kA = 0x20, kD = 0x40, kPs = 0x80, kXd = 1ULL << 63;
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
  uint64_t entry(uint64_t table, uint64_t index) {
    auto v = mem_->read_obj<uint64_t>(memory::GuestAddress(table + index * 8));
    EXPECT_TRUE(v);
    return v ? *v : 0;
  }
  // The error of a checked walk that must fail.
  PageWalkError checked_error(uint64_t linear, PagingState ps, AccessType a) {
    auto r = translate_checked(*mem_, ps, linear, a);
    EXPECT_FALSE(r) << "linear " << linear;
    return r ? PageWalkError::kMemory : r.error().code;
  }
  // Makes 0x400000 a user read-only 4 KiB page and 0x402000 a user writable one (U/S and R/W
  // on every level).
  void map_user_pages() {
    put(kPml4, 0, kPdpt | kP | kRw | kUs);
    put(kPdpt, 0, kPd | kP | kRw | kUs);
    put(kPd, 2, kPt | kP | kRw | kUs);
    put(kPt, 0, 0x800000 | kP | kUs);
    put(kPt, 2, 0x900000 | kP | kRw | kUs);
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

// ---- checked walks: permissions, #PF error codes, Accessed and Dirty ---------------------

constexpr AccessType kUserRead{false, true, false};
constexpr AccessType kUserWrite{true, true, false};
constexpr AccessType kKernelWrite{true, false, false};
constexpr AccessType kUserFetch{false, true, true};

TEST_F(PageWalkTest, UserAccessToASupervisorPageFaults) {
  // PML4[0] has no U/S: every address below it is supervisor-only.
  EXPECT_EQ(checked_error(0x400123, long_mode(), kUserRead), PageWalkError::kProtection);
  EXPECT_TRUE(translate_checked(*mem_, long_mode(), 0x400123, {}));  // a kernel read is fine
  EXPECT_EQ(page_fault_error_code(PageWalkError::kProtection, kUserRead, long_mode()),
            kPfPresent | kPfUser);
}

TEST_F(PageWalkTest, UserNeedsUsOnEveryLevel) {
  map_user_pages();
  ASSERT_TRUE(translate_checked(*mem_, long_mode(), 0x400010, kUserRead));
  put(kPd, 2, kPt | kP | kRw);  // the PD entry alone drops U/S
  EXPECT_EQ(checked_error(0x400010, long_mode(), kUserRead), PageWalkError::kProtection);
}

TEST_F(PageWalkTest, UserWriteToAReadOnlyPageFaultsWithOrWithoutWp) {
  map_user_pages();
  PagingState ps = long_mode();
  EXPECT_EQ(checked_error(0x400000, ps, kUserWrite), PageWalkError::kProtection);
  ps.cr0 |= X86_CR0_WP;
  EXPECT_EQ(checked_error(0x400000, ps, kUserWrite), PageWalkError::kProtection);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kProtection, kUserWrite, ps),
            kPfPresent | kPfWrite | kPfUser);
  auto t = translate_checked(*mem_, ps, 0x402008, kUserWrite);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->address.value, 0x900008u);
}

TEST_F(PageWalkTest, SupervisorWriteToAReadOnlyPageFaultsOnlyWithWp) {
  map_user_pages();
  PagingState ps = long_mode();
  EXPECT_TRUE(translate_checked(*mem_, ps, 0x400000, kKernelWrite));
  ps.cr0 |= X86_CR0_WP;
  EXPECT_EQ(checked_error(0x400000, ps, kKernelWrite), PageWalkError::kProtection);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kProtection, kKernelWrite, ps),
            kPfPresent | kPfWrite);
  // A read-only PDPT entry makes the whole 1 GiB below it read-only.
  put(kPdpt, 0, kPd | kP | kUs);
  EXPECT_EQ(checked_error(0x402000, ps, kKernelWrite), PageWalkError::kProtection);
}

TEST_F(PageWalkTest, NotPresentErrorCodeHasNoPresentBit) {
  map_user_pages();
  EXPECT_EQ(checked_error(0x401000, long_mode(), kUserWrite), PageWalkError::kNotPresent);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kNotPresent, kUserWrite, long_mode()),
            kPfWrite | kPfUser);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kNotPresent, {}, long_mode()), 0u);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kReservedBits, {}, long_mode()),
            kPfPresent | kPfReserved);
  // Not page faults: the VMM cannot describe them as one.
  EXPECT_FALSE(page_fault_error_code(PageWalkError::kMemory, kUserWrite, long_mode()));
  EXPECT_FALSE(page_fault_error_code(PageWalkError::kNonCanonical, kUserWrite, long_mode()));
}

TEST_F(PageWalkTest, FetchFromAnExecuteDisabledPageFaultsWithNxe) {
  map_user_pages();
  put(kPd, 2, kPt | kP | kRw | kUs | kXd);
  PagingState ps = long_mode();
  EXPECT_TRUE(translate_checked(*mem_, ps, 0x400000, kUserFetch));  // XD ignored without NXE
  ps.efer |= 1ULL << 11;                                            // EFER.NXE
  EXPECT_EQ(checked_error(0x400000, ps, kUserFetch), PageWalkError::kProtection);
  EXPECT_TRUE(translate_checked(*mem_, ps, 0x400000, kUserRead));  // reads may go on
  // The user fetch of a supervisor page (a user `jmp` into the kernel): error code 0x15.
  EXPECT_EQ(page_fault_error_code(PageWalkError::kProtection, kUserFetch, ps),
            kPfPresent | kPfUser | kPfFetch);
  EXPECT_EQ(page_fault_error_code(PageWalkError::kProtection, kUserFetch, long_mode()),
            kPfPresent | kPfUser);
}

TEST_F(PageWalkTest, CheckedWalkSetsNoBitsButSetAccessedDirtyDoes) {
  map_user_pages();
  auto t = translate_checked(*mem_, long_mode(), 0x402010, kUserWrite);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->count, 4);
  EXPECT_EQ(entry(kPt, 2) & (kA | kD), 0u);
  ASSERT_TRUE(set_accessed_dirty(*mem_, *t, true));
  for (auto [table, index] : {std::pair{kPml4, 0}, {kPdpt, 0}, {kPd, 2}}) {
    EXPECT_EQ(entry(table, index) & (kA | kD), kA) << "table " << table;
  }
  EXPECT_EQ(entry(kPt, 2), 0x900000 | kP | kRw | kUs | kA | kD);
  // A read sets Accessed only.
  auto r = translate_checked(*mem_, long_mode(), 0x400010, kUserRead);
  ASSERT_TRUE(r);
  ASSERT_TRUE(set_accessed_dirty(*mem_, *r, false));
  EXPECT_EQ(entry(kPt, 0), 0x800000 | kP | kUs | kA);
}

TEST_F(PageWalkTest, DirtyGoesOnTheLargePageEntry) {
  auto t = translate_checked(*mem_, long_mode(), 0x600008, kKernelWrite);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->count, 3);
  ASSERT_TRUE(set_accessed_dirty(*mem_, *t, true));
  EXPECT_EQ(entry(kPd, 3), 0xA00000 | kP | kPs | kA | kD);
  EXPECT_EQ(entry(kPdpt, 0), kPd | kP | kA);
}

TEST_F(PageWalkTest, ReadCheckedReportsTheFaultingPage) {
  map_user_pages();
  put(kPt, 3, 0x700000 | kP);  // the next page is supervisor-only
  std::array<uint8_t, 8> out{};
  uint64_t at = 0;
  auto r = read_checked(*mem_, long_mode(), 0x402ffc, kUserRead, out, &at);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, PageWalkError::kProtection);
  EXPECT_EQ(at, 0x403000u);
  EXPECT_TRUE(read_checked(*mem_, long_mode(), 0x402ffc, {}, out));
}

}  // namespace
}  // namespace kindling::vmm
