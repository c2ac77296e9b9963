#include "vmm/pvm/pvm_syscall.h"

#include <asm/processor-flags.h>

#include <array>
#include <cinttypes>
#include <cstdio>

#include "vmm/boot/le_bytes.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {
namespace {

constexpr uint8_t kGateInterrupt64 = 0xE;
constexpr uint8_t kGateTrap64 = 0xF;

std::string kvm_error(const char* what, const KvmErr& e) {
  return std::string("SYSCALL repair: ") + what + ": " + e.message();
}

}  // namespace

std::optional<IdtGate> decode_idt_gate(std::span<const uint8_t> b) {
  if (b.size() < kIdtGateSize) return std::nullopt;
  IdtGate g;
  // The handler offset is split over bytes 0-1 (15:0), 6-7 (31:16) and 8-11 (63:32).
  g.offset = uint64_t{le16(b, 0)} | uint64_t{le16(b, 6)} << 16 | uint64_t{le32(b, 8)} << 32;
  g.selector = le16(b, 2);
  g.ist = b[4] & 7;
  g.type = b[5] & 0xF;
  g.dpl = (b[5] >> 5) & 3;
  g.present = (b[5] & 0x80) != 0;
  return g;
}

std::optional<uint64_t> idt_handler(const memory::GuestMemory& mem, const PagingState& ps,
                                    uint64_t base, uint16_t limit, uint8_t vector) {
  const uint64_t offset = static_cast<uint64_t>(vector) * kIdtGateSize;
  // GUEST: IDTR.limit is the offset of the last valid byte.
  if (offset + kIdtGateSize - 1 > limit) return std::nullopt;
  std::array<uint8_t, kIdtGateSize> raw{};
  if (!read_linear(mem, ps, base + offset, raw)) return std::nullopt;
  const auto gate = decode_idt_gate(raw);
  if (!gate || !gate->present) return std::nullopt;
  if (gate->type != kGateInterrupt64 && gate->type != kGateTrap64) return std::nullopt;
  return gate->offset;
}

std::optional<ExceptionFrame> parse_error_frame(std::span<const uint8_t> b) {
  if (b.size() < kErrorFrameSize) return std::nullopt;
  return ExceptionFrame{le64(b, 0), le64(b, 8), le64(b, 16), le64(b, 24), le64(b, 32), le64(b, 40)};
}

bool is_lost_user_syscall(const ExceptionFrame& frame, const SyscallMsrs& msrs,
                          const SyscallEvidence& ev) {
  const uint64_t sysret_base = (msrs.star >> 48) & 0xffff;
  const uint64_t user_cs = (sysret_base + 16) | 3;
  const uint64_t user_ss = (sysret_base + 8) | 3;
  // PVM's `syscall` copies RFLAGS to R11 and masks RFLAGS with FMASK before the fetch at LSTAR
  // faults; the fault's delivery adds RF. A jump leaves RFLAGS unmasked (IF stays set).
  const uint64_t rf = X86_EFLAGS_RF;
  const bool flags_match = (frame.rflags & ~rf) == (ev.r11 & ~msrs.fmask & ~rf);
  return frame.rip == msrs.lstar && frame.error_code == ev.fetch_error && frame.cs == user_cs &&
         frame.ss == user_ss && flags_match && ev.rcx != msrs.lstar;
}

SyscallEntryState syscall_entry_state(const ExceptionFrame& frame, const SyscallMsrs& msrs) {
  const uint16_t kernel_cs = static_cast<uint16_t>((msrs.star >> 32) & 0xffff);
  SyscallEntryState s;
  s.cs = flat_segment(static_cast<uint16_t>(kernel_cs & ~3u), kTypeCodeExecReadAccessed, true);
  s.ss = flat_segment(static_cast<uint16_t>(kernel_cs + 8), kTypeDataReadWriteAccessed, false);
  s.rip = msrs.lstar;
  s.rsp = frame.rsp;
  s.rflags =
      (frame.rflags & ~msrs.fmask & ~static_cast<uint64_t>(X86_EFLAGS_RF)) | X86_EFLAGS_FIXED;
  return s;
}

SyscallRepairOutcome repair_lost_syscall(AssistCpu& cpu, const memory::GuestMemory& mem,
                                         const kvm_regs& regs, const kvm_sregs& sregs) {
  // Only 64-bit ring-0 code can stand at the #PF handler's first instruction.
  if ((sregs.efer & kEferLma) == 0 || !sregs.cs.l || sregs.cs.dpl != 0) return {};
  const PagingState ps{sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer};
  // GUEST: the IDT and the handler address are the guest's.
  const auto handler = idt_handler(mem, ps, sregs.idt.base, sregs.idt.limit, kPageFaultVector);
  if (!handler || *handler != regs.rip) return {};
  // GUEST: the frame the CPU pushed on the guest's kernel stack.
  std::array<uint8_t, kErrorFrameSize> raw{};
  if (!read_linear(mem, ps, regs.rsp, raw)) return {};
  const ExceptionFrame frame = *parse_error_frame(raw);
  if ((frame.cs & 3) != 3) return {};  // a kernel-mode fault: the common case, no MSR reads

  SyscallMsrs msrs;
  auto lstar = cpu.get_msr(kMsrLstar);
  if (!lstar) return {false, kvm_error("reading LSTAR", lstar.error())};
  if (frame.rip != *lstar) return {};
  auto star = cpu.get_msr(kMsrStar);
  if (!star) return {false, kvm_error("reading STAR", star.error())};
  auto fmask = cpu.get_msr(kMsrFmask);
  if (!fmask) return {false, kvm_error("reading FMASK", fmask.error())};
  msrs.lstar = *lstar;
  msrs.star = *star;
  msrs.fmask = *fmask;

  // GUEST: RCX and R11 are whatever user mode left in them; a jump to LSTAR sets them at will.
  constexpr AccessType kUserFetch{false, true, true};
  const SyscallEvidence ev{regs.rcx, regs.r11,
                           *page_fault_error_code(PageWalkError::kProtection, kUserFetch, ps)};
  if (!is_lost_user_syscall(frame, msrs, ev)) return {};
  // GUEST: the instruction that trapped must be a `syscall` the user could execute, read with
  // the page tables in force at the fault (the user's CR3).
  std::array<uint8_t, kSyscallBytes.size()> insn{};
  if (!read_checked(mem, ps, regs.rcx - insn.size(), kUserFetch, insn)) return {};
  if (insn != kSyscallBytes) return {};

  const SyscallEntryState entry = syscall_entry_state(frame, msrs);
  kvm_sregs s = sregs;
  s.cs = entry.cs;
  s.ss = entry.ss;
  kvm_regs r = regs;
  r.rip = entry.rip;
  r.rsp = entry.rsp;
  r.rflags = entry.rflags;
  if (auto ok = cpu.set_sregs(s); !ok) return {false, kvm_error("KVM_SET_SREGS", ok.error())};
  if (auto ok = cpu.set_regs(r); !ok) return {false, kvm_error("KVM_SET_REGS", ok.error())};
  return {true, {}};
}

}  // namespace kindling::vmm
