#include "common/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace kindling {

const char* to_string(EventFdError e) {
  switch (e) {
    case EventFdError::kCreate:
      return "cannot create eventfd";
    case EventFdError::kWrite:
      return "cannot signal eventfd";
    case EventFdError::kRead:
      return "cannot read eventfd";
  }
  return "eventfd error";
}

Result<EventFd, EventFd::Err> EventFd::create() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return fail_errno(EventFdError::kCreate);
  return EventFd(UniqueFd(fd));
}

Result<void, EventFd::Err> EventFd::signal(uint64_t n) const {
  // A full counter (EAGAIN) means the reader has not caught up; the wakeup is still pending.
  if (::write(fd_.get(), &n, sizeof(n)) != sizeof(n) && errno != EAGAIN) {
    return fail_errno(EventFdError::kWrite);
  }
  return {};
}

Result<uint64_t, EventFd::Err> EventFd::consume() const {
  uint64_t v = 0;
  ssize_t r = ::read(fd_.get(), &v, sizeof(v));
  if (r == sizeof(v)) return v;
  if (r < 0 && errno == EAGAIN) return uint64_t{0};
  return fail_errno(EventFdError::kRead);
}

}  // namespace kindling
