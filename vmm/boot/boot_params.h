// The zero page (struct boot_params from <asm/bootparam.h>): the setup header the kernel reads,
// the command line and initrd pointers, and the e820 memory map.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <vector>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// Boot protocol version kindling announces for ELF kernels (2.15).
inline constexpr uint16_t kElfBootProtocol = 0x020F;
// type_of_loader for a boot loader without an assigned id.
inline constexpr uint8_t kLoaderTypeUndefined = 0xFF;
// vid_mode "normal" (boot protocol: 0xFFFF = NORMAL_VGA).
inline constexpr uint16_t kVidModeNormal = 0xFFFF;
// kernel_alignment announced for ELF kernels (x86-64 CONFIG_PHYSICAL_ALIGN default, 2 MiB).
inline constexpr uint32_t kElfKernelAlignment = 0x200000;
// initrd_addr_max announced for ELF kernels, and assumed when a header leaves it 0.
inline constexpr uint32_t kDefaultInitrdAddrMax = 0x7FFFFFFF;

// The setup header kindling writes for an ELF kernel (the file has none): boot_flag, "HdrS",
// version 2.15, loader type 0xFF, LOADED_HIGH, kernel_alignment, cmdline_size, initrd_addr_max.
setup_header elf_setup_header();

// Longest command line (without NUL) the header allows, capped by kindling's 4 KiB area.
uint32_t max_cmdline_len(const setup_header& hdr);
// One past the highest address the initrd may occupy according to the header.
uint64_t initrd_limit(const setup_header& hdr);

// The e820 map of `mem`: RAM [0, 0x9FC00), reserved [0x9FC00, 1 MiB), the rest of every region
// as RAM; nothing in the MMIO hole. At most E820_MAX_ENTRIES_ZEROPAGE entries.
std::vector<boot_e820_entry> build_e820(const memory::GuestMemory& mem);

// What the zero page points at besides the kernel.
struct BootParamsArgs {
  setup_header hdr{};         // from the loader; completed here (loader type, pointers)
  uint64_t cmdline_addr = 0;  // where the NUL-terminated command line is
  uint64_t initrd_addr = 0;   // 0 when there is no initrd
  uint64_t initrd_size = 0;
  uint64_t rsdp_addr = 0;  // the ACPI RSDP (boot_params.acpi_rsdp_addr), 0 for none
};

// Builds the zero page and writes it at layout::kZeroPageAddr.
Result<void, BootErr> write_boot_params(const memory::GuestMemory& mem, const BootParamsArgs& args);

}  // namespace kindling::vmm
