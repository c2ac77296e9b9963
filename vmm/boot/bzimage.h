// bzImage loader (Linux x86 boot protocol, Documentation/arch/x86/boot.rst). A payload in a
// format kindling knows (vmm/boot/decompress.h) is decompressed on the host and the vmlinux ELF
// inside is loaded like an ELF kernel; otherwise the protected-mode part goes to 1 MiB (or the
// kernel's alignment) and is entered at load + 0x200 in 64-bit mode, to decompress itself.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// Offset of the setup header in a bzImage (and in boot_params).
inline constexpr uint64_t kSetupHeaderOffset = 0x1F1;
// The "HdrS" magic at offset 0x202, read as a little-endian u32.
inline constexpr uint32_t kHdrsMagic = 0x53726448;
// The boot_flag value at offset 0x1FE.
inline constexpr uint16_t kBootFlag = 0xAA55;
// Oldest boot protocol with xloadflags (XLF_KERNEL_64): 2.12.
inline constexpr uint16_t kMinBzImageProtocol = 0x020C;
// Offset of the 64-bit entry point from the start of the protected-mode kernel.
inline constexpr uint64_t kBzImage64EntryOffset = 0x200;

// True when the image carries the "HdrS" magic of a bzImage.
bool looks_like_bzimage(std::span<const uint8_t> image);

// Validates the image's setup header and payload fields, then loads the decompressed vmlinux
// (entry = its ELF entry, boot_params header = the bzImage's) or, for a payload compression
// kindling does not know, the protected-mode part. A known but corrupt payload is an error.
// `path` only names the file in errors.
Result<LoadedKernel, BootErr> load_bzimage(const memory::GuestMemory& mem,
                                           std::span<const uint8_t> image, const std::string& path);

}  // namespace kindling::vmm
