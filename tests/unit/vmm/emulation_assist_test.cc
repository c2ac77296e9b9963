#include "vmm/pvm/emulation_assist.h"

#include <asm/processor-flags.h>
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "tests/unit/vmm/fake_cpu.h"
#include "vmm/pvm/page_walk.h"

namespace kindling::vmm {
namespace {

using Bytes = std::vector<uint8_t>;

DecodedInsn decode64(const Bytes& b) {
  return decode_for_assist(b, CodeMode::k64);
}

// ---- decoder table -------------------------------------------------------------------------

struct SimpleCase {
  Bytes bytes;
  AssistKind kind;
  uint8_t length;
};

class DecodeSimpleTest : public ::testing::TestWithParam<SimpleCase> {};

TEST_P(DecodeSimpleTest, KindAndLength) {
  const SimpleCase& c = GetParam();
  const DecodedInsn d = decode64(c.bytes);
  EXPECT_EQ(d.kind, c.kind) << to_string(d.kind);
  if (c.kind != AssistKind::kUnknown) {
    EXPECT_EQ(d.length, c.length);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, DecodeSimpleTest,
    ::testing::Values(SimpleCase{{0xcc}, AssistKind::kInt3, 1},
                      SimpleCase{{0xcc, 0x90, 0x90}, AssistKind::kInt3, 1},
                      SimpleCase{{0x0f, 0x0b}, AssistKind::kUd2, 2},
                      SimpleCase{{0x0f, 0x01, 0xca}, AssistKind::kClac, 3},
                      SimpleCase{{0x0f, 0x01, 0xcb}, AssistKind::kStac, 3},
                      SimpleCase{{0x9b}, AssistKind::kFwait, 1},
                      SimpleCase{{0x9b, 0xdf, 0xe0}, AssistKind::kFwait, 1},
                      // not handled: xgetbv, xsave, nop, vmcall, a truncated clac, empty
                      SimpleCase{{0x0f, 0x01, 0xd0}, AssistKind::kUnknown, 0},
                      SimpleCase{{0x0f, 0xae, 0x27}, AssistKind::kUnknown, 0},
                      SimpleCase{{0x90}, AssistKind::kUnknown, 0},
                      SimpleCase{{0x0f, 0x01, 0xc1}, AssistKind::kUnknown, 0},
                      SimpleCase{{0x0f, 0x01}, AssistKind::kUnknown, 0},
                      SimpleCase{{}, AssistKind::kUnknown, 0},
                      // clac/stac with a mandatory prefix are other instructions
                      SimpleCase{{0xf3, 0x0f, 0x01, 0xca}, AssistKind::kUnknown, 0},
                      // a lock prefix makes any of them #UD: not ours to emulate
                      SimpleCase{{0xf0, 0x0f, 0x01, 0xca}, AssistKind::kUnknown, 0},
                      // popcnt without F3 is not popcnt (0F B8 is JMPE/invalid)
                      SimpleCase{{0x0f, 0xb8, 0xc0}, AssistKind::kUnknown, 0},
                      // F2 with F3 is not popcnt
                      SimpleCase{{0xf2, 0xf3, 0x0f, 0xb8, 0xc0}, AssistKind::kUnknown, 0}));

TEST(DecodePopcntTest, Register32) {
  const DecodedInsn d = decode64({0xf3, 0x0f, 0xb8, 0xc7});  // popcnt eax, edi
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 4);
  EXPECT_EQ(d.op_size, 4);
  EXPECT_EQ(d.dst_reg, 0);
  EXPECT_FALSE(d.src_is_mem);
  EXPECT_EQ(d.src_reg, 7);
}

TEST(DecodePopcntTest, Register64WithRexW) {
  const DecodedInsn d = decode64({0xf3, 0x48, 0x0f, 0xb8, 0xc7});  // popcnt rax, rdi
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 5);
  EXPECT_EQ(d.op_size, 8);
  EXPECT_EQ(d.dst_reg, 0);
  EXPECT_EQ(d.src_reg, 7);
}

TEST(DecodePopcntTest, RexRAndRexBSelectHighRegisters) {
  const DecodedInsn d = decode64({0xf3, 0x4d, 0x0f, 0xb8, 0xc8});  // popcnt r9, r8
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.op_size, 8);
  EXPECT_EQ(d.dst_reg, 9);
  EXPECT_EQ(d.src_reg, 8);
}

