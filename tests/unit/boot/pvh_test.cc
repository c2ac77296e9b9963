// PVH: the Xen note lookup, the protocol choice (auto, linux, pvh) and hvm_start_info as a
// kernel reads it (magic, command line, initrd module, RSDP, memory map).
#include "vmm/boot/pvh.h"
#include "tests/support/unpacked.h"

#include <gtest/gtest.h>

#include <cstring>

#include "boot_test_util.h"
#include "tests/support/elf_image.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/boot/boot_params.h"
#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

using test::ElfSegment;
using test::TempFile;

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kKernelAt = 16 * kMiB;
constexpr uint64_t kPvhEntry = kKernelAt + 0x500;

// The bytes of one ELF note (4-byte aligned name and descriptor).
std::vector<uint8_t> note(const std::string& name, uint32_t type, std::vector<uint8_t> desc) {
  std::vector<uint8_t> out;
  for (uint32_t word :
       {static_cast<uint32_t>(name.size() + 1), static_cast<uint32_t>(desc.size()), type}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(word >> (8 * i)));
  }
  for (char c : name) out.push_back(static_cast<uint8_t>(c));
  out.push_back(0);
  while (out.size() % 4) out.push_back(0);
  for (uint8_t b : desc) out.push_back(b);
  while (out.size() % 4) out.push_back(0);
  return out;
}

std::vector<uint8_t> le(uint64_t v, size_t n) {
  std::vector<uint8_t> out(n);
  std::memcpy(out.data(), &v, n);
  return out;
}

// A kernel ELF with one PT_LOAD at kKernelAt and a PT_NOTE holding `notes`.
std::vector<uint8_t> kernel_with_notes(const std::vector<uint8_t>& notes) {
  std::vector<ElfSegment> segs = {{kKernelAt, kKernelAt, 0x1000, 0x2000}};
  if (!notes.empty()) {
    segs.push_back(ElfSegment{0, 0, notes.size(), notes.size(), PT_NOTE, notes});
  }
  return test::make_elf(segs, kKernelAt);
}

// What Linux's vmlinux carries: other Xen notes first, then PHYS32_ENTRY with an 8-byte value.
std::vector<uint8_t> linux_like_notes(uint64_t entry) {
  auto out = note("GNU", 3, std::vector<uint8_t>(20, 0xAB));
  auto xen_other = note("Xen", 6, {'l', 'i', 'n', 'u', 'x', 0});
  auto pvh = note("Xen", kXenElfNotePhys32Entry, le(entry, 8));
  out.insert(out.end(), xen_other.begin(), xen_other.end());
  out.insert(out.end(), pvh.begin(), pvh.end());
  return out;
}

class PvhTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create_ram(128 * kMiB);
    ASSERT_TRUE(m.has_value());
    mem_.emplace(std::move(m).value());
  }
  Result<BootEntry, BootErr> boot(const std::vector<uint8_t>& image, BootProtocol protocol,
                                  std::optional<std::string> initrd = std::nullopt) {
    TempFile f(image);
    BootSpec spec = test::make_spec(f.path(), std::move(initrd), "console=ttyS0 pvh", 1);
    spec.protocol = protocol;
    return load_kernel(*mem_, spec);
  }
  template <typename T>
  T read(uint64_t addr) {
    return *mem_->read_obj<T>(memory::GuestAddress(addr));
  }
  std::optional<memory::GuestMemory> mem_;
};

TEST(PvhNote, FoundAmongOtherNotes) {
  for (size_t width : {4u, 8u}) {
    auto notes = note("GNU", 3, std::vector<uint8_t>(7, 1));
    auto pvh = note("Xen", kXenElfNotePhys32Entry, le(kPvhEntry, width));
    notes.insert(notes.end(), pvh.begin(), pvh.end());
    const auto img = kernel_with_notes(notes);
    Elf64_Phdr phdrs[2];
    std::memcpy(phdrs, img.data() + sizeof(Elf64_Ehdr), sizeof(phdrs));
    auto e = find_pvh_entry(img, phdrs, "k");
    ASSERT_TRUE(e.has_value()) << e.error().message();
    ASSERT_TRUE(e->has_value()) << width;
    EXPECT_EQ(**e, kPvhEntry);
  }
}

TEST(PvhNote, AbsentOrNotXenOrOtherType) {
  for (const auto& notes : {std::vector<uint8_t>{}, note("Xex", 18, le(kPvhEntry, 8)),
                            note("Xen", 17, le(kPvhEntry, 8))}) {
    const auto img = kernel_with_notes(notes);
    Elf64_Ehdr eh;
    std::memcpy(&eh, img.data(), sizeof(eh));
    std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
    std::memcpy(phdrs.data(), img.data() + eh.e_phoff, phdrs.size() * sizeof(Elf64_Phdr));
    auto e = find_pvh_entry(img, phdrs, "k");
    ASSERT_TRUE(e.has_value()) << e.error().message();
    EXPECT_FALSE(e->has_value());
  }
}

TEST(PvhNote, MalformedNotesAreErrors) {
  // A name size that runs past the segment, a 2-byte entry, an entry beyond 4 GiB.
  auto overrun = note("Xen", 18, le(kPvhEntry, 8));
  overrun[0] = 0xF0;
  for (const auto& notes :
       {overrun, note("Xen", 18, le(0x1234, 2)), note("Xen", 18, le(0x1'0000'0000ULL, 8))}) {
    const auto img = kernel_with_notes(notes);
    Elf64_Phdr phdrs[2];
    std::memcpy(phdrs, img.data() + sizeof(Elf64_Ehdr), sizeof(phdrs));
    auto e = find_pvh_entry(img, phdrs, "kernel k");
    ASSERT_FALSE(e.has_value());
    EXPECT_EQ(e.error().code, BootError::kNotKernel);
    EXPECT_NE(e.error().message().find("kernel k"), std::string::npos);
  }
}

