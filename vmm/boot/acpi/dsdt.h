// The Differentiated System Description Table: kindling's devices, in AML (aml.h), for a
// kernel that enumerates them through ACPI instead of the command line:
//
//   Scope (\_SB) {
//     Device (V000) ...  one per Platform::virtio_mmio slot, in order: _HID "LNRO0005" (what
//                        Linux's virtio_mmio driver matches), _UID the slot index, _CRS
//                        Memory32Fixed (ReadWrite, base, size) and Interrupt (ResourceConsumer,
//                        Edge, ActiveHigh, Exclusive) {gsi}: the irqfd is an edge, active-high
//     Device (COM1)      _HID EISAID ("PNP0501"), _CRS IO 0x3F8/8, IRQNoFlags {4}
//     Device (KBD_)      _HID EISAID ("PNP0303"), _CRS IO 0x60/1, IO 0x64/1, IRQNoFlags {1}
//   }
//   Name (\_S5_, Package () { SLP_TYP of S5, 0 })  so that Linux offers ACPI power-off
//
// The addresses, ports and GSIs come from Platform and devices/ports.h only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vmm/boot/acpi/aml.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/boot/platform.h"

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.11.1: Differentiated System Description Table (header + a definition block).
class Dsdt {
 public:
  // Revision of the DSDT: 2 or more makes AML integers 64-bit (ACPI 6.5 5.2.11.1).
  static constexpr uint8_t kRevision = 2;

  // Appends a term to the table's top-level term list (the root scope).
  void add(aml::Term term) { terms_.push_back(std::move(term)); }
  // The table, or kBadSpec naming the first term that could not be encoded.
  Result<std::vector<uint8_t>, BootErr> bytes() const;

 private:
  std::vector<aml::Term> terms_;
};

// The AML name of the virtio-mmio device for slot `index`: "V000", "V001", ...
std::string virtio_device_name(size_t index);

// kindling's DSDT for `platform` (the layout above). A slot that a Memory32Fixed descriptor
// cannot describe (above 4 GiB) makes bytes() fail.
Dsdt dsdt_for(const Platform& platform);

}  // namespace kindling::vmm::acpi
