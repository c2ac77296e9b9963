#include "vmm/api/api_handler.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "vmm/config/config_json.h"

namespace kindling::vmm::api {
namespace {

using nlohmann::json;

// Records what the handler asked of the VM.
class FakeControl : public VmControl {
 public:
  Result<void, ControlErr> start(const VmConfig& config) override {
    started.push_back(config);
    if (!start_error.empty()) return fail(ControlError::kFailed, 0, start_error);
    return {};
  }
  Result<void, ControlErr> send_ctrl_alt_del() override {
    ++ctrl_alt_dels;
    return {};
  }
  Result<void, ControlErr> replace_drive(size_t index, const std::string& path) override {
    replaced.emplace_back(index, path);
    return {};
  }
  Result<void, ControlErr> apply_rate_limiter(size_t index, const RateLimiterConfig& r) override {
    limiters.emplace_back(index, r);
    return {};
  }
  std::vector<std::pair<size_t, RateLimiterConfig>> limiters;  // apply_rate_limiter calls
  virtio::BlockStats drive_stats(size_t index) override {
    virtio::BlockStats s;
    s.reads = 10 + index;
    s.bytes_written = 4096;
    return s;
  }

  std::vector<VmConfig> started;
  std::string start_error;
  int ctrl_alt_dels = 0;
  std::vector<std::pair<size_t, std::string>> replaced;
};

class ApiHandlerTest : public ::testing::Test {
 protected:
  ApiResponse call(const std::string& method, const std::string& path,
                   const std::string& body = {}) {
    return handler_.handle(ApiRequest{method, path, body});
  }
  // Configures a bootable VM with one root drive, as the getting-started guide does.
  void configure() {
    ASSERT_EQ(call("PUT", "/boot-source",
                   R"({"kernel_image_path": "/k/vmlinux", "boot_args": "console=ttyS0"})")
                  .status,
              204);
    ASSERT_EQ(call("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 128})").status,
              204);
    ASSERT_EQ(call("PUT", "/drives/rootfs",
                   R"({"drive_id": "rootfs", "path_on_host": "/i/root.img",
                       "is_root_device": true, "is_read_only": false})")
                  .status,
              204);
  }
  void start() {
    ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "InstanceStart"})").status, 204);
  }

  FakeControl control_;
  ApiHandler handler_{control_, VmConfig{}, false, "anonymous-instance", "0.1.0"};
};

TEST_F(ApiHandlerTest, InstanceInfoFollowsTheState) {
  ApiResponse r = call("GET", "/");
  ASSERT_EQ(r.status, 200);
  json info = json::parse(r.body);
  EXPECT_EQ(info["state"], "Not started");
  EXPECT_EQ(info["id"], "anonymous-instance");
  EXPECT_EQ(info["vmm_version"], "0.1.0");
  EXPECT_EQ(info["app_name"], "kindling");
  configure();
  start();
  EXPECT_EQ(json::parse(call("GET", "/").body)["state"], "Running");
  EXPECT_EQ(json::parse(call("GET", "/version").body)["firecracker_version"], "0.1.0");
}

TEST_F(ApiHandlerTest, ConfiguredThroughTheApiAndStarted) {
  configure();
  start();
  ASSERT_EQ(control_.started.size(), 1u);
  const VmConfig& c = control_.started[0];
  EXPECT_EQ(c.kernel_path, "/k/vmlinux");
  EXPECT_EQ(c.cmdline, "console=ttyS0");
  EXPECT_EQ(c.vcpus, 2u);
  EXPECT_EQ(c.mem_bytes, 128ULL << 20);
  ASSERT_EQ(c.drives.size(), 1u);
  EXPECT_EQ(c.drives[0].path, "/i/root.img");
  EXPECT_TRUE(c.drives[0].is_root);
}

