// Direct kernel boot: loads a bzImage or an ELF64 vmlinux (plus initrd and command line) into
// guest memory and writes everything a 64-bit kernel expects to find at its entry: boot_params
// with e820, an MP table, a GDT, an empty IDT and identity page tables (see vmm/layout.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/memory/guest_memory.h"
#include "common/result.h"

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
  uint32_t vcpus = 1;                      // vCPUs described in the MP table (1..64)
};

// CPU state the boot vCPU starts with: 64-bit long mode, paging on (CR0 PE|PG, CR4 PAE,
// EFER LME|LMA), interrupts off.
struct BootEntry {
  uint64_t rip = 0;
  uint64_t rsi = 0;  // guest address of boot_params
  uint64_t rsp = 0;
  uint64_t cr3 = 0;
  uint64_t gdt_base = 0;
  uint16_t gdt_limit = 0;
  uint64_t idt_base = 0;
  uint16_t idt_limit = 0;
  uint16_t code_selector = 0x10;
  uint16_t data_selector = 0x18;
};

// Loads kernel (+initrd, cmdline), writes boot_params with e820, the MP table for spec.vcpus,
// GDT, IDT, page tables. Every bad input is a BootErr naming the file and the reason.
Result<BootEntry, BootErr> load_kernel(const memory::GuestMemory& mem, const BootSpec& spec);

}  // namespace kindling::vmm
