#include "vmm/pvm/pvm_syscall.h"

#include <asm/processor-flags.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "tests/unit/vmm/fake_cpu.h"

namespace kindling::vmm {
namespace {

using Bytes = std::vector<uint8_t>;

// Linux 6.1's values: STAR = __USER32_CS (0x23) << 48 | __KERNEL_CS (0x10) << 32, FMASK =
// TF|DF|IF|IOPL|AC|NT.
constexpr uint64_t kStar = 0x0023001000000000ULL;
constexpr uint64_t kFmask =
    X86_EFLAGS_TF | X86_EFLAGS_DF | X86_EFLAGS_IF | X86_EFLAGS_IOPL | X86_EFLAGS_AC | X86_EFLAGS_NT;
constexpr uint64_t kLstar = 0xffffffff81400040ULL;
constexpr uint64_t kPfHandler = 0xffffffff81200b30ULL;
constexpr uint64_t kEferNxe = 1ULL << 11;
// The #PF error code of a user fetch from a present supervisor page with EFER.NXE: P | U | I/D.
constexpr uint32_t kUserFetchError = 0x15;
// What a genuine lost syscall leaves, as measured on a PVM host (the test guest's `syscall`
// test): #PF error 0x15, RFLAGS already masked by FMASK plus RF from the fault's delivery,
// R11 the unmasked RFLAGS.
constexpr uint64_t kFrameFlags = (0x246 & ~kFmask) | X86_EFLAGS_RF;

Bytes gate_bytes(uint64_t offset, uint16_t selector, uint8_t ist, uint8_t type_attr) {
  return Bytes{static_cast<uint8_t>(offset),
               static_cast<uint8_t>(offset >> 8),
               static_cast<uint8_t>(selector),
               static_cast<uint8_t>(selector >> 8),
               ist,
               type_attr,
               static_cast<uint8_t>(offset >> 16),
               static_cast<uint8_t>(offset >> 24),
               static_cast<uint8_t>(offset >> 32),
               static_cast<uint8_t>(offset >> 40),
               static_cast<uint8_t>(offset >> 48),
               static_cast<uint8_t>(offset >> 56),
               0,
               0,
               0,
               0};
}

Bytes frame_bytes(const ExceptionFrame& f) {
  Bytes out;
  for (uint64_t w : {f.error_code, f.rip, f.cs, f.rflags, f.rsp, f.ss}) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(w >> (8 * i)));
  }
  return out;
}

TEST(IdtGateTest, DecodesInterruptGate) {
  const auto g = decode_idt_gate(gate_bytes(0xffffffff81200b30ULL, 0x10, 0, 0x8E));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->offset, 0xffffffff81200b30ULL);
  EXPECT_EQ(g->selector, 0x10);
  EXPECT_EQ(g->ist, 0);
  EXPECT_EQ(g->type, 0xE);
  EXPECT_EQ(g->dpl, 0);
  EXPECT_TRUE(g->present);
}

TEST(IdtGateTest, DecodesTrapGateWithIstAndDpl3) {
  const auto g = decode_idt_gate(gate_bytes(0x0000123456789abcULL, 0x33, 2, 0xEF));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->offset, 0x0000123456789abcULL);
  EXPECT_EQ(g->selector, 0x33);
  EXPECT_EQ(g->ist, 2);
  EXPECT_EQ(g->type, 0xF);
  EXPECT_EQ(g->dpl, 3);
  EXPECT_TRUE(g->present);
  EXPECT_FALSE(decode_idt_gate(gate_bytes(1, 0x10, 0, 0x0E))->present);
}

TEST(IdtGateTest, ShortInputIsRejected) {
  Bytes b = gate_bytes(1, 2, 0, 0x8E);
  b.pop_back();
  EXPECT_FALSE(decode_idt_gate(b));
  EXPECT_FALSE(decode_idt_gate({}));
}

TEST(ErrorFrameTest, ParsesSixWords) {
  const ExceptionFrame in{kUserFetchError, kLstar, 0x33, 0x246, 0x7ffe938716d0ULL, 0x2b};
  const auto f = parse_error_frame(frame_bytes(in));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->error_code, kUserFetchError);
  EXPECT_EQ(f->rip, kLstar);
  EXPECT_EQ(f->cs, 0x33u);
  EXPECT_EQ(f->rflags, 0x246u);
  EXPECT_EQ(f->rsp, 0x7ffe938716d0ULL);
  EXPECT_EQ(f->ss, 0x2bu);
  Bytes shorter = frame_bytes(in);
  shorter.resize(kErrorFrameSize - 1);
  EXPECT_FALSE(parse_error_frame(shorter));
}

