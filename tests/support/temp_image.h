// Temporary disk images for block tests: a file of random bytes plus a shadow copy in memory.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kindling::test {

// Where a temp image lives: a disk filesystem (O_DIRECT works) or tmpfs (buffered only).
enum class ImageFs { kDisk, kTmpfs };

// A directory on a disk filesystem, never tmpfs: $KINDLING_TEST_DISK_DIR, /var/tmp, or the
// current directory (the build tree under ctest). Empty when none qualifies.
std::string disk_temp_dir();
// True when `path` is on tmpfs.
bool is_tmpfs(const std::string& path);

// A temporary file filled with seeded random bytes, removed on destruction. `shadow()` is the
// expected content: tests apply every write to it and compare reads against it.
class TempImage {
 public:
  // An image of `size` bytes (any size, 0 included) on `fs`. Aborts when it cannot be made.
  explicit TempImage(uint64_t size, ImageFs fs = ImageFs::kDisk, uint32_t seed = 1);
  ~TempImage();
  TempImage(const TempImage&) = delete;
  TempImage& operator=(const TempImage&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return shadow_.size(); }
  // The expected contents of the file.
  std::vector<uint8_t>& shadow() { return shadow_; }
  // Copies `len` bytes of `data` into the shadow at `offset`.
  void shadow_write(uint64_t offset, const uint8_t* data, size_t len);
  // Reads the whole file back through the page cache (after the engine's writes completed).
  std::vector<uint8_t> read_back() const;
  // Reads the file back and compares it with shadow(); a mismatch names the first differing
  // byte, its sector and both values.
  ::testing::AssertionResult matches_shadow() const;

 private:
  std::string path_;
  std::vector<uint8_t> shadow_;
};

// Deterministic pseudo-random bytes (xorshift) for buffers and image contents.
void fill_random(uint8_t* data, size_t len, uint64_t seed);

}  // namespace kindling::test
