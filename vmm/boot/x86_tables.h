// The CPU tables the boot vCPU needs to be in 64-bit mode at the kernel entry: a GDT with a
// 64-bit code and a flat data segment, an empty IDT, and page tables that identity-map the first
// 4 GiB with 2 MiB pages (PML4 -> one PDPT -> four PDs), at the addresses of vmm/layout.h.
#pragma once

#include <cstdint>

#include "vmm/boot/kernel_image.h"

namespace kindling::vmm {

// Page-table entry bits (Intel SDM vol. 3, 4.5): present, writable, page size (2 MiB in a PD).
inline constexpr uint64_t kPtePresent = 1ULL << 0;
inline constexpr uint64_t kPteWritable = 1ULL << 1;
inline constexpr uint64_t kPteHuge = 1ULL << 7;
// Size of a page mapped by one PD entry.
inline constexpr uint64_t kHugePageSize = 2ULL << 20;

// Writes the GDT at layout::kGdtAddr and zeroes the IDT slot at layout::kIdtAddr.
Result<void, BootErr> write_gdt_idt(const memory::GuestMemory& mem);
// GDT limit (bytes - 1) of the table write_gdt_idt writes.
inline constexpr uint16_t kGdtLimit = 4 * 8 - 1;
// IDT limit: the boot IDT is empty.
inline constexpr uint16_t kIdtLimit = 0;

// Writes PML4, PDPT and PDs; CR3 = layout::kPml4Addr.
Result<void, BootErr> write_page_tables(const memory::GuestMemory& mem);

}  // namespace kindling::vmm
