// Counts the log lines some code writes to stderr, at a chosen log level: for checking that a
// guest cannot flood the log.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "common/log.h"

namespace kindling::test {

// Runs `f` with the log at `level` and returns how many lines it wrote that contain `needle`.
template <typename F>
size_t count_log_lines(log::Level level, std::string_view needle, F f) {
  const log::Level saved = log::level();
  log::set_level(level);
  testing::internal::CaptureStderr();
  f();
  const std::string out = testing::internal::GetCapturedStderr();
  log::set_level(saved);
  size_t n = 0;
  for (size_t at = 0; at < out.size();) {
    size_t nl = out.find('\n', at);
    if (nl == std::string::npos) nl = out.size();
    if (std::string_view(out).substr(at, nl - at).find(needle) != std::string_view::npos) ++n;
    at = nl + 1;
  }
  return n;
}

}  // namespace kindling::test
