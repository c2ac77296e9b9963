#include "vmm/config/cli.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace kindling::vmm {
namespace {

using test::TempDir;

// Runs parse_cli on {"kindling", args...}, capturing what it prints.
struct Cli {
  std::ostringstream out;
  Result<std::optional<VmConfig>, ConfigErr> operator()(std::vector<std::string> args) {
    args.insert(args.begin(), "kindling");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    return parse_cli(static_cast<int>(argv.size()), argv.data(), out);
  }
};

VmConfig expect_config(Result<std::optional<VmConfig>, ConfigErr> r) {
  EXPECT_TRUE(r) << r.error().message();
  if (!r || !*r) return {};
  return **r;
}

TEST(Cli, FullRunCommandLine) {
  Cli cli;
  VmConfig cfg = expect_config(cli({"run",
                                    "--kernel",
                                    "vmlinux",
                                    "--initrd",
                                    "initrd.cpio",
                                    "--cmdline",
                                    "console=ttyS0 quiet",
                                    "--mem",
                                    "1G",
                                    "--cpus",
                                    "4",
                                    "--disk",
                                    "root.img",
                                    "--disk",
                                    "data.img,ro,id=data",
                                    "--root",
                                    "--console-log",
                                    "console.txt",
                                    "--timeout",
                                    "30",
                                    "--stats",
                                    "--log-level",
                                    "debug",
                                    "--io-engine",
                                    "sync",
                                    "--no-merge"}));
  EXPECT_EQ(cfg.kernel_path, "vmlinux");
  EXPECT_EQ(cfg.initrd_path, "initrd.cpio");
  EXPECT_EQ(cfg.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(cfg.mem_bytes, 1ULL << 30);
  EXPECT_EQ(cfg.vcpus, 4u);
  ASSERT_EQ(cfg.drives.size(), 2u);
  EXPECT_EQ(cfg.drives[0].path, "root.img");
  EXPECT_TRUE(cfg.drives[0].is_root);
  EXPECT_FALSE(cfg.drives[0].read_only);
  EXPECT_EQ(cfg.drives[1].path, "data.img");
  EXPECT_EQ(cfg.drives[1].id, "data");
  EXPECT_TRUE(cfg.drives[1].read_only);
  EXPECT_FALSE(cfg.drives[1].is_root);
  for (const auto& d : cfg.drives) {
    EXPECT_EQ(d.io_engine, "sync");
    EXPECT_FALSE(d.merge);
  }
  EXPECT_EQ(cfg.console_log, "console.txt");
  EXPECT_EQ(cfg.timeout_s, 30.0);
  EXPECT_TRUE(cfg.stats);
  EXPECT_EQ(cfg.log_level, "debug");
}

TEST(Cli, DefaultsWithOnlyAKernel) {
  Cli cli;
  VmConfig cfg = expect_config(cli({"run", "--kernel", "k"}));
  EXPECT_FALSE(cfg.cmdline);
  EXPECT_EQ(cfg.mem_bytes, 256ULL << 20);
  EXPECT_EQ(cfg.vcpus, 1u);
  EXPECT_TRUE(cfg.drives.empty());
  EXPECT_FALSE(cfg.stats);
  EXPECT_FALSE(cfg.timeout_s);
  EXPECT_EQ(cfg.log_level, "warn");
  EXPECT_TRUE(cfg.acpi);
  EXPECT_EQ(cfg.boot_protocol, "auto");
  EXPECT_FALSE(cfg.exit_on_halt);
  EXPECT_TRUE(cfg.seccomp);
}

TEST(Cli, BootPlatformFlags) {
  Cli cli;
  VmConfig cfg = expect_config(
      cli({"run", "--kernel", "k", "--no-acpi", "--boot-protocol", "linux", "--exit-on-halt"}));
  EXPECT_FALSE(cfg.acpi);
  EXPECT_EQ(cfg.boot_protocol, "linux");
  EXPECT_TRUE(cfg.exit_on_halt);
}

TEST(Cli, NoSeccompTurnsTheFiltersOff) {
  Cli cli;
  VmConfig cfg = expect_config(cli({"run", "--kernel", "k", "--no-seccomp"}));
  EXPECT_FALSE(cfg.seccomp);
}

TEST(Cli, VersionAndHelpPrintAndReturnNothing) {
  Cli cli;
  auto v = cli({"--version"});
  ASSERT_TRUE(v);
  EXPECT_FALSE(*v);
  EXPECT_EQ(cli.out.str(), std::string("kindling ") + KINDLING_VERSION + "\n");

  Cli help;
  auto h = help({"--help"});
  ASSERT_TRUE(h);
  EXPECT_FALSE(*h);
  EXPECT_NE(help.out.str().find("run"), std::string::npos);
  EXPECT_NE(help.out.str().find("Examples:"), std::string::npos);

  Cli run_help;
  auto rh = run_help({"run", "--help"});
  ASSERT_TRUE(rh);
  EXPECT_FALSE(*rh);
  EXPECT_NE(run_help.out.str().find("--disk"), std::string::npos);
  EXPECT_NE(run_help.out.str().find("--kernel vmlinux --disk rootfs.ext4 --root"),
            std::string::npos);
}

TEST(Cli, IoEngineIoUring) {
  Cli cli;
  VmConfig cfg =
      expect_config(cli({"run", "--kernel", "k", "--disk", "r.img", "--io-engine", "io_uring"}));
  ASSERT_EQ(cfg.drives.size(), 1u);
  EXPECT_EQ(cfg.drives[0].io_engine, "io_uring");
}

TEST(Cli, UsageErrorsBecomeOneLine) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                                // no subcommand
      {"boot"},                                          // unknown subcommand
      {"run", "--kernel", "k", "--bogus"},               // unknown flag
      {"run", "--kernel"},                               // missing value
      {"run", "--kernel", "k", "--log-level", "loud"},   // not a level
      {"run", "--kernel", "k", "--io-engine", "uring"},  // not an engine (io_uring is)
      {"run", "--kernel", "k", "extra"},
  };
  for (const auto& args : bad) {
    Cli cli;
    auto r = cli(args);
    ASSERT_FALSE(r) << (args.empty() ? "(none)" : args.back());
    std::string msg = r.error().message();
    EXPECT_FALSE(msg.empty());
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(cli.out.str(), "");
  }
}

