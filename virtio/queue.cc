#include "virtio/queue.h"

#include <endian.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <string>

namespace kindling::virtio {

const char* to_string(QueueError e) {
  switch (e) {
    case QueueError::kNotReady:
      return "queue is not ready";
    case QueueError::kAvailIdxJump:
      return "avail.idx moved by more than the queue size";
    case QueueError::kHeadOutOfRange:
      return "avail ring entry is not a descriptor index";
    case QueueError::kNextOutOfRange:
      return "descriptor next is outside the table";
    case QueueError::kChainLoop:
      return "descriptor chain is longer than its table (loop)";
    case QueueError::kZeroLength:
      return "zero-length buffer";
    case QueueError::kOutOfRam:
      return "buffer, table or ring is outside guest RAM";
    case QueueError::kReadableAfterWritable:
      return "device-readable descriptor after a device-writable one";
    case QueueError::kBadIndirect:
      return "bad indirect descriptor table";
    case QueueError::kTooManyInFlight:
      return "more chains in flight than the queue size";
    case QueueError::kChainTooLong:
      return "descriptor chain totals 4 GiB or more";
    case QueueError::kBadUsedHead:
      return "used head is not in flight";
    case QueueError::kHeadInFlight:
      return "avail head is already in flight";
  }
  return "queue error";
}

namespace {

// Split-ring layout (virtio 1.x, 2.7.5-2.7.8): offsets inside the avail and used rings.
constexpr uint64_t kRingIdxOff = 2;    // avail.idx / used.idx
constexpr uint64_t kRingEntryOff = 4;  // avail.ring[] / used.ring[]
constexpr uint64_t kDescSize = sizeof(vring_desc);
constexpr uint64_t kUsedElemSize = sizeof(vring_used_elem);
static_assert(kDescSize == 16 && kUsedElemSize == 8);

constexpr uint64_t avail_bytes(uint16_t n) {
  return kRingEntryOff + 2ULL * n + 2;
}
constexpr uint64_t used_bytes(uint16_t n) {
  return kRingEntryOff + kUsedElemSize * n + 2;
}

// The rings are 2- resp. 4-byte aligned (checked by is_valid), so the 16-bit index fields
// can be accessed atomically with the driver running concurrently on another CPU.
uint16_t load16(uint8_t* p, std::memory_order order) {
  return le16toh(std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(order));
}
void store16(uint8_t* p, uint16_t v, std::memory_order order) {
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(htole16(v), order);
}

Unexpected<QueueErr> queue_fail(QueueError code, uint16_t head, const char* what) {
  char ctx[64];
  snprintf(ctx, sizeof(ctx), "virtqueue chain %u: %s", head, what);
  return fail(code, 0, std::string(ctx));
}

}  // namespace

Queue::Queue(uint16_t max_size) : max_size_(max_size), size_(max_size), head_busy_(max_size, 0) {}

bool Queue::is_valid(const GuestMemory& mem) const {
  // has_single_bit is false for 0, so this also rejects an empty queue.
  if (!std::has_single_bit(size_) || size_ > max_size_) return false;
  if (desc_.value % VRING_DESC_ALIGN_SIZE != 0 || avail_.value % VRING_AVAIL_ALIGN_SIZE != 0 ||
      used_.value % VRING_USED_ALIGN_SIZE != 0) {
    return false;
  }
  return mem.contains(desc_, kDescSize * size_) && mem.contains(avail_, avail_bytes(size_)) &&
         mem.contains(used_, used_bytes(size_));
}

void Queue::reset() {
  size_ = max_size_;
  ready_ = false;
  event_idx_ = indirect_ = false;
  desc_ = avail_ = used_ = GuestAddress();
  last_avail_ = next_used_ = signalled_used_ = 0;
  signalled_valid_ = false;
  in_flight_ = 0;
  std::fill(head_busy_.begin(), head_busy_.end(), 0);
}

// Walks one chain starting at `head` into `elem`. `table` is the queue's descriptor table.
// GUEST: the descriptors, their lengths, addresses, flags and next links.
static Result<void, QueueErr> walk_chain(const GuestMemory& mem, std::span<uint8_t> table,
                                         uint16_t head, bool indirect_ok, QueueElement& elem) {
  const uint64_t max_chain = table.size() / kDescSize;
  uint64_t table_len = max_chain;
  uint64_t idx = head;
  uint64_t seen = 0;
  uint64_t total = 0;
  bool in_indirect = false;
  bool writable_seen = false;
  for (;;) {
    // A chain that visits more descriptors than its table holds must revisit one: a loop.
    if (++seen > table_len) return queue_fail(QueueError::kChainLoop, head, "loop");
    vring_desc d;
    std::memcpy(&d, table.data() + idx * kDescSize, sizeof(d));
    uint64_t addr = le64toh(d.addr);
    uint32_t len = le32toh(d.len);
    uint16_t flags = le16toh(d.flags);
    if (flags & VRING_DESC_F_INDIRECT) {
      if (!indirect_ok) return queue_fail(QueueError::kBadIndirect, head, "not negotiated");
      if (in_indirect) return queue_fail(QueueError::kBadIndirect, head, "nested");
      if (flags & VRING_DESC_F_NEXT) return queue_fail(QueueError::kBadIndirect, head, "NEXT");
      if (len == 0 || len % kDescSize != 0) {
        return queue_fail(QueueError::kBadIndirect, head, "length");
      }
      // A chain may not be longer than the queue (spec 2.7.5.3.1); this also bounds the iovecs
      // one element can make a guest allocate.
      if (len / kDescSize > max_chain) return queue_fail(QueueError::kBadIndirect, head, "size");
      auto t = mem.slice(GuestAddress(addr), len);
      if (!t) return queue_fail(QueueError::kOutOfRam, head, "indirect table");
      // The WRITE flag of the descriptor that names the table is ignored (spec 2.7.5.3.2).
      table = *t;
      table_len = len / kDescSize;
      idx = 0;
      seen = 0;
      in_indirect = true;
      continue;
    }
    if (len == 0) return queue_fail(QueueError::kZeroLength, head, "buffer");
    bool writable = (flags & VRING_DESC_F_WRITE) != 0;
    if (!writable && writable_seen) {
      return queue_fail(QueueError::kReadableAfterWritable, head, "buffer");
    }
    writable_seen |= writable;
    auto buf = mem.slice(GuestAddress(addr), len);
    if (!buf) return queue_fail(QueueError::kOutOfRam, head, "buffer");
    total += len;
    if (total >= (1ULL << 32)) return queue_fail(QueueError::kChainTooLong, head, "total");
    iovec v{buf->data(), len};
    if (writable) {
      elem.in_iov.push_back(v);
      elem.in_bytes += len;
    } else {
      elem.out_iov.push_back(v);
      elem.out_bytes += len;
    }
    if (!(flags & VRING_DESC_F_NEXT)) return {};
    idx = le16toh(d.next);
    if (idx >= table_len) return queue_fail(QueueError::kNextOutOfRange, head, "next");
  }
}

Result<bool, QueueErr> Queue::pop(const GuestMemory& mem, QueueElement& elem) {
  elem.clear();
  if (!ready_) return fail(QueueError::kNotReady, 0, "pop");
  auto avail = mem.slice(avail_, avail_bytes(size_));
  auto table = mem.slice(desc_, kDescSize * size_);
  if (!avail || !table) return fail(QueueError::kOutOfRam, 0, "virtqueue rings");
  // Acquire: the ring entries and descriptors the driver wrote before bumping avail.idx are
  // visible to the reads below.
  uint16_t avail_idx = load16(avail->data() + kRingIdxOff, std::memory_order_acquire);
  // GUEST: avail.idx is free-running; it may never run ahead of us by more than the ring.
  uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
  if (pending > size_) return queue_fail(QueueError::kAvailIdxJump, avail_idx, "avail.idx");
  if (pending == 0) return false;
  if (in_flight_ >= size_) return fail(QueueError::kTooManyInFlight, 0, "pop");

  uint16_t head;
  std::memcpy(&head, avail->data() + kRingEntryOff + 2ULL * (last_avail_ % size_), 2);
  head = le16toh(head);
  // GUEST: the head is an index into the descriptor table.
  if (head >= size_) return queue_fail(QueueError::kHeadOutOfRange, head, "head");
  if (head_busy_[head]) return queue_fail(QueueError::kHeadInFlight, head, "head");
  auto walked = walk_chain(mem, *table, head, indirect_, elem);
  if (!walked) return walked.take_error();

  elem.head = head;
  head_busy_[head] = 1;
  ++in_flight_;
  ++last_avail_;
  return true;
}

Result<void, QueueErr> Queue::push(const GuestMemory& mem, uint16_t head, uint32_t len) {
  if (!ready_) return fail(QueueError::kNotReady, 0, "push");
  if (head >= size_ || !head_busy_[head]) return queue_fail(QueueError::kBadUsedHead, head, "push");
  auto used = mem.slice(used_, used_bytes(size_));
  if (!used) return fail(QueueError::kOutOfRam, 0, "used ring");
  vring_used_elem e;
  e.id = htole32(head);
  e.len = htole32(len);
  std::memcpy(used->data() + kRingEntryOff + kUsedElemSize * (next_used_ % size_), &e, sizeof(e));
  ++next_used_;
  // Release: the used element (and the data the device wrote into the chain's buffers) is
  // visible before the driver can observe the new used.idx.
  store16(used->data() + kRingIdxOff, next_used_, std::memory_order_release);
  head_busy_[head] = 0;
  --in_flight_;
  return {};
}

Result<void, QueueErr> Queue::disable_notification(const GuestMemory& mem) {
  if (!ready_) return fail(QueueError::kNotReady, 0, "disable_notification");
  // With EVENT_IDX, leaving avail_event behind avail.idx is what suppresses kicks.
  if (event_idx_) return {};
  auto used = mem.slice(used_, used_bytes(size_));
  if (!used) return fail(QueueError::kOutOfRam, 0, "used ring");
  uint16_t flags = load16(used->data(), std::memory_order_relaxed);
  store16(used->data(), flags | VRING_USED_F_NO_NOTIFY, std::memory_order_relaxed);
  return {};
}

Result<bool, QueueErr> Queue::enable_notification(const GuestMemory& mem) {
  if (!ready_) return fail(QueueError::kNotReady, 0, "enable_notification");
  auto used = mem.slice(used_, used_bytes(size_));
  auto avail = mem.slice(avail_, avail_bytes(size_));
  if (!used || !avail) return fail(QueueError::kOutOfRam, 0, "virtqueue rings");
  if (event_idx_) {
    // Ask for a kick as soon as the driver makes entry last_avail_ available.
    store16(used->data() + kRingEntryOff + kUsedElemSize * size_, last_avail_,
            std::memory_order_relaxed);
  } else {
    uint16_t flags = load16(used->data(), std::memory_order_relaxed);
    store16(used->data(), flags & ~VRING_USED_F_NO_NOTIFY, std::memory_order_relaxed);
  }
  // Full fence: the avail_event / used.flags store above must be visible to the driver before
  // we read avail.idx below (store->load ordering); otherwise a buffer added in between could
  // be missed by both sides.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t avail_idx = load16(avail->data() + kRingIdxOff, std::memory_order_relaxed);
  return avail_idx != last_avail_;
}

Result<bool, QueueErr> Queue::needs_interrupt(const GuestMemory& mem) {
  if (!ready_) return fail(QueueError::kNotReady, 0, "needs_interrupt");
  auto avail = mem.slice(avail_, avail_bytes(size_));
  if (!avail) return fail(QueueError::kOutOfRam, 0, "avail ring");
  // Full fence: our used.idx store must be visible before we read the driver's used_event or
  // avail.flags (store->load ordering), or we could skip an interrupt the driver waits for.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    uint16_t flags = load16(avail->data(), std::memory_order_relaxed);
    return (flags & VRING_AVAIL_F_NO_INTERRUPT) == 0;
  }
  // GUEST: used_event is the driver's; need_event() is total for any value.
  uint16_t used_event =
      load16(avail->data() + kRingEntryOff + 2ULL * size_, std::memory_order_relaxed);
  bool first = !signalled_valid_;
  uint16_t old_idx = signalled_used_;
  signalled_used_ = next_used_;
  signalled_valid_ = true;
  return first || need_event(used_event, next_used_, old_idx);
}

}  // namespace kindling::virtio
