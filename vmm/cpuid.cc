#include "vmm/cpuid.h"

#include <asm/kvm_para.h>

#include <algorithm>
#include <bit>

#include "vmm/boot/platform.h"

namespace kindling::vmm {
namespace {

// CPUID bit positions (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, E.3).
constexpr uint32_t kLeaf1EcxXsave = 1u << 26;
constexpr uint32_t kLeaf1EcxOsxsave = 1u << 27;
constexpr uint32_t kLeaf1EcxAvx = 1u << 28;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kLeafBTypeSmt = 1;
constexpr uint32_t kLeafBTypeCore = 2;
constexpr uint32_t kKvmSignatureLeaf = 0x40000000;
constexpr uint32_t kKvmFeaturesLeaf = 0x40000001;
constexpr uint32_t kAmdAddressSizesLeaf = 0x80000008;

// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
constexpr uint32_t kKvmSignature[3] = {0x4b4d564b, 0x564b4d56, 0x0000004d};

uint32_t bit(int n) {
  return 1u << n;
}

// Bits needed to number `n` items (0 for one item).
uint32_t id_bits(uint32_t n) {
  return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1));
}

kvm_cpuid_entry2 topology_entry(uint32_t function, uint32_t index, uint32_t apic_id,
                                uint32_t count) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  e.edx = apic_id;
  e.ecx = index;  // level number; type 0 (invalid) unless set below
  if (index == 0) {
    // One thread per core: the SMT level shifts by 0 and holds one logical processor.
    e.eax = 0;
    e.ebx = 1;
    e.ecx |= kLeafBTypeSmt << 8;
  } else if (index == 1) {
    e.eax = id_bits(count);
    e.ebx = count;
    e.ecx |= kLeafBTypeCore << 8;
  }
  return e;
}

void filter_leaf1(kvm_cpuid_entry2& e, const CpuidOptions& o) {
  e.ebx = (e.ebx & 0x0000ffff) | (uint32_t{apic_id(o.vcpu_index)} << 24) |
          ((o.vcpu_count & 0xff) << 16);
  if (o.vcpu_count > 1) {
    e.edx |= kLeaf1EdxHtt;
  } else {
    e.edx &= ~kLeaf1EdxHtt;
  }
  e.ecx |= kLeaf1EcxHypervisor;
  // AVX state lives in the XSAVE area: without XSAVE, AVX cannot be offered either.
  if (o.hide_xsave) e.ecx &= ~(kLeaf1EcxXsave | kLeaf1EcxOsxsave | kLeaf1EcxAvx);
}

}  // namespace

uint32_t cpuid_cleared_kvm_features() {
  return bit(KVM_FEATURE_MMU_OP) |            // hypercall (long removed)
         bit(KVM_FEATURE_ASYNC_PF) |          // async page faults: no host swapping expected
         bit(KVM_FEATURE_PV_UNHALT) |         // KVM_HC_KICK_CPU hypercall
         bit(KVM_FEATURE_ASYNC_PF_VMEXIT) |   // async page faults
         bit(KVM_FEATURE_PV_SEND_IPI) |       // KVM_HC_SEND_IPI hypercall
         bit(KVM_FEATURE_PV_SCHED_YIELD) |    // KVM_HC_SCHED_YIELD hypercall
         bit(KVM_FEATURE_ASYNC_PF_INT) |      // async page faults
         bit(KVM_FEATURE_HC_MAP_GPA_RANGE) |  // KVM_HC_MAP_GPA_RANGE hypercall
         bit(KVM_FEATURE_MIGRATION_CONTROL);  // an MSR the VMM would have to serve
}

std::vector<kvm_cpuid_entry2> filter_cpuid(std::span<const kvm_cpuid_entry2> supported,
                                           const CpuidOptions& o) {
  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size() + 3);
  uint32_t max_basic = 0;
  for (const kvm_cpuid_entry2& in : supported) {
    if (in.function == 0) max_basic = in.eax;
  }
  for (kvm_cpuid_entry2 e : supported) {
    switch (e.function) {
      case 0x1:
        filter_leaf1(e, o);
        break;
      case 0xb:
      case 0x1f:
        continue;  // rebuilt below (0x1F dropped: guests fall back to 0xB)
      case kKvmSignatureLeaf:
        e.eax = std::max(e.eax, kKvmFeaturesLeaf);
        e.ebx = kKvmSignature[0];
        e.ecx = kKvmSignature[1];
        e.edx = kKvmSignature[2];
        break;
      case kKvmFeaturesLeaf:
        e.eax &= ~cpuid_cleared_kvm_features();
        e.edx = 0;  // KVM_HINTS_REALTIME and friends: no dedicated pCPUs are promised
        break;
      case kAmdAddressSizesLeaf:
        // ECX: NC (cores - 1) in [7:0], ApicIdSize in [15:12].
        e.ecx = (e.ecx & ~0xf0ffu) | ((o.vcpu_count - 1) & 0xff) | (id_bits(o.vcpu_count) << 12);
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  if (max_basic >= 0xb) {
    for (uint32_t index = 0; index < 3; ++index) {
      out.push_back(topology_entry(0xb, index, apic_id(o.vcpu_index), o.vcpu_count));
    }
  }
  return out;
}

}  // namespace kindling::vmm
