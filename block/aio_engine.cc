#include "block/aio_engine.h"

#include <unistd.h>

#include <algorithm>
#include <system_error>

#include "block/raw_image.h"
#include "common/log.h"

namespace kindling::block {
namespace {

// Asks the kernel once whether it takes IOCB_CMD_FDSYNC (added for all filesystems in 4.18).
bool probe_fdsync(io_context_t ctx, int fd) {
  iocb cb{};
  io_prep_fdsync(&cb, fd);
  iocb* list[1] = {&cb};
  int r = io_submit(ctx, 1, list);
  if (r != 1) return false;  // -EINVAL: not supported
  io_event ev{};
  do {
    r = io_getevents(ctx, 1, 1, &ev, nullptr);
  } while (r == -EINTR);
  return r == 1 && static_cast<long>(ev.res) != -EINVAL;
}

}  // namespace

AioContext::~AioContext() {
  if (ctx_ != nullptr) io_destroy(ctx_);
}

SyncHelper::SyncHelper(int fd, const EventFd& notifier)
    : fd_(fd), notifier_(notifier), thread_([this] { run(); }) {}

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
                                                               size_t submit_batch) {
  auto ev = make_notifier(max_in_flight, "aio eventfd");
  if (!ev) return ev.take_error();
  io_context_t raw = nullptr;
  int r = io_setup(static_cast<int>(max_in_flight), &raw);
  if (r < 0) {
    return fail(BlockError::kEngineSetup, -r,
                "io_setup(" + std::to_string(max_in_flight) + ") (see fs.aio-max-nr)");
  }
  AioContext ctx(raw);
  bool fdsync = kernel_fdsync && probe_fdsync(ctx.get(), image.fd());
  std::unique_ptr<AioEngine> engine(
      new AioEngine(image, std::move(*ev), std::move(ctx), max_in_flight,
                    submit_batch == 0 ? max_in_flight : submit_batch));
  if (!fdsync) {
    try {
      engine->helper_ = std::make_unique<SyncHelper>(image.fd(), engine->notifier_);
    } catch (const std::system_error& e) {
      return fail(BlockError::kEngineSetup, e.code().value(), "fdatasync helper thread");
    }
    KLOG_INFO("%s: libaio without IOCB_CMD_FDSYNC: flushes run on a helper thread",
              image.path().c_str());
  }
  return engine;
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

void AioEngine::reap_kernel() {
  const timespec zero{0, 0};
  for (;;) {
    int r = io_getevents(ctx_.get(), 0, static_cast<long>(events_.size()), events_.data(),
                         const_cast<timespec*>(&zero));
    if (r == -EINTR) continue;
    if (r <= 0) return;
    for (int i = 0; i < r; ++i) {
      iocb* cb = events_[static_cast<size_t>(i)].obj;
      --kernel_in_flight_;
      complete_op(cb, static_cast<int64_t>(static_cast<long>(events_[static_cast<size_t>(i)].res)));
    }
    if (static_cast<size_t>(r) < events_.size()) return;
  }
}

void AioEngine::collect_completions() {
  reap_kernel();
  if (helper_) helper_->take_done(helper_done_);
  for (size_t i = 0; i < helper_done_.size(); ++i) {
    // The helper's fdatasync covered this flush (the other entries here are failures).
    if (helper_done_[i].second == 0) ++syncs_;
    io_.complete(helper_done_[i].first, helper_done_[i].second);
  }
  helper_done_.clear();
  submit_pending();
}

}  // namespace kindling::block
