// libFuzzer target: the virtio-mmio transport driven by a fuzzed stream of register reads and
// writes (any offset, width and value: feature negotiation, queue setup, notifies, resets,
// config space), with a real virtio-blk device and its I/O thread behind it over the tests'
// FakeEngine completing every request at once, and fuzzed guest RAM for the rings. Input:
// byte 0 is the number of register accesses N (at most 64), then N accesses of 6 bytes (kind,
// offset, value), then guest RAM.
#include <linux/virtio_mmio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/memory/guest_memory.h"
#include "tests/unit/virtio_blk/fake_engine.h"
#include "virtio/blk_device.h"
#include "virtio/mmio_transport.h"

namespace {

using namespace kindling;

constexpr uint64_t kRamBytes = 64 * 1024;
constexpr size_t kAccessBytes = 6;
constexpr size_t kMaxAccesses = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const memory::GuestMemory mem = *memory::GuestMemory::create({{0, kRamBytes}});
  if (size < 1) return 0;
  const size_t accesses = std::min<size_t>(data[0] % (kMaxAccesses + 1), (size - 1) / kAccessBytes);
  const uint8_t* ops = data + 1;
  const uint8_t* ram_bytes = ops + accesses * kAccessBytes;
  const size_t ram_len = std::min<size_t>(data + size - ram_bytes, kRamBytes);
  auto ram = *mem.slice(memory::GuestAddress(0), kRamBytes);
  std::memcpy(ram.data(), ram_bytes, ram_len);
  std::memset(ram.data() + ram_len, 0, kRamBytes - ram_len);

  virtio::BlockOptions options;
  options.queue_size = 16;
  // Every request completes at once with its full length (reads see whatever RAM holds).
  auto engine = std::make_unique<test::FakeEngine>();
  engine->complete_at_once(true);
  auto dev = virtio::BlockDevice::create_with_engine(options, 1 << 20, 512, std::move(engine));
  if (!dev) return 0;
  auto transport = virtio::MmioTransport::create(mem, std::move(*dev));
  if (!transport) return 0;
  for (size_t i = 0; i < accesses; ++i) {
    const uint8_t* op = ops + i * kAccessBytes;
    // Offsets cover the register file and the first bytes of config space (0x100...), and
    // every width the bus can deliver.
    const uint64_t offset = (uint64_t{op[1]} * 2) % 0x180;
    const size_t width = size_t{1} << (op[0] >> 1 & 3);
    uint8_t value[8] = {};
    std::memcpy(value, op + 2, 4);
    if (op[0] & 1) {
      (*transport)->write(offset, std::span<const uint8_t>(value, width));
    } else {
      (*transport)->read(offset, std::span<uint8_t>(value, width));
    }
  }
  return 0;  // the transport's destruction resets the device and joins its I/O thread
}
