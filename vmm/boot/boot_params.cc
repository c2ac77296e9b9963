#include "vmm/boot/boot_params.h"

#include <asm/e820.h>

#include <algorithm>

#include "vmm/boot/bzimage.h"
#include "vmm/layout.h"

namespace kindling::vmm {

namespace {

// Boot protocol: before 2.06 the command line was limited to 255 bytes.
constexpr uint32_t kLegacyCmdlineSize = 255;

void add_entry(std::vector<boot_e820_entry>& map, uint64_t addr, uint64_t end, uint32_t type) {
  if (end <= addr || map.size() >= E820_MAX_ENTRIES_ZEROPAGE) return;
  map.push_back(boot_e820_entry{addr, end - addr, type});
}

}  // namespace

setup_header elf_setup_header() {
  setup_header hdr{};
  hdr.boot_flag = kBootFlag;
  hdr.header = kHdrsMagic;
  hdr.version = kElfBootProtocol;
  hdr.type_of_loader = kLoaderTypeUndefined;
  hdr.loadflags = LOADED_HIGH;
  hdr.kernel_alignment = kElfKernelAlignment;
  hdr.initrd_addr_max = kDefaultInitrdAddrMax;
  hdr.cmdline_size = layout::kCmdlineMax - 1;
  hdr.xloadflags = XLF_KERNEL_64;
  return hdr;
}

uint32_t max_cmdline_len(const setup_header& hdr) {
  uint32_t size = hdr.cmdline_size != 0 ? hdr.cmdline_size : kLegacyCmdlineSize;
  return std::min<uint32_t>(size, layout::kCmdlineMax - 1);
}

uint64_t initrd_limit(const setup_header& hdr) {
  uint32_t max = hdr.initrd_addr_max != 0 ? hdr.initrd_addr_max : kDefaultInitrdAddrMax;
  return uint64_t{max} + 1;
}

std::vector<boot_e820_entry> build_e820(const memory::GuestMemory& mem) {
  std::vector<boot_e820_entry> map;
  for (const auto& r : mem.regions()) {
    uint64_t start = r.base.value;
    uint64_t end = start + r.size;
    // Nothing of the MMIO hole is announced, even if a region (in a test) reaches into it.
    if (start < memory::kMmioHoleEnd && end > memory::kMmioHoleStart) {
      if (start < memory::kMmioHoleStart) {
        end = memory::kMmioHoleStart;
      } else {
        start = std::min(end, memory::kMmioHoleEnd);
      }
    }
    if (start == 0) {
      // The legacy area: the MP table (and the BIOS range above it) is reserved.
      add_entry(map, 0, std::min(end, layout::kMpTableAddr), E820_RAM);
      add_entry(map, layout::kMpTableAddr, layout::kHighMemStart, E820_RESERVED);
      add_entry(map, layout::kHighMemStart, end, E820_RAM);
    } else {
      add_entry(map, start, end, E820_RAM);
    }
  }
  return map;
}

Result<void, BootErr> write_boot_params(const memory::GuestMemory& mem,
                                        const BootParamsArgs& args) {
  boot_params bp{};
  bp.hdr = args.hdr;
  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  bp.hdr.vid_mode = kVidModeNormal;
  // Keep LOADED_HIGH (the kernel is above 1 MiB); no heap for the real-mode setup code, which
  // never runs on the 64-bit entry.
  bp.hdr.loadflags = static_cast<uint8_t>((bp.hdr.loadflags | LOADED_HIGH) & ~CAN_USE_HEAP);
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(args.cmdline_addr);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(args.cmdline_addr >> 32);
  bp.hdr.ramdisk_image = static_cast<uint32_t>(args.initrd_addr);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(args.initrd_size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(args.initrd_addr >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(args.initrd_size >> 32);
  bp.acpi_rsdp_addr = args.rsdp_addr;

  auto map = build_e820(mem);
  std::copy(map.begin(), map.end(), bp.e820_table);
  bp.e820_entries = static_cast<uint8_t>(map.size());

  if (auto r = mem.write_obj(memory::GuestAddress(layout::kZeroPageAddr), bp); !r) {
    return memory_error(r.error(), "boot_params");
  }
  return {};
}

}  // namespace kindling::vmm
