// Guest physical layout used by the boot loader, the vCPU setup and the test guest's VMM side.
//
// Low memory (all inside the first RAM region, which starts at 0):
//   0x0500  GDT (null, code32 0x08, code 0x10, data 0x18)  0x0520  IDT (empty, limit 0)
//   0x6000  PVH start info, module list and memory map (PVH boots only)
//   0x7000  zero page (struct boot_params)               0x8000-0x8FF0  boot stack (grows down)
//   0x9000  PML4   0xA000 PDPT   0xB000-0xEFFF 4 PDs (identity map of 4 GiB, 2 MiB pages)
//   0x10000 free page the test guest uses for its SMP real-mode trampoline (SIPI vector 0x10)
//   0x20000 kernel command line (4 KiB)
//   0x9FC00 MP floating pointer + config table; [0x9FC00, 1 MiB) is reserved in e820
//   0xE0000 ACPI RSDP, then the ACPI tables (XSDT, FADT, MADT, DSDT) up to 0xF0000
//   1 MiB   kernel (bzImage: 1 MiB or kernel_alignment; ELF: its p_paddr)
//   initrd  page-aligned at the top of low RAM, below initrd_addr_max
// RAM that would fall into the 32-bit MMIO hole [3 GiB, 4 GiB) continues at 4 GiB.
#pragma once

#include <cstdint>

namespace kindling::vmm::layout {

// GDT: four 8-byte descriptors (null, 32-bit code for the PVH entry, 64-bit code, data).
inline constexpr uint64_t kGdtAddr = 0x500;
// Number of GDT descriptors written at kGdtAddr.
inline constexpr uint64_t kGdtEntries = 4;
// 64-bit code segment descriptor (L=1, present, DPL 0, execute/read, accessed).
inline constexpr uint64_t kGdtCode64 = 0x00AF9B000000FFFFULL;
// Flat 32-bit code segment descriptor (D=1, present, DPL 0, execute/read, accessed, 4 GiB).
inline constexpr uint64_t kGdtCode32 = 0x00CF9B000000FFFFULL;
// Flat data segment descriptor (present, DPL 0, read/write, accessed, 4 GiB).
inline constexpr uint64_t kGdtData = 0x00CF93000000FFFFULL;
// Selector of the 32-bit code descriptor (GDT index 1), the PVH entry's CS.
inline constexpr uint16_t kCode32Selector = 0x08;
// Selector of the code descriptor (GDT index 2).
inline constexpr uint16_t kCodeSelector = 0x10;
// Selector of the data descriptor (GDT index 3).
inline constexpr uint16_t kDataSelector = 0x18;
// Empty IDT: base with limit 0, so any exception before the kernel sets its own triple-faults.
inline constexpr uint64_t kIdtAddr = 0x520;

// PVH: struct hvm_start_info (passed in EBX), then the module list and the memory map.
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;
inline constexpr uint64_t kPvhModlistAddr = 0x6040;
inline constexpr uint64_t kPvhMemmapAddr = 0x6080;
// One past the last byte the PVH structures may use.
inline constexpr uint64_t kPvhEnd = 0x7000;

// The zero page (struct boot_params), passed to the kernel in RSI.
inline constexpr uint64_t kZeroPageAddr = 0x7000;
// Initial stack pointer of the boot vCPU.
inline constexpr uint64_t kBootStackTop = 0x8FF0;

// Page tables: PML4, one PDPT, four page directories of 2 MiB pages.
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xA000;
inline constexpr uint64_t kPdAddr = 0xB000;
// Number of page directories (each maps 1 GiB).
inline constexpr uint64_t kPdCount = 4;
// Bytes identity-mapped by the boot page tables.
inline constexpr uint64_t kIdentityMapSize = 4ULL << 30;

// A page below 1 MiB that nothing of kindling uses; the test guest's AP trampoline lives here.
inline constexpr uint64_t kTrampolineAddr = 0x10000;

// Kernel command line and the most bytes reserved for it (including the terminating NUL).
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 4096;

// MP floating pointer (config table follows it); e820 reserves from here up to 1 MiB.
inline constexpr uint64_t kMpTableAddr = 0x9FC00;
// ACPI RSDP: 16-byte aligned inside [0xE0000, 0xFFFFF], the BIOS area Linux scans for it.
inline constexpr uint64_t kAcpiRsdpAddr = 0xE0000;
// The ACPI tables the RSDP leads to, in [kAcpiTablesAddr, kAcpiTablesEnd) (e820-reserved).
inline constexpr uint64_t kAcpiTablesAddr = kAcpiRsdpAddr + 0x40;
// One past the last byte the ACPI tables may use.
inline constexpr uint64_t kAcpiTablesEnd = 0xF0000;
// Start of the first RAM above the legacy area, and the default kernel load address.
inline constexpr uint64_t kHighMemStart = 0x100000;
// Default kernel load address.
inline constexpr uint64_t kKernelAddr = kHighMemStart;

// Local APIC and I/O APIC MMIO bases.
inline constexpr uint64_t kLapicAddr = 0xFEE00000;
inline constexpr uint64_t kIoapicAddr = 0xFEC00000;
// Pins of the I/O APIC (GSI 0..23).
inline constexpr uint32_t kIoapicPins = 24;

// Most vCPUs the MP table (and so the boot loader) describes.
inline constexpr uint32_t kMaxVcpus = 64;

}  // namespace kindling::vmm::layout
