// The user-mode SYSCALL repair for PVM hosts (docs/HOST.md).
//
// On PVM a guest user process's `syscall` jumps to LSTAR but leaves the CPU in ring 3: the
// fetch at the kernel entry point faults (#PF, error code 0x15: P|U|I) and the kernel would kill
// the process (for /init: a kernel panic). The kernel's #PF handler starts with `clac` (SMAP), an
// emulation failure that reaches kindling before the handler has done anything. There, the
// exception frame on the kernel stack tells the story: CS has RPL 3 and RIP is LSTAR. The
// repair discards that frame and puts the vCPU where SYSCALL would have: CS/SS from STAR,
// RIP = LSTAR, RSP = the user RSP, RFLAGS masked by FMASK. RCX (return RIP) and R11 (RFLAGS)
// were already set by the `syscall` itself.
//
// A user `jmp` to LSTAR faults the same way, with RCX and R11 of its choosing, so the repair
// demands everything a genuine SYSCALL leaves and a jump does not: the error code of a user
// instruction fetch from a present supervisor page, CS and SS the 64-bit user selectors STAR
// gives SYSRET, the frame's RFLAGS equal to R11 masked by FMASK (measured: PVM masks RFLAGS
// before the fetch faults; a jump does not, and user mode always runs with IF set), RCX != LSTAR,
// and the bytes 0F 05 at RCX - 2 in user-executable memory (read with the user's page tables). What
// is left for a forger is a state a real `syscall` at RCX - 2 would have produced.
//
// The handler address comes from the guest's own IDT (IDTR, vector 14), never from a symbol
// table. On hosts with hardware virtualization `syscall` works and this code never runs.
//
// Everything but repair_lost_syscall() is pure and tested with GuestMemory alone.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/memory/guest_memory.h"
#include "vmm/pvm/emulation_assist.h"
#include "vmm/pvm/page_walk.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {

// The MSRs SYSCALL uses (Intel SDM vol. 3A 5.8.8).
struct SyscallMsrs {
  uint64_t star = 0;   // [47:32]: kernel CS selector (SS = CS + 8)
  uint64_t lstar = 0;  // 64-bit entry point
  uint64_t fmask = 0;  // RFLAGS bits SYSCALL clears
};

// The #PF vector.
inline constexpr uint8_t kPageFaultVector = 14;
// Bytes per 64-bit IDT gate.
inline constexpr size_t kIdtGateSize = 16;

// A 64-bit IDT gate descriptor (Intel SDM vol. 3A 6.14.1, figure 6-8).
struct IdtGate {
  uint64_t offset = 0;  // the handler's linear address
  uint16_t selector = 0;
  uint8_t ist = 0;
  uint8_t type = 0;  // 0xE interrupt gate, 0xF trap gate
  uint8_t dpl = 0;
  bool present = false;
};

// Pure: decodes the 16 bytes of a gate; nullopt with fewer bytes.
std::optional<IdtGate> decode_idt_gate(std::span<const uint8_t> bytes);

// GUEST: the handler address of `vector` in the IDT at linear `base` (IDTR.limit `limit`),
// read through the guest page tables; nullopt when the gate lies beyond the limit, cannot be
// read, is not present, or is not an interrupt/trap gate.
std::optional<uint64_t> idt_handler(const memory::GuestMemory& mem, const PagingState& ps,
                                    uint64_t base, uint16_t limit, uint8_t vector);

// What the CPU pushed for an exception with an error code (64-bit mode, SDM vol. 3A 6.14.2),
// from the handler's RSP upwards.
struct ExceptionFrame {
  uint64_t error_code = 0;
  uint64_t rip = 0;
  uint64_t cs = 0;
  uint64_t rflags = 0;
  uint64_t rsp = 0;
  uint64_t ss = 0;
};
// Bytes of an ExceptionFrame on the stack.
inline constexpr size_t kErrorFrameSize = 48;

// Pure: parses the frame (little-endian words); nullopt with fewer than 48 bytes.
std::optional<ExceptionFrame> parse_error_frame(std::span<const uint8_t> bytes);

// The registers and state a lost SYSCALL is checked against.
struct SyscallEvidence {
  uint64_t rcx = 0;          // SYSCALL's return RIP
  uint64_t r11 = 0;          // SYSCALL's copy of RFLAGS
  uint32_t fetch_error = 0;  // the #PF error code of a user fetch from a supervisor page
};

// Pure: the frame and registers are a user-mode `syscall` that PVM left in ring 3: a user
// fetch fault (error code exactly ev.fetch_error) at RIP == LSTAR, CS/SS the 64-bit user
// selectors of STAR (STAR[63:48] + 16 and + 8, RPL 3), frame RFLAGS == R11 & ~FMASK (RF
// aside: the fault's delivery sets it) and RCX != LSTAR. The instruction bytes at RCX - 2 are
// checked by repair_lost_syscall().
bool is_lost_user_syscall(const ExceptionFrame& frame, const SyscallMsrs& msrs,
                          const SyscallEvidence& ev);

// The SYSCALL instruction (0F 05).
inline constexpr std::array<uint8_t, 2> kSyscallBytes = {0x0f, 0x05};

// The vCPU state SYSCALL would have produced.
struct SyscallEntryState {
  kvm_segment cs{};
  kvm_segment ss{};
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rflags = 0;
};

// Pure: SYSCALL's result for the user state in `frame` (SDM vol. 2B, SYSCALL): flat 64-bit
// DPL 0 code segment STAR[47:32] & ~3, data segment STAR[47:32] + 8, RIP = LSTAR, RSP = the
// user RSP, RFLAGS = frame RFLAGS & ~FMASK & ~RF | bit 1.
SyscallEntryState syscall_entry_state(const ExceptionFrame& frame, const SyscallMsrs& msrs);

// What repair_lost_syscall() did.
struct SyscallRepairOutcome {
  bool repaired = false;  // the vCPU now stands at LSTAR in ring 0
  std::string error;      // set when the repair applied but a KVM call failed
};

// GUEST: on an exit with the vCPU at the first instruction of the guest's #PF handler (64-bit,
// ring 0), checks the frame at RSP and, for a lost user SYSCALL (is_lost_user_syscall(), and
// 0F 05 at RCX - 2 readable by a user fetch), rewrites the vCPU state. Anything else (another
// RIP, a kernel-mode fault, a forged jump to LSTAR, an unreadable IDT or stack) is left alone
// with repaired = false and no error: the guest kernel sees its ordinary page fault.
SyscallRepairOutcome repair_lost_syscall(AssistCpu& cpu, const memory::GuestMemory& mem,
                                         const kvm_regs& regs, const kvm_sregs& sregs);

}  // namespace kindling::vmm
