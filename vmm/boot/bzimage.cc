#include "vmm/boot/bzimage.h"

#include <chrono>
#include <cstring>

#include "common/log.h"
#include "vmm/boot/decompress.h"
#include "vmm/boot/elf_loader.h"
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

// The compressed kernel inside the protected-mode code: payload_offset and payload_length
// (boot protocol 2.08; every bzImage kindling accepts is 2.12 or newer).
static_assert(kMinBzImageProtocol >= 0x0208);
Result<std::span<const uint8_t>, BootErr> payload_of(std::span<const uint8_t> protected_mode,
                                                     const setup_header& hdr,
                                                     const std::string& who) {
  // GUEST: both fields come from the kernel file.
  uint64_t offset = hdr.payload_offset;
  uint64_t length = hdr.payload_length;
  if (length == 0) {
    return fail(BootError::kNotKernel, 0, who + ": empty payload (payload_length 0)");
  }
  if (offset > protected_mode.size() || length > protected_mode.size() - offset) {
    return fail(BootError::kNotKernel, 0,
                who + ": payload [" + hex(offset) + ", +" + hex(length) +
                    ") lies beyond the end of the file (" + std::to_string(protected_mode.size()) +
                    " bytes after the setup sectors)");
  }
  return protected_mode.subspan(offset, length);
}

// The bzImage as the kernel's own decompressor expects it: the protected-mode code at 1 MiB (or
// kernel_alignment), entered at load + 0x200, with init_size bytes of room from there.
Result<LoadedKernel, BootErr> load_protected_mode(const memory::GuestMemory& mem,
                                                  std::span<const uint8_t> protected_mode,
                                                  const setup_header& hdr, const std::string& who) {
  uint64_t load = load_address(hdr);
  uint64_t need = std::max<uint64_t>(protected_mode.size(), hdr.init_size);
  uint64_t ram_end = low_ram_end(mem);
  if (load + need > ram_end) {
    return fail(BootError::kTooLarge, 0,
                who + ": needs " + std::to_string(need) + " bytes (init_size) at " + hex(load) +
                    " but low guest RAM ends at " + hex(ram_end));
  }
  if (auto r = mem.write(memory::GuestAddress(load), protected_mode); !r) {
    return memory_error(r.error(), who + ": protected-mode kernel");
  }
  LoadedKernel k;
  k.hdr = hdr;
  k.entry = load + kBzImage64EntryOffset;
  k.start = load;
  k.end = load + need;
  return k;
}

// Decompresses the payload on the host and loads the vmlinux ELF inside it like an ELF kernel:
// segments, entry and extent come from the ELF. boot_params gets the bzImage's own setup header
// (version, cmdline_size, initrd_addr_max, xloadflags... describe the real kernel, unlike the
// header made up for a bare ELF), with KASLR_FLAG cleared as the kernel's decompressor clears
// it when it does not randomise. init_size is left as is: it sizes the decompressor's buffer,
// and the initrd is placed after the ELF's end instead.
Result<LoadedKernel, BootErr> load_payload(const memory::GuestMemory& mem,
                                           std::span<const uint8_t> payload, PayloadFormat format,
                                           const setup_header& hdr, const std::string& path) {
  const std::string who = "kernel " + path;
  const std::string what = std::string(payload_format_name(format)) + " payload";
  auto start = std::chrono::steady_clock::now();
  auto elf = decompress_payload(payload, mem.total_size(), who);
  if (!elf) return elf.take_error();
  std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
  if (!looks_like_elf(*elf)) {
    return fail(BootError::kNotKernel, 0, who + ": the " + what + " is not an ELF vmlinux");
  }
  auto k = load_elf(mem, *elf, path + " (" + what + ")");
  if (!k) return k.take_error();
  k->hdr = hdr;
  k->hdr.loadflags = static_cast<uint8_t>(k->hdr.loadflags & ~KASLR_FLAG);
  KLOG_INFO("%s: %s of %zu bytes decompressed to %zu in %.1f ms, entry %s", who.c_str(),
            what.c_str(), payload.size(), elf->size(), took.count(), hex(k->entry).c_str());
  return k;
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
  auto protected_mode = image.subspan(setup_size);
  auto payload = payload_of(protected_mode, hdr, who);
  if (!payload) return payload.take_error();
  PayloadFormat format = detect_payload_format(*payload);
  if (format == PayloadFormat::kUnknown) {
    KLOG_INFO("%s: payload compression not recognised, the kernel will decompress itself",
              who.c_str());
    return load_protected_mode(mem, protected_mode, hdr, who);
  }
  return load_payload(mem, *payload, format, hdr, path);
}

}  // namespace kindling::vmm
