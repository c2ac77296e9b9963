#include "vmm/config/config_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "common/unique_fd.h"
#include "vmm/boot/boot_protocol.h"

namespace kindling::vmm {
namespace {

using nlohmann::json;

// Config files are small; this keeps a wrong path (a disk image) from being slurped.
constexpr off_t kMaxConfigBytes = 1 << 20;

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string item(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

Unexpected<ConfigErr> wrong_type(const std::string& path, const char* expected, const json& v) {
  return fail(ConfigError::kWrongType, 0,
              (path.empty() ? std::string("(top level)") : path) + ": expected " + expected +
                  ", got " + v.type_name());
}

// A value asking for something kindling lacks: "path: not supported", and with `why` the
// missing piece named: "vsock: not supported (kindling has no vsock device)".
Unexpected<ConfigErr> unsupported(const std::string& path, std::string_view why = {}) {
  std::string line = path + ": not supported";
  if (!why.empty()) line += " (" + std::string(why) + ")";
  return fail(ConfigError::kUnsupported, 0, std::move(line));
}

// Joins a relative path from the config onto the config file's folder.
std::string resolve(const std::string& base_dir, const std::string& p) {
  if (base_dir.empty() || p.empty() || p.front() == '/') return p;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// One JSON object being read: unknown keys are rejected when it is opened (or, given
// `ignored`, listed there as warnings), then members are handed out by typed getters that name
// the member's path in their errors.
class ObjectReader {
 public:
  static Result<ObjectReader, ConfigErr> open(const json& v, const std::string& path,
                                              std::initializer_list<std::string_view> known,
                                              ConfigWarnings* ignored = nullptr) {
    if (!v.is_object()) return wrong_type(path, "an object", v);
    for (const auto& [key, value] : v.items()) {
      bool ok = false;
      for (std::string_view k : known) ok = ok || k == key;
      if (ok) continue;
      if (ignored == nullptr) return fail(ConfigError::kUnknownKey, 0, child(path, key));
      ignored->push_back(child(path, key) + ": unknown key, ignored");
    }
    return ObjectReader(v, path);
  }

  std::string path_of(std::string_view key) const { return child(path_, key); }

  // The member, or nullptr when absent.
  const json* find(std::string_view key) const {
    auto it = obj_->find(key);
    return it == obj_->end() ? nullptr : &*it;
  }

  // The member; absent is an error.
  Result<const json*, ConfigErr> require(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return fail(ConfigError::kMissingKey, 0, path_of(key));
    return v;
  }

  // A string member; nullopt when absent or null.
  Result<std::optional<std::string>, ConfigErr> opt_string(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr || v->is_null()) return std::optional<std::string>{};
    if (!v->is_string()) return wrong_type(path_of(key), "a string", *v);
    return std::optional<std::string>(v->get<std::string>());
  }

  // An optional path member: absent or null gives nullopt; an empty string is an error; a
  // relative path resolves against `base_dir`.
  Result<std::optional<std::string>, ConfigErr> opt_path(std::string_view key,
                                                         const std::string& base_dir) const {
    auto s = opt_string(key);
    if (!s) return s.take_error();
    if (!*s) return std::optional<std::string>{};
    if ((*s)->empty()) {
      return fail(ConfigError::kInvalid, 0, path_of(key) + ": must not be empty");
    }
    return std::optional<std::string>(resolve(base_dir, **s));
  }

  // A required, non-empty string member.
  Result<std::string, ConfigErr> req_string(std::string_view key) const {
    auto v = require(key);
    if (!v) return v.take_error();
    if (!(*v)->is_string()) return wrong_type(path_of(key), "a string", **v);
    std::string s = (*v)->get<std::string>();
    if (s.empty()) return fail(ConfigError::kInvalid, 0, path_of(key) + ": must not be empty");
    return s;
  }

  // A boolean member; `fallback` when absent or null.
  Result<bool, ConfigErr> opt_bool(std::string_view key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_boolean()) return wrong_type(path_of(key), "a boolean", *v);
    return v->get<bool>();
  }

  // A required boolean member.
  Result<bool, ConfigErr> req_bool(std::string_view key) const {
    auto v = require(key);
    if (!v) return v.take_error();
    if (!(*v)->is_boolean()) return wrong_type(path_of(key), "a boolean", **v);
    return (*v)->get<bool>();
  }

  // An integer member (2.0 is not an integer here, as in Firecracker); nullopt when absent or
  // null.
  Result<std::optional<int64_t>, ConfigErr> opt_int(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr || v->is_null()) return std::optional<int64_t>{};
    if (!v->is_number_integer()) return wrong_type(path_of(key), "an integer", *v);
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return fail(ConfigError::kInvalid, 0, path_of(key) + ": too large");
    }
    return std::optional<int64_t>(v->get<int64_t>());
  }

