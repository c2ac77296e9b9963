#include "vmm/cpuid.h"

#include <asm/kvm_para.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <vector>

namespace kindling::vmm {
namespace {

kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d,
                      uint32_t flags = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = idx;
  e.flags = flags;
  e.eax = a;
  e.ebx = b;
  e.ecx = c;
  e.edx = d;
  return e;
}

// Shaped like KVM_GET_SUPPORTED_CPUID on this project's PVM hosts (AMD EPYC).
std::vector<kvm_cpuid_entry2> host_table() {
  return {
      leaf(0x0, 0, 0x1c, 0x68747541, 0x444d4163, 0x69746e65),
      leaf(0x1, 0, 0x00b00f21, 0x00020800, 0x81202000 | (1u << 26) | (1u << 27) | (1u << 28),
           0x078bfbff),
      leaf(0xb, 0, 0, 0, 0, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
      leaf(0xd, 0, 0xe7, 0x980, 0x980, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
      leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
      leaf(0x40000001, 0, 0x01007efb, 0, 0, 1),
      leaf(0x80000008, 0, 0x3030, 0x50020005, 0x00007001, 0),
  };
}

std::optional<kvm_cpuid_entry2> find(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn,
                                     uint32_t idx = 0) {
  for (const auto& e : t) {
    if (e.function == fn && e.index == idx) return e;
  }
  return std::nullopt;
}

size_t count(const std::vector<kvm_cpuid_entry2>& t, uint32_t fn) {
  size_t n = 0;
  for (const auto& e : t) n += e.function == fn;
  return n;
}

TEST(CpuidTest, Leaf1CarriesApicIdAndLogicalCount) {
  const auto host = host_table();
  const auto t = filter_cpuid(host, {3, 4, false});
  auto l1 = find(t, 1);
  ASSERT_TRUE(l1);
  EXPECT_EQ(l1->ebx >> 24, 3u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // CLFLUSH size and brand index kept
  EXPECT_TRUE(l1->edx & (1u << 28));     // HTT: more than one logical processor
  EXPECT_TRUE(l1->ecx & (1u << 31));     // hypervisor present
  EXPECT_TRUE(l1->ecx & (1u << 26));     // XSAVE kept unless asked to hide it
}

TEST(CpuidTest, HideXsaveClearsXsaveOsxsaveAndAvx) {
  const auto host = host_table();
  auto l1 = find(filter_cpuid(host, {0, 1, true}), 1);
  ASSERT_TRUE(l1);
  EXPECT_EQ(l1->ecx & ((1u << 26) | (1u << 27) | (1u << 28)), 0u);
  EXPECT_FALSE(l1->edx & (1u << 28));  // one vCPU: no HTT
}

TEST(CpuidTest, Leaf0xBDescribesOneThreadPerCoreForEachVcpu) {
  const auto host = host_table();
  for (uint32_t i = 0; i < 3; ++i) {
    const auto t = filter_cpuid(host, {i, 3, false});
    EXPECT_EQ(count(t, 0xb), 3u);
    auto smt = find(t, 0xb, 0), core = find(t, 0xb, 1), end = find(t, 0xb, 2);
    ASSERT_TRUE(smt && core && end);
    EXPECT_EQ(smt->ebx, 1u);
    EXPECT_EQ((smt->ecx >> 8) & 0xff, 1u);  // SMT level
    EXPECT_EQ(core->eax, 2u);               // 3 cores need 2 APIC-id bits
    EXPECT_EQ(core->ebx, 3u);
    EXPECT_EQ((core->ecx >> 8) & 0xff, 2u);  // core level
    EXPECT_EQ((end->ecx >> 8) & 0xff, 0u);   // invalid level ends the list
    for (const auto& e : {*smt, *core, *end}) {
      EXPECT_EQ(e.edx, i);
      EXPECT_EQ(e.flags, static_cast<uint32_t>(KVM_CPUID_FLAG_SIGNIFCANT_INDEX));
    }
  }
}

TEST(CpuidTest, NoLeaf0xBWhenTheMaxBasicLeafIsBelowIt) {
  auto host = host_table();
  host[0].eax = 0xa;
  host.erase(host.begin() + 2);
  EXPECT_EQ(count(filter_cpuid(host, {0, 2, false}), 0xb), 0u);
}

TEST(CpuidTest, PvFeaturesThatHypercallAreCleared) {
  const auto host = host_table();
  auto pv = find(filter_cpuid(host, {0, 2, false}), 0x40000001);
  ASSERT_TRUE(pv);
  for (int bit : {KVM_FEATURE_PV_UNHALT, KVM_FEATURE_PV_SEND_IPI, KVM_FEATURE_PV_SCHED_YIELD,
                  KVM_FEATURE_ASYNC_PF, KVM_FEATURE_ASYNC_PF_INT, KVM_FEATURE_HC_MAP_GPA_RANGE,
                  KVM_FEATURE_MIGRATION_CONTROL}) {
    EXPECT_FALSE(pv->eax & (1u << bit)) << "bit " << bit;
  }
  for (int bit : {KVM_FEATURE_CLOCKSOURCE2, KVM_FEATURE_STEAL_TIME, KVM_FEATURE_PV_EOI,
                  KVM_FEATURE_CLOCKSOURCE_STABLE_BIT}) {
    EXPECT_TRUE(pv->eax & (1u << bit)) << "bit " << bit;
  }
  EXPECT_EQ(pv->edx, 0u);  // no realtime hint
}

TEST(CpuidTest, HypervisorSignatureIsKvm) {
  auto host = host_table();
  host[4].ebx = host[4].ecx = host[4].edx = 0;
  auto sig = find(filter_cpuid(host, {0, 1, false}), 0x40000000);
  ASSERT_TRUE(sig);
  char name[13] = {};
  std::memcpy(name, &sig->ebx, 4);
  std::memcpy(name + 4, &sig->ecx, 4);
  std::memcpy(name + 8, &sig->edx, 4);
  EXPECT_STREQ(name, "KVMKVMKVM");
  EXPECT_GE(sig->eax, 0x40000001u);
}

TEST(CpuidTest, AmdCoreCountFollowsVcpuCount) {
  const auto host = host_table();
  auto l = find(filter_cpuid(host, {0, 4, false}), 0x80000008);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->ecx & 0xff, 3u);
  EXPECT_EQ((l->ecx >> 12) & 0xf, 2u);
}

TEST(CpuidTest, OtherLeavesPassThroughUnchanged) {
  const auto host = host_table();
  auto d = find(filter_cpuid(host, {1, 2, true}), 0xd);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->eax, 0xe7u);
  EXPECT_EQ(d->ebx, 0x980u);
}

}  // namespace
}  // namespace kindling::vmm
