// Aligned bounce buffers for direct I/O, recycled so the steady state does not allocate.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kindling::block {

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

// A small pool of aligned buffers in power-of-two size classes (4 KiB .. 4 MiB). Larger requests
// are allocated and freed each time. Single-threaded, like the engine that owns it.
class BouncePool {
 public:
  // `align`: the memory alignment every buffer gets (at least 4096).
  explicit BouncePool(size_t align);

  // A buffer of at least `size` bytes; empty when memory is exhausted.
  AlignedBuffer get(size_t size);
  // Returns a buffer for reuse (dropped when its class is already full).
  void put(AlignedBuffer buf);

  // Buffers allocated since construction (steady state: stops growing).
  uint64_t allocations() const { return allocations_; }

 private:
  static constexpr size_t kMinShift = 12;  // 4 KiB
  static constexpr size_t kClasses = 11;   // up to 4 MiB
  static constexpr size_t kKeepPerClass = 32;

  size_t align_;
  uint64_t allocations_ = 0;
  std::array<std::vector<AlignedBuffer>, kClasses> free_;
};

}  // namespace kindling::block
