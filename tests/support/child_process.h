// Runs a program (the kindling binary) as a child process for the integration and smoke tests,
// with a deadline and an optional signal, and collects what it printed.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace kindling::test {

// How a child ended and what it printed.
struct ChildResult {
  bool exited = false;        // false: it had to be killed at the deadline
  int exit_code = -1;         // valid when exited
  int term_signal = 0;        // the signal that ended it, if any
  std::string out;            // stdout (with ChildOptions::merge_output: stdout and stderr)
  std::string err;            // stderr (empty with ChildOptions::merge_output)
  double seconds = 0;         // wall time from start to exit (or to the kill)
  double signal_to_exit = 0;  // seconds from sending `send_signal` to exit
};

// Options for one run.
struct ChildOptions {
  std::chrono::milliseconds deadline{30000};  // SIGKILL after this
  // Sent `signal_after` after start, if set.
  std::optional<int> send_signal;
  std::chrono::milliseconds signal_after{500};
  // stdout and stderr into `out`, interleaved as written.
  bool merge_output = false;
};

// Runs `argv` (argv[0] is the program path) with stdin from /dev/null.
ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& opts = {});

// True when /dev/kvm can be opened read-write; otherwise `why` says what failed.
bool kvm_usable(std::string& why);

// Whole-file read; nullopt when it cannot be opened.
std::optional<std::string> read_file(const std::string& path);

// A directory of this test process's own (made once, under /tmp) for children's output and
// generated files.
const std::string& child_temp_dir();

}  // namespace kindling::test
