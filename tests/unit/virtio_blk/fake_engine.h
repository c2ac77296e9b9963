// A recording IoEngine for the virtio-blk tests: remembers every submission and completes them
// only when the test says so, with the result the test chooses.
#pragma once

#include <cerrno>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "block/io_engine.h"
#include "common/event_fd.h"

namespace kindling::test {

class FakeEngine : public block::IoEngine {
 public:
  enum class Op { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
  // One request as the engine received it.
  struct Submission {
    Op op;
    uint64_t offset;
    std::vector<iovec> iov;
    uint64_t cookie;
    uint64_t length = 0;  // DISCARD / WRITE_ZEROES: the range's bytes
    bool unmap = false;   // WRITE_ZEROES: may deallocate
    // Bytes a full completion reports: the iovecs' (0 for flush, discard, write-zeroes).
    uint64_t bytes() const {
      uint64_t n = 0;
      for (const iovec& v : iov) n += v.iov_len;
      return n;
    }
  };

  explicit FakeEngine(size_t max_in_flight = 256, uint64_t max_transfer = 1 << 20)
      : max_in_flight_(max_in_flight), max_transfer_(max_transfer), notifier_(*EventFd::create()) {}

  int notifier_fd() const override { return notifier_.fd(); }
  Result<void, block::BlockErr> read(uint64_t offset, std::span<const iovec> iov,
                                     uint64_t cookie) override {
    return accept(Op::kRead, offset, iov, cookie);
  }
  Result<void, block::BlockErr> write(uint64_t offset, std::span<const iovec> iov,
                                      uint64_t cookie) override {
    return accept(Op::kWrite, offset, iov, cookie);
  }
  Result<void, block::BlockErr> flush(uint64_t cookie) override {
    return accept(Op::kFlush, 0, {}, cookie);
  }
  Result<void, block::BlockErr> discard(uint64_t offset, uint64_t length,
                                        uint64_t cookie) override {
    return accept(Op::kDiscard, offset, {}, cookie, length);
  }
  Result<void, block::BlockErr> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap,
                                             uint64_t cookie) override {
    return accept(Op::kWriteZeroes, offset, {}, cookie, length, may_unmap);
  }
  Result<void, block::BlockErr> flush_submissions() override {
    std::lock_guard lock(mu_);
    if (queued_ > 0) {
      ++stats_.submit_calls;
      queued_ = 0;
    }
    return {};
  }
  size_t reap(std::span<block::Completion> out) override {
    std::lock_guard lock(mu_);
    (void)notifier_.consume();
    size_t n = 0;
    while (n < out.size() && !done_.empty()) {
      out[n++] = done_.front();
      done_.pop_front();
      --in_flight_;
    }
    if (!done_.empty()) (void)notifier_.signal();
    return n;
  }
  size_t in_flight() const override {
    std::lock_guard lock(mu_);
    return in_flight_;
  }
  size_t max_in_flight() const override { return max_in_flight_; }
  uint64_t max_transfer_bytes() const override { return max_transfer_; }
  block::EngineStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

  // --- test control ---
  // Completes submission `i` with `result` (bytes or -errno); default: its full length.
  // Thread-safe: a test may complete while the device's I/O thread runs.
  void complete(size_t i, std::optional<int64_t> result = std::nullopt) {
    std::lock_guard lock(mu_);
    complete_locked(i, result);
  }
  // Completes every submission not completed yet with its full length; returns how many.
  size_t complete_pending() {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (size_t i = 0; i < subs.size(); ++i) {
      if (!completed_[i]) {
        complete_locked(i, std::nullopt);
        ++n;
      }
    }
    return n;
  }
  // Completes every later submission at once with its full length (the MMIO fuzzer's engine).
  void complete_at_once(bool on) {
    std::lock_guard lock(mu_);
    at_once_ = on;
  }
  // Makes the next submissions fail outright with kSubmit (true) or succeed (false).
  void fail_submissions(bool on) {
    std::lock_guard lock(mu_);
    fail_ = on;
  }
  // Submissions accepted so far (thread-safe).
  size_t submitted() const {
    std::lock_guard lock(mu_);
    return subs.size();
  }

  std::vector<Submission> subs;  // every accepted submission, in order (read it single-threaded)

 private:
  Result<void, block::BlockErr> accept(Op op, uint64_t offset, std::span<const iovec> iov,
                                       uint64_t cookie, uint64_t length = 0, bool unmap = false) {
    std::lock_guard lock(mu_);
    if (fail_) return fail(block::BlockError::kSubmit, EIO, "fake");
    if (in_flight_ >= max_in_flight_) return fail(block::BlockError::kQueueFull);
    subs.push_back({op, offset, std::vector<iovec>(iov.begin(), iov.end()), cookie, length, unmap});
    completed_.push_back(false);
    ++in_flight_;
    ++queued_;
    ++stats_.requests;
    if (at_once_) complete_locked(subs.size() - 1, std::nullopt);
    return {};
  }

  void complete_locked(size_t i, std::optional<int64_t> result) {
    const Submission& s = subs[i];
    completed_[i] = true;
    done_.push_back({s.cookie, result ? *result : static_cast<int64_t>(s.bytes())});
    (void)notifier_.signal();
  }

  mutable std::mutex mu_;
  size_t max_in_flight_;
  uint64_t max_transfer_;
  EventFd notifier_;
  std::deque<block::Completion> done_;
  std::vector<bool> completed_;  // per submission: complete() was called
  size_t in_flight_ = 0;
  size_t queued_ = 0;
  bool fail_ = false;
  bool at_once_ = false;
  block::EngineStats stats_;
};

}  // namespace kindling::test
