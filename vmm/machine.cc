#include "vmm/machine.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/hex.h"
#include "common/log.h"
#include "devices/acpi_pm.h"
#include "devices/cmos.h"
#include "devices/exit_port.h"
#include "devices/i8042.h"
#include "devices/ports.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/cpuid.h"
#include "vmm/pvm/pvm_cmdline.h"

namespace kindling::vmm {
namespace {

// KVM's three-page TSS area and the one-page identity map VMX needs for real mode: just below
// 4 GiB, clear of RAM (which stops at 3 GiB below the hole), the IOAPIC and the LAPIC.
constexpr uint64_t kTssAddr = 0xfffbd000;
constexpr uint64_t kIdentityMapAddr = 0xfffbc000;

Unexpected<MachineErr> machine_fail(MachineError code, std::string line) {
  return fail(code, 0, std::move(line));
}

MachineErr from_kvm(const KvmErr& e) {
  const bool unusable = e.code == KvmError::kOpen || e.code == KvmError::kPermission ||
                        e.code == KvmError::kApiVersion || e.code == KvmError::kMissingCapability;
  return MachineErr{unusable ? MachineError::kKvmUnusable : MachineError::kKvm, 0,
                    "KVM: " + e.message()};
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

const char* to_string(MachineError) {
  return "";
}

int exit_code_for(const MachineErr& e) {
  switch (e.code) {
    case MachineError::kKvmUnusable:
    case MachineError::kMemory:
    case MachineError::kBoot:
    case MachineError::kConsoleLog:
      return 2;
    default:
      return 1;
  }
}

std::string compose_cmdline(const std::optional<std::string>& configured,
                            const std::vector<std::string>& fragments, bool pvm_host) {
  std::string out = configured.value_or(kDefaultCmdline);
  // Before a `--`: what follows it is init's, and the kernel would not see root= there.
  for (const std::string& f : fragments) out = add_kernel_param(std::move(out), f);
  // PVM hosts: the switches of vmm/pvm/pvm_cmdline.h (noxsave, clearcpuid=...).
  return pvm_host ? append_pvm_switches(std::move(out)) : out;
}

Machine::Machine(const VmConfig& config, const MachineOptions& opts, Kvm kvm, Vm vm,
                 memory::GuestMemory mem, EventFd stop_wakeup, EventFd serial_irq, EventFd kbd_irq)
    : config_(config),
      opts_(opts),
      stop_(std::move(stop_wakeup)),
      kvm_(std::move(kvm)),
      mem_(std::move(mem)),
      vm_(std::move(vm)),
      serial_irq_(std::move(serial_irq)),
      kbd_irq_(std::move(kbd_irq)) {}

Machine::~Machine() {
  stop_and_join();
}

Result<std::unique_ptr<Machine>, MachineErr> Machine::create(const VmConfig& config,
                                                             const MachineOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  auto kvm = Kvm::open();
  if (!kvm) return Unexpected{from_kvm(kvm.error())};
  auto vm = Vm::create(*kvm);
  if (!vm) return Unexpected{from_kvm(vm.error())};
  auto mem = memory::GuestMemory::create_ram(config.mem_bytes);
  if (!mem) {
    return machine_fail(MachineError::kMemory, "guest memory: " + mem.error().message());
  }
  auto wakeup = EventFd::create();
  if (!wakeup)
    return machine_fail(MachineError::kDevice, "stop eventfd: " + wakeup.error().message());
  auto serial_irq = EventFd::create();
  if (!serial_irq) {
    return machine_fail(MachineError::kDevice, "serial irqfd: " + serial_irq.error().message());
  }
  auto kbd_irq = EventFd::create();
  if (!kbd_irq) {
    return machine_fail(MachineError::kDevice, "i8042 irqfd: " + kbd_irq.error().message());
  }
  std::unique_ptr<Machine> m(new Machine(config, opts, std::move(*kvm), std::move(*vm),
                                         std::move(*mem), std::move(*wakeup),
                                         std::move(*serial_irq), std::move(*kbd_irq)));
  auto ok = m->setup_kvm();
  if (ok) ok = m->setup_devices();
  if (!ok) return ok.take_error();
  m->build_seconds_ = seconds_since(t0);
  return m;
}

Result<void, MachineErr> Machine::setup_kvm() {
  // RAM first: registered before the in-kernel irqchip exists, a slot costs ~0.1 ms; after it,
  // ~5 ms on PVM hosts (measured; whatever the slot's size), most of kindling's start-up.
  // Firecracker registers guest memory first too.
  auto ok = vm_.map_memory(mem_);
  if (ok) ok = vm_.set_tss_addr(kTssAddr);
  if (ok) ok = vm_.set_identity_map_addr(kIdentityMapAddr);
  if (ok) ok = vm_.create_irqchip();
  if (ok) ok = vm_.create_pit2();
  // The serial line is an irqfd: a device signal becomes an IOAPIC edge on GSI 4 in-kernel.
  if (ok) ok = vm_.register_irqfd(devices::kCom1Gsi, serial_irq_);
  // The keyboard's IRQ 1 likewise: Linux's atkbd probe waits for its replies' interrupts.
  if (ok) ok = vm_.register_irqfd(devices::kI8042KbdGsi, kbd_irq_);
  if (!ok) return Unexpected{from_kvm(ok.error())};
  return {};
}

Result<void, MachineErr> Machine::setup_devices() {
  int out_fd = STDOUT_FILENO;
  if (config_.console_log) {
    int fd = ::open(config_.console_log->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return machine_fail(
          MachineError::kConsoleLog,
          *config_.console_log + ": cannot open console log (" + std::strerror(errno) + ")");
    }
    console_log_fd_.reset(fd);
    out_fd = fd;
  }
  const EventFd& irq = serial_irq_;
  serial_ = std::make_shared<devices::Serial>([&irq] { (void)irq.signal(); }, out_fd);
  StopControl& stop = stop_;
  const EventFd& kbd_irq = kbd_irq_;
  i8042_ = std::make_shared<devices::I8042>(
      [&stop] { stop.request(StopReason::kGuestReset, 0, "guest reset through the i8042"); },
      [&kbd_irq] { (void)kbd_irq.signal(); });
  auto acpi_pm = std::make_shared<devices::AcpiPm>(
      [&stop] { stop.request(StopReason::kGuestPowerOff, 0, "guest powered off (ACPI S5)"); },
      [&stop] {
        stop.request(StopReason::kGuestReset, 0, "guest reset through the ACPI reset register");
      });
  auto exit_port = std::make_shared<devices::ExitPort>([&stop](uint8_t code) {
    stop.request(StopReason::kExitPort, code,
                 "guest wrote " + std::to_string(code) + " to the exit port");
  });
  struct Slot {
    uint64_t base, len;
    std::shared_ptr<BusDevice> dev;
  };
  const Slot slots[] = {
      {devices::kCom1Base, devices::kCom1Len, serial_},
      {devices::kI8042Base, devices::kI8042Len, i8042_},
      {devices::kCmosBase, devices::kCmosLen, std::make_shared<devices::Cmos>()},
      {devices::kExitPortBase, devices::kExitPortLen, exit_port},
      {devices::kBootTimerBase, devices::kBootTimerLen, std::make_shared<devices::BootTimer>()},
      {devices::kAcpiPmBase, devices::kAcpiPmLen, acpi_pm},
  };
  for (const Slot& s : slots) {
    auto ok = pio_.insert(s.base, s.len, s.dev);
    if (!ok) return machine_fail(MachineError::kDevice, ok.error().message());
  }
  return {};
}

Result<void, MachineErr> Machine::attach_virtio_mmio(const MmioSlot& slot,
                                                     std::shared_ptr<BusDevice> device,
                                                     std::string cmdline_fragment) {
  if (booted_) return machine_fail(MachineError::kState, "MMIO device attached after boot");
  auto ok = mmio_.insert(slot.base, slot.size, std::move(device));
  if (!ok) return machine_fail(MachineError::kDevice, ok.error().message());
  virtio_slots_.push_back(slot);
  cmdline_fragments_.push_back(std::move(cmdline_fragment));
  return {};
}

Result<void, MachineErr> Machine::boot() {
  if (booted_) return machine_fail(MachineError::kState, "boot() called twice");
  const auto t0 = std::chrono::steady_clock::now();
  BootSpec spec;
  spec.kernel_path = config_.kernel_path;
  spec.initrd_path = config_.initrd_path;
  spec.cmdline = compose_cmdline(config_.cmdline, cmdline_fragments_, opts_.pvm_host);
  spec.platform.vcpus = config_.vcpus;
  spec.platform.virtio_mmio = virtio_slots_;
  spec.platform.acpi = config_.acpi;
  spec.protocol = parse_boot_protocol(config_.boot_protocol).value_or(BootProtocol::kAuto);
  auto entry = load_kernel(mem_, spec);
  if (!entry) return machine_fail(MachineError::kBoot, entry.error().message());
  KLOG_INFO("kernel command line: %s", spec.cmdline.c_str());
  KLOG_INFO("boot protocol %s, entry %s%s", to_string(entry->protocol), hex(entry->rip).c_str(),
            entry->rsdp_addr != 0 ? ", ACPI tables written" : ", no ACPI tables");
  auto ok = setup_vcpus(*entry);
  if (!ok) return ok;
  booted_ = true;
  build_seconds_ += seconds_since(t0);
  return {};
}

Result<void, MachineErr> Machine::setup_vcpus(const BootEntry& entry) {
  auto supported = kvm_.supported_cpuid();
  if (!supported) return Unexpected{from_kvm(supported.error())};
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    auto vcpu = Vcpu::create(kvm_, vm_, i);
    if (!vcpu) return Unexpected{from_kvm(vcpu.error())};
    auto v = std::make_unique<Vcpu>(std::move(*vcpu));
    const CpuidOptions copts{i, config_.vcpus, opts_.pvm_host};
    auto ok = v->set_cpuid(filter_cpuid(*supported, copts));
    if (ok) ok = v->set_boot_msrs();
    if (ok) ok = v->setup_lapic();
    if (ok) {
      // The BSP starts at the kernel entry; APs wait in the in-kernel LAPIC for INIT/SIPI.
      ok = i == 0 ? v->setup_boot_cpu(entry) : v->set_mp_state(KVM_MP_STATE_UNINITIALIZED);
    }
    if (!ok) {
      KvmErr e = ok.error();
      e.context = "vCPU " + std::to_string(i) + ": " + e.context;
      return Unexpected{from_kvm(e)};
    }
    vcpus_.push_back(std::move(v));
  }
  return {};
}

void Machine::start_vcpu_threads() {
  stats_.assign(vcpus_.size(), ExitStats{});
  halt_ = std::make_unique<HaltProbe>(vcpus_.size());
  vcpu_done_ = std::make_unique<std::atomic<bool>[]>(vcpus_.size());
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    threads_.emplace_back([this, i] {
      Vcpu& vcpu = *vcpus_[i];
      // Inside KVM_RUN the kick signal is deliverable (and interrupts it); outside it stays
      // blocked, so a kick that arrives between runs waits for the next KVM_RUN entry.
      sigset_t in_run;
      pthread_sigmask(SIG_SETMASK, nullptr, &in_run);
      sigdelset(&in_run, vcpu_kick_signal());
      auto ok = vcpu.set_signal_mask(in_run);
      if (!ok) {
        stop_.request(StopReason::kHostError, kExitGuestFault, ok.error().message());
      } else if (auto confined = confine(seccomp::ThreadKind::kVcpu, "vcpu" + std::to_string(i));
                 !confined) {
        stop_.request(StopReason::kHostError, kExitGuestFault, confined.error().message());
      } else {
        if (i == 0) {
          timespec now{};
          clock_gettime(CLOCK_REALTIME, &now);  // the vDSO: no system call on the way in
          first_run_realtime_ns_.store(int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec,
                                       std::memory_order_relaxed);
        }
        stats_[i] = run_exit_loop(
            vcpu, ExitLoopDeps{pio_, mmio_, mem_, stop_, halt_.get(), i, opts_.pvm_host});
      }
      vcpu_done_[i].store(true, std::memory_order_release);
    });
  }
}

Result<void, seccomp::SeccompErr> Machine::confine(seccomp::ThreadKind kind,
                                                   const std::string& name) const {
  if (!config_.seccomp) return {};
  return seccomp::install(kind, name);
}

void Machine::kick_running_vcpus() {
  for (size_t i = 0; i < threads_.size(); ++i) {
    if (!vcpu_done_[i].load(std::memory_order_acquire)) {
      pthread_kill(threads_[i].native_handle(), vcpu_kick_signal());
    }
  }
}

void Machine::check_halted() {
  // Two answered rounds in a row: a CPU between `cli` and `hlt` of an ordinary sequence is
  // not mistaken for one that stopped for good.
  halted_rounds_ = halt_->all_halted() ? halted_rounds_ + 1 : 0;
  if (halted_rounds_ == kHaltedRoundsToReport && !halt_reported_) {
    halt_reported_ = true;
    std::fprintf(stderr, "kindling: guest halted: every vCPU stopped with interrupts off%s\n",
                 config_.exit_on_halt ? "" : " (--exit-on-halt ends the VM then)");
    std::fflush(stderr);
    if (config_.exit_on_halt) {
      stop_.request(StopReason::kGuestHalt, 0, "every vCPU halted with interrupts off");
      return;
    }
  }
  halt_->ask();
  kick_running_vcpus();
}

void Machine::set_periodic(std::chrono::milliseconds every, std::function<void()> fn) {
  periodic_every_ = std::max(every, std::chrono::milliseconds{1});
  periodic_ = std::move(fn);
}

void Machine::wait_for_stop(int signal_fd) {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> deadline;
  if (config_.timeout_s && *config_.timeout_s > 0) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(*config_.timeout_s));
  }
  auto next_probe = Clock::now() + kHaltProbeInterval;
  auto next_periodic = periodic_ ? Clock::now() + periodic_every_ : Clock::time_point::max();
  while (!stop_.requested()) {
    pollfd fds[2] = {{stop_.wakeup().fd(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    const auto now = Clock::now();
    if (now >= next_probe) {
      check_halted();
      next_probe = now + kHaltProbeInterval;
      if (stop_.requested()) break;
    }
    if (now >= next_periodic) {
      periodic_();
      next_periodic = now + periodic_every_;
    }
    int64_t timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::min(next_probe, next_periodic) - now)
                             .count() +
                         1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now);
      if (left.count() <= 0) {
        char what[64];
        std::snprintf(what, sizeof(what), "--timeout of %g s expired", *config_.timeout_s);
        stop_.request(StopReason::kTimeout, kExitTimeout, what);
        break;
      }
      timeout_ms = std::min<int64_t>(left.count() + 1, timeout_ms);
    }
    int n = ::poll(fds, signal_fd >= 0 ? 2 : 1, static_cast<int>(timeout_ms));
    if (n < 0 && errno != EINTR) {
      stop_.request(StopReason::kHostError, kExitGuestFault, "poll failed");
      break;
    }
    if (signal_fd >= 0 && (fds[1].revents & POLLIN) != 0) {
      signalfd_siginfo si{};
      if (::read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
        const int signo = static_cast<int>(si.ssi_signo);
        stop_.request(StopReason::kHostSignal, exit_code_for_signal(signo),
                      std::string("host signal ") + sigabbrev_np(signo));
      }
    }
  }
}

