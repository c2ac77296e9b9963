// The Root System Description Pointer: what a kernel finds first (Linux scans 0xE0000-0xFFFFF
// for its signature, or takes boot_params.acpi_rsdp_addr) and follows to the XSDT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.5.3: Root System Description Pointer, revision 2 (36 bytes, 16-byte aligned).
struct __attribute__((packed)) Rsdp {
  char signature[8];          // "RSD PTR "
  uint8_t checksum;           // the first 20 bytes (the ACPI 1.0 part) sum to 0
  char oem_id[6];             // kOemId
  uint8_t revision;           // 2: ACPI 2.0 or later, the XSDT fields are valid
  uint32_t rsdt_address;      // 0: no RSDT, only the XSDT
  uint32_t length;            // 36
  uint64_t xsdt_address;      // physical address of the XSDT
  uint8_t extended_checksum;  // all 36 bytes sum to 0
  uint8_t reserved[3];

  // An RSDP that points at the XSDT at `xsdt_address`, both checksums set.
  static Rsdp pointing_to(uint64_t xsdt_address);
  // The 36 bytes as written to guest memory.
  std::vector<uint8_t> bytes() const;
};
static_assert(sizeof(Rsdp) == 36);

// Bytes the RSDP's first checksum covers.
inline constexpr size_t kRsdpV1Size = 20;

}  // namespace kindling::vmm::acpi
