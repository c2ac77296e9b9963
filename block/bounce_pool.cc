#include "block/bounce_pool.h"

#include <algorithm>
#include <bit>
#include <cstdlib>

namespace kindling::block {

void AlignedBuffer::Free::operator()(void* p) const {
  std::free(p);
}

AlignedBuffer AlignedBuffer::allocate(size_t size, size_t align) {
  AlignedBuffer b;
  void* p = nullptr;
  if (::posix_memalign(&p, align, size) != 0) return b;
  b.mem_.reset(p);
  b.size_ = size;
  return b;
}

BouncePool::BouncePool(size_t align) : align_(std::max<size_t>(align, size_t{1} << kMinShift)) {}

AlignedBuffer BouncePool::get(size_t size) {
  size_t rounded = std::bit_ceil(std::max(size, size_t{1} << kMinShift));
  size_t cls = static_cast<size_t>(std::countr_zero(rounded)) - kMinShift;
  if (cls < kClasses && !free_[cls].empty()) {
    AlignedBuffer b = std::move(free_[cls].back());
    free_[cls].pop_back();
    return b;
  }
  ++allocations_;
  // Oversized requests get their exact size: they are not kept.
  return AlignedBuffer::allocate(cls < kClasses ? rounded : size, align_);
}

void BouncePool::put(AlignedBuffer buf) {
  if (!buf || !std::has_single_bit(buf.size())) return;
  size_t cls = static_cast<size_t>(std::countr_zero(buf.size()));
  if (cls < kMinShift) return;
  cls -= kMinShift;
  if (cls < kClasses && free_[cls].size() < kKeepPerClass) free_[cls].push_back(std::move(buf));
}

}  // namespace kindling::block
