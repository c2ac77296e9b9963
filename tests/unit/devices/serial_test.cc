#include "devices/serial.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/serial_reg.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace kindling::devices {
namespace {

// A Serial whose output goes to a pipe and whose interrupt pulses are counted.
class SerialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    read_end_.reset(fds[0]);
    write_end_.reset(fds[1]);
    serial_ = std::make_unique<Serial>([this] { ++irqs_; }, write_end_.get());
  }

  uint8_t in(uint8_t reg) {
    uint8_t v = 0;
    serial_->read(reg, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out(uint8_t reg, uint8_t v) { serial_->write(reg, std::span<const uint8_t>(&v, 1)); }
  void out_str(const std::string& s) {
    for (char c : s) out(UART_TX, static_cast<uint8_t>(c));
  }
  std::string host_output() {
    std::string s;
    char buf[256];
    ssize_t n;
    while ((n = ::read(read_end_.get(), buf, sizeof(buf))) > 0) s.append(buf, n);
    return s;
  }
  size_t feed(const std::string& s) {
    return serial_->receive(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  UniqueFd read_end_, write_end_;
  std::atomic<int> irqs_{0};
  std::unique_ptr<Serial> serial_;
};

TEST_F(SerialTest, OutputIsFlushedAtNewlineAndOnFlush) {
  out_str("hello");
  EXPECT_EQ(host_output(), "");
  out_str(" world\n");
  EXPECT_EQ(host_output(), "hello world\n");
  out_str("prompt# ");
  serial_->flush();
  EXPECT_EQ(host_output(), "prompt# ");
}

TEST_F(SerialTest, IerWriteFlushesAPendingPrompt) {
  out_str("/ # ");
  out(UART_IER, 0);
  EXPECT_EQ(host_output(), "/ # ");
}

TEST_F(SerialTest, DestructorFlushes) {
  out_str("bye");
  serial_.reset();
  EXPECT_EQ(host_output(), "bye");
}

TEST_F(SerialTest, DlabSwitchesOffsetsZeroAndOneToTheDivisor) {
  out(UART_LCR, UART_LCR_DLAB | 0x03);
  EXPECT_EQ(in(UART_LCR), UART_LCR_DLAB | 0x03);
  out(UART_DLL, 0x01);
  out(UART_DLM, 0x02);
  EXPECT_EQ(in(UART_DLL), 0x01);
  EXPECT_EQ(in(UART_DLM), 0x02);
  out(UART_LCR, 0x03);
  EXPECT_EQ(in(UART_IER), 0x00);  // IER untouched by the DLM write
  serial_->flush();
  EXPECT_EQ(host_output(), "");  // the DLL write was not transmitted
  out(UART_LCR, UART_LCR_DLAB);
  EXPECT_EQ(in(UART_DLL), 0x01);
  EXPECT_EQ(in(UART_DLM), 0x02);
}

TEST_F(SerialTest, WideAccessTouchesConsecutiveRegisters) {
  out(UART_LCR, UART_LCR_DLAB);
  const uint8_t divisor[2] = {0x34, 0x12};
  serial_->write(UART_DLL, divisor);
  uint8_t back[2] = {};
  serial_->read(UART_DLL, back);
  EXPECT_EQ(back[0], 0x34);
  EXPECT_EQ(back[1], 0x12);
}

TEST_F(SerialTest, IerKeepsOnlyTheFourDefinedBits) {
  out(UART_IER, 0xFF);
  EXPECT_EQ(in(UART_IER), 0x0F);
}

TEST_F(SerialTest, ScratchRegisterHoldsAByte) {
  out(UART_SCR, 0xA5);
  EXPECT_EQ(in(UART_SCR), 0xA5);
  out(UART_SCR, 0x5A);
  EXPECT_EQ(in(UART_SCR), 0x5A);
}

TEST_F(SerialTest, IdleLineStatusAndModemStatus) {
  EXPECT_EQ(in(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
  EXPECT_EQ(in(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
}

TEST_F(SerialTest, EnablingThreInterruptRaisesItAtOnce) {
  out(UART_IER, UART_IER_THRI);
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(in(UART_IIR), UART_IIR_THRI);
  // Reading IIR acknowledged it.
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
  // Linux's THRE re-assertion test: disable, enable again, it must come back.
  out(UART_IER, 0);
  out(UART_IER, UART_IER_THRI);
  EXPECT_EQ(irqs_, 2);
  EXPECT_EQ(in(UART_IIR), UART_IIR_THRI);
}

TEST_F(SerialTest, WritingThrRearmsTheThreInterrupt) {
  out(UART_IER, UART_IER_THRI);
  ASSERT_EQ(in(UART_IIR), UART_IIR_THRI);
  int before = irqs_;
  out(UART_TX, 'x');
  EXPECT_EQ(irqs_, before + 1);
  EXPECT_EQ(in(UART_IIR), UART_IIR_THRI);
  // A second byte while the interrupt is still pending is no new edge.
  out(UART_TX, 'y');
  out(UART_TX, 'z');
  EXPECT_EQ(irqs_, before + 2);
}

TEST_F(SerialTest, NoInterruptWhenThreIsNotEnabled) {
  out_str("abc");
  EXPECT_EQ(irqs_, 0);
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
}

TEST_F(SerialTest, ReceivedDataRaisesRdaAndIsReadInOrder) {
  out(UART_IER, UART_IER_RDI);
  EXPECT_EQ(irqs_, 0);
  EXPECT_EQ(feed("ok"), 2u);
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(in(UART_IIR), UART_IIR_RDI);
  EXPECT_TRUE(in(UART_LSR)&UART_LSR_DR);
  EXPECT_EQ(in(UART_RX), 'o');
  EXPECT_EQ(feed("!"), 1u);
  EXPECT_EQ(irqs_, 1);  // still pending: no new edge
  EXPECT_EQ(in(UART_RX), 'k');
  EXPECT_EQ(in(UART_RX), '!');
  EXPECT_FALSE(in(UART_LSR)&UART_LSR_DR);
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
  EXPECT_EQ(in(UART_RX), 0);  // empty RBR reads as zero
}

TEST_F(SerialTest, HostInputWaitsUntilTheGuestEnablesReceiveInterrupts) {
  EXPECT_EQ(feed("q"), 0u);  // nobody listens yet: the caller keeps the byte
  EXPECT_EQ(in(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
  out(UART_IER, UART_IER_RDI);
  EXPECT_EQ(feed("q"), 1u);
  EXPECT_EQ(irqs_, 1);
  // Turning the interrupt off (Linux throttling or closing the port) keeps what is queued
  // readable by polling and holds back new input.
  out(UART_IER, 0);
  EXPECT_EQ(feed("r"), 0u);
  EXPECT_EQ(in(UART_LSR), UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT);
  EXPECT_EQ(in(UART_RX), 'q');
}

TEST_F(SerialTest, ReceiveAcceptsOnlyWhatFits) {
  out(UART_IER, UART_IER_RDI);
  std::string big(Serial::kRxCapacity + 10, 'a');
  EXPECT_EQ(feed(big), Serial::kRxCapacity);
  EXPECT_EQ(feed("b"), 0u);
  in(UART_RX);
  EXPECT_EQ(feed("bc"), 1u);
}

TEST_F(SerialTest, RdaHasPriorityOverThre) {
  out(UART_IER, UART_IER_RDI | UART_IER_THRI);
  feed("z");
  EXPECT_EQ(in(UART_IIR), UART_IIR_RDI);
  EXPECT_EQ(in(UART_IIR), UART_IIR_RDI);  // reading IIR does not clear RDA
  in(UART_RX);
  EXPECT_EQ(in(UART_IIR), UART_IIR_THRI);
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
}

TEST_F(SerialTest, OverrunRaisesLineStatusWithTopPriority) {
  out(UART_MCR, UART_MCR_LOOP);
  out(UART_IER, UART_IER_RLSI | UART_IER_RDI | UART_IER_THRI);
  for (size_t i = 0; i <= Serial::kRxCapacity; ++i) out(UART_TX, 'x');
  EXPECT_EQ(in(UART_IIR), UART_IIR_RLSI);
  EXPECT_TRUE(in(UART_LSR)&UART_LSR_OE);
  // LSR read cleared the overrun: received data is next.
  EXPECT_FALSE(in(UART_LSR)&UART_LSR_OE);
  EXPECT_EQ(in(UART_IIR), UART_IIR_RDI);
}

TEST_F(SerialTest, FifoControlSetsIirBitsAndClearsReceiver) {
  out(UART_FCR, UART_FCR_ENABLE_FIFO);
  EXPECT_EQ(in(UART_IIR), 0xC0 | UART_IIR_NO_INT);
  out(UART_IER, UART_IER_RDI);
  EXPECT_EQ(feed("abc"), 3u);
  out(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
  EXPECT_FALSE(in(UART_LSR)&UART_LSR_DR);
  feed("abc");
  out(UART_FCR, 0);  // disabling the FIFO clears it too
  EXPECT_FALSE(in(UART_LSR)&UART_LSR_DR);
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
}

TEST_F(SerialTest, LoopbackRoutesTransmitToReceiveAndMirrorsModemLines) {
  out(UART_MCR, UART_MCR_LOOP);
  out_str("lo\n");
  serial_->flush();
  EXPECT_EQ(host_output(), "");
  EXPECT_EQ(in(UART_RX), 'l');
  EXPECT_EQ(in(UART_RX), 'o');
  EXPECT_EQ(in(UART_RX), '\n');
  out(UART_IER, UART_IER_RDI);
  EXPECT_EQ(feed("host"), 0u);  // host input waits while in loopback
  out(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
  EXPECT_EQ(in(UART_MSR)&0xF0, UART_MSR_DSR | UART_MSR_RI);
  out(UART_MCR, 0);
  EXPECT_EQ(in(UART_MCR), 0);
}

TEST_F(SerialTest, ModemStatusDeltasAndInterrupt) {
  out(UART_MCR, UART_MCR_LOOP);
  in(UART_MSR);  // clear the deltas of entering loopback
  out(UART_IER, UART_IER_MSI);
  out(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT1);
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(in(UART_IIR), UART_IIR_MSI);
  out(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS);  // RI falls: trailing edge
  EXPECT_EQ(in(UART_MSR), UART_MSR_CTS | UART_MSR_DCTS | UART_MSR_TERI);
  EXPECT_EQ(in(UART_MSR), UART_MSR_CTS);  // deltas clear on read
  EXPECT_EQ(in(UART_IIR), UART_IIR_NO_INT);
}

// The register sequence of Linux's 8250 autoconfig() for a port at 0x3F8; a 16550A must come
// out of it.
TEST_F(SerialTest, LinuxAutoconfigDetectsA16550A) {
  // IER read-back test.
  out(UART_IER, 0);
  EXPECT_EQ(in(UART_IER)&0x0F, 0);
  out(UART_IER, 0x0F);
  EXPECT_EQ(in(UART_IER)&0x0F, 0x0F);
  out(UART_IER, 0);
  // Loopback test: LOOP | OUT2 | RTS must read back CTS | DCD.
  uint8_t save_mcr = in(UART_MCR);
  out(UART_MCR, UART_MCR_LOOP | 0x0A);
  EXPECT_EQ(in(UART_MSR)&0xF0, 0x90);
  out(UART_MCR, save_mcr);
  // EFR zeroing through LCR=0xBF, then FIFO enable: IIR bits 7:6 == 3 means 16550A.
  out(UART_LCR, 0xBF);
  out(UART_FCR, 0);
  out(UART_LCR, 0);
  out(UART_FCR, UART_FCR_ENABLE_FIFO);
  EXPECT_EQ(in(UART_IIR) >> 6, 3);
  // No EFR: offset 2 with LCR=0x80 and LCR=0xBF must not read as zero.
  out(UART_LCR, 0x80);
  EXPECT_NE(in(UART_IIR), 0);
  out(UART_LCR, 0xBF);
  EXPECT_NE(in(UART_IIR), 0);
  out(UART_LCR, 0);
  // Not a TI16750: IIR bit 5 stays clear with the 64-byte FIFO bit set.
  out(UART_FCR, UART_FCR_ENABLE_FIFO | 0x20);
  EXPECT_EQ(in(UART_IIR) >> 5, 6);
  // Not an XScale: IER bit 6 does not stick.
  out(UART_IER, 0x40);
  EXPECT_EQ(in(UART_IER)&0x40, 0);
  // Startup's LSR safety check.
  EXPECT_NE(in(UART_LSR), 0xFF);
}

}  // namespace
}  // namespace kindling::devices
