// PVH direct boot (Xen's HVM start-of-day ABI, used by Firecracker and Cloud Hypervisor for
// Linux's PVH entry): the kernel ELF announces a 32-bit entry point in an ELF note; the VMM
// enters it in flat 32-bit protected mode with paging off and EBX pointing at hvm_start_info,
// which names the command line, the initrd (module 0), the ACPI RSDP and the memory map.
// Structures from xen/include/public/arch-x86/hvm/start_info.h (version 1).
#pragma once

#include <elf.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// xen/include/public/elfnote.h: the note type carrying the 32-bit physical entry point.
inline constexpr uint32_t kXenElfNotePhys32Entry = 18;
// start_info.h: hvm_start_info.magic ("xEn3" with bit 7 of 'E' set).
inline constexpr uint32_t kHvmStartMagic = 0x336ec578;
// The start-info version kindling writes (1: with the memory map).
inline constexpr uint32_t kHvmStartVersion = 1;

// start_info.h: struct hvm_start_info (56 bytes in version 1).
struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

// start_info.h: struct hvm_modlist_entry.
struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

// start_info.h: struct hvm_memmap_table_entry (types as in e820).
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

// The PVH entry point of an ELF64 image whose program headers are `phdrs` (already checked to
// lie in the file), from a "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY in a PT_NOTE segment;
// nullopt when there is none. A malformed note segment, or an entry outside 32-bit space, is
// an error naming `who`.
Result<std::optional<uint64_t>, BootErr> find_pvh_entry(std::span<const uint8_t> image,
                                                        std::span<const Elf64_Phdr> phdrs,
                                                        const std::string& who);

// What hvm_start_info points at.
struct PvhArgs {
  uint64_t cmdline_addr = 0;
  uint64_t initrd_addr = 0;  // 0: no module
  uint64_t initrd_size = 0;
  uint64_t rsdp_addr = 0;  // 0: no ACPI tables
};

// Writes hvm_start_info, the module list and the memory map (build_e820's map) at
// layout::kPvhStartInfoAddr...; the vCPU's EBX must point at the start info.
Result<void, BootErr> write_pvh_start_info(const memory::GuestMemory& mem, const PvhArgs& args);

}  // namespace kindling::vmm
