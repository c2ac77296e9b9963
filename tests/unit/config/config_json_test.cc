#include "vmm/config/config_json.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.h"

namespace kindling::vmm {
namespace {

using nlohmann::json;
using test::TempDir;

// A config as Firecracker's docs write one, every optional key at its default.
json firecracker_config() {
  return json::parse(R"({
    "boot-source": {
      "kernel_image_path": "vmlinux",
      "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
      "initrd_path": null
    },
    "drives": [{
      "drive_id": "rootfs",
      "path_on_host": "rootfs.ext4",
      "is_root_device": true,
      "partuuid": null,
      "is_read_only": false,
      "cache_type": "Unsafe",
      "io_engine": "Sync",
      "rate_limiter": null,
      "socket": null
    }],
    "machine-config": {
      "vcpu_count": 2,
      "mem_size_mib": 1024,
      "smt": false,
      "track_dirty_pages": false,
      "huge_pages": "None"
    },
    "cpu-config": null,
    "balloon": null,
    "network-interfaces": [],
    "vsock": null,
    "logger": null,
    "metrics": null,
    "mmds-config": null,
    "entropy": null
  })");
}

Result<VmConfig, ConfigErr> parse(const json& j, const std::string& base = "/vm") {
  return parse_config_json(j.dump(), base);
}

TEST(ConfigJson, FirecrackerConfigWithDefaultsIsAccepted) {
  auto cfg = parse(firecracker_config());
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path, "/vm/vmlinux");
  EXPECT_EQ(cfg->cmdline, "console=ttyS0 reboot=k panic=1 pci=off");
  EXPECT_FALSE(cfg->initrd_path);
  EXPECT_EQ(cfg->vcpus, 2u);
  EXPECT_EQ(cfg->mem_bytes, 1024ULL << 20);
  ASSERT_EQ(cfg->drives.size(), 1u);
  EXPECT_EQ(cfg->drives[0].id, "rootfs");
  EXPECT_EQ(cfg->drives[0].path, "/vm/rootfs.ext4");
  EXPECT_TRUE(cfg->drives[0].is_root);
  EXPECT_FALSE(cfg->drives[0].read_only);
  EXPECT_EQ(cfg->drives[0].io_engine, "sync");
  EXPECT_TRUE(cfg->drives[0].merge);
  EXPECT_FALSE(cfg->stats);
  EXPECT_TRUE(cfg->seccomp);
}

TEST(ConfigJson, MinimalConfigGetsKindlingDefaults) {
  auto cfg = parse_config_json(R"({"boot-source": {"kernel_image_path": "/k"}})", "/vm");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path, "/k");  // absolute paths stay
  EXPECT_FALSE(cfg->cmdline);
  EXPECT_EQ(cfg->vcpus, 1u);
  EXPECT_EQ(cfg->mem_bytes, 256ULL << 20);
  EXPECT_TRUE(cfg->drives.empty());
}

TEST(ConfigJson, OtherAcceptedFirecrackerValues) {
  json j = firecracker_config();
  j["machine-config"]["cpu_template"] = "None";
  j["drives"][0]["cache_type"] = "Writeback";
  j["drives"][0]["io_engine"] = "Async";
  j["drives"][0]["is_read_only"] = nullptr;
  j["network-interfaces"] = nullptr;
  auto cfg = parse(j);
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->drives[0].io_engine, "libaio");
  EXPECT_FALSE(cfg->drives[0].read_only);
  j["drives"][0]["io_engine"] = "IoUring";  // kindling's own name
  auto uring = parse(j);
  ASSERT_TRUE(uring) << uring.error().message();
  EXPECT_EQ(uring->drives[0].io_engine, "io_uring");
  j["machine-config"]["cpu_template"] = nullptr;
  EXPECT_TRUE(parse(j));
}

