#include "virtio/blk_request.h"

#include <endian.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace kindling::virtio {

const char* to_string(BlkParseError e) {
  switch (e) {
    case BlkParseError::kNoStatusByte:
      return "virtio-blk request has no writable status byte";
    case BlkParseError::kShortHeader:
      return "virtio-blk request header shorter than 16 bytes";
  }
  return "virtio-blk request error";
}

std::array<char, VIRTIO_BLK_ID_BYTES> make_serial(std::string_view id, uint64_t dev, uint64_t ino) {
  std::array<char, VIRTIO_BLK_ID_BYTES> out{};
  if (!id.empty()) {
    std::memcpy(out.data(), id.data(), std::min(id.size(), out.size()));
    return out;
  }
  // "kd<dev>-<ino>" in hex. When that exceeds 20 bytes (64-bit inode numbers), the inode stays
  // whole and the device number keeps its low digits: the inode is what tells images apart.
  char dev_hex[17];
  char ino_hex[17];
  int dn = std::snprintf(dev_hex, sizeof(dev_hex), "%llx", static_cast<unsigned long long>(dev));
  int in = std::snprintf(ino_hex, sizeof(ino_hex), "%llx", static_cast<unsigned long long>(ino));
  const size_t room = out.size() - 3 - static_cast<size_t>(in);  // >= 1: in <= 16
  const size_t dev_len = std::min(static_cast<size_t>(dn), room);
  size_t at = 0;
  auto put = [&](const char* p, size_t n) {
    std::memcpy(out.data() + at, p, n);
    at += n;
  };
  put("kd", 2);
  put(dev_hex + dn - dev_len, dev_len);
  put("-", 1);
  put(ino_hex, static_cast<size_t>(in));
  return out;
}

uint32_t VirtIOBlockReq::used_len(uint8_t final_status) const {
  if (final_status != VIRTIO_BLK_S_OK) return 1;
  switch (type) {
    case BlkReqType::kIn:
      return static_cast<uint32_t>(data_bytes) + 1;
    case BlkReqType::kGetId:
      return static_cast<uint32_t>(std::min<uint64_t>(data_bytes, VIRTIO_BLK_ID_BYTES)) + 1;
    default:
      return 1;
  }
}

