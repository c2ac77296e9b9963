// Leveled logging to stderr, prefixed with the time since the process started.
#pragma once

#include <cstdarg>
#include <optional>
#include <string_view>

namespace kindling::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Sets the most verbose level printed (default kWarn).
void set_level(Level level);
Level level();
// Parses "error", "warn", "info", "debug".
std::optional<Level> parse_level(std::string_view name);
// Seconds since the process started (a monotonic clock read at first use, made at startup).
double uptime_seconds();

void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace kindling::log

#define KLOG_ERROR(...) ::kindling::log::write(::kindling::log::Level::kError, __VA_ARGS__)
#define KLOG_WARN(...) ::kindling::log::write(::kindling::log::Level::kWarn, __VA_ARGS__)
#define KLOG_INFO(...)                                                    \
  do {                                                                    \
    if (::kindling::log::level() >= ::kindling::log::Level::kInfo)        \
      ::kindling::log::write(::kindling::log::Level::kInfo, __VA_ARGS__); \
  } while (0)
#define KLOG_DEBUG(...)                                                    \
  do {                                                                     \
    if (::kindling::log::level() >= ::kindling::log::Level::kDebug)        \
      ::kindling::log::write(::kindling::log::Level::kDebug, __VA_ARGS__); \
  } while (0)