TEST(DecodePopcntTest, OperandSizePrefixGives16Bit) {
  const DecodedInsn d = decode64({0x66, 0xf3, 0x0f, 0xb8, 0xc1});  // popcnt ax, cx
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 5);
  EXPECT_EQ(d.op_size, 2);
  EXPECT_EQ(d.src_reg, 1);
}

TEST(DecodePopcntTest, MemoryBaseWithSibAndDisp8) {
  // popcnt rax, [rsp + 8]
  const DecodedInsn d = decode64({0xf3, 0x48, 0x0f, 0xb8, 0x44, 0x24, 0x08});
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 7);
  EXPECT_TRUE(d.src_is_mem);
  EXPECT_EQ(d.mem.base, 4);
  EXPECT_EQ(d.mem.index, -1);
  EXPECT_EQ(d.mem.disp, 8);
}

TEST(DecodePopcntTest, MemoryIndexScaleAndDisp32) {
  // popcnt ecx, [rbx + r12*4 - 0x100] (REX.X for r12)
  const DecodedInsn d = decode64({0xf3, 0x42, 0x0f, 0xb8, 0x8c, 0xa3, 0x00, 0xff, 0xff, 0xff});
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 10);
  EXPECT_EQ(d.dst_reg, 1);
  EXPECT_EQ(d.mem.base, 3);
  EXPECT_EQ(d.mem.index, 12);
  EXPECT_EQ(d.mem.scale, 4);
  EXPECT_EQ(d.mem.disp, -0x100);
}

TEST(DecodePopcntTest, RipRelative) {
  const DecodedInsn d = decode64({0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x10, 0x00, 0x00, 0x00});
  ASSERT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.length, 9);
  EXPECT_TRUE(d.mem.rip_relative);
  EXPECT_EQ(d.mem.base, -1);
  EXPECT_EQ(d.mem.disp, 0x10);
}

TEST(DecodePopcntTest, TruncatedBytesAreUnknown) {
  EXPECT_EQ(decode64({0xf3, 0x48, 0x0f, 0xb8}).kind, AssistKind::kUnknown);
  EXPECT_EQ(decode64({0xf3, 0x48, 0x0f, 0xb8, 0x44, 0x24}).kind, AssistKind::kUnknown);
  EXPECT_EQ(decode64({0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x10, 0x00}).kind, AssistKind::kUnknown);
}

TEST(DecodePopcntTest, In32BitCode0x48IsNotRex) {
  // In 32-bit code 0x48 is `dec eax`: F3 48 ... is not popcnt.
  EXPECT_EQ(decode_for_assist(Bytes{0xf3, 0x48, 0x0f, 0xb8, 0xc7}, CodeMode::k32).kind,
            AssistKind::kUnknown);
  const DecodedInsn d = decode_for_assist(Bytes{0xf3, 0x0f, 0xb8, 0xc7}, CodeMode::k32);
  EXPECT_EQ(d.kind, AssistKind::kPopcnt);
  EXPECT_EQ(d.op_size, 4);
}

TEST(DecodeCmpxchgTest, LockedCmpxchg16bFromSlub) {
  // lock cmpxchg16b [r14 + 0x20], as Linux 6.1's SLUB runs it
  const DecodedInsn d = decode64({0xf0, 0x49, 0x0f, 0xc7, 0x4e, 0x20, 0x0f, 0x84});
  ASSERT_EQ(d.kind, AssistKind::kCmpxchg8b16b);
  EXPECT_EQ(d.length, 6);
  EXPECT_EQ(d.op_size, 16);
  EXPECT_EQ(d.mem.base, 14);
  EXPECT_EQ(d.mem.disp, 0x20);
}

TEST(DecodeCmpxchgTest, Cmpxchg8bAndInvalidForms) {
  const DecodedInsn d = decode64({0x0f, 0xc7, 0x0f});  // cmpxchg8b [rdi]
  ASSERT_EQ(d.kind, AssistKind::kCmpxchg8b16b);
  EXPECT_EQ(d.op_size, 8);
  EXPECT_EQ(d.length, 3);
  EXPECT_EQ(decode64({0x0f, 0xc7, 0xc8}).kind, AssistKind::kUnknown);  // register form: #UD
  EXPECT_EQ(decode64({0x0f, 0xc7, 0x37}).kind, AssistKind::kUnknown);  // /6 is vmptrld
}

