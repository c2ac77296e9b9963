// AML builder: every term's bytes against the encodings of ACPI 6.5 chapter 20 (and what iasl
// compiles for the same ASL), PkgLength at each size boundary, resource descriptors, errors.
#include "vmm/boot/acpi/aml.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace kindling::vmm::acpi::aml {
namespace {

using Bytes = std::vector<uint8_t>;

// The bytes of a term that must have encoded.
Bytes ok_bytes(const Term& t) {
  EXPECT_TRUE(t.ok()) << t.error();
  return t.bytes();
}

Bytes chars(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(AmlPkgLength, OneByteUpTo63) {
  EXPECT_EQ(encode_pkg_length(0), Bytes({0x00}));
  EXPECT_EQ(encode_pkg_length(63), Bytes({0x3F}));
}

TEST(AmlPkgLength, TwoBytesFrom64To4095) {
  // Lead byte: 01 in bits 7-6 (one byte follows), low nibble in bits 3-0.
  EXPECT_EQ(encode_pkg_length(64), Bytes({0x40, 0x04}));
  EXPECT_EQ(encode_pkg_length(4095), Bytes({0x4F, 0xFF}));
}

TEST(AmlPkgLength, ThreeBytesFrom4096To1048575) {
  EXPECT_EQ(encode_pkg_length(4096), Bytes({0x80, 0x00, 0x01}));
  EXPECT_EQ(encode_pkg_length(1048575), Bytes({0x8F, 0xFF, 0xFF}));
}

TEST(AmlPkgLength, FourBytesFrom1048576ToTheLimit) {
  EXPECT_EQ(encode_pkg_length(1048576), Bytes({0xC0, 0x00, 0x00, 0x01}));
  EXPECT_EQ(encode_pkg_length(kMaxPkgLength), Bytes({0xCF, 0xFF, 0xFF, 0xFF}));
  EXPECT_TRUE(encode_pkg_length(kMaxPkgLength + 1).empty());
}

TEST(AmlPkgLength, CountsItsOwnBytes) {
  // 62 body bytes + 1 = 63 fits one byte; 63 + 1 = 64 does not, so 63 + 2 = 65 in two.
  EXPECT_EQ(pkg_length_for(62), Bytes({0x3F}));
  EXPECT_EQ(pkg_length_for(63), encode_pkg_length(65));
  EXPECT_EQ(pkg_length_for(4093), encode_pkg_length(4095));
  EXPECT_EQ(pkg_length_for(4094), encode_pkg_length(4097));
  EXPECT_EQ(pkg_length_for(1048572), encode_pkg_length(1048575));
  EXPECT_EQ(pkg_length_for(1048573), encode_pkg_length(1048577));
  EXPECT_EQ(pkg_length_for(kMaxPkgLength - 4), encode_pkg_length(kMaxPkgLength));
  EXPECT_TRUE(pkg_length_for(kMaxPkgLength - 3).empty());
}

TEST(AmlPkgLength, ScopeSizesAtTheBoundaries) {
  // A Scope body is the 4-byte name plus the terms; a Buffer of n bytes under Name(ABCD) adds
  // 1 (NameOp) + 4 + 1 (BufferOp) + PkgLength + size integer. Grow the buffer until the scope's
  // PkgLength needs two bytes and check both sides.
  for (size_t n = 40; n < 60; ++n) {
    const Bytes data(n, 0xAA);
    const Bytes s = ok_bytes(scope("ABCD", {name("BUFF", buffer(data))}));
    const size_t body = s.size() - 1;  // after ScopeOp
    const size_t len_bytes = (s[1] >> 6) + 1;
    const uint32_t value = len_bytes == 1 ? s[1] : ((s[1] & 0xF) | (s[2] << 4));
    EXPECT_EQ(value, body) << n;
    EXPECT_EQ(len_bytes, body <= 63 ? 1u : 2u) << n;
  }
}

TEST(AmlNameString, SegmentsPrefixesAndPadding) {
  EXPECT_EQ(ok_bytes(name_string("_HID")), chars("_HID"));
  EXPECT_EQ(ok_bytes(name_string("_SB")), chars("_SB_"));
  EXPECT_EQ(ok_bytes(name_string("\\_SB_")), chars("\\_SB_"));
  EXPECT_EQ(ok_bytes(name_string("^^COM1")), chars("^^COM1"));
  EXPECT_EQ(ok_bytes(name_string("\\_SB.PCI0")), cat({chars("\\"), {0x2E}, chars("_SB_PCI0")}));
  EXPECT_EQ(ok_bytes(name_string("_SB.PCI0.ISA")), cat({{0x2F, 0x03}, chars("_SB_PCI0ISA_")}));
  EXPECT_EQ(ok_bytes(name_string("\\")), Bytes({'\\', 0x00}));
}

TEST(AmlNameString, RejectsMalformedNames) {
  for (const char* bad : {"", "TOOLONG", "1ABC", "ab", "A.", ".A", "A..B", "A-B"}) {
    const Term t = name_string(bad);
    EXPECT_FALSE(t.ok()) << bad;
    EXPECT_TRUE(t.bytes().empty()) << bad;
  }
}

TEST(AmlInteger, SmallestPrefixAtEachBoundary) {
  EXPECT_EQ(ok_bytes(integer(0)), Bytes({0x00}));
  EXPECT_EQ(ok_bytes(integer(1)), Bytes({0x01}));
  EXPECT_EQ(ok_bytes(integer(2)), Bytes({0x0A, 0x02}));
  EXPECT_EQ(ok_bytes(integer(0xFF)), Bytes({0x0A, 0xFF}));
  EXPECT_EQ(ok_bytes(integer(0x100)), Bytes({0x0B, 0x00, 0x01}));
  EXPECT_EQ(ok_bytes(integer(0xFFFF)), Bytes({0x0B, 0xFF, 0xFF}));
  EXPECT_EQ(ok_bytes(integer(0x10000)), Bytes({0x0C, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(ok_bytes(integer(0xFFFFFFFF)), Bytes({0x0C, 0xFF, 0xFF, 0xFF, 0xFF}));
  EXPECT_EQ(ok_bytes(integer(0x100000000)),
            Bytes({0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}));
  EXPECT_EQ(ok_bytes(integer(0x0123456789ABCDEF)),
            Bytes({0x0E, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01}));
}

TEST(AmlString, NulTerminatedAscii) {
  EXPECT_EQ(ok_bytes(string("LNRO0005")), cat({{0x0D}, chars("LNRO0005"), {0x00}}));
  EXPECT_EQ(ok_bytes(string("")), Bytes({0x0D, 0x00}));
  EXPECT_FALSE(string(std::string("A\0B", 3)).ok());
  EXPECT_FALSE(string("\xC3\xA9").ok());
}

TEST(AmlEisaId, CompressesPnpIds) {
  uint32_t v = 0;
  ASSERT_TRUE(eisa_id_value("PNP0501", v));
  EXPECT_EQ(v, 0x0105D041u);
  ASSERT_TRUE(eisa_id_value("PNP0303", v));
  EXPECT_EQ(v, 0x0303D041u);
  ASSERT_TRUE(eisa_id_value("PNP0A03", v));
  EXPECT_EQ(v, 0x030AD041u);
  // Always a DWord, even for a value that would fit a Word.
  EXPECT_EQ(ok_bytes(eisa_id("PNP0501")), Bytes({0x0C, 0x41, 0xD0, 0x05, 0x01}));
  ASSERT_TRUE(eisa_id_value("AAA0000", v));
  EXPECT_EQ(ok_bytes(eisa_id("AAA0000")), Bytes({0x0C, 0x04, 0x21, 0x00, 0x00}));
}

TEST(AmlEisaId, RejectsMalformedIds) {
  uint32_t v = 0;
  for (const char* bad : {"PNP050", "PNP05011", "pnp0501", "PN10501", "PNP05G1", "PNP05a1"}) {
    EXPECT_FALSE(eisa_id_value(bad, v)) << bad;
    EXPECT_FALSE(eisa_id(bad).ok()) << bad;
  }
}

TEST(AmlName, NameOpNameObject) {
  EXPECT_EQ(ok_bytes(name("_UID", integer(0))), cat({{0x08}, chars("_UID"), {0x00}}));
  EXPECT_EQ(ok_bytes(name("_HID", eisa_id("PNP0501"))),
            cat({{0x08}, chars("_HID"), {0x0C, 0x41, 0xD0, 0x05, 0x01}}));
  EXPECT_FALSE(name("_HIDX", integer(0)).ok());
}

TEST(AmlScopeDevice, PkgLengthCoversNameAndTerms) {
  // Scope (\_SB) { Name (_UID, One) }: 0x10, PkgLength = 1 + 5 + 6 = 12.
  EXPECT_EQ(ok_bytes(scope("\\_SB_", {name("_UID", integer(1))})),
            cat({{0x10, 12}, chars("\\_SB_"), {0x08}, chars("_UID"), {0x01}}));
  // Device (COM1) {}: ExtOpPrefix DeviceOp, PkgLength = 1 + 4.
  EXPECT_EQ(ok_bytes(device("COM1", {})), cat({{0x5B, 0x82, 5}, chars("COM1")}));
}

TEST(AmlMethod, FlagsAndReturn) {
  // Method (_STA, 0, NotSerialized) { Return (0x0F) }, as iasl compiles it.
  EXPECT_EQ(ok_bytes(method("_STA", 0, false, {return_value(integer(0x0F))})),
            cat({{0x14, 0x09}, chars("_STA"), {0x00, 0xA4, 0x0A, 0x0F}}));
  // Method (M2, 2, Serialized) {}: ArgCount 2, SerializeFlag bit 3.
  EXPECT_EQ(ok_bytes(method("M2", 2, true, {})), cat({{0x14, 0x06}, chars("M2__"), {0x0A}}));
  EXPECT_FALSE(method("_STA", 8, false, {}).ok());
}

TEST(AmlPackage, CountAndElements) {
  // Name (_S5_, Package () { 5, 0 }), as iasl compiles it.
  EXPECT_EQ(ok_bytes(name("_S5_", package({integer(5), integer(0)}))),
            cat({{0x08}, chars("_S5_"), {0x12, 0x05, 0x02, 0x0A, 0x05, 0x00}}));
  EXPECT_EQ(ok_bytes(package({})), Bytes({0x12, 0x02, 0x00}));
  EXPECT_TRUE(package(std::vector<Term>(255, integer(0))).ok());
  EXPECT_FALSE(package(std::vector<Term>(256, integer(0))).ok());
}

TEST(AmlBuffer, SizeThenData) {
  EXPECT_EQ(ok_bytes(buffer(Bytes{0xAA, 0xBB})), Bytes({0x11, 0x05, 0x0A, 0x02, 0xAA, 0xBB}));
  EXPECT_EQ(ok_bytes(buffer(Bytes{})), Bytes({0x11, 0x02, 0x00}));
}

TEST(AmlErrors, PropagateToTheOutermostTerm) {
  const Term t = scope("\\_SB_", {device("COM1", {name("_HID", eisa_id("bad"))})});
  EXPECT_FALSE(t.ok());
  EXPECT_NE(t.error().find("bad"), std::string::npos) << t.error();
  EXPECT_TRUE(t.bytes().empty());
  EXPECT_FALSE(resource_template({irq_no_flags(16)}).ok());
}

TEST(AmlResources, Memory32Fixed) {
  EXPECT_EQ(memory32_fixed(true, 0xD0000000, 0x1000).bytes(),
            Bytes({0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00}));
  EXPECT_EQ(memory32_fixed(false, 0, 0).bytes()[3], 0x00);
}

TEST(AmlResources, IoDecode16) {
  EXPECT_EQ(io(0x3F8, 0x3F8, 1, 8).bytes(),
            Bytes({0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08}));
}

TEST(AmlResources, IrqNoFlagsIsABitMask) {
  EXPECT_EQ(irq_no_flags(4).bytes(), Bytes({0x22, 0x10, 0x00}));
  EXPECT_EQ(irq_no_flags(1).bytes(), Bytes({0x22, 0x02, 0x00}));
  EXPECT_EQ(irq_no_flags(15).bytes(), Bytes({0x22, 0x00, 0x80}));
  EXPECT_FALSE(irq_no_flags(16).ok());
}

TEST(AmlResources, ExtendedInterruptFlags) {
  // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}.
  EXPECT_EQ(extended_interrupt({}, 5).bytes(),
            Bytes({0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}));
  // Interrupt (ResourceProducer, Level, ActiveLow, Shared) {0x123}.
  const InterruptMode level_low{
      .consumer = false, .edge = false, .active_low = true, .shared = true};
  EXPECT_EQ(extended_interrupt(level_low, 0x123).bytes(),
            Bytes({0x89, 0x06, 0x00, 0x0C, 0x01, 0x23, 0x01, 0x00, 0x00}));
}

TEST(AmlResources, TemplateEndsWithAChecksummedEndTag) {
  const Bytes t = ok_bytes(resource_template({io(0x60, 0x60, 1, 1), irq_no_flags(1)}));
  // Buffer (0x0D) { IO (8 bytes), IRQNoFlags (3), EndTag (2) }.
  ASSERT_EQ(t.size(), 4u + 13u);
  EXPECT_EQ(Bytes(t.begin(), t.begin() + 4), Bytes({0x11, 0x10, 0x0A, 0x0D}));
  EXPECT_EQ(t[t.size() - 2], 0x79);
  const uint8_t sum = std::accumulate(t.begin() + 4, t.end(), uint8_t{0});
  EXPECT_EQ(sum, 0);
  EXPECT_NE(t.back(), 0);  // this one's checksum is not the "no checksum" 0
  // An empty template is just the end tag: 0x79 + checksum 0x87.
  EXPECT_EQ(ok_bytes(resource_template({})), Bytes({0x11, 0x05, 0x0A, 0x02, 0x79, 0x87}));
}

}  // namespace
}  // namespace kindling::vmm::acpi::aml
