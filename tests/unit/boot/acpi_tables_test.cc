// ACPI tables down to the bytes: each table's signature, length, revision, checksum and fields;
// MADT entries for 1, 2 and 64 vCPUs; the DSDT's AML for 0, 1, 2 and 19 disks against bytes
// assembled here by hand; the layout in guest memory and the errors.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support/unpacked.h"
#include "tests/unit/boot/acpi_test_util.h"
#include "vmm/boot/acpi/dsdt.h"
#include "vmm/boot/acpi/fadt.h"
#include "vmm/boot/acpi/madt.h"
#include "vmm/boot/acpi/rsdp.h"
#include "vmm/boot/acpi/sdt.h"
#include "vmm/boot/acpi/tables.h"
#include "vmm/boot/acpi/xsdt.h"
#include "vmm/layout.h"

namespace kindling::vmm::acpi {
namespace {

using acpi_test::byte_sum;
using acpi_test::load;
using acpi_test::platform_with;
using acpi_test::signature_of;
using Bytes = std::vector<uint8_t>;

// Checks the 36-byte header every table shares.
void expect_header(const Bytes& table, const char* signature, uint8_t revision) {
  ASSERT_GE(table.size(), sizeof(SdtHeader));
  const auto hdr = load<SdtHeader>(table);
  EXPECT_EQ(signature_of(table), signature);
  EXPECT_EQ(unpacked(hdr.length), table.size());
  EXPECT_EQ(unpacked(hdr.revision), revision);
  EXPECT_EQ(byte_sum(table), 0) << signature << " checksum";
  EXPECT_EQ(std::string(hdr.oem_id, 6), "KNDLNG");
  EXPECT_EQ(std::string(hdr.oem_table_id, 8), "KINDLING");
  EXPECT_EQ(std::string(hdr.creator_id, 4), "KNDL");
}

TEST(AcpiSdt, ChecksumMakesTheSumZero) {
  Bytes b{1, 2, 3, 0, 250};
  fix_checksum(b, 3);
  EXPECT_EQ(byte_sum(b), 0);
  EXPECT_EQ(b[3], static_cast<uint8_t>(-(1 + 2 + 3 + 250)));
  // Fixing again gives the same byte: the old checksum is not summed in.
  fix_checksum(b, 3);
  EXPECT_EQ(byte_sum(b), 0);
}

TEST(AcpiSdt, HeaderLengthAndChecksumCoverTheBody) {
  Sdt t("TEST", 3);
  t.append_obj(uint32_t{0xDEADBEEF});
  const Bytes b = t.finish();
  ASSERT_EQ(b.size(), 40u);
  expect_header(b, "TEST", 3);
  EXPECT_EQ(load<uint32_t>(b, 36), 0xDEADBEEFu);
}

TEST(AcpiSdt, IoPortRegister) {
  const GenericAddress g = io_port_register(0x602);
  const auto* raw = reinterpret_cast<const uint8_t*>(&g);
  EXPECT_EQ(Bytes(raw, raw + sizeof(g)), Bytes({1, 8, 0, 1, 0x02, 0x06, 0, 0, 0, 0, 0, 0}));
}

TEST(AcpiRsdp, Revision2WithBothChecksums) {
  const Bytes b = Rsdp::pointing_to(0xE1230).bytes();
  ASSERT_EQ(b.size(), 36u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(Bytes(b.begin(), b.begin() + 20)), 0);
  EXPECT_EQ(byte_sum(b), 0);
  const auto r = load<Rsdp>(b);
  EXPECT_EQ(unpacked(r.revision), 2);
  EXPECT_EQ(unpacked(r.length), 36u);
  EXPECT_EQ(unpacked(r.rsdt_address), 0u);
  EXPECT_EQ(unpacked(r.xsdt_address), 0xE1230u);
  EXPECT_EQ(std::string(r.oem_id, 6), "KNDLNG");
  // ACPI 6.5 table 5.3 offsets.
  EXPECT_EQ(offsetof(Rsdp, revision), 15u);
  EXPECT_EQ(offsetof(Rsdp, xsdt_address), 24u);
  EXPECT_EQ(offsetof(Rsdp, extended_checksum), 32u);
}

TEST(AcpiXsdt, ListsTheTablesInOrder) {
  const Bytes b = Xsdt({0xE1000, 0x123456789}).bytes();
  expect_header(b, "XSDT", 1);
  ASSERT_EQ(b.size(), 36u + 16u);
  EXPECT_EQ(load<uint64_t>(b, 36), 0xE1000u);
  EXPECT_EQ(load<uint64_t>(b, 44), 0x123456789u);
}

TEST(AcpiFadt, HardwareReducedRevision6) {
  const Bytes b = Fadt::for_kindling(0xE0040).bytes();
  ASSERT_EQ(b.size(), 276u);
  expect_header(b, "FACP", 6);
  const auto f = load<Fadt>(b);
  EXPECT_EQ(unpacked(f.minor_version), 5);
  EXPECT_EQ(unpacked(f.dsdt), 0xE0040u);
  EXPECT_EQ(unpacked(f.x_dsdt), 0xE0040u);
  EXPECT_EQ(unpacked(f.firmware_ctrl), 0u);
  EXPECT_EQ(unpacked(f.x_firmware_ctrl), 0u);
  EXPECT_EQ(unpacked(f.sci_int), devices::kAcpiSciGsi);
  // HW_REDUCED_ACPI (20), RESET_REG_SUP (10), SLP_BUTTON (5), PWR_BUTTON (4).
  EXPECT_EQ(unpacked(f.flags), 0x00100430u);
  // 8042 (1), VGA not present (2), MSI not supported (3); CMOS RTC not present (5) clear.
  EXPECT_EQ(unpacked(f.iapc_boot_arch), 0x000E);
  EXPECT_EQ(f.iapc_boot_arch & kIapcCmosRtcNotPresent, 0);
  EXPECT_EQ(unpacked(f.reset_reg.space_id), kGasSystemIo);
  EXPECT_EQ(unpacked(f.reset_reg.bit_width), 8);
  EXPECT_EQ(unpacked(f.reset_reg.address), devices::kAcpiResetPort);
  EXPECT_EQ(unpacked(f.reset_value), devices::kAcpiResetValue);
  EXPECT_EQ(unpacked(f.sleep_control_reg.space_id), kGasSystemIo);
  EXPECT_EQ(unpacked(f.sleep_control_reg.bit_width), 8);
  EXPECT_EQ(unpacked(f.sleep_control_reg.access_size), kGasAccessByte);
  EXPECT_EQ(unpacked(f.sleep_control_reg.address), devices::kAcpiSleepControlPort);
  EXPECT_EQ(unpacked(f.sleep_status_reg.space_id), kGasSystemIo);
  EXPECT_EQ(unpacked(f.sleep_status_reg.address), devices::kAcpiSleepStatusPort);
  EXPECT_EQ(std::string(f.hypervisor_vendor_id, 8), "KINDLING");
  // No PM1, PM2, PM timer or GPE blocks, 32-bit or 64-bit.
  for (size_t off = offsetof(Fadt, pm1a_evt_blk); off < offsetof(Fadt, p_lvl2_lat); ++off) {
    EXPECT_EQ(b[off], 0) << off;
  }
  for (size_t off = offsetof(Fadt, x_pm1a_evt_blk); off < offsetof(Fadt, sleep_control_reg);
       ++off) {
    EXPECT_EQ(b[off], 0) << off;
  }
}

TEST(AcpiFadt, FieldOffsetsMatchTheSpec) {
  // ACPI 6.5 table 5.9.
  EXPECT_EQ(offsetof(Fadt, dsdt), 40u);
  EXPECT_EQ(offsetof(Fadt, sci_int), 46u);
  EXPECT_EQ(offsetof(Fadt, pm1a_evt_blk), 56u);
  EXPECT_EQ(offsetof(Fadt, century), 108u);
  EXPECT_EQ(offsetof(Fadt, iapc_boot_arch), 109u);
  EXPECT_EQ(offsetof(Fadt, flags), 112u);
  EXPECT_EQ(offsetof(Fadt, reset_reg), 116u);
  EXPECT_EQ(offsetof(Fadt, reset_value), 128u);
  EXPECT_EQ(offsetof(Fadt, minor_version), 131u);
  EXPECT_EQ(offsetof(Fadt, x_dsdt), 140u);
  EXPECT_EQ(offsetof(Fadt, x_pm1a_evt_blk), 148u);
  EXPECT_EQ(offsetof(Fadt, sleep_control_reg), 244u);
  EXPECT_EQ(offsetof(Fadt, sleep_status_reg), 256u);
  EXPECT_EQ(offsetof(Fadt, hypervisor_vendor_id), 268u);
}

class AcpiMadtTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(AcpiMadtTest, OneLocalApicPerVcpuAndTheIoApic) {
  const uint32_t vcpus = GetParam();
  const Bytes b = madt_for(platform_with(vcpus, 2)).bytes();
  expect_header(b, "APIC", 6);
  EXPECT_EQ(b.size(), 44u + vcpus * 8 + 12 + 10 + 6);
  EXPECT_EQ(load<uint32_t>(b, 36), layout::kLapicAddr);
  EXPECT_EQ(load<uint32_t>(b, 40), 0u);  // no PCAT_COMPAT