  // A number member; nullopt when absent or null.
  Result<std::optional<double>, ConfigErr> opt_number(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr || v->is_null()) return std::optional<double>{};
    if (!v->is_number()) return wrong_type(path_of(key), "a number", *v);
    return std::optional<double>(v->get<double>());
  }

  // A Firecracker member kindling lacks: accepted only when absent or null; `why` names what
  // is missing in the error.
  Result<void, ConfigErr> null_only(std::string_view key, std::string_view why = {}) const {
    const json* v = find(key);
    if (v != nullptr && !v->is_null()) return unsupported(path_of(key), why);
    return {};
  }

  // A Firecracker boolean kindling lacks: accepted when absent, null or false.
  Result<void, ConfigErr> false_only(std::string_view key, std::string_view why) const {
    auto b = opt_bool(key, false);
    if (!b) return b.take_error();
    if (*b) return unsupported(path_of(key), why);
    return {};
  }

  // A string member that must be one of `allowed` (absent or null gives `fallback`).
  Result<std::string, ConfigErr> one_of(std::string_view key,
                                        std::initializer_list<std::string_view> allowed,
                                        const std::string& fallback) const {
    return one_of(key, std::span<const std::string_view>(allowed.begin(), allowed.size()),
                  fallback);
  }
  // The same over a list kept elsewhere (e.g. vmm/boot/boot_protocol.h's names).
  Result<std::string, ConfigErr> one_of(std::string_view key,
                                        std::span<const std::string_view> allowed,
                                        const std::string& fallback) const {
    auto s = opt_string(key);
    if (!s) return s.take_error();
    if (!*s) return fallback;
    for (std::string_view a : allowed) {
      if (**s == a) return **s;
    }
    return unsupported(path_of(key) + " \"" + **s + "\"");
  }

 private:
  ObjectReader(const json& obj, std::string path) : obj_(&obj), path_(std::move(path)) {}

  const json* obj_;
  std::string path_;
};

