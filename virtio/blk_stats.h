// Counters of one virtio-blk device, for `--stats` and the benchmark.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace kindling::virtio {

// A cheap latency histogram: 4 sub-buckets per power of two of nanoseconds (<= 19% error).
class LatencyHistogram {
 public:
  // Records one latency.
  void record(uint64_t ns);
  // The latency below which a fraction `q` (0..1) of the samples fall (bucket upper bound).
  uint64_t percentile(double q) const;
  uint64_t count() const { return count_; }
  // Adds another histogram's samples.
  void merge(const LatencyHistogram& o);

 private:
  static constexpr int kSub = 4;
  static constexpr int kBuckets = 64 * kSub;
  static int bucket(uint64_t ns);
  static uint64_t upper_bound(int bucket);
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
};

// Everything a block device counts. Plain values: copy it to take a snapshot.
struct BlockStats {
  uint64_t reads = 0;            // IN requests completed
  uint64_t writes = 0;           // OUT requests completed
  uint64_t flushes = 0;          // FLUSH requests completed
  uint64_t get_ids = 0;          // GET_ID requests completed
  uint64_t discards = 0;         // DISCARD requests completed
  uint64_t write_zeroes = 0;     // WRITE_ZEROES requests completed
  uint64_t unsupported = 0;      // requests answered UNSUPP
  uint64_t errors = 0;           // requests answered IOERR
  uint64_t bytes_read = 0;       // data bytes of successful IN requests
  uint64_t bytes_written = 0;    // data bytes of successful OUT requests
  uint64_t submissions = 0;      // engine submissions (one per merged group, flush, ...)
  uint64_t merged_groups = 0;    // submissions that carried more than one request
  uint64_t merged_requests = 0;  // requests that went in such groups
  uint64_t io_submit_calls = 0;  // kernel submission calls made by the engine
  uint64_t batches = 0;          // notify/completion batches processed by the I/O thread
  uint64_t interrupts = 0;       // used-buffer interrupts signalled
  // Firecracker's names: times a request was held back by the rate limiter, and limiter
  // wakeups (its timer or a new configuration).
  uint64_t rate_limiter_throttled_events = 0;
  uint64_t rate_limiter_event_count = 0;
  LatencyHistogram latency;  // pop -> used ring, per request

  // Requests completed, every type.
  uint64_t requests() const {
    return reads + writes + flushes + get_ids + discards + write_zeroes + unsupported;
  }
  // Average number of requests per merged group (0 when nothing merged).
  double average_merge() const {
    return merged_groups ? static_cast<double>(merged_requests) / merged_groups : 0.0;
  }
};

// A readable multi-line block, each line indented by `indent`, e.g. for `--stats` at exit.
std::string format_stats(const BlockStats& s, const std::string& indent = "  ");

}  // namespace kindling::virtio