TEST(ConfigJson, KindlingExtensions) {
  json j = firecracker_config();
  j["stats"] = true;
  j["kindling"] = {{"console_log", "out/console.log"},
                   {"timeout_s", 2.5},
                   {"merge", false},
                   {"acpi", false},
                   {"boot_protocol", "pvh"},
                   {"exit_on_halt", true},
                   {"seccomp", false}};
  j["drives"].push_back({{"drive_id", "data"},
                         {"path_on_host", "/abs/data.img"},
                         {"is_root_device", false},
                         {"is_read_only", true}});
  auto cfg = parse(j);
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_TRUE(cfg->stats);
  EXPECT_EQ(cfg->console_log, "/vm/out/console.log");
  EXPECT_EQ(cfg->timeout_s, 2.5);
  EXPECT_FALSE(cfg->acpi);
  EXPECT_EQ(cfg->boot_protocol, "pvh");
  EXPECT_TRUE(cfg->exit_on_halt);
  EXPECT_FALSE(cfg->seccomp);
  ASSERT_EQ(cfg->drives.size(), 2u);
  EXPECT_FALSE(cfg->drives[0].merge);
  EXPECT_FALSE(cfg->drives[1].merge);
  EXPECT_TRUE(cfg->drives[1].read_only);
  EXPECT_EQ(cfg->drives[1].path, "/abs/data.img");
  EXPECT_EQ(cfg->drives[1].io_engine, "libaio");  // kindling's default engine
}

TEST(ConfigJson, DriveRateLimiterWithFirecrackersKeys) {
  json j = firecracker_config();
  j["drives"][0]["rate_limiter"] = json::parse(R"({
      "bandwidth": {"size": 10485760, "one_time_burst": 20971520, "refill_time": 1000},
      "ops": {"size": 500, "refill_time": 1000}})");
  auto cfg = parse(j);
  ASSERT_TRUE(cfg) << cfg.error().message();
  const RateLimiterConfig& rl = cfg->drives[0].rate_limiter;
  ASSERT_TRUE(rl.bandwidth);
  EXPECT_EQ(*rl.bandwidth, (TokenBucketConfig{10485760, 20971520, 1000}));
  ASSERT_TRUE(rl.ops);
  EXPECT_EQ(*rl.ops, (TokenBucketConfig{500, 0, 1000})) << "one_time_burst defaults to 0";
  EXPECT_TRUE(block::limits(rl));

  // Absent, null and empty all mean no limit.
  for (const char* text : {R"(null)", R"({})", R"({"bandwidth": null, "ops": null})"}) {
    j["drives"][0]["rate_limiter"] = json::parse(text);
    auto none = parse(j);
    ASSERT_TRUE(none) << text << ": " << none.error().message();
    EXPECT_EQ(none->drives[0].rate_limiter, RateLimiterConfig{}) << text;
  }
  // Size 0 or refill_time 0 is accepted as Firecracker accepts it, and limits nothing.
  j["drives"][0]["rate_limiter"] = json::parse(R"({
      "bandwidth": {"size": 0, "refill_time": 100}, "ops": {"size": 5, "refill_time": 0}})");
  auto zero = parse(j);
  ASSERT_TRUE(zero) << zero.error().message();
  EXPECT_TRUE(zero->drives[0].rate_limiter.bandwidth);
  EXPECT_FALSE(block::limits(zero->drives[0].rate_limiter));
  // The largest u64 fits.
  j["drives"][0]["rate_limiter"] = json::parse(R"({
      "bandwidth": {"size": 18446744073709551615, "refill_time": 18446744073709551615}})");
  auto huge = parse(j);
  ASSERT_TRUE(huge) << huge.error().message();
  EXPECT_EQ(huge->drives[0].rate_limiter.bandwidth->size, UINT64_MAX);
}

TEST(ParseRateLimiter, ForAPatchBody) {
  auto rl =
      parse_rate_limiter(json::parse(R"({"ops": {"size": 7, "refill_time": 70}})"), "rate_limiter");
  ASSERT_TRUE(rl) << rl.error().message();
  EXPECT_FALSE(rl->bandwidth);
  EXPECT_EQ(*rl->ops, (TokenBucketConfig{7, 0, 70}));
  auto bad = parse_rate_limiter(json::parse(R"({"ops": {"size": "7", "refill_time": 70}})"),
                                "rate_limiter");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "rate_limiter.ops.size: expected an integer, got string");
}

