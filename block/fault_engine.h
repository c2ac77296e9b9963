// A testing engine: wraps any IoEngine and fails the requests that match rules (kind of
// request, sector range, every n-th) with EIO, ENOSPC or a short transfer; everything else is
// forwarded untouched. Device tests and `--disk PATH,fault=...` (a kindling testing extension)
// use it to show that the guest gets an error, nothing hangs and the rest keeps working.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "block/io_engine.h"
#include "common/event_fd.h"
#include "common/unique_fd.h"

namespace kindling::block {

// What a matching request gets.
enum class FaultKind : uint8_t {
  kEio,     // completes with -EIO; the image is not touched
  kEnospc,  // completes with -ENOSPC; the image is not touched
  kShort,   // transfers only the first half (512-byte multiple, maybe nothing) and says so;
            // a flush fails with -EIO
};

// Request kinds a rule applies to (a bit set).
inline constexpr uint8_t kFaultRead = 1;
inline constexpr uint8_t kFaultWrite = 2;
inline constexpr uint8_t kFaultFlush = 4;

// One rule: a request of a kind in `ops` whose sectors overlap [first_sector, first_sector +
// sectors) fails; flushes have no sectors and match by kind alone. With `every` = n only each
// n-th matching request fails (1: all of them).
struct FaultRule {
  FaultKind kind = FaultKind::kEio;
  uint8_t ops = kFaultRead | kFaultWrite;
  uint64_t first_sector = 0;
  uint64_t sectors = UINT64_MAX;
  uint64_t every = 1;
  bool operator==(const FaultRule&) const = default;
};

// Parses one rule: KIND[:OPS][@FIRST+COUNT][/N], KIND one of eio, enospc, short; OPS letters
// of r (read), w (write), f (flush), default rw; FIRST and COUNT in 512-byte sectors (default:
// the whole disk); N: every n-th matching request (default 1). Example: eio:w@2048+8/2.
Result<FaultRule, BlockErr> parse_fault_rule(std::string_view spec);
// The rule written back in parse_fault_rule()'s syntax.
std::string to_string(const FaultRule& rule);

// The wrapper. Single-threaded like every engine. Requests it fails never reach `inner`
// (a short one reaches it with its iovecs cut); their completions come from reap() like any.
class FaultEngine final : public IoEngine {
 public:
  static Result<std::unique_ptr<FaultEngine>, BlockErr> create(std::unique_ptr<IoEngine> inner,
                                                               std::vector<FaultRule> rules);
  // The inner engine goes first: it may still hold the cut iovecs of short transfers.
  ~FaultEngine() override { inner_.reset(); }

  // An epoll fd: readable when the inner engine's notifier or the injected completions are.
  int notifier_fd() const override { return epoll_.get(); }
  Result<void, BlockErr> read(uint64_t offset, std::span<const iovec> iov,
                              uint64_t cookie) override;
  Result<void, BlockErr> write(uint64_t offset, std::span<const iovec> iov,
                               uint64_t cookie) override;
  Result<void, BlockErr> flush(uint64_t cookie) override;
  // DISCARD and WRITE_ZEROES are never failed on purpose: the rules name reads, writes and
  // flushes.
  Result<void, BlockErr> discard(uint64_t offset, uint64_t length, uint64_t cookie) override {
    return inner_->discard(offset, length, cookie);
  }
  Result<void, BlockErr> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap,
                                      uint64_t cookie) override {
    return inner_->write_zeroes(offset, length, may_unmap, cookie);
  }
  void register_memory(std::span<const iovec> regions) override {
    inner_->register_memory(regions);
  }
  Result<void, BlockErr> flush_submissions() override { return inner_->flush_submissions(); }
  size_t reap(std::span<Completion> out) override;
  size_t in_flight() const override { return inner_->in_flight() + injected_.size(); }
  size_t max_in_flight() const override { return inner_->max_in_flight(); }
  uint64_t max_transfer_bytes() const override { return inner_->max_transfer_bytes(); }
  // The inner engine's counters, with faults_injected added.
  EngineStats stats() const override;

 private:
  FaultEngine(std::unique_ptr<IoEngine> inner, std::vector<FaultRule> rules, EventFd ready,
              UniqueFd epoll);
  enum class Op : uint8_t { kRead, kWrite, kFlush };
  // The rule that fails this request, if any (counts the match for `every`).
  const FaultRule* match(Op op, uint64_t offset, std::span<const iovec> iov);
  Result<void, BlockErr> submit(Op op, uint64_t offset, std::span<const iovec> iov,
                                uint64_t cookie);
  Result<void, BlockErr> forward(Op op, uint64_t offset, std::span<const iovec> iov,
                                 uint64_t cookie);
  Result<void, BlockErr> inject(uint64_t cookie, int64_t result);

  std::unique_ptr<IoEngine> inner_;
  std::vector<FaultRule> rules_;
  std::vector<uint64_t> matches_;  // per rule: matching requests seen
  EventFd ready_;                  // signalled while injected_ is not empty
  UniqueFd epoll_;
  std::deque<Completion> injected_;
  // Short transfers in flight: the cut iovecs must live until the inner engine completes.
  std::unordered_map<uint64_t, std::vector<iovec>> cut_;
  uint64_t faults_ = 0;
};

}  // namespace kindling::block
