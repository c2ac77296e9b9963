#include "common/result.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/event_fd.h"
#include "common/unique_fd.h"

namespace kindling {
namespace {

enum class TestError { kBad };
const char* to_string(TestError) {
  return "bad thing";
}

Result<int, Error<TestError>> half(int v) {
  if (v % 2 != 0) return fail(TestError::kBad, EINVAL, "half(" + std::to_string(v) + ")");
  return v / 2;
}

TEST(Result, CarriesValueOrError) {
  auto ok = half(4);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);
  auto bad = half(3);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, TestError::kBad);
  EXPECT_EQ(bad.error().message(), std::string("half(3): bad thing (") + strerror(EINVAL) + ")");
}

TEST(Result, VoidPropagates) {
  auto f = [](bool good) -> Result<void, Error<TestError>> {
    if (!good) return fail(TestError::kBad);
    return {};
  };
  EXPECT_TRUE(f(true));
  EXPECT_FALSE(f(false));
  EXPECT_EQ(f(false).error().message(), "bad thing");
}

TEST(UniqueFd, ClosesAndReleases) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  { UniqueFd a(fds[0]); }
  EXPECT_EQ(fcntl(fds[0], F_GETFD), -1);  // closed
  UniqueFd b(fds[1]);
  int raw = b.release();
  EXPECT_FALSE(b.valid());
  EXPECT_NE(fcntl(raw, F_GETFD), -1);  // still open
  close(raw);
}

TEST(EventFd, SignalAndConsume) {
  auto e = EventFd::create();
  ASSERT_TRUE(e);
  EXPECT_EQ(*e->consume(), 0u);
  ASSERT_TRUE(e->signal());
  ASSERT_TRUE(e->signal(2));
  EXPECT_EQ(*e->consume(), 3u);
  EXPECT_EQ(*e->consume(), 0u);
}

}  // namespace
}  // namespace kindling
