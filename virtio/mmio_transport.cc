#include "virtio/mmio_transport.h"

#include <endian.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>

#include <cstring>

#include "common/log.h"

namespace kindling::virtio {

const char* to_string(TransportError e) {
  switch (e) {
    case TransportError::kEventFd:
      return "cannot create a virtio-mmio eventfd";
    case TransportError::kBadDevice:
      return "device is not usable behind virtio-mmio";
  }
  return "virtio-mmio error";
}

namespace {

constexpr uint64_t kVersion1 = 1ULL << VIRTIO_F_VERSION_1;
constexpr uint32_t kMaxQueueSize = 32768;  // spec 2.7: split rings hold at most 2^15 entries

// Device config: 1/2/4-byte accesses go to `f` as they are, an 8-byte one as two 4-byte halves
// (spec 4.2.2.2 lets drivers use only 32-bit accesses for 64-bit fields); other sizes are
// dropped. `f(config_offset, bytes)`.
template <typename Bytes, typename F>
void config_access(uint64_t offset, Bytes data, F f) {
  const uint64_t at = offset - VIRTIO_MMIO_CONFIG;
  if (data.size() == 1 || data.size() == 2 || data.size() == 4) {
    f(at, data);
  } else if (data.size() == 8) {
    f(at, data.first(4));
    f(at + 4, data.subspan(4, 4));
  }
}

constexpr uint32_t kInitBits =
    VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

uint64_t set_half(uint64_t v, bool high, uint32_t half) {
  return high ? (v & 0xFFFF'FFFFULL) | (uint64_t{half} << 32)
              : (v & ~0xFFFF'FFFFULL) | uint64_t{half};
}

}  // namespace

Result<std::unique_ptr<MmioTransport>, MmioTransport::Err> MmioTransport::create(
    const memory::GuestMemory& mem, std::unique_ptr<VirtioDevice> dev) {
  if (!dev || dev->num_queues() == 0 || dev->queue_max_size() == 0 ||
      dev->queue_max_size() > kMaxQueueSize || (dev->device_features() & kVersion1) == 0) {
    return fail(TransportError::kBadDevice, 0, "virtio-mmio");
  }
  std::vector<EventFd> notifies;
  notifies.reserve(dev->num_queues());
  for (uint16_t i = 0; i < dev->num_queues(); ++i) {
    auto fd = EventFd::create();
    if (!fd) return fail(TransportError::kEventFd, fd.error().sys_errno, "queue notify");
    notifies.push_back(std::move(*fd));
  }
  auto irq = EventFd::create();
  if (!irq) return fail(TransportError::kEventFd, irq.error().sys_errno, "interrupt");
  return std::unique_ptr<MmioTransport>(
      new MmioTransport(mem, std::move(dev), std::move(notifies), std::move(*irq)));
}

MmioTransport::MmioTransport(const memory::GuestMemory& mem, std::unique_ptr<VirtioDevice> dev,
                             std::vector<EventFd> notifies, EventFd interrupt)
    : mem_(mem),
      device_(std::move(dev)),
      device_features_(device_->device_features()),
      notifies_(std::move(notifies)),
      interrupt_(std::move(interrupt)) {
  queues_.reserve(device_->num_queues());
  for (uint16_t i = 0; i < device_->num_queues(); ++i)
    queues_.emplace_back(device_->queue_max_size());
}

MmioTransport::~MmioTransport() {
  shutdown();
}

void MmioTransport::shutdown() {
  std::lock_guard lock(mu_);
  deactivate();
}

bool MmioTransport::activated() const {
  std::lock_guard lock(mu_);
  return context_.has_value();
}

// --- guest accesses ---

void MmioTransport::log_bad_access(const char* what, size_t size, uint64_t offset) {
  // GUEST: any access size at any offset; rate-limited so a guest cannot flood the log.
  KLOG_WARN_RATELIMITED("virtio-mmio: ignoring %zu-byte %s at 0x%llx", size, what,
                        static_cast<unsigned long long>(offset));
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= VIRTIO_MMIO_CONFIG) {
    std::lock_guard lock(mu_);
    config_access(offset, data,
                  [&](uint64_t at, std::span<uint8_t> d) { device_->read_config(at, d); });
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return log_bad_access("read", data.size(), offset);
  uint32_t v;
  {
    std::lock_guard lock(mu_);
    v = htole32(read_register(offset));
  }
  std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= VIRTIO_MMIO_CONFIG) {
    // GUEST: config writes go to the device, which decides what is writable.
    std::lock_guard lock(mu_);
    config_access(offset, data,
                  [&](uint64_t at, std::span<const uint8_t> d) { device_->write_config(at, d); });
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return log_bad_access("write", data.size(), offset);
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  v = le32toh(v);
  if (offset == VIRTIO_MMIO_QUEUE_NOTIFY) {
    // The same doorbell an ioeventfd would ring; no lock needed (the fds never change).
    // GUEST: the queue index is checked.
    if (v < notifies_.size()) {
      (void)notifies_[v].signal();
    } else {
      KLOG_DEBUG_RATELIMITED("virtio-mmio: notify for absent queue %u", v);
    }
    return;
  }
  std::lock_guard lock(mu_);
  write_register(offset, v);
}

// --- registers (mu_ held) ---

const Queue* MmioTransport::selected_queue() const {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}
Queue* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

uint32_t MmioTransport::read_register(uint64_t offset) const {
  switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
      return kMmioMagic;
    case VIRTIO_MMIO_VERSION:
      return kMmioVersion;
    case VIRTIO_MMIO_DEVICE_ID:
      return device_->device_type();
    case VIRTIO_MMIO_VENDOR_ID:
      return kMmioVendorId;
    case VIRTIO_MMIO_DEVICE_FEATURES:
      // Only windows 0 and 1 exist; higher selectors read 0.
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_features_ >> (32 * device_features_sel_));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
      // 0 tells the driver the selected queue does not exist.
      return selected_queue() ? selected_queue()->max_size() : 0;
    case VIRTIO_MMIO_QUEUE_READY:
      return selected_queue() && selected_queue()->ready() ? 1 : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
      return interrupt_status();
    case VIRTIO_MMIO_STATUS:
      return status();
    case VIRTIO_MMIO_CONFIG_GENERATION:
      return config_generation_.load(std::memory_order_acquire);
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
      // No shared memory regions: a length of -1 means "no such region" (spec 4.2.2).
      return 0xFFFF'FFFFu;
    default:
      // Write-only and legacy registers read as 0.
      return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
  // GUEST: every value below is guest-controlled.
  switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
      device_features_sel_ = value;
      return;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
      driver_features_sel_ = value;
      return;
    case VIRTIO_MMIO_DRIVER_FEATURES:
      // Features are fixed once FEATURES_OK is set (spec 3.1.1).
      if ((status() & VIRTIO_CONFIG_S_FEATURES_OK) || driver_features_sel_ > 1) return;
      driver_features_ = set_half(driver_features_, driver_features_sel_ == 1, value);
      return;
    case VIRTIO_MMIO_QUEUE_SEL:
      queue_sel_ = value;
      return;
    case VIRTIO_MMIO_INTERRUPT_ACK:
      interrupt_status_.fetch_and(~value, std::memory_order_acq_rel);
      return;
    case VIRTIO_MMIO_STATUS:
      write_status(value);
      return;
    case VIRTIO_MMIO_QUEUE_NUM:
    case VIRTIO_MMIO_QUEUE_READY:
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
      write_queue_register(offset, value);
      return;
    default:
      // Legacy registers (GuestPageSize, QueueAlign, QueuePFN) and read-only ones.
      KLOG_DEBUG_RATELIMITED("virtio-mmio: ignoring write of 0x%x to 0x%llx", value,
                             static_cast<unsigned long long>(offset));
      return;
  }
}

void MmioTransport::write_queue_register(uint64_t offset, uint32_t value) {
  Queue* q = selected_queue();
  if (offset == VIRTIO_MMIO_QUEUE_READY && value == 0 && q != nullptr && q->ready() &&
      context_.has_value()) {
    // The driver stops using a queue of a running device (spec 4.2.2: it writes 0 and reads
    // the register back). kindling's devices run their queues as one unit, so the device stops
    // as on a reset: it waits for the I/O the kernel still holds (which writes into guest
    // buffers) and does not answer those requests. It stays idle until the driver resets it;
    // the queue reads back 0.
    KLOG_DEBUG_RATELIMITED("virtio-mmio: queue %u stopped by the driver; device idle until reset",
                           queue_sel_);
    deactivate();
    q->set_ready(false);
    return;
  }
  // A queue is configured only while it is not ready and before DRIVER_OK (spec 4.2.3.2).
  if (q == nullptr || (status() & VIRTIO_CONFIG_S_DRIVER_OK)) {
    KLOG_DEBUG_RATELIMITED("virtio-mmio: ignoring queue register 0x%llx (queue %u)",
                           static_cast<unsigned long long>(offset), queue_sel_);
    return;
  }
  if (offset == VIRTIO_MMIO_QUEUE_READY) {
    q->set_ready(value == 1);
    return;
  }
  if (q->ready()) {
    KLOG_DEBUG_RATELIMITED("virtio-mmio: queue %u is ready; ignoring 0x%llx", queue_sel_,
                           static_cast<unsigned long long>(offset));
    return;
  }
  switch (offset) {
    case VIRTIO_MMIO_QUEUE_NUM:
      // Out-of-range sizes become 0, which is_valid() rejects at DRIVER_OK.
      q->set_size(value <= kMaxQueueSize ? static_cast<uint16_t>(value) : 0);
      device_->queue_size_selected(static_cast<uint16_t>(queue_sel_), q->size());
      return;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
      q->set_desc_table(GuestAddress(
          set_half(q->desc_table().value, offset == VIRTIO_MMIO_QUEUE_DESC_HIGH, value)));
      return;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
      q->set_avail_ring(GuestAddress(
          set_half(q->avail_ring().value, offset == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, value)));
      return;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
      q->set_used_ring(GuestAddress(
          set_half(q->used_ring().value, offset == VIRTIO_MMIO_QUEUE_USED_HIGH, value)));
      return;
  }
}

bool MmioTransport::features_acceptable() const {
  uint64_t extra = driver_features_ & ~device_features_;
  if (extra != 0) {
    KLOG_WARN_RATELIMITED("virtio-mmio: driver accepted features 0x%llx that were not offered",
                          static_cast<unsigned long long>(extra));
    return false;
  }
  if ((driver_features_ & kVersion1) == 0) {
    KLOG_WARN_RATELIMITED("virtio-mmio: driver did not accept VIRTIO_F_VERSION_1 (legacy driver)");
    return false;
  }
  return true;
}

void MmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  uint32_t old = status();
  // NEEDS_RESET belongs to the device; the driver cannot set or clear it.
  uint32_t keep = old & VIRTIO_CONFIG_S_NEEDS_RESET;
  value &= ~uint32_t{VIRTIO_CONFIG_S_NEEDS_RESET};
  if ((old & ~keep & ~value) != 0) {
    KLOG_WARN_RATELIMITED("virtio-mmio: driver tried to clear status bits 0x%x; ignored",
                          old & ~value);
    return;
  }
  uint32_t added = value & ~old;
  if ((added & VIRTIO_CONFIG_S_FEATURES_OK) && !features_acceptable()) {
    // Refuse: the driver re-reads Status and sees FEATURES_OK clear (spec 3.1.1 step 6).
    value &= ~uint32_t{VIRTIO_CONFIG_S_FEATURES_OK};
    added &= ~uint32_t{VIRTIO_CONFIG_S_FEATURES_OK};
  }
  if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && (value & kInitBits) != kInitBits) {
    KLOG_WARN_RATELIMITED("virtio-mmio: DRIVER_OK before features were negotiated; ignored");
    value &= ~uint32_t{VIRTIO_CONFIG_S_DRIVER_OK};
    added &= ~uint32_t{VIRTIO_CONFIG_S_DRIVER_OK};
  }
  // Publish the driver's bits while keeping a NEEDS_RESET the I/O thread may set meanwhile.
  status_.fetch_or(value, std::memory_order_acq_rel);
  if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(value & VIRTIO_CONFIG_S_FAILED)) activate();
}

