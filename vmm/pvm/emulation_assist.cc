#include "vmm/pvm/emulation_assist.h"

#include <asm/processor-flags.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <optional>

#include "common/hex.h"
#include "vmm/boot/le_bytes.h"
#include "vmm/pvm/page_walk.h"
#include "vmm/pvm/pvm_syscall.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {
namespace {

// The table of handled cases. Each is an instruction KVM's emulator (running guest kernel code
// on PVM hosts) fails on, and each action is what the CPU itself would have done.
constexpr std::array<AssistCase, kAssistKindCount> kCases{{
    {AssistKind::kInt3, "CC", "RIP += 1, inject #BP (vector 3)",
     "int3 is a trap: the handler sees RIP after the instruction (Linux's int3 self-test)"},
    {AssistKind::kUd2, "0F 0B", "inject #UD (vector 6), RIP unchanged",
     "ud2 always raises #UD as a fault (Linux BUG()/WARN() use it)"},
    {AssistKind::kClac, "0F 01 CA", "RFLAGS.AC = 0, RIP += 3",
     "SMAP's clac at every kernel entry and user copy; the only effect is on AC"},
    {AssistKind::kStac, "0F 01 CB", "RFLAGS.AC = 1, RIP += 3",
     "SMAP's stac before user copies; the only effect is on AC"},
    {AssistKind::kPopcnt, "F3 [REX] 0F B8 /r", "dst = popcount(src), flags, RIP += length",
     "the kernel's hweight helpers; register and memory sources are computed exactly, a memory "
     "source read at the guest's CPL (#PF injected when not allowed)"},
    {AssistKind::kFwait, "9B", "RIP += 1",
     "fwait only raises pending x87 exceptions, which the guest never has unmasked here"},
    {AssistKind::kCmpxchg8b16b, "[F0] [REX.W] 0F C7 /1 (memory)",
     "compare RDX:RAX with m64/m128 and exchange, atomically on the host mapping, after the "
     "CPU's own checks at the guest's CPL: U/S, R/W (CR0.WP) -> #PF with CR2; Accessed on the "
     "walk and Dirty on the leaf set; a non-canonical address -> #GP(0) / #SS(0)",
     "KVM's emulator refuses cmpxchg16b (Linux SLUB's cmpxchg_double); done with the host's "
     "own locked cmpxchg so other vCPUs see it atomic"},
    {AssistKind::kSyscallRepair, "any, at the first instruction of the IDT's #PF handler",
     "frame of a user fetch fault (0x15) at LSTAR from STAR's user CS/SS, frame RFLAGS == R11 & "
     "~FMASK, RCX != LSTAR, 0F 05 at RCX - 2 user-executable: drop the frame, CS/SS from STAR, "
     "RIP = LSTAR, RSP = frame RSP, RFLAGS = frame RFLAGS & ~FMASK & ~RF | 2; anything else "
     "(a user jmp to LSTAR) keeps its ordinary #PF",
     "PVM leaves a user `syscall` in ring 3 at LSTAR, whose fetch faults; this is the state "
     "SYSCALL itself produces (RCX and R11 are already set). See vmm/pvm/pvm_syscall.h"},
    {AssistKind::kUnknown, "anything else", "stop the VM, report RIP and the bytes",
     "guessing would corrupt the guest silently"},
}};

constexpr size_t kMaxInsnLength = 15;
constexpr uint8_t kVectorBp = 3;   // #BP
constexpr uint8_t kVectorUd = 6;   // #UD
constexpr uint8_t kVectorSs = 12;  // #SS
constexpr uint8_t kVectorGp = 13;  // #GP

bool is_segment_prefix(uint8_t b) {
  return b == 0x26 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x64 || b == 0x65;
}

struct Prefixes {
  size_t count = 0;
  bool opsize = false;
  bool addr = false;
  bool rep = false;
  bool repne = false;
  bool lock = false;
  uint8_t segment = 0;
  uint8_t rex = 0;
};

Prefixes scan_prefixes(std::span<const uint8_t> b, CodeMode mode) {
  Prefixes p;
  for (; p.count < b.size() && p.count < kMaxInsnLength; ++p.count) {
    uint8_t x = b[p.count];
    if (x == 0x66) {
      p.opsize = true;
    } else if (x == 0x67) {
      p.addr = true;
    } else if (x == 0xF3) {
      p.rep = true;
    } else if (x == 0xF2) {
      p.repne = true;
    } else if (x == 0xF0) {
      p.lock = true;
    } else if (is_segment_prefix(x)) {
      p.segment = x;
    } else {
      break;
    }
  }
  // REX counts only directly in front of the opcode, and only in 64-bit code.
  if (mode == CodeMode::k64 && p.count < b.size() && (b[p.count] & 0xF0) == 0x40) {
    p.rex = b[p.count++];
  }
  return p;
}

// Decodes the ModRM (+SIB, displacement) at b[pos] into `d`; returns the position after it,
// or 0 when the bytes run out or the addressing form is not supported.
size_t decode_modrm(std::span<const uint8_t> b, size_t pos, CodeMode mode, const Prefixes& p,
                    DecodedInsn& d) {
  if (pos >= b.size()) return 0;
  const uint8_t modrm = b[pos++];
  const uint8_t mod = modrm >> 6;
  const uint8_t rm = modrm & 7;
  const uint8_t rex_r = (p.rex & 4) ? 8 : 0, rex_x = (p.rex & 2) ? 8 : 0,
                rex_b = (p.rex & 1) ? 8 : 0;
  d.dst_reg = static_cast<uint8_t>(((modrm >> 3) & 7) | rex_r);
  if (mod == 3) {
    d.src_reg = static_cast<uint8_t>(rm | rex_b);
    return pos;
  }
  // 16-bit addressing (16-bit code without 67, 32-bit code with it) is not supported.
  const bool addr16 = (mode == CodeMode::k16) != p.addr;
  if (addr16) return 0;
  d.src_is_mem = true;
  d.mem.addr32 = mode != CodeMode::k64 || p.addr;
  d.mem.segment = p.segment;
  size_t disp_bytes = mod == 1 ? 1 : (mod == 2 ? 4 : 0);
  if (rm == 4) {
    if (pos >= b.size()) return 0;
    const uint8_t sib = b[pos++];
    d.mem.scale = static_cast<uint8_t>(1u << (sib >> 6));
    const uint8_t index = static_cast<uint8_t>(((sib >> 3) & 7) | rex_x);
    if (index != 4) d.mem.index = static_cast<int8_t>(index);
    if ((sib & 7) == 5 && mod == 0) {
      disp_bytes = 4;  // no base, disp32
    } else {
      d.mem.base = static_cast<int8_t>((sib & 7) | rex_b);
    }
  } else if (rm == 5 && mod == 0) {
    disp_bytes = 4;
    d.mem.rip_relative = mode == CodeMode::k64;
  } else {
    d.mem.base = static_cast<int8_t>(rm | rex_b);
  }
  if (pos + disp_bytes > b.size()) return 0;
  if (disp_bytes == 1) {
    d.mem.disp = static_cast<int8_t>(b[pos]);
  } else if (disp_bytes == 4) {
    d.mem.disp = static_cast<int32_t>(le32(b, pos));
  }
  return pos + disp_bytes;
}

DecodedInsn decode_popcnt(std::span<const uint8_t> b, size_t pos, CodeMode mode,
                          const Prefixes& p) {
  DecodedInsn d;
  if (!p.rep || p.repne || p.lock) return {};
  if (p.rex & 8) {
    d.op_size = 8;
  } else {
    d.op_size = (mode == CodeMode::k16) != p.opsize ? 2 : 4;
  }
  size_t end = decode_modrm(b, pos, mode, p, d);
  if (end == 0 || end > kMaxInsnLength) return {};
  d.kind = AssistKind::kPopcnt;
  d.length = static_cast<uint8_t>(end);
  return d;
}

// 0F C7 /1 with a memory operand: cmpxchg8b, or cmpxchg16b with REX.W.
DecodedInsn decode_cmpxchg(std::span<const uint8_t> b, size_t pos, CodeMode mode,
                           const Prefixes& p) {
  if (pos >= b.size() || ((b[pos] >> 3) & 7) != 1 || (b[pos] >> 6) == 3) return {};
  if (p.opsize || p.rep || p.repne) return {};
  DecodedInsn d;
  d.op_size = (p.rex & 8) ? 16 : 8;
  size_t end = decode_modrm(b, pos, mode, p, d);
  if (end == 0 || end > kMaxInsnLength) return {};
  d.kind = AssistKind::kCmpxchg8b16b;
  d.length = static_cast<uint8_t>(end);
  return d;
}

DecodedInsn simple(AssistKind kind, size_t length) {
  DecodedInsn d;
  d.kind = kind;
  d.length = static_cast<uint8_t>(length);
  return d;
}

// kvm_regs in the x86 GPR numbering (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
__u64& gpr(kvm_regs& r, int n) {
  switch (n) {
    case 0:
      return r.rax;
    case 1:
      return r.rcx;
    case 2:
      return r.rdx;
    case 3:
      return r.rbx;
    case 4:
      return r.rsp;
    case 5:
      return r.rbp;
    case 6:
      return r.rsi;
    case 7:
      return r.rdi;
    case 8:
      return r.r8;
    case 9:
      return r.r9;
    case 10:
      return r.r10;
    case 11:
      return r.r11;
    case 12:
      return r.r12;
    case 13:
      return r.r13;
    case 14:
      return r.r14;
    default:
      return r.r15;
  }
}

const kvm_segment& segment_for(const kvm_sregs& s, const MemOperand& m) {
  switch (m.segment) {
    case 0x26:
      return s.es;
    case 0x2E:
      return s.cs;
    case 0x36:
      return s.ss;
    case 0x3E:
      return s.ds;
    case 0x64:
      return s.fs;
    case 0x65:
      return s.gs;
    default:
      return (m.base == 4 || m.base == 5) ? s.ss : s.ds;
  }
}

// The linear address of a memory operand (64-bit code ignores all bases but FS and GS).
// Outside 64-bit mode (protected or compatibility mode) linear addresses are 32 bits wide:
// base + offset wraps at 4 GiB.
uint64_t linear_address(const kvm_regs& regs, const kvm_sregs& sregs, const DecodedInsn& d,
                        CodeMode mode) {
  kvm_regs r = regs;
  const MemOperand& m = d.mem;
  uint64_t ea = static_cast<uint64_t>(m.disp);
  if (m.base >= 0) ea += gpr(r, m.base);
  if (m.index >= 0) ea += gpr(r, m.index) * m.scale;
  if (m.rip_relative) ea += regs.rip + d.length;
  if (m.addr32) ea &= 0xffffffffULL;
  if (mode != CodeMode::k64) return (ea + segment_for(sregs, m).base) & 0xffffffffULL;
  const bool seg_applies = m.segment == 0x64 || m.segment == 0x65;
  return seg_applies ? ea + segment_for(sregs, m).base : ea;
}

CodeMode code_mode(const kvm_sregs& s) {
  if ((s.efer & kEferLma) != 0 && s.cs.l) return CodeMode::k64;
  return s.cs.db ? CodeMode::k32 : CodeMode::k16;
}

// The current privilege level: CS.RPL in protected mode, 0 in real mode.
unsigned cpl(const kvm_sregs& s) {
  return (s.cr0 & X86_CR0_PE) != 0 ? (s.cs.selector & 3u) : 0u;
}

AssistOutcome failed(AssistKind kind, std::string error) {
  AssistOutcome o;
  o.kind = kind;
  o.error = std::move(error);
  return o;
}

// Reads up to 15 instruction bytes at CS:RIP; a fetch that crosses into an unmapped page keeps
// what the first page holds.
size_t fetch_bytes(const memory::GuestMemory& mem, const kvm_regs& regs, const kvm_sregs& sregs,
                   CodeMode mode, std::array<uint8_t, kMaxInsnLength>& out) {
  const PagingState ps{sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer};
  const uint64_t linear =
      mode == CodeMode::k64 ? regs.rip : (regs.rip + sregs.cs.base) & 0xffffffffULL;
  if (read_linear(mem, ps, linear, out)) return out.size();
  size_t first = std::min<size_t>(out.size(), 4096 - (linear & 4095));
  if (read_linear(mem, ps, linear, std::span<uint8_t>(out).first(first))) return first;
  return 0;
}

// Locked compare-exchange of `size` (8 or 16) bytes at `p`: compares with hi:lo; on a match
// stores new_hi:new_lo and returns true, else loads the memory into hi:lo.
bool locked_cmpxchg(uint8_t* p, uint8_t size, uint64_t& lo, uint64_t& hi, uint64_t new_lo,
                    uint64_t new_hi) {
  bool equal;
  if (size == 16) {
    asm volatile("lock cmpxchg16b %1"
                 : "=@ccz"(equal), "+m"(*reinterpret_cast<unsigned __int128*>(p)), "+a"(lo),
                   "+d"(hi)
                 : "b"(new_lo), "c"(new_hi)
                 : "memory");
    return equal;
  }
  uint64_t expected = (hi << 32) | (lo & 0xffffffffULL);
  const uint64_t desired = (new_hi << 32) | (new_lo & 0xffffffffULL);
  equal = __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(p), &expected, desired, false,
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  lo = expected & 0xffffffffULL;
  hi = expected >> 32;
  return equal;
}

// An exception an emulated access raises instead of completing.
struct Fault {
  uint8_t vector = 0;
  uint32_t error_code = 0;
  std::optional<uint64_t> cr2;  // the faulting address, for #PF
};

// How an emulated instruction ended: done, a fault to inject, or an error that stops the VM.
struct ExecResult {
  std::optional<Fault> fault;
  std::string error;
};

// The exception a failed checked walk raises: #PF (with CR2 = `linear`) for page faults,
// #GP(0) / #SS(0) for a non-canonical address; nullopt (stop the VM) for the rest.
std::optional<Fault> fault_for(const PageWalkErr& e, const AccessType& access,
                               const PagingState& ps, uint64_t linear, bool stack_segment) {
  if (auto code = page_fault_error_code(e.code, access, ps)) {
    return Fault{kPageFaultVector, *code, linear};
  }
  if (e.code == PageWalkError::kNonCanonical) {
    return Fault{stack_segment ? kVectorSs : kVectorGp, 0, std::nullopt};
  }
  return std::nullopt;
}

// GUEST: reads a memory operand as the CPU would at the guest's CPL, page by page: permission
// checks, Accessed set on each walk; a fault instead when the access is not allowed.
ExecResult read_operand(const memory::GuestMemory& mem, const kvm_sregs& sregs, uint64_t linear,
                        bool stack_segment, std::span<uint8_t> out) {
  const PagingState ps{sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer};
  const AccessType access{false, cpl(sregs) == 3, false};
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t va = linear + done;
    const size_t chunk = std::min<uint64_t>(out.size() - done, 4096 - (va & 4095));
    auto t = translate_checked(mem, ps, va, access);
    if (!t) {
      if (auto f = fault_for(t.error(), access, ps, va, stack_segment)) return {f, {}};
      return {std::nullopt, t.error().message()};
    }
    if (auto ad = set_accessed_dirty(mem, *t, false); !ad)
      return {std::nullopt, ad.error().message()};
    if (auto rd = mem.read(t->address, out.subspan(done, chunk)); !rd) {
      return {std::nullopt, rd.error().message()};
    }
    done += chunk;
  }
  return {};
}