  std::vector<MadtLocalApic> lapics;
  std::vector<MadtIoApic> ioapics;
  std::vector<MadtInterruptOverride> overrides;
  std::vector<MadtLocalApicNmi> nmis;
  size_t off = 44;
  while (off + 2 <= b.size()) {
    const uint8_t type = b[off], length = b[off + 1];
    ASSERT_GE(length, 2) << off;
    ASSERT_LE(off + length, b.size()) << off;
    switch (type) {
      case kMadtLocalApic:
        ASSERT_EQ(length, 8);
        lapics.push_back(load<MadtLocalApic>(b, off));
        break;
      case kMadtIoApic:
        ASSERT_EQ(length, 12);
        ioapics.push_back(load<MadtIoApic>(b, off));
        break;
      case kMadtInterruptOverride:
        ASSERT_EQ(length, 10);
        overrides.push_back(load<MadtInterruptOverride>(b, off));
        break;
      case kMadtLocalApicNmi:
        ASSERT_EQ(length, 6);
        nmis.push_back(load<MadtLocalApicNmi>(b, off));
        break;
      default:
        FAIL() << "unexpected MADT entry type " << int(type);
    }
    off += length;
  }
  EXPECT_EQ(off, b.size());

  ASSERT_EQ(lapics.size(), vcpus);
  for (uint32_t i = 0; i < vcpus; ++i) {
    EXPECT_EQ(unpacked(lapics[i].processor_uid), i);
    EXPECT_EQ(unpacked(lapics[i].apic_id), apic_id(i));
    EXPECT_EQ(unpacked(lapics[i].flags), kMadtLapicEnabled);
  }
  ASSERT_EQ(ioapics.size(), 1u);
  EXPECT_EQ(unpacked(ioapics[0].io_apic_id), ioapic_id(vcpus));
  EXPECT_EQ(unpacked(ioapics[0].address), layout::kIoapicAddr);
  EXPECT_EQ(unpacked(ioapics[0].gsi_base), 0u);
  ASSERT_EQ(overrides.size(), 1u);
  EXPECT_EQ(unpacked(overrides[0].bus), 0);
  EXPECT_EQ(unpacked(overrides[0].source), devices::kAcpiSciGsi);
  EXPECT_EQ(unpacked(overrides[0].gsi), devices::kAcpiSciGsi);
  EXPECT_EQ(unpacked(overrides[0].flags), kMpsIntiActiveHigh | kMpsIntiEdge);
  ASSERT_EQ(nmis.size(), 1u);
  EXPECT_EQ(unpacked(nmis[0].processor_uid), kMadtAllProcessors);
  EXPECT_EQ(unpacked(nmis[0].flags), 0);
  EXPECT_EQ(unpacked(nmis[0].lint), 1);
}

INSTANTIATE_TEST_SUITE_P(Vcpus, AcpiMadtTest, ::testing::Values(1u, 2u, 64u));

// ---- DSDT, assembled by hand from ACPI 6.5 chapter 20 (not with the builder) ----

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Bytes str(const std::string& s) {
  return Bytes(s.begin(), s.end());
}
Bytes le(uint64_t v, int n) {
  Bytes out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return out;
}
// PkgLength for up to 4095 bytes, counting itself.
Bytes pkg(size_t body) {
  if (body + 1 <= 63) return {static_cast<uint8_t>(body + 1)};
  const size_t v = body + 2;
  return {static_cast<uint8_t>(0x40 | (v & 0xF)), static_cast<uint8_t>(v >> 4)};
}
Bytes with_pkg(Bytes op, const Bytes& body) {
  return op + pkg(body.size()) + body;
}
// ResourceTemplate: Buffer (ByteConst size) { data, EndTag + checksum }.
Bytes resources(const Bytes& data) {
  Bytes all = data + Bytes{0x79};
  all.push_back(static_cast<uint8_t>(-byte_sum(all)));
  return with_pkg({0x11}, Bytes{0x0A, static_cast<uint8_t>(all.size())} + all);
}
Bytes name(const std::string& seg, const Bytes& obj) {
  return Bytes{0x08} + str(seg) + obj;
}
Bytes device(const std::string& seg, const Bytes& body) {
  return with_pkg({0x5B, 0x82}, str(seg) + body);
}

Bytes virtio_device(size_t i, const MmioSlot& s) {
  char seg[24];
  std::snprintf(seg, sizeof(seg), "V%03zu", i);
  const Bytes uid = i == 0 ? Bytes{0x00} : i == 1 ? Bytes{0x01} : Bytes{0x0A, uint8_t(i)};
  const Bytes mem = Bytes{0x86, 0x09, 0x00, 0x01} + le(s.base, 4) + le(s.size, 4);
  const Bytes irq = Bytes{0x89, 0x06, 0x00, 0x03, 0x01} + le(s.gsi, 4);
  return device(seg, name("_HID", Bytes{0x0D} + str("LNRO0005") + Bytes{0x00}) + name("_UID", uid) +
                         name("_CRS", resources(mem + irq)));
}

Bytes expected_dsdt_body(const Platform& p) {
  Bytes sb = str("\\_SB_");
  for (size_t i = 0; i < p.virtio_mmio.size(); ++i) sb = sb + virtio_device(i, p.virtio_mmio[i]);
  sb = sb + device("COM1", name("_HID", {0x0C, 0x41, 0xD0, 0x05, 0x01}) +
                               name("_CRS", resources({0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01,
                                                       0x08, 0x22, 0x10, 0x00})));
  sb = sb + device("KBD_", name("_HID", {0x0C, 0x41, 0xD0, 0x03, 0x03}) +
                               name("_CRS", resources({0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01,
                                                       0x01, 0x47, 0x01, 0x64, 0x00, 0x64, 0x00,
                                                       0x01, 0x01, 0x22, 0x02, 0x00})));
  return with_pkg({0x10}, sb) + name("_S5_", {0x12, 0x05, 0x02, 0x0A, 0x05, 0x00});
}

class AcpiDsdtTest : public ::testing::TestWithParam<size_t> {};

TEST_P(AcpiDsdtTest, DevicesForEachDisk) {
  const Platform p = platform_with(1, GetParam());
  auto b = dsdt_for(p).bytes();
  ASSERT_TRUE(b.has_value()) << b.error().message();
  expect_header(*b, "DSDT", 2);
  const Bytes body(b->begin() + sizeof(SdtHeader), b->end());
  EXPECT_EQ(body, expected_dsdt_body(p));
}

INSTANTIATE_TEST_SUITE_P(Disks, AcpiDsdtTest, ::testing::Values(0u, 1u, 2u, acpi_test::kMaxDisks));

TEST(AcpiDsdt, DeviceNames) {
  EXPECT_EQ(virtio_device_name(0), "V000");
  EXPECT_EQ(virtio_device_name(18), "V018");
}

TEST(AcpiDsdt, SlotAbove4GiBIsAnError) {
  Platform p = platform_with(1, 1);
  p.virtio_mmio[0].base = 0x1'0000'0000;
  auto b = dsdt_for(p).bytes();
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code, BootError::kBadSpec);
}

// ---- The tables in guest memory ----

TEST(AcpiTables, KernelFindsThemFromTheBiosArea) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  const Platform p = platform_with(4, 3);
  auto rsdp = write_acpi_tables(*mem, p);
  ASSERT_TRUE(rsdp.has_value()) << rsdp.error().message();
  EXPECT_EQ(*rsdp, layout::kAcpiRsdpAddr);

