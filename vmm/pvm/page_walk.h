// Guest virtual-to-physical translation through the guest's own page tables, for the few
// places the VMM must read guest memory by virtual address (the emulation assist).
#pragma once

#include <cstdint>
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

// GUEST: translates `linear` with the guest's page tables: identity when CR0.PG is clear,
// 4-level (or 5-level with CR4.LA57) long-mode paging with 4 KiB, 2 MiB and 1 GiB pages.
// Access rights are not checked: the VMM reads on the guest kernel's behalf.
Result<memory::GuestAddress, PageWalkErr> translate_linear(const memory::GuestMemory& mem,
                                                           const PagingState& ps, uint64_t linear);

// GUEST: reads `out.size()` bytes at `linear`, page by page; all-or-nothing.
Result<void, PageWalkErr> read_linear(const memory::GuestMemory& mem, const PagingState& ps,
                                      uint64_t linear, std::span<uint8_t> out);

}  // namespace kindling::vmm
