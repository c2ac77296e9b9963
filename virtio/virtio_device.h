// What a virtio device implements; the transport (virtio-mmio) owns the registers.
#pragma once

#include <cstdint>
#include <span>

#include "common/event_fd.h"
#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "virtio/queue.h"

namespace kindling::virtio {

// Interrupts and error reporting a device asks of its transport. Thread-safe.
class DeviceInterrupt {
 public:
  virtual ~DeviceInterrupt() = default;
  // Sets InterruptStatus bit 0 (used buffer) and signals the interrupt eventfd.
  virtual void signal_used() = 0;
  // Sets InterruptStatus bit 1 (configuration change) and signals the interrupt eventfd.
  virtual void signal_config() = 0;
  // The driver broke the protocol: sets DEVICE_NEEDS_RESET and raises a config interrupt.
  virtual void mark_needs_reset() = 0;
};

// What a device gets when the driver sets DRIVER_OK.
struct ActivateContext {
  const memory::GuestMemory& mem;
  std::span<Queue> queues;            // one per device queue; is_valid() if ready(), a queue
                                      // the driver left unused has ready() == false
  std::span<const EventFd> notifies;  // notifies[i] is signalled when queue i is kicked
  DeviceInterrupt& interrupt;
  uint64_t features;  // negotiated feature bits
};

enum class DeviceError { kActivate, kBadQueue };
const char* to_string(DeviceError e);
using DeviceErr = Error<DeviceError>;

// A virtio device behind a transport. It never sees register offsets.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  // VIRTIO_ID_* from <linux/virtio_ids.h>.
  virtual uint32_t device_type() const = 0;
  // Feature bits the device offers (transport bits like VERSION_1 included).
  virtual uint64_t device_features() const = 0;
  // Number of virtqueues and the largest size of each.
  virtual uint16_t num_queues() const = 0;
  virtual uint16_t queue_max_size() const = 0;
  // The driver chose `size` entries for queue `index` (QueueNum); before activate().
  // GUEST: `size` is the driver's, not yet validated.
  virtual void queue_size_selected(uint16_t index, uint16_t size) {
    (void)index;
    (void)size;
  }
  // Device-specific configuration space (offset relative to 0x100 of the MMIO window).
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Starts processing (e.g. the device's I/O thread). The context outlives the activation.
  virtual Result<void, DeviceErr> activate(const ActivateContext& ctx) = 0;
  // Stops processing and waits for in-flight I/O to finish; afterwards the device touches no
  // guest memory until activated again. Safe to call when not active.
  virtual void reset() = 0;
};

}  // namespace kindling::virtio
