// Direct kernel boot: loads a bzImage or an ELF64 vmlinux (plus initrd and command line) into
// guest memory and writes everything a kernel expects to find at its entry: boot_params with
// e820, an MP table, the ACPI tables, the PVH start info, a GDT, an empty IDT and identity page
// tables (see vmm/layout.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "vmm/boot/boot_protocol.h"
#include "vmm/boot/platform.h"

namespace kindling::vmm {

// What went wrong while loading a kernel; the error context names the file and the detail.
enum class BootError {
  kOpen,            // kernel/initrd cannot be opened or stat'ed
  kRead,            // read error or short read
  kNotKernel,       // neither a bzImage nor an ELF64 kernel (random bytes, truncated, bad magic)
  kUnsupported,     // recognised but unusable: 32-bit-only bzImage, old protocol, not x86-64 ELF
  kTooLarge,        // kernel or initrd larger than guest RAM, or segments outside RAM
  kCmdlineTooLong,  // command line longer than the kernel's cmdline_size (or 4 KiB)
  kInitrd,          // the initrd does not fit below initrd_addr_max clear of the kernel
  kMemory,          // guest RAM too small for the boot layout, or a guest write failed
  kBadSpec,         // the request itself is wrong (vCPU count 0 or above 64)
  kNoPvhEntry,      // PVH asked for, but the kernel has no PVH entry note
};
// A short description of the error class.
const char* to_string(BootError e);
// The boot loader's error type.
using BootErr = Error<BootError>;

// What to boot.
struct BootSpec {
  std::string kernel_path;                 // bzImage or ELF vmlinux, detected from its contents
  std::optional<std::string> initrd_path;  // optional initramfs
  std::string cmdline;                     // kernel command line (without trailing NUL)
  Platform platform;                       // CPUs and devices the MP table and ACPI describe
  BootProtocol protocol = BootProtocol::kAuto;
};

// CPU state the boot vCPU starts with. Linux protocol: 64-bit long mode, paging on (CR0
// PE|PG, CR4 PAE, EFER LME|LMA). PVH: flat 32-bit protected mode, paging off. Interrupts off.
struct BootEntry {
  BootProtocol protocol = BootProtocol::kLinux;  // kLinux or kPvh, never kAuto
  uint64_t rip = 0;
  uint64_t rsi = 0;  // Linux: guest address of boot_params
  uint64_t rbx = 0;  // PVH: guest address of hvm_start_info
  uint64_t rsp = 0;
  uint64_t cr3 = 0;
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
  uint64_t idt_base = 0;
  uint16_t idt_limit = 0;
  uint16_t code_selector = 0x10;  // 64-bit code (Linux) or 32-bit code (PVH)
  uint16_t data_selector = 0x18;
  uint64_t rsdp_addr = 0;  // the ACPI RSDP kindling wrote, 0 for none
};

// Loads kernel (+initrd, cmdline), writes boot_params with e820, the MP table and (unless
// spec.platform.acpi is off) the ACPI tables for spec.platform, the PVH start info for a PVH
// entry, GDT, IDT, page tables. Every bad input is a BootErr naming the file and the reason.
Result<BootEntry, BootErr> load_kernel(const memory::GuestMemory& mem, const BootSpec& spec);

}  // namespace kindling::vmm
