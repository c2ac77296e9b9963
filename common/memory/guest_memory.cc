#include "common/memory/guest_memory.h"

#include <sys/mman.h>

#include <utility>

namespace kindling::memory {

const char* to_string(MemoryError e) {
  switch (e) {
    case MemoryError::kOutOfRange:
      return "guest address range is outside guest RAM";
    case MemoryError::kOverflow:
      return "guest address range overflows";
    case MemoryError::kMap:
      return "cannot map guest RAM";
    case MemoryError::kBadLayout:
      return "bad guest memory layout";
  }
  return "guest memory error";
}

namespace {
constexpr uint64_t kPage = 4096;

std::string range_text(GuestAddress a, uint64_t len) {
  char buf[64];
  snprintf(buf, sizeof(buf), "[0x%llx, +0x%llx)", static_cast<unsigned long long>(a.value),
           static_cast<unsigned long long>(len));
  return buf;
}
}  // namespace

Result<GuestMemory, GuestMemory::Err> GuestMemory::create_ram(uint64_t ram_bytes) {
  if (ram_bytes == 0 || ram_bytes % kPage != 0) {
    return fail(MemoryError::kBadLayout, 0, "RAM size must be a non-zero multiple of 4 KiB");
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t low = std::min(ram_bytes, kMmioHoleStart);
  ranges.emplace_back(0, low);
  if (ram_bytes > low) ranges.emplace_back(kMmioHoleEnd, ram_bytes - low);
  return create(ranges);
}

Result<GuestMemory, GuestMemory::Err> GuestMemory::create(
    const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  GuestMemory mem;
  uint64_t prev_end = 0;
  for (auto [base, size] : ranges) {
    if (size == 0 || base % kPage != 0 || size % kPage != 0 || base + size < base ||
        (!mem.regions_.empty() && base < prev_end)) {
      return fail(MemoryError::kBadLayout, 0, range_text(GuestAddress(base), size));
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return fail_errno(MemoryError::kMap, range_text(GuestAddress(base), size));
    madvise(p, size, MADV_DONTFORK);
    mem.regions_.push_back({GuestAddress(base), size, static_cast<uint8_t*>(p)});
    prev_end = base + size;
  }
  return mem;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept : regions_(std::exchange(o.regions_, {})) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    unmap_all();
    regions_ = std::exchange(o.regions_, {});
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  unmap_all();
}

void GuestMemory::unmap_all() {
  for (auto& r : regions_) munmap(r.host, r.size);
  regions_.clear();
}

Result<std::span<uint8_t>, GuestMemory::Err> GuestMemory::slice(GuestAddress addr,
                                                                uint64_t len) const {
  uint64_t end = addr.value + len;
  if (end < addr.value) return fail(MemoryError::kOverflow, 0, range_text(addr, len));
  for (const auto& r : regions_) {
    uint64_t rend = r.base.value + r.size;
    if (addr.value >= r.base.value && end <= rend && addr.value < rend) {
      return std::span<uint8_t>(r.host + (addr.value - r.base.value), len);
    }
    // An empty range exactly at a region's end is still "inside" it.
    if (len == 0 && addr.value == rend) return std::span<uint8_t>(r.host + r.size, 0);
  }
  return fail(MemoryError::kOutOfRange, 0, range_text(addr, len));
}

bool GuestMemory::contains(GuestAddress addr, uint64_t len) const {
  return slice(addr, len).has_value();
}

Result<void, GuestMemory::Err> GuestMemory::read(GuestAddress addr, std::span<uint8_t> out) const {
  auto s = slice(addr, out.size());
  if (!s) return s.take_error();
  if (!out.empty()) std::memcpy(out.data(), s->data(), out.size());
  return {};
}

Result<void, GuestMemory::Err> GuestMemory::write(GuestAddress addr,
                                                  std::span<const uint8_t> in) const {
  auto s = slice(addr, in.size());
  if (!s) return s.take_error();
  if (!in.empty()) std::memcpy(s->data(), in.data(), in.size());
  return {};
}

uint64_t GuestMemory::total_size() const {
  uint64_t t = 0;
  for (const auto& r : regions_) t += r.size;
  return t;
}

}  // namespace kindling::memory
