// load_kernel() on synthetic bzImages whose payload is a compressed vmlinux: the ELF inside is
// loaded at its physical addresses with the bzImage's own setup header; an unknown compression
// falls back to loading the protected-mode code; bad payload fields and streams are errors.
#include <asm/bootparam.h>
#include <gtest/gtest.h>

#include <functional>

#include "boot_test_util.h"
#include "compress_util.h"
#include "tests/support/unpacked.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

using test::BzImageSpec;
using test::Compressor;
using test::TempFile;

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kVirtBase = 0xffffffff81000000ULL;
// Where a real bzImage's payload starts: after the decompressor's head code.
constexpr uint32_t kPayloadOffset = 0x2A3;

// A vmlinux-like ELF (text at 16 MiB, data + bss at 20 MiB, entry through the high mapping)
// followed by relocation-like bytes, as vmlinux.bin + vmlinux.relocs are compressed together.
std::vector<uint8_t> vmlinux_with_relocs() {
  auto elf = test::make_elf(
      {{kVirtBase, 0x1000000, 0x3000, 0x3000}, {kVirtBase + 0x400000, 0x1400000, 0x800, 0x6000}},
      kVirtBase + 0x40);
  elf.insert(elf.end(), 100, 0xEE);
  return elf;
}

// A bzImage (protocol 2.15, cmdline_size 2047, initrd_addr_max 64 MiB, KASLR_FLAG set) whose
// payload is `payload`.
std::vector<uint8_t> bzimage_with(std::vector<uint8_t> payload) {
  BzImageSpec s;
  s.cmdline_size = 2047;
  s.initrd_addr_max = 0x3FFFFFF;
  s.loadflags = LOADED_HIGH | KASLR_FLAG;
  s.payload = std::move(payload);
  s.payload_offset = kPayloadOffset;
  return test::make_bzimage(s);
}

class BzImagePayloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create_ram(128 * kMiB);
    ASSERT_TRUE(m.has_value());
    mem_.emplace(std::move(m).value());
  }
  Result<BootEntry, BootErr> boot(const std::string& kernel, std::string cmdline = "x",
                                  std::optional<std::string> initrd = std::nullopt) {
    return load_kernel(*mem_, test::make_spec(kernel, std::move(initrd), std::move(cmdline), 1));
  }
  std::vector<uint8_t> read(uint64_t addr, size_t len) {
    std::vector<uint8_t> out(len);
    EXPECT_TRUE(mem_->read(memory::GuestAddress(addr), out).has_value());
    return out;
  }
  boot_params zero_page() {
    return *mem_->read_obj<boot_params>(memory::GuestAddress(layout::kZeroPageAddr));
  }

  std::optional<memory::GuestMemory> mem_;
};

// The same for each compressor.
class BzImagePayloadFormatTest : public BzImagePayloadTest,
                                 public ::testing::WithParamInterface<Compressor> {};

TEST_P(BzImagePayloadFormatTest, LoadsTheVmlinuxInsideWithTheBzImageHeader) {
  auto elf = vmlinux_with_relocs();
  auto payload = test::kernel_payload(GetParam(), elf);
  ASSERT_FALSE(payload.empty());
  TempFile kernel(bzimage_with(payload));
  // Dirty the bss: the ELF loader must zero it.
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x1400000), std::vector<uint8_t>(0x6000, 0xAA)));
  TempFile rd(std::vector<uint8_t>(5000, 0x5A));

  auto e = boot(kernel.path(), "console=ttyS0", rd.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, 0x1000040u);  // the ELF entry, not load + 0x200
  // Segments at their physical addresses, byte for byte from the ELF (their file bytes follow
  // the ELF header and the two program headers).
  const size_t text_at = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr);
  auto text = read(0x1000000, 0x3000);
  EXPECT_TRUE(std::equal(text.begin(), text.end(), elf.begin() + text_at));
  auto data = read(0x1400000, 0x6000);
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 0x800, elf.begin() + text_at + 0x3000));
  EXPECT_TRUE(std::all_of(data.begin() + 0x800, data.end(), [](uint8_t b) { return b == 0; }));
  // Nothing of the protected-mode code went to 1 MiB.
  auto low = read(kMiB, 0x1000);
  EXPECT_TRUE(std::all_of(low.begin(), low.end(), [](uint8_t b) { return b == 0; }));

  // boot_params carries the bzImage's header, not the one made for a bare ELF.
  boot_params bp = zero_page();
  EXPECT_EQ(unpacked(bp.hdr.header), kHdrsMagic);
  EXPECT_EQ(unpacked(bp.hdr.version), 0x020F);
  EXPECT_EQ(unpacked(bp.hdr.cmdline_size), 2047u);
  EXPECT_EQ(unpacked(bp.hdr.initrd_addr_max), 0x3FFFFFFu);
  EXPECT_EQ(unpacked(bp.hdr.payload_offset), kPayloadOffset);
  EXPECT_EQ(bp.hdr.loadflags & KASLR_FLAG, 0);
  EXPECT_NE(bp.hdr.loadflags & LOADED_HIGH, 0);
  // The initrd sits below the header's initrd_addr_max (64 MiB).
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_image), 64 * kMiB - 8192);
  EXPECT_EQ(unpacked(bp.hdr.ramdisk_size), 5000u);
}

