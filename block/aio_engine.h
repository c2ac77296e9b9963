// The libaio engine: batched io_submit of vectored reads/writes on the image, completions
// signalled through one eventfd, FLUSH as IOCB_CMD_FDSYNC or on a helper thread.
#pragma once

#include <libaio.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "block/aligned_engine.h"

namespace kindling::block {

class RawImage;

// Owns an io_context; io_destroy on destruction.
class AioContext {
 public:
  AioContext() = default;
  explicit AioContext(io_context_t ctx) : ctx_(ctx) {}
  AioContext(AioContext&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  AioContext& operator=(AioContext&&) = delete;
  ~AioContext();
  io_context_t get() const { return ctx_; }

 private:
  io_context_t ctx_ = nullptr;
};

// Runs fdatasync off the I/O thread for kernels without IOCB_CMD_FDSYNC.
class SyncHelper {
 public:
  // Completions are posted to `done` under the lock and announced on `notifier`. With
  // `confine`, the thread confines itself to ThreadKind::kBlockSync first (common/seccomp).
  SyncHelper(int fd, const EventFd& notifier, bool confine = false);
  // Why the thread could not confine itself (it then serves nothing); empty when it did.
  const std::string& confine_error() const { return confine_error_; }
  ~SyncHelper();
  // Queues a flush; its result comes back from take_done().
  void post(uint64_t tag);
  // Finished flushes as (tag, result) pairs; appended to `out`.
  void take_done(std::vector<std::pair<uint64_t, int64_t>>& out);

 private:
  void run();

  int fd_;
  const EventFd& notifier_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> jobs_;
  std::vector<std::pair<uint64_t, int64_t>> done_;
  bool stop_ = false;
  bool started_ = false;       // the thread is past its confinement step
  std::string confine_error_;  // set before started_
  std::thread thread_;         // last: starts after the state it uses exists
};

// Most iocbs handed to one io_submit call (QEMU's aio-max-batch idea). The kernel holds a plug
// for the whole call, so no request of a batch reaches the disk before the last one is prepared;
// and requests that reach the disk together tend to complete together, which puts the device and
// its driver into lock-step, the disk's queue draining between rounds. Small batches keep the
// disk fed continuously: measured 4k random reads at depth 32 went from ~70k to ~85k IOPS.
inline constexpr size_t kDefaultSubmitBatch = 4;

// How many times in a row io_submit may refuse (-EAGAIN, or 0 accepted) with nothing of ours in
// flight before the first queued iocb fails with -EAGAIN. With iocbs in flight a refusal simply
// waits for the next reap. With none, no completion will come to retry on, so the engine signals
// its own eventfd: the I/O thread comes back (reap) and offers the iocbs again. Since our
// accounting never asks the kernel for more than io_setup granted, such a refusal means a kernel
// allocation failed; a few wake-ups ride out a blip, and a bound (no timer, no sleep) keeps a
// persistent failure from turning into a busy loop: the request then fails (IOERR for a guest).
inline constexpr unsigned kIdleSubmitRetries = 3;

// io_submit's signature: the seam through which tests inject refusals and partial submissions.
using SubmitFn = std::function<int(io_context_t, long, iocb**)>;

// The asynchronous engine. Single-threaded apart from the optional SyncHelper.
class AioEngine final : public AlignedEngine {
 public:
  // `image` must outlive the engine. io_setup gets `max_in_flight` events. FLUSH uses
  // IOCB_CMD_FDSYNC when `kernel_fdsync` allows it (tests pass false to exercise the helper
  // thread); a kernel that refuses it (before 4.18) gets a blocking fdatasync on the I/O thread
  // for every FLUSH, starting with the refused one. One io_submit takes at most `submit_batch`
  // iocbs (0: no cap).
  static Result<std::unique_ptr<AioEngine>, BlockErr> create(
      RawImage& image, size_t max_in_flight, bool kernel_fdsync = true,
      size_t submit_batch = kDefaultSubmitBatch, bool confine = false);
  // Waits for the kernel operations in flight (their results are dropped).
  ~AioEngine() override;

  Result<void, BlockErr> flush_submissions() override;

  // Whether FLUSH goes to the kernel as IOCB_CMD_FDSYNC (else: the helper thread).
  bool kernel_fdsync() const { return helper_ == nullptr && !kernel_fdsync_refused_; }

  // Tests only: every later io_submit of requests goes through `fn` (empty: ::io_submit). The
  // production path pays one test of an empty std::function per io_submit call.
  void set_submit_for_testing(SubmitFn fn) { submit_fn_ = std::move(fn); }

 private:
  AioEngine(RawImage& image, EventFd notifier, AioContext ctx, size_t max_in_flight,
            size_t submit_batch);
  void start(const KernelOp& op) override;
  // Kernel completions, helper flushes, then the iocbs that wait for room or after a refusal.
  void collect_completions() override;
  void submit_pending();
  void reap_kernel();
  // Takes up to `max` completed events into events_ straight from the context's ring, which
  // the kernel maps into our memory (no io_getevents call; as QEMU's and fio's userspace_reap
  // do). -1 when the ring's layout is not the one known (then io_getevents reaps).
  int peek_ring(size_t max);
  // The iocb results in events_[0, n): completes them (or reruns a refused FDSYNC inline).
  void take_events(int n);
  void complete_op(iocb* cb, int64_t result);
  void release(iocb* cb);
  // A FLUSH the kernel refused with EINVAL (no IOCB_CMD_FDSYNC, before Linux 4.18): runs
  // fdatasync for it on this thread and completes it. False for any other iocb.
  bool sync_refused_fdsync(iocb* cb);
  void sync_inline(uint64_t tag);

  AioContext ctx_;
  size_t submit_batch_;         // iocbs per io_submit call at most
  std::vector<iocb> iocbs_;     // two per request: a read-modify-write reads head and tail
  std::vector<uint64_t> tags_;  // the request layer's tag of each iocb
  std::vector<iocb*> free_iocbs_;
  std::vector<iocb*> pending_;  // ring: prepared, not yet accepted by io_submit
  size_t pending_head_ = 0;
  size_t pending_count_ = 0;
  std::vector<iocb*> batch_;      // scratch for io_submit
  std::vector<io_event> events_;  // scratch for io_getevents
  std::vector<std::pair<uint64_t, int64_t>>
      helper_done_;  // flushes done off-thread, inline fallocates
  std::vector<std::pair<uint64_t, int64_t>> done_scratch_;  // helper_done_ being completed
  size_t kernel_in_flight_ = 0;
  bool user_reap_ = true;       // peek_ring() works; false for good once it does not
  unsigned idle_refusals_ = 0;  // refusals in a row with nothing in flight (kIdleSubmitRetries)
  SubmitFn submit_fn_;          // empty outside tests
  // Exactly when FLUSH cannot be IOCB_CMD_FDSYNC: create() makes it then, or fails.
  std::unique_ptr<SyncHelper> helper_;
  bool kernel_fdsync_refused_ = false;
};

}  // namespace kindling::block
