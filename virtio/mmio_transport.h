// The virtio-mmio transport, version 2 (virtio 1.x, section 4.2): the register file a guest
// driver programs, in front of one VirtioDevice.
//
// The transport owns the virtqueues, one notify eventfd per queue and one interrupt eventfd. The
// VMM registers queue i's eventfd as a KVM ioeventfd (base + VIRTIO_MMIO_QUEUE_NOTIFY, datamatch
// i) and the interrupt eventfd as an irqfd on the device's GSI; this file never talks to KVM.
//
// Threads: read()/write() come from vCPU threads and are serialized by a mutex. The device's I/O
// thread calls the DeviceInterrupt methods, which touch only atomics and eventfds (never the
// mutex), so a reset that waits for the I/O thread cannot deadlock with it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "common/bus_device.h"
#include "common/event_fd.h"
#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "virtio/queue.h"
#include "virtio/virtio_device.h"

namespace kindling::virtio {

enum class TransportError {
  kEventFd,    // creating a notify or interrupt eventfd failed
  kBadDevice,  // the device reports no queues, queue size 0 or > 32768, or lacks VERSION_1
};
const char* to_string(TransportError e);
using TransportErr = Error<TransportError>;

// "virt" read as a little-endian 32-bit value (MagicValue, spec 4.2.2).
inline constexpr uint32_t kMmioMagic = 0x74726976;
// Modern (non-legacy) virtio-mmio.
inline constexpr uint32_t kMmioVersion = 2;
// VendorID reported to the driver: "KNDL" read as a little-endian 32-bit value.
inline constexpr uint32_t kMmioVendorId = 0x4C444E4B;
// Size of one virtio-mmio window (registers + config space).
inline constexpr uint64_t kMmioWindowSize = 0x1000;

// A virtio-mmio device: register file, feature negotiation, status machine, queues.
class MmioTransport final : public BusDevice, public DeviceInterrupt {
 public:
  using Err = TransportErr;

  // Wraps `dev`; `mem` must outlive the transport.
  static Result<std::unique_ptr<MmioTransport>, Err> create(const memory::GuestMemory& mem,
                                                            std::unique_ptr<VirtioDevice> dev);
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;
  // Resets the device (drains its in-flight I/O) before anything is freed.
  ~MmioTransport() override;

  // BusDevice: a guest access at `offset` inside the window.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // DeviceInterrupt (called from the device's I/O thread; lock-free).
  void signal_used() override;
  void signal_config() override;
  void mark_needs_reset() override;

  // notifies[i] is signalled when the driver kicks queue i (register as ioeventfds).
  std::span<const EventFd> queue_notifies() const { return notifies_; }
  // Signalled whenever an InterruptStatus bit is raised (register as an irqfd).
  const EventFd& interrupt_eventfd() const { return interrupt_; }
  // Resets the device (waits for in-flight I/O); the VMM calls it before exiting.
  void shutdown();

  // The Status register as the driver reads it.
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  // The InterruptStatus register as the driver reads it.
  uint32_t interrupt_status() const { return interrupt_status_.load(std::memory_order_acquire); }
  // True between a successful DRIVER_OK activation and the next reset.
  bool activated() const;

 private:
  MmioTransport(const memory::GuestMemory& mem, std::unique_ptr<VirtioDevice> dev,
                std::vector<EventFd> notifies, EventFd interrupt);

  // Logs a register access of a size or alignment the transport ignores (rate-limited).
  void log_bad_access(const char* what, size_t size, uint64_t offset);
  uint32_t read_register(uint64_t offset) const;
  void write_register(uint64_t offset, uint32_t value);
  void write_queue_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  bool features_acceptable() const;
  void activate();
  // Stops the device (it waits for its in-flight I/O) and drops the activation context.
  void deactivate();
  void reset_locked();
  void raise(uint32_t bits);
  Queue* selected_queue();
  const Queue* selected_queue() const;

  const memory::GuestMemory& mem_;
  std::unique_ptr<VirtioDevice> device_;
  const uint64_t device_features_;
  std::vector<Queue> queues_;
  const std::vector<EventFd> notifies_;
  const EventFd interrupt_;

  mutable std::mutex mu_;  // guards the register state below and activation/reset
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  std::optional<ActivateContext> context_;  // alive while the device is activated

  std::atomic<uint32_t> status_{0};            // NEEDS_RESET may be set by the I/O thread
  std::atomic<uint32_t> interrupt_status_{0};  // VIRTIO_MMIO_INT_* bits
  std::atomic<uint32_t> config_generation_{0};
};

}  // namespace kindling::virtio
