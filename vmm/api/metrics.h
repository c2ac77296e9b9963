// Firecracker's metrics file, for the drives. Set by the config file's "metrics" section or by
// PUT /metrics; each flush (the FlushMetrics action, and kindling's exit) appends one JSON line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "virtio/blk_stats.h"
#include "vmm/config/config.h"

namespace kindling::vmm::api {

enum class MetricsError { kOpen, kWrite };
const char* to_string(MetricsError e);
using MetricsErr = Error<MetricsError>;

// Firecracker's metrics line for the drives: {"utc_timestamp_ms": T, "block": {totals},
// "block_<drive_id>": {...}} with Firecracker's counter names (read_count, write_count,
// read_bytes, write_bytes, flush_count, invalid_reqs_count, ...).
std::string metrics_json(const std::vector<DriveConfig>& drives,
                         const std::vector<virtio::BlockStats>& stats, uint64_t utc_ms);

class MetricsFile {
 public:
  // As in Firecracker the file (or FIFO) must exist. It is opened for appending, non-blocking:
  // a FIFO that nobody reads fails a flush instead of stalling the VMM.
  static Result<MetricsFile, MetricsErr> open(const std::string& path);
  // Appends one metrics line for `drives` with their `stats`, stamped with the time now.
  Result<void, MetricsErr> append(const std::vector<DriveConfig>& drives,
                                  const std::vector<virtio::BlockStats>& stats);

 private:
  MetricsFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

}  // namespace kindling::vmm::api
