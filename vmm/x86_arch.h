// x86-64 architectural numbers the uapi headers do not export (MSR indices, EFER bits,
// segment descriptor types) and the flat segment both 64-bit entry paths load.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

namespace kindling::vmm {

// MSR indices (Intel SDM vol. 4, table 2-2; Linux's arch/x86/include/asm/msr-index.h).
inline constexpr uint32_t kMsrTsc = 0x10;
inline constexpr uint32_t kMsrSysenterCs = 0x174;
inline constexpr uint32_t kMsrSysenterEsp = 0x175;
inline constexpr uint32_t kMsrSysenterEip = 0x176;
inline constexpr uint32_t kMsrMiscEnable = 0x1a0;
inline constexpr uint32_t kMsrMtrrDefType = 0x2ff;
// SYSCALL's MSRs: STAR (selectors), LSTAR (64-bit entry), CSTAR (compat entry), FMASK (RFLAGS
// bits SYSCALL clears; MSR_SYSCALL_MASK in Linux).
inline constexpr uint32_t kMsrStar = 0xc0000081;
inline constexpr uint32_t kMsrLstar = 0xc0000082;
inline constexpr uint32_t kMsrCstar = 0xc0000083;
inline constexpr uint32_t kMsrFmask = 0xc0000084;
inline constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

// IA32_EFER bits (Intel SDM vol. 3A, 2.2.1): long mode enabled, long mode active.
inline constexpr uint64_t kEferLme = 1ULL << 8;
inline constexpr uint64_t kEferLma = 1ULL << 10;

// Segment descriptor types (Intel SDM vol. 3A, 3.4.5.1).
inline constexpr uint8_t kTypeCodeExecReadAccessed = 0xb;
inline constexpr uint8_t kTypeDataReadWriteAccessed = 0x3;

// A flat ring-0 segment (base 0, 4 GiB limit, present): a 64-bit code segment (L=1, D=0)
// when `code`, else a data segment (D/B=1).
inline kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code64) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.s = 1;
  s.g = 1;
  s.l = code64 ? 1 : 0;   // 64-bit code segment
  s.db = code64 ? 0 : 1;  // L=1 requires D=0; 32-bit code and data have D/B=1
  return s;
}

}  // namespace kindling::vmm
