// The CPUID table each vCPU gets: KVM's supported leaves, filtered per vCPU.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

namespace kindling::vmm {

// What the filter needs to know about the vCPU and the host.
struct CpuidOptions {
  uint32_t vcpu_index = 0;  // also the vCPU's APIC id
  uint32_t vcpu_count = 1;
  bool hide_xsave = false;  // clear XSAVE/OSXSAVE (PVM hosts cannot emulate XSAVE)
};

// KVM PV features (leaf 0x40000001 EAX) kindling clears: their use is a hypercall (which never
// completes on PVM hosts), or they need VMM support kindling does not have.
uint32_t cpuid_cleared_kvm_features();

// Pure: returns `supported` adjusted for one vCPU — leaf 1 APIC id, logical count and the
// hypervisor bit; leaf 0xB topology (one thread per core, `vcpu_count` cores); the KVM
// signature leaf 0x40000000; masked PV features in 0x40000001; XSAVE hidden on request.
std::vector<kvm_cpuid_entry2> filter_cpuid(std::span<const kvm_cpuid_entry2> supported,
                                           const CpuidOptions& opts);

}  // namespace kindling::vmm
