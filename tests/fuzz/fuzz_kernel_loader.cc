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
  // 3 MiB in two regions, the second at 16 MiB where kernels load (the seeds do): room for a
  // small kernel, a hole, and a bound on what a decompressor may produce. That bound is what an
  // input costs (a payload announcing a large output gets a buffer that size): 32 MiB of RAM
  // ran 8.7 K inputs/s, 3 MiB 34.6 K/s (20 s each, same machine and load, 2026-12-03).
  static const memory::GuestMemory mem =
      *memory::GuestMemory::create({{0, 1 << 20}, {16 << 20, 2 << 20}});
  if (size < 1) return 0;
  const std::span<const uint8_t> image(data + 1, size - 1);
  if ((data[0] & 1) == 0) {
    (void)vmm::load_elf(mem, image, "fuzz");
  } else {
    (void)vmm::load_bzimage(mem, image, "fuzz");
  }
  return 0;
}
