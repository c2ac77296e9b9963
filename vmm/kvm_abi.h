// C layouts of the KVM ioctl structs that end in a flexible array.
//
// The uapi headers of Linux 6.1 (Debian 12) declare those arrays with __DECLARE_FLEX_ARRAY,
// which in C++ puts an empty struct (size 1) in front of the array: sizeof(kvm_cpuid2) becomes
// 12 instead of 8, the array moves to offset 12, and the ioctl numbers built from those sizes
// are ones the kernel does not know (EINVAL). These headers mirror the C layout and build the
// ioctl numbers from it; entries use the uapi element types unchanged.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace kindling::vmm::abi {

// struct kvm_cpuid2 without its array.
struct Cpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(Cpuid2Header) == 8);

// struct kvm_msrs without its array.
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(MsrsHeader) == 8);

// struct kvm_signal_mask with room for the kernel's 64-bit sigset.
struct SignalMask {
  uint32_t len;
  uint8_t sigset[8];
};

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, Cpuid2Header);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kSetSignalMask = _IOW(KVMIO, 0x8b, uint32_t);

// A header followed by `n` entries in one 8-byte-aligned buffer, as the kernel expects.
template <typename Header, typename Entry>
class FlexBuffer {
 public:
  explicit FlexBuffer(size_t n) : words_((sizeof(Header) + n * sizeof(Entry) + 7) / 8, 0) {}
  Header* header() { return reinterpret_cast<Header*>(words_.data()); }
  Entry* entries() {
    return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(words_.data()) + sizeof(Header));
  }
  void* data() { return words_.data(); }

 private:
  std::vector<uint64_t> words_;
};

}  // namespace kindling::vmm::abi
