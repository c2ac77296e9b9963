#include "block/sync_engine.h"

#include <fcntl.h>
#include <unistd.h>

#include "block/raw_image.h"

namespace kindling::block {

Result<std::unique_ptr<SyncEngine>, BlockErr> SyncEngine::create(RawImage& image,
                                                                 size_t max_in_flight) {
  auto ev = make_notifier(max_in_flight, "sync engine eventfd");
  if (!ev) return ev.take_error();
  return std::unique_ptr<SyncEngine>(new SyncEngine(image, std::move(*ev), max_in_flight));
}

SyncEngine::SyncEngine(RawImage& image, EventFd notifier, size_t max_in_flight)
    : AlignedEngine(image, std::move(notifier), max_in_flight) {
  ops_.reserve(4);
}

void SyncEngine::start(const KernelOp& op) {
  ops_.push_back(op);
}

void SyncEngine::after_accept() {
  // A completion can start the next phase of a request (read-modify-write), so run until empty.
  while (!ops_.empty()) {
    KernelOp op = ops_.back();
    ops_.pop_back();
    io_.complete(op.tag, execute(op));
  }
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
      case KernelOp::Kind::kFallocate:
        n = ::fallocate(image_.fd(), op.mode, static_cast<off_t>(op.offset),
                        static_cast<off_t>(op.length));
        break;
    }
  } while (n < 0 && errno == EINTR);
  if (op.kind == KernelOp::Kind::kSync && n == 0) ++syncs_;
  return n < 0 ? -errno : n;
}

}  // namespace kindling::block
