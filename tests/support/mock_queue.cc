#include "tests/support/mock_queue.h"

#include <endian.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kindling::test {

namespace {

[[noreturn]] void die(const char* what, uint64_t a) {
  fprintf(stderr, "mock queue: %s (0x%llx)\n", what, static_cast<unsigned long long>(a));
  std::abort();
}

uint8_t* host_view(const memory::GuestMemory& mem, memory::GuestAddress a, uint64_t len) {
  auto s = mem.slice(a, len);
  if (!s) die("ring is outside guest RAM", a.value);
  return s->data();
}

uint16_t load16(const uint8_t* p, std::memory_order order) {
  return le16toh(
      std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p))).load(order));
}
void store16(uint8_t* p, uint16_t v, std::memory_order order) {
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(htole16(v), order);
}

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

constexpr uint64_t kPage = 4096;

}  // namespace

QueueLayout QueueLayout::contiguous(memory::GuestAddress base, uint16_t size) {
  QueueLayout l;
  l.size = size;
  l.desc = base;
  l.avail = memory::GuestAddress(align_up(base.value + 16ULL * size, kPage));
  l.used = memory::GuestAddress(align_up(l.avail.value + 6 + 2ULL * size, kPage));
  return l;
}

uint64_t QueueLayout::contiguous_bytes(uint16_t size) {
  QueueLayout l = contiguous(memory::GuestAddress(0), size);
  return l.used.value + 6 + 8ULL * size;
}

MockQueue::MockQueue(const memory::GuestMemory& mem, const QueueLayout& layout)
    : mem_(mem), layout_(layout) {
  uint16_t n = layout.size;
  if (n == 0 || (n & (n - 1)) != 0) die("queue size is not a power of two", n);
  desc_ = host_view(mem, layout.desc, 16ULL * n);
  avail_ = host_view(mem, layout.avail, 6 + 2ULL * n);
  used_ = host_view(mem, layout.used, 6 + 8ULL * n);
  reset();
}

void MockQueue::reset() {
  uint16_t n = layout_.size;
  std::memset(desc_, 0, 16ULL * n);
  std::memset(avail_, 0, 6 + 2ULL * n);
  std::memset(used_, 0, 6 + 8ULL * n);
  avail_shadow_ = kick_old_ = last_used_ = 0;
  free_.clear();
  free_.reserve(n);
  for (uint16_t i = n; i > 0; --i) free_.push_back(static_cast<uint16_t>(i - 1));
  next_.assign(n, 0);
  chain_len_.assign(n, 0);
}

void MockQueue::configure(virtio::Queue& q, bool event_idx, bool indirect) {
  q.set_size(layout_.size);
  q.set_desc_table(layout_.desc);
  q.set_avail_ring(layout_.avail);
  q.set_used_ring(layout_.used);
  q.set_event_idx(event_idx);
  q.set_indirect(indirect);
  q.set_ready(true);
  event_idx_ = event_idx;
}

void MockQueue::set_indirect_pool(memory::GuestAddress base, uint16_t entries_per_chain) {
  host_view(mem_, base, 16ULL * entries_per_chain * layout_.size);
  indirect_pool_ = base;
  indirect_entries_ = entries_per_chain;
}

std::optional<uint16_t> MockQueue::take_descriptors(size_t n) {
  if (n == 0 || n > free_.size()) return std::nullopt;
  // Link n free descriptors: the last popped is the head.
  uint16_t head = free_.back();
  free_.pop_back();
  uint16_t prev = head;
  for (size_t i = 1; i < n; ++i) {
    uint16_t d = free_.back();
    free_.pop_back();
    next_[prev] = d;
    prev = d;
  }
  chain_len_[head] = static_cast<uint16_t>(n);
  return head;
}

void MockQueue::put_head(uint16_t head) {
  uint8_t* slot = avail_ + 4 + 2ULL * (avail_shadow_ % layout_.size);
  uint16_t le = htole16(head);
  std::memcpy(slot, &le, 2);
  ++avail_shadow_;
}

std::optional<uint16_t> MockQueue::add_chain(std::span<const ChainBuffer> bufs) {
  auto head = take_descriptors(bufs.size());
  if (!head) return std::nullopt;
  uint16_t d = *head;
  for (size_t i = 0; i < bufs.size(); ++i) {
    bool last = i + 1 == bufs.size();
    uint16_t flags = (last ? 0 : VRING_DESC_F_NEXT) | (bufs[i].writable ? VRING_DESC_F_WRITE : 0);
    write_desc(d, bufs[i].addr.value, bufs[i].len, flags, last ? 0 : next_[d]);
    d = next_[d];
  }
  put_head(*head);
  return head;
}

