#include "block/aligned_io.h"

#include <fcntl.h>
#include <limits.h>

#include <algorithm>
#include <cstring>

#include "block/raw_image.h"

namespace kindling::block {
namespace {

uint64_t round_down(uint64_t v, uint64_t a) {
  return v & ~(a - 1);
}
uint64_t round_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

// Copies `len` bytes of the iovecs (starting at their byte `skip`) into `dst`.
void gather(uint8_t* dst, std::span<const iovec> iov, size_t len) {
  for (const iovec& v : iov) {
    if (len == 0) return;
    size_t n = std::min(len, v.iov_len);
    std::memcpy(dst, v.iov_base, n);
    dst += n;
    len -= n;
  }
}

// Copies `len` bytes from `src` into the iovecs.
void scatter(std::span<const iovec> iov, const uint8_t* src, size_t len) {
  for (const iovec& v : iov) {
    if (len == 0) return;
    size_t n = std::min(len, v.iov_len);
    std::memcpy(v.iov_base, src, n);
    src += n;
    len -= n;
  }
}

// Zeroes the iovecs from byte `from` on.
void zero_from(std::span<const iovec> iov, size_t from) {
  for (const iovec& v : iov) {
    if (from >= v.iov_len) {
      from -= v.iov_len;
      continue;
    }
    std::memset(static_cast<uint8_t*>(v.iov_base) + from, 0, v.iov_len - from);
    from = 0;
  }
}

bool range_kind(ReqKind k) {
  return k == ReqKind::kDiscard || k == ReqKind::kWriteZeroes;
}
// Kinds that change the image: they take part in the write ordering (active_writes_).
bool writes(ReqKind k) {
  return k == ReqKind::kWrite || range_kind(k);
}

bool overlaps(uint64_t a_lo, uint64_t a_hi, uint64_t b_lo, uint64_t b_hi) {
  return a_lo < b_hi && b_lo < a_hi;
}

}  // namespace

// One accepted request from submit() until its completion is queued.
struct AlignedIo::Slot {
  uint64_t cookie = 0;
  ReqKind kind = ReqKind::kRead;
  uint64_t offset = 0;  // guest range
  uint64_t length = 0;
  uint64_t lo = 0;  // range the kernel ops cover (widened to offset_align when bounced)
  uint64_t hi = 0;
  std::vector<iovec> guest;  // the caller's iovecs (their buffers stay the caller's)
  AlignedBuffer bounce;
  iovec bounce_iov[2]{};  // [0]: main op or head read, [1]: tail read
  bool bounced = false;
  bool rmw = false;  // a write widened to aligned head/tail blocks
  bool active_write = false;
  size_t active_pos = 0;   // index in active_writes_
  int pending = 0;         // kernel ops outstanding
  int64_t error = 0;       // first failure of the current phase
  bool may_unmap = false;  // WRITE_ZEROES: deallocating is allowed
  int falloc_mode = 0;     // DISCARD/WRITE_ZEROES: the fallocate in flight (0: zero writes)
  uint64_t zero_pos = 0;   // WRITE_ZEROES fallback: the next byte to write
};

AlignedIo::AlignedIo(const RawImage& image, size_t max_in_flight, OpSink& sink,
                     size_t bounce_budget)
    : image_(image), sink_(sink), pool_(image.mem_align(), bounce_budget) {
  slots_.resize(max_in_flight);
  free_slots_.reserve(max_in_flight);
  for (size_t i = max_in_flight; i > 0; --i) free_slots_.push_back(static_cast<uint32_t>(i - 1));
  active_writes_.reserve(max_in_flight);
  waiting_.reserve(max_in_flight);
  bounce_waiting_.reserve(max_in_flight);
  ready_.resize(max_in_flight);
}

AlignedIo::~AlignedIo() = default;

std::optional<uint32_t> AlignedIo::take_slot(ReqKind kind, uint64_t offset, uint64_t length,
                                             bool writes, uint64_t cookie) {
  ++accepted_;
  ++requests_;
  if (writes && image_.read_only()) {
    push_ready(cookie, -EROFS);
    return std::nullopt;
  }
  if (kind != ReqKind::kFlush && length == 0) {
    push_ready(cookie, 0);
    return std::nullopt;
  }
  const uint32_t idx = free_slots_.back();
  free_slots_.pop_back();
  Slot& s = slots_[idx];
  s.cookie = cookie;
  s.kind = kind;
  s.offset = offset;
  s.length = length;
  s.pending = 0;
  s.error = 0;
  return idx;
}

Result<void, BlockErr> AlignedIo::submit(ReqKind kind, uint64_t offset, std::span<const iovec> iov,
                                         uint64_t cookie) {
  if (accepted_ >= slots_.size() || free_slots_.empty()) {
    return fail(BlockError::kQueueFull, EAGAIN);
  }
  uint64_t length = 0;
  for (const iovec& v : iov) length += v.iov_len;
  if (kind != ReqKind::kFlush && offset + length < offset) {
    return fail(BlockError::kSubmit, EINVAL, "offset + length overflows");
  }
  const std::optional<uint32_t> taken =
      take_slot(kind, offset, length, kind == ReqKind::kWrite, cookie);
  if (!taken) return {};
  const uint32_t idx = *taken;
  Slot& s = slots_[idx];
  s.guest.assign(iov.begin(), iov.end());
  plan(s);
  if (s.bounced) {
    ++bounced_;
    // GUEST: the size is the guest's; the budget bounds what any request may hold.
    if (!pool_.fits_budget(s.hi - s.lo)) {
      fail_slot(idx, -E2BIG);
      return {};
    }
    if (bounce_waiting_.empty()) s.bounce = pool_.get(s.hi - s.lo);
    if (!s.bounce) {
      if (bounce_waiting_.empty() && pool_.outstanding_bytes() == 0) {
        fail_slot(idx, -ENOMEM);  // nothing in flight will give memory back
        return {};
      }
      bounce_waiting_.push_back(idx);
      return {};
    }
  }
  admit(idx);
  return {};
}

Result<void, BlockErr> AlignedIo::submit_range(ReqKind kind, uint64_t offset, uint64_t length,
                                               bool may_unmap, uint64_t cookie) {
  if (!range_kind(kind)) return fail(BlockError::kSubmit, EINVAL, "not a discard/write-zeroes");
  if (accepted_ >= slots_.size() || free_slots_.empty()) {
    return fail(BlockError::kQueueFull, EAGAIN);
  }
  if (offset + length < offset) return fail(BlockError::kSubmit, EINVAL, "range overflows");
  const std::optional<uint32_t> taken = take_slot(kind, offset, length, true, cookie);
  if (!taken) return {};
  const uint32_t idx = *taken;
  Slot& s = slots_[idx];
  s.lo = offset;
  s.hi = offset + length;
  s.guest.clear();
  s.bounced = false;
  s.rmw = false;
  s.may_unmap = may_unmap;
  s.falloc_mode = 0;
  admit(idx);
  return {};
}

// The next step of a DISCARD/WRITE_ZEROES: the first fallocate mode not known to be refused,
// else the fallback (see submit_range).
void AlignedIo::start_range(uint32_t idx) {
  Slot& s = slots_[idx];
  s.pending = 1;
  bool punch = s.kind == ReqKind::kDiscard || s.may_unmap;
  int mode = 0;
  if (punch && !punch_refused_) {
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  } else if (s.kind == ReqKind::kDiscard) {
    finish(idx, 0);  // advisory: the data may stay
    return;
  } else if (!zero_range_refused_) {
    mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
  }
  s.falloc_mode = mode;
  if (mode != 0) {
    KernelOp op;
    op.kind = KernelOp::Kind::kFallocate;
    op.offset = s.lo;
    op.length = s.hi - s.lo;
    op.mode = mode;
    op.tag = uint64_t{idx} << 2;
    sink_.start(op);
    return;
  }
  const uint64_t oa = image_.offset_align();
  if (image_.direct() && (s.lo % oa != 0 || s.hi % oa != 0)) {
    finish(idx, -EINVAL);
    return;
  }
  if (!zeroes_) {
    zeroes_ = AlignedBuffer::allocate(kZeroChunkBytes / kZeroIovecs, image_.mem_align());
    if (!zeroes_) {
      finish(idx, -ENOMEM);
      return;
    }
    std::memset(zeroes_.data(), 0, zeroes_.size());
  }
  s.zero_pos = s.lo;
  start_zero_chunk(idx);
}

void AlignedIo::start_zero_chunk(uint32_t idx) {
  Slot& s = slots_[idx];
  uint64_t left = std::min(kZeroChunkBytes, s.hi - s.zero_pos);
  s.guest.clear();
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeroes_.size()));
    s.guest.push_back({zeroes_.data(), n});
    left -= n;
  }
  s.pending = 1;
  start_op(idx, Part::kMain, KernelOp::Kind::kWrite, s.zero_pos, s.guest.data(),
           static_cast<int>(s.guest.size()));
}

