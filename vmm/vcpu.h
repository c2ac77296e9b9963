// One vCPU: its fd, the kvm_run mapping, and the register/MSR/CPUID setup it boots with.
#pragma once

#include <linux/kvm.h>
#include <signal.h>

#include <cstdint>
#include <optional>
#include <span>

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/boot/boot_loader.h"
#include "vmm/kvm.h"
#include "vmm/pvm/emulation_assist.h"

namespace kindling::vmm {

// The vCPU's shared kvm_run page(s), unmapped on destruction.
class KvmRunMapping {
 public:
  // mmaps `size` bytes of `vcpu_fd` at offset 0.
  static Result<KvmRunMapping, KvmErr> map(int vcpu_fd, size_t size);
  KvmRunMapping(KvmRunMapping&& o) noexcept;
  KvmRunMapping& operator=(KvmRunMapping&& o) noexcept;
  KvmRunMapping(const KvmRunMapping&) = delete;
  KvmRunMapping& operator=(const KvmRunMapping&) = delete;
  ~KvmRunMapping();

  kvm_run* get() const { return run_; }

 private:
  KvmRunMapping(kvm_run* run, size_t size) : run_(run), size_(size) {}
  kvm_run* run_ = nullptr;
  size_t size_ = 0;
};

// A model-specific register to write.
struct MsrValue {
  uint32_t index;
  uint64_t value;
};
// The MSRs every vCPU starts with (SYSENTER/SYSCALL MSRs zero, TSC 0, fast strings on,
// MTRRs enabled with write-back default).
std::span<const MsrValue> boot_msrs();

// One vCPU fd. Also the AssistCpu the emulation assist works through.
class Vcpu final : public AssistCpu {
 public:
  // KVM_CREATE_VCPU with id (= APIC id) `index`, and its kvm_run mapping.
  static Result<Vcpu, KvmErr> create(const Kvm& kvm, const Vm& vm, uint32_t index);

  uint32_t index() const { return index_; }
  int fd() const { return fd_.get(); }
  // The shared exit-information page.
  kvm_run& run_data() const { return *run_.get(); }

  // KVM_SET_CPUID2.
  Result<void, KvmErr> set_cpuid(std::span<const kvm_cpuid_entry2> entries);
  // Writes boot_msrs(); an MSR the host refuses is logged and skipped (PVM refuses some).
  Result<void, KvmErr> set_boot_msrs();
  // The boot CPU state of `entry` (long mode for the Linux protocol, 32-bit protected mode for
  // PVH): segments, control registers, GDT/IDT, RIP/RSI/RBX/RSP and the FPU.
  Result<void, KvmErr> setup_boot_cpu(const BootEntry& entry);
  // LAPIC LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as firmware leaves them.
  Result<void, KvmErr> setup_lapic();
  // KVM_GET_MP_STATE / KVM_SET_MP_STATE (KVM_MP_STATE_*).
  Result<uint32_t, KvmErr> mp_state();
  Result<void, KvmErr> set_mp_state(uint32_t state);
  // KVM_SET_SIGNAL_MASK: the signal mask in force while the vCPU is in KVM_RUN.
  Result<void, KvmErr> set_signal_mask(const sigset_t& mask);

  // One KVM_RUN. EINTR (a kick or immediate_exit) and EAGAIN (an AP waiting for its SIPI)
  // come back as errors whose sys_errno the caller checks.
  Result<void, KvmErr> run();
  // Sets kvm_run.immediate_exit; safe to call from another thread.
  void set_immediate_exit(bool on) const;

  // AssistCpu.
  Result<kvm_regs, KvmErr> get_regs() override;
  Result<void, KvmErr> set_regs(const kvm_regs& regs) override;
  Result<kvm_sregs, KvmErr> get_sregs() override;
  Result<void, KvmErr> set_sregs(const kvm_sregs& sregs) override;
  Result<void, KvmErr> inject_exception(uint8_t vector,
                                        std::optional<uint32_t> error_code) override;
  Result<uint64_t, KvmErr> get_msr(uint32_t index) override;

 private:
  Vcpu(uint32_t index, UniqueFd fd, KvmRunMapping run)
      : index_(index), fd_(std::move(fd)), run_(std::move(run)) {}
  uint32_t index_;
  UniqueFd fd_;
  KvmRunMapping run_;
};

}  // namespace kindling::vmm