// Propagates an error from an expression returning a Result; binds the value otherwise.
#define KINDLING_TRY(var, expr)                        \
  auto var##_result = (expr);                          \
  if (!var##_result) return var##_result.take_error(); \
  auto var = std::move(*var##_result)

#define KINDLING_CHECK(expr)                               \
  do {                                                     \
    auto check_result_ = (expr);                           \
    if (!check_result_) return check_result_.take_error(); \
  } while (0)

Result<void, ConfigErr> parse_boot_source(const json& v, const std::string& base_dir,
                                          VmConfig& cfg) {
  KINDLING_TRY(
      r, ObjectReader::open(v, "boot-source", {"kernel_image_path", "boot_args", "initrd_path"}));
  KINDLING_TRY(kernel, r.req_string("kernel_image_path"));
  cfg.kernel_path = resolve(base_dir, kernel);
  KINDLING_TRY(args, r.opt_string("boot_args"));
  cfg.cmdline = args;
  KINDLING_TRY(initrd, r.opt_path("initrd_path", base_dir));
  if (initrd) cfg.initrd_path = initrd;
  return {};
}

// Firecracker's static CPU templates over its releases (C3 and T2 from the first, then T2S,
// T2CL, T2A and V1N1). Each rewrites CPUID and MSRs, and Firecracker refuses one that does not
// fit the host CPU rather than ignoring it, so kindling has no template it may skip.
constexpr std::string_view kCpuTemplates[] = {"C3", "T2", "T2S", "T2CL", "T2A", "V1N1"};

Result<void, ConfigErr> check_cpu_template(const ObjectReader& r) {
  KINDLING_TRY(name, r.opt_string("cpu_template"));
  if (!name || *name == "None") return {};
  const std::string where = r.path_of("cpu_template") + " \"" + *name + "\"";
  for (std::string_view t : kCpuTemplates) {
    if (*name == t) return unsupported(where, "kindling has no CPU templates");
  }
  return fail(ConfigError::kInvalid, 0,
              where + ": unknown CPU template (expected None, C3, T2, T2S, T2CL, T2A or V1N1)");
}

Result<void, ConfigErr> check_huge_pages(const ObjectReader& r) {
  KINDLING_TRY(pages, r.opt_string("huge_pages"));
  if (!pages || *pages == "None") return {};
  const std::string where = r.path_of("huge_pages") + " \"" + *pages + "\"";
  if (*pages == "2M") return unsupported(where, "kindling backs guest memory with 4 KiB pages");
  return fail(ConfigError::kInvalid, 0, where + ": expected \"None\" or \"2M\"");
}

// Every release's keys: vcpu_count and mem_size_mib (optional in old releases, which defaulted
// them), ht_enabled (later renamed smt), cpu_template, track_dirty_pages, huge_pages. An absent
// size keeps kindling's default, as an absent machine-config does.
Result<void, ConfigErr> parse_machine_config(const json& v, VmConfig& cfg) {
  KINDLING_TRY(r, ObjectReader::open(v, "machine-config",
                                     {"vcpu_count", "mem_size_mib", "smt", "ht_enabled",
                                      "track_dirty_pages", "huge_pages", "cpu_template"}));
  KINDLING_TRY(vcpus, r.opt_int("vcpu_count"));
  if (vcpus) {
    KINDLING_CHECK(check_vcpus(*vcpus, r.path_of("vcpu_count")));
    cfg.vcpus = static_cast<uint32_t>(*vcpus);
  }
  KINDLING_TRY(mib, r.opt_int("mem_size_mib"));
  if (mib) {
    const std::string mem_path = r.path_of("mem_size_mib");
    if (*mib < 0 || static_cast<uint64_t>(*mib) > (kMaxMemBytes >> 20)) {
      return fail(ConfigError::kInvalid, 0,
                  mem_path + ": must be between " + std::to_string(kMinMemBytes >> 20) + " and " +
                      std::to_string(kMaxMemBytes >> 20) + " MiB");
    }
    cfg.mem_bytes = static_cast<uint64_t>(*mib) << 20;
    KINDLING_CHECK(check_mem_bytes(cfg.mem_bytes, mem_path));
  }
  // Firecracker's defaults mean "not used"; anything else asks for a missing feature.
  for (std::string_view smt : {"smt", "ht_enabled"}) {
    KINDLING_CHECK(r.false_only(smt, "kindling gives every vCPU a core of its own"));
  }
  KINDLING_CHECK(r.false_only("track_dirty_pages", "kindling has no snapshots"));
  KINDLING_CHECK(check_huge_pages(r));
  KINDLING_CHECK(check_cpu_template(r));
  return {};
}

// A non-negative integer member up to 2^64 - 1 (Firecracker's u64); nullopt when absent or null.
Result<std::optional<uint64_t>, ConfigErr> opt_u64(const ObjectReader& r, std::string_view key) {
  const json* v = r.find(key);
  if (v == nullptr || v->is_null()) return std::optional<uint64_t>{};
  if (!v->is_number_integer()) return wrong_type(r.path_of(key), "an integer", *v);
  if (!v->is_number_unsigned() && v->get<int64_t>() < 0) {
    return fail(ConfigError::kInvalid, 0, r.path_of(key) + ": must not be negative");
  }
  return std::optional<uint64_t>(v->get<uint64_t>());
}

// The same, required.
Result<uint64_t, ConfigErr> req_u64(const ObjectReader& r, std::string_view key) {
  KINDLING_TRY(v, opt_u64(r, key));
  if (!v) return fail(ConfigError::kMissingKey, 0, r.path_of(key));
  return *v;
}

// One Firecracker TokenBucket: {"size": N, "one_time_burst": N (optional), "refill_time": MS}.
Result<std::optional<TokenBucketConfig>, ConfigErr> parse_bucket(const json* v,
                                                                 const std::string& path) {
  if (v == nullptr || v->is_null()) return std::optional<TokenBucketConfig>{};
  KINDLING_TRY(r, ObjectReader::open(*v, path, {"size", "one_time_burst", "refill_time"}));
  TokenBucketConfig b;
  KINDLING_TRY(size, req_u64(r, "size"));
  b.size = size;
  KINDLING_TRY(burst, opt_u64(r, "one_time_burst"));
  b.one_time_burst = burst.value_or(0);
  KINDLING_TRY(refill, req_u64(r, "refill_time"));
  b.refill_time_ms = refill;
  return std::optional<TokenBucketConfig>(b);
}

Result<DriveConfig, ConfigErr> parse_drive(const json& v, const std::string& path,
                                           const std::string& base_dir) {
  KINDLING_TRY(
      r, ObjectReader::open(v, path,
                            {"drive_id", "path_on_host", "is_root_device", "is_read_only",
                             "partuuid", "cache_type", "io_engine", "rate_limiter", "socket"}));
  DriveConfig d;
  KINDLING_TRY(id, r.req_string("drive_id"));
  d.id = id;
  // A vhost-user drive has a socket instead of a path: not something kindling serves.
  KINDLING_CHECK(r.null_only("socket", "kindling has no vhost-user drives"));
  KINDLING_TRY(image, r.req_string("path_on_host"));
  d.path = resolve(base_dir, image);
  KINDLING_TRY(root, r.req_bool("is_root_device"));
  d.is_root = root;
  KINDLING_TRY(ro, r.opt_bool("is_read_only", false));
  d.read_only = ro;
  // Firecracker reads partuuid only on the root drive (root=PARTUUID=...) and ignores it on
  // the others.
  KINDLING_TRY(partuuid, r.opt_string("partuuid"));
  if (partuuid && d.is_root) {
    return unsupported(r.path_of("partuuid"), "kindling boots the root drive as root=/dev/vdX");
  }
  if (const json* limiter = r.find("rate_limiter"); limiter != nullptr) {
    KINDLING_TRY(rl, parse_rate_limiter(*limiter, r.path_of("rate_limiter")));
    d.rate_limiter = rl;
  }
  // kindling always offers FLUSH and honours it, which satisfies both cache types: "Unsafe"
  // only says the guest need not flush, "Writeback" that its flushes reach the disk.
  KINDLING_CHECK(r.one_of("cache_type", {"Unsafe", "Writeback"}, "Unsafe"));
  // Firecracker's two names, and kindling's "IoUring" for the io_uring engine.
  KINDLING_TRY(engine, r.one_of("io_engine", {"Sync", "Async", "IoUring"}, ""));
  if (engine == "Sync") d.io_engine = "sync";
  if (engine == "Async") d.io_engine = "libaio";
  if (engine == "IoUring") d.io_engine = "io_uring";
  return d;
}

Result<void, ConfigErr> parse_drives(const json& v, const std::string& base_dir, VmConfig& cfg) {
  if (!v.is_array()) return wrong_type("drives", "an array", v);
  for (size_t i = 0; i < v.size(); ++i) {
    KINDLING_TRY(d, parse_drive(v[i], item("drives", i), base_dir));
    cfg.drives.push_back(std::move(d));
  }
  return check_drives(cfg.drives);
}

// kindling's own settings: {"console_log": PATH, "timeout_s": SECONDS, "merge": BOOL,
// "acpi": BOOL, "boot_protocol": "auto"|"linux"|"pvh", "exit_on_halt": BOOL, "seccomp": BOOL}.
Result<void, ConfigErr> parse_kindling(const json& v, const std::string& base_dir, VmConfig& cfg) {
  if (v.is_null()) return {};
  KINDLING_TRY(r, ObjectReader::open(v, "kindling",
                                     {"console_log", "timeout_s", "merge", "acpi", "boot_protocol",
                                      "exit_on_halt", "seccomp"}));
  KINDLING_TRY(exit_on_halt, r.opt_bool("exit_on_halt", false));
  cfg.exit_on_halt = exit_on_halt;
  KINDLING_TRY(seccomp, r.opt_bool("seccomp", true));
  cfg.seccomp = seccomp;
  KINDLING_TRY(acpi, r.opt_bool("acpi", true));
  cfg.acpi = acpi;
  KINDLING_TRY(protocol, r.one_of("boot_protocol", kBootProtocolNames, "auto"));
  cfg.boot_protocol = protocol;
  KINDLING_TRY(log_path, r.opt_path("console_log", base_dir));
  if (log_path) cfg.console_log = log_path;
  KINDLING_TRY(timeout, r.opt_number("timeout_s"));
  if (timeout && !(*timeout > 0)) {
    return fail(ConfigError::kInvalid, 0, r.path_of("timeout_s") + ": must be positive");
  }
  cfg.timeout_s = timeout;
  KINDLING_TRY(merge, r.opt_bool("merge", true));
  for (DriveConfig& d : cfg.drives) d.merge = merge;
  return {};
}

// Firecracker's "serial": {"serial_out_path": PATH, "rate_limiter": null} is kindling's
// console log.
Result<void, ConfigErr> parse_serial(const json& v, const std::string& base_dir, VmConfig& cfg) {
  if (v.is_null()) return {};
  KINDLING_TRY(r, ObjectReader::open(v, "serial", {"serial_out_path", "rate_limiter"}));
  KINDLING_CHECK(r.null_only("rate_limiter"));
  KINDLING_TRY(out, r.opt_path("serial_out_path", base_dir));
  if (out) cfg.console_log = out;
  return {};
}

// Firecracker's "entropy": {} or {"rate_limiter": null} adds a virtio-rng device.
// kindling has none, but a guest without one still boots and seeds its RNG from its own
// sources (RDRAND, CPU jitter), so the section is ignored with a warning rather than refused.
Result<void, ConfigErr> parse_entropy(const json& v, ConfigWarnings& warnings) {
  if (v.is_null()) return {};
  KINDLING_TRY(r, ObjectReader::open(v, "entropy", {"rate_limiter"}));
  KINDLING_CHECK(r.null_only("rate_limiter"));
  warnings.push_back("entropy: ignored (kindling has no virtio-rng device)");
  return {};
}

// Firecracker's "metrics": {"metrics_path": PATH}, the file its drive counters go to.
Result<void, ConfigErr> parse_metrics(const json& v, const std::string& base_dir, VmConfig& cfg) {
  if (v.is_null()) return {};
  KINDLING_TRY(r, ObjectReader::open(v, "metrics", {"metrics_path"}));
  KINDLING_TRY(path, r.req_string("metrics_path"));
  cfg.metrics_path = resolve(base_dir, path);
  return {};
}

// The JSON type Firecracker reads in a section.
enum class Shape { kObject, kArray, kPathOrObject };

// A Firecracker section for a device or service kindling lacks.
struct MissingFeature {
  std::string_view key;
  Shape shape;
  bool empty_ok;  // an empty object or array asks for nothing there
  std::string_view why;
};

constexpr MissingFeature kMissingFeatures[] = {
    {"network-interfaces", Shape::kArray, true, "kindling has no network device"},
    {"vsock", Shape::kObject, false, "kindling has no vsock device"},
    {"balloon", Shape::kObject, false, "kindling has no balloon device"},
    {"mmds-config", Shape::kObject, false, "kindling has no MMDS"},
    {"pmem", Shape::kArray, true, "kindling has no virtio-pmem device"},
    {"memory-hotplug", Shape::kObject, false, "kindling has no memory hotplug"},
    // A path to a custom CPU template, or (newer releases) the template itself.
    {"cpu-config", Shape::kPathOrObject, false, "kindling has no custom CPU templates"},
    // Firecracker's own log and metrics files; a logger with no member changes nothing.
    {"logger", Shape::kObject, true, "kindling logs to stderr only; see --log-level"},
};

// Accepts a missing-feature section when absent, null, or empty where that asks for nothing.
Result<void, ConfigErr> check_missing_feature(const ObjectReader& r, const MissingFeature& f) {
  const json* v = r.find(f.key);
  if (v == nullptr || v->is_null()) return {};
  switch (f.shape) {
    case Shape::kObject:
      if (!v->is_object()) return wrong_type(r.path_of(f.key), "an object", *v);
      break;
    case Shape::kArray:
      if (!v->is_array()) return wrong_type(r.path_of(f.key), "an array", *v);
      break;
    case Shape::kPathOrObject:
      if (!v->is_string() && !v->is_object()) {
        return wrong_type(r.path_of(f.key), "a path or an object", *v);
      }
      break;
  }
  if (f.empty_ok && v->empty()) return {};
  return unsupported(r.path_of(f.key), f.why);
}

// Firecracker ignores top-level keys it does not know (its own test framework's config has a
// stray "mmds-version"), so kindling warns about them instead of refusing.
Result<VmConfig, ConfigErr> parse_root(const json& root, const std::string& base_dir,
                                       ConfigWarnings& warnings) {
  KINDLING_TRY(r, ObjectReader::open(
                      root, "",
                      {"boot-source", "machine-config", "drives", "balloon", "network-interfaces",
                       "vsock", "logger", "metrics", "mmds-config", "entropy", "cpu-config", "pmem",
                       "memory-hotplug", "serial", "stats", "kindling"},
                      &warnings));
  VmConfig cfg;
  KINDLING_TRY(boot, r.require("boot-source"));
  KINDLING_CHECK(parse_boot_source(*boot, base_dir, cfg));
  if (const json* m = r.find("machine-config"); m != nullptr && !m->is_null()) {
    KINDLING_CHECK(parse_machine_config(*m, cfg));
  }
  if (const json* d = r.find("drives"); d != nullptr) {
    KINDLING_CHECK(parse_drives(*d, base_dir, cfg));
  }
  for (const MissingFeature& f : kMissingFeatures) KINDLING_CHECK(check_missing_feature(r, f));
  if (const json* s = r.find("serial"); s != nullptr) {
    KINDLING_CHECK(parse_serial(*s, base_dir, cfg));
  }
  if (const json* e = r.find("entropy"); e != nullptr) {
    KINDLING_CHECK(parse_entropy(*e, warnings));
  }
  if (const json* m = r.find("metrics"); m != nullptr) {
    KINDLING_CHECK(parse_metrics(*m, base_dir, cfg));
  }
  KINDLING_TRY(stats, r.opt_bool("stats", false));
  cfg.stats = stats;
  if (const json* k = r.find("kindling"); k != nullptr) {
    KINDLING_CHECK(parse_kindling(*k, base_dir, cfg));
  }
  KINDLING_CHECK(validate_config(cfg));
  return cfg;
}

// Finds the first key that appears twice in one object while nlohmann parses (it would keep
// the last silently; Firecracker's parser rejects duplicates). Tracks the JSON path as it goes.
class DuplicateKeyFinder {
 public:
  bool operator()(int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        frames_.push_back(Frame{true, {}, {}, 0});
        break;
      case json::parse_event_t::array_start:
        frames_.push_back(Frame{false, {}, {}, 0});
        break;
      case json::parse_event_t::key:
        if (!frames_.empty() && parsed.is_string()) {
          Frame& top = frames_.back();
          top.key = parsed.get<std::string>();
          if (!top.keys.insert(top.key).second && !duplicate_) duplicate_ = path();
        }
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value:
        element_done();
        break;
    }
    return true;
  }

  // The path of the first duplicate key, if any.
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool object;
    std::set<std::string> keys;
    std::string key;  // objects: the member being parsed
    size_t index;     // arrays: the element being parsed
  };

  void element_done() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const Frame& f : frames_) p = f.object ? child(p, f.key) : item(p, f.index);
    return p;
  }

  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

