#include "vmm/api/api_handler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/log.h"
#include "vmm/config/config_json.h"

namespace kindling::vmm::api {

const char* to_string(ControlError) {
  return "";
}

namespace {

using nlohmann::json;

constexpr std::string_view kDrivesPrefix = "/drives/";

ApiResponse ok_json(const json& body) {
  return ApiResponse{200, body.dump()};
}

ApiResponse no_content() {
  return ApiResponse{204, {}};
}

ApiResponse after_start() {
  return fault("The requested operation is not supported after starting the microVM.");
}

ApiResponse before_start() {
  return fault("The requested operation is not supported before starting the microVM.");
}

// Parses a body that must be one JSON object; nullopt (and `err` set) otherwise.
std::optional<json> object_body(const std::string& body, ApiResponse& err) {
  if (body.empty()) {
    err = fault("Empty request body.");
    return std::nullopt;
  }
  json v = json::parse(body, nullptr, false);
  if (v.is_discarded()) {
    err = fault("invalid JSON in the request body");
    return std::nullopt;
  }
  if (!v.is_object()) {
    err = fault("the request body must be a JSON object");
    return std::nullopt;
  }
  return v;
}

// Refuses members other than `known` (Firecracker's serde deny_unknown_fields).
std::optional<ApiResponse> unknown_member(const json& v,
                                          std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : v.items()) {
    bool ok = false;
    for (std::string_view k : known) ok = ok || k == key;
    if (!ok) return fault("unknown field `" + key + "`");
  }
  return std::nullopt;
}

}  // namespace

ApiResponse fault(const std::string& message) {
  return ApiResponse{400, json{{"fault_message", message}}.dump()};
}

ApiHandler::ApiHandler(VmControl& control, VmConfig initial, bool started, std::string instance_id,
                       std::string version)
    : control_(control),
      config_(std::move(initial)),
      started_(started),
      instance_id_(std::move(instance_id)),
      version_(std::move(version)) {}

bool ApiHandler::started() const {
  std::lock_guard lock(mu_);
  return started_;
}

ApiResponse ApiHandler::handle(const ApiRequest& req) {
  std::lock_guard lock(mu_);
  const std::string& m = req.method;
  const std::string& p = req.path;
  if (p == "/" && m == "GET") {
    return ok_json({{"id", instance_id_},
                    {"state", started_ ? "Running" : "Not started"},
                    {"vmm_version", version_},
                    {"app_name", "kindling"}});
  }
  if (p == "/version" && m == "GET") return ok_json({{"firecracker_version", version_}});
  if (p == "/vm/config" && m == "GET") return ApiResponse{200, to_config_json(config_)};
  if (p == "/machine-config") {
    if (m == "GET") return get_machine_config();
    if (m == "PUT" || m == "PATCH") return put_machine_config(req.body, m == "PATCH");
  }
  if (p == "/boot-source" && m == "PUT") {
    if (started_) return after_start();
    VmConfig next = config_;
    if (auto ok = parse_boot_source_section(req.body, next); !ok) {
      return fault(ok.error().message());
    }
    config_ = std::move(next);
    return no_content();
  }
  if (p.size() > kDrivesPrefix.size() && p.compare(0, kDrivesPrefix.size(), kDrivesPrefix) == 0) {
    const std::string id = p.substr(kDrivesPrefix.size());
    if (m == "PUT") return put_drive(id, req.body);
    if (m == "PATCH") return patch_drive(id, req.body);
  }
  if (p == "/actions" && m == "PUT") return put_actions(req.body);
  if (p == "/logger" && m == "PUT") return put_logger(req.body);
  if (p == "/metrics" && m == "PUT") return put_metrics(req.body);
  return fault("Invalid request method and/or path: " + m + " " + p + ".");
}

ApiResponse ApiHandler::get_machine_config() const {
  return ok_json({{"vcpu_count", config_.vcpus},
                  {"mem_size_mib", config_.mem_bytes >> 20},
                  {"smt", false},
                  {"track_dirty_pages", false},
                  {"huge_pages", "None"}});
}