TEST_F(ApiHandlerTest, VmConfigReadsBackAsTheSameConfig) {
  configure();
  ApiResponse r = call("GET", "/vm/config");
  ASSERT_EQ(r.status, 200);
  auto parsed = parse_config_json(r.body, "");
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->kernel_path, "/k/vmlinux");
  EXPECT_EQ(parsed->vcpus, 2u);
  ASSERT_EQ(parsed->drives.size(), 1u);
  EXPECT_EQ(parsed->drives[0].id, "rootfs");
  EXPECT_EQ(json::parse(r.body)["machine-config"]["mem_size_mib"], 128);
}

TEST_F(ApiHandlerTest, PutDriveReplacesTheDriveWithTheSameId) {
  configure();
  ASSERT_EQ(
      call("PUT", "/drives/rootfs",
           R"({"drive_id": "rootfs", "path_on_host": "/i/other.img", "is_root_device": true})")
          .status,
      204);
  json cfg = json::parse(call("GET", "/vm/config").body);
  ASSERT_EQ(cfg["drives"].size(), 1u);
  EXPECT_EQ(cfg["drives"][0]["path_on_host"], "/i/other.img");
}

TEST_F(ApiHandlerTest, PatchDriveSwapsTheImageOfTheRunningVm) {
  configure();
  start();
  ASSERT_EQ(
      call("PATCH", "/drives/rootfs", R"({"drive_id": "rootfs", "path_on_host": "/i/big.img"})")
          .status,
      204);
  ASSERT_EQ(control_.replaced.size(), 1u);
  EXPECT_EQ(control_.replaced[0].first, 0u);
  EXPECT_EQ(control_.replaced[0].second, "/i/big.img");
  EXPECT_EQ(json::parse(call("GET", "/vm/config").body)["drives"][0]["path_on_host"], "/i/big.img");
}

// PATCH rate_limiter after start: validated, applied live (Firecracker's update rules: a bucket
// given replaces the current one, an absent one stays), and shown by GET /vm/config.
TEST_F(ApiHandlerTest, PatchDriveRateLimiterIsValidatedAndAppliedLive) {
  configure();
  start();
  ApiResponse bad = call("PATCH", "/drives/rootfs",
                         R"({"drive_id": "rootfs", "rate_limiter": {"bandwidth": {"size": -1}}})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(control_.limiters.empty()) << "a refused body changes nothing";
  ASSERT_EQ(call("PATCH", "/drives/rootfs",
                 R"({"drive_id": "rootfs", "rate_limiter": {"ops": {"size": 100,
                     "refill_time": 1000}}})")
                .status,
            204);
  ASSERT_EQ(call("PATCH", "/drives/rootfs",
                 R"({"drive_id": "rootfs", "rate_limiter": {"bandwidth": {"size": 4096,
                     "refill_time": 100}}})")
                .status,
            204);
  ASSERT_EQ(control_.limiters.size(), 2u);
  EXPECT_EQ(control_.limiters[0].first, 0u);
  const RateLimiterConfig& last = control_.limiters[1].second;
  ASSERT_TRUE(last.ops && last.bandwidth) << "the second PATCH keeps the ops bucket";
  EXPECT_EQ(last.ops->size, 100u);
  EXPECT_EQ(last.bandwidth->size, 4096u);
  json limiter = json::parse(call("GET", "/vm/config").body)["drives"][0]["rate_limiter"];
  EXPECT_EQ(limiter["ops"]["size"], 100);
  EXPECT_EQ(limiter["ops"]["refill_time"], 1000);
  EXPECT_EQ(limiter["bandwidth"]["size"], 4096);
}

TEST_F(ApiHandlerTest, SendCtrlAltDelReachesTheVm) {
  configure();
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})").status, 400);
  start();
  EXPECT_EQ(call("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})").status, 204);
  EXPECT_EQ(control_.ctrl_alt_dels, 1);
}

