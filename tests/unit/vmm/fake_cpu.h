// A scripted vCPU for the emulation-assist and SYSCALL-repair tests, and the long-mode setup
// both start from: 64-bit code with the first 2 MiB identity-mapped.
#pragma once

#include <asm/processor-flags.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "common/memory/guest_memory.h"
#include "vmm/boot/x86_tables.h"
#include "vmm/pvm/emulation_assist.h"
#include "vmm/x86_arch.h"

namespace kindling::vmm {

// An AssistCpu over plain fields: tests set regs/sregs/msrs and read back what the code under
// test changed, injected and how often it wrote or asked.
class FakeCpu : public AssistCpu {
 public:
  Result<kvm_regs, KvmErr> get_regs() override { return regs; }
  Result<void, KvmErr> set_regs(const kvm_regs& r) override {
    regs = r;
    ++set_regs_calls;
    return {};
  }
  Result<kvm_sregs, KvmErr> get_sregs() override { return sregs; }
  Result<void, KvmErr> set_sregs(const kvm_sregs& s) override {
    sregs = s;
    ++set_sregs_calls;
    return {};
  }
  Result<void, KvmErr> inject_exception(uint8_t vector,
                                        std::optional<uint32_t> error_code) override {
    injected = vector;
    injected_error = error_code;
    return {};
  }
  // The value in `msrs` (0 when absent), or an ioctl error while `fail_msrs` is set.
  Result<uint64_t, KvmErr> get_msr(uint32_t index) override {
    ++msr_reads;
    if (fail_msrs) return fail(KvmError::kIoctl, EINVAL, "KVM_GET_MSRS");
    auto it = msrs.find(index);
    return it == msrs.end() ? uint64_t{0} : it->second;
  }
  // set_regs and set_sregs calls together.
  int sets() const { return set_regs_calls + set_sregs_calls; }

  kvm_regs regs{};
  kvm_sregs sregs{};
  std::optional<uint8_t> injected;         // the last vector inject_exception queued
  std::optional<uint32_t> injected_error;  // and its error code
  std::map<uint32_t, uint64_t> msrs;
  bool fail_msrs = false;
  int msr_reads = 0;
  int set_regs_calls = 0;
  int set_sregs_calls = 0;
};

// Where enter_long_mode puts the paging structures.
inline constexpr uint64_t kFakePml4 = 0x1000;
inline constexpr uint64_t kFakePdpt = 0x2000;
inline constexpr uint64_t kFakePd = 0x3000;

// Identity-maps [0, 2 MiB) with one large page (PML4[0] -> PDPT[0] -> PD[0]) in `mem` and puts
// `cpu` in 64-bit mode on those tables (CR0.PE|PG, CR3, CR4.PAE, EFER.LME|LMA, CS.L).
inline ::testing::AssertionResult enter_long_mode(const memory::GuestMemory& mem, FakeCpu& cpu) {
  const struct {
    const char* name;
    uint64_t at;
    uint64_t entry;
  } entries[] = {
      {"PML4[0]", kFakePml4, kFakePdpt | kPtePresent | kPteWritable},
      {"PDPT[0]", kFakePdpt, kFakePd | kPtePresent | kPteWritable},
      {"PD[0]", kFakePd, 0 | kPtePresent | kPteWritable | kPteHuge},
  };
  for (const auto& e : entries) {
    if (!mem.write_obj(memory::GuestAddress(e.at), e.entry)) {
      return ::testing::AssertionFailure() << e.name << " at " << e.at << " is outside guest RAM";
    }
  }
  cpu.sregs.cr0 = X86_CR0_PE | X86_CR0_PG;
  cpu.sregs.cr3 = kFakePml4;
  cpu.sregs.cr4 = X86_CR4_PAE;
  cpu.sregs.efer = kEferLme | kEferLma;
  cpu.sregs.cs.l = 1;
  return ::testing::AssertionSuccess();
}

// 4 MiB of guest RAM and a FakeCpu in 64-bit mode on enter_long_mode's tables, at RIP
// 0x10000 with RFLAGS holding only its fixed bit: where the assist tests start.
class LongModeCpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = memory::GuestMemory::create({{0, 4ULL << 20}});
    ASSERT_TRUE(m);
    mem_ = std::make_unique<memory::GuestMemory>(std::move(*m));
    ASSERT_TRUE(enter_long_mode(*mem_, cpu_));
    cpu_.regs.rip = 0x10000;
    cpu_.regs.rflags = X86_EFLAGS_FIXED;
  }
  std::unique_ptr<memory::GuestMemory> mem_;
  FakeCpu cpu_;
};

}  // namespace kindling::vmm
