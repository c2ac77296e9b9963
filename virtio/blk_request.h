// virtio-blk requests (virtio 1.x, section 5.2.6): the pure parser and the request object.
//
// parse_request() turns one popped descriptor chain into a VirtIOBlockReq. It reads only the
// 16-byte header (gathered from the device-readable buffers, whatever their layout) and the
// element's own iovec arrays; it writes nothing to guest memory. The caller either submits the
// request to an I/O engine or, when the parser already settled the status (IOERR, UNSUPP,
// GET_ID, zero-length I/O), completes it at once.
#pragma once

#include <linux/virtio_blk.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "block/io_engine.h"
#include "common/result.h"
#include "virtio/queue.h"

namespace kindling::virtio {

// The sector unit of virtio-blk, independent of the disk's block size (spec 5.2.6).
inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kSectorShift = 9;

// The largest data segment the device advertises (VIRTIO_BLK_F_SIZE_MAX): one page, the least
// Linux accepts, so that seg_max segments never add up to more than kMaxRequestBytes.
inline constexpr uint32_t kSizeMax = 4096;
// The most data bytes one IN/OUT request may carry: the engine's merge bound (1 MiB). A larger
// request fails with IOERR before it reaches the engine; a driver that honours SIZE_MAX and
// SEG_MAX never sends one (Linux's default max_sectors_kb is 1280, its requests are bounded by
// seg_max * size_max <= 1 MiB).
inline constexpr uint64_t kMaxRequestBytes = block::kMaxTransferBytes;

// DISCARD / WRITE_ZEROES limits the device advertises (spec 5.2.4): one segment per request
// (Linux then sends one range per request; more would need one engine op per segment), at most
// 1 GiB per segment (fallocate on one extent range; the write-zeroes fallback writes it in
// 1 MiB pieces).
inline constexpr uint32_t kMaxDiscardSectors = uint32_t{1} << 21;
inline constexpr uint32_t kMaxDiscardSeg = 1;
inline constexpr uint32_t kMaxWriteZeroesSectors = uint32_t{1} << 21;
inline constexpr uint32_t kMaxWriteZeroesSeg = 1;

// What a request asks for (VIRTIO_BLK_T_* folded into what the device implements).
enum class BlkReqType : uint8_t { kIn, kOut, kFlush, kGetId, kDiscard, kWriteZeroes, kUnsupported };

// The chain is too broken to answer: the device cannot even write a status byte.
enum class BlkParseError {
  kNoStatusByte,  // no device-writable byte at the end of the chain
  kShortHeader,   // fewer than 16 device-readable bytes
};
const char* to_string(BlkParseError e);
using BlkParseErr = Error<BlkParseError>;

// The disk facts the parser checks requests against.
struct DiskFacts {
  uint64_t capacity_sectors = 0;                  // disk size in 512-byte sectors
  bool read_only = false;                         // writes fail with IOERR, nothing written
  uint64_t max_request_bytes = kMaxRequestBytes;  // larger IN/OUT requests fail with IOERR
  bool discard = false;       // VIRTIO_BLK_F_DISCARD offered (else DISCARD is UNSUPP)
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES offered (else UNSUPP)
  std::array<char, VIRTIO_BLK_ID_BYTES> serial{};  // GET_ID answer, NUL padded
};

// Builds a GET_ID serial: `id` truncated to 20 bytes if given, else "kindling-<dev>-<ino>".
std::array<char, VIRTIO_BLK_ID_BYTES> make_serial(std::string_view id, uint64_t dev, uint64_t ino);

// One virtio-blk request: its chain, its data buffers, what to do and how it ended.
// Lives in a RequestPool slot and is reused; its iovec vectors keep their capacity.
struct VirtIOBlockReq {
  QueueElement elem;                  // the popped chain (head + host iovecs)
  BlkReqType type = BlkReqType::kIn;  // parsed request type
  uint8_t status = VIRTIO_BLK_S_OK;   // status byte to write; not OK = complete at once
  uint64_t sector = 0;                // first 512-byte sector (IN/OUT, DISCARD/WRITE_ZEROES)
  uint64_t data_bytes = 0;            // bytes of data buffers (IN/OUT/GET_ID); DISCARD and
                                      // WRITE_ZEROES: the bytes of their range
  bool unmap = false;                 // WRITE_ZEROES: the driver allows deallocation
  std::span<iovec> data;              // data buffers: a view into elem's iovecs
  uint8_t* status_byte = nullptr;     // host address of the status byte (in guest RAM)
  uint64_t start_ns = 0;              // CLOCK_MONOTONIC when popped (latency stats)

  // Whether the parser settled the request (error, GET_ID, empty I/O): no engine needed.
  bool immediate() const {
    return status != VIRTIO_BLK_S_OK || type == BlkReqType::kGetId ||
           (type != BlkReqType::kFlush && data_bytes == 0);
  }
  // Bytes written to the driver's buffers once completed with `status` (status byte included).
  uint32_t used_len(uint8_t final_status) const;
};

// Parses req.elem (already popped) in place: fills type/sector/data/status_byte (DISCARD and
// WRITE_ZEROES: sector/data_bytes/unmap from their one segment, `data` empty) and sets
// `status` to IOERR/UNSUPP where the request must fail without I/O. Edits req.elem's iovecs
// (the header and status byte are cut off the data buffers). Writes no guest memory.
// GUEST: the header and the buffer layout are guest-controlled.
Result<void, BlkParseErr> parse_request(const DiskFacts& disk, VirtIOBlockReq& req);

// Copies the GET_ID serial into the request's data buffers; returns the bytes written.
uint32_t write_serial(const DiskFacts& disk, const VirtIOBlockReq& req);

// A fixed set of request slots (one per queue entry) with a free list: no allocation per
// request once the vectors have grown.
class RequestPool {
 public:
  // `slots` is the queue size: at most that many chains can be in flight.
  explicit RequestPool(uint16_t slots);

  // Takes a free slot, or nullopt when all are in use.
  std::optional<uint16_t> acquire();
  // Returns a slot (its vectors keep their capacity).
  void release(uint16_t slot);

  VirtIOBlockReq& operator[](uint16_t slot) { return slots_[slot]; }
  const VirtIOBlockReq& operator[](uint16_t slot) const { return slots_[slot]; }
  uint16_t size() const { return static_cast<uint16_t>(slots_.size()); }
  uint16_t in_use() const { return static_cast<uint16_t>(slots_.size() - free_.size()); }

 private:
  std::vector<VirtIOBlockReq> slots_;
  std::vector<uint16_t> free_;
};

}  // namespace kindling::virtio
