// Firecracker's --config-file as its releases and docs wrote it: each must load in kindling, or
// be refused with one line that names the JSON path and what kindling lacks.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "vmm/config/config_json.h"

namespace kindling::vmm {
namespace {

using test::TempDir;

// A config that must load, with what it must load as.
struct GoodConfig {
  const char* name;
  const char* text;
  uint32_t vcpus;
  uint64_t mem_mib;
  size_t drives;
  std::vector<std::string> warnings;
};

const GoodConfig kGoodConfigs[] = {
    // docs/getting-started.md: the --config-file example of the v1 guide.
    {"getting_started",
     R"({
       "boot-source": {
         "kernel_image_path": "vmlinux.bin",
         "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"
       },
       "drives": [{
         "drive_id": "rootfs",
         "path_on_host": "bionic.rootfs.ext4",
         "is_root_device": true,
         "is_read_only": false
       }],
       "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024}
     })",
     2,
     1024,
     1,
     {}},
    // tests/framework/vm_config.json of the early v1 releases: ht_enabled, and a top-level key
    // ("mmds-version") that Firecracker itself ignores.
    {"test_framework_with_mmds_version",
     R"({
       "boot-source": {
         "kernel_image_path": "vmlinux.bin",
         "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
         "initrd_path": null
       },
       "drives": [{
         "drive_id": "rootfs",
         "path_on_host": "bionic.rootfs.ext4",
         "is_root_device": true,
         "partuuid": null,
         "is_read_only": false,
         "cache_type": "Unsafe",
         "io_engine": "Sync",
         "rate_limiter": null
       }],
       "machine-config": {
         "vcpu_count": 2,
         "mem_size_mib": 1024,
         "ht_enabled": false,
         "track_dirty_pages": false
       },
       "balloon": null,
       "network-interfaces": [],
       "vsock": null,
       "logger": null,
       "metrics": null,
       "mmds-config": null,
       "mmds-version": "V1"
     })",
     2,
     1024,
     1,
     {"mmds-version: unknown key, ignored"}},
    // A v0.x config: ht_enabled, no cache_type or io_engine yet, is_read_only required.
    {"v0_with_ht_enabled",
     R"({
       "boot-source": {"kernel_image_path": "hello-vmlinux.bin",
                       "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"},
       "drives": [{"drive_id": "rootfs", "path_on_host": "hello-rootfs.ext4",
                   "is_root_device": true, "is_read_only": false, "partuuid": null,
                   "rate_limiter": null}],
       "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "ht_enabled": false}
     })",
     1,
     128,
     1,
     {}},
    // Old releases made vcpu_count and mem_size_mib optional: kindling's defaults then apply.
    {"v0_machine_config_without_sizes",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "machine-config": {"ht_enabled": false, "cpu_template": null}})",
     1,
     256,
     0,
     {}},
    // A recent release's full config (as GET /vm/config writes it), every key at its default.
    {"v1_14_every_key_at_default",
     R"({
       "boot-source": {"kernel_image_path": "vmlinux.bin",
                       "boot_args": "console=ttyS0 reboot=k panic=1", "initrd_path": null},
       "drives": [{"drive_id": "rootfs", "partuuid": null, "is_root_device": true,
                   "cache_type": "Unsafe", "is_read_only": false,
                   "path_on_host": "rootfs.ext4", "io_engine": "Sync",
                   "rate_limiter": null, "socket": null}],
       "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false,
                          "track_dirty_pages": false, "huge_pages": "None"},
       "cpu-config": null,
       "balloon": null,
       "network-interfaces": [],
       "vsock": null,
       "logger": null,
       "metrics": null,
       "mmds-config": null,
       "entropy": null,
       "pmem": [],
       "memory-hotplug": null,
       "serial": null
     })",
     2,
     1024,
     1,
     {}},
    {"cpu_template_none",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "machine-config": {"vcpu_count": 4, "mem_size_mib": 512, "smt": false,
                            "cpu_template": "None"}})",
     4,
     512,
     0,
     {}},
    // An entropy device with no rate limiter: kindling has no virtio-rng and says so.
    {"entropy_empty_object",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
         "entropy": {}})",
     1,
     128,
     0,
     {"entropy: ignored (kindling has no virtio-rng device)"}},
    {"entropy_null_rate_limiter",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "entropy": {"rate_limiter": null}})",
     1,
     256,
     0,
     {"entropy: ignored (kindling has no virtio-rng device)"}},
    // A logger with no member changes nothing.
    {"logger_empty_object",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"}, "logger": {}})",
     1,
     256,
     0,
     {}},
    // A second drive: Firecracker reads partuuid only on the root drive.
    {"partuuid_on_a_data_drive",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "drives": [{"drive_id": "rootfs", "path_on_host": "rootfs.ext4",
                     "is_root_device": true, "is_read_only": true},
                    {"drive_id": "data", "path_on_host": "data.ext4",
                     "is_root_device": false, "is_read_only": false,
                     "partuuid": "0eaa91a0-01", "cache_type": "Writeback",
                     "io_engine": "Async"}]})",
     1,
     256,
     2,
     {}},
    {"unknown_top_level_keys_in_order",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "mmds-version": "V2", "boot-sourc": {}})",
     1,
     256,
     0,
     {"boot-sourc: unknown key, ignored", "mmds-version: unknown key, ignored"}},
    // docs/api_requests: a drive with both token buckets (one_time_burst optional).
    {"drive_rate_limiter",
     R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
         "drives": [{"drive_id": "rootfs", "path_on_host": "disk.img", "is_root_device": true,
                     "rate_limiter": {
                       "bandwidth": {"size": 52428800, "one_time_burst": 104857600,
                                     "refill_time": 1000},
                       "ops": {"size": 100, "refill_time": 1000}}}]})",
     1,
     256,
     1,
     {}},
};