  const acpi_test::FoundTables t = acpi_test::find_tables(*mem);
  EXPECT_EQ(unpacked(t.rsdp_addr), layout::kAcpiRsdpAddr);
  ASSERT_EQ(t.rsdp.size(), 36u);
  EXPECT_EQ(byte_sum(t.rsdp), 0);
  expect_header(t.xsdt, "XSDT", 1);
  ASSERT_EQ(t.xsdt_entries.size(), 2u);
  expect_header(t.fadt, "FACP", 6);
  expect_header(t.madt, "APIC", 6);
  expect_header(t.dsdt, "DSDT", 2);
  EXPECT_EQ(load<Fadt>(t.fadt).dsdt, unpacked(t.dsdt_addr));
  EXPECT_EQ(unpacked(t.madt), madt_for(p).bytes());
  EXPECT_EQ(unpacked(t.dsdt), *dsdt_for(p).bytes());

  // Every table lies in the reserved area, 16-byte aligned, none overlapping another.
  std::vector<std::pair<uint64_t, uint64_t>> spans = {{t.xsdt_addr, t.xsdt.size()},
                                                      {t.dsdt_addr, t.dsdt.size()}};
  for (uint64_t a : t.xsdt_entries) spans.push_back({a, acpi_test::read_table(*mem, a).size()});
  for (const auto& [addr, size] : spans) {
    EXPECT_GE(addr, layout::kAcpiTablesAddr);
    EXPECT_LE(addr + size, layout::kAcpiTablesEnd);
    EXPECT_EQ(addr % 16, 0u);
    for (const auto& [other, other_size] : spans) {
      if (other != addr) {
        EXPECT_TRUE(addr + size <= other || other + other_size <= addr);
      }
    }
  }
  EXPECT_GE(layout::kAcpiTablesAddr, layout::kAcpiRsdpAddr + 36);
  EXPECT_LE(layout::kAcpiTablesEnd, layout::kHighMemStart);
}

