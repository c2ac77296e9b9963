#include "virtio/blk_merge.h"

#include <algorithm>

#include "common/log.h"

namespace kindling::virtio {

MultiReqBuffer::MultiReqBuffer(RequestPool& pool, block::IoEngine& engine, RequestSink& sink,
                               MergeLimits limits)
    : pool_(pool), engine_(engine), sink_(sink), limits_(limits), groups_(pool.size()) {
  buf_.reserve(limits_.max_requests);
  done_.reserve(limits_.max_requests);
  deferred_.reserve(pool.size());
}

void MultiReqBuffer::add(uint16_t slot) {
  bool is_write = pool_[slot].type == BlkReqType::kOut;
  if (!buf_.empty() && (is_write != buf_write_ || buf_.size() >= limits_.max_requests)) {
    submit();
  }
  buf_write_ = is_write;
  buf_.push_back(slot);
  if (!limits_.merge) submit();
}

void MultiReqBuffer::add_flush(uint16_t slot) {
  // The flush covers writes completed before it; the pending ones must at least be on their way.
  submit();
  start_group(slot, Op::kFlush);
  send(slot);
}

void MultiReqBuffer::add_range(uint16_t slot) {
  submit();
  start_group(slot, pool_[slot].type == BlkReqType::kDiscard ? Op::kDiscard : Op::kWriteZeroes);
  send(slot);
}

void MultiReqBuffer::start_group(uint16_t leader, Op op) {
  Group& g = groups_[leader];
  const VirtIOBlockReq& r = pool_[leader];
  g.op = op;
  g.offset = r.sector << kSectorShift;
  g.bytes = op == Op::kFlush ? 0 : r.data_bytes;
  g.iovecs = r.data.size();
  g.members.clear();
  g.members.push_back(leader);
}

bool MultiReqBuffer::fits(const Group& g, const VirtIOBlockReq& r) const {
  const VirtIOBlockReq& last = pool_[g.members.back()];
  if (last.sector + (last.data_bytes >> kSectorShift) != r.sector) return false;
  if (g.bytes + r.data_bytes > engine_.max_transfer_bytes()) return false;
  return g.iovecs + r.data.size() <= limits_.max_iovecs;
}

void MultiReqBuffer::submit() {
  if (buf_.empty()) return;
  Op op = buf_write_ ? Op::kWrite : Op::kRead;
  if (buf_.size() > 1) {
    // Stable: two requests for one sector keep their arrival order.
    std::stable_sort(buf_.begin(), buf_.end(),
                     [&](uint16_t a, uint16_t b) { return pool_[a].sector < pool_[b].sector; });
  }
  uint16_t leader = buf_[0];
  start_group(leader, op);
  for (size_t i = 1; i < buf_.size(); ++i) {
    const VirtIOBlockReq& r = pool_[buf_[i]];
    Group& g = groups_[leader];
    if (fits(g, r)) {
      g.members.push_back(buf_[i]);
      g.bytes += r.data_bytes;
      g.iovecs += r.data.size();
      continue;
    }
    send(leader);
    leader = buf_[i];
    start_group(leader, op);
  }
  send(leader);
  buf_.clear();
}

void MultiReqBuffer::send(uint16_t leader) {
  Group& g = groups_[leader];
  if (g.members.size() > 1) {
    g.iov.clear();
    for (uint16_t m : g.members) {
      const auto& d = pool_[m].data;
      g.iov.insert(g.iov.end(), d.begin(), d.end());
    }
  }
  // Older refused requests go first; otherwise try the engine now.
  if (!deferred_.empty() || !try_send(leader)) deferred_.push_back(leader);
}

bool MultiReqBuffer::try_send(uint16_t leader) {
  Group& g = groups_[leader];
  // A lone request goes straight from its own iovecs: no copy of the array.
  std::span<const iovec> iov =
      g.members.size() > 1 ? std::span<const iovec>(g.iov) : pool_[leader].data;
  Result<void, block::BlockErr> r{};
  switch (g.op) {
    case Op::kRead:
      r = engine_.read(g.offset, iov, leader);
      break;
    case Op::kWrite:
      r = engine_.write(g.offset, iov, leader);
      break;
    case Op::kFlush:
      r = engine_.flush(leader);
      break;
    case Op::kDiscard:
      r = engine_.discard(g.offset, g.bytes, leader);
      break;
    case Op::kWriteZeroes:
      r = engine_.write_zeroes(g.offset, g.bytes, pool_[leader].unmap, leader);
      break;
  }
  if (!r) {
    if (r.error().code == block::BlockError::kQueueFull) return false;
    KLOG_WARN_RATELIMITED("virtio-blk: submission failed: %s", r.error().message().c_str());
    fail(leader);
    return true;
  }
  ++counters_.submissions;
  if (g.members.size() > 1) {
    ++counters_.merged_groups;
    counters_.merged_requests += g.members.size();
  }
  return true;
}

void MultiReqBuffer::retry_deferred() {
  size_t sent = 0;
  while (sent < deferred_.size() && try_send(deferred_[sent])) ++sent;
  deferred_.erase(deferred_.begin(), deferred_.begin() + static_cast<std::ptrdiff_t>(sent));
}

void MultiReqBuffer::fail(uint16_t leader) {
  for (uint16_t m : groups_[leader].members) sink_.complete(m, VIRTIO_BLK_S_IOERR);
  groups_[leader].members.clear();
}

void MultiReqBuffer::on_completion(const block::Completion& c) {
  if (c.cookie >= groups_.size() || groups_[c.cookie].members.empty()) {
    KLOG_ERROR_RATELIMITED("virtio-blk: completion for unknown request %llu",
                           static_cast<unsigned long long>(c.cookie));
    return;
  }
  Group& g = groups_[c.cookie];
  // Reads and writes report their bytes; flush, discard and write-zeroes report 0.
  bool by_bytes = g.op == Op::kRead || g.op == Op::kWrite;
  bool ok = c.result >= 0 && (!by_bytes || static_cast<uint64_t>(c.result) == g.bytes);
  uint8_t status = ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
  if (!ok) {
    static constexpr const char* kNames[] = {"read", "write", "flush", "discard", "write-zeroes"};
    KLOG_WARN_RATELIMITED(
        "virtio-blk: %s of %llu bytes at %llu failed: result %lld",
        kNames[static_cast<size_t>(g.op)], static_cast<unsigned long long>(g.bytes),
        static_cast<unsigned long long>(g.offset), static_cast<long long>(c.result));
  }
  // A member's slot may be reused once it completes: take the list out of the group first.
  done_.assign(g.members.begin(), g.members.end());
  g.members.clear();
  for (uint16_t m : done_) sink_.complete(m, status);
}

}  // namespace kindling::virtio