// A genuine lost syscall: the frame, and RCX/R11 as SYSCALL set them.
constexpr ExceptionFrame kGenuine{kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b};
constexpr SyscallEvidence kGenuineRegs{0x401234, 0x246, kUserFetchError};

struct ForgeryCase {
  const char* what;
  ExceptionFrame frame;
  SyscallEvidence ev;
};

// Names the case in gtest's failure output.
void PrintTo(const ForgeryCase& c, std::ostream* os) {
  *os << c.what;
}

class LostSyscallForgeryTest : public ::testing::TestWithParam<ForgeryCase> {};

TEST_P(LostSyscallForgeryTest, IsRejected) {
  const ForgeryCase& c = GetParam();
  EXPECT_FALSE(is_lost_user_syscall(c.frame, {kStar, kLstar, kFmask}, c.ev)) << c.what;
}

ExceptionFrame with_error(uint64_t e) {
  ExceptionFrame f = kGenuine;
  f.error_code = e;
  return f;
}
ExceptionFrame with_cs_ss(uint64_t cs, uint64_t ss) {
  ExceptionFrame f = kGenuine;
  f.cs = cs;
  f.ss = ss;
  return f;
}
ExceptionFrame with_rflags(uint64_t rflags) {
  ExceptionFrame f = kGenuine;
  f.rflags = rflags;
  return f;
}
ExceptionFrame with_rip(uint64_t rip) {
  ExceptionFrame f = kGenuine;
  f.rip = rip;
  return f;
}
SyscallEvidence with_regs(uint64_t rcx, uint64_t r11) {
  return {rcx, r11, kUserFetchError};
}

INSTANTIATE_TEST_SUITE_P(
    Table, LostSyscallForgeryTest,
    ::testing::Values(
        ForgeryCase{"kernel-mode fault at LSTAR", with_cs_ss(0x10, 0x18), kGenuineRegs},
        ForgeryCase{"user fault elsewhere", with_rip(0x401000), kGenuineRegs},
        ForgeryCase{"CS RPL 1", with_cs_ss(0x31, 0x2b), kGenuineRegs},
        ForgeryCase{"CS RPL 2", with_cs_ss(0x32, 0x2b), kGenuineRegs},
        ForgeryCase{"compat-mode user CS", with_cs_ss(0x23, 0x2b), kGenuineRegs},
        ForgeryCase{"another user SS", with_cs_ss(0x33, 0x3b), kGenuineRegs},
        ForgeryCase{"read fault, not a fetch", with_error(0x05), kGenuineRegs},
        ForgeryCase{"not-present fetch", with_error(0x14), kGenuineRegs},
        ForgeryCase{"write fault", with_error(0x07), kGenuineRegs},
        ForgeryCase{"decimal 15: P|W|U|RSVD", with_error(15), kGenuineRegs},
        ForgeryCase{"R11 is not the frame's RFLAGS", kGenuine, with_regs(0x401234, 0x202)},
        ForgeryCase{"R11 differs in ZF", kGenuine, with_regs(0x401234, 0x206)},
        ForgeryCase{"RFLAGS not masked (a jump keeps IF)", with_rflags(0x10246), kGenuineRegs},
        ForgeryCase{"RCX is LSTAR", kGenuine, with_regs(kLstar, 0x246)}),
    [](const ::testing::TestParamInfo<ForgeryCase>& info) {
      return "Case" + std::to_string(info.index);
    });

TEST(LostSyscallTest, GenuineFrameAndRegistersAreAccepted) {
  EXPECT_TRUE(is_lost_user_syscall(kGenuine, {kStar, kLstar, kFmask}, kGenuineRegs));
  // RF in the pushed RFLAGS comes from the fault's delivery: with or without it.
  EXPECT_TRUE(is_lost_user_syscall(with_rflags(0x46), {kStar, kLstar, kFmask}, kGenuineRegs));
}