namespace {

// Copies the first `out.size()` readable bytes into `out`. Returns where the data after them
// starts: (iovec index, offset in it), or nullopt if the buffers are too short.
std::optional<std::pair<size_t, size_t>> gather(std::span<const iovec> iov,
                                                std::span<uint8_t> out) {
  size_t done = 0;
  for (size_t i = 0; i < iov.size(); ++i) {
    size_t take = std::min(iov[i].iov_len, out.size() - done);
    std::memcpy(out.data() + done, iov[i].iov_base, take);
    done += take;
    if (done == out.size()) return std::pair{i, take};
  }
  return std::nullopt;
}

// Cuts the last byte (the status) off the writable buffers; returns its host address.
uint8_t* take_status_byte(std::vector<iovec>& in) {
  iovec& last = in.back();
  uint8_t* status = static_cast<uint8_t*>(last.iov_base) + last.iov_len - 1;
  if (--last.iov_len == 0) in.pop_back();
  return status;
}

BlkReqType classify(uint32_t type) {
  switch (type) {
    case VIRTIO_BLK_T_IN:
      return BlkReqType::kIn;
    case VIRTIO_BLK_T_OUT:
      return BlkReqType::kOut;
    case VIRTIO_BLK_T_FLUSH:
      return BlkReqType::kFlush;
    case VIRTIO_BLK_T_GET_ID:
      return BlkReqType::kGetId;
    case VIRTIO_BLK_T_DISCARD:
      return BlkReqType::kDiscard;
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return BlkReqType::kWriteZeroes;
    default:
      return BlkReqType::kUnsupported;
  }
}

// Checks an IN/OUT range: a whole number of sectors, inside the disk, no overflow.
bool range_ok(const DiskFacts& disk, uint64_t sector, uint64_t bytes) {
  if (bytes % kSectorSize != 0) return false;
  uint64_t nsect = bytes >> kSectorShift;
  return sector <= disk.capacity_sectors && nsect <= disk.capacity_sectors - sector;
}

// Parses the segment of a DISCARD / WRITE_ZEROES (spec 5.2.6, struct
// virtio_blk_discard_write_zeroes) that follows the header at `data_at`; sets req.status.
void parse_segment(const DiskFacts& disk, VirtIOBlockReq& req, std::pair<size_t, size_t> data_at) {
  const bool discard = req.type == BlkReqType::kDiscard;
  req.data = {};
  if (disk.read_only) {
    req.status = VIRTIO_BLK_S_IOERR;
    return;
  }
  if (!(discard ? disk.discard : disk.write_zeroes)) {
    req.status = VIRTIO_BLK_S_UNSUPP;
    return;
  }
  // GUEST: the segment count and every field of the segment are the guest's.
  QueueElement& e = req.elem;
  const uint64_t bytes = e.out_bytes - sizeof(virtio_blk_outhdr);
  const uint64_t seg_size = sizeof(virtio_blk_discard_write_zeroes);
  if (bytes == 0 || bytes % seg_size != 0) {
    req.status = VIRTIO_BLK_S_IOERR;
    return;
  }
  if (bytes / seg_size > (discard ? kMaxDiscardSeg : kMaxWriteZeroesSeg)) {
    req.status = VIRTIO_BLK_S_UNSUPP;  // more segments than advertised (QEMU answers the same)
    return;
  }
  // The segment may be split over descriptors, and may share the header's buffer.
  auto [idx, off] = data_at;
  virtio_blk_discard_write_zeroes seg{};
  auto* dst = reinterpret_cast<uint8_t*>(&seg);
  size_t done = 0;
  for (size_t i = idx; i < e.out_iov.size() && done < sizeof(seg); ++i, off = 0) {
    size_t take = std::min(e.out_iov[i].iov_len - off, sizeof(seg) - done);
    std::memcpy(dst + done, static_cast<const uint8_t*>(e.out_iov[i].iov_base) + off, take);
    done += take;
  }
  if (done < sizeof(seg)) {
    req.status = VIRTIO_BLK_S_IOERR;  // cannot happen: out_bytes counted it
    return;
  }
  const uint64_t sector = le64toh(seg.sector);
  const uint32_t nsect = le32toh(seg.num_sectors);
  const uint32_t flags = le32toh(seg.flags);
  // Spec 5.2.6.2: unknown flags, and unmap on a DISCARD, are UNSUPP.
  if ((flags & ~uint32_t{VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}) != 0 || (discard && flags != 0)) {
    req.status = VIRTIO_BLK_S_UNSUPP;
    return;
  }
  if (nsect > (discard ? kMaxDiscardSectors : kMaxWriteZeroesSectors) ||
      !range_ok(disk, sector, uint64_t{nsect} << kSectorShift)) {
    req.status = VIRTIO_BLK_S_IOERR;
    return;
  }
  req.sector = sector;
  req.data_bytes = uint64_t{nsect} << kSectorShift;
  req.unmap = (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0;
}

}  // namespace

Result<void, BlkParseErr> parse_request(const DiskFacts& disk, VirtIOBlockReq& req) {
  QueueElement& e = req.elem;
  req.type = BlkReqType::kUnsupported;
  req.status = VIRTIO_BLK_S_OK;
  req.sector = 0;
  req.data_bytes = 0;
  req.data = {};
  req.status_byte = nullptr;
  req.unmap = false;

  // GUEST: the driver decides the layout; the status is the last writable byte, wherever it is.
  if (e.in_iov.empty() || e.in_bytes == 0) return fail(BlkParseError::kNoStatusByte);
  virtio_blk_outhdr hdr{};
  auto data_at =
      gather(e.out_iov, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&hdr), sizeof(hdr)));
  if (!data_at) return fail(BlkParseError::kShortHeader);
  req.status_byte = take_status_byte(e.in_iov);

  // GUEST: the header is copied once above; only the copy is used from here on.
  req.type = classify(le32toh(hdr.type));
  req.sector = le64toh(hdr.sector);
  switch (req.type) {
    case BlkReqType::kIn:
    case BlkReqType::kGetId:
      req.data = std::span<iovec>(e.in_iov);
      // Every writable byte but the status byte, whichever buffer that shared (in_bytes >= 1).
      req.data_bytes = e.in_bytes - 1;
      break;
    case BlkReqType::kOut: {
      auto [idx, off] = *data_at;
      iovec& first = e.out_iov[idx];
      first.iov_base = static_cast<uint8_t*>(first.iov_base) + off;
      first.iov_len -= off;
      if (first.iov_len == 0) ++idx;
      req.data = std::span<iovec>(e.out_iov).subspan(idx);
      // Every readable byte after the header, however it was split (gather found all 16).
      req.data_bytes = e.out_bytes - sizeof(hdr);
      break;
    }
    case BlkReqType::kFlush:
      return {};
    case BlkReqType::kDiscard:
    case BlkReqType::kWriteZeroes:
      parse_segment(disk, req, *data_at);
      return {};
    case BlkReqType::kUnsupported:
      req.status = VIRTIO_BLK_S_UNSUPP;
      return {};
  }
  if (req.type == BlkReqType::kGetId) return {};

  // GUEST: descriptors may alias one buffer many times over; a request is only as large as the
  // device allows, whatever guest RAM holds.
  if (req.data_bytes > disk.max_request_bytes) {
    req.status = VIRTIO_BLK_S_IOERR;
  } else if (!range_ok(disk, req.sector, req.data_bytes)) {
    req.status = VIRTIO_BLK_S_IOERR;
  } else if (req.type == BlkReqType::kOut && disk.read_only) {
    req.status = VIRTIO_BLK_S_IOERR;
  }
  return {};
}

uint32_t write_serial(const DiskFacts& disk, const VirtIOBlockReq& req) {
  size_t done = 0;
  for (const iovec& v : req.data) {
    if (done == disk.serial.size()) break;
    size_t take = std::min(v.iov_len, disk.serial.size() - done);
    std::memcpy(v.iov_base, disk.serial.data() + done, take);
    done += take;
  }
  return static_cast<uint32_t>(done);
}

RequestPool::RequestPool(uint16_t slots) : slots_(slots) {
  free_.reserve(slots);
  // Hand out low slot numbers first (pop from the back).
  for (uint16_t i = slots; i > 0; --i) free_.push_back(static_cast<uint16_t>(i - 1));
}

std::optional<uint16_t> RequestPool::acquire() {
  if (free_.empty()) return std::nullopt;
  uint16_t s = free_.back();
  free_.pop_back();
  return s;
}

void RequestPool::release(uint16_t slot) {
  free_.push_back(slot);
}

}  // namespace kindling::virtio
