// Synthetic ELF64 x86-64 executables for the kernel-loader tests and the tiny integration-test
// kernels. Header-only: the boot tests use it without linking the rest of tests/support.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kindling::test {

// One program header of a synthetic ELF and its file bytes.
struct ElfSegment {
  uint64_t vaddr;
  uint64_t paddr;
  uint64_t filesz;
  uint64_t memsz;
  uint32_t type = PT_LOAD;
  // The segment's file bytes (`filesz` of them); empty: byte i of segment k is
  // k * 16 + i % 16 + 1.
  std::vector<uint8_t> bytes = {};
};

// An ELF64 x86-64 executable: header, program headers, then each segment's file bytes.
inline std::vector<uint8_t> make_elf(const std::vector<ElfSegment>& segs, uint64_t entry) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size());
  std::vector<uint8_t> out(sizeof(eh) + segs.size() * sizeof(Elf64_Phdr));
  std::memcpy(out.data(), &eh, sizeof(eh));
  for (size_t k = 0; k < segs.size(); ++k) {
    Elf64_Phdr ph{};
    ph.p_type = segs[k].type;
    ph.p_flags = PF_R | PF_X;
    ph.p_offset = out.size();
    ph.p_vaddr = segs[k].vaddr;
    ph.p_paddr = segs[k].paddr;
    ph.p_filesz = segs[k].filesz;
    ph.p_memsz = segs[k].memsz;
    ph.p_align = 0x1000;
    std::memcpy(out.data() + sizeof(eh) + k * sizeof(ph), &ph, sizeof(ph));
    if (!segs[k].bytes.empty()) {
      out.insert(out.end(), segs[k].bytes.begin(), segs[k].bytes.end());
      continue;
    }
    for (uint64_t i = 0; i < segs[k].filesz; ++i)
      out.push_back(static_cast<uint8_t>(k * 16 + i % 16 + 1));
  }
  return out;
}

}  // namespace kindling::test
