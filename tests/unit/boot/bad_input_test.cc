// Every bad input to load_kernel() is a BootErr with the right code whose message names the
// file and the reason.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "boot_test_util.h"
#include "vmm/boot/boot_loader.h"

namespace kindling::vmm {
namespace {

using test::BzImageSpec;
using test::ElfSegment;
using test::make_spec;
using test::TempFile;

constexpr uint64_t kMiB = 1ULL << 20;

struct BadKernel {
  const char* name;
  std::function<std::vector<uint8_t>()> image;
  BootError code;
  const char* reason;  // a substring of the message
};

std::vector<uint8_t> random_bytes(size_t n) {
  std::mt19937 rng(42);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<uint8_t> bz(std::function<void(BzImageSpec&)> tweak) {
  BzImageSpec s;
  tweak(s);
  return test::make_bzimage(s);
}

std::vector<uint8_t> elf_with(std::function<void(Elf64_Ehdr&)> tweak) {
  auto img = test::make_simple_elf();
  Elf64_Ehdr eh;
  std::memcpy(&eh, img.data(), sizeof(eh));
  tweak(eh);
  std::memcpy(img.data(), &eh, sizeof(eh));
  return img;
}

const BadKernel kBadKernels[] = {
    {"Empty", [] { return std::vector<uint8_t>{}; }, BootError::kNotKernel, "neither"},
    {"RandomBytes", [] { return random_bytes(64 * 1024); }, BootError::kNotKernel, "neither"},
    {"TruncatedBzImageHeader",
     [] {
       auto img = test::make_bzimage();
       img.resize(0x210);
       return img;
     },
     BootError::kNotKernel, "truncated bzImage header"},
    {"BzImageWithoutPayload",
     [] {
       auto img = test::make_bzimage();
       img.resize(5 * 512);
       return img;
     },
     BootError::kNotKernel, "truncated bzImage"},
    {"BzImageBadBootFlag", [] { return bz([](BzImageSpec& s) { s.boot_flag = 0x1234; }); },
     BootError::kNotKernel, "boot_flag"},
    {"BzImageOldProtocol", [] { return bz([](BzImageSpec& s) { s.version = 0x020B; }); },
     BootError::kUnsupported, "older than 2.12"},
    {"BzImage32BitOnly", [] { return bz([](BzImageSpec& s) { s.xloadflags = 0; }); },
     BootError::kUnsupported, "XLF_KERNEL_64"},
    {"BzImageInitSizeBeyondRam",
     [] { return bz([](BzImageSpec& s) { s.init_size = 200 * kMiB; }); }, BootError::kTooLarge,
     "init_size"},
    {"TruncatedElfHeader",
     [] {
       auto img = test::make_simple_elf();
       img.resize(40);
       return img;
     },
     BootError::kNotKernel, "truncated ELF header"},
    {"Elf32", [] { return elf_with([](Elf64_Ehdr& e) { e.e_ident[EI_CLASS] = ELFCLASS32; }); },
     BootError::kUnsupported, "ELF64"},
    {"ElfBigEndian",
     [] { return elf_with([](Elf64_Ehdr& e) { e.e_ident[EI_DATA] = ELFDATA2MSB; }); },
     BootError::kUnsupported, "big-endian"},
    {"ElfAarch64", [] { return elf_with([](Elf64_Ehdr& e) { e.e_machine = EM_AARCH64; }); },
     BootError::kUnsupported, "not x86-64"},
    {"ElfSharedObject", [] { return elf_with([](Elf64_Ehdr& e) { e.e_type = ET_DYN; }); },
     BootError::kUnsupported, "not an executable"},
    {"ElfProgramHeadersBeyondFile", [] { return elf_with([](Elf64_Ehdr& e) { e.e_phnum = 500; }); },
     BootError::kNotKernel, "program headers"},
    {"ElfNoLoadSegments",
     [] {
       return test::make_elf({{0x100000, 0x100000, 0x10, 0x10, PT_NOTE}}, 0x100000);
     },
     BootError::kNotKernel, "no PT_LOAD"},
    {"ElfSegmentOutsideRam",
     [] {
       return test::make_elf({{0x100000, 0x9000000, 0x10, 0x1000}}, 0x9000000);
     },
     BootError::kTooLarge, "outside guest RAM"},
    {"ElfSegmentInTheBootArea",
     [] {
       return test::make_elf({{0x8000, 0x8000, 0x10, 0x10}}, 0x8000);
     },
     BootError::kUnsupported, "below 1 MiB"},
    {"ElfSegmentDataBeyondFile",
     [] {
       auto img = test::make_simple_elf();
       img.resize(img.size() - 1);
       return img;
     },
     BootError::kNotKernel, "beyond the end of the file"},
    {"ElfFileszAboveMemsz",
     [] {
       return test::make_elf({{0x100000, 0x100000, 0x20, 0x10}}, 0x100000);
     },
     BootError::kNotKernel, "p_filesz > p_memsz"},
    {"ElfSegmentsLargerThanRam",
     [] {
       return test::make_elf({{0x100000, 0x100000, 0x10, 512 * kMiB}}, 0x100000);
     },
     BootError::kTooLarge, "guest RAM has"},
    {"ElfEntryOutsideSegments",
     [] {
       return test::make_elf({{0x100000, 0x100000, 0x10, 0x10}}, 0x500000);
     },
     BootError::kNotKernel, "entry point"},
};

class BadKernelTest : public ::testing::TestWithParam<BadKernel> {};

TEST_P(BadKernelTest, IsRejectedWithFileAndReason) {
  const BadKernel& c = GetParam();
  auto mem = memory::GuestMemory::create_ram(128 * kMiB);
  ASSERT_TRUE(mem.has_value());
  TempFile f(c.image());
  auto r = load_kernel(*mem, make_spec(f.path(), std::nullopt, "console=ttyS0", 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, c.code) << r.error().message();
  std::string msg = r.error().message();
  EXPECT_NE(msg.find(f.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find(c.reason), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Images, BadKernelTest, ::testing::ValuesIn(kBadKernels),
                         [](const auto& info) { return std::string(info.param.name); });

class BadSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create_ram(32 * kMiB);
    ASSERT_TRUE(m.has_value());
    mem_.emplace(std::move(m).value());
  }
  BootErr expect_error(const BootSpec& spec, BootError code) {
    auto r = load_kernel(*mem_, spec);
    EXPECT_FALSE(r.has_value());
    if (r.has_value()) return {};
    EXPECT_EQ(r.error().code, code) << r.error().message();
    return r.error();
  }
  std::optional<memory::GuestMemory> mem_;
  TempFile elf_{test::make_simple_elf()};
};

TEST_F(BadSpecTest, MissingKernel) {
  auto e = expect_error(make_spec("/nonexistent/vmlinux", std::nullopt, "", 1), BootError::kOpen);
  EXPECT_EQ(e.sys_errno, ENOENT);
  EXPECT_NE(e.message().find("/nonexistent/vmlinux"), std::string::npos);
}

TEST_F(BadSpecTest, KernelIsADirectory) {
  auto e = expect_error(make_spec("/tmp", std::nullopt, "", 1), BootError::kRead);
  EXPECT_NE(e.message().find("not a regular file"), std::string::npos);
}

TEST_F(BadSpecTest, UnreadableKernel) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files regardless of their mode";
  TempFile f(test::make_simple_elf());
  chmod(f.path().c_str(), 0);
  auto e = expect_error(make_spec(f.path(), std::nullopt, "", 1), BootError::kOpen);
  EXPECT_EQ(e.sys_errno, EACCES);
}

TEST_F(BadSpecTest, KernelFileLargerThanRam) {
  auto small = memory::GuestMemory::create_ram(4 * kMiB);
  ASSERT_TRUE(small.has_value());
  TempFile big(std::vector<uint8_t>(5 * kMiB, 0));
  auto r = load_kernel(*small, make_spec(big.path(), std::nullopt, "", 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kTooLarge);
  EXPECT_NE(r.error().message().find(big.path()), std::string::npos);
}

TEST_F(BadSpecTest, CmdlineLongerThanCmdlineSize) {
  BzImageSpec s;
  s.cmdline_size = 16;
  TempFile f(test::make_bzimage(s));
  ASSERT_TRUE(load_kernel(*mem_, make_spec(f.path(), std::nullopt, std::string(16, 'a'), 1)));
  auto e = expect_error(make_spec(f.path(), std::nullopt, std::string(17, 'a'), 1),
                        BootError::kCmdlineTooLong);
  EXPECT_NE(e.message().find("at most 16"), std::string::npos) << e.message();
}

TEST_F(BadSpecTest, CmdlineLongerThan4KiB) {
  expect_error(make_spec(elf_.path(), std::nullopt, std::string(4096, 'a'), 1),
               BootError::kCmdlineTooLong);
}

TEST_F(BadSpecTest, VcpuCounts) {
  expect_error(make_spec(elf_.path(), std::nullopt, "", 0), BootError::kBadSpec);
  expect_error(make_spec(elf_.path(), std::nullopt, "", 65), BootError::kBadSpec);
  EXPECT_TRUE(load_kernel(*mem_, make_spec(elf_.path(), std::nullopt, "", 64)).has_value());
}

TEST_F(BadSpecTest, RamTooSmallForTheBootLayout) {
  auto tiny = memory::GuestMemory::create_ram(1 * kMiB);
  ASSERT_TRUE(tiny.has_value());
  auto r = load_kernel(*tiny, make_spec(elf_.path(), std::nullopt, "", 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kMemory);
}

TEST_F(BadSpecTest, MissingInitrd) {
  auto e = expect_error(make_spec(elf_.path(), "/nonexistent/initrd", "", 1), BootError::kOpen);
  EXPECT_NE(e.message().find("initrd /nonexistent/initrd"), std::string::npos) << e.message();
}

TEST_F(BadSpecTest, InitrdLargerThanRam) {
  TempFile rd(std::vector<uint8_t>(33 * kMiB, 0));
  auto e = expect_error(make_spec(elf_.path(), rd.path(), "", 1), BootError::kTooLarge);
  EXPECT_NE(e.message().find(rd.path()), std::string::npos);
}

TEST_F(BadSpecTest, InitrdThatDoesNotFitAboveTheKernel) {
  // 32 MiB RAM, kernel at 16 MiB..17 MiB: a 16 MiB initrd cannot sit above it.
  TempFile kernel(test::make_elf({{0x1000000, 0x1000000, 0x10, kMiB}}, 0x1000000));
  TempFile rd(std::vector<uint8_t>(16 * kMiB, 0));
  auto e = expect_error(make_spec(kernel.path(), rd.path(), "", 1), BootError::kInitrd);
  EXPECT_NE(e.message().find("do not fit"), std::string::npos) << e.message();
}

TEST_F(BadSpecTest, EmptyInitrd) {
  TempFile rd(std::vector<uint8_t>{});
  expect_error(make_spec(elf_.path(), rd.path(), "", 1), BootError::kInitrd);
}

TEST(BootErrorText, EveryCodeHasText) {
  for (auto c : {BootError::kOpen, BootError::kRead, BootError::kNotKernel, BootError::kUnsupported,
                 BootError::kTooLarge, BootError::kCmdlineTooLong, BootError::kInitrd,
                 BootError::kMemory, BootError::kBadSpec}) {
    EXPECT_STRNE(to_string(c), "boot error");
  }
}

}  // namespace
}  // namespace kindling::vmm
