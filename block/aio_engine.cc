#include "block/aio_engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

#include "block/raw_image.h"
#include "common/log.h"
#include "common/seccomp/seccomp.h"

namespace kindling::block {
namespace {

// The completion ring the kernel maps at the io_context_t address (fs/aio.c, struct aio_ring,
// stable ABI since Linux 2.6): a header, then `nr` io_events; the kernel advances `tail`,
// the reader `head`.
struct AioRing {
  uint32_t id;
  uint32_t nr;
  uint32_t head;
  uint32_t tail;
  uint32_t magic;
  uint32_t compat_features;
  uint32_t incompat_features;
  uint32_t header_length;  // sizeof(struct aio_ring)
  io_event events[];
};
constexpr uint32_t kAioRingMagic = 0xa10a10a1;
constexpr uint32_t kAioRingIncompatFeatures = 0;

}  // namespace

AioContext::~AioContext() {
  if (ctx_ != nullptr) io_destroy(ctx_);
}

SyncHelper::SyncHelper(int fd, const EventFd& notifier, bool confine)
    : fd_(fd), notifier_(notifier), thread_([this, confine] {
        std::string error;
        if (confine) {
          auto ok = seccomp::install(seccomp::ThreadKind::kBlockSync, "blk-sync");
          if (!ok) error = ok.error().message();
        }
        {
          std::lock_guard lk(mu_);
          confine_error_ = std::move(error);
          started_ = true;
        }
        cv_.notify_all();
        if (confine_error_.empty()) run();
      }) {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [this] { return started_; });
}

SyncHelper::~SyncHelper() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void SyncHelper::post(uint64_t tag) {
  {
    std::lock_guard lk(mu_);
    jobs_.push_back(tag);
  }
  cv_.notify_one();
}

void SyncHelper::take_done(std::vector<std::pair<uint64_t, int64_t>>& out) {
  std::lock_guard lk(mu_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
}

void SyncHelper::run() {
  std::vector<uint64_t> batch;
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    batch.swap(jobs_);
    lk.unlock();
    // One fdatasync covers every flush queued before it started: each only needs the writes
    // completed before its own submission.
    int r = 0;
    do {
      r = ::fdatasync(fd_);
    } while (r < 0 && errno == EINTR);
    int64_t result = r < 0 ? -errno : 0;
    lk.lock();
    for (uint64_t tag : batch) done_.emplace_back(tag, result);
    batch.clear();
    lk.unlock();
    (void)notifier_.signal();
    lk.lock();
  }
}

Result<std::unique_ptr<AioEngine>, BlockErr> AioEngine::create(RawImage& image,
                                                               size_t max_in_flight,
                                                               bool kernel_fdsync,
                                                               size_t submit_batch, bool confine) {
  auto ev = make_notifier(max_in_flight, "aio eventfd");
  if (!ev) return ev.take_error();
  io_context_t raw = nullptr;
  int r = io_setup(static_cast<int>(max_in_flight), &raw);
  if (r < 0) {
    return fail(BlockError::kEngineSetup, -r,
                "io_setup(" + std::to_string(max_in_flight) + ") (see fs.aio-max-nr)");
  }
  AioContext ctx(raw);
  std::unique_ptr<AioEngine> engine(
      new AioEngine(image, std::move(*ev), std::move(ctx), max_in_flight,
                    submit_batch == 0 ? max_in_flight : submit_batch));
  // No probe here: a probe is a real fdatasync (milliseconds before the guest may start). A
  // kernel without IOCB_CMD_FDSYNC refuses the first FLUSH instead (see sync_refused_fdsync).
  if (!kernel_fdsync) {
    try {
      engine->helper_ = std::make_unique<SyncHelper>(image.fd(), engine->notifier_, confine);
    } catch (const std::system_error& e) {
      return fail(BlockError::kEngineSetup, e.code().value(), "fdatasync helper thread");
    }
    if (!engine->helper_->confine_error().empty()) {
      return fail(BlockError::kEngineSetup, 0, engine->helper_->confine_error());
    }
    KLOG_INFO("%s: FLUSH runs on a helper thread (fdatasync)", image.path().c_str());
  }
  return engine;
}

bool AioEngine::sync_refused_fdsync(iocb* cb) {
  if (cb->aio_lio_opcode != IO_CMD_FDSYNC) return false;
  uint64_t tag = tags_[static_cast<size_t>(cb - iocbs_.data())];
  release(cb);
  if (!kernel_fdsync_refused_) {
    kernel_fdsync_refused_ = true;
    KLOG_INFO("%s: the kernel refuses IOCB_CMD_FDSYNC: FLUSH runs fdatasync on the I/O thread",
              image_.path().c_str());
  }
  sync_inline(tag);
  return true;
}