TEST(ParseRateLimiter, UpdateReplacesOnlyTheBucketsGiven) {
  RateLimiterConfig current;
  current.bandwidth = TokenBucketConfig{1000, 0, 100};
  current.ops = TokenBucketConfig{10, 0, 100};
  RateLimiterConfig patch;
  patch.ops = TokenBucketConfig{0, 0, 0};  // turns the ops limit off
  RateLimiterConfig next = apply_rate_limiter_update(current, patch);
  EXPECT_EQ(next.bandwidth, current.bandwidth) << "absent: unchanged";
  EXPECT_EQ(next.ops, patch.ops);
  EXPECT_TRUE(block::limits(next));
  EXPECT_FALSE(next.ops && block::limits(*next.ops));
  EXPECT_EQ(apply_rate_limiter_update(current, {}), current);
}

TEST(ConfigJson, RelativePathsResolveAgainstTheBaseFolder) {
  json j = firecracker_config();
  j["boot-source"]["kernel_image_path"] = "../build/vmlinux";
  j["boot-source"]["initrd_path"] = "./initrd.cpio";
  auto cfg = parse(j, "configs");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path, "build/vmlinux");
  EXPECT_EQ(cfg->initrd_path, "configs/initrd.cpio");
  EXPECT_EQ(cfg->drives[0].path, "configs/rootfs.ext4");
  auto unrooted = parse(j, "");
  ASSERT_TRUE(unrooted);
  EXPECT_EQ(unrooted->kernel_path, "../build/vmlinux");
}

// Each row breaks one thing in the Firecracker config and names the error it must give.
struct BadCase {
  const char* name;
  void (*mutate)(json&);
  ConfigError code;
  const char* message;
};