TEST(AssistCasesTest, TableCoversEveryKindOnce) {
  std::vector<AssistKind> kinds;
  for (const AssistCase& c : assist_cases()) {
    EXPECT_NE(std::string(c.why), "");
    kinds.push_back(c.kind);
  }
  for (AssistKind k : {AssistKind::kInt3, AssistKind::kUd2, AssistKind::kClac, AssistKind::kStac,
                       AssistKind::kPopcnt, AssistKind::kFwait, AssistKind::kCmpxchg8b16b,
                       AssistKind::kSyscallRepair, AssistKind::kUnknown}) {
    EXPECT_EQ(std::count(kinds.begin(), kinds.end(), k), 1) << to_string(k);
  }
}

// ---- popcnt semantics ----------------------------------------------------------------------

TEST(PopcntApplyTest, CountsAndSetsFlags) {
  const uint64_t all_arith =
      X86_EFLAGS_OF | X86_EFLAGS_SF | X86_EFLAGS_ZF | X86_EFLAGS_AF | X86_EFLAGS_CF | X86_EFLAGS_PF;
  PopcntResult r = popcnt_apply(0xff00ff00ff00ff00ULL, 8, X86_EFLAGS_FIXED | all_arith);
  EXPECT_EQ(r.value, 32u);
  EXPECT_EQ(r.rflags, uint64_t{X86_EFLAGS_FIXED});
  r = popcnt_apply(0xffffffff00000000ULL, 4, X86_EFLAGS_FIXED | X86_EFLAGS_IF);
  EXPECT_EQ(r.value, 0u);
  EXPECT_EQ(r.rflags, uint64_t{X86_EFLAGS_FIXED | X86_EFLAGS_IF | X86_EFLAGS_ZF});
  r = popcnt_apply(0x1ffff, 2, X86_EFLAGS_FIXED);
  EXPECT_EQ(r.value, 16u);
}

// ---- the assist through a fake vCPU --------------------------------------------------------

// 64-bit code with an identity map of the first 2 MiB (PML4 0x1000, PDPT 0x2000, PD 0x3000).
class AssistTest : public LongModeCpuTest {
 protected:
  AssistOutcome run(const Bytes& exit_bytes) {
    return assist_emulation_failure(cpu_, *mem_, exit_bytes);
  }
};

TEST_F(AssistTest, Int3AdvancesRipAndInjectsBreakpoint) {
  const AssistOutcome o = run({0xcc});
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kInt3);
  EXPECT_EQ(cpu_.regs.rip, 0x10001u);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(3));
}

TEST_F(AssistTest, Ud2InjectsInvalidOpcodeWithoutMovingRip) {
  const AssistOutcome o = run({0x0f, 0x0b});
  ASSERT_TRUE(o.handled);
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(6));
}

TEST_F(AssistTest, ClacAndStacChangeOnlyAc) {
  cpu_.regs.rflags |= X86_EFLAGS_AC | X86_EFLAGS_IF;
  ASSERT_TRUE(run({0x0f, 0x01, 0xca}).handled);
  EXPECT_EQ(cpu_.regs.rflags, uint64_t{X86_EFLAGS_FIXED | X86_EFLAGS_IF});
  EXPECT_EQ(cpu_.regs.rip, 0x10003u);
  ASSERT_TRUE(run({0x0f, 0x01, 0xcb}).handled);
  EXPECT_EQ(cpu_.regs.rflags, uint64_t{X86_EFLAGS_FIXED | X86_EFLAGS_IF | X86_EFLAGS_AC});
  EXPECT_EQ(cpu_.regs.rip, 0x10006u);
  EXPECT_FALSE(cpu_.injected);
}

TEST_F(AssistTest, FwaitSkipsOneByte) {
  ASSERT_TRUE(run({0x9b}).handled);
  EXPECT_EQ(cpu_.regs.rip, 0x10001u);
}

TEST_F(AssistTest, PopcntRegisterForms) {
  cpu_.regs.rdi = 0xf0f0;
  cpu_.regs.rax = 0xdeadbeefdeadbeefULL;
  ASSERT_TRUE(run({0xf3, 0x0f, 0xb8, 0xc7}).handled);  // popcnt eax, edi: zero-extends
  EXPECT_EQ(cpu_.regs.rax, 8u);
  EXPECT_EQ(cpu_.regs.rip, 0x10004u);
  cpu_.regs.r8 = ~0ULL;
  ASSERT_TRUE(run({0xf3, 0x4d, 0x0f, 0xb8, 0xc8}).handled);  // popcnt r9, r8
  EXPECT_EQ(cpu_.regs.r9, 64u);
  cpu_.regs.rcx = 0;
  cpu_.regs.rax = 0x1234567800005555ULL;
  ASSERT_TRUE(run({0x66, 0xf3, 0x0f, 0xb8, 0xc1}).handled);  // popcnt ax, cx: keeps the rest
  EXPECT_EQ(cpu_.regs.rax, 0x1234567800000000ULL);
  EXPECT_TRUE(cpu_.regs.rflags & X86_EFLAGS_ZF);
}

