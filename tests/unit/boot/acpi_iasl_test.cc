// The ACPI tables read back by ACPICA's own tools (Debian's acpica-tools): each table kindling
// writes into guest memory is disassembled with `iasl -d`, which must report no bad checksum and
// no parse error and must decode every field and device as written; the RSDP, which this iasl
// cannot disassemble on its own, is compiled from its fields by iasl's data-table compiler and
// compared byte for byte; and acpiexec, ACPICA's interpreter, loads the DSDT, FADT and MADT and
// evaluates \_S5 and a _CRS. Without these tools the tests fail: `make deps` installs them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/boot/acpi_test_util.h"
#include "vmm/boot/acpi/tables.h"
#include "vmm/layout.h"

namespace kindling::vmm::acpi {
namespace {

using acpi_test::platform_with;
using Bytes = std::vector<uint8_t>;

// The path of `tool` from $PATH, or nullopt.
std::optional<std::string> find_tool(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + tool;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// What one iasl run printed and wrote.
struct IaslResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
  std::string dsl;     // the .dsl it wrote (disassembly only)
};

class AcpiIaslTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto iasl = find_tool("iasl");
    ASSERT_TRUE(iasl.has_value())
        << "iasl not found in PATH: install Debian's acpica-tools (make deps does)";
    iasl_ = *iasl;
  }

  // Loads `tables` (name, bytes) into ACPICA's own interpreter, acpiexec, and runs `commands`.
  IaslResult acpiexec(const std::vector<std::pair<std::string, Bytes>>& tables,
                      const std::string& commands) {
    auto acpiexec = find_tool("acpiexec");
    EXPECT_TRUE(acpiexec.has_value()) << "acpiexec not found in PATH: install acpica-tools";
    if (!acpiexec) return {};
    std::vector<std::string> argv = {*acpiexec, "-b", commands};
    for (const auto& [name, bytes] : tables) {
      argv.push_back(dir_.write(name + ".dat", std::string(bytes.begin(), bytes.end())));
    }
    return run(argv, "");
  }

  // Writes `table` to <name>.dat and disassembles it with `iasl -d` into <name>.dsl.
  IaslResult disassemble(const std::string& name, const Bytes& table) {
    const std::string dat = dir_.write(name + ".dat", std::string(table.begin(), table.end()));
    return run({iasl_, "-vs", "-d", dat}, dir_.path() + "/" + name + ".dsl");
  }

  // Compiles the data-table source `source` with iasl into <name>.aml; the bytes, or empty.
  Bytes compile(const std::string& name, const std::string& source, IaslResult& out) {
    const std::string asl = dir_.write(name + ".asl", source);
    out = run({iasl_, "-vs", "-p", dir_.path() + "/" + name, asl}, "");
    auto aml = test::read_file(dir_.path() + "/" + name + ".aml");
    return aml ? Bytes(aml->begin(), aml->end()) : Bytes{};
  }

  // The table `signature` as kindling writes it for `p`, read back from guest memory.
  static Bytes written(const Platform& p, const std::string& signature) {
    auto mem = memory::GuestMemory::create_ram(16 << 20);
    EXPECT_TRUE(mem.has_value());
    auto r = write_acpi_tables(*mem, p);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    const acpi_test::FoundTables t = acpi_test::find_tables(*mem);
    if (signature == "RSDP") return t.rsdp;
    if (signature == "XSDT") return t.xsdt;
    if (signature == "FACP") return t.fadt;
    if (signature == "APIC") return t.madt;
    return t.dsdt;
  }

 private:
  IaslResult run(const std::vector<std::string>& argv, const std::string& dsl_path) {
    test::ChildOptions opts;
    opts.merge_output = true;
    const test::ChildResult c = test::run_child(argv, opts);
    IaslResult r;
    r.exit_code = c.exited ? c.exit_code : -1;
    r.output = c.out;
    if (!dsl_path.empty()) r.dsl = test::read_file(dsl_path).value_or("");
    return r;
  }

