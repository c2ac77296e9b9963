#include "devices/i8042.h"

#include "common/log.h"
#include "devices/ports.h"

namespace kindling::devices {
namespace {

// Status register bits (8042 data sheet; Linux drivers/input/serio/i8042.h).
constexpr uint8_t kStatusObf = 0x01;      // output buffer full
constexpr uint8_t kStatusSysFlag = 0x04;  // self-test passed
constexpr uint8_t kStatusCmdData = 0x08;  // last write was to the command port
constexpr uint8_t kStatusKeyLock = 0x10;  // keyboard not inhibited
constexpr uint8_t kStatusAuxData = 0x20;  // output buffer holds aux (mouse) data

// Command byte bits.
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSysFlag = 0x04;
constexpr uint8_t kCtrKbdDisable = 0x10;
constexpr uint8_t kCtrAuxDisable = 0x20;
constexpr uint8_t kCtrXlate = 0x40;

// Output-port bit 0 is the CPU reset line (active low); bit 1 the A20 gate.
constexpr uint8_t kOutPortReset = 0x01;
constexpr uint8_t kOutPortA20 = 0x02;

// Controller commands.
constexpr uint8_t kCmdReadCtr = 0x20;
constexpr uint8_t kCmdWriteCtr = 0x60;
constexpr uint8_t kCmdAuxDisable = 0xA7;
constexpr uint8_t kCmdAuxEnable = 0xA8;
constexpr uint8_t kCmdAuxTest = 0xA9;
constexpr uint8_t kCmdSelfTest = 0xAA;
constexpr uint8_t kCmdKbdTest = 0xAB;
constexpr uint8_t kCmdKbdDisable = 0xAD;
constexpr uint8_t kCmdKbdEnable = 0xAE;
constexpr uint8_t kCmdReadInput = 0xC0;
constexpr uint8_t kCmdReadOutPort = 0xD0;
constexpr uint8_t kCmdWriteOutPort = 0xD1;
constexpr uint8_t kCmdWriteKbdOut = 0xD2;
constexpr uint8_t kCmdWriteAuxOut = 0xD3;
constexpr uint8_t kCmdWriteAux = 0xD4;
constexpr uint8_t kCmdPulseFirst = 0xF0;

constexpr uint8_t kSelfTestOk = 0x55;
constexpr uint8_t kInterfaceOk = 0x00;

// AT keyboard replies.
constexpr uint8_t kKbdAck = 0xFA;
constexpr uint8_t kKbdBatOk = 0xAA;
constexpr uint8_t kKbdEcho = 0xEE;
constexpr uint8_t kKbdReset = 0xFF;
constexpr uint8_t kKbdIdentify = 0xF2;
constexpr uint8_t kKbdIdMf2[2] = {0xAB, 0x83};

// Bytes the guest never reads are not kept forever.
constexpr size_t kOutputLimit = 16;

}  // namespace

I8042::I8042(std::function<void()> on_reset, std::function<void()> raise_kbd_irq)
    : on_reset_(std::move(on_reset)),
      raise_kbd_irq_(std::move(raise_kbd_irq)),
      ctr_(kCtrKbdInt | kCtrSysFlag | kCtrXlate),
      output_port_(kOutPortReset | kOutPortA20) {}

uint8_t I8042::command_byte() const {
  std::lock_guard lock(mu_);
  return ctr_;
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  bool irq = false;
  {
    std::lock_guard lock(mu_);
    uint8_t value = 0xFF;
    if (offset == kI8042DataOffset) {
      value = read_data_locked();
      // As the controller loads the next keyboard byte into the output buffer it raises IRQ 1
      // again: a driver reads one byte per (edge) interrupt, so a multi-byte reply such as
      // FA AB 83 would otherwise stall after its first byte.
      irq = !out_.empty() && out_.front().kbd_irq && (ctr_ & kCtrKbdInt) != 0;
    } else if (offset == kI8042CommandOffset) {
      value = status_locked();
    }
    data[0] = value;
    for (size_t i = 1; i < data.size(); ++i) data[i] = 0xFF;
  }
  if (irq && raise_kbd_irq_) raise_kbd_irq_();
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  bool reset = false;
  bool irq = false;
  {
    std::lock_guard lock(mu_);
    // GUEST: the command or data byte is guest-chosen; unknown commands are ignored.
    if (offset == kI8042DataOffset) {
      reset = data_locked(data[0]);
    } else if (offset == kI8042CommandOffset) {
      reset = command_locked(data[0]);
    }
    irq = irq_wanted_;
    irq_wanted_ = false;
  }
  if (irq && raise_kbd_irq_) raise_kbd_irq_();
  if (reset) {
    KLOG_INFO_RATELIMITED("i8042: guest pulsed the reset line");
    if (on_reset_) on_reset_();
  }
}

void I8042::press_ctrl_alt_del() {
  // Ctrl, Alt, Delete (an E0-prefixed key) down, then up in reverse order.
  static constexpr uint8_t kSet1[] = {0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D};
  static constexpr uint8_t kSet2[] = {0x14, 0x11, 0xE0, 0x71, 0xE0, 0xF0,
                                      0x71, 0xF0, 0x11, 0xF0, 0x14};
  bool irq = false;
  {
    std::lock_guard lock(mu_);
    std::span<const uint8_t> codes =
        (ctr_ & kCtrXlate) ? std::span<const uint8_t>(kSet1) : std::span<const uint8_t>(kSet2);
    for (uint8_t c : codes) push_output(c, false);
    irq = irq_wanted_;
    irq_wanted_ = false;
  }
  if (irq && raise_kbd_irq_) raise_kbd_irq_();
}

uint8_t I8042::status_locked() const {
  uint8_t s = kStatusKeyLock;
  if (ctr_ & kCtrSysFlag) s |= kStatusSysFlag;
  if (last_was_command_) s |= kStatusCmdData;
  if (!out_.empty()) {
    s |= kStatusObf;
    if (out_.front().aux) s |= kStatusAuxData;
  }
  // Input-buffer-full (bit 1) is never set: every write is consumed at once, so Linux's
  // kb_wait() before the reset pulse never waits.
  return s;
}

uint8_t I8042::read_data_locked() {
  if (out_.empty()) return 0;
  uint8_t value = out_.front().value;
  out_.pop_front();
  return value;
}

void I8042::push_reply(uint8_t byte, bool aux, bool kbd_irq) {
  if (out_.size() >= kOutputLimit) out_.pop_front();
  out_.push_back({byte, aux, kbd_irq});
}

void I8042::push_output(uint8_t byte, bool aux) {
  push_reply(byte, aux, !aux);
  if (!aux && (ctr_ & kCtrKbdInt)) irq_wanted_ = true;
}

bool I8042::command_locked(uint8_t cmd) {
  last_was_command_ = true;
  pending_cmd_ = 0;
  switch (cmd) {
    case kCmdReadCtr:
      // Controller replies are not keyboard data: no interrupt (Linux polls for them).
      push_reply(ctr_, false);
      return false;
    case kCmdWriteCtr:
    case kCmdWriteOutPort:
    case kCmdWriteKbdOut:
    case kCmdWriteAuxOut:
    case kCmdWriteAux:
      pending_cmd_ = cmd;
      return false;
    case kCmdAuxDisable:
      ctr_ |= kCtrAuxDisable;
      return false;
    case kCmdAuxEnable:
      ctr_ &= static_cast<uint8_t>(~kCtrAuxDisable);
      return false;
    case kCmdAuxTest:
    case kCmdKbdTest:
      push_reply(kInterfaceOk, false);
      return false;
    case kCmdSelfTest:
      ctr_ |= kCtrSysFlag;
      push_reply(kSelfTestOk, false);
      return false;
    case kCmdKbdDisable:
      ctr_ |= kCtrKbdDisable;
      return false;
    case kCmdKbdEnable:
      ctr_ &= static_cast<uint8_t>(~kCtrKbdDisable);
      return false;
    case kCmdReadInput:
      push_reply(0x00, false);
      return false;
    case kCmdReadOutPort:
      push_reply(output_port_, false);
      return false;
    default:
      break;
  }
  // 0xF0..0xFF pulse the output-port lines whose bits are 0 in the low nibble; line 0 is the
  // CPU reset, so 0xFE is the classic "reset the machine" (Linux `reboot=k`).
  if (cmd >= kCmdPulseFirst) return (cmd & kOutPortReset) == 0;
  KLOG_DEBUG_RATELIMITED("i8042: ignoring command 0x%02x", cmd);
  return false;
}

bool I8042::data_locked(uint8_t value) {
  last_was_command_ = false;
  uint8_t cmd = pending_cmd_;
  pending_cmd_ = 0;
  switch (cmd) {
    case kCmdWriteCtr:
      ctr_ = value;
      return false;
    case kCmdWriteOutPort:
      output_port_ = value;
      return (value & kOutPortReset) == 0;
    case kCmdWriteKbdOut:
      push_output(value, false);
      return false;
    case kCmdWriteAuxOut:
      push_output(value, true);
      return false;
    case kCmdWriteAux:
      return false;  // no mouse: the byte goes nowhere and gets no reply
    default:
      break;
  }
  // A data byte with no command pending goes to the keyboard.
  if (value == kKbdEcho) {
    push_output(kKbdEcho, false);
    return false;
  }
  push_output(kKbdAck, false);
  if (value == kKbdReset) push_output(kKbdBatOk, false);
  if (value == kKbdIdentify) {
    push_output(kKbdIdMf2[0], false);
    push_output(kKbdIdMf2[1], false);
  }
  return false;
}

}  // namespace kindling::devices