const BadCase kBadCases[] = {
    {"unknown nested key", [](json& j) { j["machine-config"]["vcpus"] = 2; },
     ConfigError::kUnknownKey, "machine-config.vcpus: unknown key"},
    {"unknown drive key", [](json& j) { j["drives"][0]["readonly"] = true; },
     ConfigError::kUnknownKey, "drives[0].readonly: unknown key"},
    {"vcpu_count string", [](json& j) { j["machine-config"]["vcpu_count"] = "2"; },
     ConfigError::kWrongType, "machine-config.vcpu_count: expected an integer, got string"},
    {"vcpu_count float", [](json& j) { j["machine-config"]["vcpu_count"] = 2.5; },
     ConfigError::kWrongType, "machine-config.vcpu_count: expected an integer, got number"},
    {"boot_args number", [](json& j) { j["boot-source"]["boot_args"] = 7; },
     ConfigError::kWrongType, "boot-source.boot_args: expected a string, got number"},
    {"is_root_device string", [](json& j) { j["drives"][0]["is_root_device"] = "yes"; },
     ConfigError::kWrongType, "drives[0].is_root_device: expected a boolean, got string"},
    {"drives object", [](json& j) { j["drives"] = json::object(); }, ConfigError::kWrongType,
     "drives: expected an array, got object"},
    {"machine-config array", [](json& j) { j["machine-config"] = json::array(); },
     ConfigError::kWrongType, "machine-config: expected an object, got array"},
    {"rate limiter bucket not an object",
     [](json& j) {
       j["drives"][0]["rate_limiter"] = {{"bandwidth", 1}};
     },
     ConfigError::kWrongType, "drives[0].rate_limiter.bandwidth: expected an object, got number"},
    {"rate limiter not an object", [](json& j) { j["drives"][0]["rate_limiter"] = "10M"; },
     ConfigError::kWrongType, "drives[0].rate_limiter: expected an object, got string"},
    {"rate limiter unknown key",
     [](json& j) {
       j["drives"][0]["rate_limiter"] = {{"iops", {{"size", 1}, {"refill_time", 1}}}};
     },
     ConfigError::kUnknownKey, "drives[0].rate_limiter.iops: unknown key"},
    {"token bucket unknown key",
     [](json& j) {
       j["drives"][0]["rate_limiter"]["ops"] = {{"size", 1}, {"refill_time", 1}, {"burst", 5}};
     },
     ConfigError::kUnknownKey, "drives[0].rate_limiter.ops.burst: unknown key"},
    {"token bucket without size",
     [](json& j) {
       j["drives"][0]["rate_limiter"]["bandwidth"] = {{"refill_time", 100}};
     },
     ConfigError::kMissingKey, "drives[0].rate_limiter.bandwidth.size: missing required key"},
    {"token bucket negative size",
     [](json& j) {
       j["drives"][0]["rate_limiter"]["ops"] = {{"size", -1}, {"refill_time", 100}};
     },
     ConfigError::kInvalid, "drives[0].rate_limiter.ops.size: must not be negative"},
    {"token bucket fractional refill",
     [](json& j) {
       j["drives"][0]["rate_limiter"]["ops"] = {{"size", 1}, {"refill_time", 0.5}};
     },
     ConfigError::kWrongType,
     "drives[0].rate_limiter.ops.refill_time: expected an integer, got number"},
    {"token bucket string burst",
     [](json& j) {
       j["drives"][0]["rate_limiter"]["bandwidth"] = {
           {"size", 1}, {"refill_time", 1}, {"one_time_burst", "1M"}};
     },
     ConfigError::kWrongType,
     "drives[0].rate_limiter.bandwidth.one_time_burst: expected an integer, got string"},
    {"vhost-user socket", [](json& j) { j["drives"][0]["socket"] = "/run/vhost.sock"; },
     ConfigError::kUnsupported,
     "drives[0].socket: not supported (kindling has no vhost-user drives)"},
    {"partuuid", [](json& j) { j["drives"][0]["partuuid"] = "0eaa91a0-01"; },
     ConfigError::kUnsupported,
     "drives[0].partuuid: not supported (kindling boots the root drive as root=/dev/vdX)"},
    {"unknown engine", [](json& j) { j["drives"][0]["io_engine"] = "Uring"; },
     ConfigError::kUnsupported, "drives[0].io_engine \"Uring\": not supported"},
    {"smt", [](json& j) { j["machine-config"]["smt"] = true; }, ConfigError::kUnsupported,
     "machine-config.smt: not supported (kindling gives every vCPU a core of its own)"},
    {"huge pages", [](json& j) { j["machine-config"]["huge_pages"] = "2M"; },
     ConfigError::kUnsupported,
     "machine-config.huge_pages \"2M\": not supported (kindling backs guest memory with 4 KiB "
     "pages)"},
    {"cpu template", [](json& j) { j["machine-config"]["cpu_template"] = "T2"; },
     ConfigError::kUnsupported,
     "machine-config.cpu_template \"T2\": not supported (kindling has no CPU templates)"},
    {"network",
     [](json& j) {
       j["network-interfaces"] = {{{"iface_id", "eth0"}}};
     },
     ConfigError::kUnsupported,
     "network-interfaces: not supported (kindling has no network device)"},
    {"balloon",
     [](json& j) {
       j["balloon"] = {{"amount_mib", 0}};
     },
     ConfigError::kUnsupported, "balloon: not supported (kindling has no balloon device)"},
    {"logger",
     [](json& j) {
       j["logger"] = {{"log_path", "/tmp/log"}};
     },
     ConfigError::kUnsupported,
     "logger: not supported (kindling logs to stderr only; see --log-level)"},
    {"vsock", [](json& j) { j["vsock"] = json::object(); }, ConfigError::kUnsupported,
     "vsock: not supported (kindling has no vsock device)"},
    {"no boot-source", [](json& j) { j.erase("boot-source"); }, ConfigError::kMissingKey,
     "boot-source: missing required key"},
    {"no kernel", [](json& j) { j["boot-source"].erase("kernel_image_path"); },
     ConfigError::kMissingKey, "boot-source.kernel_image_path: missing required key"},
    {"no drive_id", [](json& j) { j["drives"][0].erase("drive_id"); }, ConfigError::kMissingKey,
     "drives[0].drive_id: missing required key"},
    {"zero vcpus", [](json& j) { j["machine-config"]["vcpu_count"] = 0; }, ConfigError::kInvalid,
     "machine-config.vcpu_count: the number of vCPUs must be between 1 and 64, not 0"},
    {"absurd vcpus", [](json& j) { j["machine-config"]["vcpu_count"] = 4096; },
     ConfigError::kInvalid,
     "machine-config.vcpu_count: the number of vCPUs must be between 1 and 64, not 4096"},
    {"tiny memory", [](json& j) { j["machine-config"]["mem_size_mib"] = 1; }, ConfigError::kInvalid,
     "machine-config.mem_size_mib: guest memory must be between 16 MiB and 64 GiB"},
    {"huge memory", [](json& j) { j["machine-config"]["mem_size_mib"] = 1ULL << 40; },
     ConfigError::kInvalid, "machine-config.mem_size_mib: must be between 16 and 65536 MiB"},
    {"empty kernel path", [](json& j) { j["boot-source"]["kernel_image_path"] = ""; },
     ConfigError::kInvalid, "boot-source.kernel_image_path: must not be empty"},
    {"empty initrd path", [](json& j) { j["boot-source"]["initrd_path"] = ""; },
     ConfigError::kInvalid, "boot-source.initrd_path: must not be empty"},
    {"empty console log",
     [](json& j) {
       j["kindling"] = {{"console_log", ""}};
     },
     ConfigError::kInvalid, "kindling.console_log: must not be empty"},
    {"empty serial output",
     [](json& j) {
       j["serial"] = {{"serial_out_path", ""}};
     },
     ConfigError::kInvalid, "serial.serial_out_path: must not be empty"},
    {"negative timeout",
     [](json& j) {
       j["kindling"] = {{"timeout_s", -1}};
     },
     ConfigError::kInvalid, "kindling.timeout_s: must be positive"},
    {"unknown boot protocol",
     [](json& j) {
       j["kindling"] = {{"boot_protocol", "multiboot"}};
     },
     ConfigError::kUnsupported, "kindling.boot_protocol \"multiboot\": not supported"},
    {"acpi string",
     [](json& j) {
       j["kindling"] = {{"acpi", "off"}};
     },
     ConfigError::kWrongType, "kindling.acpi: expected a boolean, got string"},
    {"seccomp string",
     [](json& j) {
       j["kindling"] = {{"seccomp", "off"}};
     },
     ConfigError::kWrongType, "kindling.seccomp: expected a boolean, got string"},
    {"unknown kindling key",
     [](json& j) {
       j["kindling"] = {{"turbo", true}};
     },
     ConfigError::kUnknownKey, "kindling.turbo: unknown key"},
    {"stats string", [](json& j) { j["stats"] = "yes"; }, ConfigError::kWrongType,
     "stats: expected a boolean, got string"},
    {"two roots",
     [](json& j) {
       j["drives"].push_back(
           {{"drive_id", "b"}, {"path_on_host", "b.img"}, {"is_root_device", true}});
     },
     ConfigError::kInvalid,
     "drives[1] (/vm/b.img): a second root device (drives[0] (/vm/rootfs.ext4) is the root "
     "device already)"},
    {"duplicate drive_id",
     [](json& j) {
       j["drives"].push_back(
           {{"drive_id", "rootfs"}, {"path_on_host", "b.img"}, {"is_root_device", false}});
     },
     ConfigError::kInvalid,
     "drives[1] (/vm/b.img): duplicate drive id \"rootfs\" (also drives[0] (/vm/rootfs.ext4))"},
    {"same image twice",
     [](json& j) {
       j["drives"].push_back(
           {{"drive_id", "b"}, {"path_on_host", "./rootfs.ext4"}, {"is_root_device", false}});
     },
     ConfigError::kInvalid,
     "drives[1] (/vm/rootfs.ext4): the same image as drives[0] (/vm/rootfs.ext4) (an image can "
     "be attached once)"},
};

class ConfigJsonBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigJsonBad, GivesTheExpectedError) {
  const BadCase& c = GetParam();
  json j = firecracker_config();
  c.mutate(j);
  auto cfg = parse(j);
  ASSERT_FALSE(cfg) << c.name;
  EXPECT_EQ(cfg.error().code, c.code) << c.name;
  EXPECT_EQ(cfg.error().message(), c.message) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Table, ConfigJsonBad, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(ConfigJson, SyntaxErrorNamesLineAndColumn) {
  auto cfg =
      parse_config_json("{\n  \"boot-source\": {\n    \"kernel_image_path\": \"k\",\n  }\n}", "");
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().code, ConfigError::kJson);
  EXPECT_NE(cfg.error().message().find("invalid JSON at line 4, column 3"), std::string::npos)
      << cfg.error().message();
}

TEST(ConfigJson, DuplicateKeysAreRejectedWithTheirPath) {
  auto top = parse_config_json(R"({"stats": true, "stats": false})", "");
  ASSERT_FALSE(top);
  EXPECT_EQ(top.error().message(), "stats: duplicate key");
  auto nested = parse_config_json(R"({"boot-source": {"kernel_image_path": "k"},
      "drives": [{"drive_id": "a", "path_on_host": "a", "is_root_device": false},
                 {"drive_id": "b", "path_on_host": "b", "is_root_device": false,
                  "path_on_host": "c"}]})",
                                  "");
  ASSERT_FALSE(nested);
  EXPECT_EQ(nested.error().message(), "drives[1].path_on_host: duplicate key");
  // The same key in different objects is fine.
  EXPECT_TRUE(parse_config_json(R"({"boot-source": {"kernel_image_path": "k"},
      "drives": [{"drive_id": "a", "path_on_host": "a", "is_root_device": false},
                 {"drive_id": "b", "path_on_host": "b", "is_root_device": false}]})",
                                ""));
}