ApiResponse ApiHandler::put_machine_config(const std::string& body, bool patch) {
  if (started_) return after_start();
  if (!patch) {
    // PUT replaces the whole machine config: both sizes are required (Firecracker 1.x).
    ApiResponse err;
    auto v = object_body(body, err);
    if (!v) return err;
    if (!v->contains("vcpu_count") || !v->contains("mem_size_mib")) {
      return fault("machine-config: vcpu_count and mem_size_mib are required");
    }
  }
  VmConfig next = config_;
  if (auto ok = parse_machine_config_section(body, next); !ok) return fault(ok.error().message());
  config_ = std::move(next);
  return no_content();
}

int ApiHandler::drive_index(const std::string& id) const {
  for (size_t i = 0; i < config_.drives.size(); ++i) {
    if (config_.drives[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

ApiResponse ApiHandler::put_drive(const std::string& id, const std::string& body) {
  if (started_) return after_start();
  auto d = parse_drive_section(body);
  if (!d) return fault(d.error().message());
  if (d->id != id) return fault("The id from the path does not match the id from the body!");
  std::vector<DriveConfig> drives = config_.drives;
  int i = drive_index(id);
  if (i >= 0) {
    d->merge = drives[static_cast<size_t>(i)].merge;
    drives[static_cast<size_t>(i)] = std::move(*d);
  } else {
    drives.push_back(std::move(*d));
  }
  if (auto ok = check_drives(drives); !ok) return fault(ok.error().message());
  config_.drives = std::move(drives);
  return no_content();
}

ApiResponse ApiHandler::patch_drive(const std::string& id, const std::string& body) {
  ApiResponse err;
  auto v = object_body(body, err);
  if (!v) return err;
  if (auto bad = unknown_member(*v, {"drive_id", "path_on_host", "rate_limiter"})) return *bad;
  const json* given_id = v->contains("drive_id") ? &(*v)["drive_id"] : nullptr;
  if (given_id == nullptr || !given_id->is_string()) return fault("drive_id: a string is required");
  if (given_id->get<std::string>() != id) {
    return fault("The id from the path does not match the id from the body!");
  }
  if (!started_) return before_start();
  int i = drive_index(id);
  if (i < 0) return fault("Unable to patch the block device: no drive \"" + id + "\"");
  const size_t index = static_cast<size_t>(i);
  std::optional<std::string> path;
  if (v->contains("path_on_host") && !(*v)["path_on_host"].is_null()) {
    const json& p = (*v)["path_on_host"];
    if (!p.is_string() || p.get<std::string>().empty()) {
      return fault("path_on_host: a non-empty string is required");
    }
    path = p.get<std::string>();
    std::vector<DriveConfig> drives = config_.drives;
    drives[index].path = *path;
    if (auto ok = check_drives(drives); !ok) return fault(ok.error().message());
  }
  std::optional<RateLimiterConfig> limiter;
  if (v->contains("rate_limiter")) {
    // Firecracker's update rules: a bucket given replaces the current one, an absent one stays.
    auto r = parse_rate_limiter((*v)["rate_limiter"], "rate_limiter");
    if (!r) return fault(r.error().message());
    limiter = apply_rate_limiter_update(config_.drives[index].rate_limiter, *r);
  }
  if (path) {
    if (auto ok = control_.replace_drive(index, *path); !ok) {
      return fault("Unable to patch the block device: " + ok.error().message());
    }
    config_.drives[index].path = *path;
  }
  if (limiter) {
    if (auto ok = control_.apply_rate_limiter(index, *limiter); !ok) {
      return fault("Unable to patch the block device: " + ok.error().message());
    }
    config_.drives[index].rate_limiter = *limiter;
  }
  return no_content();
}

ApiResponse ApiHandler::put_actions(const std::string& body) {
  ApiResponse err;
  auto v = object_body(body, err);
  if (!v) return err;
  if (auto bad = unknown_member(*v, {"action_type", "payload"})) return *bad;
  const json& type = (*v)["action_type"];
  if (!type.is_string()) return fault("action_type: a string is required");
  const std::string action = type.get<std::string>();
  if (action == "InstanceStart") return start();
  if (action == "SendCtrlAltDel") {
    if (!started_) return before_start();
    if (auto ok = control_.send_ctrl_alt_del(); !ok) return fault(ok.error().message());
    return no_content();
  }
  if (action == "FlushMetrics") return flush_metrics();
  return fault("unknown variant `" + action +
               "`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`");
}

ApiResponse ApiHandler::start() {
  if (started_) return after_start();
  if (auto ok = validate_config(config_); !ok) {
    return fault("Failed to start microVM: " + ok.error().message());
  }
  if (auto ok = control_.start(config_); !ok) {
    return fault("Failed to start microVM: " + ok.error().message());
  }
  started_ = true;
  return no_content();
}

ApiResponse ApiHandler::put_logger(const std::string& body) {
  if (started_) return after_start();
  ApiResponse err;
  auto v = object_body(body, err);
  if (!v) return err;
  if (auto bad =
          unknown_member(*v, {"log_path", "level", "show_level", "show_log_origin", "module"})) {
    return *bad;
  }
  for (const char* flag : {"show_level", "show_log_origin"}) {
    if (v->contains(flag) && !(*v)[flag].is_boolean() && !(*v)[flag].is_null()) {
      return fault(std::string(flag) + ": expected a boolean");
    }
  }
  if (v->contains("module") && !(*v)["module"].is_null()) {
    return fault("module: not supported (kindling filters its log by level only)");
  }
  std::optional<log::Level> level;
  if (v->contains("level") && !(*v)["level"].is_null()) {
    const json& l = (*v)["level"];
    std::string name = l.is_string() ? l.get<std::string>() : "";
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "warning") name = "warn";
    if (name == "trace") name = "debug";
    if (name == "off") name = "error";
    level = log::parse_level(name);
    if (!level) return fault("level: expected Error, Warning, Info, Debug, Trace or Off");
  }
  if (v->contains("log_path") && !(*v)["log_path"].is_null()) {
    const json& p = (*v)["log_path"];
    if (!p.is_string() || p.get<std::string>().empty()) return fault("log_path: expected a path");
    // As Firecracker: the file (or FIFO) must exist; kindling's log lines go there from now on.
    UniqueFd fd(::open(p.get<std::string>().c_str(), O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return fault("log_path: " + p.get<std::string>() + ": " + std::strerror(errno));
    if (::dup2(fd.get(), STDERR_FILENO) < 0)
      return fault(std::string("log_path: ") + std::strerror(errno));
  }
  if (level) log::set_level(*level);
  return no_content();
}

ApiResponse ApiHandler::put_metrics(const std::string& body) {
  if (started_) return after_start();
  ApiResponse err;
  auto v = object_body(body, err);
  if (!v) return err;
  if (auto bad = unknown_member(*v, {"metrics_path"})) return *bad;
  const json& p = (*v)["metrics_path"];
  if (!p.is_string() || p.get<std::string>().empty()) return fault("metrics_path: expected a path");
  if (metrics_) return fault("Reinitialization of metrics not allowed.");
  auto file = MetricsFile::open(p.get<std::string>());
  if (!file) return fault("metrics_path: " + file.error().message());
  metrics_ = std::move(*file);
  config_.metrics_path = p.get<std::string>();
  return no_content();
}

void ApiHandler::adopt_metrics(MetricsFile file) {
  std::lock_guard lock(mu_);
  metrics_ = std::move(file);
}

Result<void, MetricsErr> ApiHandler::append_metrics(const std::vector<virtio::BlockStats>& stats) {
  std::lock_guard lock(mu_);
  if (!metrics_) return {};
  return metrics_->append(config_.drives, stats);
}

ApiResponse ApiHandler::flush_metrics() {
  if (!metrics_) return fault("FlushMetrics: no metrics file (PUT /metrics first)");
  std::vector<virtio::BlockStats> stats;
  if (started_) {
    for (size_t i = 0; i < config_.drives.size(); ++i) stats.push_back(control_.drive_stats(i));
  } else {
    stats.resize(config_.drives.size());
  }
  if (auto r = metrics_->append(config_.drives, stats); !r) {
    return fault("FlushMetrics: " + r.error().message());
  }
  return no_content();
}

}  // namespace kindling::vmm::api