TEST_F(AssistTest, PopcntMemoryOperandThroughPageTables) {
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x20008), uint64_t{0x7}));
  cpu_.regs.rsp = 0x20000;
  ASSERT_TRUE(run({0xf3, 0x48, 0x0f, 0xb8, 0x44, 0x24, 0x08}).handled);  // popcnt rax, [rsp+8]
  EXPECT_EQ(cpu_.regs.rax, 3u);
  EXPECT_EQ(cpu_.regs.rip, 0x10007u);
}

TEST_F(AssistTest, Cmpxchg16bExchangesWhenEqual) {
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30020), uint64_t{0x1111}));
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30028), uint64_t{0x2222}));
  cpu_.regs.r14 = 0x30000;
  cpu_.regs.rax = 0x1111;
  cpu_.regs.rdx = 0x2222;
  cpu_.regs.rbx = 0xaaaa;
  cpu_.regs.rcx = 0xbbbb;
  ASSERT_TRUE(run({0xf0, 0x49, 0x0f, 0xc7, 0x4e, 0x20}).handled);
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30020)), 0xaaaau);
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30028)), 0xbbbbu);
  EXPECT_TRUE(cpu_.regs.rflags & X86_EFLAGS_ZF);
  EXPECT_EQ(cpu_.regs.rip, 0x10006u);
}

TEST_F(AssistTest, Cmpxchg16bLoadsWhenDifferent) {
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30020), uint64_t{0x1111}));
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30028), uint64_t{0x2222}));
  cpu_.regs.r14 = 0x30000;
  cpu_.regs.rax = 0x1111;
  cpu_.regs.rdx = 0x9999;
  cpu_.regs.rflags |= X86_EFLAGS_ZF;
  ASSERT_TRUE(run({0xf0, 0x49, 0x0f, 0xc7, 0x4e, 0x20}).handled);
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30020)), 0x1111u);
  EXPECT_EQ(cpu_.regs.rdx, 0x2222u);
  EXPECT_FALSE(cpu_.regs.rflags & X86_EFLAGS_ZF);
}

TEST_F(AssistTest, Cmpxchg8bUsesEdxEax) {
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30000), uint64_t{0x0000000200000001}));
  cpu_.regs.rdi = 0x30000;
  cpu_.regs.rax = 1;
  cpu_.regs.rdx = 2;
  cpu_.regs.rbx = 3;
  cpu_.regs.rcx = 4;
  ASSERT_TRUE(run({0x0f, 0xc7, 0x0f}).handled);
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30000)), 0x0000000400000003u);
}

TEST_F(AssistTest, MisalignedCmpxchg16bIsReported) {
  cpu_.regs.r14 = 0x30008;
  const AssistOutcome o = run({0xf0, 0x49, 0x0f, 0xc7, 0x4e, 0x20});
  EXPECT_FALSE(o.handled);
  EXPECT_NE(o.error.find("misaligned"), std::string::npos) << o.error;
}

// ---- cmpxchg8b/16b: privilege, page permissions, Accessed/Dirty, faults, address width ----

// lock cmpxchg16b [r14 + 0x20]
const Bytes kCmpxchg16bR14 = {0xf0, 0x49, 0x0f, 0xc7, 0x4e, 0x20};
constexpr uint64_t kUs = 0x4, kA = 0x20, kD = 0x40;

uint64_t entry_at(const memory::GuestMemory& mem, uint64_t pa) {
  auto v = mem.read_obj<uint64_t>(memory::GuestAddress(pa));
  return v ? *v : ~0ULL;
}

TEST_F(AssistTest, Cmpxchg16bSetsAccessedOnTheWalkAndDirtyOnTheLeaf) {
  cpu_.regs.r14 = 0x30000;
  ASSERT_TRUE(run(kCmpxchg16bR14).handled);
  EXPECT_EQ(entry_at(*mem_, kFakePml4) & (kA | kD), kA);
  EXPECT_EQ(entry_at(*mem_, kFakePdpt) & (kA | kD), kA);
  EXPECT_EQ(entry_at(*mem_, kFakePd) & (kA | kD), kA | kD);  // the 2 MiB leaf
}

