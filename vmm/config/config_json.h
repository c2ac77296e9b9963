// The JSON VM config: Firecracker's --config-file schema, the subset kindling implements.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "vmm/config/config.h"

namespace kindling::vmm {

// Reads and parses a config file; relative paths in it resolve against the file's folder.
// Errors start with the file's path: "vm.json: drives[1].rate_limiter: not supported".
Result<VmConfig, ConfigErr> load_config_file(const std::string& path);

// Parses config text (see configs/README.md for the format). Relative paths resolve against
// `base_dir` (left as they are when base_dir is empty). Every key must be known: kindling's
// own keys, or a Firecracker key at its "not used" value (null, false, [] or Firecracker's
// default); anything else is an error that names the JSON path.
Result<VmConfig, ConfigErr> parse_config_json(std::string_view text, const std::string& base_dir);

}  // namespace kindling::vmm
