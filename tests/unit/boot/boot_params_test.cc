// boot_params and e820: fields the kernel reads, for bzImage and ELF kernels.
#include "vmm/boot/boot_params.h"
#include "tests/support/unpacked.h"

#include <asm/e820.h>
#include <gtest/gtest.h>

#include <cstring>

#include "boot_test_util.h"
#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

memory::GuestMemory ram(uint64_t bytes) {
  auto m = memory::GuestMemory::create_ram(bytes);
  EXPECT_TRUE(m.has_value());
  return std::move(m).value();
}

boot_params read_zero_page(const memory::GuestMemory& mem) {
  auto bp = mem.read_obj<boot_params>(memory::GuestAddress(layout::kZeroPageAddr));
  EXPECT_TRUE(bp.has_value());
  return bp.has_value() ? *bp : boot_params{};
}

TEST(E820, Ram128MiB) {
  auto mem = ram(128 * kMiB);
  auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(unpacked(map[0].addr), 0u);
  EXPECT_EQ(unpacked(map[0].size), 0x9FC00u);
  EXPECT_EQ(unpacked(map[0].type), uint32_t{E820_RAM});
  EXPECT_EQ(unpacked(map[1].addr), 0x9FC00u);
  EXPECT_EQ(unpacked(map[1].size), 0x100000u - 0x9FC00u);
  EXPECT_EQ(unpacked(map[1].type), uint32_t{E820_RESERVED});
  EXPECT_EQ(unpacked(map[2].addr), 0x100000u);
  EXPECT_EQ(unpacked(map[2].size), 127 * kMiB);
  EXPECT_EQ(unpacked(map[2].type), uint32_t{E820_RAM});
}

TEST(E820, RamAbove3GiBSkipsTheMmioHole) {
  auto mem = ram(4 * kGiB);
  auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(unpacked(map[2].addr), kMiB);
  EXPECT_EQ(map[2].addr + map[2].size, memory::kMmioHoleStart);
  EXPECT_EQ(unpacked(map[3].addr), memory::kMmioHoleEnd);
  EXPECT_EQ(unpacked(map[3].size), 1 * kGiB);
  EXPECT_EQ(unpacked(map[3].type), uint32_t{E820_RAM});
  uint64_t ram_total = 0;
  for (const auto& e : map) {
    EXPECT_FALSE(e.addr < memory::kMmioHoleEnd && e.addr + e.size > memory::kMmioHoleStart)
        << std::hex << e.addr;
    if (e.type == E820_RAM) ram_total += e.size;
  }
  EXPECT_EQ(ram_total, 4 * kGiB - (kMiB - 0x9FC00));
}

TEST(E820, RegionReachingIntoTheHoleIsClipped) {
  auto mem =
      memory::GuestMemory::create({{0, 16 * kMiB}, {memory::kMmioHoleStart - kMiB, 2 * kMiB}});
  ASSERT_TRUE(mem.has_value());
  auto map = build_e820(*mem);
  ASSERT_EQ(map.size(), 4u);
  EXPECT_EQ(unpacked(map[3].addr), memory::kMmioHoleStart - kMiB);
  EXPECT_EQ(unpacked(map[3].size), kMiB);
}

TEST(BootParams, WritesEntriesCountAndPointers) {
  auto mem = ram(128 * kMiB);
  BootParamsArgs args;
  args.hdr = elf_setup_header();
  args.cmdline_addr = layout::kCmdlineAddr;
  args.initrd_addr = 0x7000000;
  args.initrd_size = 0x12345;
  ASSERT_TRUE(write_boot_params(mem, args).has_value());
  auto bp = read_zero_page(mem);
  // e820_entries is the byte at 0x1E8 of the zero page.
  auto count = mem.read_obj<uint8_t>(memory::GuestAddress(layout::kZeroPageAddr + 0x1E8));
  ASSERT_TRUE(count.has_value());
  EXPECT_EQ(*count, 3);
  EXPECT_EQ(unpacked(bp.e820_entries), 3);
  EXPECT_EQ(bp.e820_table[2].addr, kMiB);
  EXPECT_EQ(unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
  EXPECT_EQ(unpacked(bp.ext_cmd_line_ptr), 0u);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_image), 0x7000000u);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_size), 0x12345u);
  EXPECT_EQ(unpacked(bp.hdr.type_of_loader), 0xFF);
  EXPECT_EQ(unpacked(bp.hdr.vid_mode), 0xFFFF);
  EXPECT_TRUE(bp.hdr.loadflags & LOADED_HIGH);
  EXPECT_FALSE(bp.hdr.loadflags & CAN_USE_HEAP);
}

TEST(BootParams, ElfSetupHeader) {
  setup_header hdr = elf_setup_header();
  EXPECT_EQ(unpacked(hdr.boot_flag), 0xAA55);
  EXPECT_EQ(std::memcmp(&hdr.header, "HdrS", 4), 0);
  EXPECT_EQ(unpacked(hdr.version), 0x020F);
  EXPECT_EQ(unpacked(hdr.type_of_loader), 0xFF);
  EXPECT_EQ(unpacked(hdr.kernel_alignment), 0x200000u);
  EXPECT_EQ(unpacked(hdr.cmdline_size), 4095u);
  EXPECT_EQ(max_cmdline_len(hdr), 4095u);
  EXPECT_EQ(initrd_limit(hdr), 0x80000000u);
}

TEST(BootParams, CmdlineLimitHonoursTheKernelAndTheArea) {
  setup_header hdr{};
  hdr.cmdline_size = 2048;
  EXPECT_EQ(max_cmdline_len(hdr), 2048u);
  hdr.cmdline_size = 0x7FFFFFFF;
  EXPECT_EQ(max_cmdline_len(hdr), layout::kCmdlineMax - 1);
  hdr.cmdline_size = 0;
  EXPECT_EQ(max_cmdline_len(hdr), 255u);
}

}  // namespace
}  // namespace kindling::vmm