// gtest prints a row by its name rather than its bytes.
void PrintTo(const GoodConfig& c, std::ostream* os) {
  *os << c.name;
}

class FirecrackerGood : public ::testing::TestWithParam<GoodConfig> {};

TEST_P(FirecrackerGood, Loads) {
  const GoodConfig& c = GetParam();
  ConfigWarnings warnings;
  auto cfg = parse_config_json(c.text, "/vm", &warnings);
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->vcpus, c.vcpus);
  EXPECT_EQ(cfg->mem_bytes, c.mem_mib << 20);
  EXPECT_EQ(cfg->drives.size(), c.drives);
  EXPECT_EQ(warnings, c.warnings);
}

INSTANTIATE_TEST_SUITE_P(Docs, FirecrackerGood, ::testing::ValuesIn(kGoodConfigs),
                         [](const ::testing::TestParamInfo<GoodConfig>& info) {
                           return std::string(info.param.name);
                         });

TEST(FirecrackerConfigs, OldConfigValues) {
  auto cfg = parse_config_json(kGoodConfigs[1].text, "/vm");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->kernel_path, "/vm/vmlinux.bin");
  EXPECT_EQ(cfg->cmdline, "console=ttyS0 reboot=k panic=1 pci=off");
  EXPECT_FALSE(cfg->initrd_path);
  ASSERT_EQ(cfg->drives.size(), 1u);
  EXPECT_EQ(cfg->drives[0].id, "rootfs");
  EXPECT_EQ(cfg->drives[0].path, "/vm/bionic.rootfs.ext4");
  EXPECT_TRUE(cfg->drives[0].is_root);
  EXPECT_FALSE(cfg->drives[0].read_only);
  EXPECT_EQ(cfg->drives[0].io_engine, "sync");
}

TEST(FirecrackerConfigs, DataDriveKeepsItsSettings) {
  auto cfg = parse_config_json(kGoodConfigs[9].text, "/vm");
  ASSERT_TRUE(cfg) << cfg.error().message();
  ASSERT_EQ(cfg->drives.size(), 2u);
  EXPECT_TRUE(cfg->drives[0].read_only);
  EXPECT_EQ(cfg->drives[1].id, "data");
  EXPECT_EQ(cfg->drives[1].path, "/vm/data.ext4");
  EXPECT_FALSE(cfg->drives[1].is_root);
  EXPECT_EQ(cfg->drives[1].io_engine, "libaio");
}

// Firecracker's serial section names the file the console goes to: kindling's console_log.
TEST(FirecrackerConfigs, SerialOutPathIsTheConsoleLog) {
  auto cfg = parse_config_json(R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
      "serial": {"serial_out_path": "logs/console.txt", "rate_limiter": null}})",
                               "/vm");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->console_log, "/vm/logs/console.txt");
  auto none = parse_config_json(R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
      "serial": {}})",
                                "/vm");
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(none->console_log);
}

