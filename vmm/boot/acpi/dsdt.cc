#include "vmm/boot/acpi/dsdt.h"

#include <cstdio>

#include "devices/ports.h"
#include "vmm/boot/acpi/sdt.h"

namespace kindling::vmm::acpi {

namespace {

// The virtio-mmio device for `slot`.
aml::Term virtio_device(size_t index, const MmioSlot& slot) {
  constexpr uint64_t k4GiB = uint64_t{1} << 32;
  if (slot.base >= k4GiB || slot.size > k4GiB - slot.base) {
    return aml::Term::invalid("virtio-mmio slot " + std::to_string(index) +
                              " does not fit below 4 GiB");
  }
  const aml::InterruptMode edge_high{
      .consumer = true, .edge = true, .active_low = false, .shared = false};
  return aml::device(
      virtio_device_name(index),
      {
          aml::name("_HID", aml::string("LNRO0005")),
          aml::name("_UID", aml::integer(index)),
          aml::name("_CRS", aml::resource_template({
                                aml::memory32_fixed(true, static_cast<uint32_t>(slot.base),
                                                    static_cast<uint32_t>(slot.size)),
                                aml::extended_interrupt(edge_high, slot.gsi),
                            })),
      });
}

// COM1, the 16550A at kCom1Base.
aml::Term com1_device() {
  static_assert(devices::kCom1Len <= UINT8_MAX);
  return aml::device(
      "COM1",
      {
          aml::name("_HID", aml::eisa_id("PNP0501")),
          aml::name("_CRS",
                    aml::resource_template({
                        aml::io(devices::kCom1Base, devices::kCom1Base, 1, devices::kCom1Len),
                        aml::irq_no_flags(devices::kCom1Gsi),
                    })),
      });
}

// The i8042 keyboard controller: its data and command ports are separate one-byte ranges.
aml::Term i8042_device() {
  constexpr uint16_t data = devices::kI8042Base + devices::kI8042DataOffset;
  constexpr uint16_t command = devices::kI8042Base + devices::kI8042CommandOffset;
  return aml::device("KBD_", {
                                 aml::name("_HID", aml::eisa_id("PNP0303")),
                                 aml::name("_CRS", aml::resource_template({
                                                       aml::io(data, data, 1, 1),
                                                       aml::io(command, command, 1, 1),
                                                       aml::irq_no_flags(devices::kI8042KbdGsi),
                                                   })),
                             });
}

}  // namespace

Result<std::vector<uint8_t>, BootErr> Dsdt::bytes() const {
  Sdt table("DSDT", kRevision);
  for (const aml::Term& t : terms_) {
    if (!t.ok()) return fail(BootError::kBadSpec, 0, "ACPI DSDT: " + t.error());
    table.append(t.bytes());
  }
  return table.finish();
}

std::string virtio_device_name(size_t index) {
  char name[16];
  std::snprintf(name, sizeof(name), "V%03zu", index);
  return name;
}

Dsdt dsdt_for(const Platform& platform) {
  std::vector<aml::Term> bus;
  for (size_t i = 0; i < platform.virtio_mmio.size(); ++i) {
    bus.push_back(virtio_device(i, platform.virtio_mmio[i]));
  }
  bus.push_back(com1_device());
  bus.push_back(i8042_device());

  Dsdt dsdt;
  dsdt.add(aml::scope("\\_SB_", bus));
  // \_S5_: SLP_TYPa, SLP_TYPb. Linux writes SLP_TYPa | SLP_EN to the FADT's sleep control
  // register to power off.
  dsdt.add(
      aml::name("_S5_", aml::package({aml::integer(devices::kAcpiSlpTypS5), aml::integer(0)})));
  return dsdt;
}

}  // namespace kindling::vmm::acpi
