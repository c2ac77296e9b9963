// Aligned bounce buffers for direct I/O, recycled so the steady state does not allocate, and
// held within a fixed memory budget so that no guest request can make the host allocate more.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kindling::block {

// The bounce memory one image's engine may hold at once (buffers in use plus those kept for
// reuse): four of the largest requests the device forwards (1 MiB, widened and rounded up to
// the 2 MiB class), or 2048 bounced 4 KiB requests.
inline constexpr size_t kBounceBudgetBytes = size_t{8} << 20;

// One aligned heap buffer (posix_memalign), freed on destruction.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Allocates `size` bytes aligned to `align` (a power of two); empty on failure.
  static AlignedBuffer allocate(size_t size, size_t align);

  uint8_t* data() const { return static_cast<uint8_t*>(mem_.get()); }
  size_t size() const { return size_; }
  explicit operator bool() const { return mem_ != nullptr; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> mem_;
  size_t size_ = 0;
};

// A small pool of aligned buffers in power-of-two size classes (4 KiB .. 4 MiB); larger ones
// are allocated at their exact size and freed when returned. Every byte it holds (handed out
// or kept for reuse) counts against `budget`: get() drops kept buffers to make room, and
// refuses rather than allocate past the budget. Single-threaded, like the engine that owns it.
class BouncePool {
 public:
  // `align`: the memory alignment every buffer gets (at least 4096); `budget`: the most bytes
  // the pool holds at any time.
  explicit BouncePool(size_t align, size_t budget = kBounceBudgetBytes);

  // Whether a buffer of `size` bytes can ever be had (its allocation fits the whole budget).
  bool fits_budget(size_t size) const;
  // A buffer of at least `size` bytes; empty when it would pass the budget (wait for put())
  // or memory is exhausted.
  AlignedBuffer get(size_t size);
  // Returns a buffer for reuse (freed when its class is already full).
  void put(AlignedBuffer buf);

  // Buffers allocated since construction (steady state: stops growing).
  uint64_t allocations() const { return allocations_; }
  // Bytes of the buffers handed out and not yet returned.
  size_t outstanding_bytes() const { return outstanding_; }
  // Bytes held now (handed out + kept) / the most ever held / the budget.
  size_t held_bytes() const { return held_; }
  size_t high_water_bytes() const { return high_water_; }
  size_t budget_bytes() const { return budget_; }

 private:
  static constexpr size_t kMinShift = 12;  // 4 KiB
  static constexpr size_t kClasses = 11;   // up to 4 MiB
  static constexpr size_t kKeepPerClass = 32;

  // The bytes get(size) allocates.
  static size_t alloc_size(size_t size);
  // Frees kept buffers, largest first, until `need` more bytes fit the budget.
  bool make_room(size_t need);

  size_t align_;
  size_t budget_;
  uint64_t allocations_ = 0;
  size_t outstanding_ = 0;
  size_t held_ = 0;
  size_t high_water_ = 0;
  std::array<std::vector<AlignedBuffer>, kClasses> free_;
};

}  // namespace kindling::block
