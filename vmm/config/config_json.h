// The JSON VM config: Firecracker's --config-file schema, the subset kindling implements.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "vmm/config/config.h"

namespace kindling::vmm {

// What a config load went on past, one line each ("mmds-version: unknown key, ignored"), for
// the caller to print as warnings.
using ConfigWarnings = std::vector<std::string>;

// Reads and parses a config file; relative paths in it resolve against the file's folder.
// Errors and warnings start with the file's path: "vm.json: vsock: not supported (kindling has
// no vsock device)". Warnings are appended to `warnings` when it is given.
Result<VmConfig, ConfigErr> load_config_file(const std::string& path,
                                             ConfigWarnings* warnings = nullptr);

// Parses config text in Firecracker's --config-file schema, as any of its releases wrote it
// (see configs/README.md). Relative paths resolve against `base_dir` (left as they are when
// base_dir is empty). A top-level key nobody knows is ignored with a warning, as Firecracker
// ignores it; inside a section every key must be known. A Firecracker key is accepted at a
// value that asks for nothing kindling lacks (absent, null, false, [] or Firecracker's
// default); a value asking for a missing feature, a wrong type or an unknown key is an error
// naming the JSON path.
Result<VmConfig, ConfigErr> parse_config_json(std::string_view text, const std::string& base_dir,
                                              ConfigWarnings* warnings = nullptr);

// Parses a Firecracker `rate_limiter` object found at JSON path `path` (e.g.
// "drives[0].rate_limiter", or "rate_limiter" for a PATCH /drives/{id} body):
//   {"bandwidth": {"size": N, "one_time_burst": N, "refill_time": MS}, "ops": {...}}
// null gives no buckets; a bucket may be absent or null; `size` and `refill_time` are required
// non-negative integers, `one_time_burst` optional. A bucket with size 0 or refill_time 0 is kept
// as given and limits nothing (as in Firecracker; see block::limits()). Errors name the path:
// "drives[0].rate_limiter.ops.size: expected an integer, got string".
Result<RateLimiterConfig, ConfigErr> parse_rate_limiter(const nlohmann::json& v,
                                                        const std::string& path);

// A PATCH of a live limiter (Firecracker's update rules): a bucket present in `update` replaces
// the current one (a non-limiting one, size 0 or refill_time 0, turns that limit off); an absent
// bucket keeps the current one.
RateLimiterConfig apply_rate_limiter_update(const RateLimiterConfig& current,
                                            const RateLimiterConfig& update);

// The sections of the schema on their own, as Firecracker's API PUT bodies carry them (same
// keys, same checks as in a config file; relative paths stay as given). The text must be one
// JSON object; duplicate keys are refused.
// PUT /boot-source: replaces kernel, initrd and command line in `cfg`.
Result<void, ConfigErr> parse_boot_source_section(std::string_view text, VmConfig& cfg);
// PUT|PATCH /machine-config: sets the members given.
Result<void, ConfigErr> parse_machine_config_section(std::string_view text, VmConfig& cfg);
// PUT /drives/{id}: one drive object.
Result<DriveConfig, ConfigErr> parse_drive_section(std::string_view text);

// The VM in config-file form (Firecracker's GET /vm/config), which parse_config_json reads
// back to the same VmConfig.
std::string to_config_json(const VmConfig& cfg);

}  // namespace kindling::vmm