// nlohmann's message without its "[json.exception.parse_error.101] parse error" prefix.
std::string describe_parse_error(const json::exception& e) {
  std::string what = e.what();
  auto bracket = what.find("] ");
  if (bracket != std::string::npos) what.erase(0, bracket + 2);
  const std::string prefix = "parse error";
  if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
  return "invalid JSON" + what;
}

}  // namespace

Result<RateLimiterConfig, ConfigErr> parse_rate_limiter(const json& v, const std::string& path) {
  RateLimiterConfig c;
  if (v.is_null()) return c;
  KINDLING_TRY(r, ObjectReader::open(v, path, {"bandwidth", "ops"}));
  KINDLING_TRY(bandwidth, parse_bucket(r.find("bandwidth"), r.path_of("bandwidth")));
  c.bandwidth = bandwidth;
  KINDLING_TRY(ops, parse_bucket(r.find("ops"), r.path_of("ops")));
  c.ops = ops;
  return c;
}

RateLimiterConfig apply_rate_limiter_update(const RateLimiterConfig& current,
                                            const RateLimiterConfig& update) {
  RateLimiterConfig c = current;
  if (update.bandwidth) c.bandwidth = update.bandwidth;
  if (update.ops) c.ops = update.ops;
  return c;
}

#undef KINDLING_TRY
#undef KINDLING_CHECK

