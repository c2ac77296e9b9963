// The io_uring engine: the image as a registered (fixed) file, guest RAM as registered buffers
// where the kernel allows it (READ_FIXED / WRITE_FIXED for single-buffer operations, READV /
// WRITEV otherwise), one io_uring_submit per batch, completions announced on the engine's
// eventfd, FLUSH as FSYNC with DATASYNC, DISCARD / WRITE_ZEROES as FALLOCATE.
#pragma once

#include <liburing.h>

#include <memory>
#include <utility>
#include <vector>

#include "block/aligned_engine.h"

namespace kindling::block {

class RawImage;

// Owns an initialised io_uring; io_uring_queue_exit on destruction.
class UringRing {
 public:
  UringRing() = default;
  UringRing(UringRing&& o) noexcept : ring_(o.ring_), live_(std::exchange(o.live_, false)) {}
  UringRing& operator=(UringRing&&) = delete;
  ~UringRing();
  // io_uring_queue_init(entries); -errno on failure.
  int init(unsigned entries);
  io_uring* get() { return &ring_; }

 private:
  io_uring ring_{};
  bool live_ = false;
};

// The io_uring engine. Single-threaded.
class UringEngine final : public AlignedEngine {
 public:
  // `image` must outlive the engine. Fails with kEngineSetup when the kernel refuses io_uring
  // (ENOSYS, EPERM under kernel.io_uring_disabled) or lacks READV/WRITEV/FSYNC; make_engine()
  // then falls back to libaio.
  static Result<std::unique_ptr<UringEngine>, BlockErr> create(RawImage& image,
                                                               size_t max_in_flight);
  // Waits for the kernel operations in flight (their results are dropped).
  ~UringEngine() override;

  Result<void, BlockErr> flush_submissions() override;
  // Registers `regions` (split in pieces of at most 1 GiB, the kernel's limit) as fixed
  // buffers; on failure (RLIMIT_MEMLOCK, an old kernel) logs one line and goes on without.
  // Registration pins the pages: all of guest RAM becomes resident.
  void register_memory(std::span<const iovec> regions) override;

  // How many fixed buffers are registered (0: none; tests).
  size_t fixed_buffers() const { return fixed_.size(); }
  // Operations that went as READ_FIXED / WRITE_FIXED (tests, stats).
  uint64_t fixed_ops() const { return fixed_ops_; }
  // Tests only (fault injection): makes `fd` the registered file later operations use.
  bool replace_file_for_testing(int fd) {
    return io_uring_register_files_update(ring_.get(), 0, &fd, 1) == 1;
  }
  // Whether DISCARD / WRITE_ZEROES go to the kernel as IORING_OP_FALLOCATE (else inline).
  bool kernel_fallocate() const { return kernel_fallocate_; }

 private:
  UringEngine(RawImage& image, EventFd notifier, UringRing ring, size_t max_in_flight,
              bool kernel_fallocate);
  void start(const KernelOp& op) override;
  void collect_completions() override;
  void submit();
  // The fixed buffer holding [base, base + len), or -1.
  int fixed_index(const void* base, size_t len) const;

  UringRing ring_;
  bool kernel_fallocate_;
  std::vector<iovec> fixed_;                              // registered buffers, sorted by address
  std::vector<std::pair<uint64_t, int64_t>> local_done_;  // results known without the kernel
  std::vector<std::pair<uint64_t, int64_t>> local_scratch_;  // local_done_ being completed
  size_t kernel_in_flight_ = 0;  // SQEs handed to io_uring_submit and not yet reaped
  size_t queued_ = 0;            // SQEs prepared and not yet submitted
  unsigned idle_refusals_ = 0;   // submit refusals in a row with nothing in flight
  uint64_t fixed_ops_ = 0;
};

}  // namespace kindling::block
