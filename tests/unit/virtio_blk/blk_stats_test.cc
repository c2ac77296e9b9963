// The latency histogram and the stats block printed by --stats.
#include "virtio/blk_stats.h"

#include <gtest/gtest.h>

namespace kindling::virtio {
namespace {

TEST(LatencyHistogramTest, PercentilesWithinBucketError) {
  LatencyHistogram h;
  EXPECT_EQ(h.percentile(0.5), 0u);
  // 1..1000 microseconds, once each.
  for (uint64_t us = 1; us <= 1000; ++us) h.record(us * 1000);
  EXPECT_EQ(h.count(), 1000u);
  auto near = [](uint64_t got, double want) {
    return got >= want && static_cast<double>(got) <= want * 1.25;
  };
  EXPECT_TRUE(near(h.percentile(0.5), 500e3)) << h.percentile(0.5);
  EXPECT_TRUE(near(h.percentile(0.99), 990e3)) << h.percentile(0.99);
  EXPECT_TRUE(near(h.percentile(1.0), 1000e3)) << h.percentile(1.0);
  EXPECT_LE(h.percentile(0.0), 1250u);
}

TEST(LatencyHistogramTest, SmallValuesAndMerge) {
  LatencyHistogram a, b;
  a.record(0);
  a.record(3);
  b.record(1u << 20);
  a.merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.percentile(0.3), 0u);
  EXPECT_GE(a.percentile(1.0), 1u << 20);
  EXPECT_LT(a.percentile(1.0), (1u << 20) + (1u << 18));
}

TEST(BlockStatsTest, FormatsAReadableBlock) {
  BlockStats s;
  s.reads = 10;
  s.writes = 5;
  s.flushes = 1;
  s.bytes_read = 10 << 20;
  s.merged_groups = 2;
  s.merged_requests = 7;
  s.io_submit_calls = 4;
  s.latency.record(100'000);
  EXPECT_DOUBLE_EQ(s.average_merge(), 3.5);
  EXPECT_EQ(s.requests(), 16u);
  std::string out = format_stats(s, "> ");
  EXPECT_NE(out.find("> requests: 16 (read 10, write 5, flush 1"), std::string::npos) << out;
  EXPECT_NE(out.find("read 10.0 MiB"), std::string::npos) << out;
  EXPECT_NE(out.find("io_submit calls 4, merged groups 2 (avg 3.50 requests)"), std::string::npos)
      << out;
  EXPECT_NE(out.find("latency: p50 "), std::string::npos) << out;
}

}  // namespace
}  // namespace kindling::virtio
