// kindling: `kindling run ...` builds a VM from the flags (or a JSON config) and runs it until
// the guest resets, writes the exit port, faults, or the host stops it. Exit statuses: 0 guest
// reset/poweroff, N from the exit port, 1 guest fault, 2 bad usage/input or KVM unusable,
// 124 --timeout, 130 SIGINT, 143 SIGTERM, 148 a forbidden syscall (seccomp, common/seccomp).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "common/log.h"
#include "vmm/config/cli.h"
#include "vmm/disks.h"
#include "vmm/kvm.h"
#include "vmm/machine.h"
#include "vmm/pvm/pvm_cmdline.h"
#include "vmm/stop.h"

namespace {

using namespace kindling;

constexpr int kExitUsage = 2;

// Prints "kindling: error: WHAT" and returns `code` (the exit status it stands for).
int error_line(const std::string& what, int code = kExitUsage) {
  std::fprintf(stderr, "kindling: error: %s\n", what.c_str());
  return code;
}

// Names the switches Machine appends to the kernel command line on a PVM host: the table in
// vmm/pvm/pvm_cmdline.cc, less those the configured (or default) command line already sets.
void log_pvm_switches(const vmm::VmConfig& config) {
  const std::string cmdline = vmm::compose_cmdline(config.cmdline, {}, false);
  std::string added;
  for (std::string_view s : vmm::pvm_switches_to_add(cmdline)) {
    if (!added.empty()) added += ' ';
    added += s;
  }
  KLOG_INFO("PVM host: guest kernel code is emulated; adding to the kernel command line: %s",
            added.empty() ? "nothing (it sets every PVM switch already)" : added.c_str());
  for (const std::string& line : vmm::pvm_cmdline_conflicts(cmdline)) KLOG_WARN("%s", line.c_str());
}

int run_vm(const vmm::VmConfig& config) {
  if (auto level = log::parse_level(config.log_level)) log::set_level(*level);
  // Before any thread exists: every later thread inherits the blocked signals.
  auto signal_fd = vmm::setup_stop_signals();
  if (!signal_fd) return error_line(signal_fd.error().message(), 1);
  vmm::MachineOptions opts;
  opts.pvm_host = vmm::host_is_pvm();
  opts.console_input_fd = STDIN_FILENO;
  opts.confine_main_thread = true;  // with config.seccomp: from the vCPUs' start to the exit
  if (opts.pvm_host) log_pvm_switches(config);
  auto machine = vmm::Machine::create(config, opts);
  if (!machine) return error_line(machine.error().message(), vmm::exit_code_for(machine.error()));
  // Declared after the machine: destroyed first, while the VM fd and guest RAM still exist.
  auto disks = vmm::Disks::attach(**machine, config);
  if (!disks) return error_line(disks.error().message(), vmm::exit_code_for(disks.error()));
  if (auto booted = (*machine)->boot(); !booted) {
    return error_line(booted.error().message(), vmm::exit_code_for(booted.error()));
  }
  vmm::RunResult r = (*machine)->run(signal_fd->get());
  // The vCPUs have stopped: drain every disk's in-flight I/O, then make the images stable.
  if (auto synced = (*disks)->shutdown(); !synced) {
    error_line(synced.error().message());
    if (r.exit_code == 0) r.exit_code = 1;
  }
  if (config.stats && (*disks)->size() > 0) {
    std::fprintf(stderr, "kindling: disk statistics\n%s", (*disks)->stats_report().c_str());
  }
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
    case vmm::StopReason::kGuestPowerOff:
    case vmm::StopReason::kGuestHalt:
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
