// Helpers for the boot loader tests: temp files and synthetic bzImage / ELF kernels.
#pragma once

#include <asm/bootparam.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/elf_image.h"
#include "vmm/boot/bzimage.h"

#include "vmm/boot/boot_loader.h"

namespace kindling::vmm::test {

// A file under $TMPDIR with the given contents, removed on destruction.
// A boot request for `vcpus` vCPUs, no disks, ACPI on, protocol auto.
inline BootSpec make_spec(std::string kernel, std::optional<std::string> initrd,
                          std::string cmdline, uint32_t vcpus) {
  BootSpec spec;
  spec.kernel_path = std::move(kernel);
  spec.initrd_path = std::move(initrd);
  spec.cmdline = std::move(cmdline);
  spec.platform.vcpus = vcpus;
  return spec;
}

class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    const char* dir = getenv("TMPDIR");
    path_ = std::string(dir ? dir : "/tmp") + "/kindling-boot-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) {
      size_t done = 0;
      while (done < bytes.size()) {
        ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      close(fd);
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Knobs of a synthetic bzImage.
struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020F;
  uint16_t xloadflags = XLF_KERNEL_64;
  uint16_t boot_flag = 0xAA55;
  uint8_t relocatable = 0;
  uint32_t kernel_alignment = 0x200000;
  uint32_t init_size = 0x40000;
  uint32_t cmdline_size = 2048;
  uint32_t initrd_addr_max = 0x7FFFFFFF;
  uint8_t loadflags = LOADED_HIGH;
  // Bytes of protected-mode code; byte i is (i * 7 + 1) & 0xFF unless `payload` covers it.
  size_t payload_size = 0x2000;
  // A compressed kernel written at payload_offset of the protected-mode code (which grows to
  // hold it). Empty: the patterned bytes from payload_offset on are the payload.
  std::vector<uint8_t> payload = {};
  uint32_t payload_offset = 0;
  // Overrides the header's payload_length (default: the payload's size).
  std::optional<uint32_t> payload_length = std::nullopt;
};

// Setup sectors + protected-mode code: patterned bytes, with `payload` at payload_offset.
inline std::vector<uint8_t> make_bzimage(const BzImageSpec& s = {}) {
  size_t setup = (size_t{s.setup_sects ? s.setup_sects : 4u} + 1) * 512;
  size_t code = s.payload.empty() ? s.payload_size
                                  : std::max(s.payload_size, s.payload_offset + s.payload.size());
  std::vector<uint8_t> img(setup + code, 0);
  setup_header hdr{};
  size_t hdr_end = kSetupHeaderOffset + sizeof(hdr);
  hdr.setup_sects = s.setup_sects;
  hdr.boot_flag = s.boot_flag;
  hdr.jump = static_cast<uint16_t>(0xEB | ((hdr_end - 0x202) << 8));
  hdr.header = kHdrsMagic;
  hdr.version = s.version;
  hdr.loadflags = s.loadflags;
  hdr.relocatable_kernel = s.relocatable;
  hdr.kernel_alignment = s.kernel_alignment;
  hdr.xloadflags = s.xloadflags;
  hdr.cmdline_size = s.cmdline_size;
  hdr.initrd_addr_max = s.initrd_addr_max;
  hdr.init_size = s.init_size;
  hdr.payload_offset = s.payload_offset;
  hdr.payload_length = s.payload_length.value_or(static_cast<uint32_t>(
      s.payload.empty() ? code - std::min<size_t>(code, s.payload_offset) : s.payload.size()));
  std::memcpy(img.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
  for (size_t i = 0; i < code; ++i) img[setup + i] = static_cast<uint8_t>(i * 7 + 1);
  std::copy(s.payload.begin(), s.payload.end(), img.begin() + setup + s.payload_offset);
  return img;
}

// Synthetic ELF images (tests/support/elf_image.h).
using ::kindling::test::ElfSegment;
using ::kindling::test::make_elf;

// A one-segment ELF kernel at 1 MiB (virtual = physical) with a bss tail.
inline std::vector<uint8_t> make_simple_elf() {
  return make_elf({{0x100000, 0x100000, 0x1000, 0x3000}}, 0x100000);
}

}  // namespace kindling::vmm::test