void Machine::stop_and_join() {
  if (threads_.empty()) return;
  if (!stop_.requested()) stop_.request(StopReason::kHostError, kExitGuestFault, "torn down");
  for (auto& v : vcpus_) v->set_immediate_exit(true);
  // Kick until every vCPU has left KVM_RUN: one signal can land just before a thread blocks
  // the signal again, and immediate_exit covers only the next entry.
  for (int round = 0;; ++round) {
    bool all_done = true;
    for (size_t i = 0; i < threads_.size(); ++i) {
      all_done = all_done && vcpu_done_[i].load(std::memory_order_acquire);
    }
    if (all_done) break;
    kick_running_vcpus();
    if (round == 500) KLOG_WARN("vCPU threads slow to stop; still kicking");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

RunResult Machine::run(int signal_fd) {
  RunResult result;
  const double started = log::uptime_seconds();
  start_vcpu_threads();
  KLOG_INFO("VM built in %.1f ms; %zu vCPU(s) running at %.3f s since start", build_seconds_ * 1000,
            vcpus_.size(), started);
  if (opts_.console_input_fd >= 0) {
    auto console = devices::ConsoleInput::start(*serial_, opts_.console_input_fd, config_.seccomp);
    if (console) {
      console_ = std::move(*console);
    } else {
      KLOG_WARN("console input disabled: %s", console.error().message().c_str());
    }
  }
  // Last: a filter is inherited by the threads created after it (common/seccomp/seccomp.h).
  if (opts_.confine_main_thread) {
    if (auto confined = confine(seccomp::ThreadKind::kMain, "main"); !confined) {
      stop_.request(StopReason::kHostError, kExitGuestFault, confined.error().message());
    }
  }
  wait_for_stop(signal_fd);
  stop_and_join();
  console_.reset();  // restores the terminal
  serial_->flush();
  for (const ExitStats& s : stats_) result.stats.merge(s);
  result.exit_code = stop_.exit_code();
  result.reason = stop_.reason();
  result.detail = stop_.detail();
  result.unclaimed_pio = pio_.unclaimed_accesses();
  result.unclaimed_mmio = mmio_.unclaimed_accesses();
  KLOG_INFO("VM stopped after %.3f s: %s (%s), exit status %d", log::uptime_seconds() - started,
            to_string(result.reason), result.detail.c_str(), result.exit_code);
  // For `make bench` (exec-to-first-run-ms): the launcher notes CLOCK_REALTIME before exec.
  if (const int64_t t = first_run_realtime_ns_.load(std::memory_order_relaxed); t != 0) {
    KLOG_INFO("first KVM_RUN at %lld.%09lld s (CLOCK_REALTIME)",
              static_cast<long long>(t / 1'000'000'000), static_cast<long long>(t % 1'000'000'000));
  }
  KLOG_INFO("exits: %s unclaimed_pio=%llu unclaimed_mmio=%llu", result.stats.summary().c_str(),
            static_cast<unsigned long long>(result.unclaimed_pio),
            static_cast<unsigned long long>(result.unclaimed_mmio));
  return result;
}

}  // namespace kindling::vmm
