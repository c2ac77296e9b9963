#include "tests/support/blk_driver.h"

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_ring.h>
#include <poll.h>

#include <cstdio>
#include <cstdlib>

namespace kindling::test {

namespace {

constexpr unsigned kMaxSegments = 8;  // data descriptors per request at most
constexpr uint64_t kRingBase = 0x10000;

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

memory::GuestMemory make_memory(uint64_t bytes) {
  auto m = memory::GuestMemory::create({{0, align_up(bytes, 2 << 20)}});
  if (!m) {
    fprintf(stderr, "blk driver: %s\n", m.error().message().c_str());
    std::abort();
  }
  return std::move(*m);
}

}  // namespace

BlkDriver::BlkDriver(const Options& options)
    : opts_(options),
      mem_(make_memory([&] {
        uint64_t ring = kRingBase + QueueLayout::contiguous_bytes(options.queue_size);
        uint64_t ind = align_up(ring, 4096) + 16ULL * (kMaxSegments + 2) * options.queue_size;
        uint64_t hdr = align_up(ind, 4096) + 17ULL * options.queue_size;
        return align_up(hdr, 4096) + uint64_t{options.max_data} * options.queue_size;
      }())),
      queue_(options.queue_size),
      notify_(*EventFd::create()),
      head_tag_(options.queue_size, 0) {
  ring_base_ = kRingBase;
  indirect_base_ = align_up(kRingBase + QueueLayout::contiguous_bytes(opts_.queue_size), 4096);
  hdr_base_ = align_up(indirect_base_ + 16ULL * (kMaxSegments + 2) * opts_.queue_size, 4096);
  data_base_ = align_up(hdr_base_ + 17ULL * opts_.queue_size, 4096);
  mock_ = std::make_unique<MockQueue>(
      mem_, QueueLayout::contiguous(memory::GuestAddress(ring_base_), opts_.queue_size));
  mock_->set_indirect_pool(memory::GuestAddress(indirect_base_), kMaxSegments + 2);
  chain_.reserve(kMaxSegments + 2);
}

BlkDriver::~BlkDriver() {
  reset();
}

bool BlkDriver::activate(virtio::BlockDevice& dev) {
  uint64_t features = dev.device_features();
  if (!opts_.event_idx) features &= ~(uint64_t{1} << VIRTIO_RING_F_EVENT_IDX);
  if (!opts_.indirect) features &= ~(uint64_t{1} << VIRTIO_RING_F_INDIRECT_DESC);
  mock_->configure(queue_, opts_.event_idx, opts_.indirect);
  virtio::ActivateContext ctx{mem_, std::span<virtio::Queue>(&queue_, 1),
                              std::span<const EventFd>(&notify_, 1), irq_, features};
  auto r = dev.activate(ctx);
  if (!r) {
    fprintf(stderr, "blk driver: activate: %s\n", r.error().message().c_str());
    return false;
  }
  dev_ = &dev;
  return true;
}

void BlkDriver::reset() {
  if (dev_ != nullptr) dev_->reset();
  dev_ = nullptr;
}

memory::GuestAddress BlkDriver::data_addr(uint16_t tag) const {
  return memory::GuestAddress(data_base_ + uint64_t{opts_.max_data} * tag);
}

std::span<uint8_t> BlkDriver::data(uint16_t tag) const {
  return *mem_.slice(data_addr(tag), opts_.max_data);
}

memory::GuestAddress BlkDriver::header_addr(uint16_t tag) const {
  return memory::GuestAddress(hdr_base_ + 16ULL * tag);
}

memory::GuestAddress BlkDriver::status_addr(uint16_t tag) const {
  return memory::GuestAddress(hdr_base_ + 16ULL * opts_.queue_size + tag);
}

bool BlkDriver::add(uint16_t tag, uint32_t type, uint64_t sector, uint32_t len, unsigned segments,
                    uint32_t data_offset) {
  if (uint64_t{data_offset} + len > opts_.max_data) return false;
  virtio_blk_outhdr h{};
  h.type = type;
  h.sector = sector;
  (void)mem_.write_obj(header_addr(tag), h);
  (void)mem_.write_obj(status_addr(tag), uint8_t{0xFF});
  chain_.clear();
  chain_.push_back({header_addr(tag), 16, false});
  bool writable = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
  if (segments > kMaxSegments) segments = kMaxSegments;
  if (segments > len / 512) segments = len / 512 ? len / 512 : 1;
  uint32_t at = 0;
  for (unsigned i = 0; i < segments && len > 0; ++i) {
    // Equal pieces in 512-byte units; the last one takes the rest.
    uint32_t piece = i + 1 == segments ? len - at : (len / segments) & ~511u;
    chain_.push_back({data_addr(tag) + data_offset + at, piece, writable});
    at += piece;
  }
  chain_.push_back({status_addr(tag), 1, true});
  return add_raw(tag, chain_);
}

bool BlkDriver::add_raw(uint16_t tag, std::span<const ChainBuffer> bufs) {
  auto head = opts_.indirect ? mock_->add_indirect_chain(bufs) : mock_->add_chain(bufs);
  if (!head) return false;
  head_tag_[*head] = tag;
  return true;
}

void BlkDriver::kick() {
  mock_->publish();
  if (mock_->needs_kick()) {
    ++kicks_;
    (void)notify_.signal();
  }
}

size_t BlkDriver::collect(std::vector<BlkDone>& out) {
  size_t n = 0;
  while (auto u = mock_->next_used()) {
    uint16_t tag = head_tag_[u->id % opts_.queue_size];
    uint8_t st = *mem_.read_obj<uint8_t>(status_addr(tag));
    out.push_back({tag, st, u->len});
    ++n;
  }
  return n;
}

size_t BlkDriver::wait(std::vector<BlkDone>& out, int timeout_ms) {
  while (true) {
    size_t n = collect(out);
    if (n > 0) return n;
    // Ask for an interrupt at the next used entry; re-check to close the race.
    if (mock_->enable_interrupts()) continue;
    if (irq_.needs_reset.load()) return 0;
    pollfd p{irq_.used_fd.fd(), POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) return collect(out);
    (void)irq_.used_fd.consume();
  }
}

std::vector<BlkDone> BlkDriver::wait_for(size_t n, int timeout_ms) {
  std::vector<BlkDone> out;
  while (out.size() < n) {
    if (wait(out, timeout_ms) == 0) break;
  }
  return out;
}

}  // namespace kindling::test
