#include "devices/console_input.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/serial_reg.h>
#include <pty.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/unique_fd.h"

namespace kindling::devices {
namespace {

using namespace std::chrono_literals;

// Reads what the guest would see through RBR, waiting up to 5 s for `count` bytes.
std::string drain(Serial& serial, size_t count) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.size() < count && std::chrono::steady_clock::now() < deadline) {
    uint8_t lsr = 0;
    serial.read(UART_LSR, std::span<uint8_t>(&lsr, 1));
    if (lsr & UART_LSR_DR) {
      uint8_t b = 0;
      serial.read(UART_RX, std::span<uint8_t>(&b, 1));
      got.push_back(static_cast<char>(b));
    } else {
      std::this_thread::sleep_for(1ms);
    }
  }
  return got;
}

// Turns on the receive interrupt, as a guest driver does when it opens the port.
void listen(Serial& serial) {
  uint8_t ier = UART_IER_RDI;
  serial.write(UART_IER, std::span<const uint8_t>(&ier, 1));
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
  }
  UniqueFd r, w;
};

TEST(ConsoleInput, FeedsPipeInputToTheUart) {
  Serial serial({}, -1);
  Pipe p;
  auto console = ConsoleInput::start(serial, p.r.get());
  ASSERT_TRUE(console) << console.error().message();
  EXPECT_FALSE((*console)->raw_mode());
  listen(serial);
  ASSERT_EQ(::write(p.w.get(), "ls\r", 3), 3);
  EXPECT_EQ(drain(serial, 3), "ls\r");
}

// Input typed (or piped) while the guest is still booting is held, not lost, until the guest's
// driver turns the receive interrupt on.
TEST(ConsoleInput, InputBeforeTheGuestListensIsHeldNotLost) {
  Serial serial({}, -1);
  Pipe p;
  auto console = ConsoleInput::start(serial, p.r.get());
  ASSERT_TRUE(console);
  ASSERT_EQ(::write(p.w.get(), "poweroff\n", 9), 9);
  std::this_thread::sleep_for(100ms);
  uint8_t lsr = 0;
  serial.read(UART_LSR, std::span<uint8_t>(&lsr, 1));
  EXPECT_FALSE(lsr & UART_LSR_DR);
  listen(serial);
  EXPECT_EQ(drain(serial, 9), "poweroff\n");
}

TEST(ConsoleInput, MoreInputThanTheFifoHoldsArrivesWhole) {
  Serial serial({}, -1);
  Pipe p;
  auto console = ConsoleInput::start(serial, p.r.get());
  ASSERT_TRUE(console);
  listen(serial);
  std::string text;
  for (size_t i = 0; i < 3 * Serial::kRxCapacity; ++i)
    text.push_back(static_cast<char>('a' + i % 26));
  std::thread writer(
      [&] { ASSERT_EQ(::write(p.w.get(), text.data(), text.size()), ssize_t(text.size())); });
  EXPECT_EQ(drain(serial, text.size()), text);
  writer.join();
}

// EOF (a closed pipe, /dev/null) must leave the thread asleep, not spinning.
TEST(ConsoleInput, EndOfInputDoesNotSpin) {
  Serial serial({}, -1);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  auto console = ConsoleInput::start(serial, devnull.get());
  ASSERT_TRUE(console);
  std::this_thread::sleep_for(20ms);
  double before = cpu_seconds();
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(cpu_seconds() - before, 0.05);
  auto t0 = std::chrono::steady_clock::now();
  console->reset();  // stops promptly
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(ConsoleInput, ClosedFdDoesNotSpin) {
  Serial serial({}, -1);
  Pipe p;
  int fd = p.r.get();
  p.r.reset();  // the fd number is now invalid (POLLNVAL)
  auto console = ConsoleInput::start(serial, fd);
  ASSERT_TRUE(console);
  std::this_thread::sleep_for(20ms);
  double before = cpu_seconds();
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(cpu_seconds() - before, 0.05);
}

TEST(ConsoleInput, TerminalGoesRawAndIsRestored) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  UniqueFd m(master), s(slave);
  termios before{};
  ASSERT_EQ(::tcgetattr(s.get(), &before), 0);
  ASSERT_TRUE(before.c_lflag & ICANON);
  Serial serial({}, -1);
  listen(serial);
  {
    auto console = ConsoleInput::start(serial, s.get());
    ASSERT_TRUE(console);
    EXPECT_TRUE((*console)->raw_mode());
    termios raw{};
    ASSERT_EQ(::tcgetattr(s.get(), &raw), 0);
    EXPECT_FALSE(raw.c_lflag & ICANON);
    EXPECT_FALSE(raw.c_lflag & ECHO);
    EXPECT_TRUE(raw.c_lflag & ISIG);         // Ctrl-C still reaches kindling
    EXPECT_EQ(raw.c_oflag, before.c_oflag);  // output processing untouched
    // Raw: a byte with no newline is delivered.
    ASSERT_EQ(::write(m.get(), "x", 1), 1);
    EXPECT_EQ(drain(serial, 1), "x");
  }
  termios after{};
  ASSERT_EQ(::tcgetattr(s.get(), &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
}

TEST(ConsoleInput, StaticRestoreHookRestoresAndIsIdempotent) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  UniqueFd m(master), s(slave);
  termios before{};
  ASSERT_EQ(::tcgetattr(s.get(), &before), 0);
  Serial serial({}, -1);
  auto console = ConsoleInput::start(serial, s.get());
  ASSERT_TRUE(console);
  ConsoleInput::restore_terminal();  // what a signal handler would do
  termios after{};
  ASSERT_EQ(::tcgetattr(s.get(), &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  ConsoleInput::restore_terminal();
  console->reset();
  ASSERT_EQ(::tcgetattr(s.get(), &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
}

}  // namespace
}  // namespace kindling::devices
