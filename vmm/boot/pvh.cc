#include "vmm/boot/pvh.h"

#include <cstring>
#include <vector>

#include "vmm/boot/boot_params.h"
#include "vmm/layout.h"

namespace kindling::vmm {

namespace {

// ELF notes are 4-byte aligned on x86-64 Linux kernels (gABI: 4 or 8 for ELF64; Linux's
// vmlinux uses 4).
constexpr uint64_t kNoteAlign = 4;
constexpr char kXenNoteName[] = "Xen";

uint64_t align4(uint64_t v) {
  return (v + kNoteAlign - 1) & ~(kNoteAlign - 1);
}

// Walks one PT_NOTE segment [off, off+len) of the file.
Result<std::optional<uint64_t>, BootErr> scan_notes(std::span<const uint8_t> seg,
                                                    const std::string& who) {
  uint64_t pos = 0;
  while (seg.size() - pos >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh;
    std::memcpy(&nh, seg.data() + pos, sizeof(nh));
    pos += sizeof(nh);
    // GUEST: sizes from the file; each step is checked against what is left of the segment.
    const uint64_t name_len = align4(nh.n_namesz);
    const uint64_t desc_len = align4(nh.n_descsz);
    if (name_len > seg.size() - pos || desc_len > seg.size() - pos - name_len) {
      return fail(BootError::kNotKernel, 0, who + ": ELF note runs past its segment");
    }
    const uint8_t* name = seg.data() + pos;
    const uint8_t* desc = name + name_len;
    pos += name_len + desc_len;
    if (nh.n_type != kXenElfNotePhys32Entry || nh.n_namesz != sizeof(kXenNoteName) ||
        std::memcmp(name, kXenNoteName, sizeof(kXenNoteName)) != 0) {
      continue;
    }
    // Linux writes the entry with _ASM_PTR (8 bytes on x86-64); others write 4.
    if (nh.n_descsz != 4 && nh.n_descsz != 8) {
      return fail(BootError::kNotKernel, 0,
                  who + ": PVH entry note has a " + std::to_string(nh.n_descsz) + "-byte value");
    }
    uint64_t entry = 0;
    std::memcpy(&entry, desc, nh.n_descsz);
    if (entry > UINT32_MAX) {
      return fail(BootError::kNotKernel, 0,
                  who + ": PVH entry " + hex(entry) + " is beyond 4 GiB (a 32-bit entry)");
    }
    return std::optional<uint64_t>(entry);
  }
  return std::optional<uint64_t>();
}

}  // namespace

Result<std::optional<uint64_t>, BootErr> find_pvh_entry(std::span<const uint8_t> image,
                                                        std::span<const Elf64_Phdr> phdrs,
                                                        const std::string& who) {
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type != PT_NOTE) continue;
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset) {
      return fail(BootError::kNotKernel, 0, who + ": ELF note segment lies beyond the file");
    }
    auto found = scan_notes(image.subspan(ph.p_offset, ph.p_filesz), who);
    if (!found || found->has_value()) return found;
  }
  return std::optional<uint64_t>();
}

Result<void, BootErr> write_pvh_start_info(const memory::GuestMemory& mem, const PvhArgs& args) {
  const std::vector<boot_e820_entry> e820 = build_e820(mem);
  std::vector<HvmMemmapEntry> memmap;
  for (const boot_e820_entry& e : e820) memmap.push_back({e.addr, e.size, e.type, 0});
  static_assert(layout::kPvhModlistAddr >= layout::kPvhStartInfoAddr + sizeof(HvmStartInfo));
  static_assert(layout::kPvhMemmapAddr >= layout::kPvhModlistAddr + sizeof(HvmModlistEntry));
  static_assert(layout::kPvhMemmapAddr + E820_MAX_ENTRIES_ZEROPAGE * sizeof(HvmMemmapEntry) <=
                layout::kPvhEnd);

  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = kHvmStartVersion;
  info.cmdline_paddr = args.cmdline_addr;
  info.rsdp_paddr = args.rsdp_addr;
  info.memmap_paddr = layout::kPvhMemmapAddr;
  info.memmap_entries = static_cast<uint32_t>(memmap.size());
  if (args.initrd_addr != 0) {
    info.nr_modules = 1;
    info.modlist_paddr = layout::kPvhModlistAddr;
    const HvmModlistEntry initrd{args.initrd_addr, args.initrd_size, 0, 0};
    if (auto r = mem.write_obj(memory::GuestAddress(layout::kPvhModlistAddr), initrd); !r) {
      return memory_error(r.error(), "PVH module list");
    }
  }
  std::span<const uint8_t> map_bytes(reinterpret_cast<const uint8_t*>(memmap.data()),
                                     memmap.size() * sizeof(HvmMemmapEntry));
  if (auto r = mem.write(memory::GuestAddress(layout::kPvhMemmapAddr), map_bytes); !r) {
    return memory_error(r.error(), "PVH memory map");
  }
  if (auto r = mem.write_obj(memory::GuestAddress(layout::kPvhStartInfoAddr), info); !r) {
    return memory_error(r.error(), "PVH start info");
  }
  return {};
}

}  // namespace kindling::vmm
