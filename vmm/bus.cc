#include "vmm/bus.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "common/log.h"

namespace kindling::vmm {

const char* to_string(BusError e) {
  switch (e) {
    case BusError::kEmptyRange:
      return "empty address range";
    case BusError::kOverflow:
      return "address range wraps around";
    case BusError::kOverlap:
      return "address range overlaps a registered device";
    case BusError::kNullDevice:
      return "no device given";
  }
  return "bus error";
}

namespace {

std::string range_text(const std::string& bus, uint64_t base, uint64_t len) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%s [0x%" PRIx64 ", 0x%" PRIx64 ")", bus.c_str(), base,
                base + len);
  return buf;
}

}  // namespace

Result<void, BusErr> Bus::insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device) {
  if (!device) return fail(BusError::kNullDevice, 0, range_text(name_, base, len));
  if (len == 0) return fail(BusError::kEmptyRange, 0, range_text(name_, base, len));
  if (base + len < base) return fail(BusError::kOverflow, 0, range_text(name_, base, len));
  // First range starting at or after `base`; it and its predecessor are the only candidates.
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                             [](const Range& r, uint64_t b) { return r.base < b; });
  if (it != ranges_.end() && it->base < base + len) {
    return fail(BusError::kOverlap, 0, range_text(name_, base, len));
  }
  if (it != ranges_.begin()) {
    const Range& prev = *std::prev(it);
    if (prev.base + prev.len > base) {
      return fail(BusError::kOverlap, 0, range_text(name_, base, len));
    }
  }
  ranges_.insert(it, Range{base, len, std::move(device)});
  return {};
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t size) const {
  // Last range with base <= addr.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  const Range& r = *std::prev(it);
  uint64_t off = addr - r.base;
  // GUEST: the access must lie wholly inside the range (checked without overflow).
  if (off >= r.len || size > r.len - off) return nullptr;
  return &r;
}

void Bus::count_unclaimed(const char* kind, uint64_t addr, size_t size) const {
  uint64_t n = unclaimed_.fetch_add(1, std::memory_order_relaxed) + 1;
  KLOG_DEBUG_RATELIMITED("%s: unclaimed %zu-byte %s at 0x%" PRIx64 " (%" PRIu64 " so far)",
                         name_.c_str(), size, kind, addr, n);
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (r == nullptr) {
    std::memset(data.data(), 0xff, data.size());
    count_unclaimed("read", addr, data.size());
    return false;
  }
  r->device->read(addr - r->base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (r == nullptr) {
    count_unclaimed("write", addr, data.size());
    return false;
  }
  r->device->write(addr - r->base, data);
  return true;
}

}  // namespace kindling::vmm
