// Host console input: raw-mode terminal handling and the thread that feeds the UART.
#pragma once

#include <unistd.h>

#include <memory>
#include <thread>

#include "common/event_fd.h"
#include "common/result.h"
#include "devices/serial.h"

namespace kindling::devices {

enum class ConsoleError { kEventFd, kThread, kTerminal };
const char* to_string(ConsoleError e);
using ConsoleErr = Error<ConsoleError>;

// Reads the host's input (stdin by default) and feeds it to a Serial. If the input is a
// terminal it is put in raw mode (no echo, no line editing, byte at a time) for the life of
// this object; output processing and signal keys (Ctrl-C, Ctrl-\) keep working, so Ctrl-C
// stops kindling rather than the guest's foreground program. The thread poll()s the input
// and a stop eventfd; it stops reading at EOF (a closed stdin or /dev/null costs nothing).
// Started as a background job of its terminal, it leaves the terminal alone and reads nothing.
class ConsoleInput {
 public:
  // Starts feeding `serial` (which must outlive this object) from `input_fd` (not owned).
  // With `confine`, the thread confines itself to its seccomp allow-list before it reads.
  static Result<std::unique_ptr<ConsoleInput>, ConsoleErr> start(Serial& serial,
                                                                 int input_fd = STDIN_FILENO,
                                                                 bool confine = false);
  // Stops and joins the thread, then restores the terminal.
  ~ConsoleInput();

  ConsoleInput(const ConsoleInput&) = delete;
  ConsoleInput& operator=(const ConsoleInput&) = delete;

  // Puts back the terminal settings saved when raw mode was entered, if any. Async-signal-safe
  // and idempotent: call it from a signal handler or atexit (start() registers it with atexit).
  static void restore_terminal() noexcept;

  // True while this object holds the terminal in raw mode.
  bool raw_mode() const { return raw_mode_; }

 private:
  ConsoleInput(Serial& serial, int input_fd, EventFd stop);
  void run();

  Serial& serial_;
  int input_fd_;
  EventFd stop_;
  bool raw_mode_ = false;
  std::thread thread_;
};

}  // namespace kindling::devices