INSTANTIATE_TEST_SUITE_P(Formats, BzImagePayloadFormatTest, ::testing::ValuesIn(test::kCompressors),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(BzImagePayloadTest, CmdlineSizeIsTheBzImages) {
  TempFile kernel(
      bzimage_with(test::kernel_payload(test::compressor("Lz4"), vmlinux_with_relocs())));
  ASSERT_TRUE(boot(kernel.path(), std::string(2047, 'a')).has_value());
  auto r = boot(kernel.path(), std::string(2048, 'a'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kCmdlineTooLong) << r.error().message();
}

TEST_F(BzImagePayloadTest, UnknownCompressionFallsBackToTheKernelsDecompressor) {
  // An LZO payload: kindling has no LZO decoder, the kernel decompresses itself.
  std::vector<uint8_t> lzo = {0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A};
  lzo.resize(0x400, 0x33);
  auto img = bzimage_with(lzo);
  TempFile kernel(img);
  auto e = boot(kernel.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, kMiB + 0x200);
  auto loaded = read(kMiB, img.size() - 5 * 512);
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), img.begin() + 5 * 512));
}

TEST(BzImagePayloadBomb, InflatingPastGuestRamIsTooLarge) {
  auto mem = memory::GuestMemory::create_ram(16 * kMiB);
  ASSERT_TRUE(mem.has_value());
  const Compressor& lz4 = test::compressor("Lz4");
  auto payload = test::compress(lz4, std::vector<uint8_t>(64 * kMiB, 0));
  ASSERT_FALSE(payload.empty());
  test::append_size(payload, kMiB);  // a lying trailer: only streaming with a cap catches it
  TempFile kernel(bzimage_with(payload));
  auto r = load_kernel(*mem, test::make_spec(kernel.path(), std::nullopt, "", 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kTooLarge) << r.error().message();
  EXPECT_NE(r.error().message().find(kernel.path()), std::string::npos);
  EXPECT_NE(r.error().message().find("inflates past"), std::string::npos) << r.error().message();
}

struct BadPayload {
  const char* name;
  std::function<std::vector<uint8_t>()> image;
  BootError code;
  const char* reason;  // a substring of the message
};

std::vector<uint8_t> bz(std::function<void(BzImageSpec&)> tweak) {
  BzImageSpec s;
  tweak(s);
  return test::make_bzimage(s);
}

std::vector<uint8_t> lz4_payload(const std::vector<uint8_t>& data) {
  return test::kernel_payload(test::compressor("Lz4"), data);
}

const BadPayload kBadPayloads[] = {
    {"OffsetBeyondFile",
     [] {
       return bz([](BzImageSpec& s) {
         s.payload_offset = 0x2001;
         s.payload_length = 1;
       });
     },
     BootError::kNotKernel, "lies beyond the end of the file"},
    {"LengthBeyondFile", [] { return bz([](BzImageSpec& s) { s.payload_length = 0x2001; }); },
     BootError::kNotKernel, "lies beyond the end of the file"},
    {"OffsetPlusLengthOverflows",
     [] {
       return bz([](BzImageSpec& s) {
         s.payload_offset = 0xFFFFFFFF;
         s.payload_length = 0xFFFFFFFF;
       });
     },
     BootError::kNotKernel, "lies beyond the end of the file"},
    {"ZeroLength", [] { return bz([](BzImageSpec& s) { s.payload_length = 0; }); },
     BootError::kNotKernel, "empty payload"},
    {"TruncatedStream",
     [] {
       auto p = lz4_payload(vmlinux_with_relocs());
       p.resize(p.size() / 2);
       test::append_size(p, static_cast<uint32_t>(vmlinux_with_relocs().size()));
       return bzimage_with(p);
     },
     BootError::kNotKernel, "lz4 payload is truncated"},
    {"CorruptStream",
     [] {
       auto p = test::kernel_payload(test::compressor("Gzip"), vmlinux_with_relocs());
       std::fill(p.begin() + 20, p.begin() + 40, 0xFF);
       return bzimage_with(p);
     },
     BootError::kNotKernel, "gzip payload is corrupt"},
    {"NotAnElf", [] { return bzimage_with(lz4_payload(test::sample_bytes(5000))); },
     BootError::kNotKernel, "lz4 payload is not an ELF vmlinux"},
    {"ElfOutsideRam",
     [] {
       return bzimage_with(
           lz4_payload(test::make_elf({{0x9000000, 0x9000000, 0x10, 0x1000}}, 0x9000000)));
     },
     BootError::kTooLarge, "(lz4 payload): segment at 0x9000000"},
    {"TrailerBeyondRam",
     [] {
       auto p = lz4_payload(vmlinux_with_relocs());
       p.resize(p.size() - 4);
       test::append_size(p, 200 * kMiB);
       return bzimage_with(p);
     },
     BootError::kTooLarge, "says it inflates to 209715200 bytes"},
};

class BadPayloadTest : public ::testing::TestWithParam<BadPayload> {};

TEST_P(BadPayloadTest, IsRejectedWithFileAndReason) {
  const BadPayload& c = GetParam();
  auto mem = memory::GuestMemory::create_ram(128 * kMiB);
  ASSERT_TRUE(mem.has_value());
  auto img = c.image();
  ASSERT_FALSE(HasFailure());
  TempFile f(img);
  auto r = load_kernel(*mem, test::make_spec(f.path(), std::nullopt, "", 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, unpacked(c.code)) << r.error().message();
  std::string msg = r.error().message();
  EXPECT_NE(msg.find(f.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find(c.reason), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Payloads, BadPayloadTest, ::testing::ValuesIn(kBadPayloads),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kindling::vmm