  std::string iasl_;
  test::TempDir dir_;
};

// A disassembly with no complaint: iasl says "Incorrect checksum" (and a Firmware Warning) for a
// bad checksum, and ACPI Error / AE_ codes for AML it cannot parse.
void expect_clean(const IaslResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* bad : {"Incorrect checksum", "Error", "Warning", "AE_", "Invalid"}) {
    EXPECT_EQ(r.output.find(bad), std::string::npos) << bad << " in:\n" << r.output;
    EXPECT_EQ(r.dsl.find(bad), std::string::npos) << bad << " in:\n" << r.dsl;
  }
  EXPECT_FALSE(r.dsl.empty()) << r.output;
}

// "Name : value" pairs of a data-table disassembly, in order ("[02Eh 0046   2]  SCI Interrupt :
// 0009" and decoded flag lines alike).
std::vector<std::pair<std::string, std::string>> fields(const std::string& dsl) {
  std::vector<std::pair<std::string, std::string>> out;
  std::stringstream in(dsl);
  std::string line;
  auto trim = [](std::string s) {
    const size_t b = s.find_first_not_of(' ');
    const size_t e = s.find_last_not_of(' ');
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    if (line.rfind("/*", 0) == 0 || line.rfind(" *", 0) == 0) continue;
    const size_t colon = line.find(" : ");
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    if (const size_t bracket = name.find(']'); name.rfind('[', 0) == 0 && bracket != name.npos) {
      name = name.substr(bracket + 1);
    }
    out.emplace_back(trim(name), trim(line.substr(colon + 3)));
  }
  return out;
}

// Checks that `want` appear in `got` in order (other fields may come between), each value
// starting with the wanted text.
void expect_fields(const std::vector<std::pair<std::string, std::string>>& got,
                   const std::vector<std::pair<std::string, std::string>>& want) {
  size_t at = 0;
  for (const auto& [name, value] : want) {
    while (at < got.size() && got[at].first != name) ++at;
    ASSERT_LT(at, got.size()) << "field \"" << name << "\" (" << value << ") not found in order";
    EXPECT_EQ(got[at].second.rfind(value, 0), 0u)
        << name << ": got \"" << got[at].second << "\", want \"" << value << "...\"";
    ++at;
  }
}

std::string hex(const char* fmt, uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), fmt, static_cast<unsigned long long>(v));
  return buf;
}

// Removes /* */ and // comments and all white space, so that iasl's layout does not matter.
std::string squeeze(const std::string& asl) {
  std::string out;
  for (size_t i = 0; i < asl.size();) {
    if (asl.compare(i, 2, "/*") == 0) {
      const size_t end = asl.find("*/", i + 2);
      i = end == std::string::npos ? asl.size() : end + 2;
    } else if (asl.compare(i, 2, "//") == 0) {
      const size_t end = asl.find('\n', i);
      i = end == std::string::npos ? asl.size() : end;
    } else {
      if (!std::isspace(static_cast<unsigned char>(asl[i]))) out += asl[i];
      ++i;
    }
  }
  return out;
}

