// The part every engine built on AlignedIo shares: the completion eventfd, the request layer
// (bounce buffers, read-modify-write), the IoEngine entry points and the counters. An engine
// adds how kernel operations run (OpSink::start) and, optionally, what it does around accepting
// and reaping requests.
#pragma once

#include <span>

#include "block/aligned_io.h"
#include "block/io_engine.h"
#include "common/event_fd.h"

namespace kindling::block {

class RawImage;

class AlignedEngine : public IoEngine, protected OpSink {
 public:
  int notifier_fd() const final { return notifier_.fd(); }
  Result<void, BlockErr> read(uint64_t offset, std::span<const iovec> iov, uint64_t cookie) final {
    return submit(ReqKind::kRead, offset, iov, cookie);
  }
  Result<void, BlockErr> write(uint64_t offset, std::span<const iovec> iov, uint64_t cookie) final {
    return submit(ReqKind::kWrite, offset, iov, cookie);
  }
  Result<void, BlockErr> flush(uint64_t cookie) final {
    return submit(ReqKind::kFlush, 0, {}, cookie);
  }
  Result<void, BlockErr> discard(uint64_t offset, uint64_t length, uint64_t cookie) final {
    return submit_range(ReqKind::kDiscard, offset, length, false, cookie);
  }
  Result<void, BlockErr> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap,
                                      uint64_t cookie) final {
    return submit_range(ReqKind::kWriteZeroes, offset, length, may_unmap, cookie);
  }
  // Consumes the eventfd, lets the engine collect (collect_completions), then hands out what
  // is ready; completions left behind (a small `out`) signal the eventfd again.
  size_t reap(std::span<Completion> out) final;
  size_t in_flight() const final { return io_.in_flight(); }
  size_t max_in_flight() const final { return max_in_flight_; }
  uint64_t max_transfer_bytes() const final { return kMaxTransferBytes; }
  EngineStats stats() const final {
    const BouncePool& pool = io_.bounce_pool();
    EngineStats s;
    s.submit_calls = submit_calls_;
    s.requests = io_.requests();
    s.bounced = io_.bounced();
    s.bounce_high_water = pool.high_water_bytes();
    s.bounce_budget = pool.budget_bytes();
    s.syncs = syncs_;
    s.reap_calls = reap_calls_;
    return s;
  }

 protected:
  // `image` must outlive the engine.
  AlignedEngine(RawImage& image, EventFd notifier, size_t max_in_flight)
      : image_(image),
        notifier_(std::move(notifier)),
        max_in_flight_(max_in_flight),
        io_(image, max_in_flight, *this) {}

  // The checks and the completion eventfd every engine's create() starts with: fails with
  // kEngineSetup when `max_in_flight` is 0 or the eventfd cannot be made (`what` names it).
  static Result<EventFd, BlockErr> make_notifier(size_t max_in_flight, const char* what);

  // After io_ accepted a request and started its operations: the sync engine runs them here.
  virtual void after_accept() {}
  // In reap(), before the ready requests are taken: the libaio engine reaps the kernel here.
  virtual void collect_completions() {}
  // Signals the eventfd when io_ has more ready requests than `ready_before`.
  void announce(size_t ready_before) {
    if (io_.ready() > ready_before) (void)notifier_.signal();
  }

  RawImage& image_;
  EventFd notifier_;
  const size_t max_in_flight_;
  uint64_t submit_calls_ = 0;  // kernel submissions: io_submit calls, or syscalls
  uint64_t syncs_ = 0;         // sync kernel ops that returned success (EngineStats::syncs)
  uint64_t reap_calls_ = 0;    // system calls made to collect completions (EngineStats)
  AlignedIo io_;

 private:
  Result<void, BlockErr> submit(ReqKind kind, uint64_t offset, std::span<const iovec> iov,
                                uint64_t cookie);
  Result<void, BlockErr> submit_range(ReqKind kind, uint64_t offset, uint64_t length,
                                      bool may_unmap, uint64_t cookie);
};

}  // namespace kindling::block
