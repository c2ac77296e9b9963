#include "vmm/exit_loop.h"

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "common/log.h"

namespace kindling::vmm {
namespace {

std::string vcpu_prefix(const Vcpu& vcpu) {
  return "vCPU " + std::to_string(vcpu.index()) + ": ";
}

std::string rip_text(Vcpu& vcpu) {
  auto regs = vcpu.get_regs();
  if (!regs) return "RIP unknown";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "RIP 0x%llx", static_cast<unsigned long long>(regs->rip));
  return buf;
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
  const AssistOutcome out = assist_emulation_failure(vcpu, deps.mem, emulation_failure_bytes(run));
  if (!out.handled) {
    deps.stop.request(StopReason::kGuestFault, kExitGuestFault, vcpu_prefix(vcpu) + out.error);
    return;
  }
  ++stats.assisted[static_cast<size_t>(out.kind)];
  KLOG_DEBUG("vCPU %u: assisted %s", vcpu.index(), to_string(out.kind));
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
  return out;
}

ExitStats run_exit_loop(Vcpu& vcpu, const ExitLoopDeps& deps) {
  ExitStats stats;
  while (!deps.stop.requested()) {
    auto ran = vcpu.run();
    if (!ran) {
      const int e = ran.error().sys_errno;
      // EINTR: a kick or immediate_exit; EAGAIN: an AP still waiting for its SIPI.
      if (e == EINTR || e == EAGAIN) {
        ++stats.interrupted;
        // An AP in INIT_RECEIVED returns EAGAIN at once until its SIPI: do not spin a host CPU
        // the BSP (whose kernel code is emulated on PVM hosts) needs.
        if (e == EAGAIN) std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      deps.stop.request(StopReason::kHostError, kExitGuestFault,
                        vcpu_prefix(vcpu) + ran.error().message());
      break;
    }
    dispatch(vcpu, deps, stats);
  }
  return stats;
}

}  // namespace kindling::vmm
