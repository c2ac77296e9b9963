#include "vmm/api/metrics.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

namespace kindling::vmm::api {

using json = nlohmann::json;

const char* to_string(MetricsError e) {
  switch (e) {
    case MetricsError::kOpen:
      return "cannot open the metrics file";
    case MetricsError::kWrite:
      return "cannot write the metrics file";
  }
  return "metrics error";
}

namespace {

std::string drive_metrics_name(const DriveConfig& d, size_t index) {
  return "block_" + (d.id.empty() ? "drive" + std::to_string(index) : d.id);
}

json block_metrics(const virtio::BlockStats& s) {
  return {{"read_count", s.reads},      {"write_count", s.writes},
          {"read_bytes", s.bytes_read}, {"write_bytes", s.bytes_written},
          {"flush_count", s.flushes},   {"invalid_reqs_count", s.unsupported},
          {"execute_fails", s.errors},  {"queue_event_count", s.batches}};
}

}  // namespace

std::string metrics_json(const std::vector<DriveConfig>& drives,
                         const std::vector<virtio::BlockStats>& stats, uint64_t utc_ms) {
  json out = {{"utc_timestamp_ms", utc_ms}};
  virtio::BlockStats total;
  for (size_t i = 0; i < drives.size() && i < stats.size(); ++i) {
    const virtio::BlockStats& s = stats[i];
    out[drive_metrics_name(drives[i], i)] = block_metrics(s);
    total.reads += s.reads;
    total.writes += s.writes;
    total.bytes_read += s.bytes_read;
    total.bytes_written += s.bytes_written;
    total.flushes += s.flushes;
    total.unsupported += s.unsupported;
    total.errors += s.errors;
    total.batches += s.batches;
  }
  out["block"] = block_metrics(total);
  return out.dump();
}

Result<MetricsFile, MetricsErr> MetricsFile::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return fail_errno(MetricsError::kOpen, path);
  return MetricsFile(std::move(fd), path);
}

Result<void, MetricsErr> MetricsFile::append(const std::vector<DriveConfig>& drives,
                                             const std::vector<virtio::BlockStats>& stats) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t ms =
      static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  const std::string line = metrics_json(drives, stats, ms) + "\n";
  const ssize_t n = ::write(fd_.get(), line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    // A short write to a file is ENOSPC in all but name; to a full FIFO, EAGAIN.
    return fail(MetricsError::kWrite, n < 0 ? errno : ENOSPC, path_);
  }
  return {};
}

}  // namespace kindling::vmm::api