TEST_F(ApiHandlerTest, AFailedStartLeavesTheVmNotStarted) {
  configure();
  control_.start_error = "cannot open the kernel";
  ApiResponse r = call("PUT", "/actions", R"({"action_type": "InstanceStart"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("Failed to start microVM: cannot open the kernel"), std::string::npos);
  EXPECT_EQ(json::parse(call("GET", "/").body)["state"], "Not started");
}

TEST_F(ApiHandlerTest, FlushMetricsWritesFirecrackerBlockCounters) {
  test::TempDir dir;
  const std::string path = dir.write("metrics.json", "");
  configure();
  ASSERT_EQ(call("PUT", "/metrics", json{{"metrics_path", path}}.dump()).status, 204);
  start();
  ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "FlushMetrics"})").status, 204);
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  json m = json::parse(line);
  EXPECT_EQ(m["block_rootfs"]["read_count"], 10);
  EXPECT_EQ(m["block_rootfs"]["write_bytes"], 4096);
  EXPECT_EQ(m["block"]["read_count"], 10);
  EXPECT_TRUE(m["utc_timestamp_ms"].is_number_unsigned());
}

// The runner's last flush at exit: nothing without a metrics file, one line with one.
TEST_F(ApiHandlerTest, ExitFlushAppendsOneLineWhenThereIsAMetricsFile) {
  test::TempDir dir;
  const std::string path = dir.write("metrics.json", "");
  configure();
  virtio::BlockStats s;
  s.writes = 7;
  s.flushes = 2;
  ASSERT_TRUE(handler_.append_metrics({s}));  // no file yet: nothing to do, no error
  ASSERT_EQ(call("PUT", "/metrics", json{{"metrics_path", path}}.dump()).status, 204);
  EXPECT_EQ(json::parse(call("GET", "/vm/config").body)["metrics"]["metrics_path"], path);
  ASSERT_TRUE(handler_.append_metrics({s}));
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  json m = json::parse(line);
  EXPECT_EQ(m["block_rootfs"]["write_count"], 7);
  EXPECT_EQ(m["block"]["flush_count"], 2);
  EXPECT_FALSE(std::getline(in, line)) << "one line per flush";
}

// A metrics file from the config file (adopted from the runner) is the one FlushMetrics
// writes, and the API cannot replace it.
TEST_F(ApiHandlerTest, AdoptedMetricsFileServesFlushAndRefusesAnother) {
  test::TempDir dir;
  const std::string path = dir.write("metrics.json", "");
  auto file = MetricsFile::open(path);
  ASSERT_TRUE(file) << file.error().message();
  handler_.adopt_metrics(std::move(*file));
  configure();
  ApiResponse again = call("PUT", "/metrics", json{{"metrics_path", path}}.dump());
  EXPECT_EQ(again.status, 400);
  EXPECT_NE(again.body.find("Reinitialization of metrics not allowed."), std::string::npos);
  start();
  ASSERT_EQ(call("PUT", "/actions", R"({"action_type": "FlushMetrics"})").status, 204);
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(json::parse(line)["block_rootfs"]["read_count"], 10);
}

// A metrics path that does not exist is refused with the path and the reason in one line.
TEST(MetricsFile, MissingFileIsRefusedWithItsPath) {
  auto file = MetricsFile::open("/nonexistent/kindling-metrics.json");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().message(),
            "/nonexistent/kindling-metrics.json: cannot open the metrics file (No such file or "
            "directory)");
}

// A FIFO nobody reads: the flush fails at once instead of blocking the VMM.
TEST(MetricsFile, FifoWithoutReaderFailsInsteadOfBlocking) {
  test::TempDir dir;
  const std::string path = dir.path() + "/metrics.fifo";
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  // A reader for the open (O_WRONLY | O_NONBLOCK on a FIFO without one is ENXIO), then a full
  // pipe: nobody drains it.
  UniqueFd reader(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader);
  auto file = MetricsFile::open(path);
  ASSERT_TRUE(file) << file.error().message();
  DriveConfig d;
  d.id = "rootfs";
  bool failed = false;
  for (int i = 0; i < 100000 && !failed; ++i) failed = !file->append({d}, {virtio::BlockStats{}});
  EXPECT_TRUE(failed) << "a full FIFO must fail the flush";
}

