#include "vmm/boot/acpi/tables.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "vmm/boot/acpi/dsdt.h"
#include "vmm/boot/acpi/fadt.h"
#include "vmm/boot/acpi/madt.h"
#include "vmm/boot/acpi/rsdp.h"
#include "vmm/boot/acpi/xsdt.h"
#include "vmm/boot/kernel_image.h"

namespace kindling::vmm::acpi {

namespace {

// Tables start on 16-byte boundaries (the RSDP must; the others read better aligned).
constexpr uint64_t kTableAlign = 16;

uint64_t align_up(uint64_t v) {
  return (v + kTableAlign - 1) & ~(kTableAlign - 1);
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// Everything the tables describe must be describable: the checks the table builders rely on.
Result<void, BootErr> check_platform(const Platform& platform) {
  if (platform.vcpus == 0 || platform.vcpus > layout::kMaxVcpus) {
    return fail(BootError::kBadSpec, 0,
                "ACPI tables: " + std::to_string(platform.vcpus) + " vCPUs (1 to " +
                    std::to_string(layout::kMaxVcpus) + ")");
  }
  for (size_t i = 0; i < platform.virtio_mmio.size(); ++i) {
    const MmioSlot& s = platform.virtio_mmio[i];
    const std::string what = "ACPI tables: virtio-mmio slot " + std::to_string(i);
    if (s.gsi >= layout::kIoapicPins) {
      return fail(BootError::kBadSpec, 0,
                  what + ": GSI " + std::to_string(s.gsi) + " is past the I/O APIC's " +
                      std::to_string(layout::kIoapicPins) + " pins");
    }
    if (s.size == 0 || s.base >= (uint64_t{1} << 32) || s.size > (uint64_t{1} << 32) - s.base) {
      return fail(BootError::kBadSpec, 0,
                  what + " at " + hex(s.base) + " size " + hex(s.size) + " is not below 4 GiB");
    }
  }
  return {};
}

}  // namespace

Result<AcpiAddresses, BootErr> write_acpi_tables_at(const memory::GuestMemory& mem,
                                                    const Platform& platform,
                                                    const AcpiArea& area) {
  if (auto ok = check_platform(platform); !ok) return ok.take_error();
  if (area.rsdp % kTableAlign != 0 || area.rsdp + sizeof(Rsdp) > area.tables) {
    return fail(BootError::kBadSpec, 0,
                "ACPI tables: RSDP at " + hex(area.rsdp) + " is misaligned or overlaps the tables");
  }

  auto dsdt = dsdt_for(platform).bytes();
  if (!dsdt) return dsdt.take_error();
  const std::vector<uint8_t> madt = madt_for(platform).bytes();

  // Each table's address is known before the tables that point at it are built.
  AcpiAddresses at;
  at.rsdp = area.rsdp;
  at.dsdt = align_up(area.tables);
  at.fadt = align_up(at.dsdt + dsdt->size());
  const std::vector<uint8_t> fadt = Fadt::for_kindling(at.dsdt).bytes();
  at.madt = align_up(at.fadt + fadt.size());
  at.xsdt = align_up(at.madt + madt.size());
  const std::vector<uint8_t> xsdt = Xsdt({at.fadt, at.madt}).bytes();
  at.end = at.xsdt + xsdt.size();
  if (at.end > area.end) {
    return fail(BootError::kBadSpec, 0,
                "ACPI tables: " + std::to_string(at.end - area.tables) + " bytes from " +
                    hex(area.tables) + " do not fit below " + hex(area.end));
  }

  const std::vector<uint8_t> rsdp = Rsdp::pointing_to(at.xsdt).bytes();
  const std::pair<uint64_t, const std::vector<uint8_t>*> writes[] = {
      {at.dsdt, &*dsdt}, {at.fadt, &fadt}, {at.madt, &madt}, {at.xsdt, &xsdt}, {at.rsdp, &rsdp}};
  for (const auto& [addr, bytes] : writes) {
    if (auto r = mem.write(memory::GuestAddress(addr), *bytes); !r) {
      return memory_error(r.error(), "ACPI table at " + hex(addr));
    }
  }
  return at;
}

Result<uint64_t, BootErr> write_acpi_tables(const memory::GuestMemory& mem,
                                            const Platform& platform) {
  auto at = write_acpi_tables_at(mem, platform, kAcpiArea);
  if (!at) return at.take_error();
  return at->rsdp;
}

}  // namespace kindling::vmm::acpi