void AlignedIo::range_done(uint32_t idx, int64_t result) {
  Slot& s = slots_[idx];
  if (s.falloc_mode != 0) {
    if (result == -EOPNOTSUPP || result == -ENOSYS) {
      // The file system (or the kernel) does not do this mode: remember, and fall back.
      if (s.falloc_mode & FALLOC_FL_PUNCH_HOLE) {
        punch_refused_ = true;
      } else {
        zero_range_refused_ = true;
      }
      start_range(idx);
      return;
    }
    finish(idx, result < 0 ? result : 0);
    return;
  }
  uint64_t chunk = std::min(kZeroChunkBytes, s.hi - s.zero_pos);
  if (result < 0 || static_cast<uint64_t>(result) != chunk) {
    finish(idx, result < 0 ? result : -EIO);
    return;
  }
  s.zero_pos += chunk;
  if (s.zero_pos == s.hi) {
    finish(idx, 0);
    return;
  }
  start_zero_chunk(idx);
}

// Starts a request that has what it needs, or queues a write behind an overlapping one.
void AlignedIo::admit(uint32_t idx) {
  Slot& s = slots_[idx];
  if (writes(s.kind) && conflicts(s, waiting_.size())) {
    waiting_.push_back(idx);
    return;
  }
  start_slot(idx);
}

