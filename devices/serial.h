// A 16550A UART (COM1): the guest's console. Output goes to a host fd, input comes from
// ConsoleInput through receive().
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "common/bus_device.h"

namespace kindling::devices {

// The UART as Linux's 8250 driver sees it: every register it touches (RBR/THR, IER, IIR, FCR,
// LCR, MCR, LSR, MSR, SCR, DLL/DLM), the loopback mode its probe uses, and the interrupt
// conditions it relies on. Transmission is instantaneous (THR is always empty again after a
// write). Registered at 0x3F8 with length 8. Thread-safe: vCPU threads access the registers
// while the console-input thread calls receive().
class Serial : public BusDevice {
 public:
  // Host bytes waiting for the guest beyond this are not accepted (receive() returns less).
  static constexpr size_t kRxCapacity = 1024;
  // Output is written to the fd at a newline, at this size, or when flushed.
  static constexpr size_t kTxBufferSize = 4096;

  // raise_irq pulses the UART's interrupt line (the VMM's irqfd on GSI 4); it is called,
  // without the device lock held, whenever an enabled interrupt condition becomes pending.
  // output_fd receives the guest's output (not owned; < 0 discards it).
  Serial(std::function<void()> raise_irq, int output_fd);
  // Flushes buffered output.
  ~Serial() override;

  Serial(const Serial&) = delete;
  Serial& operator=(const Serial&) = delete;

  // Register reads; each byte of a wider access reads the next register.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // Register writes; each byte of a wider access writes the next register.
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues host input for the guest; returns how many bytes were accepted (fewer than given
  // when the input FIFO is full; 0 in loopback mode or while the guest has the receive
  // interrupt off, so the caller holds the bytes and retries). Callable from any thread.
  size_t receive(std::span<const uint8_t> bytes);

  // Writes buffered guest output to the output fd now (call when the guest stops).
  void flush();

 private:
  // Interrupt sources as a bit set, so that "newly pending" is a mask operation.
  enum Source : uint8_t { kRls = 1, kRda = 2, kThre = 4, kMsi = 8 };

  uint8_t read_register(uint64_t reg);
  void write_register(uint64_t reg, uint8_t value);
  void write_ier(uint8_t value);
  void write_fcr(uint8_t value);
  void write_mcr(uint8_t value);
  void transmit(uint8_t byte);
  void push_rx(uint8_t byte);
  uint8_t pending_sources() const;
  uint8_t iir() const;
  uint8_t lsr() const;
  uint8_t msr_lines() const;
  void flush_locked();

  std::function<void()> raise_irq_;
  int output_fd_;

  mutable std::mutex mu_;
  std::deque<uint8_t> rx_;
  std::string tx_;
  uint8_t ier_ = 0;
  uint8_t fcr_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t msr_delta_ = 0;
  uint8_t scr_ = 0;
  uint8_t dll_ = 0x0C;  // 9600 baud, what a PC BIOS leaves behind
  uint8_t dlm_ = 0;
  bool overrun_ = false;
  bool thr_pending_ = false;  // THR-empty interrupt latched until IIR read or THR write
};

}  // namespace kindling::devices
