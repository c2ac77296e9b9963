#include "tests/support/test_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kindling::test {

namespace {
[[noreturn]] void die(const char* what, uint64_t a, uint64_t b) {
  fprintf(stderr, "test support: %s (0x%llx, 0x%llx)\n", what, static_cast<unsigned long long>(a),
          static_cast<unsigned long long>(b));
  std::abort();
}
}  // namespace

memory::GuestMemory make_test_memory(uint64_t low, uint64_t high) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges{{0, low}};
  if (high != 0) ranges.emplace_back(std::max<uint64_t>(kHighRamBase, low + (16ULL << 20)), high);
  return make_test_memory(ranges);
}

memory::GuestMemory make_test_memory(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  auto m = memory::GuestMemory::create(ranges);
  if (!m) {
    fprintf(stderr, "test support: %s\n", m.error().message().c_str());
    std::abort();
  }
  return std::move(*m);
}

GuestAllocator::GuestAllocator(const memory::GuestMemory& mem, memory::GuestAddress begin,
                               memory::GuestAddress end)
    : mem_(mem), next_(begin.value), end_(end.value) {
  if (end_ < next_) die("allocator range is inverted", next_, end_);
}

memory::GuestAddress GuestAllocator::alloc(uint64_t len, uint64_t align) {
  uint64_t at = (next_ + align - 1) & ~(align - 1);
  if (at < next_ || at + len < at || at + len > end_) die("guest allocator exhausted", at, len);
  if (!mem_.contains(memory::GuestAddress(at), len))
    die("allocation is not inside one region", at, len);
  next_ = at + len;
  return memory::GuestAddress(at);
}

memory::GuestAddress GuestAllocator::alloc_copy(std::span<const uint8_t> data, uint64_t align) {
  memory::GuestAddress a = alloc(data.size(), align);
  write_guest(mem_, a, data);
  return a;
}

std::vector<uint8_t> read_guest(const memory::GuestMemory& mem, memory::GuestAddress addr,
                                uint64_t len) {
  std::vector<uint8_t> out(len);
  if (!mem.read(addr, out)) die("read outside guest RAM", addr.value, len);
  return out;
}

void write_guest(const memory::GuestMemory& mem, memory::GuestAddress addr,
                 std::span<const uint8_t> data) {
  if (!mem.write(addr, data)) die("write outside guest RAM", addr.value, data.size());
}

void fill_guest(const memory::GuestMemory& mem, memory::GuestAddress addr, uint64_t len,
                uint8_t value) {
  auto s = mem.slice(addr, len);
  if (!s) die("fill outside guest RAM", addr.value, len);
  std::memset(s->data(), value, len);
}

}  // namespace kindling::test