Result<VmConfig, ConfigErr> parse_config_json(std::string_view text, const std::string& base_dir,
                                              ConfigWarnings* warnings) {
  ConfigWarnings unused;
  json root;
  DuplicateKeyFinder duplicates;
  try {
    root = json::parse(text, std::ref(duplicates));
  } catch (const json::exception& e) {
    return fail(ConfigError::kJson, 0, describe_parse_error(e));
  }
  if (duplicates.duplicate()) {
    return fail(ConfigError::kInvalid, 0, *duplicates.duplicate() + ": duplicate key");
  }
  try {
    return parse_root(root, base_dir, warnings != nullptr ? *warnings : unused);
  } catch (const json::exception& e) {
    // The readers check types before every get(); this is a last line of defence.
    return fail(ConfigError::kJson, 0, e.what());
  }
}

Result<VmConfig, ConfigErr> load_config_file(const std::string& path, ConfigWarnings* warnings) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno(ConfigError::kFile, path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno(ConfigError::kFile, path);
  if (S_ISDIR(st.st_mode)) return fail(ConfigError::kFile, EISDIR, path);
  if (st.st_size > kMaxConfigBytes) {
    return fail(ConfigError::kInvalid, 0, path + ": too large for a config file (over 1 MiB)");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(ConfigError::kFile, path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMaxConfigBytes)) {
      return fail(ConfigError::kInvalid, 0, path + ": too large for a config file (over 1 MiB)");
    }
  }
  ConfigWarnings found;
  auto cfg = parse_config_json(text, std::filesystem::path(path).parent_path().string(), &found);
  if (warnings != nullptr) {
    for (const std::string& w : found) warnings->push_back(path + ": " + w);
  }
  if (!cfg) {
    ConfigErr err = std::move(cfg).error();
    err.context = path + ": " + err.context;
    return Unexpected<ConfigErr>{std::move(err)};
  }
  return cfg;
}

