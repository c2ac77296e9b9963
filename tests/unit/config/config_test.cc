#include "vmm/config/config.h"

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace kindling::vmm {
namespace {

using test::TempDir;

TEST(ParseMemSize, AcceptsMibAndSuffixes) {
  struct Case {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"512", 512ULL << 20},      {"256M", 256ULL << 20}, {"256m", 256ULL << 20},
      {"1G", 1ULL << 30},         {"2g", 2ULL << 30},     {"65536K", 64ULL << 20},
      {"128MiB", 128ULL << 20},   {"64G", 64ULL << 30},   {"16M", 16ULL << 20},
      {"16388K", 16388ULL << 10},
  };
  for (const auto& c : cases) {
    auto r = parse_mem_size(c.text, "--mem");
    ASSERT_TRUE(r) << c.text << ": " << r.error().message();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
}

TEST(ParseMemSize, RejectsBadStrings) {
  for (const char* text : {"", "M", "1.5G", "-1", "256 M", "256X", "0x100", "1T", "G1", "256MB!",
                           "99999999999999999999999", "18446744073709551615G"}) {
    auto r = parse_mem_size(text, "--mem");
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, ConfigError::kInvalid) << text;
    EXPECT_NE(r.error().message().find("--mem"), std::string::npos) << r.error().message();
  }
}

TEST(ParseMemSize, RejectsOutOfRangeAndUnaligned) {
  auto zero = parse_mem_size("0", "--mem");
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message().find("between 16 MiB and 64 GiB"), std::string::npos)
      << zero.error().message();
  EXPECT_FALSE(parse_mem_size("15M", "--mem"));
  EXPECT_FALSE(parse_mem_size("65G", "--mem"));
  EXPECT_FALSE(parse_mem_size("1000000000G", "--mem"));
  auto odd = parse_mem_size("16385K", "--mem");
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message().find("multiple of 4 KiB"), std::string::npos);
}

TEST(CheckVcpus, Range) {
  EXPECT_TRUE(check_vcpus(1, "x"));
  EXPECT_TRUE(check_vcpus(kMaxVcpus, "x"));
  EXPECT_FALSE(check_vcpus(0, "x"));
  EXPECT_FALSE(check_vcpus(-3, "x"));
  auto big = check_vcpus(100000, "--cpus");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().message(),
            "--cpus: the number of vCPUs must be between 1 and 64, not 100000");
}

DriveConfig drive(std::string path, std::string id = "", bool root = false) {
  DriveConfig d;
  d.path = std::move(path);
  d.id = std::move(id);
  d.is_root = root;
  return d;
}

TEST(CheckDrives, AcceptsDistinctDrivesWithOneRoot) {
  EXPECT_TRUE(check_drives({}));
  EXPECT_TRUE(check_drives({drive("a.img", "a", true), drive("b.img", "b"), drive("c.img")}));
  EXPECT_TRUE(check_drives({drive("a.img"), drive("b.img")}));  // empty ids never clash
}

TEST(CheckDrives, RejectsTwoRoots) {
  auto r = check_drives({drive("a.img", "a", true), drive("b.img", "b", true)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "drives[1] (b.img): a second root device (drives[0] (a.img) is the root device "
            "already)");
}

TEST(CheckDrives, RejectsDuplicateIds) {
  auto r = check_drives({drive("a.img", "disk"), drive("b.img", "disk")});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("duplicate drive id \"disk\""), std::string::npos);
}

TEST(CheckDrives, RejectsTheSameImageTwiceEvenThroughAnotherPath) {
  EXPECT_FALSE(check_drives({drive("a.img"), drive("./a.img")}));
  TempDir dir;
  std::string img = dir.write("sub/disk.img", "x");
  std::string other_spelling = dir.path() + "/sub/../sub/disk.img";
  auto r = check_drives({drive(img), drive(other_spelling)});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("the same image as drives[0]"), std::string::npos);
  // A hard link is the same file too.
  std::string link = dir.path() + "/link.img";
  ASSERT_EQ(::link(img.c_str(), link.c_str()), 0);
  EXPECT_FALSE(check_drives({drive(img), drive(link)}));
}

TEST(CheckDrives, RejectsEmptyPathAndUnknownEngine) {
  EXPECT_FALSE(check_drives({drive("")}));
  DriveConfig d = drive("a.img");
  d.io_engine = "uring";
  EXPECT_FALSE(check_drives({d}));
}

TEST(CheckDrives, AcceptsEveryEngine) {
  for (const char* e : {"libaio", "io_uring", "sync"}) {
    DriveConfig d = drive("a.img");
    d.io_engine = e;
    EXPECT_TRUE(check_drives({d})) << e;
  }
}

TEST(ValidateConfig, NeedsAKernelAndSaneValues) {
  VmConfig cfg;
  auto no_kernel = validate_config(cfg);
  ASSERT_FALSE(no_kernel);
  EXPECT_NE(no_kernel.error().message().find("no kernel"), std::string::npos);
  cfg.kernel_path = "vmlinux";
  EXPECT_TRUE(validate_config(cfg));
  cfg.timeout_s = 0;
  EXPECT_FALSE(validate_config(cfg));
  cfg.timeout_s = 10;
  cfg.log_level = "loud";
  EXPECT_FALSE(validate_config(cfg));
  cfg.log_level = "debug";
  cfg.vcpus = 0;
  EXPECT_FALSE(validate_config(cfg));
  cfg.vcpus = 2;
  cfg.mem_bytes = 4096;
  EXPECT_FALSE(validate_config(cfg));
}

TEST(ConfigError, EveryCodeHasAString) {
  for (ConfigError e :
       {ConfigError::kFile, ConfigError::kJson, ConfigError::kUnknownKey, ConfigError::kWrongType,
        ConfigError::kUnsupported, ConfigError::kInvalid, ConfigError::kMissingKey}) {
    EXPECT_NE(to_string(e), nullptr);
  }
  EXPECT_STREQ(to_string(ConfigError::kUnknownKey), "unknown key");
}

}  // namespace
}  // namespace kindling::vmm
