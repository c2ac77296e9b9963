// Intel MultiProcessor Specification 1.4 tables, for kernels that find CPUs and the I/O APIC
// without ACPI (Linux CONFIG_X86_MPPARSE). <asm/mpspec_def.h> is not a uapi header, so the
// on-wire structs are defined here, each citing its spec section.
//
// What kindling describes:
//  - one processor entry per vCPU with its APIC id (vmm/boot/platform.h), the BSP flagged;
//  - one ISA bus (id 0);
//  - one I/O APIC at 0xFEC00000 with platform.h's ioapic_id (the first id no CPU uses);
//  - 24 I/O interrupt entries: ISA IRQ n -> I/O APIC pin n for n = 0..23, edge-triggered and
//    active-high. GSI 0 is NOT overridden to pin 2: KVM's default GSI routing (no
//    KVM_SET_GSI_ROUTING) sends the in-kernel PIT's GSI 0 to pin 0, so the identity table is
//    the truth (Firecracker does the same). virtio-mmio GSIs 5.. are edge/high as they must be;
//  - local interrupts ExtINT -> LINT0 and NMI -> LINT1 on every local APIC.
// The floating pointer is at 0x9FC00 and the config table right after it.
#pragma once

#include <cstdint>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// MP spec 4.1: MP Floating Pointer Structure (16 bytes, 16-byte aligned).
struct __attribute__((packed)) MpFloatingPointer {
  char signature[4];      // "_MP_"
  uint32_t physptr;       // address of the MP configuration table
  uint8_t length;         // in 16-byte units: 1
  uint8_t specification;  // 4 = version 1.4
  uint8_t checksum;       // all 16 bytes sum to 0
  uint8_t feature1;       // 0: a configuration table is present
  uint8_t feature2;       // bit 7 IMCRP: 0 (virtual wire mode)
  uint8_t feature3[3];    // reserved
};
static_assert(sizeof(MpFloatingPointer) == 16);

// MP spec 4.2: MP Configuration Table Header (44 bytes).
struct __attribute__((packed)) MpConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t length;    // base table length, header included
  uint8_t spec;       // 4 = version 1.4
  uint8_t checksum;   // base table sums to 0
  char oem[8];
  char product[12];
  uint32_t oem_ptr;
  uint16_t oem_size;
  uint16_t entry_count;  // entries in the base table
  uint32_t lapic_addr;   // memory-mapped address of the local APICs
  uint16_t ext_length;   // extended table length (0)
  uint8_t ext_checksum;
  uint8_t reserved;
};
static_assert(sizeof(MpConfigHeader) == 44);

// MP spec 4.3: base table entry types.
enum MpEntryType : uint8_t {
  kMpProcessor = 0,
  kMpBus = 1,
  kMpIoapic = 2,
  kMpIoInterrupt = 3,
  kMpLocalInterrupt = 4,
};

// MP spec 4.3.1: Processor Entry (20 bytes).
struct __attribute__((packed)) MpProcessorEntry {
  uint8_t type;  // kMpProcessor
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t cpu_flags;       // bit 0 EN (usable), bit 1 BP (bootstrap processor)
  uint32_t cpu_signature;  // family/model/stepping
  uint32_t feature_flags;  // CPUID.1:EDX subset
  uint32_t reserved[2];
};
static_assert(sizeof(MpProcessorEntry) == 20);

// MP spec 4.3.2: Bus Entry (8 bytes).
struct __attribute__((packed)) MpBusEntry {
  uint8_t type;  // kMpBus
  uint8_t bus_id;
  char bus_type[6];  // "ISA   "
};
static_assert(sizeof(MpBusEntry) == 8);

// MP spec 4.3.3: I/O APIC Entry (8 bytes).
struct __attribute__((packed)) MpIoapicEntry {
  uint8_t type;  // kMpIoapic
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 EN
  uint32_t apic_addr;
};
static_assert(sizeof(MpIoapicEntry) == 8);

// MP spec 4.3.4 / 4.3.5: I/O and Local Interrupt Assignment Entries (8 bytes each).
struct __attribute__((packed)) MpInterruptEntry {
  uint8_t type;        // kMpIoInterrupt or kMpLocalInterrupt
  uint8_t irq_type;    // MpIrqType
  uint16_t irq_flags;  // bits 0-1 polarity, bits 2-3 trigger mode
  uint8_t src_bus_id;
  uint8_t src_bus_irq;
  uint8_t dst_apic_id;  // 0xFF: all local APICs
  uint8_t dst_irq;      // I/O APIC pin, or LINTn
};
static_assert(sizeof(MpInterruptEntry) == 8);

// MP spec table 4-6 / 4-8: interrupt types.
enum MpIrqType : uint8_t { kMpINT = 0, kMpNMI = 1, kMpSMI = 2, kMpExtINT = 3 };
// MP spec table 4-7: polarity (bits 0-1) and trigger mode (bits 2-3) values.
inline constexpr uint16_t kMpIrqActiveHigh = 0x1;
inline constexpr uint16_t kMpIrqEdge = 0x1 << 2;
// Processor entry cpu_flags bits.
inline constexpr uint8_t kMpCpuEnabled = 0x1;
inline constexpr uint8_t kMpCpuBsp = 0x2;
// Local APIC version KVM's in-kernel LAPIC reports, and its I/O APIC's.
inline constexpr uint8_t kMpLapicVersion = 0x14;
inline constexpr uint8_t kMpIoapicVersion = 0x11;

// Writes the floating pointer at layout::kMpTableAddr and the config table after it.
// `vcpus` must be 1..layout::kMaxVcpus.
Result<void, BootErr> write_mptable(const memory::GuestMemory& mem, uint32_t vcpus);

}  // namespace kindling::vmm