// The guest at CPL 3 (CS RPL 3) in 64-bit mode.
void enter_user_mode(FakeCpu& cpu) {
  cpu.sregs.cs.selector = 0x33;
  cpu.sregs.cs.dpl = 3;
}

TEST_F(AssistTest, UserCmpxchgOnASupervisorPageInjectsPageFault) {
  enter_user_mode(cpu_);
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30020), uint64_t{0x1111}));
  cpu_.regs.r14 = 0x30000;
  cpu_.regs.rax = 0x1111;
  cpu_.regs.rbx = 0xaaaa;
  const AssistOutcome o = run(kCmpxchg16bR14);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(kPfPresent | kPfWrite | kPfUser));
  EXPECT_EQ(cpu_.sregs.cr2, 0x30020u);
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);  // a fault: RIP stays on the instruction
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30020)), 0x1111u);
  EXPECT_EQ(entry_at(*mem_, kFakePd) & (kA | kD), 0u);
}

TEST_F(AssistTest, UserCmpxchgOnAUserPageSucceeds) {
  enter_user_mode(cpu_);
  for (uint64_t at : {kFakePml4, kFakePdpt, kFakePd}) {
    ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(at), entry_at(*mem_, at) | kUs));
  }
  cpu_.regs.r14 = 0x30000;
  const AssistOutcome o = run(kCmpxchg16bR14);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_FALSE(cpu_.injected);
  EXPECT_EQ(cpu_.regs.rip, 0x10006u);
}

TEST_F(AssistTest, WriteToAReadOnlyPageFaultsForUserAlwaysAndKernelWithWp) {
  for (uint64_t at : {kFakePml4, kFakePdpt, kFakePd}) {
    ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(at), entry_at(*mem_, at) | kUs));
  }
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(kFakePd),
                              entry_at(*mem_, kFakePd) & ~uint64_t{kPteWritable}));
  cpu_.regs.r14 = 0x30000;
  // Kernel, CR0.WP clear: the write goes through.
  ASSERT_TRUE(run(kCmpxchg16bR14).handled);
  EXPECT_FALSE(cpu_.injected);
  // Kernel, CR0.WP set: #PF, present | write.
  cpu_.regs.rip = 0x10000;
  cpu_.sregs.cr0 |= X86_CR0_WP;
  ASSERT_TRUE(run(kCmpxchg16bR14).handled);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(kPfPresent | kPfWrite));
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);
  // User, CR0.WP clear: #PF, present | write | user.
  cpu_.injected.reset();
  cpu_.sregs.cr0 &= ~static_cast<uint64_t>(X86_CR0_WP);
  enter_user_mode(cpu_);
  ASSERT_TRUE(run(kCmpxchg16bR14).handled);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(kPfPresent | kPfWrite | kPfUser));
}

TEST_F(AssistTest, NotPresentOperandInjectsPageFaultInsteadOfStopping) {
  cpu_.regs.r14 = 0x40000000;  // PDPT[1] is not present
  const AssistOutcome o = run(kCmpxchg16bR14);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kCmpxchg8b16b);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(kPfWrite));
  EXPECT_EQ(cpu_.sregs.cr2, 0x40000020u);
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);
}

TEST_F(AssistTest, NonCanonicalOperandInjectsGeneralProtection) {
  cpu_.regs.r14 = 0x0000800000000000ULL;
  const AssistOutcome o = run(kCmpxchg16bR14);
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(13));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(0));
}

TEST_F(AssistTest, CompatibilityModeAddressesWrapAt4GiB) {
  cpu_.sregs.cs.l = 0;
  cpu_.sregs.cs.db = 1;  // 32-bit code under long mode
  cpu_.sregs.ds.base = 0x30010;
  cpu_.regs.rdi = 0xfffffff0;  // DS.base + EDI = 0x1'0003'0000 wraps to 0x30000
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x30000), uint64_t{0x0000000200000001}));
  cpu_.regs.rax = 1;
  cpu_.regs.rdx = 2;
  cpu_.regs.rbx = 3;
  cpu_.regs.rcx = 4;
  const AssistOutcome o = run({0x0f, 0xc7, 0x0f});  // cmpxchg8b [edi]
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_FALSE(cpu_.injected);
  EXPECT_EQ(*mem_->read_obj<uint64_t>(memory::GuestAddress(0x30000)), 0x0000000400000003u);
}