TEST(Cli, BadValuesNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    const char* expected;
  } cases[] = {
      {{"run", "--kernel", "k", "--mem", "1.5G"}, "--mem \"1.5G\": expected a size"},
      {{"run", "--kernel", "k", "--mem", "0"}, "--mem 0: guest memory must be between"},
      {{"run", "--kernel", "k", "--mem", "100T"}, "--mem \"100T\": expected a size"},
      {{"run", "--kernel", "k", "--cpus", "0"}, "--cpus: the number of vCPUs must be between"},
      {{"run", "--kernel", "k", "--cpus", "100000"}, "not 100000"},
      {{"run", "--kernel", "k", "--cpus", "two"}, "--cpus \"two\": expected an integer"},
      {{"run", "--kernel", "k", "--timeout", "-5"}, "--timeout \"-5\": expected a positive"},
      {{"run", "--kernel", "k", "--timeout", "soon"}, "--timeout \"soon\""},
      {{"run", "--kernel", "k", "--root"}, "--root: there is no disk"},
      {{"run", "--kernel", "k", "--disk", "a.img,rw,fast"}, "unknown option \"fast\""},
      {{"run", "--kernel", "k", "--disk", "a.img", "--disk", "a.img"}, "the same image"},
      {{"run", "--kernel", "k", "--disk", "a.img,id=x", "--disk", "b.img,id=x"},
       "duplicate drive id \"x\""},
      {{"run", "--mem", "512M"}, "no kernel"},
      {{"run", "--kernel", "k", "--boot-protocol", "multiboot"}, "--boot-protocol"},
  };
  for (const auto& c : cases) {
    Cli cli;
    auto r = cli(c.args);
    ASSERT_FALSE(r) << c.expected;
    EXPECT_NE(r.error().message().find(c.expected), std::string::npos)
        << r.error().message() << " does not contain " << c.expected;
  }
}

TEST(ParseDiskSpec, PathAndOptions) {
  auto d = parse_disk_spec("a.img,ro,id=x");
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->path, "a.img");
  EXPECT_TRUE(d->read_only);
  EXPECT_EQ(d->id, "x");
  EXPECT_FALSE(d->is_root);

  auto plain = parse_disk_spec("/images/disk.raw");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->path, "/images/disk.raw");
  EXPECT_FALSE(plain->read_only);
  EXPECT_EQ(plain->id, "");

  auto id_first = parse_disk_spec("b.img,id=serial-0001,ro");
  ASSERT_TRUE(id_first);
  EXPECT_EQ(id_first->id, "serial-0001");
  EXPECT_TRUE(id_first->read_only);

  EXPECT_TRUE(parse_disk_spec("b.img,id=12345678901234567890"));  // 20 bytes fits
}

