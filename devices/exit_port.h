// kindling's guest-to-host signalling ports: the exit port and the boot timer.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>

#include "common/bus_device.h"

namespace kindling::devices {

// Port 0xF4: a write of byte N asks kindling to stop the VM and exit with status N. Wider
// writes use their low byte. Reads return 0.
class ExitPort : public BusDevice {
 public:
  // on_exit receives the byte the guest wrote.
  explicit ExitPort(std::function<void(uint8_t)> on_exit);

  // Reads as zero.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // GUEST: passes the written byte to on_exit.
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::function<void(uint8_t)> on_exit_;
};

// Port 0x3F0: the guest writes any value (Firecracker's guests write 123) when user space
// starts; the first write prints "guest boot-timer: user space reached after X.XXX s" on
// stderr (always, whatever the log level) with the time since kindling started.
class BootTimer : public BusDevice {
 public:
  BootTimer() = default;

  // Reads as zero.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // Records and prints the time of the first write; later writes are ignored.
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Seconds since kindling started at the guest's first write, or nullopt before it.
  std::optional<double> reported_seconds() const;

 private:
  mutable std::mutex mu_;
  std::optional<double> seconds_;
};

}  // namespace kindling::devices
