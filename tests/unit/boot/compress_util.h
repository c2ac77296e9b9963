// Compressed kernel payloads for the decompression tests, made with Debian's compressor CLIs the
// way the kernel's build makes them (arch/x86/boot/compressed/Makefile, scripts/Makefile.lib):
// the compressed stream, then the uncompressed size as 4 little-endian bytes (gzip's own ISIZE
// trailer already is that size). A missing compressor is a test failure, never a skip.
#pragma once

#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "boot_test_util.h"
#include "vmm/boot/decompress.h"

namespace kindling::vmm::test {

// One way of compressing a payload.
struct Compressor {
  const char* name;  // test-name suffix
  PayloadFormat format;
  const char* tool;     // the CLI that must be installed (make deps installs it)
  const char* command;  // reads stdin, writes the compressed stream to stdout
  bool appends_size;    // false for gzip: its stream ends with the size already
};

// Every format the kernel can build a bzImage with, and both makers of lzma_alone streams.
inline const Compressor kCompressors[] = {
    {"Gzip", PayloadFormat::kGzip, "gzip", "gzip -9 -n -c", false},
    // scripts/xz_wrap.sh: CRC32 check and the x86 BCJ filter (a smaller dictionary here).
    {"Xz", PayloadFormat::kXz, "xz", "xz --check=crc32 --x86 --lzma2=dict=1MiB -c", true},
    {"XzFormatLzma", PayloadFormat::kLzma, "xz", "xz --format=lzma -6 -c", true},
    {"Lzma", PayloadFormat::kLzma, "lzma", "lzma -6 -c", true},
    {"Lz4", PayloadFormat::kLz4, "lz4", "lz4 -l -9 -q - -", true},
    {"Zstd", PayloadFormat::kZstd, "zstd", "zstd -19 -q -c", true},
    {"Bzip2", PayloadFormat::kBzip2, "bzip2", "bzip2 -9 -c", true},
};

// The compressor of kCompressors called `name` (the first one, when none is).
inline const Compressor& compressor(const std::string& name) {
  for (const auto& c : kCompressors) {
    if (name == c.name) return c;
  }
  ADD_FAILURE() << "no compressor " << name;
  return kCompressors[0];
}

// The 4-byte little-endian size the kernel's size_append writes.
inline void append_size(std::vector<uint8_t>& out, uint32_t size) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(size >> (8 * i)));
}

// Runs `c.command` on `data` and returns its output; records a test failure (and returns an
// empty vector) when the tool is missing or fails.
inline std::vector<uint8_t> compress(const Compressor& c, const std::vector<uint8_t>& data) {
  std::string probe = std::string("command -v ") + c.tool + " >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    ADD_FAILURE() << "compressor '" << c.tool << "' is not installed (make deps installs it)";
    return {};
  }
  TempFile in(data);
  std::string cmd = std::string(c.command) + " < " + in.path();
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "cannot run '" << cmd << "'";
    return {};
  }
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.insert(out.end(), buf, buf + n);
  int status = pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.empty()) {
    ADD_FAILURE() << "'" << cmd << "' failed (status " << status << ", " << out.size()
                  << " bytes out)";
    return {};
  }
  return out;
}

// `data` compressed by `c` and laid out like a bzImage payload: stream + size trailer.
inline std::vector<uint8_t> kernel_payload(const Compressor& c, const std::vector<uint8_t>& data) {
  auto out = compress(c, data);
  if (c.appends_size && !out.empty()) append_size(out, static_cast<uint32_t>(data.size()));
  return out;
}

// `n` bytes that compress somewhat, like code: short random words, some repeated.
inline std::vector<uint8_t> sample_bytes(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v;
  v.reserve(n);
  while (v.size() < n) {
    if (v.size() > 64 && rng() % 3 == 0) {
      size_t from = rng() % (v.size() - 32);
      size_t len = 4 + rng() % 28;
      for (size_t i = 0; i < len && v.size() < n; ++i) v.push_back(v[from + i]);
    } else {
      v.push_back(static_cast<uint8_t>(rng()));
    }
  }
  return v;
}

}  // namespace kindling::vmm::test
