#include "vmm/boot/acpi/xsdt.h"

#include "vmm/boot/acpi/sdt.h"

namespace kindling::vmm::acpi {

std::vector<uint8_t> Xsdt::bytes() const {
  Sdt table("XSDT", kRevision);
  // The entries start at offset 36, so they are 4-byte aligned only; append_obj copies bytes.
  for (uint64_t addr : entries_) table.append_obj(addr);
  return table.finish();
}

}  // namespace kindling::vmm::acpi