// GUEST: cmpxchg8b/16b on a guest-chosen address, found through the checked page walk at the
// guest's CPL: a locked cmpxchg always writes (the old value back on a mismatch), so it needs
// write access, and sets Accessed on the walk and Dirty on the leaf. A page fault or a
// non-canonical address becomes the guest's exception; the operand must be naturally aligned
// (cmpxchg16b faults otherwise: not emulated, reported).
ExecResult do_cmpxchg(const memory::GuestMemory& mem, const kvm_sregs& sregs, kvm_regs& r,
                      const DecodedInsn& d, CodeMode mode) {
  const PagingState ps{sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer};
  const uint64_t linear = linear_address(r, sregs, d, mode);
  if (linear % d.op_size != 0) return {std::nullopt, "misaligned operand"};
  const AccessType access{true, cpl(sregs) == 3, false};
  auto t = translate_checked(mem, ps, linear, access);
  if (!t) {
    const bool stack = &segment_for(sregs, d.mem) == &sregs.ss;
    if (auto f = fault_for(t.error(), access, ps, linear, stack)) return {f, {}};
    return {std::nullopt, "operand: " + t.error().message()};
  }
  auto host = mem.slice(t->address, d.op_size);
  if (!host) return {std::nullopt, "operand: " + host.error().message()};
  if (auto ad = set_accessed_dirty(mem, *t, true); !ad) {
    return {std::nullopt, "operand: " + ad.error().message()};
  }
  uint64_t lo = r.rax, hi = r.rdx;
  const bool equal = locked_cmpxchg(host->data(), d.op_size, lo, hi, r.rbx, r.rcx);
  if (equal) {
    r.rflags |= X86_EFLAGS_ZF;
  } else {
    r.rflags &= ~static_cast<uint64_t>(X86_EFLAGS_ZF);
    r.rax = lo;
    r.rdx = hi;
  }
  return {};
}

