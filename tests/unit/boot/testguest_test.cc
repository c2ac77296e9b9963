// The test guest the build produces is an ELF64 x86-64 kernel the boot loader accepts.
#include <elf.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "boot_test_util.h"
#include "vmm/boot/boot_loader.h"

namespace kindling::vmm {
namespace {

using test::make_spec;

TEST(TestGuest, IsAnElf64KernelLinkedAtOneMiB) {
  std::ifstream in(KINDLING_TESTGUEST_ELF, std::ios::binary);
  ASSERT_TRUE(in) << KINDLING_TESTGUEST_ELF;
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GE(bytes.size(), sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof(eh));
  EXPECT_EQ(eh.e_ident[EI_CLASS], ELFCLASS64);
  EXPECT_EQ(eh.e_machine, EM_X86_64);
  EXPECT_EQ(eh.e_type, ET_EXEC);
  EXPECT_EQ(eh.e_entry, 0x100000u);

  auto mem = memory::GuestMemory::create_ram(64 << 20);
  ASSERT_TRUE(mem.has_value());
  auto e = load_kernel(*mem, make_spec(KINDLING_TESTGUEST_ELF, std::nullopt, "test=hello", 2));
  ASSERT_TRUE(e.has_value()) << e.error().message();
  EXPECT_EQ(e->rip, 0x100000u);
  // The first loaded bytes are the entry code from the file's first PT_LOAD.
  Elf64_Phdr ph;
  std::memcpy(&ph, bytes.data() + eh.e_phoff, sizeof(ph));
  ASSERT_EQ(ph.p_type, PT_LOAD);
  std::vector<uint8_t> loaded(64);
  ASSERT_TRUE(mem->read(memory::GuestAddress(ph.p_paddr), loaded).has_value());
  EXPECT_TRUE(std::equal(loaded.begin(), loaded.end(), bytes.begin() + ph.p_offset));
}

}  // namespace
}  // namespace kindling::vmm
