#include "devices/serial.h"

#include <linux/serial_reg.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"

namespace kindling::devices {
namespace {

// IIR bits 7:6 read as 11 when the FIFOs are enabled (a 16550A, not a 16550).
constexpr uint8_t kIirFifoEnabled = 0xC0;
// IER bits a 16550A implements; the upper four read as zero (Linux's probe checks this).
constexpr uint8_t kIerMask = UART_IER_MSI | UART_IER_RLSI | UART_IER_THRI | UART_IER_RDI;
// MCR bits a 16550A implements.
constexpr uint8_t kMcrMask =
    UART_MCR_LOOP | UART_MCR_OUT2 | UART_MCR_OUT1 | UART_MCR_RTS | UART_MCR_DTR;
// With no modem attached the lines look like a connected null-modem cable.
constexpr uint8_t kMsrIdleLines = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;

// Writes all of `bytes` to `fd`, waiting briefly when the fd is non-blocking and full. Output
// that cannot be written is dropped: the console must never stop the VM.
void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 100) > 0) continue;
    }
    KLOG_DEBUG_RATELIMITED("serial: dropping %zu output bytes (errno %d)", bytes.size(), errno);
    return;
  }
}

}  // namespace

Serial::Serial(std::function<void()> raise_irq, int output_fd)
    : raise_irq_(std::move(raise_irq)), output_fd_(output_fd) {}

Serial::~Serial() {
  flush();
}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  bool raise = false;
  {
    std::lock_guard lock(mu_);
    uint8_t before = pending_sources();
    for (size_t i = 0; i < data.size(); ++i) data[i] = read_register(offset + i);
    raise = (pending_sources() & ~before) != 0;
  }
  if (raise && raise_irq_) raise_irq_();
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  bool raise = false;
  {
    std::lock_guard lock(mu_);
    uint8_t before = pending_sources();
    for (size_t i = 0; i < data.size(); ++i) write_register(offset + i, data[i]);
    raise = (pending_sources() & ~before) != 0;
  }
  if (raise && raise_irq_) raise_irq_();
}

size_t Serial::receive(std::span<const uint8_t> bytes) {
  size_t accepted = 0;
  bool raise = false;
  {
    std::lock_guard lock(mu_);
    // In loopback the receiver is wired to the transmitter, not to the host.
    if (mcr_ & UART_MCR_LOOP) return 0;
    // Host input waits until the guest listens (receive interrupt on): Linux's 8250 driver
    // clears the FIFO when it opens the port, and turns the interrupt off to throttle or on
    // close, so bytes offered earlier would be lost (e.g. piped input during boot).
    if (!(ier_ & UART_IER_RDI)) return 0;
    uint8_t before = pending_sources();
    accepted = std::min(bytes.size(), kRxCapacity - rx_.size());
    rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
    raise = (pending_sources() & ~before) != 0;
  }
  if (raise && raise_irq_) raise_irq_();
  return accepted;
}

void Serial::flush() {
  std::lock_guard lock(mu_);
  flush_locked();
}

void Serial::flush_locked() {
  if (!tx_.empty() && output_fd_ >= 0) write_all(output_fd_, tx_);
  tx_.clear();
}

// GUEST: `reg` and every written value come from the guest; each register is a plain byte and
// unknown bits are masked, so no value can reach outside this object's state.
uint8_t Serial::read_register(uint64_t reg) {
  const bool dlab = lcr_ & UART_LCR_DLAB;
  switch (reg) {
    case UART_RX:
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      {
        uint8_t byte = rx_.front();
        rx_.pop_front();
        return byte;
      }
    case UART_IER:
      return dlab ? dlm_ : ier_;
    case UART_IIR: {
      uint8_t value = iir();
      // Reading IIR while it reports THR-empty acknowledges that interrupt (16550 data sheet);
      // Linux's THRE re-assertion test depends on it.
      if ((value & UART_IIR_ID) == UART_IIR_THRI) thr_pending_ = false;
      return value;
    }
    case UART_LCR:
      return lcr_;
    case UART_MCR:
      return mcr_;
    case UART_LSR: {
      uint8_t value = lsr();
      overrun_ = false;
      return value;
    }
    case UART_MSR: {
      uint8_t value = msr_lines() | msr_delta_;
      msr_delta_ = 0;
      return value;
    }
    case UART_SCR:
      return scr_;
    default:
      return 0xFF;
  }
}

