// Guest memory for tests: a standard layout with a hole, and a bump allocator for buffers.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/memory/guest_memory.h"

namespace kindling::test {

using memory::GuestAddress;
using memory::GuestMemory;

// Default test layout: RAM [0, 16 MiB), a hole [16 MiB, 32 MiB), RAM [32 MiB, 48 MiB).
inline constexpr uint64_t kLowRamEnd = 16ULL << 20;
inline constexpr uint64_t kHighRamBase = 32ULL << 20;
inline constexpr uint64_t kHighRamEnd = 48ULL << 20;

// Memory with the default layout (`low`/`high` resize the two regions; high 0 = no hole).
// Aborts on failure: tests cannot do anything useful without memory.
memory::GuestMemory make_test_memory(uint64_t low = kLowRamEnd,
                                     uint64_t high = kHighRamEnd - kHighRamBase);
// Memory with exactly the given (base, size) regions. Aborts on failure.
memory::GuestMemory make_test_memory(const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

// Hands out aligned, non-overlapping guest ranges from [begin, end). Every range it returns lies
// inside one memory region (checked at allocation). Aborts when exhausted.
class GuestAllocator {
 public:
  GuestAllocator(const memory::GuestMemory& mem, memory::GuestAddress begin,
                 memory::GuestAddress end);
  // A fresh range of `len` bytes aligned to `align` (a power of two).
  memory::GuestAddress alloc(uint64_t len, uint64_t align = 8);
  // Allocates and copies `data` in.
  memory::GuestAddress alloc_copy(std::span<const uint8_t> data, uint64_t align = 8);

 private:
  const memory::GuestMemory& mem_;
  uint64_t next_;
  uint64_t end_;
};

// Copies guest memory out (aborts when the range is not RAM).
std::vector<uint8_t> read_guest(const memory::GuestMemory& mem, memory::GuestAddress addr,
                                uint64_t len);
// Copies into guest memory (aborts when the range is not RAM).
void write_guest(const memory::GuestMemory& mem, memory::GuestAddress addr,
                 std::span<const uint8_t> data);
// Fills guest memory with one byte value (aborts when the range is not RAM).
void fill_guest(const memory::GuestMemory& mem, memory::GuestAddress addr, uint64_t len,
                uint8_t value);

}  // namespace kindling::test
