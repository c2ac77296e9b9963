// The KVM wrappers against the real /dev/kvm: start-up checks, VM plumbing, vCPU setup.
#include <gtest/gtest.h>

#include "tests/support/child_process.h"
#include "vmm/cpuid.h"
#include "vmm/kvm.h"
#include "vmm/vcpu.h"

namespace kindling::vmm {
namespace {

class KvmObjectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!test::kvm_usable(why)) GTEST_SKIP() << why;
  }
};

TEST_F(KvmObjectsTest, OpenChecksEveryCapability) {
  auto kvm = Kvm::open();
  ASSERT_TRUE(kvm) << kvm.error().message();
  for (const RequiredCapability& c : required_capabilities()) {
    EXPECT_GT(kvm->check_extension(c.cap), 0) << c.name;
  }
}

TEST_F(KvmObjectsTest, MissingDeviceIsAnOpenError) {
  auto kvm = Kvm::open("/nonexistent/kvm");
  ASSERT_FALSE(kvm);
  EXPECT_EQ(kvm.error().code, KvmError::kOpen);
}

TEST_F(KvmObjectsTest, SupportedCpuidHasTheLeavesTheFilterEdits) {
  auto kvm = Kvm::open();
  ASSERT_TRUE(kvm);
  auto cpuid = kvm->supported_cpuid();
  ASSERT_TRUE(cpuid) << cpuid.error().message();
  bool leaf1 = false, kvm_sig = false;
  for (const auto& e : *cpuid) {
    leaf1 |= e.function == 1;
    kvm_sig |= e.function == 0x40000000;
  }
  EXPECT_TRUE(leaf1);
  EXPECT_TRUE(kvm_sig);
}

TEST_F(KvmObjectsTest, VmPlumbingAndVcpuSetup) {
  auto kvm = Kvm::open();
  ASSERT_TRUE(kvm);
  auto vm = Vm::create(*kvm);
  ASSERT_TRUE(vm) << vm.error().message();
  ASSERT_TRUE(vm->set_tss_addr(0xfffbd000));
  ASSERT_TRUE(vm->set_identity_map_addr(0xfffbc000));
  ASSERT_TRUE(vm->create_irqchip());
  ASSERT_TRUE(vm->create_pit2());
  auto mem = memory::GuestMemory::create_ram(64ULL << 20);
  ASSERT_TRUE(mem);
  ASSERT_TRUE(vm->map_memory(*mem));

  auto notify = EventFd::create();
  ASSERT_TRUE(notify);
  auto reg = vm->register_ioeventfd(0xd0000050, 4, uint64_t{0}, *notify);
  ASSERT_TRUE(reg) << reg.error().message();
  // The same registration twice is refused by KVM; after removal it is accepted again.
  EXPECT_FALSE(vm->register_ioeventfd(0xd0000050, 4, uint64_t{0}, *notify));
  ASSERT_TRUE(vm->unregister_ioeventfd(0xd0000050, 4, uint64_t{0}, *notify));
  EXPECT_TRUE(vm->register_ioeventfd(0xd0000050, 4, uint64_t{0}, *notify));

  auto irq = EventFd::create();
  ASSERT_TRUE(irq);
  ASSERT_TRUE(vm->register_irqfd(5, *irq));
  EXPECT_TRUE(irq->signal());
  EXPECT_TRUE(vm->unregister_irqfd(5, *irq));

  auto vcpu = Vcpu::create(*kvm, *vm, 0);
  ASSERT_TRUE(vcpu) << vcpu.error().message();
  auto supported = kvm->supported_cpuid();
  ASSERT_TRUE(supported);
  EXPECT_TRUE(vcpu->set_cpuid(filter_cpuid(*supported, {0, 1, true})));
  EXPECT_TRUE(vcpu->set_boot_msrs());
  EXPECT_TRUE(vcpu->setup_lapic());
  BootEntry entry;
  entry.rip = 0x100000;
  entry.rsi = 0x7000;
  entry.rsp = 0x8ff0;
  entry.cr3 = 0x9000;
  entry.gdt_base = 0x500;
  entry.gdt_limit = 31;
  entry.idt_base = 0x520;
  ASSERT_TRUE(vcpu->setup_boot_cpu(entry));
  auto regs = vcpu->get_regs();
  ASSERT_TRUE(regs);
  EXPECT_EQ(regs->rip, 0x100000u);
  EXPECT_EQ(regs->rsi, 0x7000u);
  EXPECT_EQ(regs->rflags, 2u);
  auto sregs = vcpu->get_sregs();
  ASSERT_TRUE(sregs);
  EXPECT_EQ(sregs->cs.selector, 0x10);
  EXPECT_EQ(sregs->cs.l, 1);
  EXPECT_EQ(sregs->cr3, 0x9000u);
  auto lstar = vcpu->get_msr(0xc0000082);
  ASSERT_TRUE(lstar) << lstar.error().message();
  EXPECT_EQ(*lstar, 0u);

  auto ap = Vcpu::create(*kvm, *vm, 1);
  ASSERT_TRUE(ap);
  auto state = ap->mp_state();
  ASSERT_TRUE(state);
  EXPECT_EQ(*state, static_cast<uint32_t>(KVM_MP_STATE_UNINITIALIZED));
}

}  // namespace
}  // namespace kindling::vmm