// The ASL the DSDT for `p` must disassemble to, as iasl prints it.
std::string expected_dsdt_asl(const Platform& p) {
  std::string sb;
  for (size_t i = 0; i < p.virtio_mmio.size(); ++i) {
    const MmioSlot& s = p.virtio_mmio[i];
    const std::string uid = i == 0 ? "Zero" : i == 1 ? "One" : hex("0x%02llX", i);
    sb += "Device (" + hex("V%03llu", i) + ") { Name (_HID, \"LNRO0005\") Name (_UID, " + uid +
          ") Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, " +
          hex("0x%08llX", s.base) + ", " + hex("0x%08llX", s.size) +
          ", ) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { " +
          hex("0x%08llX", s.gsi) + ", } }) }";
  }
  sb +=
      "Device (COM1) { Name (_HID, EisaId (\"PNP0501\")) Name (_CRS, ResourceTemplate () {"
      " IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, ) IRQNoFlags () {4} }) }";
  sb +=
      "Device (KBD) { Name (_HID, EisaId (\"PNP0303\")) Name (_CRS, ResourceTemplate () {"
      " IO (Decode16, 0x0060, 0x0060, 0x01, 0x01, ) IO (Decode16, 0x0064, 0x0064, 0x01, 0x01, )"
      " IRQNoFlags () {1} }) }";
  return "DefinitionBlock (\"\", \"DSDT\", 2, \"KNDLNG\", \"KINDLING\", 0x00000001) { Scope "
         "(\\_SB) "
         "{ " +
         sb + " } Name (_S5, Package (0x02) { 0x05, Zero }) }";
}

class AcpiIaslDsdtTest : public AcpiIaslTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(AcpiIaslDsdtTest, DevicesAndResourcesReadBackAsWritten) {
  const Platform p = platform_with(1, GetParam());
  const Bytes dsdt = written(p, "DSDT");
  ASSERT_GE(dsdt.size(), sizeof(SdtHeader)) << "no DSDT found from the RSDP";
  const IaslResult r = disassemble("dsdt", dsdt);
  expect_clean(r);
  const size_t start = r.dsl.find("DefinitionBlock");
  ASSERT_NE(start, std::string::npos) << r.dsl;
  EXPECT_EQ(squeeze(r.dsl.substr(start)), squeeze(expected_dsdt_asl(p))) << r.dsl;
}

INSTANTIATE_TEST_SUITE_P(Disks, AcpiIaslDsdtTest, ::testing::Values(1u, 2u, acpi_test::kMaxDisks));

TEST_F(AcpiIaslTest, FadtDecodesAsHardwareReduced) {
  const Bytes fadt = written(platform_with(1, 1), "FACP");
  ASSERT_EQ(fadt.size(), sizeof(Fadt)) << "no FADT found from the RSDP";
  const IaslResult r = disassemble("facp", fadt);
  expect_clean(r);
  const uint64_t dsdt = acpi_test::load<Fadt>(fadt).x_dsdt;
  expect_fields(fields(r.dsl),
                {{"Signature", "\"FACP\""},
                 {"Table Length", "00000114"},
                 {"Revision", "06"},
                 {"DSDT Address", hex("%08llX", dsdt)},
                 {"SCI Interrupt", hex("%04llX", devices::kAcpiSciGsi)},
                 {"PM1A Event Block Address", "00000000"},
                 {"Boot Flags (decoded below)", "000E"},
                 {"Legacy Devices Supported (V2)", "0"},
                 {"8042 Present on ports 60/64 (V2)", "1"},
                 {"VGA Not Present (V4)", "1"},
                 {"MSI Not Supported (V4)", "1"},
                 {"CMOS RTC Not Present (V5)", "0"},
                 {"Flags (decoded below)", "00100430"},
                 {"Control Method Power Button (V1)", "1"},
                 {"Control Method Sleep Button (V1)", "1"},
                 {"Reset Register Supported (V2)", "1"},
                 {"Hardware Reduced (V5)", "1"},
                 {"Space ID", "01 [SystemIO]"},
                 {"Bit Width", "08"},
                 {"Address", hex("%016llX", devices::kAcpiResetPort)},
                 {"Value to cause reset", hex("%02llX", devices::kAcpiResetValue)},
                 {"FADT Minor Revision", "05"},
                 {"FACS Address", "0000000000000000"},
                 {"DSDT Address", hex("%016llX", dsdt)},
                 {"Sleep Control Register", "[Generic Address Structure]"},
                 {"Space ID", "01 [SystemIO]"},
                 {"Bit Width", "08"},
                 {"Address", hex("%016llX", devices::kAcpiSleepControlPort)},
                 {"Sleep Status Register", "[Generic Address Structure]"},
                 {"Space ID", "01 [SystemIO]"},
                 {"Bit Width", "08"},
                 {"Address", hex("%016llX", devices::kAcpiSleepStatusPort)},
                 {"Hypervisor ID", "474E494C444E494B"}});  // "KINDLING", little-endian
}

