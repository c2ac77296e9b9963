#include "devices/console_input.h"

#include <poll.h>
#include <termios.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <system_error>

#include "common/log.h"
#include "common/seccomp/seccomp.h"

namespace kindling::devices {
namespace {

// The saved terminal state lives in static storage because a signal handler must be able to
// restore it without touching any object: the one place this folder keeps process state.
// `g_saved_fd` is published (release) after `g_saved` is written; restore claims it once.
termios g_saved{};
std::atomic<int> g_saved_fd{-1};

// Bytes read from the host per wake-up.
constexpr size_t kReadChunk = 256;
// While the guest's FIFO is full, retry this often (ms) instead of reading more.
constexpr int kRetryMs = 10;

}  // namespace

const char* to_string(ConsoleError e) {
  switch (e) {
    case ConsoleError::kEventFd:
      return "cannot create the console stop eventfd";
    case ConsoleError::kThread:
      return "cannot start the console input thread";
    case ConsoleError::kTerminal:
      return "cannot put the terminal in raw mode";
  }
  return "console error";
}

void ConsoleInput::restore_terminal() noexcept {
  int fd = g_saved_fd.exchange(-1, std::memory_order_acq_rel);
  // tcsetattr is async-signal-safe (POSIX.1-2008, signal-safety(7)).
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_saved);
}

Result<std::unique_ptr<ConsoleInput>, ConsoleErr> ConsoleInput::start(Serial& serial, int input_fd,
                                                                      bool confine) {
  auto stop = EventFd::create();
  if (!stop) return fail(ConsoleError::kEventFd, stop.error().sys_errno, "console");
  std::unique_ptr<ConsoleInput> console(new ConsoleInput(serial, input_fd, std::move(*stop)));

  const bool tty = input_fd >= 0 && ::isatty(input_fd);
  const pid_t foreground = tty ? ::tcgetpgrp(input_fd) : -1;
  if (foreground >= 0 && foreground != ::getpgrp()) {
    // A background job that reads or reconfigures its controlling terminal is stopped by
    // SIGTTIN/SIGTTOU: leave the terminal alone and take no input.
    KLOG_INFO("console: kindling runs in the background; guest console input is off");
    console->input_fd_ = -1;
  } else if (tty && g_saved_fd.load() < 0) {
    termios raw{};
    if (::tcgetattr(input_fd, &raw) != 0) {
      return fail_errno(ConsoleError::kTerminal, "console");
    }
    g_saved = raw;
    g_saved_fd.store(input_fd, std::memory_order_release);
    static std::once_flag atexit_once;
    std::call_once(atexit_once, [] { std::atexit(&ConsoleInput::restore_terminal); });
    // cfmakeraw without its output part: the host's own log lines still get CR-LF, and ISIG
    // stays on so Ctrl-C reaches kindling.
    tcflag_t oflag = raw.c_oflag;
    tcflag_t lflag_isig = raw.c_lflag & ISIG;
    ::cfmakeraw(&raw);
    raw.c_oflag = oflag;
    raw.c_lflag |= lflag_isig;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (::tcsetattr(input_fd, TCSANOW, &raw) != 0) {
      int saved_errno = errno;
      restore_terminal();
      return fail(ConsoleError::kTerminal, saved_errno, "console");
    }
    console->raw_mode_ = true;
  }

  try {
    console->thread_ = std::thread([c = console.get(), confine] {
      if (confine) {
        // Fails closed: no filter, no input.
        auto ok = seccomp::install(seccomp::ThreadKind::kConsole, "console");
        if (!ok) {
          KLOG_ERROR("console input disabled: %s", ok.error().message().c_str());
          return;
        }
      }
      c->run();
    });
  } catch (const std::system_error& e) {
    // The destructor restores the terminal.
    return fail(ConsoleError::kThread, e.code().value(), "console");
  }
  return console;
}

ConsoleInput::ConsoleInput(Serial& serial, int input_fd, EventFd stop)
    : serial_(serial), input_fd_(input_fd), stop_(std::move(stop)) {}

ConsoleInput::~ConsoleInput() {
  if (thread_.joinable()) {
    (void)stop_.signal();
    thread_.join();
  }
  if (raw_mode_) restore_terminal();
}

void ConsoleInput::run() {
  uint8_t buf[kReadChunk];
  size_t have = 0;  // bytes read from the host that the guest has not taken yet
  size_t off = 0;
  bool input_open = input_fd_ >= 0;
  for (;;) {
    pollfd fds[2] = {{stop_.fd(), POLLIN, 0}, {input_fd_, POLLIN, 0}};
    // Only wait for input when there is room to take it; otherwise retry the guest soon.
    const bool want_input = input_open && have == 0;
    int timeout = have > 0 ? kRetryMs : -1;
    int n = ::poll(fds, want_input ? 2 : 1, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      KLOG_WARN("console: poll failed (errno %d); console input disabled", errno);
      return;
    }
    if (fds[0].revents != 0) return;

    if (want_input && fds[1].revents != 0) {
      ssize_t r = ::read(input_fd_, buf, sizeof(buf));
      if (r > 0) {
        have = static_cast<size_t>(r);
        off = 0;
      } else if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
        continue;
      } else {
        // EOF, a hang-up or an unusable fd: stop reading, keep waiting for the stop signal.
        KLOG_DEBUG("console: input closed");
        input_open = false;
      }
    }
    if (have > 0) {
      size_t taken = serial_.receive(std::span<const uint8_t>(buf + off, have));
      off += taken;
      have -= taken;
    }
  }
}

}  // namespace kindling::devices
