#include "vmm/boot/acpi/rsdp.h"

#include <cstring>
#include <span>

#include "vmm/boot/acpi/sdt.h"
#include "vmm/boot/table_bytes.h"

namespace kindling::vmm::acpi {

Rsdp Rsdp::pointing_to(uint64_t xsdt_address) {
  Rsdp r{};
  std::memcpy(r.signature, "RSD PTR ", sizeof(r.signature));
  std::memcpy(r.oem_id, kOemId, sizeof(r.oem_id));
  r.revision = 2;
  r.length = sizeof(Rsdp);
  r.xsdt_address = xsdt_address;
  // The ACPI 1.0 checksum first: the extended one covers it (and is still 0 while it is made).
  auto raw = std::span<uint8_t>(reinterpret_cast<uint8_t*>(&r), sizeof(r));
  r.checksum = table_checksum(raw.first(kRsdpV1Size));
  r.extended_checksum = table_checksum(raw);
  return r;
}

std::vector<uint8_t> Rsdp::bytes() const {
  auto p = reinterpret_cast<const uint8_t*>(this);
  return std::vector<uint8_t>(p, p + sizeof(Rsdp));
}

}  // namespace kindling::vmm::acpi
