#include "devices/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/ports.h"
#include "tests/support/log_capture.h"

namespace kindling::devices {
namespace {

constexpr uint8_t kObf = 0x01;
constexpr uint8_t kIbf = 0x02;
constexpr uint8_t kAuxData = 0x20;

class I8042Test : public ::testing::Test {
 protected:
  uint8_t status() { return in(kI8042CommandOffset); }
  uint8_t data() { return in(kI8042DataOffset); }
  uint8_t in(uint64_t off) {
    uint8_t v = 0;
    dev_.read(off, std::span<uint8_t>(&v, 1));
    return v;
  }
  void command(uint8_t c) { dev_.write(kI8042CommandOffset, std::span<const uint8_t>(&c, 1)); }
  void send(uint8_t d) { dev_.write(kI8042DataOffset, std::span<const uint8_t>(&d, 1)); }
  // What Linux's i8042_command() does for a command with one reply byte.
  uint8_t query(uint8_t c) {
    EXPECT_FALSE(status() & kIbf);
    command(c);
    EXPECT_TRUE(status() & kObf);
    return data();
  }

  int resets_ = 0;
  int irqs_ = 0;
  I8042 dev_{[this] { ++resets_; }, [this] { ++irqs_; }};
};

TEST_F(I8042Test, ResetCommandPulsesTheResetLine) {
  // Linux reboot=k: wait for IBF clear, write 0xFE to 0x64.
  EXPECT_FALSE(status() & kIbf);
  command(0xFE);
  EXPECT_EQ(resets_, 1);
}

TEST_F(I8042Test, OtherPulsesOnlyResetWhenLineZeroIsPulsed) {
  command(0xFF);  // pulse nothing
  command(0xFD);
  EXPECT_EQ(resets_, 0);
  command(0xF0);  // pulses every line, reset included
  EXPECT_EQ(resets_, 1);
}

TEST_F(I8042Test, LinuxProbeSequence) {
  // i8042_flush: nothing pending.
  EXPECT_FALSE(status() & kObf);
  EXPECT_NE(status(), 0xFF);
  // Self test.
  EXPECT_EQ(query(0xAA), 0x55);
  EXPECT_FALSE(status() & kObf);
  // Read the command byte, write it back with keyboard disabled, read it again.
  uint8_t ctr = query(0x20);
  command(0x60);
  send(ctr | 0x10);
  EXPECT_EQ(query(0x20), ctr | 0x10);
  EXPECT_EQ(dev_.command_byte(), ctr | 0x10);
  // Interface tests.
  EXPECT_EQ(query(0xAB), 0x00);
  EXPECT_EQ(query(0xA9), 0x00);
  // Aux enable/disable toggles CTR bit 5.
  command(0xA7);
  EXPECT_TRUE(query(0x20) & 0x20);
  command(0xA8);
  EXPECT_FALSE(query(0x20) & 0x20);
  // Keyboard enable clears bit 4.
  command(0xAE);
  EXPECT_FALSE(query(0x20) & 0x10);
  EXPECT_EQ(resets_, 0);
  EXPECT_EQ(irqs_, 0);  // controller replies are polled, not interrupts
}

TEST_F(I8042Test, AuxLoopbackIsMarkedAsAuxData) {
  command(0xD3);
  send(0x5A);
  EXPECT_EQ(status() & (kObf | kAuxData), kObf | kAuxData);
  EXPECT_EQ(data(), 0x5A);
  EXPECT_FALSE(status() & kObf);
}

TEST_F(I8042Test, KeyboardCommandsAreAckedWithAnInterrupt) {
  send(0xFF);  // keyboard reset
  EXPECT_EQ(data(), 0xFA);
  EXPECT_EQ(data(), 0xAA);
  EXPECT_GE(irqs_, 1);
  send(0xF2);  // identify
  EXPECT_EQ(data(), 0xFA);
  EXPECT_EQ(data(), 0xAB);
  EXPECT_EQ(data(), 0x83);
  send(0xEE);
  EXPECT_EQ(data(), 0xEE);
}

// A driver reads one byte per edge interrupt (Linux's i8042_interrupt): each byte of a
// multi-byte reply needs its own interrupt, raised as it reaches the output buffer.
TEST_F(I8042Test, EachByteOfAReplyRaisesItsOwnInterrupt) {
  send(0xF2);  // identify: FA AB 83
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(data(), 0xFA);
  EXPECT_EQ(irqs_, 2);
  EXPECT_EQ(data(), 0xAB);
  EXPECT_EQ(irqs_, 3);
  EXPECT_EQ(data(), 0x83);
  EXPECT_EQ(irqs_, 3);  // nothing left: no interrupt
  EXPECT_EQ(data(), 0x00);
  EXPECT_EQ(irqs_, 3);
}

TEST_F(I8042Test, NoKeyboardInterruptWhenDisabledInCommandByte) {
  command(0x60);
  send(0x00);
  send(0xF4);
  EXPECT_EQ(data(), 0xFA);
  EXPECT_EQ(irqs_, 0);
}

TEST_F(I8042Test, OutputPortWriteWithResetBitClearResets) {
  uint8_t outp = query(0xD0);
  EXPECT_TRUE(outp & 0x01);
  command(0xD1);
  send(outp);  // reset line left high: nothing
  EXPECT_EQ(resets_, 0);
  command(0xD1);
  send(outp & 0xFE);
  EXPECT_EQ(resets_, 1);
}

TEST_F(I8042Test, CommandDataBitTracksTheLastWrite) {
  command(0xAD);
  EXPECT_TRUE(status() & 0x08);
  send(0xF4);
  EXPECT_FALSE(status() & 0x08);
}

TEST_F(I8042Test, UnreadControllerRepliesAreBounded) {
  // A guest that never reads the data port cannot grow the output queue: 16 bytes at most,
  // the newest kept.
  for (int i = 0; i < 100; ++i) command(0xAA);  // self test, reply 0x55
  command(0xD0);                                // read output port: the newest reply
  int bytes = 0;
  uint8_t last = 0;
  while ((status() & kObf) && bytes < 1000) {
    last = data();
    ++bytes;
  }
  EXPECT_EQ(bytes, 16);
  EXPECT_NE(last, 0x55);
  EXPECT_EQ(irqs_, 0);  // controller replies raise no interrupt
}

TEST_F(I8042Test, GapPortsAreInert) {
  EXPECT_EQ(in(1), 0xFF);
  EXPECT_EQ(in(3), 0xFF);
  uint8_t v = 0xFE;
  dev_.write(2, std::span<const uint8_t>(&v, 1));
  EXPECT_EQ(resets_, 0);
}

// A guest flooding the controller with unknown commands gets a few debug lines, not one each.
TEST_F(I8042Test, UnknownCommandFloodIsRateLimited) {
  size_t lines = test::count_log_lines(log::Level::kDebug, "i8042: ignoring command", [&] {
    for (int i = 0; i < 1000; ++i) command(0x01);
  });
  EXPECT_GT(lines, 0u);
  EXPECT_LE(lines, log::RateLimit::kDefaultBurst);
}

// SendCtrlAltDel: the keys arrive as keyboard data, one interrupt per byte, in the scan code
// set the command byte implies (Linux keeps translation on: set 1).
TEST_F(I8042Test, CtrlAltDelIsTypedInSetOneWhenTranslating) {
  dev_.press_ctrl_alt_del();
  EXPECT_EQ(irqs_, 1);
  std::vector<uint8_t> got;
  while (status() & kObf) got.push_back(data());
  EXPECT_EQ(got, (std::vector<uint8_t>{0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D}));
  EXPECT_EQ(irqs_, 8);
}

TEST_F(I8042Test, CtrlAltDelIsTypedInSetTwoWithoutTranslation) {
  command(0x60);  // write the command byte: keyboard interrupt, no translation
  send(0x01);
  dev_.press_ctrl_alt_del();
  std::vector<uint8_t> got;
  while (status() & kObf) got.push_back(data());
  EXPECT_EQ(got, (std::vector<uint8_t>{0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0, 0x71, 0xF0, 0x11, 0xF0,
                                       0x14}));
}

}  // namespace
}  // namespace kindling::devices
