// The log's rate limit: burst, interval, the suppressed-count line, threads, and levels.
#include "common/log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace kindling::log {
namespace {

// The test's clock: RateLimit takes a plain function, so the time lives here.
std::atomic<uint64_t> g_now{1'000};
uint64_t fake_now() {
  return g_now.load();
}

constexpr uint64_t kSecond = 1'000'000'000;

// Counts how many of `n` tries get through.
int allowed(RateLimit& rl, int n, uint64_t* last_suppressed = nullptr) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    uint64_t s = 0;
    if (rl.allow(&s)) {
      ++ok;
      if (last_suppressed && s) *last_suppressed = s;
    }
  }
  return ok;
}

TEST(RateLimitTest, BurstPerIntervalThenReportsTheSuppressed) {
  g_now = 5 * kSecond;
  RateLimit rl(3, kSecond, &fake_now);
  uint64_t s = 0;
  EXPECT_EQ(allowed(rl, 10, &s), 3);
  EXPECT_EQ(s, 0u) << "nothing was suppressed before the first lines";
  EXPECT_EQ(rl.pending_suppressed(), 7u);
  g_now += kSecond - 1;
  EXPECT_EQ(allowed(rl, 5), 0) << "still the same interval";
  EXPECT_EQ(rl.pending_suppressed(), 12u);
  g_now += 1;
  ASSERT_TRUE(rl.allow(&s));
  EXPECT_EQ(s, 12u) << "the first line of the next interval carries the count";
  EXPECT_EQ(rl.pending_suppressed(), 0u);
  EXPECT_EQ(allowed(rl, 5, &s), 2);
  EXPECT_EQ(s, 12u) << "reported once";
}

TEST(RateLimitTest, QuietSitesAreNeverLimited) {
  g_now = 0;
  RateLimit rl(2, kSecond, &fake_now);
  for (int i = 0; i < 100; ++i) {
    uint64_t s = 1;
    EXPECT_TRUE(rl.allow(&s));
    EXPECT_EQ(s, 0u);
    g_now += kSecond;
  }
}

TEST(RateLimitTest, ZeroBurstStillLetsOneLineThrough) {
  g_now = 0;
  RateLimit rl(0, kSecond, &fake_now);
  EXPECT_EQ(allowed(rl, 5), 1);
}

// Many threads on one site: exactly `burst` lines get through per interval, and every other
// try is counted once.
TEST(RateLimitTest, ThreadSafe) {
  g_now = 0;
  RateLimit rl(10, kSecond, &fake_now);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] { ok += allowed(rl, 20000); });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 10);
  EXPECT_EQ(rl.pending_suppressed(), 4u * 20000 - 10);
}

class WriteLimitedTest : public testing::Test {
 protected:
  void SetUp() override {
    saved_ = level();
    set_level(Level::kWarn);
  }
  void TearDown() override { set_level(saved_); }

  // Lines written to stderr by `f`.
  template <typename F>
  std::vector<std::string> lines_of(F f) {
    testing::internal::CaptureStderr();
    f();
    std::string out = testing::internal::GetCapturedStderr();
    std::vector<std::string> lines;
    size_t at = 0;
    while (at < out.size()) {
      size_t nl = out.find('\n', at);
      lines.push_back(out.substr(at, nl - at));
      at = nl == std::string::npos ? out.size() : nl + 1;
    }
    return lines;
  }

  Level saved_ = Level::kWarn;
};

TEST_F(WriteLimitedTest, FloodBecomesBurstAndOneSuppressedLine) {
  g_now = 0;
  RateLimit rl(3, kSecond, &fake_now);
  auto first = lines_of([&] {
    for (int i = 0; i < 1000; ++i) write_limited(rl, Level::kWarn, "bad access %d", i);
  });
  ASSERT_EQ(first.size(), 3u);
  EXPECT_NE(first[0].find("warn: bad access 0"), std::string::npos) << first[0];
  EXPECT_NE(first[2].find("bad access 2"), std::string::npos) << first[2];
  g_now += kSecond;
  auto next = lines_of([&] { write_limited(rl, Level::kWarn, "bad access %d", 1000); });
  ASSERT_EQ(next.size(), 2u);
  EXPECT_NE(next[0].find("(997 similar messages suppressed)"), std::string::npos) << next[0];
  EXPECT_NE(next[1].find("bad access 1000"), std::string::npos) << next[1];
}

TEST_F(WriteLimitedTest, LinesBelowTheLevelDoNotSpendTheBurst) {
  g_now = 0;
  RateLimit rl(2, kSecond, &fake_now);
  auto none = lines_of([&] {
    for (int i = 0; i < 50; ++i) write_limited(rl, Level::kDebug, "debug %d", i);
  });
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(rl.pending_suppressed(), 0u);
  auto two = lines_of([&] {
    for (int i = 0; i < 5; ++i) write_limited(rl, Level::kError, "error %d", i);
  });
  EXPECT_EQ(two.size(), 2u);
}

// The per-call-site macro: one limit per site, shared by every caller of that site.
TEST_F(WriteLimitedTest, MacroLimitsItsCallSite) {
  auto site = [](int i) { KLOG_WARN_RATELIMITED("site %d", i); };
  auto lines = lines_of([&] {
    for (int i = 0; i < 100; ++i) site(i);
  });
  EXPECT_EQ(lines.size(), RateLimit::kDefaultBurst);
  auto other = lines_of([] { KLOG_WARN_RATELIMITED("another site"); });
  EXPECT_EQ(other.size(), 1u) << "another call site has its own limit";
  auto quiet = lines_of([] { KLOG_DEBUG_RATELIMITED("below the level"); });
  EXPECT_TRUE(quiet.empty());
}

}  // namespace
}  // namespace kindling::log