namespace {

// Parses one section's text (with the duplicate-key check) and hands the object to `parse`.
template <typename Parse>
auto parse_section(std::string_view text, Parse&& parse) -> decltype(parse(json())) {
  json v;
  DuplicateKeyFinder duplicates;
  try {
    v = json::parse(text, std::ref(duplicates));
  } catch (const json::exception& e) {
    return fail(ConfigError::kJson, 0, describe_parse_error(e));
  }
  if (duplicates.duplicate()) {
    return fail(ConfigError::kInvalid, 0, *duplicates.duplicate() + ": duplicate key");
  }
  try {
    return parse(v);
  } catch (const json::exception& e) {
    return fail(ConfigError::kJson, 0, e.what());
  }
}

json bucket_json(const TokenBucketConfig& b) {
  return {
      {"size", b.size}, {"one_time_burst", b.one_time_burst}, {"refill_time", b.refill_time_ms}};
}

}  // namespace

Result<void, ConfigErr> parse_boot_source_section(std::string_view text, VmConfig& cfg) {
  return parse_section(text, [&](const json& v) -> Result<void, ConfigErr> {
    VmConfig next = cfg;
    next.initrd_path.reset();
    if (auto ok = parse_boot_source(v, "", next); !ok) return ok;
    cfg = std::move(next);
    return {};
  });
}

