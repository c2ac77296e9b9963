#include <gtest/gtest.h>

#include <set>

#include "vmm/kvm.h"
#include "vmm/machine.h"
#include "vmm/pvm/pvm_cmdline.h"

namespace kindling::vmm {
namespace {

TEST(KvmSupportTest, AllCapabilitiesPresentPasses) {
  EXPECT_TRUE(check_kvm_support(12, [](int) { return 1; }));
}

TEST(KvmSupportTest, WrongApiVersionNamesBothVersions) {
  auto r = check_kvm_support(11, [](int) { return 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, KvmError::kApiVersion);
  EXPECT_NE(r.error().message().find("11"), std::string::npos);
  EXPECT_NE(r.error().message().find("12"), std::string::npos);
}

TEST(KvmSupportTest, EachMissingCapabilityIsNamed) {
  for (const RequiredCapability& missing : required_capabilities()) {
    auto r = check_kvm_support(12, [&](int cap) { return cap == missing.cap ? 0 : 1; });
    ASSERT_FALSE(r) << missing.name;
    EXPECT_EQ(r.error().code, KvmError::kMissingCapability);
    EXPECT_EQ(r.error().message(),
              std::string(missing.name) + ": KVM capability missing on this host");
  }
}

TEST(KvmSupportTest, RequiredListHasTheCapabilitiesTheVmmUses) {
  std::set<int> caps;
  for (const RequiredCapability& c : required_capabilities()) caps.insert(c.cap);
  for (int cap : {KVM_CAP_IRQCHIP, KVM_CAP_USER_MEMORY, KVM_CAP_IOEVENTFD, KVM_CAP_IRQFD,
                  KVM_CAP_PIT2, KVM_CAP_SET_TSS_ADDR, KVM_CAP_IMMEDIATE_EXIT}) {
    EXPECT_TRUE(caps.count(cap)) << cap;
  }
}

TEST(KvmSupportTest, PermissionErrorTellsWhatToDo) {
  KvmErr e{KvmError::kPermission, EACCES, "/dev/kvm"};
  EXPECT_NE(e.message().find("kvm group"), std::string::npos);
  EXPECT_NE(e.message().find("Permission denied"), std::string::npos);
}

TEST(ComposeCmdlineTest, DefaultWhenNoneConfigured) {
  EXPECT_EQ(compose_cmdline(std::nullopt, {}, false), kDefaultCmdline);
}

TEST(ComposeCmdlineTest, FragmentsFollowTheConfiguredLine) {
  EXPECT_EQ(compose_cmdline(std::string("console=ttyS0"),
                            {"virtio_mmio.device=4K@0xd0000000:5", ""}, false),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5");
}

TEST(ComposeCmdlineTest, FragmentsGoBeforeInitArguments) {
  EXPECT_EQ(compose_cmdline(std::string("console=ttyS0 -- sleep 5"), {"root=/dev/vda"}, false),
            "console=ttyS0 root=/dev/vda -- sleep 5");
}

TEST(ComposeCmdlineTest, PvmHostAddsTheSwitchesOnce) {
  // The switches themselves are tested in pvm_cmdline_test.cc.
  EXPECT_EQ(compose_cmdline(std::string("test=hello"), {}, true),
            append_pvm_switches("test=hello"));
  EXPECT_EQ(compose_cmdline(std::string("test=hello"), {}, true).rfind("test=hello noxsave", 0),
            0u);
  const std::string once = compose_cmdline(std::string("noxsave test=hello"), {}, true);
  EXPECT_EQ(once.find("noxsave"), once.rfind("noxsave")) << once;
  EXPECT_EQ(compose_cmdline(std::string(""), {}, true).rfind("noxsave", 0), 0u);
}

}  // namespace
}  // namespace kindling::vmm
