// Firecracker's HTTP API, without the HTTP: a request (method, path, body) in, a status and a
// JSON body out. The server (api_server.h) feeds it; tests call it directly with a fake VmControl.
//
// The accumulated VmConfig lives here. Before InstanceStart the PUT endpoints edit it; at
// InstanceStart it goes to VmControl::start(); afterwards only the live endpoints (GET /,
// PATCH /drives, SendCtrlAltDel, FlushMetrics, GET /vm/config) act, through VmControl.
// Errors are Firecracker's: status 400 with {"fault_message": "..."}.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "virtio/blk_stats.h"
#include "vmm/api/metrics.h"
#include "vmm/config/config.h"

namespace kindling::vmm::api {

// What a VmControl call failed with; the context is the fault message.
enum class ControlError { kFailed };
const char* to_string(ControlError e);
using ControlErr = Error<ControlError>;

// The VM behind the API. Implemented by the runner (vmm/api/api_vm.h) and by test fakes.
class VmControl {
 public:
  virtual ~VmControl() = default;
  // Builds and boots a VM from `config` and starts it; returns once it runs (or failed to).
  virtual Result<void, ControlErr> start(const VmConfig& config) = 0;
  // Types Ctrl-Alt-Del on the guest's keyboard.
  virtual Result<void, ControlErr> send_ctrl_alt_del() = 0;
  // Switches drive `index` to the image at `path` and tells the guest its new size.
  virtual Result<void, ControlErr> replace_drive(size_t index, const std::string& path) = 0;
  // Gives drive `index` a new rate limiter.
  virtual Result<void, ControlErr> apply_rate_limiter(size_t index,
                                                      const RateLimiterConfig& limiter) = 0;
  // Drive `index`'s counters.
  virtual virtio::BlockStats drive_stats(size_t index) = 0;
};

// One request as the server parsed it.
struct ApiRequest {
  std::string method;  // "GET", "PUT", "PATCH", ...
  std::string path;    // "/drives/rootfs" (no query string)
  std::string body;
};

// The answer: 200 with a JSON body, 204 with none, or 400 with {"fault_message": ...}.
struct ApiResponse {
  int status = 204;
  std::string body;
};

// Firecracker's error answer: 400 {"fault_message": message}.
ApiResponse fault(const std::string& message);

// The request handler. Thread-safe (one request at a time).
class ApiHandler {
 public:
  // `initial` is the config so far (defaults, flags, or a --config file); `started` says the
  // VM already runs (kindling run --config ... --api-sock: Firecracker starts at once).
  ApiHandler(VmControl& control, VmConfig initial, bool started, std::string instance_id,
             std::string version);
  ApiResponse handle(const ApiRequest& req);

  bool started() const;
  // Takes the metrics file the config file named (opened by the runner, so that a bad path
  // ends kindling before it serves anything). A later PUT /metrics is refused, as Firecracker's.
  void adopt_metrics(MetricsFile file);
  // Appends the metrics line for `stats` (one per drive, in config order) if a metrics file is
  // set: the runner's periodic line and its last one, at exit.
  Result<void, MetricsErr> append_metrics(const std::vector<virtio::BlockStats>& stats);

 private:
  ApiResponse get_machine_config() const;
  ApiResponse put_machine_config(const std::string& body, bool patch);
  ApiResponse put_drive(const std::string& id, const std::string& body);
  ApiResponse patch_drive(const std::string& id, const std::string& body);
  ApiResponse put_actions(const std::string& body);
  ApiResponse put_logger(const std::string& body);
  ApiResponse put_metrics(const std::string& body);
  ApiResponse flush_metrics();
  ApiResponse start();
  // Finds a drive by id; -1 when absent.
  int drive_index(const std::string& id) const;

  mutable std::mutex mu_;
  VmControl& control_;
  VmConfig config_;
  bool started_;
  std::string instance_id_;
  std::string version_;
  std::optional<MetricsFile> metrics_;  // PUT /metrics; FlushMetrics appends one JSON line
};

}  // namespace kindling::vmm::api
