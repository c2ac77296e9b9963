#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>

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

void write(Level l, const char* fmt, ...) {
  if (l > level()) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "[%9.3f] kindling %s: %s\n", uptime_seconds(), name(l), buf);
}

}  // namespace kindling::log
