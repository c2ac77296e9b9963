// Waiting for another thread in tests: bounded polling, never an unbounded loop.
#pragma once

#include <chrono>
#include <thread>

namespace kindling::test {

// Polls `pred` every millisecond until it holds or `timeout_ms` have passed; returns whether it
// held. Callers assert on the condition itself afterwards.
template <typename Pred>
bool eventually(Pred pred, int timeout_ms = 5000) {
  for (int i = 0; i < timeout_ms; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

}  // namespace kindling::test
