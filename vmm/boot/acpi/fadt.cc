#include "vmm/boot/acpi/fadt.h"

#include <cstring>
#include <span>

#include "devices/ports.h"
#include "vmm/boot/table_bytes.h"

namespace kindling::vmm::acpi {

Fadt Fadt::for_kindling(uint64_t dsdt_address) {
  Fadt f{};
  f.header = sdt_header("FACP", kFadtRevision, sizeof(Fadt));

  // Both DSDT fields: ACPICA prefers X_DSDT and only warns when the two differ.
  f.dsdt = dsdt_address <= UINT32_MAX ? static_cast<uint32_t>(dsdt_address) : 0;
  f.x_dsdt = dsdt_address;
  // No SCI is ever raised on a hardware-reduced machine, but the field names one: Linux
  // reads it for the MADT's IRQ 9 override (see madt.h).
  f.sci_int = static_cast<uint16_t>(devices::kAcpiSciGsi);
  // What the guest may probe: the i8042 (devices/i8042) is there; there is no VGA and no MSI
  // (no PCI at all). The CMOS RTC at 0x70 is there too, so CMOS RTC Not Present stays clear.
  f.iapc_boot_arch = kIapc8042 | kIapcVgaNotPresent | kIapcMsiNotSupported;
  // Hardware-reduced ACPI, a working reset register, and no fixed-feature power or sleep
  // button (so Linux makes no button devices for them).
  f.flags = kFadtHwReducedAcpi | kFadtResetRegSup | kFadtPowerButton | kFadtSleepButton;
  f.reset_reg = io_port_register(devices::kAcpiResetPort);
  f.reset_value = devices::kAcpiResetValue;
  f.minor_version = kFadtMinorVersion;
  f.sleep_control_reg = io_port_register(devices::kAcpiSleepControlPort);
  f.sleep_status_reg = io_port_register(devices::kAcpiSleepStatusPort);
  std::memcpy(f.hypervisor_vendor_id, "KINDLING", sizeof(f.hypervisor_vendor_id));

  f.header.checksum =
      table_checksum(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&f), sizeof(f)));
  return f;
}

std::vector<uint8_t> Fadt::bytes() const {
  auto p = reinterpret_cast<const uint8_t*>(this);
  return std::vector<uint8_t>(p, p + sizeof(Fadt));
}

}  // namespace kindling::vmm::acpi