// Delivers `f` to the guest: CR2 first for a #PF, then the exception; RIP stays on the
// faulting instruction.
Result<void, KvmErr> raise(AssistCpu& cpu, const kvm_sregs& sregs, const Fault& f) {
  if (f.cr2) {
    kvm_sregs s = sregs;
    s.cr2 = *f.cr2;
    if (auto ok = cpu.set_sregs(s); !ok) return ok;
  }
  return cpu.inject_exception(f.vector, f.error_code);
}

}  // namespace

const char* to_string(AssistKind k) {
  switch (k) {
    case AssistKind::kUnknown:
      return "unknown";
    case AssistKind::kInt3:
      return "int3";
    case AssistKind::kUd2:
      return "ud2";
    case AssistKind::kClac:
      return "clac";
    case AssistKind::kStac:
      return "stac";
    case AssistKind::kPopcnt:
      return "popcnt";
    case AssistKind::kFwait:
      return "fwait";
    case AssistKind::kCmpxchg8b16b:
      return "cmpxchg8b/16b";
    case AssistKind::kSyscallRepair:
      return "syscall-repair";
  }
  return "unknown";
}

std::span<const AssistCase> assist_cases() {
  return kCases;
}

DecodedInsn decode_for_assist(std::span<const uint8_t> bytes, CodeMode mode) {
  const Prefixes p = scan_prefixes(bytes, mode);
  size_t i = p.count;
  if (i >= bytes.size()) return {};
  const bool mandatory = p.opsize || p.rep || p.repne;
  const uint8_t op = bytes[i];
  if (op == 0xCC && !p.lock) return simple(AssistKind::kInt3, i + 1);
  if (op == 0x9B && !p.lock) return simple(AssistKind::kFwait, i + 1);
  if (op != 0x0F || i + 1 >= bytes.size()) return {};
  const uint8_t op2 = bytes[i + 1];
  if (op2 == 0x0B) return simple(AssistKind::kUd2, i + 2);
  if (op2 == 0x01 && i + 2 < bytes.size() && !mandatory && !p.lock) {
    if (bytes[i + 2] == 0xCA) return simple(AssistKind::kClac, i + 3);
    if (bytes[i + 2] == 0xCB) return simple(AssistKind::kStac, i + 3);
    return {};
  }
  if (op2 == 0xB8) return decode_popcnt(bytes, i + 2, mode, p);
  if (op2 == 0xC7) return decode_cmpxchg(bytes, i + 2, mode, p);
  return {};
}