void Serial::write_register(uint64_t reg, uint8_t value) {
  const bool dlab = lcr_ & UART_LCR_DLAB;
  switch (reg) {
    case UART_TX:
      if (dlab) {
        dll_ = value;
      } else {
        transmit(value);
      }
      return;
    case UART_IER:
      if (dlab) {
        dlm_ = value;
      } else {
        write_ier(value);
      }
      return;
    case UART_FCR:  // write-only, at this offset whatever DLAB says
      write_fcr(value);
      return;
    case UART_LCR:
      lcr_ = value;
      return;
    case UART_MCR:
      write_mcr(value);
      return;
    case UART_SCR:
      scr_ = value;
      return;
    default:  // LSR and MSR are read-only
      return;
  }
}

void Serial::write_ier(uint8_t value) {
  value &= kIerMask;
  // Enabling the THR-empty interrupt while THR is empty (always, here) raises it at once:
  // Linux starts transmission by setting ETBEI and waiting for that interrupt.
  if ((value & UART_IER_THRI) && !(ier_ & UART_IER_THRI)) thr_pending_ = true;
  ier_ = value;
  // Linux writes IER at the end of every console write and when its transmit queue runs dry:
  // a natural point to hand a prompt without a newline to the host.
  flush_locked();
}

void Serial::write_fcr(uint8_t value) {
  // Changing the FIFO enable bit clears both FIFOs (16550 data sheet).
  if ((value ^ fcr_) & UART_FCR_ENABLE_FIFO) rx_.clear();
  if (value & UART_FCR_CLEAR_RCVR) rx_.clear();
  fcr_ = value & (UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_MASK);
}

void Serial::write_mcr(uint8_t value) {
  uint8_t old_lines = msr_lines();
  mcr_ = value & kMcrMask;
  uint8_t new_lines = msr_lines();
  uint8_t changed = old_lines ^ new_lines;
  if (changed & UART_MSR_CTS) msr_delta_ |= UART_MSR_DCTS;
  if (changed & UART_MSR_DSR) msr_delta_ |= UART_MSR_DDSR;
  if (changed & UART_MSR_DCD) msr_delta_ |= UART_MSR_DDCD;
  // Ring indicator reports only its trailing (1 -> 0) edge.
  if ((old_lines & UART_MSR_RI) && !(new_lines & UART_MSR_RI)) msr_delta_ |= UART_MSR_TERI;
}

void Serial::transmit(uint8_t byte) {
  if (mcr_ & UART_MCR_LOOP) {
    push_rx(byte);
  } else {
    tx_.push_back(static_cast<char>(byte));
    if (byte == '\n' || tx_.size() >= kTxBufferSize) flush_locked();
  }
  // The byte left THR at once: THR is empty again and the interrupt re-arms.
  thr_pending_ = true;
}

void Serial::push_rx(uint8_t byte) {
  if (rx_.size() >= kRxCapacity) {
    overrun_ = true;
    return;
  }
  rx_.push_back(byte);
}

uint8_t Serial::pending_sources() const {
  uint8_t s = 0;
  if (overrun_ && (ier_ & UART_IER_RLSI)) s |= kRls;
  if (!rx_.empty() && (ier_ & UART_IER_RDI)) s |= kRda;
  if (thr_pending_ && (ier_ & UART_IER_THRI)) s |= kThre;
  if (msr_delta_ != 0 && (ier_ & UART_IER_MSI)) s |= kMsi;
  return s;
}

uint8_t Serial::iir() const {
  uint8_t fifo = (fcr_ & UART_FCR_ENABLE_FIFO) ? kIirFifoEnabled : 0;
  uint8_t s = pending_sources();
  // Highest priority first: line status, received data, THR empty, modem status.
  if (s & kRls) return fifo | UART_IIR_RLSI;
  if (s & kRda) return fifo | UART_IIR_RDI;
  if (s & kThre) return fifo | UART_IIR_THRI;
  if (s & kMsi) return fifo | UART_IIR_MSI;
  return fifo | UART_IIR_NO_INT;
}

uint8_t Serial::lsr() const {
  uint8_t value = UART_LSR_THRE | UART_LSR_TEMT;
  if (!rx_.empty()) value |= UART_LSR_DR;
  if (overrun_) value |= UART_LSR_OE;
  return value;
}

uint8_t Serial::msr_lines() const {
  if (!(mcr_ & UART_MCR_LOOP)) return kMsrIdleLines;
  // Loopback wires the modem outputs back to the inputs: RTS->CTS, DTR->DSR, OUT1->RI,
  // OUT2->DCD. Linux's probe writes LOOP|OUT2|RTS and expects CTS|DCD (0x90).
  uint8_t lines = 0;
  if (mcr_ & UART_MCR_RTS) lines |= UART_MSR_CTS;
  if (mcr_ & UART_MCR_DTR) lines |= UART_MSR_DSR;
  if (mcr_ & UART_MCR_OUT1) lines |= UART_MSR_RI;
  if (mcr_ & UART_MCR_OUT2) lines |= UART_MSR_DCD;
  return lines;
}

}  // namespace kindling::devices
