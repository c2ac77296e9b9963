// A split virtqueue (virtio 1.x, section 2.7) read and written through GuestMemory.
//
// The queue holds only addresses and indices; the memory is passed to every call that touches
// the rings. Every descriptor chain is validated before any buffer is handed out.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "common/memory/guest_memory.h"
#include "common/result.h"

namespace kindling::virtio {

using memory::GuestAddress;
using memory::GuestMemory;

enum class QueueError {
  kNotReady,               // used before the driver made it ready / after reset
  kAvailIdxJump,           // avail.idx moved by more than the queue size
  kHeadOutOfRange,         // an avail ring entry >= queue size
  kNextOutOfRange,         // descriptor next >= table size
  kChainLoop,              // more descriptors than the table holds
  kZeroLength,             // a zero-length buffer
  kOutOfRam,               // a buffer, table or ring outside guest RAM
  kReadableAfterWritable,  // a device-readable descriptor after a device-writable one
  kBadIndirect,            // indirect table: not negotiated, length 0 / not a multiple of 16 / more
                           // entries than the queue size, nested, or with NEXT
  kTooManyInFlight,        // more heads popped than the queue size without being pushed
  kChainTooLong,           // chain total >= 4 GiB
  kBadUsedHead,            // push() of a head that is not in flight
  kHeadInFlight,           // the driver offered a head that is still in flight
};
const char* to_string(QueueError e);
using QueueErr = Error<QueueError>;

// One popped descriptor chain: host views of its buffers, already bounds-checked.
// Reused between pops (clear() keeps the vectors' capacity).
struct QueueElement {
  uint16_t head = 0;
  std::vector<iovec> out_iov;  // device-readable (driver -> device), in chain order
  std::vector<iovec> in_iov;   // device-writable (device -> driver), in chain order
  uint64_t out_bytes = 0;      // sum of out_iov's lengths as popped
  uint64_t in_bytes = 0;       // sum of in_iov's lengths as popped
  void clear() {
    out_iov.clear();
    in_iov.clear();
    out_bytes = in_bytes = 0;
  }
};

// Device side of one split virtqueue.
class Queue {
 public:
  explicit Queue(uint16_t max_size);

  // --- driver-visible configuration (written by the transport) ---
  uint16_t max_size() const { return max_size_; }
  uint16_t size() const { return size_; }
  void set_size(uint16_t n) { size_ = n; }
  bool ready() const { return ready_; }
  void set_ready(bool r) { ready_ = r; }
  GuestAddress desc_table() const { return desc_; }
  GuestAddress avail_ring() const { return avail_; }
  GuestAddress used_ring() const { return used_; }
  void set_desc_table(GuestAddress a) { desc_ = a; }
  void set_avail_ring(GuestAddress a) { avail_ = a; }
  void set_used_ring(GuestAddress a) { used_ = a; }
  // Negotiated VIRTIO_RING_F_EVENT_IDX.
  void set_event_idx(bool on) { event_idx_ = on; }
  // Negotiated VIRTIO_RING_F_INDIRECT_DESC.
  void set_indirect(bool on) { indirect_ = on; }

  // Size a power of two <= max, rings aligned and inside guest RAM.
  bool is_valid(const GuestMemory& mem) const;

  // Pops the next available chain into `elem`. Returns false when the ring is empty.
  // GUEST: every field of the rings and descriptors is guest-controlled.
  Result<bool, QueueErr> pop(const GuestMemory& mem, QueueElement& elem);
  // Returns a chain to the driver with `len` bytes written into its writable buffers.
  Result<void, QueueErr> push(const GuestMemory& mem, uint16_t head, uint32_t len);

  // Asks the driver not to notify (VRING_USED_F_NO_NOTIFY, or stops advancing avail_event:
  // with EVENT_IDX, avail_event is written only by enable_notification()).
  Result<void, QueueErr> disable_notification(const GuestMemory& mem);
  // Asks for notifications again; returns true if buffers became available meanwhile (the
  // caller must drain again).
  Result<bool, QueueErr> enable_notification(const GuestMemory& mem);
  // After one or more push()es: whether the driver wants an interrupt (EVENT_IDX used_event,
  // or VRING_AVAIL_F_NO_INTERRUPT). Each call covers the used entries pushed since the last call.
  Result<bool, QueueErr> needs_interrupt(const GuestMemory& mem);

  // Chains popped and not yet pushed.
  uint16_t in_flight() const { return in_flight_; }
  // Free-running index of the next avail ring entry pop() reads.
  uint16_t last_avail_idx() const { return last_avail_; }
  // Free-running used.idx as last published by push().
  uint16_t used_idx() const { return next_used_; }
  // Back to the state after construction (not ready, indices 0, addresses 0).
  void reset();

 private:
  uint16_t max_size_;
  uint16_t size_;
  bool ready_ = false;
  bool event_idx_ = false;
  bool indirect_ = false;
  GuestAddress desc_, avail_, used_;
  uint16_t last_avail_ = 0;       // next avail ring entry to pop
  uint16_t next_used_ = 0;        // used.idx we will publish next
  uint16_t signalled_used_ = 0;   // used.idx when the driver was last interrupted
  bool signalled_valid_ = false;  // false until the first interrupt decision
  uint16_t in_flight_ = 0;
  std::vector<uint8_t> head_busy_;  // head_busy_[h] != 0 while chain h is in flight
};

// vring_need_event() of the virtio spec (2.7.7.2): true when moving an index from `old_idx` to
// `new_idx` passes `event_idx`. All arithmetic is mod 2^16.
constexpr bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

}  // namespace kindling::virtio
