// libFuzzer target: the kernel loaders on fuzzed files: the ELF loader (program headers,
// segments, the PVH note) and the bzImage loader (setup header, payload offsets, the six
// decompressors, the ELF inside), into a small guest RAM. Byte 0 picks the loader.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/memory/guest_memory.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/elf_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kindling;
  // 32 MiB: room for a small kernel, and a bound on what a decompressor may produce.
  static const memory::GuestMemory mem = *memory::GuestMemory::create({{0, 32 << 20}});
  if (size < 1) return 0;
  const std::span<const uint8_t> image(data + 1, size - 1);
  if ((data[0] & 1) == 0) {
    (void)vmm::load_elf(mem, image, "fuzz");
  } else {
    (void)vmm::load_bzimage(mem, image, "fuzz");
  }
  return 0;
}