class AcpiIaslMadtTest : public AcpiIaslTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(AcpiIaslMadtTest, DecodesEveryEntry) {
  const uint32_t vcpus = GetParam();
  const Bytes madt = written(platform_with(vcpus, 1), "APIC");
  ASSERT_GE(madt.size(), sizeof(SdtHeader)) << "no MADT found from the RSDP";
  const IaslResult r = disassemble("apic", madt);
  expect_clean(r);
  std::vector<std::pair<std::string, std::string>> want = {{"Signature", "\"APIC\""},
                                                           {"Revision", "06"},
                                                           {"Local Apic Address", "FEE00000"},
                                                           {"Flags (decoded below)", "00000000"},
                                                           {"PC-AT Compatibility", "0"}};
  for (uint32_t i = 0; i < vcpus; ++i) {
    want.insert(want.end(), {{"Subtable Type", "00 [Processor Local APIC]"},
                             {"Processor ID", hex("%02llX", i)},
                             {"Local Apic ID", hex("%02llX", apic_id(i))},
                             {"Processor Enabled", "1"}});
  }
  want.insert(want.end(), {{"Subtable Type", "01 [I/O APIC]"},
                           {"I/O Apic ID", hex("%02llX", ioapic_id(vcpus))},
                           {"Address", "FEC00000"},
                           {"Interrupt", "00000000"},
                           {"Subtable Type", "02 [Interrupt Source Override]"},
                           {"Bus", "00"},
                           {"Source", "09"},
                           {"Interrupt", "00000009"},
                           {"Polarity", "1"},
                           {"Trigger Mode", "1"},
                           {"Subtable Type", "04 [Local APIC NMI]"},
                           {"Processor ID", "FF"},
                           {"Interrupt Input LINT", "01"}});
  const auto got = fields(r.dsl);
  expect_fields(got, want);
  size_t subtables = 0;
  for (const auto& [name, value] : got) subtables += name == "Subtable Type";
  EXPECT_EQ(subtables, vcpus + 3);
}

INSTANTIATE_TEST_SUITE_P(Vcpus, AcpiIaslMadtTest, ::testing::Values(1u, 2u, 64u));

TEST_F(AcpiIaslTest, XsdtListsFadtAndMadt) {
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  ASSERT_TRUE(write_acpi_tables(*mem, platform_with(2, 2)).has_value());
  const acpi_test::FoundTables t = acpi_test::find_tables(*mem);
  ASSERT_EQ(t.xsdt_entries.size(), 2u);
  const IaslResult r = disassemble("xsdt", t.xsdt);
  expect_clean(r);
  expect_fields(fields(r.dsl), {{"Signature", "\"XSDT\""},
                                {"Revision", "01"},
                                {"ACPI Table Address   0", hex("%016llX", t.xsdt_entries[0])},
                                {"ACPI Table Address   1", hex("%016llX", t.xsdt_entries[1])}});
  EXPECT_EQ(acpi_test::signature_of(t.fadt), "FACP");
  EXPECT_EQ(acpi_test::signature_of(t.madt), "APIC");
}

