// The Multiple APIC Description Table: one local APIC per vCPU, the I/O APIC, the ISA IRQ
// overrides and the local APICs' NMI line, all read from vmm/boot/platform.h (the MP table
// describes the same machine).
//
// Interrupt source overrides. KVM's in-kernel I/O APIC under its default GSI routing (kindling
// sets no KVM_SET_GSI_ROUTING) connects ISA IRQ n to pin n, and every interrupt kindling raises
// is an edge on an active-high line: the in-kernel PIT on GSI 0, COM1's irqfd on GSI 4, the
// virtio-mmio irqfds on GSIs 5-23. That is the MP table's identity, edge/high routing, so no
// IRQ is moved (not even IRQ 0 to pin 2, as PC firmware does) and one override is written:
//   ISA IRQ 9 -> GSI 9, edge, active-high. The FADT names IRQ 9 as the SCI. Linux
//   (arch/x86/kernel/acpi/boot.c) takes an override of the SCI's IRQ as the SCI's own
//   configuration (acpi_parse_int_src_ovr() -> acpi_sci_ioapic_setup(), where missing flags
//   mean level/active-low), and without one a full-ACPI kernel configures the SCI GSI
//   level/active-low by itself (acpi_parse_madt_ioapic_entries(), skipped only when
//   acpi_gbl_reduced_hardware). GSI 9 is also the fifth disk's interrupt, an edge on an
//   active-high line, so the override says exactly that, as the MP table's entry for IRQ 9 does.
// With HW_REDUCED_ACPI Linux installs the null legacy PIC (acpi_generic_reduced_hw_init()), so
// nr_legacy_irqs() is 0, mp_config_acpi_legacy_irqs() adds no ISA identity entries, and each
// device's trigger and polarity come from its _CRS in the DSDT (acpi_register_gsi()).
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/boot/platform.h"

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.12: the interrupt controller structure types kindling writes.
enum MadtEntryType : uint8_t {
  kMadtLocalApic = 0,
  kMadtIoApic = 1,
  kMadtInterruptOverride = 2,
  kMadtLocalApicNmi = 4,
};

// ACPI 6.5 5.2.12.2: Processor Local APIC Structure (8 bytes).
struct __attribute__((packed)) MadtLocalApic {
  uint8_t type;           // kMadtLocalApic
  uint8_t length;         // 8
  uint8_t processor_uid;  // the processor's _UID / ACPI processor id
  uint8_t apic_id;        // its local APIC ID
  uint32_t flags;         // kMadtLapicEnabled
};
static_assert(sizeof(MadtLocalApic) == 8);

// ACPI 6.5 5.2.12.3: I/O APIC Structure (12 bytes).
struct __attribute__((packed)) MadtIoApic {
  uint8_t type;    // kMadtIoApic
  uint8_t length;  // 12
  uint8_t io_apic_id;
  uint8_t reserved;
  uint32_t address;   // MMIO base
  uint32_t gsi_base;  // GSI of pin 0
};
static_assert(sizeof(MadtIoApic) == 12);

// ACPI 6.5 5.2.12.4: Interrupt Source Override Structure (10 bytes).
struct __attribute__((packed)) MadtInterruptOverride {
  uint8_t type;    // kMadtInterruptOverride
  uint8_t length;  // 10
  uint8_t bus;     // 0: ISA
  uint8_t source;  // the ISA IRQ
  uint32_t gsi;    // the GSI it is wired to
  uint16_t flags;  // MPS INTI flags: kMpsInti*
};
static_assert(sizeof(MadtInterruptOverride) == 10);

// ACPI 6.5 5.2.12.6: Local APIC NMI Structure (6 bytes).
struct __attribute__((packed)) MadtLocalApicNmi {
  uint8_t type;           // kMadtLocalApicNmi
  uint8_t length;         // 6
  uint8_t processor_uid;  // kMadtAllProcessors, or one processor's UID
  uint16_t flags;         // MPS INTI flags
  uint8_t lint;           // the local APIC LINTn pin NMI is wired to
};
static_assert(sizeof(MadtLocalApicNmi) == 6);

// Local APIC flags bit 0: the processor is usable.
inline constexpr uint32_t kMadtLapicEnabled = 1u << 0;
// MPS INTI flags (ACPI 6.5 5.2.12.4): polarity in bits 0-1, trigger mode in bits 2-3; 0 in
// either means "as the bus specifies".
inline constexpr uint16_t kMpsIntiConforming = 0;
inline constexpr uint16_t kMpsIntiActiveHigh = 0x1;
inline constexpr uint16_t kMpsIntiActiveLow = 0x3;
inline constexpr uint16_t kMpsIntiEdge = 0x1 << 2;
inline constexpr uint16_t kMpsIntiLevel = 0x3 << 2;
// processor_uid of a Local APIC NMI entry that applies to every processor.
inline constexpr uint8_t kMadtAllProcessors = 0xFF;

// ACPI 6.5 5.2.12: Multiple APIC Description Table (header, local APIC address, flags, then the
// interrupt controller structures in the order they were added).
class Madt {
 public:
  // Revision of the MADT layout (ACPI 6.5).
  static constexpr uint8_t kRevision = 6;
  // Flags bit 0 PCAT_COMPAT: a dual-8259 PIC is present as well.
  static constexpr uint32_t kPcatCompat = 1u << 0;

  // A MADT with the local APICs at `lapic_address` and the table-wide `flags`.
  Madt(uint32_t lapic_address, uint32_t flags) : lapic_address_(lapic_address), flags_(flags) {}

  // Adds a processor's local APIC.
  void add_local_apic(uint8_t processor_uid, uint8_t apic_id, bool enabled);
  // Adds an I/O APIC whose pin 0 is `gsi_base`.
  void add_io_apic(uint8_t id, uint32_t address, uint32_t gsi_base);
  // Adds an override: ISA IRQ `source` is GSI `gsi` with MPS INTI `flags`.
  void add_interrupt_override(uint8_t source, uint32_t gsi, uint16_t flags);
  // Adds the LINT pin NMI arrives on for `processor_uid` (kMadtAllProcessors: every one).
  void add_local_apic_nmi(uint8_t processor_uid, uint16_t flags, uint8_t lint);

  // The table, length and checksum set.
  std::vector<uint8_t> bytes() const;

 private:
  uint32_t lapic_address_;
  uint32_t flags_;
  std::vector<uint8_t> entries_;
};

// kindling's MADT for `platform`: local APIC i has UID i and ID apic_id(i), enabled; the I/O
// APIC has ID ioapic_id(vcpus) and GSI base 0; the IRQ 9 override above; NMI on LINT1 of every
// local APIC. `platform.vcpus` must be 1..layout::kMaxVcpus (write_acpi_tables checks).
Madt madt_for(const Platform& platform);

}  // namespace kindling::vmm::acpi