// No helper thread is started for this: it runs on the I/O thread, whose seccomp filter allows
// no new thread. Only kernels before 4.18 get here, and they pay a blocking fdatasync.
void AioEngine::sync_inline(uint64_t tag) {
  int r = 0;
  do {
    r = ::fdatasync(image_.fd());
  } while (r < 0 && errno == EINTR);
  if (r == 0) ++syncs_;
  helper_done_.emplace_back(tag, r < 0 ? -errno : 0);
  (void)notifier_.signal();
}

AioEngine::AioEngine(RawImage& image, EventFd notifier, AioContext ctx, size_t max_in_flight,
                     size_t submit_batch)
    : AlignedEngine(image, std::move(notifier), max_in_flight),
      ctx_(std::move(ctx)),
      submit_batch_(submit_batch),
      iocbs_(2 * max_in_flight),
      tags_(2 * max_in_flight),
      pending_(2 * max_in_flight),
      batch_(max_in_flight),
      events_(max_in_flight) {
  free_iocbs_.reserve(iocbs_.size());
  for (iocb& cb : iocbs_) free_iocbs_.push_back(&cb);
  helper_done_.reserve(max_in_flight);
  done_scratch_.reserve(max_in_flight);
}

AioEngine::~AioEngine() {
  // The kernel may still write into buffers it was given: wait for every iocb before they go.
  while (kernel_in_flight_ > 0) {
    int r = io_getevents(ctx_.get(), 1, static_cast<long>(events_.size()), events_.data(), nullptr);
    if (r == -EINTR) continue;
    if (r <= 0) break;
    kernel_in_flight_ -= static_cast<size_t>(r);
  }
  helper_.reset();  // joins the helper thread
}

void AioEngine::start(const KernelOp& op) {
  if (op.kind == KernelOp::Kind::kSync && helper_) {
    helper_->post(op.tag);
    return;
  }
  if (op.kind == KernelOp::Kind::kSync && kernel_fdsync_refused_) {
    sync_inline(op.tag);
    return;
  }
  if (op.kind == KernelOp::Kind::kFallocate) {
    // libaio has no fallocate command. Run inline: PUNCH_HOLE / ZERO_RANGE only edit extents
    // (no data moves), a segment is bounded by the device's max_discard/write_zeroes sectors,
    // and a discard or write-zeroes is rare next to reads and writes; its result is reaped like
    // a helper flush's.
    int r = 0;
    do {
      r = ::fallocate(image_.fd(), op.mode, static_cast<off_t>(op.offset),
                      static_cast<off_t>(op.length));
    } while (r < 0 && errno == EINTR);
    ++submit_calls_;
    helper_done_.emplace_back(op.tag, r < 0 ? -errno : 0);
    (void)notifier_.signal();
    return;
  }
  if (free_iocbs_.empty()) {
    // Cannot happen (two iocbs per request slot); fail the op rather than corrupt state.
    helper_done_.emplace_back(op.tag, -EAGAIN);
    (void)notifier_.signal();
    return;
  }
  iocb* cb = free_iocbs_.back();
  free_iocbs_.pop_back();
  switch (op.kind) {
    case KernelOp::Kind::kRead:
      io_prep_preadv(cb, image_.fd(), op.iov, op.iovcnt, static_cast<long long>(op.offset));
      break;
    case KernelOp::Kind::kWrite:
      io_prep_pwritev(cb, image_.fd(), op.iov, op.iovcnt, static_cast<long long>(op.offset));
      break;
    case KernelOp::Kind::kSync:
      io_prep_fdsync(cb, image_.fd());
      break;
    case KernelOp::Kind::kFallocate:
      break;  // run inline above
  }
  io_set_eventfd(cb, notifier_.fd());
  tags_[static_cast<size_t>(cb - iocbs_.data())] = op.tag;
  pending_[(pending_head_ + pending_count_) % pending_.size()] = cb;
  ++pending_count_;
}

Result<void, BlockErr> AioEngine::flush_submissions() {
  size_t ready_before = io_.ready();
  submit_pending();
  announce(ready_before);
  return {};
}