void AlignedIo::fail_slot(uint32_t idx, int64_t result) {
  free_slots_.push_back(idx);
  push_ready(slots_[idx].cookie, result);
}

// Hands returned bounce memory to the waiting requests, oldest first.
void AlignedIo::start_bounce_waiters() {
  while (!bounce_waiting_.empty()) {
    uint32_t idx = bounce_waiting_.front();
    Slot& s = slots_[idx];
    s.bounce = pool_.get(s.hi - s.lo);
    if (!s.bounce && pool_.outstanding_bytes() > 0) return;  // more comes back later
    bounce_waiting_.erase(bounce_waiting_.begin());
    if (!s.bounce) {
      fail_slot(idx, -ENOMEM);
      continue;
    }
    admit(idx);
  }
}

// Decides whether the request can go straight from the caller's buffers.
void AlignedIo::plan(Slot& s) {
  s.lo = s.offset;
  s.hi = s.offset + s.length;
  s.bounced = false;
  s.rmw = false;
  if (s.kind == ReqKind::kFlush) return;
  // More iovecs than one preadv/pwritev takes are gathered into one buffer, direct or not.
  bool mem_ok = s.guest.size() <= IOV_MAX;
  if (mem_ok && !image_.direct()) return;
  const uint64_t oa = image_.offset_align();
  const uint64_t ma = image_.mem_align();
  bool range_ok = !image_.direct() || (s.offset % oa == 0 && s.length % oa == 0);
  // GUEST: buffer addresses and lengths come from the guest; O_DIRECT checks each segment.
  for (size_t i = 0; mem_ok && i < s.guest.size(); ++i) {
    const iovec& v = s.guest[i];
    if (reinterpret_cast<uintptr_t>(v.iov_base) % ma != 0 || v.iov_len % oa != 0) mem_ok = false;
  }
  if (range_ok && mem_ok) return;
  s.bounced = true;
  if (!image_.direct()) return;  // buffered: any offset and length go as they are
  s.lo = round_down(s.offset, oa);
  s.hi = round_up(s.offset + s.length, oa);
  s.rmw = s.kind == ReqKind::kWrite && !range_ok;
}

