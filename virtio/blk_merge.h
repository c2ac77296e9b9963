// Request merging for virtio-blk, after QEMU's MultiReqBuffer (notes section D).
//
// Within one notify batch, up to 32 parsed requests of one direction are buffered. The buffer
// is submitted when it is full, when the direction changes, before a FLUSH, and at the end of
// the batch. On submission the requests are sorted by sector and contiguous runs become one
// vectored engine request (bounded by IOV_MAX iovecs and the engine's max transfer). When that
// engine request completes, every member completes with the group's status, in sector order.
#pragma once

#include <climits>
#include <cstdint>
#include <vector>

#include "block/io_engine.h"
#include "virtio/blk_request.h"

namespace kindling::virtio {

// Where finished requests go (the device writes the status byte and pushes the used element).
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Request `slot` finished with `status` (VIRTIO_BLK_S_*).
  virtual void complete(uint16_t slot, uint8_t status) = 0;
};

// Limits of one merge buffer; the defaults are QEMU's.
struct MergeLimits {
  bool merge = true;            // false: every request is submitted on its own
  size_t max_requests = 32;     // requests buffered before a forced submission
  size_t max_iovecs = IOV_MAX;  // iovecs in one merged engine request
};

// Counters of what the buffer submitted.
struct MergeCounters {
  uint64_t submissions = 0;      // engine requests (groups and flushes)
  uint64_t merged_groups = 0;    // engine requests carrying more than one guest request
  uint64_t merged_requests = 0;  // guest requests in those groups
};

// Buffers, merges and submits parsed IN/OUT/FLUSH requests; maps completions back.
class MultiReqBuffer {
 public:
  // Every reference must outlive the buffer. Engine cookies are pool slot numbers.
  MultiReqBuffer(RequestPool& pool, block::IoEngine& engine, RequestSink& sink,
                 MergeLimits limits = {});

  // Adds a parsed IN or OUT request (status OK, data_bytes > 0); may submit buffered ones.
  void add(uint16_t slot);
  // Submits the buffered requests (pending writes included), then the FLUSH `slot`.
  void add_flush(uint16_t slot);
  // Submits the buffered requests, then the DISCARD or WRITE_ZEROES `slot` on its own.
  void add_range(uint16_t slot);
  // Submits whatever is buffered (end of a batch). The engine still needs flush_submissions().
  void submit();
  // Completes the members of the engine request the completion belongs to.
  void on_completion(const block::Completion& c);
  // Retries engine requests that met a full engine; call after reaping completions.
  void retry_deferred();

  // Guest requests buffered and not yet given to the engine.
  size_t buffered() const { return buf_.size(); }
  // Engine requests waiting for room in the engine.
  size_t deferred() const { return deferred_.size(); }
  const MergeCounters& counters() const { return counters_; }

 private:
  enum class Op : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
  // One engine request, stored under its first member's slot.
  struct Group {
    Op op = Op::kRead;
    uint64_t offset = 0;
    uint64_t bytes = 0;
    size_t iovecs = 0;
    std::vector<uint16_t> members;  // slots in sector order
    std::vector<iovec> iov;         // concatenated data buffers (merged groups only)
  };

  void start_group(uint16_t leader, Op op);
  bool fits(const Group& g, const VirtIOBlockReq& r) const;
  void send(uint16_t leader);
  bool try_send(uint16_t leader);
  void fail(uint16_t leader);

  RequestPool& pool_;
  block::IoEngine& engine_;
  RequestSink& sink_;
  MergeLimits limits_;
  std::vector<Group> groups_;       // indexed by leader slot
  std::vector<uint16_t> buf_;       // buffered slots, arrival order
  bool buf_write_ = false;          // direction of what is buffered
  std::vector<uint16_t> deferred_;  // leaders refused with kQueueFull, oldest first
  std::vector<uint16_t> done_;      // scratch: members of the group being completed
  MergeCounters counters_;
};

}  // namespace kindling::virtio
