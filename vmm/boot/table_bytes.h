// Byte helpers the firmware tables (MP table, ACPI) share: appending an on-wire struct to a
// table being built, and the checksum byte that makes a table's bytes sum to zero.
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

namespace kindling::vmm {

// The byte that makes `bytes` (with that byte still 0 among them) sum to zero modulo 256: the
// checksum of MP spec 4.1/4.2 structures and of ACPI tables (ACPI 6.4, 5.2.5.3 / 5.2.6).
inline uint8_t table_checksum(std::span<const uint8_t> bytes) {
  const uint8_t sum = std::accumulate(bytes.begin(), bytes.end(), uint8_t{0});
  return static_cast<uint8_t>(-sum);
}

// Appends the bytes of the packed, trivially-copyable on-wire struct `v` to `out`.
template <typename T>
void append_obj(std::vector<uint8_t>& out, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  auto p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace kindling::vmm
