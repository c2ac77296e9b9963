// How a kernel is entered, and the protocol names the CLI (--boot-protocol), the JSON config
// (kindling.boot_protocol) and the logs share. Header-only: the config code uses it without
// linking the boot library.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace kindling::vmm {

// How the kernel is entered.
enum class BootProtocol {
  kAuto,   // PVH when the kernel has the PVH note (as Firecracker chooses), else Linux
  kLinux,  // the 64-bit Linux boot protocol: long mode, RSI = boot_params
  kPvh,    // PVH: 32-bit protected mode, paging off, EBX = hvm_start_info
};

// The protocols' names, indexed by BootProtocol.
inline constexpr std::array<std::string_view, 3> kBootProtocolNames = {"auto", "linux", "pvh"};

// "auto", "linux" or "pvh".
inline const char* to_string(BootProtocol p) {
  return kBootProtocolNames[static_cast<size_t>(p)].data();
}

// Parses "auto", "linux" or "pvh".
inline std::optional<BootProtocol> parse_boot_protocol(std::string_view text) {
  for (size_t i = 0; i < kBootProtocolNames.size(); ++i) {
    if (text == kBootProtocolNames[i]) return static_cast<BootProtocol>(i);
  }
  return std::nullopt;
}

}  // namespace kindling::vmm
