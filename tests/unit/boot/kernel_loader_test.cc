// load_kernel() on synthetic bzImage and ELF kernels: placement, entry state, boot_params,
// command line and initrd.
#include <asm/bootparam.h>
#include <gtest/gtest.h>

#include <cstring>

#include "boot_test_util.h"
#include "tests/support/unpacked.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

using test::BzImageSpec;
using test::TempFile;

constexpr uint64_t kMiB = 1ULL << 20;

class KernelLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { use_ram(128 * kMiB); }
  void use_ram(uint64_t bytes) {
    auto m = memory::GuestMemory::create_ram(bytes);
    ASSERT_TRUE(m.has_value());
    mem_.emplace(std::move(m).value());
  }
  Result<BootEntry, BootErr> boot(const std::string& kernel, std::string cmdline = "console=ttyS0",
                                  std::optional<std::string> initrd = std::nullopt,
                                  uint32_t vcpus = 1) {
    BootSpec spec;
    spec.kernel_path = kernel;
    spec.cmdline = std::move(cmdline);
    spec.initrd_path = std::move(initrd);
    spec.platform.vcpus = vcpus;
    return load_kernel(*mem_, spec);
  }
  boot_params zero_page() { return *mem_->read_obj<boot_params>(memory::GuestAddress(0x7000)); }
  std::vector<uint8_t> read(uint64_t addr, size_t len) {
    std::vector<uint8_t> out(len);
    EXPECT_TRUE(mem_->read(memory::GuestAddress(addr), out).has_value());
    return out;
  }
  std::string cmdline_in_guest() {
    auto bytes = read(layout::kCmdlineAddr, layout::kCmdlineMax);
    return std::string(reinterpret_cast<const char*>(bytes.data()));
  }

  std::optional<memory::GuestMemory> mem_;
};

TEST_F(KernelLoaderTest, BzImageAtOneMiB) {
  auto img = test::make_bzimage();
  TempFile f(img);
  auto e = boot(f.path(), "console=ttyS0 quiet");
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, kMiB + 0x200);
  EXPECT_EQ(e->rsi, 0x7000u);
  EXPECT_EQ(e->rsp, 0x8FF0u);
  EXPECT_EQ(e->cr3, 0x9000u);
  EXPECT_EQ(e->gdt_base, 0x500u);
  EXPECT_EQ(e->gdt_limit, 31);
  EXPECT_EQ(e->idt_base, 0x520u);
  EXPECT_EQ(e->idt_limit, 0);
  EXPECT_EQ(e->code_selector, 0x10);
  EXPECT_EQ(e->data_selector, 0x18);
  // The protected-mode part (after (4+1)*512 bytes) is at 1 MiB.
  auto loaded = read(kMiB, 0x2000);
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), img.begin() + 5 * 512));

  boot_params bp = zero_page();
  EXPECT_EQ(unpacked(bp.hdr.boot_flag), 0xAA55);
  EXPECT_EQ(unpacked(bp.hdr.header), kHdrsMagic);
  EXPECT_EQ(unpacked(bp.hdr.version), 0x020F);
  EXPECT_EQ(unpacked(bp.hdr.type_of_loader), 0xFF);
  EXPECT_EQ(unpacked(bp.hdr.init_size), 0x40000u);  // copied from the image's header
  EXPECT_EQ(unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_image), 0u);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_size), 0u);
  EXPECT_EQ(unpacked(bp.e820_entries), 3);
  EXPECT_EQ(cmdline_in_guest(), "console=ttyS0 quiet");
}

TEST_F(KernelLoaderTest, ZeroSetupSectsMeansFour) {
  BzImageSpec s;
  s.setup_sects = 0;
  auto img = test::make_bzimage(s);
  TempFile f(img);
  auto e = boot(f.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  auto loaded = read(kMiB, 16);
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), img.begin() + 5 * 512));
}

TEST_F(KernelLoaderTest, RelocatableBzImageHonoursKernelAlignment) {
  BzImageSpec s;
  s.relocatable = 1;
  s.kernel_alignment = 0x1000000;
  s.setup_sects = 8;
  auto img = test::make_bzimage(s);
  TempFile f(img);
  auto e = boot(f.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, 0x1000000u + 0x200);
  auto loaded = read(0x1000000, 64);
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), img.begin() + 9 * 512));
}

