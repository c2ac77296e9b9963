// What a kernel-format loader (bzImage, ELF) hands back to the boot loader, and small helpers
// they share. Internal to the boot loader; tests include it to check loaders one by one.
#pragma once

#include <asm/bootparam.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "common/hex.h"
#include "common/memory/guest_memory.h"
#include "vmm/boot/boot_loader.h"

namespace kindling::vmm {

// A kernel placed in guest memory.
struct LoadedKernel {
  uint64_t entry = 0;  // physical address of the 64-bit entry point
  uint64_t start = 0;  // lowest guest address the kernel occupies
  uint64_t end = 0;    // one past the highest address it occupies or may use (bss, init_size)
  setup_header hdr{};  // setup header for boot_params: the bzImage's own, or one made for an ELF
  std::optional<uint64_t> pvh_entry;  // 32-bit PVH entry from the ELF's Xen note, if any
};

// One past the last byte of the RAM region at guest address 0, clipped to the MMIO hole;
// 0 when no region starts at 0.
inline uint64_t low_ram_end(const memory::GuestMemory& mem) {
  auto regions = mem.regions();
  if (regions.empty() || regions[0].base.value != 0) return 0;
  return std::min(regions[0].size, memory::kMmioHoleStart);
}

// Turns a guest-memory error into a boot error that says what was being written.
inline Unexpected<BootErr> memory_error(const memory::GuestMemory::Err& e,
                                        const std::string& what) {
  return fail(BootError::kMemory, 0, what + ": " + e.message());
}

}  // namespace kindling::vmm
