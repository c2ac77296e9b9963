// The virtio-blk device's rate limiter through its I/O thread, over the FakeEngine: a request
// the buckets refuse is held (not dropped, not reordered) until the limiter's timer or a new
// configuration lets it through. No test asserts a duration.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <unistd.h>

#include <memory>

#include "tests/support/blk_driver.h"
#include "tests/support/eventually.h"
#include "tests/unit/virtio_blk/fake_engine.h"
#include "virtio/blk_device.h"

namespace kindling::virtio {
namespace {

using block::RateLimiterConfig;
using block::TokenBucketConfig;
using test::BlkDone;
using test::BlkDriver;

constexpr uint64_t kHourMs = 3'600'000;  // a refill that never comes during a test

RateLimiterConfig ops_limit(uint64_t size, uint64_t refill_ms) {
  RateLimiterConfig c;
  c.ops = TokenBucketConfig{size, 0, refill_ms};
  return c;
}

RateLimiterConfig bytes_limit(uint64_t size, uint64_t refill_ms) {
  RateLimiterConfig c;
  c.bandwidth = TokenBucketConfig{size, 0, refill_ms};
  return c;
}

struct Limited {
  std::unique_ptr<BlockDevice> dev;
  test::FakeEngine* fake = nullptr;
};

// A device over a FakeEngine that completes every submission at once.
Limited limited_device(const RateLimiterConfig& limits) {
  auto engine = std::make_unique<test::FakeEngine>(64);
  Limited l;
  l.fake = engine.get();
  l.fake->complete_at_once(true);
  BlockOptions o;
  o.merge = false;  // one submission per request: the tests count them
  o.rate_limiter = limits;
  auto dev = BlockDevice::create_with_engine(o, 1 << 20, 512, std::move(engine));
  EXPECT_TRUE(dev);
  if (dev) l.dev = std::move(*dev);
  return l;
}

// Waits until the I/O thread has held a request back `n` times (or gives up after 5 s).
bool throttled(const BlockDevice& dev, uint64_t n = 1) {
  return test::eventually([&] { return dev.stats().rate_limiter_throttled_events >= n; });
}

TEST(BlkRateLimit, UnlimitedDeviceNeverThrottles) {
  Limited l = limited_device({});
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  for (uint16_t t = 0; t < 32; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  EXPECT_EQ(drv.wait_for(32).size(), 32u);
  drv.reset();
  EXPECT_EQ(l.dev->stats().rate_limiter_throttled_events, 0u);
  EXPECT_EQ(l.dev->stats().rate_limiter_event_count, 0u);
}

// One op per hour: the first request passes, the second is held in the device and the rest
// stay in the ring; nothing is answered or dropped meanwhile.
TEST(BlkRateLimit, RequestIsHeldWhileTheBucketIsEmpty) {
  Limited l = limited_device(ops_limit(1, kHourMs));
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  for (uint16_t t = 0; t < 4; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  auto first = drv.wait_for(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].tag, 0);
  ASSERT_TRUE(throttled(*l.dev));
  usleep(20000);
  std::vector<BlkDone> more;
  EXPECT_EQ(drv.collect(more), 0u) << "a held request was answered";
  EXPECT_EQ(l.fake->submitted(), 1u);
  EXPECT_FALSE(drv.irq().needs_reset.load());
  drv.reset();  // with a request held: dropped unanswered, the device can be reset
  EXPECT_FALSE(l.dev->active());
  EXPECT_EQ(drv.mock().used_idx(), 1u);
}

// 1 op per 20 ms: every request completes, in order, after the limiter's timer fired.
TEST(BlkRateLimit, HeldRequestsCompleteAfterTheTimerInOrder) {
  Limited l = limited_device(ops_limit(1, 20));
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  for (uint16_t t = 0; t < 5; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  auto done = drv.wait_for(5);
  ASSERT_EQ(done.size(), 5u);
  for (uint16_t t = 0; t < 5; ++t) {
    EXPECT_EQ(done[t].tag, t) << "order kept";
    EXPECT_EQ(done[t].status, VIRTIO_BLK_S_OK);
  }
  drv.reset();
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(l.fake->subs[i].offset, i * 4096) << "submission order";
  BlockStats s = l.dev->stats();
  EXPECT_GE(s.rate_limiter_throttled_events, 4u);
  EXPECT_GE(s.rate_limiter_event_count, 4u) << "each held request was released by the timer";
  EXPECT_EQ(s.reads, 5u);
}

// A 64 KiB read against a 4 KiB bucket goes through (Firecracker's over-consumption), and
// leaves the bucket blocked: the next request waits.
TEST(BlkRateLimit, RequestBiggerThanTheBucketGoesThrough) {
  Limited l = limited_device(bytes_limit(4096, kHourMs));
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 65536));
  drv.kick();
  auto big = drv.wait_for(1);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_EQ(big[0].status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(l.dev->stats().rate_limiter_throttled_events, 0u);
  ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_IN, 0, 512));
  drv.kick();
  ASSERT_TRUE(throttled(*l.dev));
  std::vector<BlkDone> more;
  EXPECT_EQ(drv.collect(more), 0u);
  drv.reset();
}

// A flush and a GET_ID cost an op each and no bytes: a bytes-only limiter lets them through.
TEST(BlkRateLimit, RequestsWithoutDataCostNoBytes) {
  Limited l = limited_device(bytes_limit(4096, kHourMs));
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 4096));  // empties the bucket
  ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_FLUSH, 0, 0));
  ASSERT_TRUE(drv.add(2, VIRTIO_BLK_T_GET_ID, 0, 20));
  drv.kick();
  EXPECT_EQ(drv.wait_for(3).size(), 3u);
  drv.reset();
  EXPECT_EQ(l.dev->stats().rate_limiter_throttled_events, 0u);
}