PopcntResult popcnt_apply(uint64_t src, uint8_t op_size, uint64_t rflags) {
  const uint64_t mask = op_size >= 8 ? ~0ULL : (1ULL << (op_size * 8)) - 1;
  const uint64_t v = src & mask;
  uint64_t f = rflags & ~static_cast<uint64_t>(X86_EFLAGS_OF | X86_EFLAGS_SF | X86_EFLAGS_ZF |
                                               X86_EFLAGS_AF | X86_EFLAGS_CF | X86_EFLAGS_PF);
  if (v == 0) f |= X86_EFLAGS_ZF;
  return {static_cast<uint64_t>(std::popcount(v)), f};
}

std::string describe_emulation_failure(uint64_t rip, std::span<const uint8_t> bytes,
                                       const std::string& why) {
  std::string out = "emulation failure at RIP " + hex(rip) + ", bytes";
  char buf[8];
  if (bytes.empty()) out += " (none)";
  for (uint8_t b : bytes) {
    std::snprintf(buf, sizeof(buf), " %02x", b);
    out += buf;
  }
  return out + ": " + why;
}

std::span<const uint8_t> emulation_failure_bytes(const kvm_run& run) {
  const auto& ef = run.emulation_failure;
  if (ef.suberror != KVM_INTERNAL_ERROR_EMULATION) return {};
  // ndata counts u64 words: flags, then insn_size + insn_bytes (16 bytes).
  if (ef.ndata < 3 || (ef.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0) {
    return {};
  }
  return std::span<const uint8_t>(ef.insn_bytes, std::min<size_t>(ef.insn_size, kMaxInsnLength));
}

AssistOutcome assist_emulation_failure(AssistCpu& cpu, const memory::GuestMemory& mem,
                                       std::span<const uint8_t> exit_bytes) {
  auto regs = cpu.get_regs();
  if (!regs) return failed(AssistKind::kUnknown, "emulation failure: " + regs.error().message());
  auto sregs = cpu.get_sregs();
  if (!sregs) return failed(AssistKind::kUnknown, "emulation failure: " + sregs.error().message());
  const CodeMode mode = code_mode(*sregs);

  // GUEST: a lost user SYSCALL shows as an exit at the #PF handler's entry (its `clac`).
  const SyscallRepairOutcome repair = repair_lost_syscall(cpu, mem, *regs, *sregs);
  if (!repair.error.empty()) return failed(AssistKind::kSyscallRepair, repair.error);
  if (repair.repaired) return {true, AssistKind::kSyscallRepair, {}};

  std::array<uint8_t, kMaxInsnLength> fetched{};
  std::span<const uint8_t> bytes = exit_bytes;
  if (bytes.empty()) {
    // GUEST: the guest's page tables locate the instruction; the walk is bounds-checked.
    bytes = std::span<const uint8_t>(fetched).first(fetch_bytes(mem, *regs, *sregs, mode, fetched));
  }
  const DecodedInsn d = decode_for_assist(bytes, mode);
  kvm_regs r = *regs;
  switch (d.kind) {
    case AssistKind::kUnknown:
    case AssistKind::kSyscallRepair:  // never decoded from bytes
      return failed(d.kind, describe_emulation_failure(r.rip, bytes,
                                                       "instruction not handled by the assist"));
    case AssistKind::kUd2: {
      auto ok = cpu.inject_exception(kVectorUd, std::nullopt);
      if (!ok)
        return failed(d.kind, describe_emulation_failure(r.rip, bytes, ok.error().message()));
      return {true, d.kind, {}};
    }
    case AssistKind::kInt3: {
      r.rip += d.length;
      auto ok = cpu.set_regs(r);
      if (ok) ok = cpu.inject_exception(kVectorBp, std::nullopt);
      if (!ok)
        return failed(d.kind, describe_emulation_failure(regs->rip, bytes, ok.error().message()));
      return {true, d.kind, {}};
    }
    case AssistKind::kClac:
    case AssistKind::kStac:
      r.rflags =
          d.kind == AssistKind::kStac ? (r.rflags | X86_EFLAGS_AC) : (r.rflags & ~X86_EFLAGS_AC);
      break;
    case AssistKind::kFwait:
      break;
    case AssistKind::kCmpxchg8b16b: {
      const ExecResult ex = do_cmpxchg(mem, *sregs, r, d, mode);
      if (!ex.error.empty())
        return failed(d.kind, describe_emulation_failure(r.rip, bytes, ex.error));
      if (ex.fault) {
        auto ok = raise(cpu, *sregs, *ex.fault);
        if (!ok)
          return failed(d.kind, describe_emulation_failure(r.rip, bytes, ok.error().message()));
        return {true, d.kind, {}};
      }
      break;
    }
    case AssistKind::kPopcnt: {
      uint64_t src = 0;
      if (d.src_is_mem) {
        // GUEST: a guest-chosen address, read as the guest's CPL may.
        const ExecResult ex =
            read_operand(mem, *sregs, linear_address(r, *sregs, d, mode),
                         &segment_for(*sregs, d.mem) == &sregs->ss,
                         std::span<uint8_t>(reinterpret_cast<uint8_t*>(&src), d.op_size));
        if (!ex.error.empty()) {
          return failed(d.kind,
                        describe_emulation_failure(r.rip, bytes, "popcnt source: " + ex.error));
        }
        if (ex.fault) {
          auto ok = raise(cpu, *sregs, *ex.fault);
          if (!ok)
            return failed(d.kind, describe_emulation_failure(r.rip, bytes, ok.error().message()));
          return {true, d.kind, {}};
        }
      } else {
        src = gpr(r, d.src_reg);
      }
      const PopcntResult res = popcnt_apply(src, d.op_size, r.rflags);
      __u64& dst = gpr(r, d.dst_reg);
      dst = d.op_size == 2 ? ((dst & ~0xffffULL) | res.value) : res.value;
      r.rflags = res.rflags;
      break;
    }
  }
  r.rip += d.length;
  auto ok = cpu.set_regs(r);
  if (!ok)
    return failed(d.kind, describe_emulation_failure(regs->rip, bytes, ok.error().message()));
  return {true, d.kind, {}};
}

}  // namespace kindling::vmm