TEST_F(PvhTest, AutoChoosesPvhWhenTheNoteIsThere) {
  auto e = boot(kernel_with_notes(linux_like_notes(kPvhEntry)), BootProtocol::kAuto);
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->protocol, BootProtocol::kPvh);
  EXPECT_EQ(e->rip, kPvhEntry);
  EXPECT_EQ(e->rbx, layout::kPvhStartInfoAddr);
  EXPECT_EQ(e->code_selector, layout::kCode32Selector);
  EXPECT_EQ(e->cr3, 0u);  // paging off
}

TEST_F(PvhTest, AutoWithoutNoteAndForcedLinuxTakeTheLinuxEntry) {
  auto plain = boot(kernel_with_notes({}), BootProtocol::kAuto);
  ASSERT_TRUE(plain.has_value()) << plain.error().message();
  EXPECT_EQ(plain->protocol, BootProtocol::kLinux);
  EXPECT_EQ(plain->rip, kKernelAt);
  EXPECT_EQ(plain->rsi, layout::kZeroPageAddr);
  auto forced = boot(kernel_with_notes(linux_like_notes(kPvhEntry)), BootProtocol::kLinux);
  ASSERT_TRUE(forced.has_value()) << forced.error().message();
  EXPECT_EQ(forced->protocol, BootProtocol::kLinux);
  EXPECT_EQ(forced->rip, kKernelAt);
  EXPECT_EQ(forced->code_selector, layout::kCodeSelector);
}

TEST_F(PvhTest, ForcedPvhNeedsTheNoteAndAnEntryInsideTheKernel) {
  auto none = boot(kernel_with_notes({}), BootProtocol::kPvh);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, BootError::kNoPvhEntry);
  EXPECT_NE(none.error().message().find("CONFIG_PVH"), std::string::npos);
  auto outside = boot(kernel_with_notes(linux_like_notes(kKernelAt + 0x10000)), BootProtocol::kPvh);
  ASSERT_FALSE(outside.has_value());
  EXPECT_NE(outside.error().message().find("outside the loaded kernel"), std::string::npos);
}

TEST_F(PvhTest, StartInfoNamesCmdlineInitrdRsdpAndMemoryMap) {
  TempFile rd(std::vector<uint8_t>(3000, 0x5A));
  auto e = boot(kernel_with_notes(linux_like_notes(kPvhEntry)), BootProtocol::kAuto, rd.path());
  ASSERT_TRUE(e.has_value()) << e.error().message();
  const auto info = read<HvmStartInfo>(layout::kPvhStartInfoAddr);
  EXPECT_EQ(unpacked(info.magic), 0x336ec578u);
  EXPECT_EQ(unpacked(info.version), 1u);
  EXPECT_EQ(unpacked(info.cmdline_paddr), layout::kCmdlineAddr);
  EXPECT_EQ(unpacked(info.rsdp_paddr), e->rsdp_addr);
  EXPECT_EQ(unpacked(info.reserved), 0u);
  ASSERT_EQ(unpacked(info.nr_modules), 1u);
  const auto mod = read<HvmModlistEntry>(info.modlist_paddr);
  const auto bp = read<boot_params>(layout::kZeroPageAddr);
  EXPECT_EQ(unpacked(mod.paddr), unpacked(bp.hdr.ramdisk_image));
  EXPECT_EQ(unpacked(mod.size), 3000u);
  EXPECT_EQ(read<uint8_t>(mod.paddr), 0x5A);
  // The memory map is the e820 map, entry for entry.
  const auto e820 = build_e820(*mem_);
  ASSERT_EQ(unpacked(info.memmap_entries), e820.size());
  for (size_t i = 0; i < e820.size(); ++i) {
    const auto m = read<HvmMemmapEntry>(info.memmap_paddr + i * sizeof(HvmMemmapEntry));
    EXPECT_EQ(unpacked(m.addr), unpacked(e820[i].addr));
    EXPECT_EQ(unpacked(m.size), unpacked(e820[i].size));
    EXPECT_EQ(unpacked(m.type), unpacked(e820[i].type));
  }
}

TEST_F(PvhTest, NoInitrdNoModule) {
  auto e = boot(kernel_with_notes(linux_like_notes(kPvhEntry)), BootProtocol::kPvh);
  ASSERT_TRUE(e.has_value()) << e.error().message();
  const auto info = read<HvmStartInfo>(layout::kPvhStartInfoAddr);
  EXPECT_EQ(unpacked(info.nr_modules), 0u);
  EXPECT_EQ(unpacked(info.modlist_paddr), 0u);
}

TEST(BootProtocolNames, RoundTrip) {
  for (auto p : {BootProtocol::kAuto, BootProtocol::kLinux, BootProtocol::kPvh}) {
    EXPECT_EQ(parse_boot_protocol(to_string(p)), p);
  }
  EXPECT_FALSE(parse_boot_protocol("PVH").has_value());
  EXPECT_FALSE(parse_boot_protocol("").has_value());
}

}  // namespace
}  // namespace kindling::vmm
