// Shared by the virtqueue fuzzers: a small guest RAM whose bytes come from the fuzzer, and a
// queue placed in it. Input: byte 0 picks the queue size (1..256, powers of two), byte 1 the
// negotiated features (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC); the rest is copied to RAM from
// address 0, where the descriptor table, the avail ring and the used ring live.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "common/memory/guest_memory.h"
#include "virtio/queue.h"

namespace kindling::fuzz {

inline constexpr uint64_t kRamBytes = 64 * 1024;
inline constexpr uint64_t kDescAddr = 0x0000;   // 256 descriptors: 4 KiB
inline constexpr uint64_t kAvailAddr = 0x1000;  // 4 + 2 * 256 + 2 bytes
inline constexpr uint64_t kUsedAddr = 0x2000;   // 4 + 8 * 256 + 2 bytes
inline constexpr uint16_t kMaxQueue = 256;

// The fuzzer's RAM, created once and refilled per input.
inline const memory::GuestMemory& ram() {
  static const memory::GuestMemory mem = *memory::GuestMemory::create({{0, kRamBytes}});
  return mem;
}

// Fills RAM from `data` (zero past its end) and returns a queue set up over it; nullopt when
// the input is too short or the layout is not valid for the chosen size.
inline std::optional<virtio::Queue> make_queue(const uint8_t* data, size_t size) {
  if (size < 2) return std::nullopt;
  auto all = *ram().slice(memory::GuestAddress(0), kRamBytes);
  const size_t n = std::min<size_t>(size - 2, kRamBytes);
  std::memcpy(all.data(), data + 2, n);
  std::memset(all.data() + n, 0, kRamBytes - n);
  virtio::Queue q(kMaxQueue);
  q.set_size(static_cast<uint16_t>(1u << (data[0] % 9)));
  q.set_event_idx((data[1] & 1) != 0);
  q.set_indirect((data[1] & 2) != 0);
  q.set_desc_table(memory::GuestAddress(kDescAddr));
  q.set_avail_ring(memory::GuestAddress(kAvailAddr));
  q.set_used_ring(memory::GuestAddress(kUsedAddr));
  if (!q.is_valid(ram())) return std::nullopt;
  q.set_ready(true);
  return q;
}

}  // namespace kindling::fuzz
