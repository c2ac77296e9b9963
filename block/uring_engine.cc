#include "block/uring_engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "block/raw_image.h"
#include "common/log.h"

namespace kindling::block {
namespace {

// Marks a FSYNC's user_data (AlignedIo's tags never use the top bit).
constexpr uint64_t kSyncTag = uint64_t{1} << 63;

// The kernel refuses a fixed buffer larger than 1 GiB.
constexpr size_t kMaxFixedBuffer = size_t{1} << 30;
// How many times in a row io_uring_submit may refuse with nothing in flight before the engine
// stops waking itself (see AioEngine's kIdleSubmitRetries); the SQEs stay queued and go with
// the next flush_submissions().
constexpr unsigned kIdleRetries = 3;

// Whether the kernel has every opcode in `ops`.
bool supports(io_uring* ring, std::initializer_list<int> ops) {
  io_uring_probe* p = io_uring_get_probe_ring(ring);
  if (p == nullptr) return false;
  bool all = true;
  for (int op : ops) all = all && io_uring_opcode_supported(p, op);
  io_uring_free_probe(p);
  return all;
}

}  // namespace

UringRing::~UringRing() {
  if (live_) io_uring_queue_exit(&ring_);
}

int UringRing::init(unsigned entries) {
  // CLAMP: a deep queue (32768 entries, so 65536 operations) gets the kernel's largest ring;
  // start() then submits early when the ring is full.
  int r = io_uring_queue_init(entries, &ring_, IORING_SETUP_CLAMP);
  live_ = r == 0;
  return r;
}

Result<std::unique_ptr<UringEngine>, BlockErr> UringEngine::create(RawImage& image,
                                                                   size_t max_in_flight) {
  auto ev = make_notifier(max_in_flight, "io_uring eventfd");
  if (!ev) return ev.take_error();
  // A request needs at most two kernel operations at once (read-modify-write's head and tail).
  UringRing ring;
  if (int r = ring.init(static_cast<unsigned>(2 * max_in_flight)); r < 0) {
    return fail(BlockError::kEngineSetup, -r, "io_uring_queue_init");
  }
  if (!supports(ring.get(), {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC})) {
    return fail(BlockError::kEngineSetup, ENOSYS, "io_uring without READV/WRITEV/FSYNC");
  }
  bool falloc = supports(ring.get(), {IORING_OP_FALLOCATE});
  int fd = image.fd();
  if (int r = io_uring_register_files(ring.get(), &fd, 1); r < 0) {
    return fail(BlockError::kEngineSetup, -r, "io_uring_register_files");
  }
  if (int r = io_uring_register_eventfd(ring.get(), ev->fd()); r < 0) {
    return fail(BlockError::kEngineSetup, -r, "io_uring_register_eventfd");
  }
  return std::unique_ptr<UringEngine>(
      new UringEngine(image, std::move(*ev), std::move(ring), max_in_flight, falloc));
}

UringEngine::UringEngine(RawImage& image, EventFd notifier, UringRing ring, size_t max_in_flight,
                         bool kernel_fallocate)
    : AlignedEngine(image, std::move(notifier), max_in_flight),
      ring_(std::move(ring)),
      kernel_fallocate_(kernel_fallocate) {
  local_done_.reserve(2 * max_in_flight);
  local_scratch_.reserve(2 * max_in_flight);
}

UringEngine::~UringEngine() {
  // The kernel may still write into buffers it was given: wait for every SQE before they go.
  if (queued_ > 0) (void)io_uring_submit(ring_.get());
  while (kernel_in_flight_ + queued_ > 0) {
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(ring_.get(), &cqe);
    if (r == -EINTR) continue;
    if (r < 0) break;
    io_uring_cqe_seen(ring_.get(), cqe);
    if (kernel_in_flight_ > 0) {
      --kernel_in_flight_;
    } else {
      --queued_;
    }
  }  // The ring's teardown runs later in a kernel worker, and a registered file stays open (with
  // the image's lock) until then: the next process to open the image would find it locked.
  // Unregistering drops that reference now.
  if (!fixed_.empty()) (void)io_uring_unregister_buffers(ring_.get());
  (void)io_uring_unregister_files(ring_.get());
}

void UringEngine::register_memory(std::span<const iovec> regions) {
  if (!fixed_.empty()) {
    (void)io_uring_unregister_buffers(ring_.get());
    fixed_.clear();
  }
  std::vector<iovec> pieces;
  for (const iovec& r : regions) {
    for (size_t off = 0; off < r.iov_len; off += kMaxFixedBuffer) {
      pieces.push_back(
          {static_cast<uint8_t*>(r.iov_base) + off, std::min(kMaxFixedBuffer, r.iov_len - off)});
    }
  }
  if (pieces.empty()) return;
  std::sort(pieces.begin(), pieces.end(),
            [](const iovec& a, const iovec& b) { return a.iov_base < b.iov_base; });
  int r =
      io_uring_register_buffers(ring_.get(), pieces.data(), static_cast<unsigned>(pieces.size()));
  if (r < 0) {
    KLOG_INFO(
        "%s: io_uring: guest memory not registered as fixed buffers (%s; see ulimit -l): "
        "READV/WRITEV instead",
        image_.path().c_str(), strerror(-r));
    return;
  }
  fixed_ = std::move(pieces);
}

int UringEngine::fixed_index(const void* base, size_t len) const {
  if (fixed_.empty()) return -1;
  auto p = reinterpret_cast<uintptr_t>(base);
  // The last buffer starting at or below `base`.
  auto it = std::upper_bound(fixed_.begin(), fixed_.end(), p, [](uintptr_t v, const iovec& b) {
    return v < reinterpret_cast<uintptr_t>(b.iov_base);
  });
  if (it == fixed_.begin()) return -1;
  --it;
  auto start = reinterpret_cast<uintptr_t>(it->iov_base);
  if (p - start > it->iov_len || len > it->iov_len - (p - start)) return -1;
  return static_cast<int>(it - fixed_.begin());
}

void UringEngine::start(const KernelOp& op) {
  if (op.kind == KernelOp::Kind::kFallocate && !kernel_fallocate_) {
    // A kernel before 5.6: inline, as the libaio engine does (see there why that is acceptable).
    int r = ::fallocate(image_.fd(), op.mode, static_cast<off_t>(op.offset),
                        static_cast<off_t>(op.length));
    ++submit_calls_;
    local_done_.emplace_back(op.tag, r < 0 ? -errno : 0);
    (void)notifier_.signal();
    return;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    submit();  // a clamped ring is full: hand what it holds to the kernel first
    sqe = io_uring_get_sqe(ring_.get());
  }
  if (sqe == nullptr) {
    // The kernel refused the submission: fail the op rather than block.
    local_done_.emplace_back(op.tag, -EAGAIN);
    (void)notifier_.signal();
    return;
  }
  constexpr int kFile = 0;  // index of the image among the registered files
  switch (op.kind) {
    case KernelOp::Kind::kRead:
    case KernelOp::Kind::kWrite: {
      bool rd = op.kind == KernelOp::Kind::kRead;
      int idx = op.iovcnt == 1 ? fixed_index(op.iov[0].iov_base, op.iov[0].iov_len) : -1;
      if (idx >= 0) {
        ++fixed_ops_;
        if (rd) {
          io_uring_prep_read_fixed(sqe, kFile, op.iov[0].iov_base,
                                   static_cast<unsigned>(op.iov[0].iov_len), op.offset, idx);
        } else {
          io_uring_prep_write_fixed(sqe, kFile, op.iov[0].iov_base,
                                    static_cast<unsigned>(op.iov[0].iov_len), op.offset, idx);
        }
      } else if (rd) {
        io_uring_prep_readv(sqe, kFile, op.iov, static_cast<unsigned>(op.iovcnt), op.offset);
      } else {
        io_uring_prep_writev(sqe, kFile, op.iov, static_cast<unsigned>(op.iovcnt), op.offset);
      }
      break;
    }
    case KernelOp::Kind::kSync:
      io_uring_prep_fsync(sqe, kFile, IORING_FSYNC_DATASYNC);
      break;
    case KernelOp::Kind::kFallocate:
      io_uring_prep_fallocate(sqe, kFile, op.mode, static_cast<off_t>(op.offset),
                              static_cast<off_t>(op.length));
      break;
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, op.tag | (op.kind == KernelOp::Kind::kSync ? kSyncTag : 0));
  ++queued_;
}

Result<void, BlockErr> UringEngine::flush_submissions() {
  size_t ready_before = io_.ready();
  submit();
  announce(ready_before);
  return {};
}

// One io_uring_submit for everything prepared since the last one.
void UringEngine::submit() {
  if (queued_ == 0) return;
  ++submit_calls_;
  int r = io_uring_submit(ring_.get());
  if (r > 0) {
    idle_refusals_ = 0;
    size_t n = std::min(static_cast<size_t>(r), queued_);
    queued_ -= n;
    kernel_in_flight_ += n;
    return;
  }
  // -EAGAIN (kernel memory) or -EBUSY (completions to reap first): the SQEs stay queued.
  if (kernel_in_flight_ > 0) return;  // retried after the next reap
  if (++idle_refusals_ <= kIdleRetries) {
    (void)notifier_.signal();
    return;
  }
  idle_refusals_ = 0;
  KLOG_ERROR_RATELIMITED("%s: io_uring_submit keeps failing: %s", image_.path().c_str(),
                         strerror(r < 0 ? -r : EAGAIN));
}

void UringEngine::collect_completions() {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(ring_.get(), &cqe) == 0 && cqe != nullptr) {
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int64_t res = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    if (tag & kSyncTag) {
      tag &= ~kSyncTag;
      if (res == 0) ++syncs_;  // EngineStats::syncs: a FLUSH really synced
    }
    if (kernel_in_flight_ > 0) --kernel_in_flight_;
    io_.complete(tag, res);
  }
  // A completion may start the next op of its request, which may land in local_done_ again.
  local_scratch_.swap(local_done_);
  for (const auto& [tag, res] : local_scratch_) io_.complete(tag, res);
  local_scratch_.clear();
  submit();  // what completions started (a read-modify-write's write) and earlier refusals
}

}  // namespace kindling::block
