// A raw disk image file (or block device): opened, locked, sized, and probed for direct I/O.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "block/io_engine.h"
#include "common/unique_fd.h"

namespace kindling::block {

// How to open an image beyond read-only/read-write. The defaults are what a VM wants.
struct OpenOptions {
  // Try O_DIRECT; false forces the buffered path (the page cache).
  bool allow_direct = true;
  // Tests: pretend the image needs a larger offset/length alignment than the probe found
  // (e.g. 4096 on a 512-aligned disk) so the widening/read-modify-write path runs. 0 = probe.
  uint32_t force_offset_align = 0;
  // Tests: pretend guest buffers need this memory alignment. 0 = probe.
  uint32_t force_mem_align = 0;
  // Tests: behave as if no way of finding the direct-I/O alignment worked (the image then
  // falls back to buffered I/O).
  bool fail_align_probe = false;
};

// An open, locked image. Writers hold an exclusive flock, readers a shared one, for the life of
// the object. The size is a non-zero multiple of 512 bytes.
class RawImage {
 public:
  // Opens `path`; O_DIRECT when its filesystem supports it, else buffered (logged once).
  static Result<RawImage, BlockErr> open(const std::string& path, bool read_only,
                                         const OpenOptions& options = {});

  RawImage(RawImage&&) noexcept = default;
  RawImage& operator=(RawImage&&) noexcept = default;

  // The open file; engines read and write it, the image keeps owning it.
  int fd() const { return fd_.get(); }
  // The path given to open(), for messages.
  const std::string& path() const { return path_; }
  // Size in bytes (a non-zero multiple of 512).
  uint64_t size_bytes() const { return size_; }
  bool read_only() const { return read_only_; }
  // True when the fd is O_DIRECT: requests must honour mem_align() and offset_align().
  bool direct() const { return direct_; }
  // Required alignment of buffer addresses for direct I/O (1 when buffered).
  uint32_t mem_align() const { return mem_align_; }
  // Required alignment of file offsets and lengths: the logical block size (512 when buffered).
  uint32_t offset_align() const { return offset_align_; }
  // st_dev / st_ino of the image: a stable identity for the virtio-blk serial (GET_ID).
  uint64_t device_id() const { return dev_; }
  uint64_t inode() const { return ino_; }

 private:
  RawImage() = default;

  UniqueFd fd_;
  std::string path_;
  uint64_t size_ = 0;
  bool read_only_ = false;
  bool direct_ = false;
  uint32_t mem_align_ = 1;
  uint32_t offset_align_ = 512;
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
};

}  // namespace kindling::block
