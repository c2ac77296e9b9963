// The interface every port-I/O or MMIO device implements; the VMM's buses dispatch to it.
#pragma once

#include <cstdint>
#include <span>

namespace kindling {

// A device on the PIO or MMIO bus. Offsets are relative to the base the device was registered
// at; data.size() is the access width (1, 2, 4 or 8). Called from vCPU threads; a device shared
// with other threads does its own locking.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // Fills `data` with what a guest read of `data.size()` bytes at `offset` returns.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  // Handles a guest write of `data` at `offset`.
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

}  // namespace kindling
