// Host-side decompression of a bzImage's payload (the compressed vmlinux between payload_offset
// and payload_offset + payload_length), so the kernel's own decompressor need not run in the
// guest. The payload is laid out as the kernel builds it (arch/x86/boot/compressed/Makefile,
// scripts/Makefile.lib size_append, mkpiggy.c): one compressed stream followed by the
// uncompressed size as a 4-byte little-endian number (for gzip, the stream's own ISIZE field).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/boot/boot_loader.h"

namespace kindling::vmm {

// Compression formats of a bzImage payload, recognised by their magic bytes.
enum class PayloadFormat {
  kUnknown,  // not one kindling decompresses (LZO, plain data): the guest decompresses it
  kGzip,     // 1F 8B (zlib)
  kXz,       // FD 37 7A 58 5A 00 (liblzma; the kernel adds the x86 BCJ filter)
  kLzma,     // 5D 00 00: lzma_alone, i.e. `lzma -9` (liblzma)
  kLz4,      // 02 21 4C 18: LZ4 legacy framing of `lz4 -l` (liblz4)
  kZstd,     // 28 B5 2F FD (libzstd)
  kBzip2,    // "BZh" (libbz2)
};

// Bytes of the uncompressed-size trailer at the end of a kernel payload.
inline constexpr uint64_t kPayloadSizeTrailer = 4;

// Recognises the payload's compression format from its first bytes.
PayloadFormat detect_payload_format(std::span<const uint8_t> payload);

// Short name of a format for messages: "gzip", "xz", "lzma", "lz4", "zstd", "bzip2", "unknown".
const char* payload_format_name(PayloadFormat format);

// Decompresses a kernel payload (stream + 4-byte size trailer) into host memory. Never holds
// more than `limit` bytes of output: a payload that inflates past it (or whose trailer says it
// would) is kTooLarge. A truncated or corrupt stream, or one whose output size differs from the
// trailer, is kNotKernel; an unknown format is kUnsupported. `who` names the file in errors
// ("kernel /path/bzImage").
Result<std::vector<uint8_t>, BootErr> decompress_payload(std::span<const uint8_t> payload,
                                                         uint64_t limit, const std::string& who);

}  // namespace kindling::vmm