TEST_F(AcpiIaslTest, RsdpMatchesWhatIaslCompilesFromItsFields) {
  const Bytes rsdp = written(platform_with(1, 0), "RSDP");
  ASSERT_EQ(rsdp.size(), 36u) << "no RSDP found in the BIOS area";
  const uint64_t xsdt = acpi_test::load<Rsdp>(rsdp).xsdt_address;
  // iasl's data-table compiler fills in both checksums itself.
  const std::string source =
      "[0008] Signature : \"RSD PTR \"\n"
      "[0001] Checksum : 00\n"
      "[0006] Oem ID : \"KNDLNG\"\n"
      "[0001] Revision : 02\n"
      "[0004] RSDT Address : 00000000\n"
      "[0004] Length : 00000024\n"
      "[0008] XSDT Address : " +
      hex("%016llX", xsdt) +
      "\n"
      "[0001] Extended Checksum : 00\n"
      "[0003] Reserved : 000000\n";
  IaslResult r;
  const Bytes reference = compile("rsdp", source, r);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("0 Errors, 0 Warnings"), std::string::npos) << r.output;
  EXPECT_EQ(rsdp, reference);
}

TEST_F(AcpiIaslTest, AcpiExecLoadsTheNamespaceAndEvaluatesIt) {
  // ACPICA's table manager and namespace loader (what Linux runs) on the DSDT, FADT and MADT
  // of the largest machine: every device is loaded, \_S5 and the last disk's _CRS evaluate.
  auto mem = memory::GuestMemory::create_ram(16 << 20);
  ASSERT_TRUE(mem.has_value());
  const Platform p = platform_with(64, acpi_test::kMaxDisks);
  ASSERT_TRUE(write_acpi_tables(*mem, p).has_value());
  const acpi_test::FoundTables t = acpi_test::find_tables(*mem);
  ASSERT_FALSE(t.dsdt.empty());
  const IaslResult r = acpiexec({{"dsdt", t.dsdt}, {"facp", t.fadt}, {"apic", t.madt}},
                                "evaluate \\_S5; evaluate \\_SB.V018._CRS");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* bad : {"Incorrect checksum", "Error", "Warning", "AE_"}) {
    EXPECT_EQ(r.output.find(bad), std::string::npos) << bad << " in:\n" << r.output;
  }
  // 19 disks, COM1, KBD_.
  EXPECT_NE(r.output.find(" 21 Devices"), std::string::npos) << r.output;
  const size_t s5 = r.output.find("Evaluation of \\_S5 returned");
  ASSERT_NE(s5, std::string::npos) << r.output;
  const size_t crs = r.output.find("Evaluation of \\_SB.V018._CRS returned");
  ASSERT_NE(crs, std::string::npos) << r.output;
  const std::string s5_out = r.output.substr(s5, crs - s5);
  EXPECT_NE(s5_out.find("[Package] Contains 2 Elements"), std::string::npos) << s5_out;
  EXPECT_NE(s5_out.find("[Integer] = 0000000000000005"), std::string::npos) << s5_out;
  // Memory32Fixed at the slot's base, then Interrupt {23}.
  const MmioSlot& last = p.virtio_mmio.back();
  const std::string crs_out = r.output.substr(crs);
  EXPECT_NE(
      crs_out.find("0000: 86 09 00 01 " + hex("%02llX", last.base & 0xFF) + " " +
                   hex("%02llX", (last.base >> 8) & 0xFF) + " " +
                   hex("%02llX", (last.base >> 16) & 0xFF) + " " + hex("%02llX", last.base >> 24)),
      std::string::npos)
      << crs_out;
  EXPECT_NE(crs_out.find("0010: 01 " + hex("%02llX", last.gsi) + " 00 00 00 79"), std::string::npos)
      << crs_out;
}

TEST_F(AcpiIaslTest, ABadChecksumIsReported) {
  // The check the tests above rely on: iasl does complain when a checksum is wrong.
  Bytes madt = written(platform_with(1, 0), "APIC");
  ASSERT_GE(madt.size(), sizeof(SdtHeader)) << "no MADT found from the RSDP";
  madt[9] ^= 0x5A;
  const IaslResult r = disassemble("bad", madt);
  EXPECT_NE(r.output.find("Incorrect checksum"), std::string::npos) << r.output;
  EXPECT_NE(r.dsl.find("Incorrect checksum"), std::string::npos) << r.dsl;
}

}  // namespace
}  // namespace kindling::vmm::acpi