// Hands prepared iocbs to the kernel in batches of at most submit_batch_ (see
// kDefaultSubmitBatch), never more than the context holds.
void AioEngine::submit_pending() {
  while (pending_count_ > 0) {
    size_t room = max_in_flight_ - kernel_in_flight_;
    if (room == 0) return;  // the next reap frees room and calls this again
    size_t n = std::min({pending_count_, room, submit_batch_});
    for (size_t i = 0; i < n; ++i) batch_[i] = pending_[(pending_head_ + i) % pending_.size()];
    ++submit_calls_;
    int r = submit_fn_ ? submit_fn_(ctx_.get(), static_cast<long>(n), batch_.data())
                       : io_submit(ctx_.get(), static_cast<long>(n), batch_.data());
    if (r > 0) {
      // A partial submission leaves the rest queued; the loop offers them again.
      idle_refusals_ = 0;
      pending_head_ = (pending_head_ + static_cast<size_t>(r)) % pending_.size();
      pending_count_ -= static_cast<size_t>(r);
      kernel_in_flight_ += static_cast<size_t>(r);
      continue;
    }
    if (r == -EAGAIN || r == 0) {
      if (kernel_in_flight_ > 0) return;  // retried after the next reap
      if (++idle_refusals_ <= kIdleSubmitRetries) {
        // No completion will come to retry on: wake the I/O thread ourselves (bounded).
        (void)notifier_.signal();
        return;
      }
    }
    // The first iocb is refused, or out of retries: fail it, go on with the rest.
    idle_refusals_ = 0;
    iocb* cb = pending_[pending_head_];
    pending_head_ = (pending_head_ + 1) % pending_.size();
    --pending_count_;
    if (r == -EINVAL && sync_refused_fdsync(cb)) continue;
    complete_op(cb, r < 0 ? r : -EAGAIN);
  }
}

void AioEngine::complete_op(iocb* cb, int64_t result) {
  uint64_t tag = tags_[static_cast<size_t>(cb - iocbs_.data())];
  if (cb->aio_lio_opcode == IO_CMD_FDSYNC && result == 0) ++syncs_;
  release(cb);
  io_.complete(tag, result);
}

void AioEngine::release(iocb* cb) {
  free_iocbs_.push_back(cb);
}

int AioEngine::peek_ring(size_t max) {
  auto* ring = reinterpret_cast<AioRing*>(ctx_.get());
  if (ring->magic != kAioRingMagic || ring->incompat_features != kAioRingIncompatFeatures ||
      ring->header_length != sizeof(AioRing) || ring->nr == 0) {
    return -1;
  }
  const uint32_t nr = ring->nr;
  uint32_t head = __atomic_load_n(&ring->head, __ATOMIC_RELAXED);
  // The kernel writes an event, then publishes it by advancing tail (smp_wmb before the store).
  const uint32_t tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
  if (head >= nr || tail >= nr) return -1;
  size_t n = 0;
  while (head != tail && n < max) {
    events_[n++] = ring->events[head];
    head = head + 1 == nr ? 0 : head + 1;
  }
  // The kernel reads head to know which slots it may reuse: after our copies.
  __atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
  return static_cast<int>(n);
}

void AioEngine::take_events(int n) {
  for (int i = 0; i < n; ++i) {
    iocb* cb = events_[static_cast<size_t>(i)].obj;
    --kernel_in_flight_;
    const auto res = static_cast<int64_t>(static_cast<long>(events_[static_cast<size_t>(i)].res));
    if (res == -EINVAL && sync_refused_fdsync(cb)) continue;
    complete_op(cb, res);
  }
}

void AioEngine::reap_kernel() {
  const timespec zero{0, 0};
  for (;;) {
    int r = user_reap_ ? peek_ring(events_.size()) : -1;
    if (r < 0) {
      user_reap_ = false;
      ++reap_calls_;
      r = io_getevents(ctx_.get(), 0, static_cast<long>(events_.size()), events_.data(),
                       const_cast<timespec*>(&zero));
      if (r == -EINTR) continue;
    }
    if (r <= 0) return;
    take_events(r);
    if (static_cast<size_t>(r) < events_.size()) return;
  }
}

void AioEngine::collect_completions() {
  reap_kernel();
  if (helper_) {
    const size_t before = helper_done_.size();
    helper_->take_done(helper_done_);
    // Each of these is a FLUSH the helper's fdatasync covered (or failed).
    for (size_t i = before; i < helper_done_.size(); ++i) {
      if (helper_done_[i].second == 0) ++syncs_;
    }
  }
  // A completion may start the next op of its request (an inline fallocate lands in
  // helper_done_ again): complete from a scratch copy.
  done_scratch_.swap(helper_done_);
  for (const auto& [tag, res] : done_scratch_) io_.complete(tag, res);
  done_scratch_.clear();
  submit_pending();
}

}  // namespace kindling::block
