#include "vmm/exit_loop.h"

#include <asm/processor-flags.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "common/hex.h"
#include "common/log.h"

namespace kindling::vmm {
namespace {

std::string vcpu_prefix(const Vcpu& vcpu) {
  return "vCPU " + std::to_string(vcpu.index()) + ": ";
}

std::string rip_text(Vcpu& vcpu) {
  auto regs = vcpu.get_regs();
  if (!regs) return "RIP unknown";
  return "RIP " + hex(regs->rip);
}

// GUEST: the port, size and count come from the guest's instruction (checked by KVM); the
// data lies inside the kvm_run mapping at data_offset.
void handle_pio(const kvm_run& run, const Bus& bus) {
  uint8_t* base = reinterpret_cast<uint8_t*>(const_cast<kvm_run*>(&run)) + run.io.data_offset;
  for (uint32_t i = 0; i < run.io.count; ++i) {
    std::span<uint8_t> data(base + static_cast<size_t>(i) * run.io.size, run.io.size);
    if (run.io.direction == KVM_EXIT_IO_OUT) {
      bus.write(run.io.port, data);
    } else {
      bus.read(run.io.port, data);
    }
  }
}

// GUEST: the address and length (1..8) come from the guest access.
void handle_mmio(kvm_run& run, const Bus& bus) {
  const size_t len = std::min<size_t>(run.mmio.len, sizeof(run.mmio.data));
  if (run.mmio.is_write) {
    bus.write(run.mmio.phys_addr, std::span<const uint8_t>(run.mmio.data, len));
  } else {
    bus.read(run.mmio.phys_addr, std::span<uint8_t>(run.mmio.data, len));
  }
}

void handle_internal_error(Vcpu& vcpu, const ExitLoopDeps& deps, ExitStats& stats) {
  const kvm_run& run = vcpu.run_data();
  if (run.internal.suberror != KVM_INTERNAL_ERROR_EMULATION) {
    deps.stop.request(StopReason::kGuestFault, kExitGuestFault,
                      vcpu_prefix(vcpu) + "KVM internal error, suberror " +
                          std::to_string(run.internal.suberror) + " at " + rip_text(vcpu));
    return;
  }
  const AssistOutcome out =
      on_emulation_failure(vcpu, deps.mem, emulation_failure_bytes(run), deps.emulation_assist);
  if (!out.handled) {
    deps.stop.request(StopReason::kGuestFault, kExitGuestFault, vcpu_prefix(vcpu) + out.error);
    return;
  }
  ++stats.assisted[static_cast<size_t>(out.kind)];
  KLOG_DEBUG_RATELIMITED("vCPU %u: assisted %s", vcpu.index(), to_string(out.kind));
}

void handle_system_event(Vcpu& vcpu, const ExitLoopDeps& deps) {
  const uint32_t type = vcpu.run_data().system_event.type;
  if (type == KVM_SYSTEM_EVENT_SHUTDOWN || type == KVM_SYSTEM_EVENT_RESET) {
    deps.stop.request(StopReason::kGuestReset, 0,
                      vcpu_prefix(vcpu) + (type == KVM_SYSTEM_EVENT_RESET ? "reset" : "shutdown"));
    return;
  }
  deps.stop.request(StopReason::kGuestFault, kExitGuestFault,
                    vcpu_prefix(vcpu) + "system event " + std::to_string(type));
}

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// The ExitStats time bucket of an exit reason.
uint64_t ExitStats::*time_bucket(uint32_t exit_reason) {
  switch (exit_reason) {
    case KVM_EXIT_IO:
      return &ExitStats::pio_ns;
    case KVM_EXIT_MMIO:
      return &ExitStats::mmio_ns;
    case KVM_EXIT_INTERNAL_ERROR:
      return &ExitStats::assist_ns;
    default:
      return &ExitStats::other_ns;
  }
}

// Answers the main thread's halt probe (vmm/halt_probe.h) if it asked this vCPU.
void answer_halt_probe(Vcpu& vcpu, const ExitLoopDeps& deps) {
  if (deps.halt == nullptr || !deps.halt->asked(deps.vcpu_index)) return;
  auto state = vcpu.mp_state();
  auto regs = vcpu.get_regs();
  // A vCPU whose state cannot be read counts as running: never end a VM on a guess.
  deps.halt->answer(deps.vcpu_index, state ? *state : KVM_MP_STATE_RUNNABLE,
                    regs ? regs->rflags : X86_EFLAGS_IF);
}

// Handles one exit; fatal ones request the stop.
void dispatch(Vcpu& vcpu, const ExitLoopDeps& deps, ExitStats& stats) {
  kvm_run& run = vcpu.run_data();
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      ++stats.pio;
      handle_pio(run, deps.pio);
      return;
    case KVM_EXIT_MMIO:
      ++stats.mmio;
      handle_mmio(run, deps.mmio);
      return;
    case KVM_EXIT_INTR:
      ++stats.interrupted;
      consume_kick_signal();
      answer_halt_probe(vcpu, deps);
      return;
    case KVM_EXIT_HLT:
      // Only without an in-kernel LAPIC does HLT come here: nothing can wake the vCPU again.
      ++stats.hlt;
      deps.stop.request(StopReason::kGuestReset, 0, vcpu_prefix(vcpu) + "halted");
      return;
    case KVM_EXIT_SHUTDOWN:
      ++stats.shutdown;
      deps.stop.request(
          StopReason::kGuestFault, kExitGuestFault,
          vcpu_prefix(vcpu) + "triple fault (KVM_EXIT_SHUTDOWN) at " + rip_text(vcpu));
      return;
    case KVM_EXIT_FAIL_ENTRY: {
      ++stats.other;
      char buf[64];
      std::snprintf(buf, sizeof(buf), "VM entry failed, hardware reason 0x%llx",
                    static_cast<unsigned long long>(run.fail_entry.hardware_entry_failure_reason));
      deps.stop.request(StopReason::kGuestFault, kExitGuestFault, vcpu_prefix(vcpu) + buf);
      return;
    }
    case KVM_EXIT_INTERNAL_ERROR:
      ++stats.internal_error;
      handle_internal_error(vcpu, deps, stats);
      return;
    case KVM_EXIT_SYSTEM_EVENT:
      ++stats.system_event;
      handle_system_event(vcpu, deps);
      return;
    default:
      ++stats.other;
      deps.stop.request(
          StopReason::kGuestFault, kExitGuestFault,
          vcpu_prefix(vcpu) + "unexpected KVM exit reason " + std::to_string(run.exit_reason));
      return;
  }
}

}  // namespace