// The live setter: a held request is released as soon as the limit is lifted, and a new limit
// applies to what follows.
TEST(BlkRateLimit, SetterChangesTheLimitLive) {
  Limited l = limited_device(ops_limit(1, kHourMs));
  ASSERT_TRUE(l.dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  for (uint16_t t = 0; t < 3; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  ASSERT_EQ(drv.wait_for(1).size(), 1u);
  ASSERT_TRUE(throttled(*l.dev));

  l.dev->set_rate_limiter({});
  EXPECT_EQ(l.dev->rate_limiter(), RateLimiterConfig{});
  auto rest = drv.wait_for(2);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].tag, 1);
  EXPECT_EQ(rest[1].tag, 2);

  // Two ops per hour from now on: two more pass (a new bucket starts full), the third waits.
  // Read before the update: the I/O thread may take it before the next line runs.
  const uint64_t before = l.dev->stats().rate_limiter_event_count;
  l.dev->set_rate_limiter(ops_limit(2, kHourMs));
  ASSERT_TRUE(test::eventually([&] { return l.dev->stats().rate_limiter_event_count > before; }));
  for (uint16_t t = 3; t < 6; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  const uint64_t held_before = l.dev->stats().rate_limiter_throttled_events;
  drv.kick();
  EXPECT_EQ(drv.wait_for(2).size(), 2u);
  ASSERT_TRUE(throttled(*l.dev, held_before + 1));
  drv.reset();
  EXPECT_EQ(l.dev->stats().reads, 5u);
}

// Set while inactive: the next activation starts with it.
TEST(BlkRateLimit, SetterBeforeActivation) {
  Limited l = limited_device({});
  ASSERT_TRUE(l.dev);
  l.dev->set_rate_limiter(ops_limit(1, kHourMs));
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*l.dev));
  ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 4096));
  ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_IN, 8, 4096));
  drv.kick();
  EXPECT_EQ(drv.wait_for(1).size(), 1u);
  ASSERT_TRUE(throttled(*l.dev));
  drv.reset();
  EXPECT_EQ(l.dev->stats().reads, 1u);
}

}  // namespace
}  // namespace kindling::virtio