TEST(LostSyscallTest, EntryStateIsWhatSyscallProduces) {
  const ExceptionFrame f{15, kLstar, 0x33, 0x246 | X86_EFLAGS_AC | X86_EFLAGS_TF, 0x7ffe0000, 0x2b};
  const SyscallEntryState s = syscall_entry_state(f, {kStar, kLstar, kFmask});
  EXPECT_EQ(s.rip, kLstar);
  EXPECT_EQ(s.rsp, 0x7ffe0000u);
  // IF, AC and TF cleared by FMASK; ZF, PF and bit 1 kept.
  EXPECT_EQ(s.rflags, uint64_t{X86_EFLAGS_FIXED | X86_EFLAGS_ZF | X86_EFLAGS_PF});
  EXPECT_EQ(s.cs.selector, 0x10);
  EXPECT_EQ(s.cs.dpl, 0);
  EXPECT_EQ(s.cs.l, 1);
  EXPECT_EQ(s.cs.db, 0);
  EXPECT_EQ(s.cs.s, 1);
  EXPECT_EQ(s.cs.present, 1);
  EXPECT_EQ(s.cs.type, 0xB);
  EXPECT_EQ(s.ss.selector, 0x18);
  EXPECT_EQ(s.ss.dpl, 0);
  EXPECT_EQ(s.ss.db, 1);
  EXPECT_EQ(s.ss.l, 0);
  EXPECT_EQ(s.ss.type, 0x3);
  // Bit 1 is set even if FMASK would clear it; RPL bits of STAR's selector are dropped.
  const SyscallEntryState t =
      syscall_entry_state({0, kLstar, 0x33, 0, 0, 0}, {0x0023001300000000ULL, kLstar, ~0ULL});
  EXPECT_EQ(t.rflags, uint64_t{X86_EFLAGS_FIXED});
  EXPECT_EQ(t.cs.selector, 0x10);
  EXPECT_EQ(t.ss.selector, 0x1b);
}

// A guest in long mode: the first 2 MiB identity-mapped, and the kernel's high half
// 0xffffffff81000000 -> physical 0x200000 (2 MiB pages). The IDT lives at kernel address
// 0xffffffff81100000 (phys 0x300000), the #PF handler's clac at kPfHandler, the kernel stack's
// frame at 0xffffffff81180000 - 48.
class RepairTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kIdtBase = 0xffffffff81100000ULL;
  static constexpr uint64_t kStackTop = 0xffffffff81180000ULL;

  void SetUp() override {
    auto m = memory::GuestMemory::create({{0, 8ULL << 20}});
    ASSERT_TRUE(m);
    mem_ = std::make_unique<memory::GuestMemory>(std::move(*m));
    ASSERT_TRUE(enter_long_mode(*mem_, cpu_));  // PML4[0] -> PDPT[0] -> PD[0]: 2 MiB at 0
    put(kFakePml4 + 511 * 8, 0x4000 | 3);       // PML4[511]
    put(0x4000 + 510 * 8, 0x5000 | 3);          // PDPT[510]
    put(0x5000 + 8 * 8, 0x200000 | 3 | 0x80);   // PD[8]: 2 MiB at 0x200000
    put(0x5000 + 9 * 8, 0x400000 | 3 | 0x80);   // PD[9]
    // User space: 0x400000 (2 MiB, U/S) -> physical 0x600000, with `syscall` at 0x401232.
    put(kFakePml4, kFakePdpt | 7);
    put(kFakePdpt, kFakePd | 7);
    put(kFakePd + 2 * 8, 0x600000 | 7 | 0x80);
    const Bytes syscall_insn = {0x0f, 0x05};
    ASSERT_TRUE(mem_->write(memory::GuestAddress(0x601232), syscall_insn));
    cpu_.sregs.efer |= kEferNxe;
    write_kernel(kIdtBase + 14 * kIdtGateSize, gate_bytes(kPfHandler, 0x10, 0, 0x8E));
    write_kernel(kIdtBase + 3 * kIdtGateSize, gate_bytes(0xffffffff81200a00ULL, 0x10, 0, 0xEE));
    cpu_.msrs = {{kMsrStar, kStar}, {kMsrLstar, kLstar}, {kMsrFmask, kFmask}};
    cpu_.sregs.cs.selector = 0x10;
    cpu_.sregs.idt.base = kIdtBase;
    cpu_.sregs.idt.limit = 256 * 16 - 1;
    cpu_.regs.rip = kPfHandler;
    cpu_.regs.rsp = kStackTop - kErrorFrameSize;
    cpu_.regs.rcx = 0x401234;  // the user RIP after syscall, set by the syscall itself
    cpu_.regs.r11 = 0x246;
    cpu_.regs.rflags = X86_EFLAGS_FIXED;
  }
  void put(uint64_t pa, uint64_t v) { ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(pa), v)); }
  void write_kernel(uint64_t va, const Bytes& b) {
    ASSERT_TRUE(mem_->write(memory::GuestAddress(va - 0xffffffff81000000ULL + 0x200000), b));
  }
  void push_frame(const ExceptionFrame& f) { write_kernel(cpu_.regs.rsp, frame_bytes(f)); }
  SyscallRepairOutcome repair() { return repair_lost_syscall(cpu_, *mem_, cpu_.regs, cpu_.sregs); }
  PagingState paging() const {
    return {cpu_.sregs.cr0, cpu_.sregs.cr3, cpu_.sregs.cr4, cpu_.sregs.efer};
  }

  std::unique_ptr<memory::GuestMemory> mem_;
  FakeCpu cpu_;
};

