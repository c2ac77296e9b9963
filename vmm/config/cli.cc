#include "vmm/config/cli.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <string>
#include <vector>

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

Exit status: 0 guest reset or power-off, N from the guest's exit port (0xF4), 1 guest crash
(triple fault, emulation failure), 2 bad usage or input, 124 --timeout, 130 SIGINT, 143 SIGTERM.)";

// What the `run` subcommand's flags were given as (strings are validated by kindling, so every
// bad value gets the same kind of message).
struct RunFlags {
  std::string kernel, initrd, cmdline, mem, cpus, config, console_log, timeout, log_level;
  std::string io_engine, boot_protocol;
  std::vector<std::string> disks;
  bool root = false, stats = false, no_merge = false, no_acpi = false, exit_on_halt = false;
};

Result<int64_t, ConfigErr> parse_integer(const std::string& text, const std::string& what) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return fail(ConfigError::kInvalid, 0, what + " \"" + text + "\": expected an integer");
  }
  return value;
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
      ->type_name("PATH[,ro][,id=SERIAL][,fault=RULE]")
      ->allow_extra_args(false);
  run.add_flag("--root", f.root, "Boot from the first --disk (appends root=/dev/vda)");
  run.add_option("--config", f.config,
                 "Firecracker-style JSON config; flags given here override it")
      ->type_name("FILE");
  run.add_option("--console-log", f.console_log, "Write the guest console to FILE, not stdout")
      ->type_name("FILE");
  run.add_option("--timeout", f.timeout, "Stop the VM after SECONDS (exit status 124)")
      ->type_name("SECONDS");
  run.add_flag("--stats", f.stats, "Print per-disk I/O statistics on exit");
  run.add_option("--log-level", f.log_level, "Log verbosity (default warn)")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  run.add_option("--io-engine", f.io_engine, "Disk I/O engine (default libaio)")
      ->type_name("ENGINE")
      ->check(CLI::IsMember({"libaio", "sync"}));
  run.add_flag("--no-merge", f.no_merge, "Do not merge adjacent disk requests");
  run.add_flag("--no-acpi", f.no_acpi,
               "No ACPI tables: the guest finds CPUs and disks through the MP table and the "
               "command line only");
  run.add_flag("--exit-on-halt", f.exit_on_halt,
               "End the VM (exit 0) when every vCPU has halted with interrupts off");
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
      return fail(ConfigError::kInvalid, 0,
                  what + ": unknown option \"" + std::string(opt) +
                      "\" (expected ro, rw, id=SERIAL or fault=RULE)");
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
  if (auto valid = validate_config(cfg); !valid) return valid.take_error();
  return std::optional<VmConfig>(std::move(cfg));
}

}  // namespace kindling::vmm
