#include "vmm/vcpu.h"

#include <asm/processor-flags.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "vmm/kvm_abi.h"
#include "vmm/kvm_ioctl.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {
namespace {

constexpr uint64_t kMiscEnableFastString = 1ULL << 0;
constexpr uint64_t kMtrrEnable = 1ULL << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// Segment descriptor type of a busy 64-bit TSS (Intel SDM vol. 3A, 3.5).
constexpr uint8_t kTypeTss64Busy = 0xb;

// Local APIC register offsets and LVT delivery modes (Intel SDM vol. 3A, 10.5.1).
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kDeliveryModeMask = 0x700;
constexpr uint32_t kDeliveryExtInt = 0x700;
constexpr uint32_t kDeliveryNmi = 0x400;

constexpr std::array<MsrValue, 11> kBootMsrs{{
    {kMsrSysenterCs, 0},
    {kMsrSysenterEsp, 0},
    {kMsrSysenterEip, 0},
    {kMsrStar, 0},
    {kMsrCstar, 0},
    {kMsrKernelGsBase, 0},
    {kMsrFmask, 0},
    {kMsrLstar, 0},
    {kMsrTsc, 0},
    {kMsrMiscEnable, kMiscEnableFastString},
    {kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack},
}};

uint32_t lapic_reg(const kvm_lapic_state& st, size_t off) {
  uint32_t v;
  std::memcpy(&v, st.regs + off, sizeof(v));
  return v;
}

void set_lapic_reg(kvm_lapic_state& st, size_t off, uint32_t v) {
  std::memcpy(st.regs + off, &v, sizeof(v));
}

}  // namespace

std::span<const MsrValue> boot_msrs() {
  return kBootMsrs;
}

Result<KvmRunMapping, KvmErr> KvmRunMapping::map(int vcpu_fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
  if (p == MAP_FAILED) return fail_errno(KvmError::kMmap, "kvm_run");
  return KvmRunMapping(static_cast<kvm_run*>(p), size);
}

KvmRunMapping::KvmRunMapping(KvmRunMapping&& o) noexcept
    : run_(std::exchange(o.run_, nullptr)), size_(std::exchange(o.size_, 0)) {}

