// The request layer both engines share: direct-I/O alignment (bounce buffers, widening,
// read-modify-write and its serialization), EOF zero-fill, result mapping, completion queue.
// An engine only performs the kernel operations this layer asks for.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "block/bounce_pool.h"
#include "block/io_engine.h"

namespace kindling::block {

class RawImage;

// One kernel operation on the image file that a request needs (a request needs one to three).
struct KernelOp {
  // kFallocate: fallocate(fd, mode, offset, length) with `mode` one of FALLOC_FL_*.
  enum class Kind : uint8_t { kRead, kWrite, kSync, kFallocate };
  Kind kind = Kind::kRead;
  uint64_t offset = 0;         // file offset (aligned when the image is direct)
  uint64_t length = 0;         // kFallocate only: bytes
  int mode = 0;                // kFallocate only
  const iovec* iov = nullptr;  // stays valid until the op is completed
  int iovcnt = 0;
  uint64_t tag = 0;  // hand back to AlignedIo::complete() with the result
};

// What an engine gives the layer: a way to start kernel operations.
class OpSink {
 public:
  virtual ~OpSink() = default;
  // Starts `op` now or queues it; its result must reach AlignedIo::complete() exactly once.
  // Must not call back into AlignedIo synchronously.
  virtual void start(const KernelOp& op) = 0;
};

// The kinds of request a caller submits.
enum class ReqKind : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

// Tracks up to `max_in_flight` requests from acceptance to reaping. Single-threaded.
// Bounce buffers come from a pool with a fixed budget: a request that finds the budget spent
// waits (in arrival order) until earlier requests return theirs; one that alone needs more than
// the whole budget fails with -E2BIG.
class AlignedIo {
 public:
  AlignedIo(const RawImage& image, size_t max_in_flight, OpSink& sink,
            size_t bounce_budget = kBounceBudgetBytes);
  ~AlignedIo();
  AlignedIo(const AlignedIo&) = delete;
  AlignedIo& operator=(const AlignedIo&) = delete;

  // Accepts a request and starts (or, for a conflicting read-modify-write, queues) its kernel
  // operations. kQueueFull when max_in_flight requests are accepted and not yet reaped.
  Result<void, BlockErr> submit(ReqKind kind, uint64_t offset, std::span<const iovec> iov,
                                uint64_t cookie);
  // Accepts a DISCARD or WRITE_ZEROES of [offset, offset + length) (see IoEngine). Tries
  // fallocate first (discard: PUNCH_HOLE; write-zeroes: PUNCH_HOLE when `may_unmap`, else
  // ZERO_RANGE, both KEEP_SIZE); a mode the file system refuses (EOPNOTSUPP) is not tried again,
  // and the request falls back: a discard does nothing (it is advisory), a write-zeroes tries
  // ZERO_RANGE, then writes zeroes in kZeroChunkBytes pieces (a direct image needs the range
  // aligned to its offset_align for that, else -EINVAL).
  Result<void, BlockErr> submit_range(ReqKind kind, uint64_t offset, uint64_t length,
                                      bool may_unmap, uint64_t cookie);
  // The result of a kernel op started through the sink (bytes or -errno).
  void complete(uint64_t tag, int64_t result);
  // Moves finished requests into `out`; returns how many.
  size_t take(std::span<Completion> out);

  // Finished requests waiting in take().
  size_t ready() const { return ready_count_; }
  // Requests accepted and not yet taken.
  size_t in_flight() const { return accepted_; }
  // Requests accepted so far / those that went through a bounce buffer.
  uint64_t requests() const { return requests_; }
  uint64_t bounced() const { return bounced_; }
  // Bounce buffers allocated (stops growing in the steady state).
  uint64_t bounce_allocations() const { return pool_.allocations(); }
  // The bounce pool (its budget, bytes held and high-water mark).
  const BouncePool& bounce_pool() const { return pool_; }
  // Requests waiting for bounce memory.
  size_t bounce_waiting() const { return bounce_waiting_.size(); }

 private:
  struct Slot;
  enum class Part : uint8_t { kMain = 0, kHead = 1, kTail = 2 };

  void plan(Slot& s);
  void admit(uint32_t idx);
  // Counts an accepted request and answers at once what needs no I/O (a write, discard or
  // write-zeroes to a read-only image; zero length); otherwise takes a slot for it with the
  // common fields set. nullopt: already answered.
  std::optional<uint32_t> take_slot(ReqKind kind, uint64_t offset, uint64_t length, bool writes,
                                    uint64_t cookie);
  void start_bounce_waiters();
  void fail_slot(uint32_t idx, int64_t result);
  void start_slot(uint32_t idx);
  void start_main(uint32_t idx);
  void start_op(uint32_t idx, Part part, KernelOp::Kind kind, uint64_t offset, const iovec* iov,
                int iovcnt);
  void start_range(uint32_t idx);
  void range_done(uint32_t idx, int64_t result);
  void start_zero_chunk(uint32_t idx);
  void finish(uint32_t idx, int64_t result);
  void push_ready(uint64_t cookie, int64_t result);
  bool conflicts(const Slot& s, size_t waiting_before) const;
  void start_waiters();
  void remove_active(uint32_t idx);

  const RawImage& image_;
  OpSink& sink_;
  BouncePool pool_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> active_writes_;   // writes whose kernel ops are running
  size_t active_rmw_ = 0;                 // how many of them read-modify-write
  std::vector<uint32_t> waiting_;         // writes held back by an overlap, FIFO
  std::vector<uint32_t> bounce_waiting_;  // requests waiting for bounce memory, FIFO
  std::vector<Completion> ready_;         // ring of finished requests
  size_t ready_head_ = 0;
  size_t ready_count_ = 0;
  size_t accepted_ = 0;
  uint64_t requests_ = 0;
  uint64_t bounced_ = 0;
  bool punch_refused_ = false;       // the file system refused FALLOC_FL_PUNCH_HOLE
  bool zero_range_refused_ = false;  // ... FALLOC_FL_ZERO_RANGE
  AlignedBuffer zeroes_;  // kZeroChunkBytes of zeroes for the write-zeroes fallback (lazily)
};

// The bytes one write of the write-zeroes fallback covers: kZeroIovecs iovecs that all point at
// one zeroed buffer of kZeroChunkBytes / kZeroIovecs bytes.
inline constexpr size_t kZeroIovecs = 16;
inline constexpr uint64_t kZeroChunkBytes = uint64_t{1} << 20;

}  // namespace kindling::block
