#include "vmm/config/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <limits>

#include "block/io_engine.h"
#include "common/log.h"
#include "vmm/boot/boot_protocol.h"

namespace kindling::vmm {
namespace {

constexpr uint64_t kPageSize = 4096;
// Longer timeouts are surely a typo (and would overflow the VMM's clocks if huge).
constexpr double kMaxTimeoutS = 365.0 * 24 * 3600;

// "drives[1] (data.img)": how the drive rules name a drive.
std::string drive_label(const std::vector<DriveConfig>& drives, size_t i) {
  return "drives[" + std::to_string(i) + "] (" + drives[i].path + ")";
}

// True when both paths name the same file: by device and inode when both exist, else by
// their normalized absolute spelling.
bool same_image(const std::string& a, const std::string& b) {
  struct stat sa {};
  struct stat sb {};
  if (::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0) {
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  }
  std::error_code ec;
  auto na = std::filesystem::absolute(a, ec).lexically_normal();
  auto nb = std::filesystem::absolute(b, ec).lexically_normal();
  return na == nb;
}

std::string mib_text(uint64_t bytes) {
  if (bytes % (1ULL << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  return std::to_string(bytes >> 20) + " MiB";
}

}  // namespace

// kWrongType, kInvalid, kJson and kUnsupported carry their whole explanation in the context
// ("path: expected an integer, got string", "vsock: not supported (kindling has no vsock
// device)"), so they add nothing to the message.
const char* to_string(ConfigError e) {
  switch (e) {
    case ConfigError::kFile:
      return "cannot read file";
    case ConfigError::kJson:
    case ConfigError::kWrongType:
    case ConfigError::kInvalid:
    case ConfigError::kUnsupported:
      return "";
    case ConfigError::kUnknownKey:
      return "unknown key";
    case ConfigError::kMissingKey:
      return "missing required key";
  }
  return "configuration error";
}

Result<uint64_t, ConfigErr> parse_mem_size(std::string_view text, const std::string& what) {
  auto bad = [&] {
    return fail(ConfigError::kInvalid, 0,
                what + " \"" + std::string(text) +
                    "\": expected a size like 256M, 1G or 512 (MiB); suffixes K, M, G");
  };
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc::result_out_of_range) {
    return fail(ConfigError::kInvalid, 0, what + " \"" + std::string(text) + "\": too large");
  }
  if (ec != std::errc() || end == text.data()) return bad();
  std::string suffix(end, text.data() + text.size());
  for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "m" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "k" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "g" || suffix == "gib") {
    shift = 30;
  } else {
    return bad();
  }
  if (number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return fail(ConfigError::kInvalid, 0, what + " \"" + std::string(text) + "\": too large");
  }
  uint64_t bytes = number << shift;
  auto checked = check_mem_bytes(bytes, what + " " + std::string(text));
  if (!checked) return checked.take_error();
  return bytes;
}

Result<void, ConfigErr> check_mem_bytes(uint64_t bytes, const std::string& what) {
  if (bytes < kMinMemBytes || bytes > kMaxMemBytes) {
    return fail(ConfigError::kInvalid, 0,
                what + ": guest memory must be between " + mib_text(kMinMemBytes) + " and " +
                    mib_text(kMaxMemBytes));
  }
  if (bytes % kPageSize != 0) {
    return fail(ConfigError::kInvalid, 0, what + ": guest memory must be a multiple of 4 KiB");
  }
  return {};
}

Result<void, ConfigErr> check_vcpus(int64_t n, const std::string& what) {
  if (n < 1 || n > static_cast<int64_t>(kMaxVcpus)) {
    return fail(ConfigError::kInvalid, 0,
                what + ": the number of vCPUs must be between 1 and " + std::to_string(kMaxVcpus) +
                    ", not " + std::to_string(n));
  }
  return {};
}

Result<void, ConfigErr> check_drives(const std::vector<DriveConfig>& drives) {
  std::optional<size_t> root;
  for (size_t i = 0; i < drives.size(); ++i) {
    const DriveConfig& d = drives[i];
    if (d.path.empty()) {
      return fail(ConfigError::kInvalid, 0,
                  "drives[" + std::to_string(i) + "]: the image path is empty");
    }
    if (std::find(std::begin(block::kEngineNames), std::end(block::kEngineNames), d.io_engine) ==
        std::end(block::kEngineNames)) {
      return fail(ConfigError::kInvalid, 0,
                  drive_label(drives, i) + ": io engine \"" + d.io_engine +
                      "\" is none of libaio, io_uring, sync");
    }
    if (d.is_root) {
      if (root) {
        return fail(ConfigError::kInvalid, 0,
                    drive_label(drives, i) + ": a second root device (" +
                        drive_label(drives, *root) + " is the root device already)");
      }
      root = i;
    }
    for (size_t j = 0; j < i; ++j) {
      if (!d.id.empty() && d.id == drives[j].id) {
        return fail(ConfigError::kInvalid, 0,
                    drive_label(drives, i) + ": duplicate drive id \"" + d.id + "\" (also " +
                        drive_label(drives, j) + ")");
      }
      if (same_image(d.path, drives[j].path)) {
        return fail(ConfigError::kInvalid, 0,
                    drive_label(drives, i) + ": the same image as " + drive_label(drives, j) +
                        " (an image can be attached once)");
      }
    }
  }
  return {};
}

Result<void, ConfigErr> validate_config(const VmConfig& config) {
  if (config.kernel_path.empty()) {
    return fail(ConfigError::kInvalid, 0,
                "no kernel: give --kernel PATH or boot-source.kernel_image_path in --config");
  }
  if (auto r = check_mem_bytes(config.mem_bytes, "memory"); !r) return r;
  if (auto r = check_vcpus(config.vcpus, "vcpus"); !r) return r;
  if (config.timeout_s && !(*config.timeout_s > 0 && *config.timeout_s <= kMaxTimeoutS)) {
    return fail(ConfigError::kInvalid, 0,
                "timeout: must be a positive number of seconds, at most a year");
  }
  if (!log::parse_level(config.log_level)) {
    return fail(ConfigError::kInvalid, 0,
                "log level \"" + config.log_level + "\": expected error, warn, info or debug");
  }
  if (!parse_boot_protocol(config.boot_protocol)) {
    return fail(ConfigError::kInvalid, 0,
                "boot protocol \"" + config.boot_protocol + "\": expected auto, linux or pvh");
  }
  return check_drives(config.drives);
}

}  // namespace kindling::vmm
