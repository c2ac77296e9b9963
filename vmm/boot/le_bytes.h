// Little-endian integers read from byte buffers (boot headers, IDT gates, exception frames,
// instruction displacements), independent of the host's byte order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kindling::vmm {

// The sizeof(T)-byte little-endian unsigned integer at `b[at]`; the caller checks the bounds.
template <typename T>
T load_le(std::span<const uint8_t> b, size_t at) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(b[at + i]) << (8 * i));
  return v;
}

// 16-bit little-endian value at `b[at]`.
inline uint16_t le16(std::span<const uint8_t> b, size_t at) {
  return load_le<uint16_t>(b, at);
}
// 32-bit little-endian value at `b[at]`.
inline uint32_t le32(std::span<const uint8_t> b, size_t at) {
  return load_le<uint32_t>(b, at);
}
// 64-bit little-endian value at `b[at]`.
inline uint64_t le64(std::span<const uint8_t> b, size_t at) {
  return load_le<uint64_t>(b, at);
}

}  // namespace kindling::vmm