KvmRunMapping& KvmRunMapping::operator=(KvmRunMapping&& o) noexcept {
  if (this != &o) {
    if (run_ != nullptr) ::munmap(run_, size_);
    run_ = std::exchange(o.run_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

KvmRunMapping::~KvmRunMapping() {
  if (run_ != nullptr) ::munmap(run_, size_);
}

Result<Vcpu, KvmErr> Vcpu::create(const Kvm& kvm, const Vm& vm, uint32_t index) {
  auto fd = vm.create_vcpu_fd(index);
  if (!fd) return fd.take_error();
  auto size = kvm.vcpu_mmap_size();
  if (!size) return size.take_error();
  auto run = KvmRunMapping::map(fd->get(), *size);
  if (!run) return run.take_error();
  return Vcpu(index, std::move(*fd), std::move(*run));
}

Result<void, KvmErr> Vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
  abi::FlexBuffer<abi::Cpuid2Header, kvm_cpuid_entry2> buf(entries.size());
  buf.header()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.entries(), entries.data(), entries.size_bytes());
  if (xioctl(fd_.get(), abi::kSetCpuid2, buf.data()) < 0) return ioctl_error("KVM_SET_CPUID2");
  return {};
}

Result<void, KvmErr> Vcpu::set_boot_msrs() {
  // KVM_SET_MSRS stops at the first MSR it refuses and returns how many it set: skip that one
  // and go on with the rest.
  size_t next = 0;
  while (next < kBootMsrs.size()) {
    const size_t n = kBootMsrs.size() - next;
    abi::FlexBuffer<abi::MsrsHeader, kvm_msr_entry> buf(n);
    buf.header()->nmsrs = static_cast<uint32_t>(n);
    for (size_t i = 0; i < n; ++i) {
      buf.entries()[i] = kvm_msr_entry{kBootMsrs[next + i].index, 0, kBootMsrs[next + i].value};
    }
    int set = xioctl(fd_.get(), abi::kSetMsrs, buf.data());
    if (set < 0) return ioctl_error("KVM_SET_MSRS");
    next += static_cast<size_t>(set);
    if (next < kBootMsrs.size()) {
      KLOG_DEBUG("vCPU %u: host refused MSR 0x%x; left at its reset value", index_,
                 kBootMsrs[next].index);
      ++next;
    }
  }
  return {};
}

Result<void, KvmErr> Vcpu::setup_boot_cpu(const BootEntry& entry) {
  auto sregs = get_sregs();
  if (!sregs) return sregs.take_error();
  kvm_sregs s = *sregs;
  const bool pvh = entry.protocol == BootProtocol::kPvh;
  s.cs = flat_segment(entry.code_selector, kTypeCodeExecReadAccessed, !pvh);
  const kvm_segment data = flat_segment(entry.data_selector, kTypeDataReadWriteAccessed, false);
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  // A busy TSS (type 0xb is the busy 32-bit TSS in protected mode and the busy 64-bit TSS in
  // long mode): VM entry requires a usable TR even though nothing uses it yet.
  s.tr = kvm_segment{};
  s.tr.limit = 0xffff;
  s.tr.type = kTypeTss64Busy;
  s.tr.present = 1;
  s.gdt.base = entry.gdt_base;
  s.gdt.limit = entry.gdt_limit;
  s.idt.base = entry.idt_base;
  s.idt.limit = entry.idt_limit;
  if (pvh) {
    // PVH: flat 32-bit protected mode, paging off (start_info.h's "Initial state").
    s.cr0 = X86_CR0_PE | X86_CR0_ET;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
  } else {
    s.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    s.cr3 = entry.cr3;
    s.cr4 = X86_CR4_PAE;
    s.efer = kEferLme | kEferLma;
  }
  auto ok = set_sregs(s);
  if (!ok) return ok;

  kvm_regs r{};
  r.rip = entry.rip;
  r.rsi = entry.rsi;
  r.rbx = entry.rbx;
  r.rsp = entry.rsp;
  r.rbp = entry.rsp;
  r.rflags = X86_EFLAGS_FIXED;
  ok = set_regs(r);
  if (!ok) return ok;

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word (FNINIT)
  fpu.mxcsr = 0x1f80;  // all SSE exceptions masked (reset value)
  if (xioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) return ioctl_error("KVM_SET_FPU");
  return {};
}

Result<void, KvmErr> Vcpu::setup_lapic() {
  kvm_lapic_state st{};
  if (xioctl(fd_.get(), KVM_GET_LAPIC, &st) < 0) return ioctl_error("KVM_GET_LAPIC");
  set_lapic_reg(st, kApicLvtLint0,
                (lapic_reg(st, kApicLvtLint0) & ~kDeliveryModeMask) | kDeliveryExtInt);
  set_lapic_reg(st, kApicLvtLint1,
                (lapic_reg(st, kApicLvtLint1) & ~kDeliveryModeMask) | kDeliveryNmi);
  if (xioctl(fd_.get(), KVM_SET_LAPIC, &st) < 0) return ioctl_error("KVM_SET_LAPIC");
  return {};
}

Result<uint32_t, KvmErr> Vcpu::mp_state() {
  kvm_mp_state st{};
  if (xioctl(fd_.get(), KVM_GET_MP_STATE, &st) < 0) return ioctl_error("KVM_GET_MP_STATE");
  return st.mp_state;
}

Result<void, KvmErr> Vcpu::set_mp_state(uint32_t state) {
  kvm_mp_state st{state};
  if (xioctl(fd_.get(), KVM_SET_MP_STATE, &st) < 0) return ioctl_error("KVM_SET_MP_STATE");
  return {};
}

Result<void, KvmErr> Vcpu::set_signal_mask(const sigset_t& mask) {
  abi::SignalMask m{};
  // The kernel's sigset is 64 bits; glibc's sigset_t starts with those bits.
  m.len = sizeof(m.sigset);
  std::memcpy(m.sigset, &mask, sizeof(m.sigset));
  if (xioctl(fd_.get(), abi::kSetSignalMask, &m) < 0) return ioctl_error("KVM_SET_SIGNAL_MASK");
  return {};
}

Result<void, KvmErr> Vcpu::run() {
  // No EINTR retry here: EINTR is how a stop request reaches the vCPU loop.
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) return ioctl_error("KVM_RUN");
  return {};
}

void Vcpu::set_immediate_exit(bool on) const {
  std::atomic_ref<uint8_t>(run_.get()->immediate_exit).store(on ? 1 : 0, std::memory_order_seq_cst);
}

Result<kvm_regs, KvmErr> Vcpu::get_regs() {
  kvm_regs r{};
  if (xioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return ioctl_error("KVM_GET_REGS");
  return r;
}

Result<void, KvmErr> Vcpu::set_regs(const kvm_regs& regs) {
  if (xioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) return ioctl_error("KVM_SET_REGS");
  return {};
}

Result<kvm_sregs, KvmErr> Vcpu::get_sregs() {
  kvm_sregs s{};
  if (xioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return ioctl_error("KVM_GET_SREGS");
  return s;
}

Result<void, KvmErr> Vcpu::set_sregs(const kvm_sregs& sregs) {
  if (xioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) return ioctl_error("KVM_SET_SREGS");
  return {};
}

Result<void, KvmErr> Vcpu::inject_exception(uint8_t vector, std::optional<uint32_t> error_code) {
  kvm_vcpu_events ev{};
  if (xioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &ev) < 0) return ioctl_error("KVM_GET_VCPU_EVENTS");
  ev.exception.injected = 1;
  ev.exception.pending = 0;
  ev.exception.nr = vector;
  ev.exception.has_error_code = error_code.has_value() ? 1 : 0;
  ev.exception.error_code = error_code.value_or(0);
  if (xioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &ev) < 0) return ioctl_error("KVM_SET_VCPU_EVENTS");
  return {};
}

Result<uint64_t, KvmErr> Vcpu::get_msr(uint32_t index) {
  abi::FlexBuffer<abi::MsrsHeader, kvm_msr_entry> buf(1);
  buf.header()->nmsrs = 1;
  buf.entries()[0] = kvm_msr_entry{index, 0, 0};
  if (xioctl(fd_.get(), abi::kGetMsrs, buf.data()) != 1) {
    return fail(KvmError::kIoctl, errno, "KVM_GET_MSRS");
  }
  return buf.entries()[0].data;
}

}  // namespace kindling::vmm
