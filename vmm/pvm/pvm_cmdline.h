// The guest kernel command-line switches kindling adds on PVM hosts (docs/HOST.md): each one
// turns off a CPU feature or a boot step that KVM's instruction emulator, which runs guest
// kernel code there, cannot execute or executes slowly. Hosts with hardware virtualization get
// none of them.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kindling::vmm {

// One switch and why it is there (with what was measured).
struct PvmSwitch {
  const char* text;  // "noxsave", "clearcpuid=..."
  const char* why;
};

// Every switch, in the order they are appended.
std::span<const PvmSwitch> pvm_cmdline_switches();

// Pure: the switches append_pvm_switches(cmdline) adds, in order: every switch whose parameter
// `cmdline` does not already set.
std::vector<std::string_view> pvm_switches_to_add(std::string_view cmdline);

// Pure: `cmdline` with each switch added (add_kernel_param) unless the command line already
// sets the same parameter (the text before '='): a user's own clearcpuid= or noxsave wins.
std::string append_pvm_switches(std::string cmdline);

// Pure: one line for each parameter in `cmdline` that breaks a guest on a PVM host: `nosmap`
// and a `clearcpuid=` naming SMAP (308 or "smap") turn off the `clac` at the guest's page-fault
// entry, which the user-mode SYSCALL repair (vmm/pvm/pvm_syscall.h) hooks, so user space dies at
// its first system call. Empty when nothing conflicts.
std::vector<std::string> pvm_cmdline_conflicts(std::string_view cmdline);

// Pure: whether the kernel part of `cmdline` (before a standalone `--`) has a word equal to
// `param` or starting with `param=`.
bool cmdline_has_param(std::string_view cmdline, std::string_view param);

// Pure: `cmdline` with the kernel parameter(s) `param` added at the end of the kernel part:
// before a standalone `--`, after which every word is an argument for init.
std::string add_kernel_param(std::string cmdline, std::string_view param);

}  // namespace kindling::vmm