TEST(AcpiTables, LargestPlatformFits) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  auto at =
      write_acpi_tables_at(*mem, platform_with(layout::kMaxVcpus, acpi_test::kMaxDisks), kAcpiArea);
  ASSERT_TRUE(at.has_value()) << at.error().message();
  EXPECT_LE(at->end, layout::kAcpiTablesEnd);
}

TEST(AcpiTables, RejectsWhatTheyCannotDescribe) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  Platform bad_gsi = platform_with(1, 1);
  bad_gsi.virtio_mmio[0].gsi = layout::kIoapicPins;
  Platform high_slot = platform_with(1, 1);
  high_slot.virtio_mmio[0].base = 0xFFFFF000;
  high_slot.virtio_mmio[0].size = 0x2000;
  for (const Platform& p :
       {platform_with(0, 0), platform_with(layout::kMaxVcpus + 1, 0), bad_gsi, high_slot}) {
    auto r = write_acpi_tables(*mem, p);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, BootError::kBadSpec) << r.error().message();
  }
}

TEST(AcpiTables, TooSmallAnAreaIsAnError) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  const AcpiArea small{layout::kAcpiRsdpAddr, layout::kAcpiTablesAddr,
                       layout::kAcpiTablesAddr + 256};
  auto r = write_acpi_tables_at(*mem, platform_with(1, 0), small);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kBadSpec);
  EXPECT_NE(r.error().message().find("do not fit"), std::string::npos) << r.error().message();
  // Nothing was written: no RSDP for a kernel to find.
  EXPECT_TRUE(acpi_test::find_tables(*mem).rsdp.empty());
}

TEST(AcpiTables, RamWithoutTheBiosAreaIsAMemoryError) {
  auto mem = memory::GuestMemory::create({{0, 0x80000}});
  ASSERT_TRUE(mem.has_value());
  auto r = write_acpi_tables(*mem, platform_with(1, 1));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kMemory);
}

}  // namespace
}  // namespace kindling::vmm::acpi
