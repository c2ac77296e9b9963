// The synchronous engine: preadv/pwritev/fdatasync run inline at submission. The fallback
// where libaio is unavailable, and the oracle the other engines are tested against.
#pragma once

#include <memory>
#include <vector>

#include "block/aligned_io.h"
#include "block/io_engine.h"
#include "common/event_fd.h"

namespace kindling::block {

class RawImage;

// Runs each request to completion inside read()/write()/flush(); completions wait for reap().
class SyncEngine final : public IoEngine, private OpSink {
 public:
  // `image` must outlive the engine.
  static Result<std::unique_ptr<SyncEngine>, BlockErr> create(RawImage& image,
                                                              size_t max_in_flight);

  int notifier_fd() const override { return notifier_.fd(); }
  Result<void, BlockErr> read(uint64_t offset, std::span<const iovec> iov,
                              uint64_t cookie) override;
  Result<void, BlockErr> write(uint64_t offset, std::span<const iovec> iov,
                               uint64_t cookie) override;
  Result<void, BlockErr> flush(uint64_t cookie) override;
  // Nothing is ever queued: every request already ran.
  Result<void, BlockErr> flush_submissions() override { return {}; }
  size_t reap(std::span<Completion> out) override;
  size_t in_flight() const override { return io_.in_flight(); }
  size_t max_in_flight() const override { return max_in_flight_; }
  uint64_t max_transfer_bytes() const override { return kMaxTransferBytes; }
  EngineStats stats() const override;

 private:
  SyncEngine(RawImage& image, EventFd notifier, size_t max_in_flight);
  void start(const KernelOp& op) override;
  Result<void, BlockErr> submit(ReqKind kind, uint64_t offset, std::span<const iovec> iov,
                                uint64_t cookie);
  int64_t execute(const KernelOp& op);

  RawImage& image_;
  EventFd notifier_;
  size_t max_in_flight_;
  std::vector<KernelOp> ops_;  // started by the request layer, run by submit()
  uint64_t submit_calls_ = 0;
  AlignedIo io_;
};

}  // namespace kindling::block