// The testing extension: fault rules (block/fault_engine.h), repeatable, checked here.
TEST(ParseDiskSpec, FaultRules) {
  auto d = parse_disk_spec("a.img,fault=eio@2048+8,ro,fault=short:r/2");
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_EQ(d->faults.size(), 2u);
  EXPECT_EQ(block::to_string(d->faults[0]), "eio:rw@2048+8");
  EXPECT_EQ(block::to_string(d->faults[1]), "short:r/2");
  EXPECT_TRUE(d->read_only);
  EXPECT_TRUE(parse_disk_spec("a.img")->faults.empty());
  auto bad = parse_disk_spec("a.img,fault=eio@1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "--disk a.img,fault=eio@1: fault rule \"eio@1\": the range is @FIRST+COUNT (sectors)");
}

TEST(ParseDiskSpec, Rejects) {
  for (const char* spec : {"", ",ro", "a.img,", "a.img,id=", "a.img,id=123456789012345678901",
                           "a.img,readonly", "a.img,RO", "a.img,fault=", "a.img,fault=oops"}) {
    EXPECT_FALSE(parse_disk_spec(spec)) << spec;
  }
}

TEST(ParseDiskSpec, RateLimits) {
  auto d = parse_disk_spec("a.img,bw=10M,iops=500");
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_TRUE(d->rate_limiter.bandwidth);
  EXPECT_EQ(*d->rate_limiter.bandwidth, (TokenBucketConfig{10 << 20, 0, 1000}));
  ASSERT_TRUE(d->rate_limiter.ops);
  EXPECT_EQ(*d->rate_limiter.ops, (TokenBucketConfig{500, 0, 1000}));

  auto bursts = parse_disk_spec("a.img,iops_burst=100,bw_burst=1G,ro,bw=512KiB,iops=20");
  ASSERT_TRUE(bursts) << bursts.error().message();
  EXPECT_TRUE(bursts->read_only);
  EXPECT_EQ(*bursts->rate_limiter.bandwidth, (TokenBucketConfig{512 << 10, 1ULL << 30, 1000}));
  EXPECT_EQ(*bursts->rate_limiter.ops, (TokenBucketConfig{20, 100, 1000}));

  auto bytes = parse_disk_spec("a.img,bw=4096");
  ASSERT_TRUE(bytes);
  EXPECT_EQ(bytes->rate_limiter.bandwidth->size, 4096u);
  EXPECT_FALSE(bytes->rate_limiter.ops);

  auto plain = parse_disk_spec("a.img");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->rate_limiter, RateLimiterConfig{});
}

TEST(ParseDiskSpec, RejectsBadRateLimits) {
  const std::pair<const char*, const char*> cases[] = {
      {"a.img,bw=0",
       "--disk a.img,bw=0: bw: expected a positive integer of bytes (suffix K, M or "
       "G allowed)"},
      {"a.img,bw=10T", "bw: expected a positive integer of bytes"},
      {"a.img,bw=-1", "bw: expected a positive integer of bytes"},
      {"a.img,bw=", "bw: expected a positive integer of bytes"},
      {"a.img,bw=20000000000G", "bw: expected a positive integer of bytes"},
      {"a.img,iops=1.5", "--disk a.img,iops=1.5: iops: expected a positive integer"},
      {"a.img,iops=5K", "iops: expected a positive integer"},
      {"a.img,bw_burst=1M", "--disk a.img,bw_burst=1M: bw_burst needs bw="},
      {"a.img,iops_burst=10,bw=1M", "iops_burst needs iops="},
      {"a.img,ops=5",
       "unknown option \"ops=5\" (expected ro, rw, id=SERIAL, bw=, iops=, "
       "bw_burst=, iops_burst= or fault=RULE)"},
  };
  for (const auto& [spec, message] : cases) {
    auto d = parse_disk_spec(spec);
    ASSERT_FALSE(d) << spec;
    EXPECT_EQ(d.error().code, ConfigError::kInvalid) << spec;
    EXPECT_NE(d.error().message().find(message), std::string::npos)
        << spec << ": " << d.error().message();
  }
}

