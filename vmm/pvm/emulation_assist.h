// Emulation assist: finishes the few instructions KVM's instruction emulator gives up on.
//
// Only PVM hosts (docs/HOST.md), where guest kernel code runs in KVM's emulator, produce
// KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION for these instructions; on a host with
// hardware virtualization that exit does not occur and none of this code runs. The handled
// cases, and why each one is safe, are the table assist_cases() returns.
//
// Structure: decode_for_assist() is a pure function (bytes -> what to do); assist_emulation_
// failure() fetches the bytes (from the exit, else through the guest page tables), decodes and
// applies the action through the small AssistCpu interface, which a test can fake. The one
// case that needs more than the failing instruction, the user-mode SYSCALL repair of HOST.md
// (vmm/pvm/pvm_syscall.h), runs before the decode step in assist_emulation_failure().
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "vmm/kvm.h"

namespace kindling::vmm {

// The instructions the assist completes.
enum class AssistKind {
  kUnknown,
  kInt3,
  kUd2,
  kClac,
  kStac,
  kPopcnt,
  kFwait,
  kCmpxchg8b16b,
  kSyscallRepair,  // not an instruction: the lost user SYSCALL at the #PF entry
};
// Number of AssistKind values (for per-kind counters).
inline constexpr size_t kAssistKindCount = 9;
// The mnemonic ("int3", "popcnt", "unknown").
const char* to_string(AssistKind k);

// One row of the table of handled cases.
struct AssistCase {
  AssistKind kind;
  const char* encoding;  // the bytes matched
  const char* action;    // what the assist does
  const char* why;       // why this is what the CPU would have done
};
// Every handled case; anything else stops the VM with an error naming RIP and the bytes.
std::span<const AssistCase> assist_cases();

// How the code segment decodes: 16-, 32- or 64-bit.
enum class CodeMode { k16, k32, k64 };

// A ModRM memory operand: segment base + base + index * scale + disp (+ next RIP when
// RIP-relative), truncated to 32 bits under an address-size prefix.
struct MemOperand {
  int8_t base = -1;   // GPR number 0..15, -1 for none
  int8_t index = -1;  // GPR number 0..15, -1 for none
  uint8_t scale = 1;
  int64_t disp = 0;
  bool rip_relative = false;
  bool addr32 = false;
  uint8_t segment = 0;  // 0 for none, else the prefix byte (0x64 FS, 0x65 GS, ...)
};

// The decoded instruction.
struct DecodedInsn {
  AssistKind kind = AssistKind::kUnknown;
  uint8_t length = 0;  // bytes including prefixes
  // popcnt operands: destination register, source register or memory, operand size.
  // cmpxchg8b/16b: op_size 8 or 16 and the memory operand.
  uint8_t op_size = 0;  // 2, 4, 8 or 16
  uint8_t dst_reg = 0;
  bool src_is_mem = false;
  uint8_t src_reg = 0;
  MemOperand mem;
};

// Pure: decodes the instruction at the start of `bytes` if it is one of assist_cases().
// Fewer bytes than the instruction needs decode as kUnknown.
DecodedInsn decode_for_assist(std::span<const uint8_t> bytes, CodeMode mode);

// Pure: the result and RFLAGS of `popcnt` on `src` (OF SF ZF AF CF PF cleared, ZF = src == 0).
struct PopcntResult {
  uint64_t value;
  uint64_t rflags;
};
PopcntResult popcnt_apply(uint64_t src, uint8_t op_size, uint64_t rflags);

// The vCPU state the assist reads and changes (the real vCPU, or a fake in tests).
class AssistCpu {
 public:
  virtual ~AssistCpu() = default;
  // KVM_GET_REGS / KVM_SET_REGS.
  virtual Result<kvm_regs, KvmErr> get_regs() = 0;
  virtual Result<void, KvmErr> set_regs(const kvm_regs& regs) = 0;
  // KVM_GET_SREGS / KVM_SET_SREGS.
  virtual Result<kvm_sregs, KvmErr> get_sregs() = 0;
  virtual Result<void, KvmErr> set_sregs(const kvm_sregs& sregs) = 0;
  // Queues exception `vector`, with `error_code` when it has one, for delivery at the next
  // entry (a #PF's CR2 is set with set_sregs first).
  virtual Result<void, KvmErr> inject_exception(uint8_t vector,
                                                std::optional<uint32_t> error_code) = 0;
  // Reads an MSR (LSTAR, STAR, FMASK for the SYSCALL repair).
  virtual Result<uint64_t, KvmErr> get_msr(uint32_t index) = 0;
};

// What the assist did with one emulation failure.
struct AssistOutcome {
  bool handled = false;
  AssistKind kind = AssistKind::kUnknown;
  std::string error;  // when not handled: RIP, the bytes and the reason, for the error line
};

// GUEST: handles one KVM_INTERNAL_ERROR_EMULATION exit. `exit_bytes` are the instruction bytes
// KVM reported with the exit (empty when it reported none).
AssistOutcome assist_emulation_failure(AssistCpu& cpu, const memory::GuestMemory& mem,
                                       std::span<const uint8_t> exit_bytes);

// "emulation failure at RIP 0x..., bytes 0f 0b: why": the error line of an unhandled failure.
std::string describe_emulation_failure(uint64_t rip, std::span<const uint8_t> bytes,
                                       const std::string& why);

// The instruction bytes of an emulation-failure exit, when KVM provided them.
std::span<const uint8_t> emulation_failure_bytes(const kvm_run& run);

}  // namespace kindling::vmm
