// The VM's configuration: what the CLI flags and the JSON config file both produce.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "block/fault_engine.h"
#include "block/rate_limiter.h"
#include "common/result.h"
#include "vmm/layout.h"

namespace kindling::vmm {

// One Firecracker token bucket: `size` tokens (bytes or operations), refilled completely every
// `refill_time_ms`; `one_time_burst` extra tokens are spent first and never refilled. Size 0 or
// refill time 0: no limit (block::limits()).
using TokenBucketConfig = block::TokenBucketConfig;

// A drive's rate limiter (Firecracker's `rate_limiter`): either bucket may be absent (no limit).
// The same type the device takes (virtio::BlockDevice::set_rate_limiter).
using RateLimiterConfig = block::RateLimiterConfig;

// One disk (a raw image) attached as a virtio-blk device, in attach order (vda, vdb, ...).
struct DriveConfig {
  std::string id;    // drive_id / id=SERIAL; also the GET_ID serial when set
  std::string path;  // absolute or relative to the current directory (already resolved)
  bool read_only = false;
  bool is_root = false;
  std::string io_engine = "libaio";  // "libaio" or "sync"
  bool merge = true;                 // QEMU-style request merging (kindling extension)
  RateLimiterConfig rate_limiter;    // no buckets: unlimited
  // Testing only (--disk PATH,fault=RULE): requests that fail on purpose (block/fault_engine.h).
  std::vector<block::FaultRule> faults;
};

// Everything needed to build and run one VM.
struct VmConfig {
  std::string kernel_path;
  std::optional<std::string> initrd_path;
  std::optional<std::string> cmdline;  // nullopt: the default command line
  uint64_t mem_bytes = 256ULL << 20;
  uint32_t vcpus = 1;
  std::vector<DriveConfig> drives;
  std::optional<std::string> console_log;  // serial output goes here instead of stdout
  // Firecracker's metrics file (an existing file or FIFO): a line at each FlushMetrics and at exit.
  std::optional<std::string> metrics_path;
  std::optional<double> timeout_s;  // stop the VM after this many seconds
  bool stats = false;               // print per-disk statistics on exit
  std::string log_level = "warn";
  bool acpi = true;                    // write ACPI tables (--no-acpi: MP table only)
  bool exit_on_halt = false;           // a guest halted for good (all vCPUs, IF=0) ends the VM
  std::string boot_protocol = "auto";  // "auto", "linux" or "pvh" (vmm/boot/boot_loader.h)
  bool seccomp = true;  // confine each thread to its allow-list (common/seccomp/seccomp.h)
  // --api-sock: serve Firecracker's API there (vmm/api/); not part of the config file.
  std::optional<std::string> api_sock;
  bool start_now = true;  // false: wait for the API's InstanceStart (--api-sock, no --config)
};

enum class ConfigError {
  kFile,
  kJson,
  kUnknownKey,
  kWrongType,
  kUnsupported,
  kInvalid,
  kMissingKey,
};
const char* to_string(ConfigError e);
using ConfigErr = Error<ConfigError>;

// Limits shared by the CLI and the JSON loader.
inline constexpr uint64_t kMinMemBytes = 16ULL << 20;
inline constexpr uint64_t kMaxMemBytes = 64ULL << 30;
inline constexpr uint32_t kMaxVcpus = layout::kMaxVcpus;  // what the MP table describes

// Parses a memory size: a number of MiB ("512") or a number with a K, M or G suffix ("256M",
// "1G", also "256MiB"); the result is checked with check_mem_bytes. `what` names the source
// in errors (e.g. "--mem").
Result<uint64_t, ConfigErr> parse_mem_size(std::string_view text, const std::string& what);
// Checks kMinMemBytes <= bytes <= kMaxMemBytes and a multiple of 4 KiB.
Result<void, ConfigErr> check_mem_bytes(uint64_t bytes, const std::string& what);
// Checks 1 <= n <= kMaxVcpus.
Result<void, ConfigErr> check_vcpus(int64_t n, const std::string& what);
// The drive rules: at most one root device, no duplicate non-empty id, no image twice (the
// same file through another path counts), no empty path, io_engine "libaio" or "sync".
// Errors name the drive as "drives[i]".
Result<void, ConfigErr> check_drives(const std::vector<DriveConfig>& drives);
// Checks a complete configuration (kernel given, memory, vCPUs, timeout, log level, drives).
Result<void, ConfigErr> validate_config(const VmConfig& config);

}  // namespace kindling::vmm
