// The driver side of one split virtqueue, for tests and the in-process benchmark.
//
// MockQueue plays the guest driver: it owns a descriptor table, an avail ring and a used ring at
// chosen guest addresses, hands out descriptors from a free list, offers chains (direct or
// through an indirect table), publishes avail.idx with the driver's barriers, reads used
// elements back (recycling their descriptors) and drives the notification/interrupt suppression
// fields (avail.flags, used_event) the way Linux's virtio_ring does.
//
// Steady-state use does no heap allocation: add_chain()/next_used() only touch preallocated
// vectors and guest memory, so it can drive millions of requests.
//
// Thread model: one driver thread calls MockQueue; the device (virtio::Queue) may run on another
// thread. The ring index fields are accessed atomically, so the two may run concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/memory/guest_memory.h"
#include "virtio/queue.h"

namespace kindling::test {

using memory::GuestAddress;
using memory::GuestMemory;

// Where the three parts of a split ring live.
struct QueueLayout {
  uint16_t size = 0;           // a power of two
  memory::GuestAddress desc;   // 16-byte aligned, 16 * size bytes
  memory::GuestAddress avail;  // 2-byte aligned, 6 + 2 * size bytes
  memory::GuestAddress used;   // 4-byte aligned, 6 + 8 * size bytes

  // The three parts back to back from `base` (4 KiB aligned pieces, like a legacy vring).
  static QueueLayout contiguous(memory::GuestAddress base, uint16_t size);
  // Bytes from desc to the end of the used ring for a contiguous() layout.
  static uint64_t contiguous_bytes(uint16_t size);
};

// One buffer of a chain: guest address, length, and whether the device may write it.
struct ChainBuffer {
  memory::GuestAddress addr;
  uint32_t len = 0;
  bool writable = false;
};

// One used ring entry.
struct UsedElement {
  uint32_t id = 0;
  uint32_t len = 0;
};

// Driver side of one split virtqueue over test guest memory.
class MockQueue {
 public:
  // Zeroes the rings. `layout` must lie in guest RAM (aborts otherwise; build rings outside RAM
  // by configuring virtio::Queue directly).
  MockQueue(const memory::GuestMemory& mem, const QueueLayout& layout);

  // Back to the state after construction (rings zeroed, every descriptor free), e.g. after the
  // device was reset.
  void reset();

  const QueueLayout& layout() const { return layout_; }
  uint16_t size() const { return layout_.size; }

  // Gives `q` this queue's size and addresses, the negotiated ring features, and marks it
  // ready. Also tells the mock whether EVENT_IDX is in use (for needs_kick/enable_interrupts).
  void configure(virtio::Queue& q, bool event_idx = false, bool indirect = false);
  // Whether the driver side uses EVENT_IDX (set by configure()).
  void set_event_idx(bool on) { event_idx_ = on; }

  // Reserves `entries_per_chain` indirect descriptors per head at `base` (16-byte aligned,
  // size * entries_per_chain * 16 bytes of RAM) for add_indirect_chain(bufs).
  void set_indirect_pool(memory::GuestAddress base, uint16_t entries_per_chain);

  // --- offering buffers ---
  // Writes `bufs` as a NEXT-linked chain from free descriptors and appends its head to the
  // avail ring (not yet published). Returns the head, or nullopt if too few descriptors are
  // free or bufs is empty.
  std::optional<uint16_t> add_chain(std::span<const ChainBuffer> bufs);
  // Same, through an indirect table written at `table` (bufs.size() * 16 bytes): one ring
  // descriptor with VRING_DESC_F_INDIRECT.
  std::optional<uint16_t> add_indirect_chain(std::span<const ChainBuffer> bufs,
                                             memory::GuestAddress table);
  // Same, with the table in the head's slot of the indirect pool (see set_indirect_pool).
  std::optional<uint16_t> add_indirect_chain(std::span<const ChainBuffer> bufs);
  // Makes everything added so far visible: release, then avail.idx.
  void publish();
  // Driver-side kick decision after publish(): a full fence, then EVENT_IDX avail_event (for
  // the entries published since the last call) or !VRING_USED_F_NO_NOTIFY.
  bool needs_kick();
  // Descriptors not in any offered chain.
  uint16_t free_descriptors() const { return static_cast<uint16_t>(free_.size()); }

  // --- raw access, for malformed chains (no free-list bookkeeping) ---
  // Writes descriptor `i` of the ring's table.
  void write_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
  // Writes descriptor `i` of a table at `table` (an indirect table).
  void write_table_desc(memory::GuestAddress table, uint16_t i, uint64_t addr, uint32_t len,
                        uint16_t flags, uint16_t next);
  // Appends `head` to the avail ring at the shadow index (publish() makes it visible).
  void offer(uint16_t head);
  // Publishes an arbitrary avail.idx (release) and makes it the shadow index.
  void set_avail_idx(uint16_t idx);
  // The shadow avail index (what publish() writes).
  uint16_t avail_idx() const { return avail_shadow_; }

  // --- used side ---
  // used.idx as the device last published it (acquire).
  uint16_t used_idx() const;
  // The used element in ring slot `slot` (slot < size).
  UsedElement used_elem(uint16_t slot) const;
  // The next used element not yet returned, if the device published one; recycles the chain's
  // descriptors when it was offered by add_chain/add_indirect_chain.
  std::optional<UsedElement> next_used();

  // --- suppression fields ---
  // avail.flags (e.g. VRING_AVAIL_F_NO_INTERRUPT).
  void set_avail_flags(uint16_t flags);
  // used_event (avail.ring[size]).
  void set_used_event(uint16_t idx);
  // avail_event (used.ring[size]) as written by the device.
  uint16_t avail_event() const;
  // used.flags (e.g. VRING_USED_F_NO_NOTIFY) as written by the device.
  uint16_t used_flags() const;
  // Asks for an interrupt at the next used entry (used_event = last seen used index, or clear
  // NO_INTERRUPT), then a full fence. Returns true if used entries are already pending (the
  // caller must drain again, as Linux's virtqueue_enable_cb does).
  bool enable_interrupts();
  // Asks for no interrupts (sets VRING_AVAIL_F_NO_INTERRUPT; with EVENT_IDX Linux also just
  // stops moving used_event, which this does too).
  void disable_interrupts();

 private:
  std::optional<uint16_t> take_descriptors(size_t n);
  void put_head(uint16_t head);

  const memory::GuestMemory& mem_;
  QueueLayout layout_;
  uint8_t* desc_;  // host views of the rings (test-only shortcut; checked at construction)
  uint8_t* avail_;
  uint8_t* used_;
  bool event_idx_ = false;
  uint16_t avail_shadow_ = 0;        // avail.idx including unpublished entries
  uint16_t kick_old_ = 0;            // avail.idx at the last needs_kick()
  uint16_t last_used_ = 0;           // next used entry next_used() returns
  std::vector<uint16_t> free_;       // free descriptor stack
  std::vector<uint16_t> next_;       // host copy of each descriptor's next link
  std::vector<uint16_t> chain_len_;  // ring descriptors of the chain at each head (0 = raw)
  memory::GuestAddress indirect_pool_;
  uint16_t indirect_entries_ = 0;
};

}  // namespace kindling::test
