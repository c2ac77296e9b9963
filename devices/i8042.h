// The i8042 keyboard controller, as far as Linux's probe and `reboot=k` need it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "common/bus_device.h"

namespace kindling::devices {

// An i8042 with no keys and no mouse. Register ONE instance at kI8042Base (0x60) with length
// kI8042Len (5): offset 0 is the data port (0x60), offset 4 the status/command port (0x64);
// offsets 1..3 read 0xFF and ignore writes (port 0x61 is KVM's in-kernel PIT speaker port and
// never reaches this device). Controller commands: 0x20 / 0x60 (read / write the command
// byte), 0xA7 / 0xA8 (disable / enable aux), 0xA9 / 0xAB (interface tests -> 0x00), 0xAA
// (self-test -> 0x55), 0xAD / 0xAE (disable / enable keyboard), 0xC0 (input port), 0xD0 / 0xD1
// (output port; clearing bit 0 resets), 0xD2 / 0xD3 (echo a byte as keyboard / aux data),
// 0xD4 (byte for the absent mouse: dropped), 0xF0..0xFF (pulse output lines; 0xFE and any
// pulse of line 0 reset). Data bytes sent to the keyboard are ACKed (0xFA) like an AT keyboard
// (reset 0xFF -> FA AA, identify 0xF2 -> FA AB 83, echo 0xEE -> EE).
class I8042 : public BusDevice {
 public:
  // on_reset runs when the guest pulses the reset line (the VM should stop with status 0).
  // raise_kbd_irq, if set, pulses ISA IRQ 1 when keyboard data becomes readable and the
  // command byte enables keyboard interrupts.
  explicit I8042(std::function<void()> on_reset, std::function<void()> raise_kbd_irq = {});

  // Reads the data port (offset 0) or the status register (offset 4).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // Writes a data byte (offset 0) or a controller command (offset 4).
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Types Ctrl-Alt-Del on the keyboard (presses, then releases), as Firecracker's
  // SendCtrlAltDel does: scan code set 1 while the command byte asks the controller to
  // translate (what Linux leaves set), set 2 otherwise. Raises IRQ 1 when enabled.
  void press_ctrl_alt_del();

  // The controller command byte (CTR), for tests and diagnostics.
  uint8_t command_byte() const;

 private:
  uint8_t status_locked() const;
  uint8_t read_data_locked();
  // Returns true when the reset line was pulsed.
  bool command_locked(uint8_t cmd);
  // Returns true when the reset line was pulsed.
  bool data_locked(uint8_t value);
  // Queues a byte for the data port (the oldest is dropped beyond kOutputLimit).
  void push_reply(uint8_t byte, bool aux, bool kbd_irq = false);
  // push_reply() plus the keyboard interrupt when the controller enables it.
  void push_output(uint8_t byte, bool aux);

  std::function<void()> on_reset_;
  std::function<void()> raise_kbd_irq_;

  mutable std::mutex mu_;
  struct OutByte {
    uint8_t value;
    bool aux;
    bool kbd_irq;  // keyboard data (interrupt-driven), not a polled controller reply
  };
  std::deque<OutByte> out_;
  uint8_t ctr_;
  uint8_t output_port_;
  uint8_t pending_cmd_ = 0;  // a command waiting for its data byte, or 0
  bool last_was_command_ = false;
  bool irq_wanted_ = false;
};

}  // namespace kindling::devices
