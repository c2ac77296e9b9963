// The CMOS RTC (MC146818) at ports 0x70/0x71: the host's UTC time, read-only.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "common/bus_device.h"

namespace kindling::devices {

// Register at kCmosBase (0x70) with length 2: offset 0 selects a register (bit 7, the NMI
// mask, is ignored), offset 1 reads or writes it. The clock registers always show the host's
// current UTC time (BCD and 24-hour unless the guest switches status B to binary or 12-hour);
// status A never shows update-in-progress, status D reports valid RAM and time, and the time
// is not settable (writes to the clock registers are dropped). The other 114 bytes are plain
// storage that starts zeroed.
class Cmos : public BusDevice {
 public:
  // clock returns the current time (tests pass a fixed one); empty means time(nullptr).
  explicit Cmos(std::function<std::time_t()> clock = {});

  // Reads the index port (0xFF, it is write-only) or the selected register.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // Selects a register (offset 0) or writes it (offset 1).
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  uint8_t read_register(uint8_t index) const;
  uint8_t encode(int value) const;

  std::function<std::time_t()> clock_;
  mutable std::mutex mu_;
  uint8_t index_ = 0;
  std::array<uint8_t, 128> ram_{};
};

}  // namespace kindling::devices