void MmioTransport::activate() {
  bool event_idx = driver_features_ & (1ULL << VIRTIO_RING_F_EVENT_IDX);
  bool indirect = driver_features_ & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
  for (size_t i = 0; i < queues_.size(); ++i) {
    Queue& q = queues_[i];
    if (!q.ready()) continue;
    // GUEST: ring addresses and sizes; a queue that is unusable is a driver error.
    if (!q.is_valid(mem_)) {
      KLOG_WARN_RATELIMITED("virtio-mmio: queue %zu has a bad size or ring address", i);
      mark_needs_reset();
      return;
    }
    q.set_event_idx(event_idx);
    q.set_indirect(indirect);
  }
  context_.emplace(ActivateContext{mem_, queues_, notifies_, *this, driver_features_});
  auto r = device_->activate(*context_);
  if (!r) {
    KLOG_ERROR_RATELIMITED("virtio-mmio: %s", r.error().message().c_str());
    context_.reset();
    mark_needs_reset();
  }
}

void MmioTransport::deactivate() {
  device_->reset();
  context_.reset();
}

void MmioTransport::reset_locked() {
  // The device stops and waits for its in-flight I/O before the queues are forgotten.
  deactivate();
  for (auto& q : queues_) q.reset();
  for (const auto& n : notifies_) (void)n.consume();  // stale kicks belong to the old rings
  device_features_sel_ = driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  interrupt_status_.store(0, std::memory_order_release);
  status_.store(0, std::memory_order_release);
}

// --- DeviceInterrupt ---

void MmioTransport::raise(uint32_t bits) {
  interrupt_status_.fetch_or(bits, std::memory_order_acq_rel);
  if (auto r = interrupt_.signal(); !r) {
    KLOG_ERROR_RATELIMITED("virtio-mmio: interrupt: %s", r.error().message().c_str());
  }
}

void MmioTransport::signal_used() {
  raise(VIRTIO_MMIO_INT_VRING);
}

void MmioTransport::signal_config() {
  // The device's configuration changed: drivers re-read it until the generation is stable.
  config_generation_.fetch_add(1, std::memory_order_acq_rel);
  raise(VIRTIO_MMIO_INT_CONFIG);
}

void MmioTransport::mark_needs_reset() {
  uint32_t old = status_.fetch_or(VIRTIO_CONFIG_S_NEEDS_RESET, std::memory_order_acq_rel);
  if (!(old & VIRTIO_CONFIG_S_NEEDS_RESET)) {
    KLOG_ERROR_RATELIMITED("virtio-mmio: device (type %u) needs reset after a driver error",
                           device_->device_type());
  }
  raise(VIRTIO_MMIO_INT_CONFIG);
}

}  // namespace kindling::virtio