// Firecracker's metrics section names the file the drive counters go to, relative to the config
// file's folder as every other path; GET /vm/config gives it back.
TEST(FirecrackerConfigs, MetricsPathIsKept) {
  auto cfg = parse_config_json(R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
      "metrics": {"metrics_path": "logs/metrics.fifo"}})",
                               "/vm");
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_EQ(cfg->metrics_path, "/vm/logs/metrics.fifo");
  auto back = parse_config_json(to_config_json(*cfg), "/elsewhere");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->metrics_path, "/vm/logs/metrics.fifo");
  auto none = parse_config_json(R"({"boot-source": {"kernel_image_path": "vmlinux.bin"},
      "metrics": null})",
                                "/vm");
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(none->metrics_path);
  auto exported = parse_config_json(to_config_json(*none), "/vm");
  ASSERT_TRUE(exported) << exported.error().message();
  EXPECT_FALSE(exported->metrics_path);
}

// A config that must be refused, with its one error line.
struct BadConfig {
  const char* name;
  const char* section;  // JSON members added to {"boot-source": {...}}
  ConfigError code;
  const char* message;
};

const BadConfig kBadConfigs[] = {
    {"cpu_template_T2", R"("machine-config": {"vcpu_count": 1, "mem_size_mib": 128,
                                              "cpu_template": "T2"})",
     ConfigError::kUnsupported,
     "machine-config.cpu_template \"T2\": not supported (kindling has no CPU templates)"},
    {"cpu_template_T2CL", R"("machine-config": {"cpu_template": "T2CL"})",
     ConfigError::kUnsupported,
     "machine-config.cpu_template \"T2CL\": not supported (kindling has no CPU templates)"},
    {"cpu_template_V1N1", R"("machine-config": {"cpu_template": "V1N1"})",
     ConfigError::kUnsupported,
     "machine-config.cpu_template \"V1N1\": not supported (kindling has no CPU templates)"},
    {"cpu_template_unknown", R"("machine-config": {"cpu_template": "M5"})", ConfigError::kInvalid,
     "machine-config.cpu_template \"M5\": unknown CPU template (expected None, C3, T2, T2S, "
     "T2CL, T2A or V1N1)"},
    {"ht_enabled", R"("machine-config": {"vcpu_count": 2, "mem_size_mib": 128,
                                         "ht_enabled": true})",
     ConfigError::kUnsupported,
     "machine-config.ht_enabled: not supported (kindling gives every vCPU a core of its own)"},
    {"ht_enabled_string", R"("machine-config": {"ht_enabled": "no"})", ConfigError::kWrongType,
     "machine-config.ht_enabled: expected a boolean, got string"},
    {"track_dirty_pages", R"("machine-config": {"track_dirty_pages": true})",
     ConfigError::kUnsupported,
     "machine-config.track_dirty_pages: not supported (kindling has no snapshots)"},
    {"huge_pages_unknown", R"("machine-config": {"huge_pages": "1G"})", ConfigError::kInvalid,
     "machine-config.huge_pages \"1G\": expected \"None\" or \"2M\""},
    {"machine_config_typo", R"("machine-config": {"ht_enable": false})", ConfigError::kUnknownKey,
     "machine-config.ht_enable: unknown key"},
    {"network_interface",
     R"("network-interfaces": [{"iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01",
                                 "host_dev_name": "tap0"}])",
     ConfigError::kUnsupported,
     "network-interfaces: not supported (kindling has no network device)"},
    {"vsock", R"("vsock": {"guest_cid": 3, "uds_path": "./v.sock"})", ConfigError::kUnsupported,
     "vsock: not supported (kindling has no vsock device)"},
    {"vsock_number", R"("vsock": 3)", ConfigError::kWrongType,
     "vsock: expected an object, got number"},
    {"balloon", R"("balloon": {"amount_mib": 0, "deflate_on_oom": false})",
     ConfigError::kUnsupported, "balloon: not supported (kindling has no balloon device)"},
    {"mmds_config", R"("mmds-config": {"network_interfaces": ["eth0"], "version": "V2"})",
     ConfigError::kUnsupported, "mmds-config: not supported (kindling has no MMDS)"},
    {"pmem", R"("pmem": [{"id": "pmem0", "path_on_host": "rootfs.ext4"}])",
     ConfigError::kUnsupported, "pmem: not supported (kindling has no virtio-pmem device)"},
    {"memory_hotplug", R"("memory-hotplug": {"total_size_mib": 1024})", ConfigError::kUnsupported,
     "memory-hotplug: not supported (kindling has no memory hotplug)"},
    {"cpu_config_path", R"("cpu-config": "t2cl.json")", ConfigError::kUnsupported,
     "cpu-config: not supported (kindling has no custom CPU templates)"},
    {"cpu_config_inline", R"("cpu-config": {"cpuid_modifiers": []})", ConfigError::kUnsupported,
     "cpu-config: not supported (kindling has no custom CPU templates)"},
    {"logger", R"("logger": {"log_path": "fc.log", "level": "Debug"})", ConfigError::kUnsupported,
     "logger: not supported (kindling logs to stderr only; see --log-level)"},
    {"metrics_without_path", R"("metrics": {})", ConfigError::kMissingKey,
     "metrics.metrics_path: missing required key"},
    {"metrics_empty_path", R"("metrics": {"metrics_path": ""})", ConfigError::kInvalid,
     "metrics.metrics_path: must not be empty"},
    {"metrics_path_number", R"("metrics": {"metrics_path": 3})", ConfigError::kWrongType,
     "metrics.metrics_path: expected a string, got number"},
    {"metrics_unknown_key", R"("metrics": {"metrics_path": "m.fifo", "level": "Info"})",
     ConfigError::kUnknownKey, "metrics.level: unknown key"},
    {"entropy_rate_limiter",
     R"("entropy": {"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}})",
     ConfigError::kUnsupported, "entropy.rate_limiter: not supported"},
    {"entropy_unknown_key", R"("entropy": {"rate": 1})", ConfigError::kUnknownKey,
     "entropy.rate: unknown key"},
    {"serial_rate_limiter", R"("serial": {"rate_limiter": {"size": 1, "refill_time": 1}})",
     ConfigError::kUnsupported, "serial.rate_limiter: not supported"},
    {"serial_out_path_number", R"("serial": {"serial_out_path": 1})", ConfigError::kWrongType,
     "serial.serial_out_path: expected a string, got number"},
    {"vhost_user_drive",
     R"("drives": [{"drive_id": "rootfs", "is_root_device": true,
                    "socket": "/run/vhost-user-blk.sock"}])",
     ConfigError::kUnsupported,
     "drives[0].socket: not supported (kindling has no vhost-user drives)"},
    {"root_partuuid",
     R"("drives": [{"drive_id": "rootfs", "path_on_host": "disk.img", "is_root_device": true,
                    "partuuid": "0eaa91a0-01"}])",
     ConfigError::kUnsupported,
     "drives[0].partuuid: not supported (kindling boots the root drive as root=/dev/vdX)"},
    {"drive_rate_limiter_missing_refill_time",
     R"("drives": [{"drive_id": "rootfs", "path_on_host": "disk.img", "is_root_device": true,
                    "rate_limiter": {"ops": {"size": 100}}}])",
     ConfigError::kMissingKey, "drives[0].rate_limiter.ops.refill_time: missing required key"},
};

