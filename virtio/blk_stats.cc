#include "virtio/blk_stats.h"

#include <bit>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>

namespace kindling::virtio {

int LatencyHistogram::bucket(uint64_t ns) {
  if (ns < kSub) return static_cast<int>(ns);
  // Exponent e (top bit), then the next two bits pick the quarter within [2^e, 2^(e+1)).
  int e = 63 - std::countl_zero(ns);
  int frac = static_cast<int>((ns >> (e - 2)) & (kSub - 1));
  return e * kSub + frac;
}

uint64_t LatencyHistogram::upper_bound(int b) {
  if (b < kSub) return static_cast<uint64_t>(b);
  int e = b / kSub;
  uint64_t frac = static_cast<uint64_t>(b % kSub);
  if (e >= 63) return UINT64_MAX;
  return (uint64_t{1} << e) + ((frac + 1) << (e - 2)) - 1;
}

void LatencyHistogram::record(uint64_t ns) {
  ++buckets_[bucket(ns)];
  ++count_;
}

uint64_t LatencyHistogram::percentile(double q) const {
  if (count_ == 0) return 0;
  // The rank of the sample we want, 1-based, at least 1.
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_) + 0.5);
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets_[b];
    if (seen >= rank) return upper_bound(b);
  }
  return upper_bound(kBuckets - 1);
}

void LatencyHistogram::merge(const LatencyHistogram& o) {
  for (int b = 0; b < kBuckets; ++b) buckets_[b] += o.buckets_[b];
  count_ += o.count_;
}

namespace {

void line(std::string& out, const std::string& indent, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

void line(std::string& out, const std::string& indent, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  out += indent;
  out += buf;
  out += '\n';
}

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

}  // namespace

std::string format_stats(const BlockStats& s, const std::string& indent) {
  std::string out;
  line(out, indent,
       "requests: %" PRIu64 " (read %" PRIu64 ", write %" PRIu64 ", flush %" PRIu64
       ", get-id %" PRIu64 ", discard %" PRIu64 ", write-zeroes %" PRIu64 ", unsupported %" PRIu64
       ", errors %" PRIu64 ")",
       s.requests(), s.reads, s.writes, s.flushes, s.get_ids, s.discards, s.write_zeroes,
       s.unsupported, s.errors);
  line(out, indent, "bytes: read %.1f MiB, written %.1f MiB", mib(s.bytes_read),
       mib(s.bytes_written));
  line(out, indent,
       "submissions: %" PRIu64 ", io_submit calls %" PRIu64 ", merged groups %" PRIu64
       " (avg %.2f requests)",
       s.submissions, s.io_submit_calls, s.merged_groups, s.average_merge());
  line(out, indent, "batches: %" PRIu64 ", interrupts %" PRIu64, s.batches, s.interrupts);
  if (s.rate_limiter_throttled_events > 0) {
    line(out, indent, "rate limiter: throttled %" PRIu64 " times, %" PRIu64 " wakeups",
         s.rate_limiter_throttled_events, s.rate_limiter_event_count);
  }
  line(out, indent, "latency: p50 %.1f us, p99 %.1f us (%" PRIu64 " samples)",
       static_cast<double>(s.latency.percentile(0.50)) / 1000.0,
       static_cast<double>(s.latency.percentile(0.99)) / 1000.0, s.latency.count());
  return out;
}

}  // namespace kindling::virtio
