#include "devices/exit_port.h"

#include <algorithm>
#include <cstdio>

#include "common/log.h"

namespace kindling::devices {

ExitPort::ExitPort(std::function<void(uint8_t)> on_exit) : on_exit_(std::move(on_exit)) {}

void ExitPort::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void ExitPort::write(uint64_t, std::span<const uint8_t> data) {
  if (data.empty()) return;
  KLOG_DEBUG_RATELIMITED("exit port: guest asked to exit with status %u", data[0]);
  if (on_exit_) on_exit_(data[0]);
}

void BootTimer::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void BootTimer::write(uint64_t, std::span<const uint8_t>) {
  double now = log::uptime_seconds();
  {
    std::lock_guard lock(mu_);
    if (seconds_) return;
    seconds_ = now;
  }
  // Printed whatever the log level: this line is the point of the port.
  std::fprintf(stderr, "kindling: guest boot-timer: user space reached after %.3f s\n", now);
  std::fflush(stderr);
}

std::optional<double> BootTimer::reported_seconds() const {
  std::lock_guard lock(mu_);
  return seconds_;
}

}  // namespace kindling::devices
