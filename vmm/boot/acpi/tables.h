// The ACPI tables kindling hands a kernel (hardware-reduced ACPI, as Firecracker 1.8+ and Cloud
// Hypervisor do): RSDP -> XSDT -> {FADT -> DSDT, MADT}, all built from one Platform
// (vmm/boot/platform.h) so they agree with each other and with the MP table.
//
// Layout (vmm/layout.h): the RSDP at kAcpiRsdpAddr (0xE0000, where Linux's BIOS-area scan finds
// it), then DSDT, FADT, MADT and XSDT, each 16-byte aligned, from kAcpiTablesAddr up to
// kAcpiTablesEnd. e820 reserves all of it ([0x9FC00, 1 MiB)).
#pragma once

#include <cstdint>

#include "common/memory/guest_memory.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/boot/platform.h"
#include "vmm/layout.h"

namespace kindling::vmm::acpi {

// Where the tables go: the RSDP at `rsdp` (16-byte aligned), the others in [tables, end).
struct AcpiArea {
  uint64_t rsdp = 0;
  uint64_t tables = 0;
  uint64_t end = 0;
};
// The area vmm/layout.h reserves.
inline constexpr AcpiArea kAcpiArea{layout::kAcpiRsdpAddr, layout::kAcpiTablesAddr,
                                    layout::kAcpiTablesEnd};

// Guest addresses of the tables one write_acpi_tables() call placed.
struct AcpiAddresses {
  uint64_t rsdp = 0;
  uint64_t xsdt = 0;
  uint64_t fadt = 0;
  uint64_t madt = 0;
  uint64_t dsdt = 0;
  uint64_t end = 0;  // one past the last table byte
};

// Writes RSDP, XSDT, FADT, MADT, DSDT for `platform` into guest memory; returns the RSDP's
// address. kBadSpec for a platform the tables cannot describe (vCPUs not 1..kMaxVcpus, a GSI
// past the I/O APIC's pins, a virtio-mmio slot above 4 GiB) or tables too big for the area;
// kMemory when guest RAM does not hold the area.
Result<uint64_t, BootErr> write_acpi_tables(const memory::GuestMemory& mem,
                                            const Platform& platform);
// The same into `area`, returning where each table went (for tests of the layout).
Result<AcpiAddresses, BootErr> write_acpi_tables_at(const memory::GuestMemory& mem,
                                                    const Platform& platform, const AcpiArea& area);

}  // namespace kindling::vmm::acpi
