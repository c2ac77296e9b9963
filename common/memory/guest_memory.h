// Guest physical memory: the only way kindling reads or writes guest RAM.
//
// Every access names a guest address and a length; both are checked (overflow-safe) against the
// regions before any host pointer is formed. There is deliberately no "guest address to host
// pointer" helper: callers get a bounds-checked std::span or a copy.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/result.h"

namespace kindling::memory {

// A guest physical address (a distinct type so it is never mixed up with host pointers).
struct GuestAddress {
  uint64_t value = 0;
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t v) : value(v) {}
  // Adds an offset; check with GuestMemory before dereferencing (may wrap).
  constexpr GuestAddress operator+(uint64_t off) const { return GuestAddress(value + off); }
  constexpr auto operator<=>(const GuestAddress&) const = default;
};

enum class MemoryError { kOutOfRange, kOverflow, kMap, kBadLayout };
const char* to_string(MemoryError e);

// One contiguous range of guest RAM and the host memory behind it.
struct MemoryRegion {
  GuestAddress base;
  uint64_t size = 0;
  uint8_t* host = nullptr;  // start of the host mapping, for KVM slot registration only
};

// The 32-bit MMIO hole: RAM that would fall in [3 GiB, 4 GiB) continues at 4 GiB.
inline constexpr uint64_t kMmioHoleStart = 0xC000'0000ULL;
inline constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000ULL;

// Owns guest RAM (anonymous mmaps) and gives checked access to it.
class GuestMemory {
 public:
  using Err = Error<MemoryError>;

  // Maps `ram_bytes` of RAM at guest address 0, split around the MMIO hole.
  static Result<GuestMemory, Err> create_ram(uint64_t ram_bytes);
  // Maps the given (base, size) ranges; they must be page-aligned, sorted and disjoint.
  // Tests use this to make memory with holes.
  static Result<GuestMemory, Err> create(const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

  GuestMemory(GuestMemory&& o) noexcept;
  GuestMemory& operator=(GuestMemory&& o) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  // Host view of [addr, addr+len), which must lie inside one region. len 0 is allowed.
  Result<std::span<uint8_t>, Err> slice(GuestAddress addr, uint64_t len) const;
  // Copies guest memory out; all-or-nothing.
  Result<void, Err> read(GuestAddress addr, std::span<uint8_t> out) const;
  // Copies into guest memory; all-or-nothing.
  Result<void, Err> write(GuestAddress addr, std::span<const uint8_t> in) const;
  // True when [addr, addr+len) lies inside one region.
  bool contains(GuestAddress addr, uint64_t len) const;

  // Reads a trivially-copyable object.
  template <typename T>
  Result<T, Err> read_obj(GuestAddress addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    auto r = read(addr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof(T)));
    if (!r) return r.take_error();
    return v;
  }
  // Writes a trivially-copyable object.
  template <typename T>
  Result<void, Err> write_obj(GuestAddress addr, const T& v) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(addr, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), sizeof(T)));
  }

  // The RAM regions, sorted by base.
  std::span<const MemoryRegion> regions() const { return regions_; }
  // Total bytes of RAM.
  uint64_t total_size() const;

 private:
  GuestMemory() = default;
  void unmap_all();
  std::vector<MemoryRegion> regions_;
};

}  // namespace kindling::memory