// A request conflicts when it overlaps an active or earlier waiting write and either of the
// two is a read-modify-write (which rewrites bytes outside its own range).
bool AlignedIo::conflicts(const Slot& s, size_t waiting_before) const {
  if (!s.rmw && active_rmw_ == 0 && waiting_before == 0) return false;
  for (uint32_t i : active_writes_) {
    const Slot& o = slots_[i];
    if ((s.rmw || o.rmw) && overlaps(s.lo, s.hi, o.lo, o.hi)) return true;
  }
  for (size_t w = 0; w < waiting_before; ++w) {
    const Slot& o = slots_[waiting_[w]];
    // Anything overlapping a waiting write keeps its place behind it.
    if (overlaps(s.lo, s.hi, o.lo, o.hi)) return true;
  }
  return false;
}

void AlignedIo::start_slot(uint32_t idx) {
  Slot& s = slots_[idx];
  if (writes(s.kind)) {
    s.active_write = true;
    s.active_pos = active_writes_.size();
    active_writes_.push_back(idx);
    if (s.rmw) ++active_rmw_;
  }
  if (!s.rmw) {
    start_main(idx);
    return;
  }
  // Read the partial head and tail blocks first; the guest bytes go in between afterwards.
  const uint64_t oa = image_.offset_align();
  bool head = s.offset % oa != 0;
  bool tail = (s.offset + s.length) % oa != 0;
  uint64_t span = s.hi - s.lo;
  if (head && tail && span == oa) tail = false;  // one block holds both ends
  s.bounce_iov[0] = {s.bounce.data(), static_cast<size_t>(oa)};
  s.bounce_iov[1] = {s.bounce.data() + span - oa, static_cast<size_t>(oa)};
  s.pending = (head ? 1 : 0) + (tail ? 1 : 0);
  if (head) start_op(idx, Part::kHead, KernelOp::Kind::kRead, s.lo, &s.bounce_iov[0], 1);
  if (tail) start_op(idx, Part::kTail, KernelOp::Kind::kRead, s.hi - oa, &s.bounce_iov[1], 1);
}

void AlignedIo::start_main(uint32_t idx) {
  Slot& s = slots_[idx];
  if (range_kind(s.kind)) return start_range(idx);
  s.pending = 1;
  if (s.kind == ReqKind::kFlush) {
    start_op(idx, Part::kMain, KernelOp::Kind::kSync, 0, nullptr, 0);
    return;
  }
  auto kind = s.kind == ReqKind::kRead ? KernelOp::Kind::kRead : KernelOp::Kind::kWrite;
  if (!s.bounced) {
    start_op(idx, Part::kMain, kind, s.lo, s.guest.data(), static_cast<int>(s.guest.size()));
    return;
  }
  if (s.kind == ReqKind::kWrite) gather(s.bounce.data() + (s.offset - s.lo), s.guest, s.length);
  s.bounce_iov[0] = {s.bounce.data(), static_cast<size_t>(s.hi - s.lo)};
  start_op(idx, Part::kMain, kind, s.lo, &s.bounce_iov[0], 1);
}

