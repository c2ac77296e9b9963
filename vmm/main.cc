// kindling: `kindling run ...` builds a VM from the flags (or a JSON config) and runs it until
// the guest resets, writes the exit port, faults, or the host stops it. Exit statuses: 0 guest
// reset/poweroff, N from the exit port, 1 guest fault, 2 bad usage/input or KVM unusable,
// 124 --timeout, 130 SIGINT, 143 SIGTERM, 148 a forbidden syscall (seccomp, common/seccomp).
// With --api-sock, Firecracker's API is served on a Unix socket (vmm/api/) and, without
// --config, the VM is built at PUT /actions InstanceStart.
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "vmm/api/api_handler.h"
#include "vmm/api/api_server.h"
#include "vmm/api/api_vm.h"
#include "vmm/api/metrics.h"
#include "vmm/config/cli.h"
#include "vmm/disks.h"
#include "vmm/kvm.h"
#include "vmm/machine.h"
#include "vmm/pvm/pvm_cmdline.h"
#include "vmm/stop.h"

// The sanitizer build (make sanitize): LeakSanitizer's exit-time check stops the world with
// ptrace from a cloned thread, which the main thread's seccomp filter does not allow (the
// process spins at exit). The test binaries check for leaks; the VMM binary does not. Only
// LeakSanitizer's runtime calls this hook (in any other build it is an unused function), so
// no build detection is needed here.
extern "C" int __lsan_is_turned_off() {
  return 1;
}

namespace {

using namespace kindling;

constexpr int kExitUsage = 2;
// How often the metrics file gets a line while the VM runs (Firecracker's period).
constexpr std::chrono::seconds kMetricsPeriod{60};

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

// A built and booted VM. Disks are declared after the machine: destroyed first, while the VM
// fd and guest RAM still exist.
struct BuiltVm {
  std::unique_ptr<vmm::Machine> machine;
  std::unique_ptr<vmm::Disks> disks;
};

// Why a build failed: the error line and the exit status it stands for.
struct BuildFailure {
  std::string line;
  int code;
};

Result<BuiltVm, BuildFailure> build_vm(const vmm::VmConfig& config) {
  vmm::MachineOptions opts;
  opts.pvm_host = vmm::host_is_pvm();
  opts.console_input_fd = STDIN_FILENO;
  opts.confine_main_thread = true;  // with config.seccomp: from the vCPUs' start to the exit
  if (opts.pvm_host) log_pvm_switches(config);
  BuiltVm vm;
  auto machine = vmm::Machine::create(config, opts);
  if (!machine) {
    return Unexpected{BuildFailure{machine.error().message(), vmm::exit_code_for(machine.error())}};
  }
  vm.machine = std::move(*machine);
  auto disks = vmm::Disks::attach(*vm.machine, config);
  if (!disks) {
    return Unexpected{BuildFailure{disks.error().message(), vmm::exit_code_for(disks.error())}};
  }
  vm.disks = std::move(*disks);
  if (auto booted = vm.machine->boot(); !booted) {
    return Unexpected{BuildFailure{booted.error().message(), vmm::exit_code_for(booted.error())}};
  }
  // The disks' I/O threads built their seccomp filters meanwhile (Disks::attach does not wait).
  if (auto confined = vm.disks->await_confined(); !confined) {
    return Unexpected{
        BuildFailure{confined.error().message(), vmm::exit_code_for(confined.error())}};
  }
  return vm;
}

// The "0.1.0" of "kindling 0.1.0".
std::string version_number() {
  const std::string v = vmm::version_string();
  return v.substr(v.find(' ') + 1);
}

// Serves the API until InstanceStart builds a VM (a failed build is answered and waited past,
// as Firecracker stays up) or a termination signal arrives (its exit status is returned).
Result<BuiltVm, int> wait_for_instance_start(int signal_fd, vmm::api::ApiVm& api_vm,
                                             vmm::VmConfig& config) {
  for (;;) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {api_vm.start_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Unexpected{error_line(std::string("poll: ") + std::strerror(errno), 1)};
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
        api_vm.answer_start("kindling is exiting");
        KLOG_INFO("stopped by %s before InstanceStart",
                  sigabbrev_np(static_cast<int>(si.ssi_signo)));
        return Unexpected{vmm::exit_code_for_signal(static_cast<int>(si.ssi_signo))};
      }
    }
    if (!(fds[1].revents & POLLIN)) continue;
    std::optional<vmm::VmConfig> asked = api_vm.take_start_request();
    if (!asked) continue;
    asked->api_sock = config.api_sock;
    auto built = build_vm(*asked);
    if (!built) {
      KLOG_WARN("InstanceStart failed: %s", built.error().line.c_str());
      api_vm.answer_start(built.error().line);
      continue;
    }
    config = std::move(*asked);
    api_vm.answer_start("");
    return std::move(*built);
  }
}

