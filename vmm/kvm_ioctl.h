// The ioctl call every KVM wrapper (system, VM and vCPU fds) goes through, and the error it
// turns a failure into. Internal to vmm/: the .cc files that issue KVM ioctls include it.
#pragma once

#include <sys/ioctl.h>

#include <cerrno>

#include "common/result.h"
#include "vmm/kvm.h"

namespace kindling::vmm {

// An ioctl retried while a signal interrupts it (the vCPU kick signal has no SA_RESTART).
// KVM_RUN does not go through here: its EINTR is how a stop request reaches the vCPU loop.
template <typename... Args>
int xioctl(int fd, unsigned long req, Args... args) {
  int r;
  do {
    r = ::ioctl(fd, req, args...);
  } while (r < 0 && errno == EINTR);
  return r;
}

// The KvmError::kIoctl error for the ioctl named `what`, with errno as it is now.
inline Unexpected<KvmErr> ioctl_error(const char* what) {
  return fail_errno(KvmError::kIoctl, what);
}

}  // namespace kindling::vmm
