// ELF64 x86-64 kernel loader (vmlinux, the test guest): PT_LOAD segments go to their p_paddr,
// the 64-bit entry is e_entry translated to a physical address.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// True when the image starts with the ELF magic (any class or machine).
bool looks_like_elf(std::span<const uint8_t> image);

// Validates an ELF64 x86-64 executable and copies its loadable segments into guest RAM
// (zero-filling p_memsz beyond p_filesz). The returned setup header is the one the boot loader
// makes for ELF kernels. `path` only names the file in errors.
Result<LoadedKernel, BootErr> load_elf(const memory::GuestMemory& mem,
                                       std::span<const uint8_t> image, const std::string& path);

}  // namespace kindling::vmm
