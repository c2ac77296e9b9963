#include "vmm/boot/mptable.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "vmm/boot/platform.h"
#include "vmm/boot/table_bytes.h"
#include "vmm/layout.h"

namespace kindling::vmm {

namespace {

constexpr uint8_t kMpSpecRevision = 4;  // MP spec 1.4
constexpr uint8_t kIsaBusId = 0;
constexpr uint8_t kAllLapics = 0xFF;
// Processor signature family 6 and features FPU (bit 0) | APIC (bit 9): what the kernel
// expects of an APIC-capable CPU; Linux does not rely on more.
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kCpuFeatures = (1u << 0) | (1u << 9);

// Base-table entries and how many there are (the header's length and entry_count).
struct Entries {
  std::vector<uint8_t> bytes;
  uint16_t count = 0;
};

template <typename T>
void append(Entries& out, const T& entry) {
  append_obj(out.bytes, entry);
  ++out.count;
}

// All base-table entries after the header, in the order the spec recommends (4.3).
Entries table_entries(uint32_t vcpus) {
  Entries out;
  for (uint32_t i = 0; i < vcpus; ++i) {
    MpProcessorEntry cpu{};
    cpu.type = kMpProcessor;
    cpu.apic_id = apic_id(i);
    cpu.apic_version = kMpLapicVersion;
    cpu.cpu_flags = kMpCpuEnabled | (i == 0 ? kMpCpuBsp : 0);
    cpu.cpu_signature = kCpuSignature;
    cpu.feature_flags = kCpuFeatures;
    append(out, cpu);
  }
  MpBusEntry bus{};
  bus.type = kMpBus;
  bus.bus_id = kIsaBusId;
  std::memcpy(bus.bus_type, "ISA   ", sizeof(bus.bus_type));
  append(out, bus);

  MpIoapicEntry ioapic{};
  ioapic.type = kMpIoapic;
  ioapic.apic_id = ioapic_id(vcpus);
  ioapic.apic_version = kMpIoapicVersion;
  ioapic.flags = 1;
  ioapic.apic_addr = static_cast<uint32_t>(layout::kIoapicAddr);
  append(out, ioapic);

  for (uint32_t pin = 0; pin < layout::kIoapicPins; ++pin) {
    MpInterruptEntry irq{};
    irq.type = kMpIoInterrupt;
    irq.irq_type = kMpINT;
    irq.irq_flags = kMpIrqActiveHigh | kMpIrqEdge;
    irq.src_bus_id = kIsaBusId;
    irq.src_bus_irq = static_cast<uint8_t>(pin);
    irq.dst_apic_id = ioapic.apic_id;
    irq.dst_irq = static_cast<uint8_t>(pin);
    append(out, irq);
  }
  const std::pair<MpIrqType, uint8_t> locals[] = {{kMpExtINT, 0}, {kMpNMI, 1}};
  for (auto [type, lint] : locals) {
    MpInterruptEntry local{};
    local.type = kMpLocalInterrupt;
    local.irq_type = type;
    local.src_bus_id = kIsaBusId;
    local.dst_apic_id = kAllLapics;
    local.dst_irq = lint;
    append(out, local);
  }
  return out;
}

}  // namespace

Result<void, BootErr> write_mptable(const memory::GuestMemory& mem, uint32_t vcpus) {
  if (vcpus == 0 || vcpus > layout::kMaxVcpus) {
    return fail(BootError::kBadSpec, 0, std::to_string(vcpus) + " vCPUs for the MP table");
  }
  const uint64_t config_addr = layout::kMpTableAddr + sizeof(MpFloatingPointer);

  const Entries entries = table_entries(vcpus);
  MpConfigHeader hdr{};
  std::memcpy(hdr.signature, "PCMP", 4);
  hdr.length = static_cast<uint16_t>(sizeof(hdr) + entries.bytes.size());
  hdr.spec = kMpSpecRevision;
  std::memcpy(hdr.oem, "KINDLING", sizeof(hdr.oem));
  std::memcpy(hdr.product, "MICROVM     ", sizeof(hdr.product));
  hdr.entry_count = entries.count;
  hdr.lapic_addr = static_cast<uint32_t>(layout::kLapicAddr);

  std::vector<uint8_t> table;
  append_obj(table, hdr);
  table.insert(table.end(), entries.bytes.begin(), entries.bytes.end());
  // The checksum byte is zero while summing, so the negated sum makes the total 0.
  table[offsetof(MpConfigHeader, checksum)] = table_checksum(table);

  MpFloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.physptr = static_cast<uint32_t>(config_addr);
  fp.length = 1;
  fp.specification = kMpSpecRevision;
  fp.checksum =
      table_checksum(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&fp), sizeof(fp)));

  if (auto r = mem.write_obj(memory::GuestAddress(layout::kMpTableAddr), fp); !r) {
    return memory_error(r.error(), "MP floating pointer");
  }
  if (auto r = mem.write(memory::GuestAddress(config_addr), table); !r) {
    return memory_error(r.error(), "MP configuration table");
  }
  return {};
}

}  // namespace kindling::vmm
