#include "vmm/pvm/pvm_cmdline.h"

#include <gtest/gtest.h>

#include <string>

namespace kindling::vmm {
namespace {

TEST(PvmCmdlineTest, HasParamMatchesWholeWordsAndKeys) {
  EXPECT_TRUE(cmdline_has_param("console=ttyS0 noxsave quiet", "noxsave"));
  EXPECT_TRUE(cmdline_has_param("noxsave", "noxsave"));
  EXPECT_TRUE(cmdline_has_param("a  clearcpuid=1 b", "clearcpuid"));
  EXPECT_FALSE(cmdline_has_param("noxsaveopt", "noxsave"));
  EXPECT_FALSE(cmdline_has_param("xnoxsave", "noxsave"));
  EXPECT_FALSE(cmdline_has_param("clearcpuidx=1", "clearcpuid"));
  EXPECT_FALSE(cmdline_has_param("", "noxsave"));
  EXPECT_FALSE(cmdline_has_param("   ", "noxsave"));
}

TEST(PvmCmdlineTest, KernelParamsGoBeforeInitArguments) {
  EXPECT_EQ(add_kernel_param("console=ttyS0", "root=/dev/vda"), "console=ttyS0 root=/dev/vda");
  EXPECT_EQ(add_kernel_param("", "root=/dev/vda"), "root=/dev/vda");
  EXPECT_EQ(add_kernel_param("a -- sleep 5", "root=/dev/vda"), "a root=/dev/vda -- sleep 5");
  EXPECT_EQ(add_kernel_param("-- sh", "noxsave"), "noxsave -- sh");
  EXPECT_EQ(add_kernel_param("a --x b", "p"), "a --x b p");  // not a standalone --
  EXPECT_EQ(add_kernel_param("a", ""), "a");
  // After "--" a word is an init argument, not a kernel parameter.
  EXPECT_FALSE(cmdline_has_param("a -- noxsave", "noxsave"));
  const std::string out = append_pvm_switches("console=ttyS0 -- noxsave");
  EXPECT_EQ(out.rfind("console=ttyS0 noxsave ", 0), 0u) << out;
  EXPECT_EQ(out.substr(out.size() - 11), " -- noxsave") << out;
}

TEST(PvmCmdlineTest, AppendsEverySwitchInOrder) {
  std::string expected = "console=ttyS0";
  for (const PvmSwitch& s : pvm_cmdline_switches()) expected += std::string(" ") + s.text;
  EXPECT_EQ(append_pvm_switches("console=ttyS0"), expected);
  EXPECT_EQ(append_pvm_switches(""), expected.substr(std::string("console=ttyS0 ").size()));
}

TEST(PvmCmdlineTest, UserSettingWins) {
  const std::string out = append_pvm_switches("clearcpuid=308 noxsave");
  EXPECT_EQ(out.rfind("clearcpuid=308 noxsave", 0), 0u) << out;
  EXPECT_EQ(out.find("clearcpuid"), out.rfind("clearcpuid")) << out;
  EXPECT_EQ(out.find("noxsave"), out.rfind("noxsave")) << out;
}

TEST(PvmCmdlineTest, SwitchesToAddSkipThoseTheUserSets) {
  const auto sw = pvm_cmdline_switches();
  const auto all = pvm_switches_to_add("console=ttyS0");
  ASSERT_EQ(all.size(), sw.size());
  for (size_t i = 0; i < sw.size(); ++i) EXPECT_EQ(all[i], sw[i].text);
  const auto some = pvm_switches_to_add("clearcpuid=308 noxsave");
  ASSERT_EQ(some.size(), sw.size() - 2);
  for (std::string_view s : some) {
    EXPECT_NE(s, "noxsave");
    EXPECT_NE(s.substr(0, 11), "clearcpuid=");
  }
}

TEST(PvmCmdlineTest, NoxsaveFirstAndSmapKept) {
  auto sw = pvm_cmdline_switches();
  ASSERT_FALSE(sw.empty());
  EXPECT_STREQ(sw[0].text, "noxsave");
  for (const PvmSwitch& s : sw) {
    EXPECT_NE(std::string(s.why), "");
    // SMAP (308) must stay on: its clac exit at the #PF entry is the SYSCALL repair's hook.
    const std::string text = s.text;
    if (text.rfind("clearcpuid=", 0) != 0) continue;
    const std::string list = "," + text.substr(11) + ",";
    EXPECT_EQ(list.find(",308,"), std::string::npos) << text;
    EXPECT_EQ(list.find(",smap,"), std::string::npos) << text;
  }
}

TEST(PvmCmdlineTest, SmapOffIsAConflict) {
  EXPECT_TRUE(pvm_cmdline_conflicts("console=ttyS0 quiet").empty());
  EXPECT_TRUE(pvm_cmdline_conflicts("").empty());
  // kindling's own switches leave SMAP on.
  EXPECT_TRUE(pvm_cmdline_conflicts(append_pvm_switches("console=ttyS0")).empty());
  EXPECT_TRUE(pvm_cmdline_conflicts("clearcpuid=3080,130,30 nosmapx smap").empty());
  EXPECT_TRUE(pvm_cmdline_conflicts("a -- nosmap clearcpuid=308").empty());  // init arguments

  const auto nosmap = pvm_cmdline_conflicts("console=ttyS0 nosmap");
  ASSERT_EQ(nosmap.size(), 1u);
  EXPECT_EQ(nosmap[0].rfind("nosmap turns off SMAP", 0), 0u) << nosmap[0];
  for (const char* c :
       {"clearcpuid=308", "clearcpuid=151,308", "clearcpuid=308,580", "clearcpuid=1,smap,2"}) {
    const auto out = pvm_cmdline_conflicts(std::string("quiet ") + c + " -- sh");
    ASSERT_EQ(out.size(), 1u) << c;
    EXPECT_EQ(out[0].rfind(std::string(c) + " turns off SMAP", 0), 0u) << out[0];
  }
  EXPECT_EQ(pvm_cmdline_conflicts("nosmap clearcpuid=308").size(), 2u);
}

}  // namespace
}  // namespace kindling::vmm
