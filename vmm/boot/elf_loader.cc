#include "vmm/boot/elf_loader.h"

#include <elf.h>

#include <cstring>
#include <limits>
#include <vector>

#include "vmm/boot/boot_params.h"
#include "vmm/boot/pvh.h"
#include "vmm/layout.h"

namespace kindling::vmm {

namespace {

// Virtual addresses at or above this are the kernel's high mapping, not physical addresses.
constexpr uint64_t kKernelVirtualBase = 0xffffffff80000000ULL;

// Checks the ELF identification and header; fills `ehdr`.
Result<void, BootErr> check_header(std::span<const uint8_t> image, const std::string& who,
                                   Elf64_Ehdr& ehdr) {
  if (image.size() < EI_NIDENT || !looks_like_elf(image)) {
    return fail(BootError::kNotKernel, 0, who + ": no ELF magic");
  }
  if (image[EI_CLASS] != ELFCLASS64) {
    return fail(BootError::kUnsupported, 0, who + ": not an ELF64 file (32-bit ELF?)");
  }
  if (image[EI_DATA] != ELFDATA2LSB) {
    return fail(BootError::kUnsupported, 0, who + ": big-endian ELF");
  }
  if (image.size() < sizeof(Elf64_Ehdr)) {
    return fail(BootError::kNotKernel, 0,
                who + ": truncated ELF header (" + std::to_string(image.size()) + " bytes)");
  }
  std::memcpy(&ehdr, image.data(), sizeof(ehdr));
  if (ehdr.e_machine != EM_X86_64) {
    return fail(BootError::kUnsupported, 0,
                who + ": ELF machine " + std::to_string(ehdr.e_machine) + " is not x86-64");
  }
  if (ehdr.e_type != ET_EXEC) {
    return fail(BootError::kUnsupported, 0,
                who + ": ELF is not an executable (e_type " + std::to_string(ehdr.e_type) + ")");
  }
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum == 0) {
    return fail(BootError::kNotKernel, 0, who + ": ELF has no usable program headers");
  }
  uint64_t ph_bytes = uint64_t{ehdr.e_phnum} * sizeof(Elf64_Phdr);
  if (ehdr.e_phoff > image.size() || ph_bytes > image.size() - ehdr.e_phoff) {
    return fail(BootError::kNotKernel, 0, who + ": truncated ELF program headers");
  }
  return {};
}

// Checks one PT_LOAD header against the file and guest RAM.
Result<void, BootErr> check_segment(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                                    const std::string& who, const Elf64_Phdr& ph) {
  std::string seg = who + ": segment at " + hex(ph.p_paddr);
  if (ph.p_filesz > ph.p_memsz) {
    return fail(BootError::kNotKernel, 0, seg + " has p_filesz > p_memsz");
  }
  if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset) {
    return fail(BootError::kNotKernel, 0, seg + " lies beyond the end of the file");
  }
  if (ph.p_paddr + ph.p_memsz < ph.p_paddr) {
    return fail(BootError::kNotKernel, 0, seg + " wraps around the address space");
  }
  if (ph.p_paddr < layout::kHighMemStart) {
    return fail(BootError::kUnsupported, 0, seg + " overlaps the boot area below 1 MiB");
  }
  if (!mem.contains(memory::GuestAddress(ph.p_paddr), ph.p_memsz)) {
    return fail(BootError::kTooLarge, 0,
                seg + " (" + std::to_string(ph.p_memsz) + " bytes) is outside guest RAM");
  }
  return {};
}

// Copies a checked segment and zero-fills its tail (bss).
Result<void, BootErr> load_segment(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                                   const std::string& who, const Elf64_Phdr& ph) {
  auto dst = mem.slice(memory::GuestAddress(ph.p_paddr), ph.p_memsz);
  if (!dst) return memory_error(dst.error(), who + ": segment at " + hex(ph.p_paddr));
  std::memcpy(dst->data(), image.data() + ph.p_offset, ph.p_filesz);
  std::memset(dst->data() + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
  return {};
}

// Translates e_entry to a physical address through the segment that maps it.
Result<uint64_t, BootErr> physical_entry(const std::vector<Elf64_Phdr>& loads, uint64_t entry,
                                         const std::string& who) {
  for (const auto& ph : loads) {
    if (entry >= ph.p_vaddr && entry - ph.p_vaddr < ph.p_memsz) {
      return entry - ph.p_vaddr + ph.p_paddr;
    }
  }
  if (entry < kKernelVirtualBase) {
    for (const auto& ph : loads) {
      if (entry >= ph.p_paddr && entry - ph.p_paddr < ph.p_memsz) return entry;
    }
  }
  return fail(BootError::kNotKernel, 0,
              who + ": entry point " + hex(entry) + " is outside the loadable segments");
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Result<LoadedKernel, BootErr> load_elf(const memory::GuestMemory& mem,
                                       std::span<const uint8_t> image, const std::string& path) {
  const std::string who = "kernel " + path;
  Elf64_Ehdr ehdr;
  if (auto r = check_header(image, who, ehdr); !r) return r.take_error();

  // GUEST: the program headers come from the kernel file; each is checked before use.
  std::vector<Elf64_Phdr> phdrs(ehdr.e_phnum);
  std::memcpy(phdrs.data(), image.data() + ehdr.e_phoff, phdrs.size() * sizeof(Elf64_Phdr));
  std::vector<Elf64_Phdr> loads;
  uint64_t total = 0;
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    total += std::min<uint64_t>(ph.p_memsz, std::numeric_limits<uint64_t>::max() - total);
    loads.push_back(ph);
  }
  if (loads.empty()) return fail(BootError::kNotKernel, 0, who + ": ELF has no PT_LOAD segments");
  if (total > mem.total_size()) {
    return fail(BootError::kTooLarge, 0,
                who + ": segments need " + std::to_string(total) + " bytes, guest RAM has " +
                    std::to_string(mem.total_size()));
  }
  for (const auto& ph : loads) {
    if (auto r = check_segment(mem, image, who, ph); !r) return r.take_error();
  }
  LoadedKernel k;
  k.start = std::numeric_limits<uint64_t>::max();
  for (const auto& ph : loads) {
    if (auto r = load_segment(mem, image, who, ph); !r) return r.take_error();
    k.start = std::min(k.start, ph.p_paddr);
    k.end = std::max(k.end, ph.p_paddr + ph.p_memsz);
  }
  auto entry = physical_entry(loads, ehdr.e_entry, who);
  if (!entry) return entry.take_error();
  k.entry = *entry;
  k.hdr = elf_setup_header();
  auto pvh = find_pvh_entry(image, phdrs, who);
  if (!pvh) return pvh.take_error();
  k.pvh_entry = *pvh;
  return k;
}

}  // namespace kindling::vmm
