#include "block/sync_engine.h"

#include <unistd.h>

#include "block/raw_image.h"

namespace kindling::block {

Result<std::unique_ptr<SyncEngine>, BlockErr> SyncEngine::create(RawImage& image,
                                                                 size_t max_in_flight) {
  if (max_in_flight == 0) return fail(BlockError::kEngineSetup, EINVAL, "max_in_flight is 0");
  auto ev = EventFd::create();
  if (!ev) return fail(BlockError::kEngineSetup, ev.error().sys_errno, "sync engine eventfd");
  return std::unique_ptr<SyncEngine>(new SyncEngine(image, std::move(*ev), max_in_flight));
}

SyncEngine::SyncEngine(RawImage& image, EventFd notifier, size_t max_in_flight)
    : image_(image),
      notifier_(std::move(notifier)),
      max_in_flight_(max_in_flight),
      io_(image, max_in_flight, *this) {
  ops_.reserve(4);
}

Result<void, BlockErr> SyncEngine::read(uint64_t offset, std::span<const iovec> iov,
                                        uint64_t cookie) {
  return submit(ReqKind::kRead, offset, iov, cookie);
}

Result<void, BlockErr> SyncEngine::write(uint64_t offset, std::span<const iovec> iov,
                                         uint64_t cookie) {
  return submit(ReqKind::kWrite, offset, iov, cookie);
}

Result<void, BlockErr> SyncEngine::flush(uint64_t cookie) {
  return submit(ReqKind::kFlush, 0, {}, cookie);
}

void SyncEngine::start(const KernelOp& op) {
  ops_.push_back(op);
}

Result<void, BlockErr> SyncEngine::submit(ReqKind kind, uint64_t offset, std::span<const iovec> iov,
                                          uint64_t cookie) {
  size_t ready_before = io_.ready();
  auto r = io_.submit(kind, offset, iov, cookie);
  if (!r) return r;
  // A completion can start the next phase of a request (read-modify-write), so run until empty.
  while (!ops_.empty()) {
    KernelOp op = ops_.back();
    ops_.pop_back();
    io_.complete(op.tag, execute(op));
  }
  if (io_.ready() > ready_before) (void)notifier_.signal();
  return {};
}

int64_t SyncEngine::execute(const KernelOp& op) {
  ssize_t n = 0;
  do {
    ++submit_calls_;
    switch (op.kind) {
      case KernelOp::Kind::kRead:
        n = ::preadv(image_.fd(), op.iov, op.iovcnt, static_cast<off_t>(op.offset));
        break;
      case KernelOp::Kind::kWrite:
        n = ::pwritev(image_.fd(), op.iov, op.iovcnt, static_cast<off_t>(op.offset));
        break;
      case KernelOp::Kind::kSync:
        n = ::fdatasync(image_.fd());
        break;
    }
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

size_t SyncEngine::reap(std::span<Completion> out) {
  (void)notifier_.consume();
  size_t n = io_.take(out);
  // Completions left behind (a small `out`) must wake the caller again.
  if (io_.ready() > 0) (void)notifier_.signal();
  return n;
}

EngineStats SyncEngine::stats() const {
  return EngineStats{submit_calls_, io_.requests(), io_.bounced()};
}

}  // namespace kindling::block