// Firecracker's errors: every one a 400 with a fault_message, and none changes the config.
struct BadRequest {
  const char* name;
  bool started;
  const char* method;
  const char* path;
  const char* body;
  const char* message;  // a part of the fault message
};

const BadRequest kBadRequests[] = {
    {"BadJson", false, "PUT", "/boot-source", "{\"kernel_image_path\": ", "invalid JSON"},
    {"NotAnObject", false, "PUT", "/machine-config", "[1]", "JSON object"},
    {"UnknownField", false, "PUT", "/boot-source", R"({"kernel_image_path": "/k", "x": 1})",
     "boot-source.x: unknown key"},
    {"UnknownDriveField", false, "PUT", "/drives/d",
     R"({"drive_id": "d", "path_on_host": "/i", "is_root_device": false, "speed": 1})",
     "unknown key"},
    {"WrongType", false, "PUT", "/machine-config", R"({"vcpu_count": "2", "mem_size_mib": 128})",
     "expected an integer"},
    {"PutMachineConfigWithoutSizes", false, "PUT", "/machine-config", R"({"vcpu_count": 2})",
     "required"},
    {"DriveIdMismatch", false, "PUT", "/drives/a",
     R"({"drive_id": "b", "path_on_host": "/i", "is_root_device": false})", "does not match"},
    {"SecondRootDrive", false, "PUT", "/drives/two",
     R"({"drive_id": "two", "path_on_host": "/i/2", "is_root_device": true})", "root"},
    {"BootSourceAfterStart", true, "PUT", "/boot-source", R"({"kernel_image_path": "/k2"})",
     "not supported after starting"},
    {"InstanceStartTwice", true, "PUT", "/actions", R"({"action_type": "InstanceStart"})",
     "not supported after starting"},
    {"PutDriveAfterStart", true, "PUT", "/drives/rootfs",
     R"({"drive_id": "rootfs", "path_on_host": "/i/x", "is_root_device": true})",
     "not supported after starting"},
    {"PatchDriveBeforeStart", false, "PATCH", "/drives/rootfs",
     R"({"drive_id": "rootfs", "path_on_host": "/i/x"})", "not supported before starting"},
    {"PatchUnknownDrive", true, "PATCH", "/drives/nope",
     R"({"drive_id": "nope", "path_on_host": "/i"})", "no drive"},
    {"PatchUnknownField", true, "PATCH", "/drives/rootfs",
     R"({"drive_id": "rootfs", "is_read_only": true})", "unknown field"},
    {"UnknownAction", true, "PUT", "/actions", R"({"action_type": "Reboot"})", "unknown variant"},
    {"EmptyBody", false, "PUT", "/actions", "", "Empty"},
    {"UnknownPath", false, "GET", "/balloon", "", "Invalid request method and/or path"},
    {"WrongMethod", false, "DELETE", "/drives/rootfs", "", "Invalid request method and/or path"},
    {"FlushWithoutMetricsFile", true, "PUT", "/actions", R"({"action_type": "FlushMetrics"})",
     "no metrics file"},
};

class ApiBadRequestTest : public ApiHandlerTest,
                          public ::testing::WithParamInterface<BadRequest> {};

TEST_P(ApiBadRequestTest, IsA400AndChangesNothing) {
  const BadRequest& b = GetParam();
  configure();
  if (b.started) start();
  const std::string before = call("GET", "/vm/config").body;
  ApiResponse r = call(b.method, b.path, b.body);
  EXPECT_EQ(r.status, 400);
  json j = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_NE(j["fault_message"].get<std::string>().find(b.message), std::string::npos) << r.body;
  EXPECT_EQ(call("GET", "/vm/config").body, before);
  EXPECT_EQ(control_.started.size(), b.started ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Table, ApiBadRequestTest, ::testing::ValuesIn(kBadRequests),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kindling::vmm::api
