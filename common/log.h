// Leveled logging to stderr, prefixed with the time since the process started, and rate
// limits for the lines a guest can trigger (KLOG_*_RATELIMITED).
#pragma once

#include <cstdarg>
#include <cstdint>
#include <mutex>
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
// write() with a va_list.
void vwrite(Level level, const char* fmt, va_list ap) __attribute__((format(printf, 2, 0)));

// CLOCK_MONOTONIC in nanoseconds: the clock a RateLimit uses unless a test gives another.
uint64_t monotonic_ns();

// Lets at most `burst` lines through per `interval_ns`, and counts the rest; the first line let
// through in a new interval learns how many were suppressed before it. Thread-safe.
class RateLimit {
 public:
  using Clock = uint64_t (*)();                  // nanoseconds, monotonic
  static constexpr uint32_t kDefaultBurst = 10;  // as Linux's printk_ratelimit
  static constexpr uint64_t kDefaultIntervalNs = 5'000'000'000;

  // `burst` (at least 1) lines per `interval_ns`, timed by `clock`.
  constexpr explicit RateLimit(uint32_t burst = kDefaultBurst,
                               uint64_t interval_ns = kDefaultIntervalNs,
                               Clock clock = &monotonic_ns)
      : burst_(burst > 0 ? burst : 1), interval_ns_(interval_ns), clock_(clock) {}
  RateLimit(const RateLimit&) = delete;
  RateLimit& operator=(const RateLimit&) = delete;

  // Whether one more line may be printed now. When it may, `*suppressed` is set to the lines
  // suppressed since the last one let through (0 if none).
  bool allow(uint64_t* suppressed);
  // Lines suppressed and not yet reported.
  uint64_t pending_suppressed() const;

 private:
  mutable std::mutex mu_;
  const uint32_t burst_;
  const uint64_t interval_ns_;
  const Clock clock_;
  bool started_ = false;
  uint64_t window_start_ = 0;
  uint32_t printed_ = 0;
  uint64_t suppressed_ = 0;
};

// write() through `limit`: a suppressed line is dropped; the first line after suppressed ones
// is preceded by one "(K similar messages suppressed)" line. Lines below level() cost nothing.
void write_limited(RateLimit& limit, Level level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

// A log line a guest can trigger: one RateLimit per call site (default burst and interval),
// shared by every device that reaches it.
#define KLOG_RATELIMITED(lvl, ...)                                          \
  do {                                                                      \
    if (::kindling::log::level() >= (lvl)) {                                \
      static ::kindling::log::RateLimit klog_site_limit_;                   \
      ::kindling::log::write_limited(klog_site_limit_, (lvl), __VA_ARGS__); \
    }                                                                       \
  } while (0)
#define KLOG_ERROR_RATELIMITED(...) KLOG_RATELIMITED(::kindling::log::Level::kError, __VA_ARGS__)
#define KLOG_WARN_RATELIMITED(...) KLOG_RATELIMITED(::kindling::log::Level::kWarn, __VA_ARGS__)
#define KLOG_INFO_RATELIMITED(...) KLOG_RATELIMITED(::kindling::log::Level::kInfo, __VA_ARGS__)
#define KLOG_DEBUG_RATELIMITED(...) KLOG_RATELIMITED(::kindling::log::Level::kDebug, __VA_ARGS__)