AssistOutcome on_emulation_failure(AssistCpu& cpu, const memory::GuestMemory& mem,
                                   std::span<const uint8_t> bytes, bool assist) {
  if (assist) return assist_emulation_failure(cpu, mem, bytes);
  auto regs = cpu.get_regs();
  const uint64_t rip = regs ? regs->rip : 0;
  AssistOutcome out;
  out.error = describe_emulation_failure(
      rip, bytes, "KVM could not emulate it (the assist runs only on PVM hosts)");
  return out;
}

void ExitStats::merge(const ExitStats& o) {
  pio += o.pio;
  mmio += o.mmio;
  hlt += o.hlt;
  interrupted += o.interrupted;
  system_event += o.system_event;
  shutdown += o.shutdown;
  internal_error += o.internal_error;
  other += o.other;
  for (size_t i = 0; i < assisted.size(); ++i) assisted[i] += o.assisted[i];
  run_ns += o.run_ns;
  pio_ns += o.pio_ns;
  mmio_ns += o.mmio_ns;
  assist_ns += o.assist_ns;
  other_ns += o.other_ns;
}

std::string ExitStats::summary() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "pio=%" PRIu64 " mmio=%" PRIu64 " hlt=%" PRIu64 " interrupted=%" PRIu64
                " system_event=%" PRIu64 " shutdown=%" PRIu64 " internal_error=%" PRIu64
                " other=%" PRIu64,
                pio, mmio, hlt, interrupted, system_event, shutdown, internal_error, other);
  std::string out = buf;
  for (size_t i = 1; i < assisted.size(); ++i) {
    if (assisted[i] == 0) continue;
    out += " assist[";
    out += to_string(static_cast<AssistKind>(i));
    out += "]=" + std::to_string(assisted[i]);
  }
  std::snprintf(buf, sizeof(buf), " time: run=%.3fs", static_cast<double>(run_ns) / 1e9);
  out += buf;
  const struct {
    const char* name;
    uint64_t ns, count;
  } kinds[] = {{"pio", pio_ns, pio},
               {"mmio", mmio_ns, mmio},
               {"assist", assist_ns, internal_error},
               {"other", other_ns, hlt + interrupted + system_event + shutdown + other}};
  for (const auto& k : kinds) {
    if (k.count == 0) continue;
    std::snprintf(buf, sizeof(buf), " %s=%.1fms(%.1fus/exit)", k.name,
                  static_cast<double>(k.ns) / 1e6,
                  static_cast<double>(k.ns) / 1e3 / static_cast<double>(k.count));
    out += buf;
  }
  return out;
}

ExitStats run_exit_loop(Vcpu& vcpu, const ExitLoopDeps& deps) {
  ExitStats stats;
  while (!deps.stop.requested()) {
    const uint64_t entered = now_ns();
    auto ran = vcpu.run();
    const uint64_t exited = now_ns();
    stats.run_ns += exited - entered;
    if (!ran) {
      const int e = ran.error().sys_errno;
      // EINTR: a kick or immediate_exit; EAGAIN: an AP still waiting for its SIPI.
      if (e == EINTR || e == EAGAIN) {
        ++stats.interrupted;
        if (e == EINTR) consume_kick_signal();
        answer_halt_probe(vcpu, deps);
        // An AP in INIT_RECEIVED returns EAGAIN at once until its SIPI: do not spin a host CPU
        // the BSP (whose kernel code is emulated on PVM hosts) needs.
        if (e == EAGAIN) std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      deps.stop.request(StopReason::kHostError, kExitGuestFault,
                        vcpu_prefix(vcpu) + ran.error().message());
      break;
    }
    const uint32_t reason = vcpu.run_data().exit_reason;
    dispatch(vcpu, deps, stats);
    stats.*time_bucket(reason) += now_ns() - exited;
  }
  return stats;
}

}  // namespace kindling::vmm
