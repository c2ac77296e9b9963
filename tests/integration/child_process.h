// Runs the kindling binary as a child process for integration tests.
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
  std::string out;            // stdout
  std::string err;            // stderr
  double seconds = 0;         // wall time from start to exit
  double signal_to_exit = 0;  // seconds from sending `send_signal` to exit
};

// Options for one run.
struct ChildOptions {
  std::chrono::milliseconds deadline{30000};  // SIGKILL after this
  // Sent `signal_after` after start, if set.
  std::optional<int> send_signal;
  std::chrono::milliseconds signal_after{500};
};

// Runs `argv` (argv[0] is the program path) with stdin from /dev/null.
ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& opts = {});

// True when /dev/kvm can be opened read-write; otherwise `why` says what failed.
bool kvm_usable(std::string& why);

// Writes a minimal ELF64 "kernel": `code` loaded and entered at 1 MiB. Returns its path.
std::string write_tiny_kernel(const std::string& name, const std::vector<unsigned char>& code);

}  // namespace kindling::test
