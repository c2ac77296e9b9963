// The token buckets, driven by an exact fake clock (nanoseconds passed in): no sleeping.
#include "block/rate_limiter.h"

#include <gtest/gtest.h>

namespace kindling::block {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 5'000 * kMs;  // any start time

TokenBucketConfig bucket(uint64_t size, uint64_t refill_ms, uint64_t burst = 0) {
  return TokenBucketConfig{size, burst, refill_ms};
}

TEST(TokenBucket, ZeroSizeOrZeroRefillMeansNoLimit) {
  EXPECT_FALSE(limits(bucket(0, 100)));
  EXPECT_FALSE(limits(bucket(100, 0)));
  EXPECT_TRUE(limits(bucket(1, 1)));
  RateLimiterConfig c;
  c.bandwidth = bucket(0, 1000);
  c.ops = bucket(500, 0);
  EXPECT_FALSE(limits(c));
  RateLimiter r(c, kT0);
  EXPECT_TRUE(r.unlimited());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(r.consume(1 << 20, kT0));
  EXPECT_EQ(r.ready_at(1 << 20, kT0), kT0);
}

TEST(TokenBucket, StartsFullAndRefillsInProportionToTime) {
  TokenBucket b(bucket(1000, 1000), kT0);  // one token per millisecond
  EXPECT_EQ(b.budget(), 1000u);
  EXPECT_EQ(b.reduce(1000, kT0), BucketResult::kSuccess);
  EXPECT_EQ(b.budget(), 0u);
  EXPECT_EQ(b.check(1, kT0), BucketResult::kFailure);
  EXPECT_EQ(b.check(1, kT0 + kMs - 1), BucketResult::kFailure);
  EXPECT_EQ(b.check(1, kT0 + kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.check(250, kT0 + 250 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.budget(), 250u);
  EXPECT_EQ(b.check(251, kT0 + 250 * kMs), BucketResult::kFailure);
  EXPECT_EQ(b.reduce(250, kT0 + 250 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.budget(), 0u);
  // Never more than the size, however long it waits.
  EXPECT_EQ(b.check(1000, kT0 + 3600'000 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.budget(), 1000u);
}

TEST(TokenBucket, PartialRefillsKeepTheirRemainder) {
  TokenBucket b(bucket(1000, 1000), kT0);
  ASSERT_EQ(b.reduce(1000, kT0), BucketResult::kSuccess);
  // 1.5 ms gives one token; the half millisecond left over counts towards the next one.
  EXPECT_EQ(b.reduce(1, kT0 + 3 * kMs / 2), BucketResult::kSuccess);
  EXPECT_EQ(b.check(1, kT0 + 2 * kMs - 1), BucketResult::kFailure);
  EXPECT_EQ(b.reduce(1, kT0 + 2 * kMs), BucketResult::kSuccess);
}

TEST(TokenBucket, RatesThatDoNotDivideEvenly) {
  // 3 tokens per 10 ms: the smallest exact step is 3 tokens per 10 ms.
  TokenBucket b(bucket(3, 10), kT0);
  ASSERT_EQ(b.reduce(3, kT0), BucketResult::kSuccess);
  EXPECT_EQ(b.ready_at(1, kT0), kT0 + 10 * kMs);
  EXPECT_EQ(b.check(1, kT0 + 10 * kMs - 1), BucketResult::kFailure);
  // 6 tokens per ms: 3 tokens every half millisecond, all three at once.
  TokenBucket h(bucket(6, 1), kT0);
  ASSERT_EQ(h.reduce(6, kT0), BucketResult::kSuccess);
  EXPECT_EQ(h.check(1, kT0 + kMs / 2 - 1), BucketResult::kFailure);
  EXPECT_EQ(h.check(3, kT0 + kMs / 2), BucketResult::kSuccess);
  EXPECT_EQ(h.budget(), 3u);
  EXPECT_EQ(h.ready_at(6, kT0 + kMs / 2), kT0 + kMs);
  // 10 000 tokens per 3 ms: 10 000 / 3 000 000 ns reduces to 1 token per 300 ns.
  TokenBucket c(bucket(10'000, 3), kT0);
  ASSERT_EQ(c.reduce(10'000, kT0), BucketResult::kSuccess);
  EXPECT_EQ(c.ready_at(7, kT0), kT0 + 7 * 300);
  EXPECT_EQ(c.check(7, kT0 + 7 * 300 - 1), BucketResult::kFailure);
  EXPECT_EQ(c.check(7, kT0 + 7 * 300), BucketResult::kSuccess);
}

TEST(TokenBucket, ReadyAtIsTheFirstInstantThatSucceeds) {
  TokenBucket b(bucket(1000, 1000), kT0);
  ASSERT_EQ(b.reduce(1000, kT0), BucketResult::kSuccess);
  EXPECT_EQ(b.ready_at(500, kT0), kT0 + 500 * kMs);
  EXPECT_EQ(b.ready_at(500, kT0 + 100 * kMs), kT0 + 500 * kMs);
  EXPECT_EQ(b.check(500, kT0 + 500 * kMs - 1), BucketResult::kFailure);
  EXPECT_EQ(b.check(500, kT0 + 500 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.ready_at(500, kT0 + 500 * kMs), kT0 + 500 * kMs) << "already there";
}

TEST(TokenBucket, OneTimeBurstIsSpentFirstAndNeverRefilled) {
  TokenBucket b(bucket(100, 100, 50), kT0);
  EXPECT_EQ(b.reduce(30, kT0), BucketResult::kSuccess);
  EXPECT_EQ(b.one_time_burst(), 20u);
  EXPECT_EQ(b.budget(), 100u);
  EXPECT_EQ(b.reduce(40, kT0), BucketResult::kSuccess);  // 20 from the burst, 20 from budget
  EXPECT_EQ(b.one_time_burst(), 0u);
  EXPECT_EQ(b.budget(), 80u);
  EXPECT_EQ(b.check(100, kT0 + 3600'000 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.one_time_burst(), 0u);
  EXPECT_EQ(b.budget(), 100u);
}

TEST(TokenBucket, FailureTakesNothing) {
  TokenBucket b(bucket(100, 100, 10), kT0);
  ASSERT_EQ(b.reduce(100, kT0), BucketResult::kSuccess);  // 10 burst + 90 budget
  EXPECT_EQ(b.reduce(11, kT0), BucketResult::kFailure);
  EXPECT_EQ(b.budget(), 10u);
  EXPECT_EQ(b.one_time_burst(), 0u);
}

TEST(TokenBucket, RequestBiggerThanTheBucketPassesThenBlocks) {
  TokenBucket b(bucket(100, 100), kT0);  // one token per millisecond
  ASSERT_EQ(b.reduce(40, kT0), BucketResult::kSuccess);
  // 250 tokens: the 60 left pay part, the other 190 take 190 ms to pay back.
  EXPECT_EQ(b.reduce(250, kT0), BucketResult::kOverConsumption);
  EXPECT_EQ(b.budget(), 0u);
  EXPECT_EQ(b.check(1, kT0 + 190 * kMs), BucketResult::kFailure);
  EXPECT_EQ(b.check(250, kT0 + 190 * kMs - 1), BucketResult::kFailure) << "blocked: even big";
  EXPECT_EQ(b.ready_at(1, kT0), kT0 + 191 * kMs);
  EXPECT_EQ(b.ready_at(250, kT0), kT0 + 190 * kMs);
  EXPECT_EQ(b.check(1, kT0 + 191 * kMs - 1), BucketResult::kFailure);
  EXPECT_EQ(b.check(1, kT0 + 191 * kMs), BucketResult::kSuccess);
  EXPECT_EQ(b.budget(), 1u);
  // Over a long run the big requests go at exactly the rate: 10 x 250 tokens in 2.5 s.
  TokenBucket c(bucket(100, 100), kT0);
  uint64_t t = kT0;
  for (int i = 0; i < 10; ++i) {
    t = c.ready_at(250, t);
    ASSERT_EQ(c.reduce(250, t), BucketResult::kOverConsumption);
  }
  EXPECT_EQ(t, kT0 + (9 * 250 - 100) * kMs) << "the first 100 tokens were in the full bucket";
}

TEST(RateLimiter, ChargesOneOpAndTheBytesOrNothing) {
  RateLimiterConfig c;
  c.ops = bucket(10, 1000);
  c.bandwidth = bucket(1000, 1000);
  RateLimiter r(c, kT0);
  ASSERT_FALSE(r.unlimited());
  EXPECT_TRUE(r.consume(900, kT0));
  EXPECT_EQ(r.ops()->budget(), 9u);
  EXPECT_EQ(r.bandwidth()->budget(), 100u);
  EXPECT_FALSE(r.consume(200, kT0)) << "not enough bytes";
  EXPECT_EQ(r.ops()->budget(), 9u) << "the op is not charged when the bytes are refused";
  EXPECT_EQ(r.ready_at(200, kT0), kT0 + 100 * kMs);
  EXPECT_TRUE(r.consume(0, kT0)) << "a flush costs one op, no bytes";
  EXPECT_EQ(r.ops()->budget(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(r.consume(0, kT0));
  EXPECT_FALSE(r.consume(0, kT0)) << "out of ops";
  EXPECT_EQ(r.ready_at(0, kT0), kT0 + 100 * kMs);  // 10 ops per second
  EXPECT_EQ(r.bandwidth()->budget(), 100u) << "the bytes are not charged when the op is refused";
  EXPECT_TRUE(r.consume(100, kT0 + 100 * kMs));
}

TEST(RateLimiter, OnlyTheConfiguredBucketLimits) {
  RateLimiterConfig c;
  c.ops = bucket(2, 1000);
  RateLimiter r(c, kT0);
  EXPECT_FALSE(r.bandwidth());
  EXPECT_TRUE(r.consume(uint64_t{1} << 40, kT0));
  EXPECT_TRUE(r.consume(uint64_t{1} << 40, kT0));
  EXPECT_FALSE(r.consume(1, kT0));
  EXPECT_EQ(r.ready_at(1, kT0), kT0 + 500 * kMs);
}

}  // namespace
}  // namespace kindling::block
