// libFuzzer target: the split virtqueue's chain walk, pop and push over fuzzed guest memory.
// Every descriptor field, ring index and flag is the fuzzer's; nothing may crash, hang or
// touch memory outside guest RAM (ASan), and a chain may be popped at most once in flight.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_ring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kindling;
  auto q = fuzz::make_queue(data, size);
  if (!q) return 0;
  virtio::QueueElement elem;
  // At most twice the queue size: a well-behaved ring empties before that.
  for (int i = 0; i < 2 * fuzz::kMaxQueue; ++i) {
    auto popped = q->pop(fuzz::ram(), elem);
    if (!popped || !*popped) break;
    const uint32_t len = elem.in_bytes > 0 ? 1 : 0;
    if (!q->push(fuzz::ram(), elem.head, len)) break;
    (void)q->needs_interrupt(fuzz::ram());
  }
  (void)q->disable_notification(fuzz::ram());
  (void)q->enable_notification(fuzz::ram());
  return 0;
}