TEST(ConfigJson, TopLevelMustBeAnObject) {
  auto cfg = parse_config_json("[1, 2]", "");
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().message(), "(top level): expected an object, got array");
  EXPECT_FALSE(parse_config_json("", ""));
}

TEST(LoadConfigFile, ResolvesAgainstTheFilesFolder) {
  TempDir dir;
  std::string file = dir.write("vms/a.json", firecracker_config().dump(2));
  auto cfg = load_config_file(file);
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path, dir.path() + "/vms/vmlinux");
  EXPECT_EQ(cfg->drives[0].path, dir.path() + "/vms/rootfs.ext4");
}

TEST(LoadConfigFile, ErrorsStartWithTheFile) {
  TempDir dir;
  json j = firecracker_config();
  j["drives"][0]["rate_limiter"] = {{"ops", {{"size", -1}, {"refill_time", 1}}}};
  std::string file = dir.write("bad.json", j.dump());
  auto cfg = load_config_file(file);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().message(),
            file + ": drives[0].rate_limiter.ops.size: must not be negative");
}

TEST(LoadConfigFile, MissingOrUnreadableFile) {
  TempDir dir;
  auto missing = load_config_file(dir.path() + "/nope.json");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ConfigError::kFile);
  EXPECT_EQ(missing.error().sys_errno, ENOENT);
  EXPECT_EQ(missing.error().message(),
            dir.path() + "/nope.json: cannot read file (No such file or directory)");
  auto folder = load_config_file(dir.path());
  ASSERT_FALSE(folder);
  EXPECT_EQ(folder.error().code, ConfigError::kFile);
  if (::geteuid() != 0) {  // root reads anything
    std::string file = dir.write("secret.json", "{}");
    ASSERT_EQ(::chmod(file.c_str(), 0), 0);
    auto denied = load_config_file(file);
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error().sys_errno, EACCES);
  }
}

TEST(LoadConfigFile, BadJsonInAFile) {
  TempDir dir;
  std::string file = dir.write("broken.json", "{\"boot-source\": ");
  auto cfg = load_config_file(file);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().code, ConfigError::kJson);
  EXPECT_EQ(cfg.error().message().rfind(file + ": invalid JSON at line 1", 0), 0u)
      << cfg.error().message();
}

}  // namespace
}  // namespace kindling::vmm

namespace kindling::vmm {
namespace {

// Every example in configs/ must load (the images need not exist yet).
TEST(ExampleConfigs, AllLoad) {
  size_t seen = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(KINDLING_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    ++seen;
    auto cfg = load_config_file(entry.path().string());
    EXPECT_TRUE(cfg) << cfg.error().message();
  }
  EXPECT_GE(seen, 3u);
}

TEST(ExampleConfigs, HelloPointsIntoBuild) {
  auto cfg = load_config_file(std::string(KINDLING_SOURCE_DIR) + "/configs/testguest-hello.json");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path,
            std::string(KINDLING_SOURCE_DIR) + "/build/guest/testguest/testguest.elf");
}

}  // namespace
}  // namespace kindling::vmm
