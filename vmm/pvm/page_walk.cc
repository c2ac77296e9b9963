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
    case PageWalkError::kProtection:
      return "access not allowed by the page tables";
  }
  return "page walk error";
}

namespace {

// Paging-structure entry bits (Intel SDM vol. 3A, 4.5).
constexpr uint64_t kPresent = 1ULL << 0;
constexpr uint64_t kWritable = 1ULL << 1;
constexpr uint64_t kUser = 1ULL << 2;
constexpr uint64_t kAccessed = 1ULL << 5;
constexpr uint64_t kDirty = 1ULL << 6;
constexpr uint64_t kPageSize = 1ULL << 7;
constexpr uint64_t kExecuteDisable = 1ULL << 63;
// IA32_EFER.NXE (Intel SDM vol. 3A 2.2.1).
constexpr uint64_t kEferNxe = 1ULL << 11;
// Physical-address bits 51:12 of an entry.
constexpr uint64_t kAddrMask = 0x000F'FFFF'FFFF'F000ULL;
constexpr uint64_t kPageSize4K = 4096;

bool canonical(uint64_t linear, int bits) {
  int64_t shifted = static_cast<int64_t>(linear << (64 - bits)) >> (64 - bits);
  return static_cast<uint64_t>(shifted) == linear;
}

}  // namespace

namespace {

// What the entries on the way allow, combined as the CPU combines them (SDM vol. 3A 4.6.1).
struct Rights {
  bool user = true;
  bool write = true;
  bool execute = true;
};

bool allowed(const Rights& r, const AccessType& a, const PagingState& ps) {
  if (a.user && !r.user) return false;
  const bool wp = (ps.cr0 & X86_CR0_WP) != 0;
  if (a.write && !r.write && (a.user || wp)) return false;
  if (a.fetch && (ps.efer & kEferNxe) != 0 && !r.execute) return false;
  return true;
}

// The walk both translate_linear() (access == nullptr: no checks) and translate_checked() make.
Result<Translation, PageWalkErr> walk(const memory::GuestMemory& mem, const PagingState& ps,
                                      uint64_t linear, const AccessType* access) {
  Translation t;
  if ((ps.cr0 & X86_CR0_PG) == 0) {
    t.address = memory::GuestAddress(linear);
    return t;
  }
  if ((ps.cr4 & X86_CR4_PAE) == 0 || (ps.efer & kEferLma) == 0) {
    return fail(PageWalkError::kUnsupportedMode, 0, "linear " + hex(linear));
  }
  const int levels = (ps.cr4 & X86_CR4_LA57) != 0 ? 5 : 4;
  const int va_bits = 12 + 9 * levels;
  if (!canonical(linear, va_bits)) {
    return fail(PageWalkError::kNonCanonical, 0, "linear " + hex(linear));
  }
  Rights rights;
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
    t.entries[static_cast<size_t>(t.count++)] = entry_addr.value;
    rights.user = rights.user && (*entry & kUser) != 0;
    rights.write = rights.write && (*entry & kWritable) != 0;
    rights.execute = rights.execute && (*entry & kExecuteDisable) == 0;
    const bool large = (*entry & kPageSize) != 0 && level > 1;
    // Large pages exist at the PDPT (1 GiB) and PD (2 MiB) levels only.
    if (large && level > 3) {
      return fail(PageWalkError::kReservedBits, 0,
                  "level-" + std::to_string(level) + " entry at " + hex(entry_addr.value));
    }
    if (large || level == 1) {
      if (access != nullptr && !allowed(rights, *access, ps)) {
        return fail(PageWalkError::kProtection, 0, "linear " + hex(linear));
      }
      const uint64_t page_mask = (1ULL << shift) - 1;
      t.address = memory::GuestAddress((*entry & kAddrMask & ~page_mask) | (linear & page_mask));
      return t;
    }
    table = *entry & kAddrMask;
  }
  return fail(PageWalkError::kReservedBits, 0, "linear " + hex(linear));  // not reached
}

}  // namespace

std::optional<uint32_t> page_fault_error_code(PageWalkError e, const AccessType& access,
                                              const PagingState& ps) {
  uint32_t code = 0;
  switch (e) {
    case PageWalkError::kNotPresent:
      break;
    case PageWalkError::kProtection:
      code = kPfPresent;
      break;
    case PageWalkError::kReservedBits:
      code = kPfPresent | kPfReserved;
      break;
    default:
      return std::nullopt;
  }
  if (access.write) code |= kPfWrite;
  if (access.user) code |= kPfUser;
  // I/D is reported only where fetches can fault on their own: NXE or SMEP.
  const bool fetch_reported = (ps.efer & kEferNxe) != 0 || (ps.cr4 & X86_CR4_SMEP) != 0;
  if (access.fetch && fetch_reported) code |= kPfFetch;
  return code;
}

Result<memory::GuestAddress, PageWalkErr> translate_linear(const memory::GuestMemory& mem,
                                                           const PagingState& ps, uint64_t linear) {
  auto t = walk(mem, ps, linear, nullptr);
  if (!t) return t.take_error();
  return t->address;
}

Result<Translation, PageWalkErr> translate_checked(const memory::GuestMemory& mem,
                                                   const PagingState& ps, uint64_t linear,
                                                   const AccessType& access) {
  return walk(mem, ps, linear, &access);
}

Result<void, PageWalkErr> set_accessed_dirty(const memory::GuestMemory& mem, const Translation& t,
                                             bool write) {
  for (int i = 0; i < t.count; ++i) {
    const memory::GuestAddress at(t.entries[static_cast<size_t>(i)]);
    auto host = mem.slice(at, sizeof(uint64_t));
    if (!host || (at.value % sizeof(uint64_t)) != 0) {
      return fail(PageWalkError::kMemory, 0, "entry at " + hex(at.value));
    }
    const uint64_t bits = kAccessed | (write && i == t.count - 1 ? kDirty : 0);
    // GUEST: entries are 8-byte aligned in guest RAM (checked); a locked OR as the CPU's own.
    __atomic_fetch_or(reinterpret_cast<uint64_t*>(host->data()), bits, __ATOMIC_SEQ_CST);
  }
  return {};
}

Result<void, PageWalkErr> read_checked(const memory::GuestMemory& mem, const PagingState& ps,
                                       uint64_t linear, const AccessType& access,
                                       std::span<uint8_t> out, uint64_t* fault_at) {
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t va = linear + done;
    const size_t chunk =
        std::min<uint64_t>(out.size() - done, kPageSize4K - (va & (kPageSize4K - 1)));
    auto t = translate_checked(mem, ps, va, access);
    if (!t) {
      if (fault_at != nullptr) *fault_at = va;
      return t.take_error();
    }
    if (!mem.read(t->address, out.subspan(done, chunk))) {
      return fail(PageWalkError::kMemory, 0, "data at " + hex(t->address.value));
    }
    done += chunk;
  }
  return {};
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