void PrintTo(const BadConfig& c, std::ostream* os) {
  *os << c.name;
}

class FirecrackerBad : public ::testing::TestWithParam<BadConfig> {};

TEST_P(FirecrackerBad, IsRefusedWithOneLine) {
  const BadConfig& c = GetParam();
  const std::string text =
      std::string(R"({"boot-source": {"kernel_image_path": "vmlinux.bin"}, )") + c.section + "}";
  auto cfg = parse_config_json(text, "/vm");
  ASSERT_FALSE(cfg) << c.name;
  EXPECT_EQ(cfg.error().code, c.code);
  EXPECT_EQ(cfg.error().message(), c.message);
}

INSTANTIATE_TEST_SUITE_P(Docs, FirecrackerBad, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfig>& info) {
                           return std::string(info.param.name);
                         });

// Through a file, warnings and errors both start with the file's path (main prints the error
// as "kindling: error: vm.json: ...").
TEST(FirecrackerConfigs, FileWarningsAndErrorsNameTheFile) {
  TempDir dir;
  ConfigWarnings warnings;
  std::string good = dir.write("fc.json", kGoodConfigs[1].text);
  ASSERT_TRUE(load_config_file(good, &warnings));
  EXPECT_EQ(warnings, ConfigWarnings{good + ": mmds-version: unknown key, ignored"});

  warnings.clear();
  std::string bad = dir.write("vm.json", R"({"boot-source": {"kernel_image_path": "k"},
      "mmds-version": "V2", "vsock": {"guest_cid": 3, "uds_path": "v.sock"}})");
  auto cfg = load_config_file(bad, &warnings);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.error().message(), bad + ": vsock: not supported (kindling has no vsock device)");
  EXPECT_EQ(warnings, ConfigWarnings{bad + ": mmds-version: unknown key, ignored"});
}

}  // namespace
}  // namespace kindling::vmm
