// MP table: checksums, entry counts, ids and interrupt routing for 1 and 4 vCPUs.
#include "vmm/boot/mptable.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "vmm/layout.h"

namespace kindling::vmm {
namespace {

uint8_t byte_sum(const std::vector<uint8_t>& v) {
  return std::accumulate(v.begin(), v.end(), uint8_t{0});
}

struct ParsedTable {
  MpFloatingPointer fp{};
  MpConfigHeader hdr{};
  std::vector<uint8_t> fp_bytes, table_bytes;
  std::vector<MpProcessorEntry> cpus;
  std::vector<MpBusEntry> buses;
  std::vector<MpIoapicEntry> ioapics;
  std::vector<MpInterruptEntry> io_irqs, local_irqs;
};

// Reads the table back the way a kernel would: floating pointer -> config table -> entries.
ParsedTable parse(const memory::GuestMemory& mem) {
  ParsedTable t;
  t.fp = *mem.read_obj<MpFloatingPointer>(memory::GuestAddress(layout::kMpTableAddr));
  t.fp_bytes.resize(sizeof(t.fp));
  EXPECT_TRUE(mem.read(memory::GuestAddress(layout::kMpTableAddr), t.fp_bytes).has_value());
  t.hdr = *mem.read_obj<MpConfigHeader>(memory::GuestAddress(t.fp.physptr));
  t.table_bytes.resize(t.hdr.length);
  EXPECT_TRUE(mem.read(memory::GuestAddress(t.fp.physptr), t.table_bytes).has_value());
  size_t off = sizeof(MpConfigHeader);
  for (int i = 0; i < t.hdr.entry_count; ++i) {
    const uint8_t* p = t.table_bytes.data() + off;
    switch (p[0]) {
      case kMpProcessor:
        t.cpus.emplace_back();
        std::memcpy(&t.cpus.back(), p, sizeof(MpProcessorEntry));
        off += sizeof(MpProcessorEntry);
        break;
      case kMpBus:
        t.buses.emplace_back();
        std::memcpy(&t.buses.back(), p, sizeof(MpBusEntry));
        off += sizeof(MpBusEntry);
        break;
      case kMpIoapic:
        t.ioapics.emplace_back();
        std::memcpy(&t.ioapics.back(), p, sizeof(MpIoapicEntry));
        off += sizeof(MpIoapicEntry);
        break;
      default: {
        MpInterruptEntry e;
        std::memcpy(&e, p, sizeof(e));
        (p[0] == kMpIoInterrupt ? t.io_irqs : t.local_irqs).push_back(e);
        off += sizeof(MpInterruptEntry);
      }
    }
    EXPECT_LE(off, t.table_bytes.size());
  }
  EXPECT_EQ(off, t.table_bytes.size());
  return t;
}

class MpTableTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(MpTableTest, DescribesEveryCpuAndPin) {
  const uint32_t vcpus = GetParam();
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  ASSERT_TRUE(write_mptable(*mem, vcpus).has_value());
  ParsedTable t = parse(*mem);

  EXPECT_EQ(std::memcmp(t.fp.signature, "_MP_", 4), 0);
  EXPECT_EQ(t.fp.length, 1);
  EXPECT_EQ(t.fp.specification, 4);
  EXPECT_EQ(t.fp.feature1, 0);
  EXPECT_EQ(byte_sum(t.fp_bytes), 0);
  EXPECT_EQ(t.fp.physptr, layout::kMpTableAddr + 16);

  EXPECT_EQ(std::memcmp(t.hdr.signature, "PCMP", 4), 0);
  EXPECT_EQ(t.hdr.spec, 4);
  EXPECT_EQ(t.hdr.lapic_addr, 0xFEE00000u);
  EXPECT_EQ(t.hdr.length, sizeof(MpConfigHeader) + vcpus * sizeof(MpProcessorEntry) +
                              sizeof(MpBusEntry) + sizeof(MpIoapicEntry) +
                              (24 + 2) * sizeof(MpInterruptEntry));
  EXPECT_EQ(byte_sum(t.table_bytes), 0);
  EXPECT_EQ(t.hdr.entry_count, vcpus + 1 + 1 + 24 + 2);

  ASSERT_EQ(t.cpus.size(), vcpus);
  for (uint32_t i = 0; i < vcpus; ++i) {
    EXPECT_EQ(t.cpus[i].apic_id, i);
    EXPECT_TRUE(t.cpus[i].cpu_flags & kMpCpuEnabled);
    EXPECT_EQ((t.cpus[i].cpu_flags & kMpCpuBsp) != 0, i == 0);
  }
  ASSERT_EQ(t.buses.size(), 1u);
  EXPECT_EQ(std::memcmp(t.buses[0].bus_type, "ISA   ", 6), 0);
  ASSERT_EQ(t.ioapics.size(), 1u);
  EXPECT_EQ(t.ioapics[0].apic_id, vcpus);
  EXPECT_EQ(t.ioapics[0].apic_addr, 0xFEC00000u);
  EXPECT_TRUE(t.ioapics[0].flags & 1);

  ASSERT_EQ(t.io_irqs.size(), 24u);
  for (uint32_t pin = 0; pin < 24; ++pin) {
    const auto& e = t.io_irqs[pin];
    EXPECT_EQ(e.irq_type, kMpINT);
    EXPECT_EQ(e.src_bus_id, t.buses[0].bus_id);
    EXPECT_EQ(e.src_bus_irq, pin);
    EXPECT_EQ(e.dst_apic_id, t.ioapics[0].apic_id);
    EXPECT_EQ(e.dst_irq, pin);
    EXPECT_EQ(e.irq_flags, kMpIrqActiveHigh | kMpIrqEdge);
  }
  ASSERT_EQ(t.local_irqs.size(), 2u);
  EXPECT_EQ(t.local_irqs[0].irq_type, kMpExtINT);
  EXPECT_EQ(t.local_irqs[0].dst_irq, 0);
  EXPECT_EQ(t.local_irqs[1].irq_type, kMpNMI);
  EXPECT_EQ(t.local_irqs[1].dst_irq, 1);
  EXPECT_EQ(t.local_irqs[1].dst_apic_id, 0xFF);

  // The table stays inside the area e820 reserves.
  EXPECT_LE(t.fp.physptr + t.hdr.length, layout::kHighMemStart);
}

INSTANTIATE_TEST_SUITE_P(Vcpus, MpTableTest, ::testing::Values(1u, 2u, 4u, 64u));

TEST(MpTable, RejectsZeroAndTooManyVcpus) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  auto zero = write_mptable(*mem, 0);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code, BootError::kBadSpec);
  auto many = write_mptable(*mem, layout::kMaxVcpus + 1);
  ASSERT_FALSE(many.has_value());
  EXPECT_EQ(many.error().code, BootError::kBadSpec);
}

}  // namespace
}  // namespace kindling::vmm
