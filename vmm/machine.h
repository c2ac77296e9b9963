// The VM builder and runner: VmConfig -> guest memory, KVM VM with irqchip and PIT, platform
// devices on the buses, kernel loaded, vCPUs set up; then vCPU threads until a stop.
//
// Build order (explicit, no registration magic):
//   Machine::create()        KVM checks, VM, RAM slots, TSS, irqchip, PIT, legacy devices
//   attach_virtio_mmio()...  MMIO devices (virtio-mmio), each with its cmdline fragment
//   boot()                   kernel + initrd + cmdline + boot tables (MP, ACPI) loaded, vCPUs
//                            created and set up
//   run()                    vCPU threads, wait for a stop, tear down, exit status
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/bus_device.h"
#include "common/event_fd.h"
#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "common/seccomp/seccomp.h"
#include "common/unique_fd.h"
#include "devices/console_input.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "vmm/bus.h"
#include "vmm/config/config.h"
#include "vmm/exit_loop.h"
#include "vmm/halt_probe.h"
#include "vmm/kvm.h"
#include "vmm/stop.h"
#include "vmm/vcpu.h"

namespace kindling::vmm {

// Which build step failed; the error context holds the whole user-facing line.
enum class MachineError {
  kKvmUnusable,  // /dev/kvm missing, no permission, wrong API, missing capability (exit 2)
  kKvm,          // a KVM call failed while building (exit 1)
  kMemory,       // guest RAM could not be mapped (exit 2: the size asked for)
  kBoot,         // kernel/initrd/cmdline rejected by the boot loader (exit 2)
  kDevice,       // a device or its wiring failed (exit 1)
  kConsoleLog,   // --console-log cannot be opened (exit 2)
  kState,        // a call out of order (attach after boot, boot twice)
};
// Empty: the context of a MachineErr already reads as one line.
const char* to_string(MachineError e);
using MachineErr = Error<MachineError>;
// The `kindling run` exit status for a build error (2 for bad input or unusable KVM, else 1).
int exit_code_for(const MachineErr& e);

// Host facts the builder adapts to.
struct MachineOptions {
  bool pvm_host = false;     // append vmm/pvm/pvm_cmdline.h's switches, hide XSAVE in CPUID and
                             // assist emulation failures (vmm/pvm/emulation_assist.h)
  int console_input_fd = 0;  // host fd feeding the UART (stdin); < 0 for none
  // With VmConfig::seccomp, run() also confines the calling thread (kindling's main thread)
  // once the vCPU and console threads exist; off for a caller whose thread must stay free.
  bool confine_main_thread = false;
};

// The default kernel command line (layout.md) when the config gives none.
inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1 pci=off quiet";
// Pure: the command line the guest gets: the configured one (or the default), then each
// device fragment, then on PVM hosts append_pvm_switches() (vmm/pvm/pvm_cmdline.h).
std::string compose_cmdline(const std::optional<std::string>& configured,
                            const std::vector<std::string>& fragments, bool pvm_host);

// How a run ended.
struct RunResult {
  int exit_code = 0;
  StopReason reason = StopReason::kHostError;
  std::string detail;  // e.g. "vCPU 0: triple fault ..." for the error line
  ExitStats stats;     // all vCPUs merged
  uint64_t unclaimed_pio = 0;
  uint64_t unclaimed_mmio = 0;
};

// One VM. Not movable: devices and threads hold references into it.
class Machine {
 public:
  // Everything up to (not including) the kernel: see the file comment.
  static Result<std::unique_ptr<Machine>, MachineErr> create(const VmConfig& config,
                                                             const MachineOptions& opts);
  // Stops and joins any running vCPU threads.
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Puts a virtio-mmio `device` on the MMIO bus at `slot`, describes it to the guest (ACPI
  // DSDT) and appends `cmdline_fragment` (may be empty) to the kernel command line. Before
  // boot() only.
  Result<void, MachineErr> attach_virtio_mmio(const MmioSlot& slot,
                                              std::shared_ptr<BusDevice> device,
                                              std::string cmdline_fragment);
  // Loads the kernel, creates and sets up the vCPUs (BSP in long mode, APs waiting for SIPI).
  Result<void, MachineErr> boot();
  // Starts the vCPU threads and console input (each confined to its seccomp allow-list before
  // it runs the guest or reads input, unless the config turns seccomp off), waits for a stop
  // request, a termination signal read from `signal_fd` (from setup_stop_signals(); -1 for none) or
  // the config's timeout, stops every vCPU, joins, restores the terminal, and reports.
  RunResult run(int signal_fd);
  // Before run(): while the VM runs, `fn` runs on run()'s thread every `every` (kindling's
  // periodic metrics line, as Firecracker writes one a minute). Under the main thread's seccomp
  // filter: it may write to open files, not open new ones.
  void set_periodic(std::chrono::milliseconds every, std::function<void()> fn);

  // Types Ctrl-Alt-Del on the guest's keyboard (the i8042): a guest that handles it reboots,
  // which stops the VM with status 0 through the reset line. Any thread, once booted.
  void send_ctrl_alt_del() { i8042_->press_ctrl_alt_del(); }

  // For device wiring (ioeventfd/irqfd registration) before run().
  const Vm& vm() const { return vm_; }
  const memory::GuestMemory& memory() const { return mem_; }

 private:
  Machine(const VmConfig& config, const MachineOptions& opts, Kvm kvm, Vm vm,
          memory::GuestMemory mem, EventFd stop_wakeup, EventFd serial_irq, EventFd kbd_irq);
  Result<void, MachineErr> setup_kvm();
  Result<void, MachineErr> setup_devices();
  Result<void, MachineErr> setup_vcpus(const struct BootEntry& entry);
  void start_vcpu_threads();
  // Confines the calling thread to `kind`'s allow-list when the config asks for seccomp.
  Result<void, seccomp::SeccompErr> confine(seccomp::ThreadKind kind,
                                            const std::string& name) const;
  void wait_for_stop(int signal_fd);
  // Sends the kick signal to every vCPU thread still running.
  void kick_running_vcpus();
  // One halt-probe tick: evaluates the last round (reports a guest halted for good once, and
  // stops the VM with --exit-on-halt), then asks again.
  void check_halted();
  void stop_and_join();

  VmConfig config_;
  MachineOptions opts_;
  StopControl stop_;
  Kvm kvm_;
  memory::GuestMemory mem_;
  Vm vm_;  // after mem_: the VM goes first, while its memory slots are still mapped
  Bus pio_{"pio"};
  Bus mmio_{"mmio"};
  std::vector<std::string> cmdline_fragments_;
  std::vector<MmioSlot> virtio_slots_;  // what the boot tables describe, in attach order
  UniqueFd console_log_fd_;
  EventFd serial_irq_;
  EventFd kbd_irq_;  // the i8042's keyboard interrupt (GSI 1)
  std::shared_ptr<devices::Serial> serial_;
  std::shared_ptr<devices::I8042> i8042_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  bool booted_ = false;
  double build_seconds_ = 0;
  // Filled by the vCPU threads; read after join.
  std::vector<ExitStats> stats_;
  std::unique_ptr<std::atomic<bool>[]> vcpu_done_;
  std::atomic<int64_t> first_run_realtime_ns_{0};  // when vCPU 0 first entered KVM_RUN
  // How often the halt probe asks, and how many halted rounds in a row count as halted.
  static constexpr std::chrono::milliseconds kHaltProbeInterval{1000};
  static constexpr int kHaltedRoundsToReport = 2;
  std::unique_ptr<HaltProbe> halt_;  // answered by the vCPU threads
  std::chrono::milliseconds periodic_every_{0};
  std::function<void()> periodic_;  // set_periodic()
  int halted_rounds_ = 0;
  bool halt_reported_ = false;
  std::unique_ptr<devices::ConsoleInput> console_;  // after serial_: it feeds serial_
  std::vector<std::thread> threads_;
};

}  // namespace kindling::vmm
