// The asynchronous I/O backend interface of a disk: submit, get notified, reap.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/result.h"

namespace kindling::block {

enum class BlockError {
  kOpen,           // the image cannot be opened
  kLocked,         // another process holds the image (write lock conflict)
  kBadSize,        // size not a multiple of 512, or empty
  kStat,           // cannot stat / probe the image
  kEngineSetup,    // io_setup, eventfd, thread creation
  kSubmit,         // a submission failed outright
  kQueueFull,      // no room for another request (caller must reap first)
  kUnknownEngine,  // engine name not known
  kBadFaultRule,   // a fault-injection rule that does not parse (block/fault_engine.h)
};
const char* to_string(BlockError e);
using BlockErr = Error<BlockError>;

// One finished request: the cookie given at submission and bytes transferred or -errno.
// A read short at the end of the image has already been zero-filled and reports full length.
struct Completion {
  uint64_t cookie = 0;
  int64_t result = 0;
};

// Counters an engine keeps for --stats and benchmarks.
struct EngineStats {
  uint64_t submit_calls = 0;       // kernel submissions (io_submit calls, or syscalls for sync)
  uint64_t requests = 0;           // requests accepted
  uint64_t bounced = 0;            // requests that went through an aligned bounce buffer
  uint64_t bounce_high_water = 0;  // most bounce-buffer bytes held at once
  uint64_t bounce_budget = 0;      // the most bounce-buffer bytes the engine may hold
  uint64_t syncs = 0;              // fdatasyncs (or IOCB_CMD_FDSYNCs) that succeeded
  uint64_t faults_injected = 0;    // requests failed on purpose (block/fault_engine.h)
  // System calls made only to collect completions (io_getevents); 0 where completions are read
  // from a ring shared with the kernel (libaio's, io_uring's).
  uint64_t reap_calls = 0;
};

// The most bytes one request should carry: the bound for merging requests, and the largest
// request virtio-blk forwards. A larger request is still accepted; a bounced one then needs a
// bounce buffer that fits the engine's budget (kBounceBudgetBytes), or fails.
inline constexpr uint64_t kMaxTransferBytes = uint64_t{1} << 20;

// An I/O engine over one open image. Single-threaded: one I/O thread drives it.
// Offsets and lengths are multiples of 512; the engine handles the image's direct-I/O alignment
// (bounce buffers, read-modify-write) itself. iovecs point into guest RAM and must stay valid
// until the request completes.
class IoEngine {
 public:
  virtual ~IoEngine() = default;
  // Readable (epoll) when completions may be ready.
  virtual int notifier_fd() const = 0;
  // Queue a vectored read/write; sent to the kernel at the latest by the next flush_submissions().
  virtual Result<void, BlockErr> read(uint64_t offset, std::span<const iovec> iov,
                                      uint64_t cookie) = 0;
  virtual Result<void, BlockErr> write(uint64_t offset, std::span<const iovec> iov,
                                       uint64_t cookie) = 0;
  // Make every write completed before this call stable (fdatasync semantics).
  virtual Result<void, BlockErr> flush(uint64_t cookie) = 0;
  // Deallocates [offset, offset + length) where the file system can (virtio-blk DISCARD): the
  // range then reads as zeroes or as before. Completes with 0, or -errno (-EROFS read-only).
  virtual Result<void, BlockErr> discard(uint64_t offset, uint64_t length, uint64_t cookie) = 0;
  // Makes [offset, offset + length) read as zeroes (virtio-blk WRITE_ZEROES); `may_unmap` lets
  // the engine deallocate the range, else it stays allocated. Completes with 0, or -errno.
  virtual Result<void, BlockErr> write_zeroes(uint64_t offset, uint64_t length, bool may_unmap,
                                              uint64_t cookie) = 0;
  // The memory later iovecs will point into (guest RAM), for engines that can register it with
  // the kernel (io_uring fixed buffers). Optional: iovecs outside it still work. Call it only
  // while nothing is in flight; an empty span forgets earlier regions.
  virtual void register_memory(std::span<const iovec> regions) { (void)regions; }
  // Hands queued requests to the kernel (one io_submit per batch where possible).
  virtual Result<void, BlockErr> flush_submissions() = 0;
  // Non-blocking: collects finished requests into `out`, returns how many.
  virtual size_t reap(std::span<Completion> out) = 0;
  // Requests accepted and not yet reaped.
  virtual size_t in_flight() const = 0;
  // Largest number of requests in flight / bytes in one request the engine wants
  // (kMaxTransferBytes; see there).
  virtual size_t max_in_flight() const = 0;
  virtual uint64_t max_transfer_bytes() const = 0;
  virtual EngineStats stats() const = 0;
};

class RawImage;

// The engine names make_engine() knows, for the CLI and the config checks.
inline constexpr std::string_view kEngineNames[] = {"libaio", "io_uring", "sync"};

// Creates the engine called `name` ("libaio", "io_uring" or "sync") over `image`, which must
// outlive it. `max_in_flight` bounds the requests accepted and not yet reaped (the io_context
// size). Destroying an engine waits for the kernel operations in flight; reap until in_flight() is
// 0 first so that every request also completes. "io_uring" falls back to libaio (one log line)
// where the kernel refuses io_uring. With `confine`, a thread the engine starts confines itself
// (common/seccomp/seccomp.h).
Result<std::unique_ptr<IoEngine>, BlockErr> make_engine(std::string_view name, RawImage& image,
                                                        size_t max_in_flight, bool confine = false);

}  // namespace kindling::block