void AlignedIo::start_op(uint32_t idx, Part part, KernelOp::Kind kind, uint64_t offset,
                         const iovec* iov, int iovcnt) {
  KernelOp op;
  op.kind = kind;
  op.offset = offset;
  op.iov = iov;
  op.iovcnt = iovcnt;
  op.tag = (uint64_t{idx} << 2) | static_cast<uint64_t>(part);
  sink_.start(op);
}

void AlignedIo::complete(uint64_t tag, int64_t result) {
  uint32_t idx = static_cast<uint32_t>(tag >> 2);
  auto part = static_cast<Part>(tag & 3);
  if (idx >= slots_.size()) return;
  Slot& s = slots_[idx];
  if (range_kind(s.kind)) return range_done(idx, result);
  uint64_t expected = 0;
  uint64_t op_offset = 0;
  if (s.kind == ReqKind::kFlush) {
    if (result > 0) result = 0;
  } else {
    expected = part == Part::kMain ? s.hi - s.lo : image_.offset_align();
    op_offset = part == Part::kTail ? s.hi - image_.offset_align() : s.lo;
  }
  bool is_read = s.kind == ReqKind::kRead || part != Part::kMain;
  if (result >= 0 && static_cast<uint64_t>(result) < expected) {
    if (is_read && op_offset + static_cast<uint64_t>(result) >= image_.size_bytes()) {
      // Short at the end of the image: the rest reads as zeroes.
      const iovec* v = part == Part::kTail ? &s.bounce_iov[1] : &s.bounce_iov[0];
      if (s.bounced)
        zero_from({v, 1}, static_cast<size_t>(result));
      else
        zero_from(s.guest, static_cast<size_t>(result));
    } else {
      result = -EIO;  // a short write (or a short read inside the image)
    }
  }
  if (result < 0 && s.error == 0) s.error = result;
  if (--s.pending > 0) return;
  if (s.error != 0) {
    finish(idx, s.error);
    return;
  }
  if (part != Part::kMain) {
    start_main(idx);  // the head/tail blocks are in: write the whole widened range
    return;
  }
  if (s.kind == ReqKind::kRead && s.bounced) {
    scatter(s.guest, s.bounce.data() + (s.offset - s.lo), s.length);
  }
  finish(idx, s.kind == ReqKind::kFlush ? 0 : static_cast<int64_t>(s.length));
}

void AlignedIo::finish(uint32_t idx, int64_t result) {
  Slot& s = slots_[idx];
  bool returned = static_cast<bool>(s.bounce);
  if (returned) pool_.put(std::move(s.bounce));
  s.bounce = AlignedBuffer();
  bool was_write = s.active_write;
  if (was_write) remove_active(idx);
  push_ready(s.cookie, result);
  free_slots_.push_back(idx);
  if (was_write && !waiting_.empty()) start_waiters();
  if (returned && !bounce_waiting_.empty()) start_bounce_waiters();
}

void AlignedIo::remove_active(uint32_t idx) {
  Slot& s = slots_[idx];
  uint32_t last = active_writes_.back();
  active_writes_[s.active_pos] = last;
  slots_[last].active_pos = s.active_pos;
  active_writes_.pop_back();
  s.active_write = false;
  if (s.rmw) --active_rmw_;
}

// Starts, in order, every waiting write that no longer overlaps anything ahead of it.
void AlignedIo::start_waiters() {
  size_t w = 0;
  while (w < waiting_.size()) {
    uint32_t idx = waiting_[w];
    if (conflicts(slots_[idx], w)) {
      ++w;
      continue;
    }
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(w));
    start_slot(idx);
  }
}

void AlignedIo::push_ready(uint64_t cookie, int64_t result) {
  ready_[(ready_head_ + ready_count_) % ready_.size()] = Completion{cookie, result};
  ++ready_count_;
}

size_t AlignedIo::take(std::span<Completion> out) {
  size_t n = std::min(out.size(), ready_count_);
  for (size_t i = 0; i < n; ++i) {
    out[i] = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) % ready_.size();
  }
  ready_count_ -= n;
  accepted_ -= n;
  return n;
}

}  // namespace kindling::block
