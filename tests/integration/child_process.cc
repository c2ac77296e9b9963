#include "tests/integration/child_process.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace kindling::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string temp_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/kindling-it-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    return std::string(d != nullptr ? d : "/tmp");
  }();
  return dir;
}

}  // namespace

ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& opts) {
  // Atomic: tests may run children from several threads at once.
  static std::atomic<int> counter{0};
  const std::string base = temp_dir() + "/child" + std::to_string(++counter);
  const std::string out_path = base + ".out", err_path = base + ".err";
  ChildResult res;
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
      res.out = slurp(out_path);
      res.err = slurp(err_path);
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
  res.err = slurp(err_path);
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

std::string write_tiny_kernel(const std::string& name, const std::vector<unsigned char>& code) {
  constexpr uint64_t kLoad = 0x100000, kOffset = 0x1000;
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = kLoad;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_flags = PF_R | PF_X;
  ph.p_offset = kOffset;
  ph.p_vaddr = ph.p_paddr = kLoad;
  ph.p_filesz = ph.p_memsz = code.size();
  ph.p_align = 0x1000;
  std::string image(kOffset + code.size(), '\0');
  std::memcpy(image.data(), &eh, sizeof(eh));
  std::memcpy(image.data() + sizeof(eh), &ph, sizeof(ph));
  std::memcpy(image.data() + kOffset, code.data(), code.size());
  const std::string path = temp_dir() + "/" + name + ".elf";
  std::ofstream(path, std::ios::binary) << image;
  return path;
}

}  // namespace kindling::test
