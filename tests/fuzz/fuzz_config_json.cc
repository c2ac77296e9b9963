// libFuzzer target: the JSON VM config (Firecracker's schema, every release) from fuzzed
// text. Errors are values; nothing may throw out of the parser or crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vmm/config/config_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kindling;
  vmm::ConfigWarnings warnings;
  auto cfg = vmm::parse_config_json(std::string_view(reinterpret_cast<const char*>(data), size),
                                    "/vm", &warnings);
  (void)cfg;
  return 0;
}
