// The VM's configuration: what the CLI flags and the JSON config file both produce.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace kindling::vmm {

// One disk (a raw image) attached as a virtio-blk device, in attach order (vda, vdb, ...).
struct DriveConfig {
  std::string id;          // drive_id / id=SERIAL; also the GET_ID serial when set
  std::string path;        // absolute or relative to the current directory (already resolved)
  bool read_only = false;
  bool is_root = false;
  std::string io_engine = "libaio";  // "libaio" or "sync"
  bool merge = true;                 // QEMU-style request merging (kindling extension)
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
  std::optional<double> timeout_s;         // stop the VM after this many seconds
  bool stats = false;                      // print per-disk statistics on exit
  std::string log_level = "warn";
};

enum class ConfigError { kFile, kJson, kUnknownKey, kWrongType, kUnsupported, kInvalid };
const char* to_string(ConfigError e);
using ConfigErr = Error<ConfigError>;

// Limits shared by the CLI and the JSON loader.
inline constexpr uint64_t kMinMemBytes = 16ULL << 20;
inline constexpr uint64_t kMaxMemBytes = 64ULL << 30;
inline constexpr uint32_t kMaxVcpus = 64;

}  // namespace kindling::vmm