int run_vm(vmm::VmConfig config) {
  if (auto level = log::parse_level(config.log_level)) log::set_level(*level);
  // Before any thread exists: every later thread inherits the blocked signals.
  auto signal_fd = vmm::setup_stop_signals();
  if (!signal_fd) return error_line(signal_fd.error().message(), 1);
  // Declared in this order so that the server (whose thread calls the handler, which calls
  // api_vm) goes first.
  std::unique_ptr<vmm::api::ApiVm> api_vm;
  std::unique_ptr<vmm::api::ApiHandler> handler;
  std::unique_ptr<vmm::api::ApiServer> server;
  // The config file's metrics file; the API handler takes it when there is one.
  std::optional<vmm::api::MetricsFile> metrics;
  if (config.metrics_path) {
    auto file = vmm::api::MetricsFile::open(*config.metrics_path);
    if (!file) return error_line("metrics: " + file.error().message());
    metrics = std::move(*file);
  }
  if (config.api_sock) {
    auto wakeup = EventFd::create();
    if (!wakeup) return error_line(wakeup.error().message(), 1);
    api_vm = std::make_unique<vmm::api::ApiVm>(std::move(*wakeup));
    handler = std::make_unique<vmm::api::ApiHandler>(*api_vm, config, config.start_now,
                                                     "anonymous-instance", version_number());
    if (metrics) {
      handler->adopt_metrics(std::move(*metrics));
      metrics.reset();
    }
    auto started = vmm::api::ApiServer::start(*config.api_sock, *handler, config.seccomp);
    if (!started) return error_line(started.error().message());
    server = std::move(*started);
  }
  BuiltVm vm;
  if (config.start_now) {
    auto built = build_vm(config);
    if (!built) return error_line(built.error().line, built.error().code);
    vm = std::move(*built);
  } else {
    auto built = wait_for_instance_start(signal_fd->get(), *api_vm, config);
    if (!built) return built.error();
    vm = std::move(*built);
  }
  auto& machine = vm.machine;
  auto& disks = vm.disks;
  // The metrics file gets the drive counters once a minute while the VM runs and once at the
  // end, as Firecracker writes them. A failed write is reported (rate-limited: a FIFO nobody
  // reads fails every time), and the guest's exit status stands.
  auto flush_metrics = [&] {
    std::vector<virtio::BlockStats> stats;
    for (size_t i = 0; i < disks->size(); ++i) stats.push_back(disks->stats(i));
    auto flushed = handler   ? handler->append_metrics(stats)
                   : metrics ? metrics->append(config.drives, stats)
                             : Result<void, vmm::api::MetricsErr>{};
    if (!flushed) KLOG_WARN_RATELIMITED("metrics: %s", flushed.error().message().c_str());
  };
  if (metrics || handler) machine->set_periodic(kMetricsPeriod, flush_metrics);
  if (api_vm) api_vm->attach(machine.get(), disks.get());
  vmm::RunResult r = machine->run(signal_fd->get());
  if (api_vm) api_vm->detach();
  // The vCPUs have stopped: drain every disk's in-flight I/O, then make the images stable.
  if (auto synced = disks->shutdown(); !synced) {
    error_line(synced.error().message());
    if (r.exit_code == 0) r.exit_code = 1;
  }
  flush_metrics();
  if (config.stats && disks->size() > 0) {
    std::fprintf(stderr, "kindling: disk statistics\n%s", disks->stats_report().c_str());
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
