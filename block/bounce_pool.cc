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

BouncePool::BouncePool(size_t align, size_t budget)
    : align_(std::max<size_t>(align, size_t{1} << kMinShift)), budget_(budget) {}

size_t BouncePool::alloc_size(size_t size) {
  // Oversized requests get their exact size: no class holds them and they are not kept.
  if (size > (size_t{1} << (kMinShift + kClasses - 1))) return size;
  return std::bit_ceil(std::max(size, size_t{1} << kMinShift));
}

bool BouncePool::fits_budget(size_t size) const {
  return alloc_size(size) <= budget_;
}

bool BouncePool::make_room(size_t need) {
  for (size_t cls = kClasses; cls > 0 && held_ + need > budget_; --cls) {
    auto& kept = free_[cls - 1];
    while (!kept.empty() && held_ + need > budget_) {
      held_ -= kept.back().size();
      kept.pop_back();
    }
  }
  return held_ + need <= budget_;
}

AlignedBuffer BouncePool::get(size_t size) {
  size_t need = alloc_size(size);
  if (need > budget_) return AlignedBuffer();
  size_t cls = std::has_single_bit(need) ? static_cast<size_t>(std::countr_zero(need)) - kMinShift
                                         : kClasses;
  if (cls < kClasses && !free_[cls].empty()) {
    AlignedBuffer b = std::move(free_[cls].back());
    free_[cls].pop_back();
    outstanding_ += b.size();
    return b;
  }
  if (!make_room(need)) return AlignedBuffer();
  AlignedBuffer b = AlignedBuffer::allocate(need, align_);
  if (!b) return b;
  ++allocations_;
  outstanding_ += need;
  held_ += need;
  high_water_ = std::max(high_water_, held_);
  return b;
}

void BouncePool::put(AlignedBuffer buf) {
  if (!buf) return;
  outstanding_ -= buf.size();
  if (std::has_single_bit(buf.size())) {
    size_t cls = static_cast<size_t>(std::countr_zero(buf.size()));
    if (cls >= kMinShift && cls - kMinShift < kClasses &&
        free_[cls - kMinShift].size() < kKeepPerClass) {
      free_[cls - kMinShift].push_back(std::move(buf));
      return;
    }
  }
  held_ -= buf.size();  // `buf` is freed on return
}

}  // namespace kindling::block
