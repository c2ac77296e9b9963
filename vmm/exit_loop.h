// The per-vCPU exit loop: KVM_RUN, then dispatch the exit to the buses, the emulation assist
// or the stop logic, until the VM is asked to stop.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "common/memory/guest_memory.h"
#include "vmm/bus.h"
#include "vmm/halt_probe.h"
#include "vmm/pvm/emulation_assist.h"
#include "vmm/stop.h"
#include "vmm/vcpu.h"

namespace kindling::vmm {

// How often each kind of exit happened (one vCPU, or several merged).
struct ExitStats {
  uint64_t pio = 0;
  uint64_t mmio = 0;
  uint64_t hlt = 0;
  uint64_t interrupted = 0;  // EINTR / EAGAIN / KVM_EXIT_INTR
  uint64_t system_event = 0;
  uint64_t shutdown = 0;
  uint64_t internal_error = 0;
  uint64_t other = 0;
  std::array<uint64_t, kAssistKindCount> assisted{};  // indexed by AssistKind

  // Where the time went (steady clock, nanoseconds): inside KVM_RUN (guest code, and on PVM
  // hosts the in-kernel emulation of guest kernel code), and in kindling handling each kind
  // of exit. The user-space round trip of an exit itself is not visible from here.
  uint64_t run_ns = 0;
  uint64_t pio_ns = 0;
  uint64_t mmio_ns = 0;
  uint64_t assist_ns = 0;  // emulation-failure exits, assisted or not
  uint64_t other_ns = 0;

  // Adds `o` into this.
  void merge(const ExitStats& o);
  // "pio=12 mmio=0 ... assist[int3]=1 time: run=1.234s pio=0.5ms(2.1us/exit) ...": one line
  // for the info log.
  std::string summary() const;
};

// What the loop dispatches to. All must outlive the loop.
struct ExitLoopDeps {
  const Bus& pio;
  const Bus& mmio;
  const memory::GuestMemory& mem;
  StopControl& stop;
  HaltProbe* halt = nullptr;      // answered after every interrupted KVM_RUN; may be null
  size_t vcpu_index = 0;          // this vCPU's slot in `halt`
  bool emulation_assist = false;  // PVM hosts only: complete the emulator's failures
};

// GUEST: what one KVM_INTERNAL_ERROR_EMULATION exit comes to. With `assist` (PVM hosts, where
// guest kernel code runs in KVM's emulator) it is assist_emulation_failure()'s outcome; on a
// host with hardware virtualization the failure is the guest fault it is: not handled, an
// error naming RIP and the bytes, and the vCPU left untouched.
AssistOutcome on_emulation_failure(AssistCpu& cpu, const memory::GuestMemory& mem,
                                   std::span<const uint8_t> bytes, bool assist);

// Runs `vcpu` until deps.stop.requested(); every fatal exit (triple fault, an emulation failure
// the assist cannot handle, entry failure, a KVM error) requests the stop itself with its exit
// status and a one-line detail. Call on the vCPU's own thread.
ExitStats run_exit_loop(Vcpu& vcpu, const ExitLoopDeps& deps);

}  // namespace kindling::vmm
