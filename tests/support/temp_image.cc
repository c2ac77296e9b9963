#include "tests/support/temp_image.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "virtio/blk_request.h"

namespace kindling::test {

bool is_tmpfs(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

std::string disk_temp_dir() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("KINDLING_TEST_DISK_DIR")) candidates.emplace_back(env);
  candidates.emplace_back("/var/tmp");
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) != nullptr) candidates.emplace_back(cwd);
  for (const std::string& dir : candidates) {
    if (::access(dir.c_str(), W_OK) == 0 && !is_tmpfs(dir)) return dir;
  }
  return {};
}

void fill_random(uint8_t* data, size_t len, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<uint8_t>(x >> 24);
  }
}

TempImage::TempImage(uint64_t size, ImageFs fs, uint32_t seed) : shadow_(size) {
  std::string dir = fs == ImageFs::kDisk ? disk_temp_dir() : "/dev/shm";
  if (dir.empty()) {
    std::fprintf(stderr, "TempImage: no disk (non-tmpfs) directory to write to\n");
    std::abort();
  }
  path_ = dir + "/kindling-img-XXXXXX";
  int fd = ::mkstemp(path_.data());
  if (fd < 0) {
    std::fprintf(stderr, "TempImage: mkstemp in %s: %s\n", dir.c_str(), std::strerror(errno));
    std::abort();
  }
  fill_random(shadow_.data(), shadow_.size(), seed);
  size_t done = 0;
  while (done < shadow_.size()) {
    ssize_t n =
        ::pwrite(fd, shadow_.data() + done, shadow_.size() - done, static_cast<off_t>(done));
    if (n <= 0) {
      std::fprintf(stderr, "TempImage: write %s: %s\n", path_.c_str(), std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

TempImage::~TempImage() {
  ::unlink(path_.c_str());
}

void TempImage::shadow_write(uint64_t offset, const uint8_t* data, size_t len) {
  std::memcpy(shadow_.data() + offset, data, len);
}

std::vector<uint8_t> TempImage::read_back() const {
  std::vector<uint8_t> out(shadow_.size());
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

::testing::AssertionResult TempImage::matches_shadow() const {
  const std::vector<uint8_t> got = read_back();
  if (got.size() != shadow_.size()) {
    return ::testing::AssertionFailure()
           << path_ << ": read back " << got.size() << " bytes, expected " << shadow_.size();
  }
  const auto [at, want] = std::mismatch(got.begin(), got.end(), shadow_.begin());
  if (at == got.end()) return ::testing::AssertionSuccess();
  const uint64_t offset = static_cast<uint64_t>(at - got.begin());
  char values[48];
  std::snprintf(values, sizeof(values), "0x%02x, expected 0x%02x", *at, *want);
  return ::testing::AssertionFailure()
         << path_ << ": first difference at byte " << offset << " (sector "
         << offset / virtio::kSectorSize << "): " << values;
}

}  // namespace kindling::test
