#include "vmm/boot/bzimage.h"

#include <cstring>

#include "vmm/boot/le_bytes.h"
#include "vmm/layout.h"

namespace kindling::vmm {

namespace {

constexpr uint64_t kSectorSize = 512;
// setup_sects == 0 means 4 (boot protocol, for ancient compatibility).
constexpr uint64_t kDefaultSetupSects = 4;
// Largest kernel_alignment honoured; anything stranger falls back to 1 MiB.
constexpr uint64_t kMaxAlignment = 1ULL << 30;

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

// Where the protected-mode kernel goes: 1 MiB, rounded up to kernel_alignment for a
// relocatable kernel whose alignment is a sane power of two.
uint64_t load_address(const setup_header& hdr) {
  uint64_t align = hdr.kernel_alignment;
  if (hdr.relocatable_kernel != 0 && align != 0 && (align & (align - 1)) == 0 &&
      align <= kMaxAlignment) {
    return align_up(layout::kKernelAddr, align);
  }
  return layout::kKernelAddr;
}

}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> image) {
  return image.size() >= 0x206 && le32(image, 0x202) == kHdrsMagic;
}

Result<LoadedKernel, BootErr> load_bzimage(const memory::GuestMemory& mem,
                                           std::span<const uint8_t> image,
                                           const std::string& path) {
  const std::string who = "kernel " + path;
  if (!looks_like_bzimage(image)) {
    return fail(BootError::kNotKernel, 0, who + ": no \"HdrS\" magic at offset 0x202");
  }
  if (image.size() < kSetupHeaderOffset + sizeof(setup_header)) {
    return fail(BootError::kNotKernel, 0,
                who + ": truncated bzImage header (" + std::to_string(image.size()) + " bytes)");
  }
  // GUEST: everything below comes from the kernel file, which the user chose but may be garbage.
  LoadedKernel k;
  // The header is copied up to 0x202 + byte[0x201]; a newer, longer header is cut to ours.
  uint64_t hdr_end = std::min<uint64_t>(0x202 + image[0x201], kSetupHeaderOffset + sizeof(k.hdr));
  std::memcpy(&k.hdr, image.data() + kSetupHeaderOffset, hdr_end - kSetupHeaderOffset);
  const setup_header& hdr = k.hdr;
  if (hdr.boot_flag != kBootFlag) {
    return fail(BootError::kNotKernel, 0, who + ": bad boot_flag " + hex(hdr.boot_flag));
  }
  if (hdr.version < kMinBzImageProtocol) {
    return fail(
        BootError::kUnsupported, 0,
        who + ": boot protocol " + hex(hdr.version) + " is older than 2.12 (no 64-bit entry)");
  }
  if ((hdr.xloadflags & XLF_KERNEL_64) == 0) {
    return fail(BootError::kUnsupported, 0,
                who + ": 32-bit-only kernel (xloadflags lacks XLF_KERNEL_64)");
  }
  uint64_t setup_sects = hdr.setup_sects != 0 ? hdr.setup_sects : kDefaultSetupSects;
  uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  if (image.size() <= setup_size) {
    return fail(BootError::kNotKernel, 0,
                who + ": truncated bzImage (" + std::to_string(image.size()) +
                    " bytes, setup alone is " + std::to_string(setup_size) + ")");
  }
  auto payload = image.subspan(setup_size);
  uint64_t load = load_address(hdr);
  uint64_t need = std::max<uint64_t>(payload.size(), hdr.init_size);
  uint64_t ram_end = low_ram_end(mem);
  if (load + need > ram_end) {
    return fail(BootError::kTooLarge, 0,
                who + ": needs " + std::to_string(need) + " bytes (init_size) at " + hex(load) +
                    " but low guest RAM ends at " + hex(ram_end));
  }
  if (auto r = mem.write(memory::GuestAddress(load), payload); !r) {
    return memory_error(r.error(), who + ": protected-mode kernel");
  }
  k.entry = load + kBzImage64EntryOffset;
  k.start = load;
  k.end = load + need;
  return k;
}

}  // namespace kindling::vmm
