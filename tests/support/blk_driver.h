// An in-process virtio-blk driver: plays the guest against a BlockDevice through a real split
// ring in test guest memory, the way Linux's virtio_blk + virtio_ring do (publish, kick when the
// device asks, interrupts through an eventfd, EVENT_IDX). Used by the device tests, the soak and
// the benchmark. Requests are named by a driver tag (0..queue size-1); each tag owns a header,
// a status byte and a data area of `max_data` bytes in guest RAM.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/event_fd.h"
#include "common/memory/guest_memory.h"
#include "tests/support/mock_queue.h"
#include "virtio/blk_device.h"
#include "virtio/queue.h"

namespace kindling::test {

// The transport's side of interrupts, for tests: counts and signals an eventfd.
class FakeInterrupt : public virtio::DeviceInterrupt {
 public:
  FakeInterrupt() : used_fd(*EventFd::create()) {}
  void signal_used() override {
    used.fetch_add(1, std::memory_order_relaxed);
    (void)used_fd.signal();
  }
  void signal_config() override { config.fetch_add(1, std::memory_order_relaxed); }
  void mark_needs_reset() override {
    needs_reset.store(true);
    signal_config();
    (void)used_fd.signal();  // wake a waiting driver so that it notices
  }

  EventFd used_fd;
  std::atomic<uint64_t> used{0};
  std::atomic<uint64_t> config{0};
  std::atomic<bool> needs_reset{false};
};

// One finished request as the driver sees it.
struct BlkDone {
  uint16_t tag = 0;
  uint8_t status = 0xFF;
  uint32_t used_len = 0;
};

class BlkDriver {
 public:
  struct Options {
    uint16_t queue_size = 256;
    bool event_idx = true;           // negotiate VIRTIO_RING_F_EVENT_IDX
    bool indirect = false;           // offer chains through indirect tables
    uint32_t max_data = 128 * 1024;  // data bytes per tag
  };

  explicit BlkDriver(const Options& options);
  ~BlkDriver();

  // Negotiates features, configures the queue and activates `dev`. Returns false on failure.
  bool activate(virtio::BlockDevice& dev);
  // Resets the device (joins its I/O thread).
  void reset();

  // Guest address and host view of tag's data area.
  memory::GuestAddress data_addr(uint16_t tag) const;
  std::span<uint8_t> data(uint16_t tag) const;

  // Offers request `tag` (type VIRTIO_BLK_T_*, `len` data bytes split into `segments`
  // descriptors; writable for IN/GET_ID), its data `data_offset` bytes into the tag's area.
  // Not visible until kick(). False when the ring is full or the data does not fit the area.
  bool add(uint16_t tag, uint32_t type, uint64_t sector, uint32_t len, unsigned segments = 1,
           uint32_t data_offset = 0);
  // Offers a raw chain (for malformed requests); maps its head to `tag`.
  bool add_raw(uint16_t tag, std::span<const ChainBuffer> bufs);
  // Publishes what was added and notifies the device if it asked for it.
  void kick();
  // Moves finished requests into `out` (no waiting); returns how many.
  size_t collect(std::vector<BlkDone>& out);
  // Collects, waiting up to `timeout_ms` for an interrupt when nothing is there yet.
  size_t wait(std::vector<BlkDone>& out, int timeout_ms = 5000);
  // Waits until `n` requests have finished (or timeout); returns them.
  std::vector<BlkDone> wait_for(size_t n, int timeout_ms = 10000);

  // Header area of a tag (for writing raw requests) and the status byte.
  memory::GuestAddress header_addr(uint16_t tag) const;
  memory::GuestAddress status_addr(uint16_t tag) const;

  const memory::GuestMemory& mem() const { return mem_; }
  MockQueue& mock() { return *mock_; }
  virtio::Queue& queue() { return queue_; }
  FakeInterrupt& irq() { return irq_; }
  const EventFd& notify() const { return notify_; }
  uint64_t kicks() const { return kicks_; }
  uint16_t queue_size() const { return opts_.queue_size; }

 private:
  Options opts_;
  memory::GuestMemory mem_;
  std::unique_ptr<MockQueue> mock_;
  virtio::Queue queue_;
  EventFd notify_;
  FakeInterrupt irq_;
  virtio::BlockDevice* dev_ = nullptr;
  uint64_t ring_base_ = 0, indirect_base_ = 0, hdr_base_ = 0, data_base_ = 0;
  std::vector<uint16_t> head_tag_;
  std::vector<ChainBuffer> chain_;  // scratch
  uint64_t kicks_ = 0;
};

}  // namespace kindling::test
