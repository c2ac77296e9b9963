#include "vmm/config/cli.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <string>
#include <vector>

#include "block/io_engine.h"
#include "common/log.h"
#include "vmm/boot/boot_protocol.h"
#include "vmm/config/config_json.h"

#ifndef KINDLING_VERSION
#define KINDLING_VERSION "0.1.0"
#endif

namespace kindling::vmm {
namespace {

// The virtio-blk GET_ID reply holds 20 bytes of serial.
constexpr size_t kMaxSerialBytes = 20;

constexpr const char* kExamples = R"(Examples:
  kindling run --kernel vmlinux --initrd initramfs.cpio --mem 512M --cpus 2
  kindling run --kernel vmlinux --disk rootfs.ext4 --root --disk data.img,ro,id=data
  kindling run --config configs/testguest-hello.json --timeout 30
  kindling run --config vm.json --cpus 4 --stats     (flags override the file)
  kindling run --api-sock /tmp/kindling.sock       (configure and start through the API)

Exit status: 0 guest reset or power-off, N from the guest's exit port (0xF4), 1 guest crash
(triple fault, emulation failure), 2 bad usage or input, 124 --timeout, 130 SIGINT, 143 SIGTERM.)";

// What the `run` subcommand's flags were given as (strings are validated by kindling, so every
// bad value gets the same kind of message).
struct RunFlags {
  std::string kernel, initrd, cmdline, mem, cpus, config, console_log, timeout, log_level;
  std::string io_engine, boot_protocol, api_sock;
  std::vector<std::string> disks;
  bool root = false, stats = false, no_merge = false, no_acpi = false, exit_on_halt = false;
  bool no_seccomp = false;
};

Result<int64_t, ConfigErr> parse_integer(const std::string& text, const std::string& what) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return fail(ConfigError::kInvalid, 0, what + " \"" + text + "\": expected an integer");
  }
  return value;
}

// A --disk rate: a positive integer, for bytes with an optional binary suffix (K, M, G, also
// KiB, MiB, GiB: 10M is 10 MiB).
Result<uint64_t, ConfigErr> parse_rate(std::string_view text, bool bytes, const std::string& what) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
  unsigned shift = 0;
  if (bytes && !suffix.empty()) {
    const std::string_view units[] = {"K", "M", "G"};
    for (unsigned i = 0; i < 3; ++i) {
      if (suffix == units[i] || suffix == std::string(units[i]) + "iB") shift = 10 * (i + 1);
    }
    if (shift != 0) suffix = {};
  }
  if (ec != std::errc() || !suffix.empty() || value == 0 || value > (UINT64_MAX >> shift)) {
    return fail(ConfigError::kInvalid, 0,
                what + ": expected a positive integer" +
                    (bytes ? std::string(" of bytes (suffix K, M or G allowed)") : std::string()));
  }
  return value << shift;
}

Result<double, ConfigErr> parse_seconds(const std::string& text, const std::string& what) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value > 0)) {
    return fail(ConfigError::kInvalid, 0,
                what + " \"" + text + "\": expected a positive number of seconds");
  }
  return value;
}

// Applies the flags that were given on top of `cfg` (the defaults or the --config file).
Result<void, ConfigErr> apply_flags(const RunFlags& f, const CLI::App& run, VmConfig& cfg) {
  auto given = [&](const char* name) { return run.get_option(name)->count() > 0; };
  if (given("--kernel")) cfg.kernel_path = f.kernel;
  if (given("--initrd")) cfg.initrd_path = f.initrd;
  if (given("--cmdline")) cfg.cmdline = f.cmdline;
  if (given("--mem")) {
    auto mem = parse_mem_size(f.mem, "--mem");
    if (!mem) return mem.take_error();
    cfg.mem_bytes = *mem;
  }
  if (given("--cpus")) {
    auto n = parse_integer(f.cpus, "--cpus");
    if (!n) return n.take_error();
    if (auto ok = check_vcpus(*n, "--cpus"); !ok) return ok;
    cfg.vcpus = static_cast<uint32_t>(*n);
  }
  if (given("--disk")) {
    cfg.drives.clear();
    for (const std::string& spec : f.disks) {
      auto d = parse_disk_spec(spec);
      if (!d) return d.take_error();
      cfg.drives.push_back(std::move(*d));
    }
  }
  if (f.root) {
    if (cfg.drives.empty()) {
      return fail(ConfigError::kInvalid, 0, "--root: there is no disk to boot from (add --disk)");
    }
    for (DriveConfig& d : cfg.drives) d.is_root = false;
    cfg.drives.front().is_root = true;
  }
  if (given("--console-log")) cfg.console_log = f.console_log;
  if (given("--timeout")) {
    auto t = parse_seconds(f.timeout, "--timeout");
    if (!t) return t.take_error();
    cfg.timeout_s = *t;
  }
  if (f.stats) cfg.stats = true;
  if (given("--log-level")) cfg.log_level = f.log_level;
  if (given("--io-engine")) {
    for (DriveConfig& d : cfg.drives) d.io_engine = f.io_engine;
  }
  if (f.no_merge) {
    for (DriveConfig& d : cfg.drives) d.merge = false;
  }
  if (f.no_acpi) cfg.acpi = false;
  if (f.exit_on_halt) cfg.exit_on_halt = true;
  if (f.no_seccomp) cfg.seccomp = false;
  if (given("--boot-protocol")) cfg.boot_protocol = f.boot_protocol;
  return {};
}

