// The port-I/O and MMIO buses: address ranges mapped to BusDevices, dispatched from vCPU exits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/bus_device.h"
#include "common/result.h"

namespace kindling::vmm {

// Why a range could not be registered.
enum class BusError { kEmptyRange, kOverflow, kOverlap, kNullDevice };
// A short description of the error class.
const char* to_string(BusError e);
// The bus's error type.
using BusErr = Error<BusError>;

// A set of disjoint [base, base+len) ranges, each served by a device. Devices are registered
// before vCPUs start; afterwards the bus is only read, so dispatch takes no lock. A device may
// be registered at several ranges; it sees offsets relative to the range's base.
class Bus {
 public:
  // `name` ("pio", "mmio") is used in logs and error contexts.
  explicit Bus(std::string name) : name_(std::move(name)) {}
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Registers `device` for [base, base+len); fails on an empty, wrapping or overlapping range.
  Result<void, BusErr> insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device);

  // GUEST: dispatches a guest read; an access no device covers reads as all ones and is
  // counted. Returns false for such an unclaimed access.
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  // GUEST: dispatches a guest write; an unclaimed write is dropped and counted.
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

  // Accesses that no device claimed.
  uint64_t unclaimed_accesses() const { return unclaimed_.load(std::memory_order_relaxed); }

 private:
  struct Range {
    uint64_t base;
    uint64_t len;
    std::shared_ptr<BusDevice> device;
  };
  // The range holding all of [addr, addr+size), or nullptr.
  const Range* find(uint64_t addr, uint64_t size) const;
  void count_unclaimed(const char* kind, uint64_t addr, size_t size) const;

  std::string name_;
  std::vector<Range> ranges_;  // sorted by base, disjoint
  mutable std::atomic<uint64_t> unclaimed_{0};
};

}  // namespace kindling::vmm
