// The one description of the machine the guest boots on: CPUs and their APIC IDs, the I/O
// APIC, the virtio-mmio slots with their GSIs, and the ACPI power-control ports. The MP table,
// the ACPI tables (MADT, DSDT, FADT) and the kernel command line all read it, so the
// descriptions a kernel may see always agree.
#pragma once

#include <cstdint>
#include <vector>

#include "devices/ports.h"
#include "vmm/layout.h"

namespace kindling::vmm {

// One virtio-mmio device window and its interrupt (edge, active-high: an irqfd).
struct MmioSlot {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t gsi = 0;
};

// What the boot tables describe.
struct Platform {
  uint32_t vcpus = 1;                 // vCPU i has APIC ID apic_id(i); vCPU 0 is the BSP
  std::vector<MmioSlot> virtio_mmio;  // one per disk, in attach order (vda, vdb, ...)
  bool acpi = true;                   // write the ACPI tables (--no-acpi: MP table only)
};

// The local APIC ID of vCPU `index` (what CPUID leaves 1 and 0xB report for it).
inline constexpr uint8_t apic_id(uint32_t index) {
  return static_cast<uint8_t>(index);
}
// The I/O APIC's ID: the first ID no CPU uses.
inline constexpr uint8_t ioapic_id(uint32_t vcpus) {
  return static_cast<uint8_t>(vcpus);
}

}  // namespace kindling::vmm