void add_run_flags(CLI::App& run, RunFlags& f) {
  run.add_option("--kernel", f.kernel, "Guest kernel: an ELF vmlinux or a bzImage")
      ->type_name("PATH");
  run.add_option("--initrd", f.initrd, "Initial ramdisk loaded below the top of RAM")
      ->type_name("PATH");
  run.add_option("--cmdline", f.cmdline,
                 "Kernel command line (default: console=ttyS0 reboot=k panic=-1 pci=off quiet)")
      ->type_name("STR");
  run.add_option("--mem", f.mem, "Guest RAM: 256M, 1G or a number of MiB (default 256M)")
      ->type_name("SIZE");
  run.add_option("--cpus", f.cpus, "Number of vCPUs (default 1)")->type_name("N");
  run.add_option("--disk", f.disks,
                 "Raw disk image as a virtio-blk device (repeatable; the first is /dev/vda)")
      ->type_name(
          "PATH[,ro][,id=SERIAL][,bw=BYTES/"
          "s][,iops=N][,bw_burst=BYTES][,iops_burst=N][,fault=RULE]")
      ->allow_extra_args(false);
  run.add_flag("--root", f.root, "Boot from the first --disk (appends root=/dev/vda)");
  run.add_option("--config", f.config,
                 "Firecracker-style JSON config; flags given here override it")
      ->type_name("FILE");
  run.add_option("--api-sock", f.api_sock,
                 "Serve Firecracker's HTTP API on this Unix socket; without --config, wait "
                 "for PUT /actions InstanceStart")
      ->type_name("PATH");
  run.add_option("--console-log", f.console_log, "Write the guest console to FILE, not stdout")
      ->type_name("FILE");
  run.add_option("--timeout", f.timeout, "Stop the VM after SECONDS (exit status 124)")
      ->type_name("SECONDS");
  run.add_flag("--stats", f.stats, "Print per-disk I/O statistics on exit");
  run.add_option("--log-level", f.log_level, "Log verbosity (default warn)")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  run.add_option("--io-engine", f.io_engine, "Disk I/O engine: libaio (default), io_uring or sync")
      ->type_name("ENGINE")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(block::kEngineNames),
                                                     std::end(block::kEngineNames))));
  run.add_flag("--no-merge", f.no_merge, "Do not merge adjacent disk requests");
  run.add_flag("--no-acpi", f.no_acpi,
               "No ACPI tables: the guest finds CPUs and disks through the MP table and the "
               "command line only");
  run.add_flag("--exit-on-halt", f.exit_on_halt,
               "End the VM (exit 0) when every vCPU has halted with interrupts off");
  run.add_flag("--no-seccomp", f.no_seccomp,
               "Do not confine kindling's threads with seccomp filters (for debugging)");
  run.add_option("--boot-protocol", f.boot_protocol,
                 "Kernel entry: auto (PVH when the kernel has a PVH note, else linux), linux "
                 "(64-bit boot protocol) or pvh")
      ->type_name("PROTO")
      ->check(CLI::IsMember(
          std::vector<std::string>(kBootProtocolNames.begin(), kBootProtocolNames.end())));
}

}  // namespace

std::string version_string() {
  return std::string("kindling ") + KINDLING_VERSION;
}

namespace {

// Applies one bw=, iops=, bw_burst= or iops_burst= option (`key` without the '='); false when
// `key` is none of them. A rate is a bucket of one second's worth refilled every second.
Result<bool, ConfigErr> apply_limit(std::string_view key, std::string_view value,
                                    const std::string& what, RateLimiterConfig& rl) {
  const bool bytes = key == "bw" || key == "bw_burst";
  if (!bytes && key != "iops" && key != "iops_burst") return false;
  auto n = parse_rate(value, bytes, what + ": " + std::string(key));
  if (!n) return n.take_error();
  std::optional<TokenBucketConfig>& bucket = bytes ? rl.bandwidth : rl.ops;
  if (!bucket) bucket = TokenBucketConfig{};
  if (key == "bw" || key == "iops") {
    bucket->size = *n;
    bucket->refill_time_ms = 1000;
  } else {
    bucket->one_time_burst = *n;
  }
  return true;
}

}  // namespace

