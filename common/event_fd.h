// An owned Linux eventfd: the doorbell between vCPUs, I/O threads and KVM.
#pragma once

#include <cstdint>

#include "common/result.h"
#include "common/unique_fd.h"

namespace kindling {

enum class EventFdError { kCreate, kWrite, kRead };
const char* to_string(EventFdError e);

// A non-blocking, close-on-exec eventfd.
class EventFd {
 public:
  using Err = Error<EventFdError>;

  // Creates a new eventfd (counter 0, EFD_NONBLOCK | EFD_CLOEXEC).
  static Result<EventFd, Err> create();

  // Adds `n` to the counter.
  Result<void, Err> signal(uint64_t n = 1) const;
  // Returns and clears the counter; 0 when nothing was signalled.
  Result<uint64_t, Err> consume() const;

  int fd() const { return fd_.get(); }

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace kindling