const char* kFileConfig = R"({
  "boot-source": {"kernel_image_path": "vmlinux", "boot_args": "from=file"},
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 512},
  "drives": [
    {"drive_id": "root", "path_on_host": "root.img", "is_root_device": true, "io_engine": "Sync"},
    {"drive_id": "data", "path_on_host": "data.img", "is_root_device": false}
  ],
  "kindling": {"timeout_s": 60}
})";

TEST(Cli, ConfigFileAlone) {
  TempDir dir;
  std::string file = dir.write("vm.json", kFileConfig);
  Cli cli;
  VmConfig cfg = expect_config(cli({"run", "--config", file}));
  EXPECT_EQ(cfg.kernel_path, dir.path() + "/vmlinux");
  EXPECT_EQ(cfg.cmdline, "from=file");
  EXPECT_EQ(cfg.vcpus, 2u);
  EXPECT_EQ(cfg.mem_bytes, 512ULL << 20);
  ASSERT_EQ(cfg.drives.size(), 2u);
  EXPECT_EQ(cfg.drives[0].io_engine, "sync");
  EXPECT_EQ(cfg.timeout_s, 60.0);
}

TEST(Cli, FlagsGivenOverrideTheConfigFileAndOnlyThose) {
  TempDir dir;
  std::string file = dir.write("vm.json", kFileConfig);
  Cli cli;
  VmConfig cfg =
      expect_config(cli({"run", "--config", file, "--cpus", "3", "--cmdline", "from=flag",
                         "--io-engine", "libaio", "--no-merge", "--timeout", "5"}));
  EXPECT_EQ(cfg.vcpus, 3u);
  EXPECT_EQ(cfg.cmdline, "from=flag");
  EXPECT_EQ(cfg.timeout_s, 5.0);
  // Not given: the file's values stay.
  EXPECT_EQ(cfg.mem_bytes, 512ULL << 20);
  EXPECT_EQ(cfg.kernel_path, dir.path() + "/vmlinux");
  ASSERT_EQ(cfg.drives.size(), 2u);
  EXPECT_TRUE(cfg.drives[0].is_root);
  for (const auto& d : cfg.drives) {
    EXPECT_EQ(d.io_engine, "libaio");
    EXPECT_FALSE(d.merge);
  }
}

TEST(Cli, DiskFlagsReplaceTheFilesDrives) {
  TempDir dir;
  std::string file = dir.write("vm.json", kFileConfig);
  Cli cli;
  VmConfig cfg = expect_config(
      cli({"run", "--config", file, "--kernel", "other-kernel", "--disk", "x.img", "--root"}));
  EXPECT_EQ(cfg.kernel_path, "other-kernel");  // command-line paths are relative to the cwd
  ASSERT_EQ(cfg.drives.size(), 1u);
  EXPECT_EQ(cfg.drives[0].path, "x.img");
  EXPECT_TRUE(cfg.drives[0].is_root);
}

TEST(Cli, RootFlagMovesTheRootToTheFirstDrive) {
  TempDir dir;
  std::string json = R"({"boot-source": {"kernel_image_path": "k"}, "drives": [
    {"drive_id": "a", "path_on_host": "a.img", "is_root_device": false},
    {"drive_id": "b", "path_on_host": "b.img", "is_root_device": true}]})";
  std::string file = dir.write("vm.json", json);
  Cli cli;
  VmConfig cfg = expect_config(cli({"run", "--config", file, "--root"}));
  ASSERT_EQ(cfg.drives.size(), 2u);
  EXPECT_TRUE(cfg.drives[0].is_root);
  EXPECT_FALSE(cfg.drives[1].is_root);
}

TEST(Cli, ConfigFileErrorsPassThrough) {
  TempDir dir;
  Cli cli;
  auto missing = cli({"run", "--config", dir.path() + "/missing.json"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ConfigError::kFile);
  std::string file = dir.write("bad.json", R"({"boot-source": {"kernel_image_path": "k"},
    "machine-config": {"vcpu_count": "2", "mem_size_mib": 256}})");
  auto bad = cli({"run", "--config", file});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            file + ": machine-config.vcpu_count: expected an integer, got string");
}

}  // namespace
}  // namespace kindling::vmm
