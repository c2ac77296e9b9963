#include "vmm/pvm/page_walk.h"

#include <asm/processor-flags.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "common/hex.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {

const char* to_string(PageWalkError e) {
  switch (e) {
    case PageWalkError::kNotPresent:
      return "page not present";
    case PageWalkError::kReservedBits:
      return "reserved bit set in a paging-structure entry";
    case PageWalkError::kMemory:
      return "paging structure or data outside guest RAM";
    case PageWalkError::kUnsupportedMode:
      return "unsupported paging mode";
    case PageWalkError::kNonCanonical:
      return "non-canonical address";
  }
  return "page walk error";
}

namespace {

// Paging-structure entry bits (Intel SDM vol. 3A, 4.5).
constexpr uint64_t kPresent = 1ULL << 0;
constexpr uint64_t kPageSize = 1ULL << 7;
// Physical-address bits 51:12 of an entry.
constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ULL;
constexpr uint64_t kPageSize4K = 4096;

bool canonical(uint64_t linear, int bits) {
  int64_t shifted = static_cast<int64_t>(linear << (64 - bits)) >> (64 - bits);
  return static_cast<uint64_t>(shifted) == linear;
}

}  // namespace

Result<memory::GuestAddress, PageWalkErr> translate_linear(const memory::GuestMemory& mem,
                                                           const PagingState& ps, uint64_t linear) {
  if ((ps.cr0 & X86_CR0_PG) == 0) return memory::GuestAddress(linear);
  if ((ps.cr4 & X86_CR4_PAE) == 0 || (ps.efer & kEferLma) == 0) {
    return fail(PageWalkError::kUnsupportedMode, 0, "linear " + hex(linear));
  }
  const int levels = (ps.cr4 & X86_CR4_LA57) != 0 ? 5 : 4;
  const int va_bits = 12 + 9 * levels;
  if (!canonical(linear, va_bits)) {
    return fail(PageWalkError::kNonCanonical, 0, "linear " + hex(linear));
  }
  uint64_t table = ps.cr3 & kAddrMask;
  for (int level = levels; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    const uint64_t index = (linear >> shift) & 0x1ff;
    const memory::GuestAddress entry_addr(table + index * 8);
    // GUEST: the guest's page tables decide where the walk goes; every step is a checked read.
    auto entry = mem.read_obj<uint64_t>(entry_addr);
    if (!entry) {
      return fail(PageWalkError::kMemory, 0,
                  "level-" + std::to_string(level) + " entry at " + hex(entry_addr.value));
    }
    if ((*entry & kPresent) == 0) {
      return fail(PageWalkError::kNotPresent, 0,
                  "linear " + hex(linear) + " (level " + std::to_string(level) + ")");
    }
    if ((*entry & kPageSize) != 0 && level > 1) {
      // Large pages exist at the PDPT (1 GiB) and PD (2 MiB) levels only.
      if (level > 3) {
        return fail(PageWalkError::kReservedBits, 0,
                    "level-" + std::to_string(level) + " entry at " + hex(entry_addr.value));
      }
      const uint64_t page_mask = (1ULL << shift) - 1;
      return memory::GuestAddress((*entry & kAddrMask & ~page_mask) | (linear & page_mask));
    }
    table = *entry & kAddrMask;
  }
  return memory::GuestAddress(table | (linear & (kPageSize4K - 1)));
}

Result<void, PageWalkErr> read_linear(const memory::GuestMemory& mem, const PagingState& ps,
                                      uint64_t linear, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t va = linear + done;
    const size_t chunk =
        std::min<uint64_t>(out.size() - done, kPageSize4K - (va & (kPageSize4K - 1)));
    auto pa = translate_linear(mem, ps, va);
    if (!pa) return pa.take_error();
    if (!mem.read(*pa, out.subspan(done, chunk))) {
      return fail(PageWalkError::kMemory, 0, "data at " + hex(pa->value));
    }
    done += chunk;
  }
  return {};
}

}  // namespace kindling::vmm