Result<void, ConfigErr> parse_machine_config_section(std::string_view text, VmConfig& cfg) {
  return parse_section(text, [&](const json& v) -> Result<void, ConfigErr> {
    VmConfig next = cfg;
    if (auto ok = parse_machine_config(v, next); !ok) return ok;
    cfg = std::move(next);
    return {};
  });
}

Result<DriveConfig, ConfigErr> parse_drive_section(std::string_view text) {
  return parse_section(text, [](const json& v) { return parse_drive(v, "drive", ""); });
}

std::string to_config_json(const VmConfig& cfg) {
  json boot = {{"kernel_image_path", cfg.kernel_path}};
  if (cfg.cmdline) boot["boot_args"] = *cfg.cmdline;
  if (cfg.initrd_path) boot["initrd_path"] = *cfg.initrd_path;
  json drives = json::array();
  bool merge = true;
  for (const DriveConfig& d : cfg.drives) {
    json limiter = nullptr;
    if (d.rate_limiter.bandwidth || d.rate_limiter.ops) {
      limiter = json::object();
      if (d.rate_limiter.bandwidth) limiter["bandwidth"] = bucket_json(*d.rate_limiter.bandwidth);
      if (d.rate_limiter.ops) limiter["ops"] = bucket_json(*d.rate_limiter.ops);
    }
    drives.push_back({{"drive_id", d.id},
                      {"path_on_host", d.path},
                      {"is_root_device", d.is_root},
                      {"is_read_only", d.read_only},
                      {"cache_type", "Unsafe"},
                      {"io_engine", d.io_engine == "sync" ? "Sync" : "Async"},
                      {"rate_limiter", limiter}});
    merge = merge && d.merge;
  }
  json kindling = {{"acpi", cfg.acpi},
                   {"boot_protocol", cfg.boot_protocol},
                   {"exit_on_halt", cfg.exit_on_halt},
                   {"merge", merge}};
  if (cfg.timeout_s) kindling["timeout_s"] = *cfg.timeout_s;
  if (cfg.console_log) kindling["console_log"] = *cfg.console_log;
  json root = {{"boot-source", boot},
               {"machine-config",
                {{"vcpu_count", cfg.vcpus},
                 {"mem_size_mib", cfg.mem_bytes >> 20},
                 {"smt", false},
                 {"track_dirty_pages", false},
                 {"huge_pages", "None"}}},
               {"drives", drives},
               {"network-interfaces", json::array()},
               {"balloon", nullptr},
               {"vsock", nullptr},
               {"logger", nullptr},
               {"metrics", cfg.metrics_path ? json{{"metrics_path", *cfg.metrics_path}} : json()},
               {"mmds-config", nullptr},
               {"entropy", nullptr},
               {"cpu-config", nullptr},
               {"kindling", kindling}};
  return root.dump();
}

}  // namespace kindling::vmm
