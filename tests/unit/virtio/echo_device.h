// A fake virtio device for transport tests: on its own thread it copies each chain's readable
// bytes into its writable buffers, like a loopback. Optionally slow, to test reset during I/O.
#pragma once

#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "common/event_fd.h"
#include "virtio/virtio_device.h"

namespace kindling::virtio::fake {

// What the test can observe about an EchoDevice after the transport took ownership of it.
struct EchoProbe {
  std::atomic<int> activations{0};
  std::atomic<int> resets{0};
  std::atomic<int> popped{0};     // chains taken off the ring
  std::atomic<int> completed{0};  // chains pushed back
  std::atomic<bool> running{false};
  std::atomic<uint64_t> features{0};
  std::atomic<bool> event_idx{false};
  std::atomic<bool> indirect{false};
  std::atomic<int> delay_ms{0};  // per-chain processing time
  std::atomic<bool> fail_activate{false};
  std::array<uint8_t, 16> config{};  // config space: bytes 0..15, byte 12 writable
};

class EchoDevice : public VirtioDevice {
 public:
  static constexpr uint32_t kType = 42;
  static constexpr uint16_t kQueues = 2;
  static constexpr uint16_t kMaxSize = 16;

  EchoDevice(EchoProbe& probe, uint64_t features) : probe_(probe), features_(features) {}
  ~EchoDevice() override { reset(); }

  uint32_t device_type() const override { return kType; }
  uint64_t device_features() const override { return features_; }
  uint16_t num_queues() const override { return kQueues; }
  uint16_t queue_max_size() const override { return kMaxSize; }

  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < probe_.config.size() ? probe_.config[offset + i] : 0;
    }
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) {
      if (offset + i == 12) probe_.config[12] = data[i];
    }
  }

  Result<void, DeviceErr> activate(const ActivateContext& ctx) override {
    if (probe_.fail_activate) return fail(DeviceError::kActivate, 0, "echo");
    auto stop = EventFd::create();
    if (!stop) return fail(DeviceError::kActivate, 0, "stop eventfd");
    stop_.emplace(std::move(*stop));
    ctx_ = &ctx;
    probe_.features = ctx.features;
    probe_.event_idx = !ctx.queues.empty() && ctx.queues[0].ready() && event_idx_of(ctx);
    probe_.indirect = indirect_of(ctx);
    ++probe_.activations;
    probe_.running = true;
    thread_ = std::thread([this] { run(); });
    return {};
  }

  void reset() override {
    if (thread_.joinable()) {
      (void)stop_->signal();
      thread_.join();
    }
    probe_.running = false;
    ctx_ = nullptr;
    ++probe_.resets;
  }

 private:
  static bool event_idx_of(const ActivateContext& ctx) {
    return (ctx.features >> 29) & 1;  // VIRTIO_RING_F_EVENT_IDX
  }
  static bool indirect_of(const ActivateContext& ctx) {
    return (ctx.features >> 28) & 1;  // VIRTIO_RING_F_INDIRECT_DESC
  }

  void run() {
    std::vector<pollfd> fds;
    for (const auto& n : ctx_->notifies) fds.push_back({n.fd(), POLLIN, 0});
    fds.push_back({stop_->fd(), POLLIN, 0});
    QueueElement elem;
    for (;;) {
      if (poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds.back().revents) return;
      for (size_t i = 0; i + 1 < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        (void)ctx_->notifies[i].consume();
        if (!drain(ctx_->queues[i], elem)) return;
      }
    }
  }

  // Processes everything available; false after a protocol error (the device then idles).
  bool drain(Queue& q, QueueElement& elem) {
    const auto& mem = ctx_->mem;
    if (!q.ready()) return true;
    for (;;) {
      if (!q.disable_notification(mem)) return broken();
      for (;;) {
        auto r = q.pop(mem, elem);
        if (!r) return broken();
        if (!*r) break;
        ++probe_.popped;
        if (probe_.delay_ms > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(probe_.delay_ms.load()));
        }
        uint32_t len = copy(elem);
        if (!q.push(mem, elem.head, len)) return broken();
        ++probe_.completed;
      }
      auto again = q.enable_notification(mem);
      if (!again) return broken();
      if (!*again) break;
    }
    auto irq = q.needs_interrupt(mem);
    if (!irq) return broken();
    if (*irq) ctx_->interrupt.signal_used();
    return true;
  }

  static uint32_t copy(const QueueElement& e) {
    std::vector<uint8_t> bytes;
    for (const auto& v : e.out_iov) {
      auto* p = static_cast<uint8_t*>(v.iov_base);
      bytes.insert(bytes.end(), p, p + v.iov_len);
    }
    size_t at = 0;
    for (const auto& v : e.in_iov) {
      size_t n = std::min(v.iov_len, bytes.size() - at);
      std::memcpy(v.iov_base, bytes.data() + at, n);
      at += n;
    }
    return static_cast<uint32_t>(at);
  }

  bool broken() {
    ctx_->interrupt.mark_needs_reset();
    return false;
  }

  EchoProbe& probe_;
  uint64_t features_;
  const ActivateContext* ctx_ = nullptr;
  std::optional<EventFd> stop_;
  std::thread thread_;
};

}  // namespace kindling::virtio::fake
