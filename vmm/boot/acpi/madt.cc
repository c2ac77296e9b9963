#include "vmm/boot/acpi/madt.h"

#include <span>

#include "devices/ports.h"
#include "vmm/boot/acpi/sdt.h"
#include "vmm/boot/table_bytes.h"
#include "vmm/layout.h"

namespace kindling::vmm::acpi {

namespace {

constexpr uint8_t kIsaBus = 0;
// The local APIC input NMI is wired to (as in the MP table's local interrupt entries).
constexpr uint8_t kNmiLint = 1;

}  // namespace

void Madt::add_local_apic(uint8_t processor_uid, uint8_t apic_id, bool enabled) {
  MadtLocalApic e{};
  e.type = kMadtLocalApic;
  e.length = sizeof(e);
  e.processor_uid = processor_uid;
  e.apic_id = apic_id;
  e.flags = enabled ? kMadtLapicEnabled : 0;
  append_obj(entries_, e);
}

void Madt::add_io_apic(uint8_t id, uint32_t address, uint32_t gsi_base) {
  MadtIoApic e{};
  e.type = kMadtIoApic;
  e.length = sizeof(e);
  e.io_apic_id = id;
  e.address = address;
  e.gsi_base = gsi_base;
  append_obj(entries_, e);
}

void Madt::add_interrupt_override(uint8_t source, uint32_t gsi, uint16_t flags) {
  MadtInterruptOverride e{};
  e.type = kMadtInterruptOverride;
  e.length = sizeof(e);
  e.bus = kIsaBus;
  e.source = source;
  e.gsi = gsi;
  e.flags = flags;
  append_obj(entries_, e);
}

void Madt::add_local_apic_nmi(uint8_t processor_uid, uint16_t flags, uint8_t lint) {
  MadtLocalApicNmi e{};
  e.type = kMadtLocalApicNmi;
  e.length = sizeof(e);
  e.processor_uid = processor_uid;
  e.flags = flags;
  e.lint = lint;
  append_obj(entries_, e);
}

std::vector<uint8_t> Madt::bytes() const {
  Sdt table("APIC", kRevision);
  table.append_obj(lapic_address_);
  table.append_obj(flags_);
  table.append(entries_);
  return table.finish();
}

Madt madt_for(const Platform& platform) {
  // Flags 0: no PCAT_COMPAT. KVM does emulate a PIC, but a hardware-reduced kernel never uses
  // it (Linux installs the null legacy PIC) and Firecracker announces none either.
  Madt madt(static_cast<uint32_t>(layout::kLapicAddr), 0);
  for (uint32_t i = 0; i < platform.vcpus; ++i) {
    madt.add_local_apic(static_cast<uint8_t>(i), apic_id(i), true);
  }
  madt.add_io_apic(ioapic_id(platform.vcpus), static_cast<uint32_t>(layout::kIoapicAddr), 0);
  // See the header: the SCI's IRQ, stated edge/active-high like every kindling interrupt.
  madt.add_interrupt_override(static_cast<uint8_t>(devices::kAcpiSciGsi), devices::kAcpiSciGsi,
                              kMpsIntiActiveHigh | kMpsIntiEdge);
  madt.add_local_apic_nmi(kMadtAllProcessors, kMpsIntiConforming, kNmiLint);
  return madt;
}

}  // namespace kindling::vmm::acpi