TEST_F(RepairTest, IdtHandlerReadsTheGateThroughThePageTables) {
  EXPECT_EQ(idt_handler(*mem_, paging(), kIdtBase, 256 * 16 - 1, 14), kPfHandler);
  EXPECT_EQ(idt_handler(*mem_, paging(), kIdtBase, 256 * 16 - 1, 3), 0xffffffff81200a00ULL);
  // Gate 14 ends at byte 239: a limit of 238 excludes it, 239 includes it.
  EXPECT_FALSE(idt_handler(*mem_, paging(), kIdtBase, 238, 14));
  EXPECT_EQ(idt_handler(*mem_, paging(), kIdtBase, 239, 14), kPfHandler);
  // An empty gate (not present), an unmapped IDT.
  EXPECT_FALSE(idt_handler(*mem_, paging(), kIdtBase, 256 * 16 - 1, 15));
  EXPECT_FALSE(idt_handler(*mem_, paging(), 0xffff888000000000ULL, 256 * 16 - 1, 14));
}

TEST_F(RepairTest, IdtHandlerRejectsTaskAndCallGates) {
  write_kernel(kIdtBase + 14 * kIdtGateSize, gate_bytes(kPfHandler, 0x10, 0, 0x85));
  EXPECT_FALSE(idt_handler(*mem_, paging(), kIdtBase, 256 * 16 - 1, 14));
  write_kernel(kIdtBase + 14 * kIdtGateSize, gate_bytes(kPfHandler, 0x10, 0, 0x8C));
  EXPECT_FALSE(idt_handler(*mem_, paging(), kIdtBase, 256 * 16 - 1, 14));
}

TEST_F(RepairTest, RepairsALostUserSyscall) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe938716d0ULL, 0x2b});
  const SyscallRepairOutcome o = repair();
  ASSERT_TRUE(o.repaired) << o.error;
  EXPECT_EQ(cpu_.regs.rip, kLstar);
  EXPECT_EQ(cpu_.regs.rsp, 0x7ffe938716d0ULL);
  EXPECT_EQ(cpu_.regs.rflags, uint64_t{0x46});  // RF from the fault's delivery dropped
  EXPECT_EQ(cpu_.regs.rcx, 0x401234u);          // untouched
  EXPECT_EQ(cpu_.regs.r11, 0x246u);
  EXPECT_EQ(cpu_.sregs.cs.selector, 0x10);
  EXPECT_EQ(cpu_.sregs.cs.l, 1);
  EXPECT_EQ(cpu_.sregs.ss.selector, 0x18);
  EXPECT_EQ(cpu_.sregs.cr3, 0x1000u);  // the rest of sregs is kept
  EXPECT_EQ(cpu_.sregs.idt.base, kIdtBase);
}

// A user `jmp` to LSTAR with RCX/R11 of its choosing: each forgery the bytes at RCX - 2 expose
// gets an ordinary page fault (no state change).
TEST_F(RepairTest, ForgedJumpToLstarIsLeftAlone) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  const struct {
    const char* what;
    uint64_t rcx;
  } cases[] = {
      {"no syscall at RCX - 2", 0x401000},
      {"RCX - 2 not mapped", 0x40001234},
      {"RCX - 2 wraps below zero", 1},
      {"syscall bytes in a supervisor page", kPfHandler + 0x102},
  };
  write_kernel(kPfHandler + 0x100, {0x0f, 0x05});
  for (const auto& c : cases) {
    cpu_.regs.rcx = c.rcx;
    const SyscallRepairOutcome o = repair();
    EXPECT_FALSE(o.repaired) << c.what;
    EXPECT_TRUE(o.error.empty()) << c.what << ": " << o.error;
  }
  EXPECT_EQ(cpu_.sets(), 0);
  EXPECT_EQ(cpu_.regs.rip, kPfHandler);
}

