// Helpers for the boot loader tests: temp files and synthetic bzImage / ELF kernels.
#pragma once

#include <asm/bootparam.h>
#include <elf.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/bzimage.h"

namespace kindling::vmm::test {

// A file under $TMPDIR with the given contents, removed on destruction.
class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    const char* dir = getenv("TMPDIR");
    path_ = std::string(dir ? dir : "/tmp") + "/kindling-boot-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) {
      size_t done = 0;
      while (done < bytes.size()) {
        ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      close(fd);
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Knobs of a synthetic bzImage.
struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020F;
  uint16_t xloadflags = XLF_KERNEL_64;
  uint16_t boot_flag = 0xAA55;
  uint8_t relocatable = 0;
  uint32_t kernel_alignment = 0x200000;
  uint32_t init_size = 0x40000;
  uint32_t cmdline_size = 2048;
  uint32_t initrd_addr_max = 0x7FFFFFFF;
  size_t payload_size = 0x2000;
};

// Setup sectors + a payload whose byte i is (i * 7 + 1) & 0xFF.
inline std::vector<uint8_t> make_bzimage(const BzImageSpec& s = {}) {
  size_t setup = (size_t{s.setup_sects ? s.setup_sects : 4u} + 1) * 512;
  std::vector<uint8_t> img(setup + s.payload_size, 0);
  setup_header hdr{};
  size_t hdr_end = kSetupHeaderOffset + sizeof(hdr);
  hdr.setup_sects = s.setup_sects;
  hdr.boot_flag = s.boot_flag;
  hdr.jump = static_cast<uint16_t>(0xEB | ((hdr_end - 0x202) << 8));
  hdr.header = kHdrsMagic;
  hdr.version = s.version;
  hdr.loadflags = LOADED_HIGH;
  hdr.relocatable_kernel = s.relocatable;
  hdr.kernel_alignment = s.kernel_alignment;
  hdr.xloadflags = s.xloadflags;
  hdr.cmdline_size = s.cmdline_size;
  hdr.initrd_addr_max = s.initrd_addr_max;
  hdr.init_size = s.init_size;
  std::memcpy(img.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
  for (size_t i = 0; i < s.payload_size; ++i) img[setup + i] = static_cast<uint8_t>(i * 7 + 1);
  return img;
}

// One PT_LOAD segment of a synthetic ELF.
struct ElfSegment {
  uint64_t vaddr;
  uint64_t paddr;
  uint64_t filesz;
  uint64_t memsz;
  uint32_t type = PT_LOAD;
};

// An ELF64 x86-64 executable: header, program headers, then each segment's file bytes
// (byte i of segment k is k * 16 + i % 16 + 1).
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
    for (uint64_t i = 0; i < segs[k].filesz; ++i)
      out.push_back(static_cast<uint8_t>(k * 16 + i % 16 + 1));
  }
  return out;
}

// A one-segment ELF kernel at 1 MiB (virtual = physical) with a bss tail.
inline std::vector<uint8_t> make_simple_elf() {
  return make_elf({{0x100000, 0x100000, 0x1000, 0x3000}}, 0x100000);
}

}  // namespace kindling::vmm::test