TEST_F(AssistTest, ProtectedModeFetchWrapsAt4GiB) {
  cpu_.sregs.cr0 = X86_CR0_PE;  // no paging, no long mode
  cpu_.sregs.efer = 0;
  cpu_.sregs.cs.l = 0;
  cpu_.sregs.cs.db = 1;
  cpu_.sregs.cs.base = 0xfff00000;
  cpu_.regs.rip = 0x110000;  // CS.base + EIP wraps to 0x10000
  const Bytes clac = {0x0f, 0x01, 0xca};
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x10000), clac));
  const AssistOutcome o = run({});
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kClac);
}

TEST_F(AssistTest, PopcntMemorySourceIsReadAtTheGuestsCpl) {
  ASSERT_TRUE(mem_->write_obj(memory::GuestAddress(0x20008), uint64_t{0x7}));
  cpu_.regs.rsp = 0x20000;
  const Bytes popcnt_rsp8 = {0xf3, 0x48, 0x0f, 0xb8, 0x44, 0x24, 0x08};  // popcnt rax, [rsp+8]
  enter_user_mode(cpu_);  // a supervisor page: #PF, user read
  ASSERT_TRUE(run(popcnt_rsp8).handled);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(kPfPresent | kPfUser));
  EXPECT_EQ(cpu_.sregs.cr2, 0x20008u);
  EXPECT_EQ(cpu_.regs.rip, 0x10000u);
  // The kernel reads it, and the walk's entries get Accessed (no Dirty for a read).
  cpu_.injected.reset();
  cpu_.sregs.cs.selector = 0x10;
  cpu_.sregs.cs.dpl = 0;
  ASSERT_TRUE(run(popcnt_rsp8).handled);
  EXPECT_FALSE(cpu_.injected);
  EXPECT_EQ(cpu_.regs.rax, 3u);
  EXPECT_EQ(entry_at(*mem_, kFakePd) & (kA | kD), kA);
  // A source in a page that is not present: #PF, not a stopped VM.
  cpu_.regs.rsp = 0x40000000;
  cpu_.regs.rip = 0x10000;
  ASSERT_TRUE(run(popcnt_rsp8).handled);
  EXPECT_EQ(cpu_.injected, std::optional<uint8_t>(14));
  EXPECT_EQ(cpu_.injected_error, std::optional<uint32_t>(0));
  EXPECT_EQ(cpu_.sregs.cr2, 0x40000008u);
}

TEST_F(AssistTest, FetchesFromGuestMemoryWhenTheExitHasNoBytes) {
  const Bytes code = {0x0f, 0x01, 0xca};
  ASSERT_TRUE(mem_->write(memory::GuestAddress(0x10000), code));
  const AssistOutcome o = run({});
  ASSERT_TRUE(o.handled) << o.error;
  EXPECT_EQ(o.kind, AssistKind::kClac);
}

TEST_F(AssistTest, UnknownInstructionReportsRipAndBytes) {
  const AssistOutcome o = run({0x0f, 0xae, 0x27});  // xsave [rdi]
  EXPECT_FALSE(o.handled);
  EXPECT_NE(o.error.find("RIP 0x10000"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("0f ae 27"), std::string::npos) << o.error;
  EXPECT_EQ(cpu_.set_regs_calls, 0);
  EXPECT_FALSE(cpu_.injected);
}

TEST_F(AssistTest, UnmappedRipIsReportedNotGuessed) {
  cpu_.regs.rip = 0x40000000;  // PDPT[1] is not present
  const AssistOutcome o = run({});
  EXPECT_FALSE(o.handled);
  EXPECT_NE(o.error.find("(none)"), std::string::npos) << o.error;
}

TEST(EmulationFailureBytesTest, UsesInstructionBytesOnlyWhenFlagged) {
  kvm_run run{};
  run.emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
  run.emulation_failure.ndata = 3;
  run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
  run.emulation_failure.insn_size = 2;
  run.emulation_failure.insn_bytes[0] = 0x0f;
  run.emulation_failure.insn_bytes[1] = 0x0b;
  auto b = emulation_failure_bytes(run);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1], 0x0b);
  run.emulation_failure.flags = 0;
  EXPECT_TRUE(emulation_failure_bytes(run).empty());
  run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
  run.emulation_failure.ndata = 1;
  EXPECT_TRUE(emulation_failure_bytes(run).empty());
}

}  // namespace
}  // namespace kindling::vmm
