#include "block/raw_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>

#include "block/bounce_pool.h"
#include "common/log.h"

namespace kindling::block {
namespace {

constexpr uint64_t kSector = 512;
constexpr uint32_t kMaxProbeAlign = 4096;

// The direct-I/O alignment an fd needs; offset 0 when it cannot do direct I/O.
struct DioAlign {
  uint32_t mem = 0;
  uint32_t offset = 0;
};

// statx(STATX_DIOALIGN), Linux >= 6.1. Returns false when the kernel does not report it.
bool dio_align_from_statx(int fd, DioAlign* out) {
#ifdef STATX_DIOALIGN
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return false;
  if ((stx.stx_mask & STATX_DIOALIGN) == 0) return false;
  // Both zero means the file cannot do direct I/O at all.
  out->mem = stx.stx_dio_mem_align;
  out->offset = stx.stx_dio_offset_align;
  return true;
#else
  // Headers older than Linux 6.1 lack the statx fields: fall back to probing.
  (void)fd;
  (void)out;
  return false;
#endif
}

// Finds the smallest offset/length alignment that an O_DIRECT pread accepts (512..4096).
// Memory alignment is taken to be the same, which is always sufficient.
bool dio_align_from_probe(int fd, DioAlign* out) {
  AlignedBuffer buf = AlignedBuffer::allocate(kMaxProbeAlign, kMaxProbeAlign);
  if (!buf) return false;
  for (uint32_t align = 512; align <= kMaxProbeAlign; align *= 2) {
    if (::pread(fd, buf.data(), align, 0) >= 0) {
      out->mem = align;
      out->offset = align;
      return true;
    }
    if (errno != EINVAL) return false;
  }
  return false;
}

// Size of a regular file or block device.
Result<uint64_t, BlockErr> image_size(int fd, const struct stat& st, const std::string& path) {
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) return fail_errno(BlockError::kStat, path);
    return bytes;
  }
  return fail(BlockError::kOpen, EINVAL, path + ": not a regular file or block device");
}

// Turns O_DIRECT off on an fd opened with it (keeps the fd and therefore its lock).
bool drop_direct(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0;
}

}  // namespace

Result<RawImage, BlockErr> RawImage::open(const std::string& path, bool read_only,
                                          const OpenOptions& options) {
  RawImage img;
  img.path_ = path;
  img.read_only_ = read_only;
  int base_flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  int fd = -1;
  if (options.allow_direct) {
    fd = ::open(path.c_str(), base_flags | O_DIRECT);
    // tmpfs and a few others refuse O_DIRECT at open time with EINVAL.
    if (fd < 0 && errno == EINVAL)
      fd = ::open(path.c_str(), base_flags);
    else if (fd >= 0)
      img.direct_ = true;
  } else {
    fd = ::open(path.c_str(), base_flags);
  }
  if (fd < 0) return fail_errno(BlockError::kOpen, path);
  img.fd_.reset(fd);

  // flock locks belong to the open file description, so two opens conflict even in one process.
  if (::flock(fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return fail_errno(BlockError::kLocked, path);
    return fail_errno(BlockError::kOpen, path + ": flock");
  }

  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(BlockError::kStat, path);
  auto size = image_size(fd, st, path);
  if (!size) return size.take_error();
  img.size_ = *size;
  img.dev_ = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
  img.ino_ = st.st_ino;
  if (img.size_ == 0 || img.size_ % kSector != 0) {
    return fail(BlockError::kBadSize, 0, path + ": " + std::to_string(img.size_) + " bytes");
  }

  const char* buffered_why =
      options.allow_direct ? "its filesystem does not support O_DIRECT" : "direct I/O is disabled";
  if (img.direct_) {
    DioAlign a;
    bool known = false;
    if (S_ISBLK(st.st_mode)) {
      int lbs = 0;
      if (::ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0) {
        a.mem = a.offset = static_cast<uint32_t>(lbs);
        known = true;
      }
    }
    if (!known) known = dio_align_from_statx(fd, &a);
    if (!known) known = dio_align_from_probe(fd, &a);
    if (options.fail_align_probe) known = false;
    // Unknown (no statx report, and no aligned read of 512..4096 bytes worked): buffered.
    bool usable = known && a.offset != 0;  // statx reports 0 when the file cannot do direct I/O
    if (!known) buffered_why = "its direct-I/O alignment could not be found (statx, probe reads)";
    a.mem = std::max({a.mem, options.force_mem_align, uint32_t{1}});
    a.offset = std::max({a.offset, options.force_offset_align, uint32_t{512}});
    if (!usable || !std::has_single_bit(a.offset) || !std::has_single_bit(a.mem)) {
      img.direct_ = false;
    } else if (img.size_ % a.offset != 0) {
      // A widened write of the last block would grow the file: stay buffered instead.
      img.direct_ = false;
      buffered_why = "its size is not a multiple of the direct-I/O block size";
    } else {
      img.mem_align_ = a.mem;
      img.offset_align_ = a.offset;
    }
    if (!img.direct_ && !drop_direct(fd)) return fail_errno(BlockError::kOpen, path + ": fcntl");
  }

  if (img.direct_) {
    KLOG_INFO("%s: O_DIRECT, memory alignment %u, offset alignment %u, %llu bytes", path.c_str(),
              img.mem_align_, img.offset_align_, static_cast<unsigned long long>(img.size_));
  } else if (options.allow_direct) {
    KLOG_WARN("%s: buffered I/O through the page cache: %s", path.c_str(), buffered_why);
  } else {
    KLOG_INFO("%s: buffered I/O through the page cache: %s", path.c_str(), buffered_why);
  }
  return img;
}

}  // namespace kindling::block
