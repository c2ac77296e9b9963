// The command line: `kindling run ...`, `kindling --version`, `kindling --help`.
#pragma once

#include <iostream>
#include <optional>
#include <string_view>

#include "common/result.h"
#include "vmm/config/config.h"

namespace kindling::vmm {

// Parses argv. Returns the VM config for `kindling run`, nullopt after printing help or the
// version on `out` (the caller exits 0), or one error line's worth of ConfigErr (the caller
// prints it and exits 2). With --config FILE the file is loaded first and only the flags
// actually given override it; --disk given on the command line replaces the file's drives.
Result<std::optional<VmConfig>, ConfigErr> parse_cli(int argc, const char* const* argv,
                                                     std::ostream& out = std::cout);

// Parses one --disk value: PATH[,ro][,id=SERIAL][,fault=RULE]... (SERIAL at most 20 bytes,
// the virtio-blk GET_ID size; PATH cannot contain a comma; fault= is a testing extension,
// block::parse_fault_rule()'s syntax, repeatable).
Result<DriveConfig, ConfigErr> parse_disk_spec(std::string_view spec);

// "kindling <version>".
std::string version_string();

}  // namespace kindling::vmm
