#include "tests/support/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace kindling::test {
namespace {

std::string slurp(const std::string& path) {
  return read_file(path).value_or(std::string());
}

// In the child: stdin from /dev/null, stdout (and stderr) to files, then exec.
[[noreturn]] void exec_child(const std::vector<std::string>& argv, const std::string& out_path,
                             const std::string& err_path, bool merge_output) {
  int in = ::open("/dev/null", O_RDONLY);
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // One open file for both streams when merged: they share the offset, so they interleave.
  int err = merge_output ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0 || err < 0) ::_exit(127);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(err, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

}  // namespace

const std::string& child_temp_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/kindling-it-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    return std::string(d != nullptr ? d : "/tmp");
  }();
  return dir;
}

ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& opts) {
  // Atomic: tests may run children from several threads at once.
  static std::atomic<int> counter{0};
  const std::string base = child_temp_dir() + "/child" + std::to_string(++counter);
  const std::string out_path = base + ".out", err_path = base + ".err";
  ChildResult res;
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) exec_child(argv, out_path, err_path, opts.merge_output);
  if (pid < 0) return res;
  std::optional<std::chrono::steady_clock::time_point> signalled;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    const auto now = std::chrono::steady_clock::now();
    if (opts.send_signal && !signalled && now - start >= opts.signal_after) {
      ::kill(pid, *opts.send_signal);
      signalled = now;
    }
    if (now - start >= opts.deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      res.out = slurp(out_path);
      if (!opts.merge_output) res.err = slurp(err_path);
      return res;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto end = std::chrono::steady_clock::now();
  res.seconds = std::chrono::duration<double>(end - start).count();
  if (signalled) res.signal_to_exit = std::chrono::duration<double>(end - *signalled).count();
  if (WIFEXITED(status)) {
    res.exited = true;
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.term_signal = WTERMSIG(status);
  }
  res.out = slurp(out_path);
  if (!opts.merge_output) res.err = slurp(err_path);
  return res;
}

bool kvm_usable(std::string& why) {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    why = std::string("/dev/kvm cannot be opened: ") + std::strerror(errno);
    return false;
  }
  ::close(fd);
  return true;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace kindling::test
