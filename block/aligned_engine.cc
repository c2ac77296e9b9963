#include "block/aligned_engine.h"

namespace kindling::block {

Result<EventFd, BlockErr> AlignedEngine::make_notifier(size_t max_in_flight, const char* what) {
  if (max_in_flight == 0) return fail(BlockError::kEngineSetup, EINVAL, "max_in_flight is 0");
  auto ev = EventFd::create();
  if (!ev) return fail(BlockError::kEngineSetup, ev.error().sys_errno, what);
  return std::move(*ev);
}

Result<void, BlockErr> AlignedEngine::submit(ReqKind kind, uint64_t offset,
                                             std::span<const iovec> iov, uint64_t cookie) {
  size_t ready_before = io_.ready();
  auto r = io_.submit(kind, offset, iov, cookie);
  if (r) after_accept();
  announce(ready_before);
  return r;
}

Result<void, BlockErr> AlignedEngine::submit_range(ReqKind kind, uint64_t offset, uint64_t length,
                                                   bool may_unmap, uint64_t cookie) {
  size_t ready_before = io_.ready();
  auto r = io_.submit_range(kind, offset, length, may_unmap, cookie);
  if (r) after_accept();
  announce(ready_before);
  return r;
}

size_t AlignedEngine::reap(std::span<Completion> out) {
  (void)notifier_.consume();
  collect_completions();
  size_t n = io_.take(out);
  announce(0);
  return n;
}

}  // namespace kindling::block