TEST_F(KernelLoaderTest, ElfAtItsPhysicalAddresses) {
  // Two segments with a virtual (high-mapping) entry, like a vmlinux.
  const uint64_t vbase = 0xffffffff81000000ULL;
  auto img = test::make_elf(
      {{vbase, 0x1000000, 0x2000, 0x2000}, {vbase + 0x200000, 0x1200000, 0x100, 0x5000}},
      vbase + 0x40);
  TempFile f(img);
  // Dirty the bss range first: the loader must zero it.
  std::vector<uint8_t> junk(0x5000, 0xAA);
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x1200000), junk).has_value());
  auto e = boot(f.path(), "root=/dev/vda");
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, 0x1000040u);
  auto seg0 = read(0x1000000, 0x2000);
  EXPECT_EQ(seg0[0], 1);
  EXPECT_EQ(seg0[15], 16);
  auto seg1 = read(0x1200000, 0x5000);
  EXPECT_EQ(seg1[0], 17);
  EXPECT_EQ(seg1[0xFF], 17 + 15);
  EXPECT_TRUE(std::all_of(seg1.begin() + 0x100, seg1.end(), [](uint8_t b) { return b == 0; }));

  boot_params bp = zero_page();
  EXPECT_EQ(unpacked(bp.hdr.boot_flag), 0xAA55);
  EXPECT_EQ(std::memcmp(&bp.hdr.header, "HdrS", 4), 0);
  EXPECT_EQ(unpacked(bp.hdr.version), 0x020F);
  EXPECT_EQ(unpacked(bp.hdr.type_of_loader), 0xFF);
  EXPECT_EQ(unpacked(bp.hdr.kernel_alignment), 0x200000u);
  EXPECT_EQ(unpacked(bp.hdr.cmdline_size), 4095u);
  EXPECT_EQ(unpacked(bp.hdr.cmd_line_ptr), layout::kCmdlineAddr);
  EXPECT_EQ(cmdline_in_guest(), "root=/dev/vda");
}

TEST_F(KernelLoaderTest, ElfWithPhysicalEntry) {
  auto img = test::make_elf({{0xffffffff81000000ULL, 0x1000000, 0x100, 0x100}}, 0x1000010);
  TempFile f(img);
  auto e = boot(f.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, 0x1000010u);
}

TEST_F(KernelLoaderTest, EmptyCmdlineIsNulTerminated) {
  TempFile f(test::make_simple_elf());
  std::vector<uint8_t> junk(16, 'x');
  ASSERT_TRUE(mem_->write(memory::GuestAddress(layout::kCmdlineAddr), junk).has_value());
  ASSERT_TRUE(boot(f.path(), "").has_value());
  EXPECT_EQ(cmdline_in_guest(), "");
}

TEST_F(KernelLoaderTest, LongestAllowedCmdline) {
  TempFile f(test::make_simple_elf());
  std::string cmdline(4095, 'a');
  ASSERT_TRUE(boot(f.path(), cmdline).has_value());
  EXPECT_EQ(cmdline_in_guest(), cmdline);
}

TEST_F(KernelLoaderTest, InitrdAtTheTopOfLowRamPageAligned) {
  TempFile kernel(test::make_bzimage());
  std::vector<uint8_t> initrd(10000);
  for (size_t i = 0; i < initrd.size(); ++i) initrd[i] = static_cast<uint8_t>(i * 13);
  TempFile rd(initrd);
  auto e = boot(kernel.path(), "x", rd.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  boot_params bp = zero_page();
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_size), initrd.size());
  EXPECT_EQ(bp.hdr.ramdisk_image % 4096, 0u);
  EXPECT_LE(bp.hdr.ramdisk_image + initrd.size(), 128 * kMiB);
  EXPECT_GT(bp.hdr.ramdisk_image + initrd.size(), 128 * kMiB - 4096);
  EXPECT_EQ(read(bp.hdr.ramdisk_image, initrd.size()), initrd);
}

TEST_F(KernelLoaderTest, InitrdBelowInitrdAddrMax) {
  BzImageSpec s;
  s.initrd_addr_max = 0x3FFFFFF;  // 64 MiB - 1
  TempFile kernel(test::make_bzimage(s));
  TempFile rd(std::vector<uint8_t>(5000, 0x5A));
  ASSERT_TRUE(boot(kernel.path(), "x", rd.path()).has_value());
  boot_params bp = zero_page();
  EXPECT_LE(bp.hdr.ramdisk_image + 5000u, 64 * kMiB);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_image), 64 * kMiB - 8192);
}

TEST_F(KernelLoaderTest, InitrdBelowTheMmioHoleWithLargeRam) {
  use_ram(4ULL << 30);
  TempFile kernel(test::make_simple_elf());
  TempFile rd(std::vector<uint8_t>(4096, 1));
  ASSERT_TRUE(boot(kernel.path(), "x", rd.path()).has_value());
  boot_params bp = zero_page();
  // ELF kernels get initrd_addr_max 0x7FFFFFFF: the initrd ends at 2 GiB.
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_image), 0x80000000u - 4096);
  EXPECT_EQ(unpacked(bp.e820_entries), 4);
}

TEST_F(KernelLoaderTest, MpTableForRequestedVcpus) {
  TempFile kernel(test::make_simple_elf());
  ASSERT_TRUE(boot(kernel.path(), "x", std::nullopt, 4).has_value());
  auto sig = read(layout::kMpTableAddr, 4);
  EXPECT_EQ(std::string(sig.begin(), sig.end()), "_MP_");
}

}  // namespace
}  // namespace kindling::vmm
