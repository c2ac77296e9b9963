// Runs build/kindling as a child process for the smoke tests and collects what it printed.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kindling::smoke {

// How one kindling run ended.
struct RunOutput {
  bool exited = false;  // false: killed at the deadline
  int exit_code = -1;   // valid when exited
  std::string output;   // stdout and stderr, interleaved as written
  double seconds = 0;   // wall time
};

// Runs `args` (args[0] is the program) with stdin from /dev/null; SIGKILL after
// `deadline_s` seconds.
RunOutput run_kindling(const std::vector<std::string>& args, double deadline_s);

// True when /dev/kvm opens read-write; otherwise `why` says why not.
bool kvm_available(std::string& why);

// The seconds of kindling's "guest boot-timer: user space reached after X s" line, if any.
std::optional<double> boot_timer_seconds(const std::string& output);

// Whole-file read; nullopt when it cannot be opened.
std::optional<std::string> read_file(const std::string& path);

}  // namespace kindling::smoke
