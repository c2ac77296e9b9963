#include "vmm/pvm/pvm_cmdline.h"

#include <array>
#include <optional>

namespace kindling::vmm {
namespace {

// Feature numbers for clearcpuid= are word * 32 + bit of Linux's
// arch/x86/include/asm/cpufeatures.h (6.1): POPCNT 4*32+23 = 151, CX16 4*32+13 = 141,
// ERMS 9*32+9 = 297, FSRM 18*32+4 = 580. SMAP (308) stays on on purpose: its `clac` at the
// first instruction of the page-fault handler is the exit the user-mode SYSCALL repair
// (vmm/pvm/pvm_syscall.h) hooks.
// Measured and left out (no gain within the noise of ~0.2 s): CX16 (141; SLUB's 7,500
// cmpxchg16b assists are replaced by an equally slow fallback), tsc=reliable, no-kvmclock.
constexpr std::array<PvmSwitch, 5> kSwitches{{
    {"noxsave",
     "XSAVE/XRSTOR in the guest kernel stop the VM with an emulation failure, and CPUID leaf 1 "
     "cannot hide XSAVE on PVM hosts"},
    {"clearcpuid=151,297,580",
     "POPCNT (an assist exit each), ERMS and FSRM (memcpy/memset as rep movsb/stosb, one "
     "emulated iteration per byte; without them rep movsq/stosq moves 8 bytes per iteration): "
     "measured -1.0 s of an 11.7 s boot to /init (128 MiB)"},
    {"noreplace-smp",
     "a kernel booting with one CPU rewrites each of its ~3,200 lock prefixes through "
     "text_poke (an mm switch and a TLB flush each, ~2.3 M emulated instructions): measured "
     "-1.3 s of a 12.0 s boot to /init; no effect with more CPUs"},
    {"random.trust_cpu=on",
     "credit the CPU's RDRAND at boot (as Debian's kernels do by default): without it the "
     "guest's crng stays unseeded for the whole boot and every get_random_u32() runs a "
     "BLAKE2s entropy extraction, emulated: measured -2.8 s of an 18.9 s initramfs boot, "
     "-0.5 s of an 11.3 s virtio-blk boot"},
    {"initcall_blacklist=ptp_kvm_init",
     "a kernel with PTP_1588_CLOCK_KVM (Firecracker's and distro configs) issues the KVM "
     "clock-pairing hypercall in ptp_kvm_init, and a hypercall never returns on PVM hosts: the "
     "boot hangs there forever (../shared/docs/HOST.md, \"Large kernels\")"},
}};

}  // namespace

std::span<const PvmSwitch> pvm_cmdline_switches() {
  return kSwitches;
}

namespace {

// A space-separated word of a command line: [start, end).
struct Word {
  size_t start;
  size_t end;
};

// The first word of `s` at or after `pos`; nullopt when only spaces are left.
// (Quoted values with spaces are not considered: kindling never adds any.)
std::optional<Word> next_word(std::string_view s, size_t pos) {
  const size_t start = s.find_first_not_of(' ', pos);
  if (start == std::string_view::npos) return std::nullopt;
  const size_t end = s.find(' ', start);
  return Word{start, end == std::string_view::npos ? s.size() : end};
}

// Where the kernel part of `cmdline` ends: the start of a standalone "--" word, else the end.
size_t kernel_part_end(std::string_view cmdline) {
  for (auto w = next_word(cmdline, 0); w; w = next_word(cmdline, w->end)) {
    if (cmdline.substr(w->start, w->end - w->start) == "--") return w->start;
  }
  return cmdline.size();
}

// Calls `f(word)` for each word of the kernel part of `cmdline` until it returns true; returns
// whether one did.
template <typename F>
bool any_kernel_word(std::string_view cmdline, F f) {
  const std::string_view kernel = cmdline.substr(0, kernel_part_end(cmdline));
  for (auto w = next_word(kernel, 0); w; w = next_word(kernel, w->end)) {
    if (f(kernel.substr(w->start, w->end - w->start))) return true;
  }
  return false;
}

}  // namespace

bool cmdline_has_param(std::string_view cmdline, std::string_view param) {
  return any_kernel_word(cmdline, [&](std::string_view word) {
    return word == param || (word.size() > param.size() && word.substr(0, param.size()) == param &&
                             word[param.size()] == '=');
  });
}

std::string add_kernel_param(std::string cmdline, std::string_view param) {
  if (param.empty()) return cmdline;
  const size_t at = kernel_part_end(cmdline);
  if (at == cmdline.size()) {
    if (!cmdline.empty() && cmdline.back() != ' ') cmdline += ' ';
    cmdline += param;
    return cmdline;
  }
  // "... -- init args" -> "... PARAM -- init args"
  cmdline.insert(at, std::string(param) + ' ');
  return cmdline;
}

std::vector<std::string_view> pvm_switches_to_add(std::string_view cmdline) {
  std::vector<std::string_view> out;
  for (const PvmSwitch& s : kSwitches) {
    const std::string_view text = s.text;
    const std::string_view param = text.substr(0, text.find('='));
    if (!cmdline_has_param(cmdline, param)) out.push_back(text);
  }
  return out;
}

std::vector<std::string> pvm_cmdline_conflicts(std::string_view cmdline) {
  constexpr std::string_view kWhy =
      " turns off SMAP, whose clac at the guest's page-fault entry is where kindling repairs "
      "user-mode SYSCALLs on PVM hosts: user space will die at its first system call";
  std::vector<std::string> out;
  any_kernel_word(cmdline, [&](std::string_view word) {
    if (word == "nosmap") {
      out.push_back(std::string(word) + std::string(kWhy));
      return false;
    }
    constexpr std::string_view kClear = "clearcpuid=";
    if (word.substr(0, kClear.size()) != kClear) return false;
    // A comma-separated list of feature numbers (names too, from Linux 6.3).
    std::string_view list = word.substr(kClear.size());
    while (!list.empty()) {
      const size_t comma = list.find(',');
      const std::string_view item = list.substr(0, comma);
      if (item == "308" || item == "smap") {
        out.push_back(std::string(word) + std::string(kWhy));
        break;
      }
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
    return false;
  });
  return out;
}

std::string append_pvm_switches(std::string cmdline) {
  // Decided on the command line as given: no switch sets another one's parameter.
  for (std::string_view text : pvm_switches_to_add(cmdline)) {
    cmdline = add_kernel_param(std::move(cmdline), text);
  }
  return cmdline;
}

}  // namespace kindling::vmm