std::optional<uint16_t> MockQueue::add_indirect_chain(std::span<const ChainBuffer> bufs,
                                                      memory::GuestAddress table) {
  if (bufs.empty()) return std::nullopt;
  auto head = take_descriptors(1);
  if (!head) return std::nullopt;
  for (size_t i = 0; i < bufs.size(); ++i) {
    bool last = i + 1 == bufs.size();
    uint16_t flags = (last ? 0 : VRING_DESC_F_NEXT) | (bufs[i].writable ? VRING_DESC_F_WRITE : 0);
    write_table_desc(table, static_cast<uint16_t>(i), bufs[i].addr.value, bufs[i].len, flags,
                     last ? 0 : static_cast<uint16_t>(i + 1));
  }
  write_desc(*head, table.value, static_cast<uint32_t>(16 * bufs.size()), VRING_DESC_F_INDIRECT, 0);
  put_head(*head);
  return head;
}

std::optional<uint16_t> MockQueue::add_indirect_chain(std::span<const ChainBuffer> bufs) {
  if (bufs.size() > indirect_entries_) return std::nullopt;
  if (free_.empty()) return std::nullopt;
  // The head that take_descriptors(1) will hand out picks the pool slot.
  memory::GuestAddress table = indirect_pool_ + 16ULL * indirect_entries_ * free_.back();
  return add_indirect_chain(bufs, table);
}

void MockQueue::publish() {
  // Release: descriptors and avail ring entries are visible before the new avail.idx.
  store16(avail_ + 2, avail_shadow_, std::memory_order_release);
}

bool MockQueue::needs_kick() {
  // Full fence: our avail.idx store is visible before we read avail_event / used.flags
  // (store->load), mirroring virtqueue_kick_prepare().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint16_t old_idx = kick_old_;
  kick_old_ = avail_shadow_;
  if (event_idx_) return virtio::need_event(avail_event(), avail_shadow_, old_idx);
  return (used_flags() & VRING_USED_F_NO_NOTIFY) == 0;
}

void MockQueue::write_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  if (i >= layout_.size) die("descriptor index outside the table", i);
  vring_desc d;
  d.addr = htole64(addr);
  d.len = htole32(len);
  d.flags = htole16(flags);
  d.next = htole16(next);
  std::memcpy(desc_ + 16ULL * i, &d, sizeof(d));
}

void MockQueue::write_table_desc(memory::GuestAddress table, uint16_t i, uint64_t addr,
                                 uint32_t len, uint16_t flags, uint16_t next) {
  vring_desc d;
  d.addr = htole64(addr);
  d.len = htole32(len);
  d.flags = htole16(flags);
  d.next = htole16(next);
  if (!mem_.write_obj(table + 16ULL * i, d)) die("indirect table outside guest RAM", table.value);
}

void MockQueue::offer(uint16_t head) {
  uint8_t* slot = avail_ + 4 + 2ULL * (avail_shadow_ % layout_.size);
  uint16_t le = htole16(head);
  std::memcpy(slot, &le, 2);
  ++avail_shadow_;
}

void MockQueue::set_avail_idx(uint16_t idx) {
  avail_shadow_ = idx;
  publish();
}

uint16_t MockQueue::used_idx() const {
  // Acquire: used elements written before used.idx are visible to later reads.
  return load16(used_ + 2, std::memory_order_acquire);
}

UsedElement MockQueue::used_elem(uint16_t slot) const {
  vring_used_elem e;
  std::memcpy(&e, used_ + 4 + 8ULL * (slot % layout_.size), sizeof(e));
  return UsedElement{le32toh(e.id), le32toh(e.len)};
}

std::optional<UsedElement> MockQueue::next_used() {
  if (used_idx() == last_used_) return std::nullopt;
  UsedElement e = used_elem(last_used_ % layout_.size);
  ++last_used_;
  if (e.id < layout_.size && chain_len_[e.id] != 0) {
    uint16_t d = static_cast<uint16_t>(e.id);
    for (uint16_t i = chain_len_[e.id]; i > 0; --i) {
      free_.push_back(d);
      d = next_[d];
    }
    chain_len_[e.id] = 0;
  }
  return e;
}

void MockQueue::set_avail_flags(uint16_t flags) {
  store16(avail_, flags, std::memory_order_relaxed);
}

void MockQueue::set_used_event(uint16_t idx) {
  store16(avail_ + 4 + 2ULL * layout_.size, idx, std::memory_order_relaxed);
}

uint16_t MockQueue::avail_event() const {
  return load16(used_ + 4 + 8ULL * layout_.size, std::memory_order_relaxed);
}

uint16_t MockQueue::used_flags() const {
  return load16(used_, std::memory_order_relaxed);
}

bool MockQueue::enable_interrupts() {
  if (event_idx_) {
    set_used_event(last_used_);
  } else {
    uint16_t f = load16(avail_, std::memory_order_relaxed);
    set_avail_flags(f & ~VRING_AVAIL_F_NO_INTERRUPT);
  }
  // Full fence: the used_event / flags store is visible before we re-read used.idx.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return used_idx() != last_used_;
}

void MockQueue::disable_interrupts() {
  uint16_t f = load16(avail_, std::memory_order_relaxed);
  set_avail_flags(f | VRING_AVAIL_F_NO_INTERRUPT);
}

}  // namespace kindling::test
