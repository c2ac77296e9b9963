// Guest virtual-to-physical translation through the guest's own page tables, for the few
// places the VMM must read guest memory by virtual address (the emulation assist), and the
// checked walk an emulated access makes: permissions as the CPU checks them, Accessed and
// Dirty set as the CPU sets them, and the #PF error code when the access faults.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "common/memory/guest_memory.h"
#include "common/result.h"

namespace kindling::vmm {

// Why a linear address could not be translated or read.
enum class PageWalkError {
  kNotPresent,       // a paging-structure entry on the way has P = 0
  kReservedBits,     // a large-page bit where the architecture forbids it (PS in a PML4E)
  kMemory,           // a paging structure or the data lies outside guest RAM
  kUnsupportedMode,  // 32-bit paging modes (legacy, PAE without long mode)
  kNonCanonical,     // bits 63:48 (63:57 with LA57) are not a sign extension
  kProtection,       // present, but the access is not allowed (U/S, R/W with CR0.WP, NX)
};
// A short description of the error class.
const char* to_string(PageWalkError e);
// The page walker's error type.
using PageWalkErr = Error<PageWalkError>;

// The control registers that select the paging mode.
struct PagingState {
  uint64_t cr0 = 0;
  uint64_t cr3 = 0;
  uint64_t cr4 = 0;
  uint64_t efer = 0;
};

// The access a checked walk is made for (Intel SDM vol. 3A 4.6).
struct AccessType {
  bool write = false;  // a data write (else a read or a fetch)
  bool user = false;   // made at CPL 3 (else a supervisor-mode access)
  bool fetch = false;  // an instruction fetch
};

// #PF error-code bits (Intel SDM vol. 3A 4.7): protection violation (else not present), write,
// user mode, reserved bit, instruction fetch.
inline constexpr uint32_t kPfPresent = 1u << 0;
inline constexpr uint32_t kPfWrite = 1u << 1;
inline constexpr uint32_t kPfUser = 1u << 2;
inline constexpr uint32_t kPfReserved = 1u << 3;
inline constexpr uint32_t kPfFetch = 1u << 4;

// Pure: the #PF error code the CPU reports when `access` fails with `e`; nullopt for errors
// that are not page faults (memory outside RAM, unsupported mode, non-canonical: #GP).
std::optional<uint32_t> page_fault_error_code(PageWalkError e, const AccessType& access,
                                              const PagingState& ps);

// A checked translation: the physical address and the paging-structure entries used.
struct Translation {
  memory::GuestAddress address;
  std::array<uint64_t, 5> entries{};  // guest-physical addresses of the entries, top level first
  int count = 0;                      // entries used (0 with paging off)
};

// GUEST: translates `linear` for `access` as the CPU would: every entry on the way must allow
// it (U/S for user accesses; R/W for user writes and, with CR0.WP, supervisor writes; XD for
// fetches with EFER.NXE), else kProtection. Sets no Accessed/Dirty bits.
Result<Translation, PageWalkErr> translate_checked(const memory::GuestMemory& mem,
                                                   const PagingState& ps, uint64_t linear,
                                                   const AccessType& access);

// GUEST: sets Accessed in every entry of `t` and, for a write, Dirty in its leaf, with locked
// ORs as the CPU does (other vCPUs and the guest's own page-table code may race).
Result<void, PageWalkErr> set_accessed_dirty(const memory::GuestMemory& mem, const Translation& t,
                                             bool write);

// GUEST: reads `out.size()` bytes at `linear` as `access` would, page by page; all-or-nothing.
// `*fault_at` (when given) receives the address whose page failed. Sets no Accessed bits.
Result<void, PageWalkErr> read_checked(const memory::GuestMemory& mem, const PagingState& ps,
                                       uint64_t linear, const AccessType& access,
                                       std::span<uint8_t> out, uint64_t* fault_at = nullptr);

// GUEST: translates `linear` with the guest's page tables: identity when CR0.PG is clear,
// 4-level (or 5-level with CR4.LA57) long-mode paging with 4 KiB, 2 MiB and 1 GiB pages.
// Access rights are not checked: the VMM reads on the guest kernel's behalf.
Result<memory::GuestAddress, PageWalkErr> translate_linear(const memory::GuestMemory& mem,
                                                           const PagingState& ps, uint64_t linear);

// GUEST: reads `out.size()` bytes at `linear`, page by page; all-or-nothing.
Result<void, PageWalkErr> read_linear(const memory::GuestMemory& mem, const PagingState& ps,
                                      uint64_t linear, std::span<uint8_t> out);

}  // namespace kindling::vmm