Result<DriveConfig, ConfigErr> parse_disk_spec(std::string_view spec) {
  const std::string what = "--disk " + std::string(spec);
  DriveConfig d;
  size_t comma = spec.find(',');
  d.path = std::string(spec.substr(0, comma));
  if (d.path.empty()) return fail(ConfigError::kInvalid, 0, what + ": the image path is empty");
  while (comma != std::string_view::npos) {
    spec.remove_prefix(comma + 1);
    comma = spec.find(',');
    std::string_view opt = spec.substr(0, comma);
    if (opt == "ro") {
      d.read_only = true;
    } else if (opt == "rw") {
      d.read_only = false;
    } else if (opt.substr(0, 3) == "id=") {
      d.id = std::string(opt.substr(3));
      if (d.id.empty() || d.id.size() > kMaxSerialBytes) {
        return fail(ConfigError::kInvalid, 0, what + ": id must be 1 to 20 bytes");
      }
    } else if (opt.substr(0, 6) == "fault=") {
      auto rule = block::parse_fault_rule(opt.substr(6));
      if (!rule) return fail(ConfigError::kInvalid, 0, what + ": " + rule.error().message());
      d.faults.push_back(*rule);
    } else {
      size_t eq = opt.find('=');
      auto limit = eq == std::string_view::npos
                       ? Result<bool, ConfigErr>(false)
                       : apply_limit(opt.substr(0, eq), opt.substr(eq + 1), what, d.rate_limiter);
      if (!limit) return limit.take_error();
      if (!*limit) {
        return fail(ConfigError::kInvalid, 0,
                    what + ": unknown option \"" + std::string(opt) +
                        "\" (expected ro, rw, id=SERIAL, bw=, iops=, bw_burst=, iops_burst= or "
                        "fault=RULE)");
      }
    }
  }
  for (const auto* bucket : {&d.rate_limiter.bandwidth, &d.rate_limiter.ops}) {
    if (*bucket && (*bucket)->size == 0) {
      const char* name =
          bucket == &d.rate_limiter.bandwidth ? "bw_burst needs bw=" : "iops_burst needs iops=";
      return fail(ConfigError::kInvalid, 0, what + ": " + name);
    }
  }
  return d;
}

Result<std::optional<VmConfig>, ConfigErr> parse_cli(int argc, const char* const* argv,
                                                     std::ostream& out) {
  CLI::App app{"kindling: a minimal KVM micro-VMM", "kindling"};
  app.set_version_flag("--version", version_string(), "Print the version and exit");
  app.require_subcommand(1);
  app.footer(kExamples);
  CLI::App* run = app.add_subcommand("run", "Boot a kernel in a new VM");
  run->footer(kExamples);
  RunFlags flags;
  add_run_flags(*run, flags);

  // CLI11 reports help, version and every usage error by throwing; this is the edge where
  // those exceptions end.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help or --version: print and stop
      app.exit(e, out, out);
      return std::optional<VmConfig>{};
    }
    return fail(ConfigError::kInvalid, 0, std::string(e.what()) + " (see kindling --help)");
  } catch (const CLI::Error& e) {
    return fail(ConfigError::kInvalid, 0, e.what());
  }

  VmConfig cfg;
  if (run->get_option("--config")->count() > 0) {
    ConfigWarnings warnings;
    auto loaded = load_config_file(flags.config, &warnings);
    for (const std::string& w : warnings) KLOG_WARN("%s", w.c_str());
    if (!loaded) return loaded.take_error();
    cfg = std::move(*loaded);
  }
  if (auto applied = apply_flags(flags, *run, cfg); !applied) return applied.take_error();
  if (run->get_option("--api-sock")->count() > 0) {
    if (flags.api_sock.empty()) return fail(ConfigError::kInvalid, 0, "--api-sock: empty path");
    cfg.api_sock = flags.api_sock;
    // Without a config file the API brings the rest, and InstanceStart validates it.
    cfg.start_now = run->get_option("--config")->count() > 0;
    if (!cfg.start_now) return std::optional<VmConfig>(std::move(cfg));
  }
  if (auto valid = validate_config(cfg); !valid) return valid.take_error();
  return std::optional<VmConfig>(std::move(cfg));
}

}  // namespace kindling::vmm
