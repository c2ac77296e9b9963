// GDT, IDT and the identity page tables, checked by walking them like the MMU would.
#include "vmm/boot/x86_tables.h"

#include <gtest/gtest.h>

#include <optional>

#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

constexpr uint64_t kAddrMask = 0x000FFFFFFFFFF000ULL;

class X86TablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create_ram(64 << 20);
    ASSERT_TRUE(m.has_value());
    mem_.emplace(std::move(m).value());
    ASSERT_TRUE(write_gdt_idt(*mem_).has_value());
    ASSERT_TRUE(write_page_tables(*mem_).has_value());
  }

  uint64_t entry(uint64_t table, uint64_t index) {
    auto v = mem_->read_obj<uint64_t>(memory::GuestAddress((table & kAddrMask) + index * 8));
    EXPECT_TRUE(v.has_value());
    return v.has_value() ? *v : 0;
  }

  // 4-level walk from CR3 with 2 MiB pages; nullopt when not mapped.
  std::optional<uint64_t> translate(uint64_t va) {
    uint64_t pml4e = entry(layout::kPml4Addr, (va >> 39) & 511);
    if (!(pml4e & kPtePresent)) return std::nullopt;
    uint64_t pdpte = entry(pml4e, (va >> 30) & 511);
    if (!(pdpte & kPtePresent)) return std::nullopt;
    uint64_t pde = entry(pdpte, (va >> 21) & 511);
    if (!(pde & kPtePresent) || !(pde & kPteHuge) || !(pde & kPteWritable)) return std::nullopt;
    return (pde & ~(kHugePageSize - 1) & kAddrMask) | (va & (kHugePageSize - 1));
  }

  std::optional<memory::GuestMemory> mem_;
};

TEST_F(X86TablesTest, IdentityMapsTheFirst4GiB) {
  for (uint64_t va : {0x0ULL, 0x7000ULL, 0x100000ULL, 0x1234567ULL, 0x40000000ULL + 0x1234,
                      0xBFFFFFFFULL, 0xFEC00000ULL, 0xFEE00010ULL, 0xFFFFFFFFULL}) {
    auto pa = translate(va);
    ASSERT_TRUE(pa.has_value()) << std::hex << va;
    EXPECT_EQ(*pa, va) << std::hex << va;
  }
}

TEST_F(X86TablesTest, NothingAbove4GiB) {
  EXPECT_FALSE(translate(0x100000000ULL).has_value());
  EXPECT_FALSE(translate(0x8000000000ULL).has_value());
  EXPECT_FALSE(translate(0xffffffff81000000ULL).has_value());
}

TEST_F(X86TablesTest, TablesAreWhereTheLayoutSays) {
  EXPECT_EQ(entry(layout::kPml4Addr, 0), layout::kPdptAddr | kPtePresent | kPteWritable);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(entry(layout::kPdptAddr, i),
              (layout::kPdAddr + i * 0x1000) | kPtePresent | kPteWritable);
  }
  EXPECT_EQ(entry(layout::kPdAddr, 1), 0x200000 | kPtePresent | kPteWritable | kPteHuge);
}

TEST_F(X86TablesTest, GdtAndIdt) {
  auto gdt = mem_->read_obj<std::array<uint64_t, 4>>(memory::GuestAddress(layout::kGdtAddr));
  ASSERT_TRUE(gdt.has_value());
  EXPECT_EQ((*gdt)[0], 0u);
  EXPECT_EQ((*gdt)[layout::kCode32Selector / 8], 0x00CF9B000000FFFFULL);
  EXPECT_EQ((*gdt)[layout::kCodeSelector / 8], 0x00AF9B000000FFFFULL);
  EXPECT_EQ((*gdt)[layout::kDataSelector / 8], 0x00CF93000000FFFFULL);
  EXPECT_EQ(kGdtLimit, 31);
  EXPECT_EQ(kIdtLimit, 0);
  // The 64-bit code descriptor has L=1 (bit 53) and D=0 (bit 54), present (bit 47).
  uint64_t code = (*gdt)[2];
  EXPECT_TRUE(code & (1ULL << 53));
  EXPECT_FALSE(code & (1ULL << 54));
  EXPECT_TRUE(code & (1ULL << 47));
  // The PVH entry's 32-bit code descriptor: L=0, D=1 (32-bit default operand size), G=1.
  uint64_t code32 = (*gdt)[1];
  EXPECT_FALSE(code32 & (1ULL << 53));
  EXPECT_TRUE(code32 & (1ULL << 54));
  EXPECT_TRUE(code32 & (1ULL << 55));
  auto idt = mem_->read_obj<uint64_t>(memory::GuestAddress(layout::kIdtAddr));
  ASSERT_TRUE(idt.has_value());
  EXPECT_EQ(*idt, 0u);
}

}  // namespace
}  // namespace kindling::vmm
