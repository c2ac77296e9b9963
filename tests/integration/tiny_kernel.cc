#include "tests/integration/tiny_kernel.h"

#include <cstdint>
#include <fstream>

#include "tests/support/child_process.h"
#include "tests/support/elf_image.h"

namespace kindling::test {

std::string write_tiny_kernel(const std::string& name, const std::vector<unsigned char>& code) {
  constexpr uint64_t kLoad = 0x100000;
  const std::vector<uint8_t> image = make_elf(
      {{kLoad, kLoad, code.size(), code.size(), PT_LOAD, {code.begin(), code.end()}}}, kLoad);
  const std::string path = child_temp_dir() + "/" + name + ".elf";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data()),
             static_cast<std::streamsize>(image.size()));
  return path;
}

}  // namespace kindling::test
