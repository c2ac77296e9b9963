// kindling: `kindling run ...` builds a VM from the flags (or a JSON config) and runs it until
// the guest resets, writes the exit port, faults, or the host stops it. Exit statuses: 0 guest
// reset/poweroff, N from the exit port, 1 guest fault, 2 bad usage/input or KVM unusable,
// 124 --timeout, 130 SIGINT, 143 SIGTERM.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "common/log.h"
#include "vmm/cli.h"
#include "vmm/kvm.h"
#include "vmm/machine.h"
#include "vmm/stop.h"

namespace {

using namespace kindling;

constexpr int kExitUsage = 2;

int error_line(const std::string& what) {
  std::fprintf(stderr, "kindling: error: %s\n", what.c_str());
  return kExitUsage;
}

int run_vm(const vmm::VmConfig& config) {
  if (auto level = log::parse_level(config.log_level)) log::set_level(*level);
  // Before any thread exists: every later thread inherits the blocked signals.
  auto signal_fd = vmm::setup_stop_signals();
  if (!signal_fd) {
    std::fprintf(stderr, "kindling: error: %s\n", signal_fd.error().message().c_str());
    return 1;
  }
  vmm::MachineOptions opts;
  opts.pvm_host = vmm::host_is_pvm();
  opts.console_input_fd = STDIN_FILENO;
  if (opts.pvm_host) KLOG_INFO("PVM host: guest kernel code is emulated; adding noxsave");
  auto machine = vmm::Machine::build(config, opts);
  if (!machine) {
    std::fprintf(stderr, "kindling: error: %s\n", machine.error().message().c_str());
    return vmm::exit_code_for(machine.error());
  }
  const vmm::RunResult r = (*machine)->run(signal_fd->get());
  switch (r.reason) {
    case vmm::StopReason::kGuestFault:
    case vmm::StopReason::kHostError:
      std::fprintf(stderr, "kindling: error: guest stopped: %s\n", r.detail.c_str());
      break;
    case vmm::StopReason::kTimeout:
      std::fprintf(stderr, "kindling: %s\n", r.detail.c_str());
      break;
    case vmm::StopReason::kHostSignal:
      KLOG_INFO("stopped by %s", r.detail.c_str());
      break;
    case vmm::StopReason::kGuestReset:
    case vmm::StopReason::kExitPort:
      break;
  }
  return r.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = vmm::parse_cli(argc, argv);
  if (!parsed) return error_line(parsed.error().message());
  if (!parsed->has_value()) return 0;  // --help / --version printed
  return run_vm(**parsed);
}
