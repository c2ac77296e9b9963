// libFuzzer target: the virtio-blk request parser on chains popped from a fuzzed ring (header,
// data and status buffers in any layout), and the GET_ID answer.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_ring.h"
#include "virtio/blk_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kindling;
  auto q = fuzz::make_queue(data, size);
  if (!q) return 0;
  virtio::DiskFacts disk;
  disk.capacity_sectors = 1 << 20;
  disk.read_only = (data[1] & 4) != 0;
  disk.serial = virtio::make_serial("fuzz", 1, 2);
  virtio::VirtIOBlockReq req;
  for (int i = 0; i < 2 * fuzz::kMaxQueue; ++i) {
    req.elem.clear();
    auto popped = q->pop(fuzz::ram(), req.elem);
    if (!popped || !*popped) break;
    auto parsed = virtio::parse_request(disk, req);
    uint32_t len = 0;
    if (parsed) {
      if (req.type == virtio::BlkReqType::kGetId && req.status == VIRTIO_BLK_S_OK) {
        (void)virtio::write_serial(disk, req);
      }
      len = req.used_len(req.status);
    }
    if (!q->push(fuzz::ram(), req.elem.head, len)) break;
  }
  return 0;
}