TEST_F(RepairTest, SyscallBytesInAnExecuteDisabledPageAreRejected) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  put(kFakePd + 2 * 8, 0x600000 | 7 | 0x80 | (1ULL << 63));
  EXPECT_FALSE(repair().repaired);
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, ForgedR11OrErrorCodeIsLeftAlone) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  cpu_.regs.r11 = 0x202;  // not the RFLAGS the frame holds
  EXPECT_FALSE(repair().repaired);
  cpu_.regs.r11 = 0x246;
  push_frame({0x5, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});  // a data read, not a fetch
  EXPECT_FALSE(repair().repaired);
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, SyscallAcrossAPageBoundaryIsAccepted) {
  const Bytes split_first = {0x0f}, split_second = {0x05};
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x601fff), split_first));
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x602000), split_second));
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  cpu_.regs.rcx = 0x402001;
  EXPECT_TRUE(repair().repaired);
}

TEST_F(RepairTest, KernelModeFaultIsLeftAloneWithoutMsrReads) {
  push_frame({2, 0xffffffff81300000ULL, 0x10, 0x46, 0xffffc90000010000ULL, 0x18});
  const SyscallRepairOutcome o = repair();
  EXPECT_FALSE(o.repaired);
  EXPECT_TRUE(o.error.empty());
  EXPECT_EQ(cpu_.msr_reads, 0);
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, UserFaultElsewhereIsLeftAlone) {
  push_frame({6, 0x401000, 0x33, 0x246, 0x7ffe0000, 0x2b});  // an ordinary user page fault
  EXPECT_FALSE(repair().repaired);
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, OtherRipIsLeftAloneWithoutReadingTheStack) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  cpu_.regs.rip = kPfHandler + 3;  // inside the handler, not its entry
  EXPECT_FALSE(repair().repaired);
  cpu_.regs.rip = 0xffffffff81200a00ULL;  // the #BP handler
  EXPECT_FALSE(repair().repaired);
  EXPECT_EQ(cpu_.msr_reads, 0);
}

TEST_F(RepairTest, NotRing0Or64BitIsLeftAlone) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  cpu_.sregs.cs.dpl = 3;
  EXPECT_FALSE(repair().repaired);
  cpu_.sregs.cs.dpl = 0;
  cpu_.sregs.cs.l = 0;
  EXPECT_FALSE(repair().repaired);
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, UnreadableStackIsLeftAlone) {
  cpu_.regs.rsp = 0xffff888000000000ULL;  // not mapped in this guest
  EXPECT_FALSE(repair().repaired);
  EXPECT_TRUE(repair().error.empty());
}

TEST_F(RepairTest, MsrFailureIsAnError) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  cpu_.fail_msrs = true;
  const SyscallRepairOutcome o = repair();
  EXPECT_FALSE(o.repaired);
  EXPECT_NE(o.error.find("LSTAR"), std::string::npos) << o.error;
  EXPECT_EQ(cpu_.sets(), 0);
}

TEST_F(RepairTest, AssistReportsTheRepairForTheHandlersClac) {
  push_frame({kUserFetchError, kLstar, 0x33, kFrameFlags, 0x7ffe0000, 0x2b});
  const Bytes clac = {0x0f, 0x01, 0xca};
  const AssistOutcome o = assist_emulation_failure(cpu_, *mem_, clac);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kSyscallRepair);
  EXPECT_EQ(cpu_.regs.rip, kLstar);
}

TEST_F(RepairTest, AssistTreatsAnOrdinaryFaultsClacAsClac) {
  push_frame({6, 0x401000, 0x33, 0x246 | X86_EFLAGS_AC, 0x7ffe0000, 0x2b});
  cpu_.regs.rflags = X86_EFLAGS_FIXED | X86_EFLAGS_AC;
  const Bytes clac = {0x0f, 0x01, 0xca};
  const AssistOutcome o = assist_emulation_failure(cpu_, *mem_, clac);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kClac);
  EXPECT_EQ(cpu_.regs.rip, kPfHandler + 3);
  EXPECT_EQ(cpu_.regs.rflags, uint64_t{X86_EFLAGS_FIXED});
}

}  // namespace
}  // namespace kindling::vmm
