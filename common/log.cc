#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace kindling::log {
namespace {

std::atomic<Level> g_level{Level::kWarn};

// Read during static initialisation so that uptime counts from process start.
const auto g_start = std::chrono::steady_clock::now();

const char* name(Level l) {
  switch (l) {
    case Level::kError:
      return "error";
    case Level::kWarn:
      return "warn";
    case Level::kInfo:
      return "info";
    case Level::kDebug:
      return "debug";
  }
  return "?";
}

}  // namespace

void set_level(Level l) {
  g_level.store(l, std::memory_order_relaxed);
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}

std::optional<Level> parse_level(std::string_view n) {
  for (Level l : {Level::kError, Level::kWarn, Level::kInfo, Level::kDebug}) {
    if (n == name(l)) return l;
  }
  return std::nullopt;
}

double uptime_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
}

void vwrite(Level l, const char* fmt, va_list ap) {
  if (l > level()) return;
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "[%9.3f] kindling %s: %s\n", uptime_seconds(), name(l), buf);
}

void write(Level l, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwrite(l, fmt, ap);
  va_end(ap);
}

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

bool RateLimit::allow(uint64_t* suppressed) {
  std::lock_guard lock(mu_);
  uint64_t now = clock_();
  *suppressed = 0;
  if (!started_ || now - window_start_ >= interval_ns_) {
    started_ = true;
    window_start_ = now;
    printed_ = 0;
  }
  if (printed_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++printed_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

uint64_t RateLimit::pending_suppressed() const {
  std::lock_guard lock(mu_);
  return suppressed_;
}

void write_limited(RateLimit& limit, Level l, const char* fmt, ...) {
  if (l > level()) return;
  uint64_t suppressed = 0;
  if (!limit.allow(&suppressed)) return;
  if (suppressed > 0) {
    write(l, "(%llu similar messages suppressed)", static_cast<unsigned long long>(suppressed));
  }
  va_list ap;
  va_start(ap, fmt);
  vwrite(l, fmt, ap);
  va_end(ap);
}

}  // namespace kindling::log
