// The pure virtio-blk request parser: every layout, every error status.
#include "virtio/blk_request.h"

#include <gtest/gtest.h>
#include <linux/virtio_blk.h>

#include <cstring>
#include <string>
#include <vector>

namespace kindling::virtio {
namespace {

constexpr uint64_t kCapacity = 2048;  // sectors (1 MiB disk)

// One buffer of a hand-made chain: its bytes (host memory standing in for guest RAM).
struct Seg {
  std::vector<uint8_t> bytes;
  bool writable;
};

std::vector<uint8_t> header(uint32_t type, uint64_t sector) {
  virtio_blk_outhdr h{};
  h.type = type;
  h.sector = sector;
  std::vector<uint8_t> out(sizeof(h));
  std::memcpy(out.data(), &h, sizeof(h));
  return out;
}

Seg R(std::vector<uint8_t> b) {
  return {std::move(b), false};
}
Seg R(size_t n) {
  return {std::vector<uint8_t>(n, 0xAB), false};
}
Seg W(size_t n) {
  return {std::vector<uint8_t>(n, 0xCD), true};
}

// Header bytes followed by `extra` data bytes, in one buffer.
Seg R_hdr_data(uint32_t type, uint64_t sector, size_t extra) {
  auto b = header(type, sector);
  b.resize(b.size() + extra, 0x11);
  return R(std::move(b));
}

// Splits the header bytes into pieces of the given sizes.
std::vector<Seg> split_header(uint32_t type, uint64_t sector, std::vector<size_t> sizes) {
  auto h = header(type, sector);
  std::vector<Seg> out;
  size_t at = 0;
  for (size_t n : sizes) {
    out.push_back(R(std::vector<uint8_t>(h.begin() + at, h.begin() + at + n)));
    at += n;
  }
  return out;
}

// Builds the element the queue would hand out for `segs` (host iovecs in chain order).
QueueElement element(std::vector<Seg>& segs) {
  QueueElement e;
  e.head = 7;
  for (Seg& s : segs) {
    iovec v{s.bytes.data(), s.bytes.size()};
    (s.writable ? e.in_iov : e.out_iov).push_back(v);
    (s.writable ? e.in_bytes : e.out_bytes) += s.bytes.size();
  }
  return e;
}

DiskFacts disk(bool ro = false) {
  DiskFacts d;
  d.capacity_sectors = kCapacity;
  d.read_only = ro;
  d.serial = make_serial("test-serial", 0, 0);
  return d;
}

struct Case {
  std::string name;
  std::vector<Seg> segs;
  bool read_only = false;
  // Expectations.
  std::optional<BlkParseError> error;
  BlkReqType type = BlkReqType::kIn;
  uint8_t status = VIRTIO_BLK_S_OK;
  uint64_t sector = 0;
  uint64_t data_bytes = 0;
  size_t data_iovs = 0;
  size_t status_seg = 0;     // which segment holds the status byte
  size_t status_offset = 0;  // where in it
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"in",
               {R(header(VIRTIO_BLK_T_IN, 8)), W(4096), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               8,
               4096,
               1,
               2,
               0});
  c.push_back({"out",
               {R(header(VIRTIO_BLK_T_OUT, 16)), R(4096), W(1)},
               false,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_OK,
               16,
               4096,
               1,
               2,
               0});
  {
    auto segs = split_header(VIRTIO_BLK_T_IN, 40, {8, 4, 4});
    segs.push_back(W(512));
    segs.push_back(W(1));
    c.push_back({"header_split_in_three",
                 segs,
                 false,
                 {},
                 BlkReqType::kIn,
                 VIRTIO_BLK_S_OK,
                 40,
                 512,
                 1,
                 4,
                 0});
  }
  {
    auto segs = split_header(VIRTIO_BLK_T_OUT, 3, {1, 15});
    segs.push_back(R(1024));
    segs.push_back(W(1));
    c.push_back(
        {"header_split_out", segs, false, {}, BlkReqType::kOut, VIRTIO_BLK_S_OK, 3, 1024, 1, 3, 0});
  }
  c.push_back({"out_header_shares_data",
               {R_hdr_data(VIRTIO_BLK_T_OUT, 5, 1024), W(1)},
               false,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_OK,
               5,
               1024,
               1,
               1,
               0});
  {
    // 10 header bytes, then 6 header bytes + 512 data bytes in one buffer.
    auto h = header(VIRTIO_BLK_T_OUT, 9);
    std::vector<uint8_t> second(h.begin() + 10, h.end());
    second.resize(6 + 512, 0x22);
    c.push_back(
        {"out_split_header_shares_data",
         {R(std::vector<uint8_t>(h.begin(), h.begin() + 10)), R(std::move(second)), R(512), W(1)},
         false,
         {},
         BlkReqType::kOut,
         VIRTIO_BLK_S_OK,
         9,
         1024,
         2,
         3,
         0});
  }
  c.push_back({"status_shares_data",
               {R(header(VIRTIO_BLK_T_IN, 0)), W(513)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               0,
               512,
               1,
               1,
               512});
  c.push_back({"status_shares_second_data",
               {R(header(VIRTIO_BLK_T_IN, 0)), W(256), W(257)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               0,
               512,
               2,
               2,
               256});
  c.push_back({"in_zero_length",
               {R(header(VIRTIO_BLK_T_IN, 0)), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               0,
               0,
               0,
               1,
               0});
  c.push_back({"flush",
               {R(header(VIRTIO_BLK_T_FLUSH, 0)), W(1)},
               false,
               {},
               BlkReqType::kFlush,
               VIRTIO_BLK_S_OK,
               0,
               0,
               0,
               1,
               0});
  c.push_back({"flush_read_only",
               {R(header(VIRTIO_BLK_T_FLUSH, 0)), W(1)},
               true,
               {},
               BlkReqType::kFlush,
               VIRTIO_BLK_S_OK,
               0,
               0,
               0,
               1,
               0});
  c.push_back({"get_id",
               {R(header(VIRTIO_BLK_T_GET_ID, 0)), W(20), W(1)},
               false,
               {},
               BlkReqType::kGetId,
               VIRTIO_BLK_S_OK,
               0,
               20,
               1,
               2,
               0});
  for (uint32_t t : {2u, 3u, 10u, 14u, 99u, 0x80000000u}) {
    c.push_back({"unsupported_type_" + std::to_string(t),
                 {R(header(t, 0)), W(512), W(1)},
                 false,
                 {},
                 BlkReqType::kUnsupported,
                 VIRTIO_BLK_S_UNSUPP,
                 0,
                 0,
                 0,
                 2,
                 0});
  }
  c.push_back({"in_not_sector_multiple",
               {R(header(VIRTIO_BLK_T_IN, 0)), W(1000), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_IOERR,
               0,
               1000,
               1,
               2,
               0});
  c.push_back({"out_not_sector_multiple",
               {R(header(VIRTIO_BLK_T_OUT, 0)), R(100), W(1)},
               false,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_IOERR,
               0,
               100,
               1,
               2,
               0});
  c.push_back({"last_sector",
               {R(header(VIRTIO_BLK_T_IN, kCapacity - 1)), W(512), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               kCapacity - 1,
               512,
               1,
               2,
               0});
  c.push_back({"past_end",
               {R(header(VIRTIO_BLK_T_IN, kCapacity - 1)), W(1024), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_IOERR,
               kCapacity - 1,
               1024,
               1,
               2,
               0});
  c.push_back({"sector_at_end",
               {R(header(VIRTIO_BLK_T_OUT, kCapacity)), R(512), W(1)},
               false,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_IOERR,
               kCapacity,
               512,
               1,
               2,
               0});
  c.push_back({"sector_overflow",
               {R(header(VIRTIO_BLK_T_IN, UINT64_MAX)), W(512), W(1)},
               false,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_IOERR,
               UINT64_MAX,
               512,
               1,
               2,
               0});
  c.push_back({"sector_plus_len_wraps",
               {R(header(VIRTIO_BLK_T_OUT, UINT64_MAX - 1)), R(4096), W(1)},
               false,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_IOERR,
               UINT64_MAX - 1,
               4096,
               1,
               2,
               0});
  c.push_back({"write_read_only",
               {R(header(VIRTIO_BLK_T_OUT, 0)), R(512), W(1)},
               true,
               {},
               BlkReqType::kOut,
               VIRTIO_BLK_S_IOERR,
               0,
               512,
               1,
               2,
               0});
  c.push_back({"read_read_only",
               {R(header(VIRTIO_BLK_T_IN, 0)), W(512), W(1)},
               true,
               {},
               BlkReqType::kIn,
               VIRTIO_BLK_S_OK,
               0,
               512,
               1,
               2,
               0});
  c.push_back({"no_status_byte",
               {R(header(VIRTIO_BLK_T_OUT, 0)), R(512)},
               false,
               BlkParseError::kNoStatusByte});
  c.push_back({"nothing_readable", {W(512), W(1)}, false, BlkParseError::kShortHeader});
  c.push_back({"header_15_bytes", {R(15), W(1)}, false, BlkParseError::kShortHeader});
  c.push_back(
      {"header_short_in_pieces", {R(8), R(7), W(512), W(1)}, false, BlkParseError::kShortHeader});
  return c;
}

class ParseTest : public testing::TestWithParam<Case> {};

TEST_P(ParseTest, Parses) {
  Case c = GetParam();
  VirtIOBlockReq req;
  req.elem = element(c.segs);
  auto r = parse_request(disk(c.read_only), req);
  if (c.error) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, *c.error);
    return;
  }
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(req.type, c.type);
  EXPECT_EQ(req.status, c.status);
  EXPECT_EQ(req.status_byte, c.segs[c.status_seg].bytes.data() + c.status_offset);
  if (c.type == BlkReqType::kUnsupported) return;
  EXPECT_EQ(req.sector, c.sector);
  EXPECT_EQ(req.data_bytes, c.data_bytes);
  EXPECT_EQ(req.data.size(), c.data_iovs);
  // The data buffers never include the header or the status byte.
  uint64_t data_iov_bytes = 0;
  for (const iovec& v : req.data) {
    auto* b = static_cast<uint8_t*>(v.iov_base);
    EXPECT_FALSE(req.status_byte >= b && req.status_byte < b + v.iov_len);
    data_iov_bytes += v.iov_len;
  }
  // data_bytes comes from the element's totals: it must match the data buffers themselves.
  EXPECT_EQ(req.data_bytes, data_iov_bytes);
}

INSTANTIATE_TEST_SUITE_P(Requests, ParseTest, testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// --- DISCARD / WRITE_ZEROES segments (struct virtio_blk_discard_write_zeroes) ---

std::vector<uint8_t> segment(uint64_t sector, uint32_t nsect, uint32_t flags) {
  virtio_blk_discard_write_zeroes s{};
  s.sector = sector;
  s.num_sectors = nsect;
  s.flags = flags;
  std::vector<uint8_t> out(sizeof(s));
  std::memcpy(out.data(), &s, sizeof(s));
  return out;
}

struct SegCase {
  std::string name;
  uint32_t type;
  std::vector<Seg> segs;  // after the header
  uint8_t status;
  uint64_t sector = 0;
  uint64_t bytes = 0;
  bool unmap = false;
  bool read_only = false;
  bool offered = true;  // DISCARD / WRITE_ZEROES in DiskFacts
};

std::vector<SegCase> seg_cases() {
  const uint32_t D = VIRTIO_BLK_T_DISCARD, Z = VIRTIO_BLK_T_WRITE_ZEROES;
  const uint32_t U = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
  auto split = [](std::vector<uint8_t> b, size_t at) {
    return std::vector<Seg>{R(std::vector<uint8_t>(b.begin(), b.begin() + at)),
                            R(std::vector<uint8_t>(b.begin() + at, b.end()))};
  };
  std::vector<uint8_t> two = segment(0, 8, 0);
  auto second = segment(16, 8, 0);
  two.insert(two.end(), second.begin(), second.end());
  auto seg17 = segment(0, 8, 0);
  seg17.push_back(0);
  return {
      {"discard", D, {R(segment(100, 8, 0))}, VIRTIO_BLK_S_OK, 100, 4096},
      {"write_zeroes", Z, {R(segment(7, 1, 0))}, VIRTIO_BLK_S_OK, 7, 512},
      {"write_zeroes_unmap", Z, {R(segment(0, 16, U))}, VIRTIO_BLK_S_OK, 0, 8192, true},
      {"segment_split", Z, split(segment(5, 3, U), 9), VIRTIO_BLK_S_OK, 5, 1536, true},
      {"up_to_the_end", D, {R(segment(kCapacity - 8, 8, 0))}, VIRTIO_BLK_S_OK, kCapacity - 8, 4096},
      {"zero_sectors", D, {R(segment(0, 0, 0))}, VIRTIO_BLK_S_OK, 0, 0},
      {"past_the_end", D, {R(segment(kCapacity - 8, 9, 0))}, VIRTIO_BLK_S_IOERR},
      {"sector_past_the_end", Z, {R(segment(kCapacity + 1, 0, 0))}, VIRTIO_BLK_S_IOERR},
      {"sector_overflow", D, {R(segment(~uint64_t{0} - 3, 8, 0))}, VIRTIO_BLK_S_IOERR},
      {"more_than_max_sectors",
       Z,
       {R(segment(0, kMaxWriteZeroesSectors + 1, 0))},
       VIRTIO_BLK_S_IOERR},
      {"unknown_flag", Z, {R(segment(0, 8, 2))}, VIRTIO_BLK_S_UNSUPP},
      {"high_flag", D, {R(segment(0, 8, 0x80000000u))}, VIRTIO_BLK_S_UNSUPP},
      {"discard_with_unmap", D, {R(segment(0, 8, U))}, VIRTIO_BLK_S_UNSUPP},
      {"two_segments", D, {R(two)}, VIRTIO_BLK_S_UNSUPP},
      {"no_segment", D, {}, VIRTIO_BLK_S_IOERR},
      {"short_segment", Z, {R(15)}, VIRTIO_BLK_S_IOERR},
      {"segment_plus_a_byte", D, {R(seg17)}, VIRTIO_BLK_S_IOERR},
      {"read_only", D, {R(segment(0, 8, 0))}, VIRTIO_BLK_S_IOERR, 0, 0, false, true},
      {"not_offered", Z, {R(segment(0, 8, 0))}, VIRTIO_BLK_S_UNSUPP, 0, 0, false, false, false},
  };
}

class SegmentTest : public testing::TestWithParam<SegCase> {};

TEST_P(SegmentTest, Parses) {
  SegCase c = GetParam();
  std::vector<Seg> segs{R(header(c.type, 12345))};  // the header's sector is ignored
  segs.insert(segs.end(), c.segs.begin(), c.segs.end());
  segs.push_back(W(1));
  VirtIOBlockReq req;
  req.elem = element(segs);
  DiskFacts d = disk(c.read_only);
  d.discard = d.write_zeroes = c.offered;
  ASSERT_TRUE(parse_request(d, req));
  EXPECT_EQ(req.type,
            c.type == VIRTIO_BLK_T_DISCARD ? BlkReqType::kDiscard : BlkReqType::kWriteZeroes);
  EXPECT_EQ(req.status, c.status);
  EXPECT_EQ(req.used_len(req.status), 1u);
  EXPECT_TRUE(req.data.empty()) << "no buffers reach the engine";
  if (c.status != VIRTIO_BLK_S_OK) {
    EXPECT_TRUE(req.immediate());
    return;
  }
  EXPECT_EQ(req.sector, c.sector);
  EXPECT_EQ(req.data_bytes, c.bytes);
  EXPECT_EQ(req.unmap, c.unmap);
  EXPECT_EQ(req.immediate(), c.bytes == 0);
}

INSTANTIATE_TEST_SUITE_P(DiscardWriteZeroes, SegmentTest, testing::ValuesIn(seg_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(ParseTest, OutDataStartsRightAfterHeader) {
  std::vector<Seg> segs{R_hdr_data(VIRTIO_BLK_T_OUT, 0, 512), W(1)};
  VirtIOBlockReq req;
  req.elem = element(segs);
  ASSERT_TRUE(parse_request(disk(), req));
  ASSERT_EQ(req.data.size(), 1u);
  EXPECT_EQ(req.data[0].iov_base, segs[0].bytes.data() + 16);
  EXPECT_EQ(req.data[0].iov_len, 512u);
}

TEST(ParseTest, ImmediateAndUsedLength) {
  VirtIOBlockReq req;
  req.type = BlkReqType::kIn;
  req.data_bytes = 4096;
  EXPECT_FALSE(req.immediate());
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_OK), 4097u);
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_IOERR), 1u);
  req.type = BlkReqType::kOut;
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_OK), 1u);
  req.type = BlkReqType::kGetId;
  req.data_bytes = 64;
  EXPECT_TRUE(req.immediate());
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_OK), 21u);
  req.data_bytes = 8;
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_OK), 9u);
  req.type = BlkReqType::kIn;
  req.data_bytes = 0;
  EXPECT_TRUE(req.immediate());
  req.data_bytes = 512;
  req.status = VIRTIO_BLK_S_IOERR;
  EXPECT_TRUE(req.immediate());
}

TEST(SerialTest, ConfiguredIdIsTruncatedAndPadded) {
  auto s = make_serial("abc", 1, 2);
  EXPECT_EQ(std::string(s.data(), 3), "abc");
  for (size_t i = 3; i < s.size(); ++i) EXPECT_EQ(s[i], '\0');
  auto l = make_serial("0123456789abcdefghijKLMN", 1, 2);
  EXPECT_EQ(std::string(l.data(), l.size()), "0123456789abcdefghij");
}

TEST(SerialTest, DerivedFromDeviceAndInode) {
  auto a = make_serial("", 0x803, 0x1234);
  auto b = make_serial("", 0x803, 0x1235);
  EXPECT_NE(a, b);
  EXPECT_EQ(std::string(a.data()), "kd803-1234");
}

TEST(SerialTest, LongNumbersKeepTheWholeInode) {
  // 64-bit inode numbers (XFS, btrfs): the device number gives way, the inode stays whole.
  auto a = make_serial("", 0xfd00, 0x123456789abcdef0);
  auto b = make_serial("", 0xfd00, 0x123456789abcdef1);
  EXPECT_NE(a, b);
  EXPECT_EQ(std::string(a.data(), a.size()), "kd0-123456789abcdef0");
  auto c = make_serial("", 0xabcdef, 0x123456789012);
  EXPECT_EQ(std::string(c.data(), c.size()), "kdbcdef-123456789012");
  auto e = make_serial("", 0xabcdef, 0x1234567890);  // fits: nothing cut
  EXPECT_EQ(std::string(e.data()), "kdabcdef-1234567890");
  auto d = make_serial("", ~0ull, ~0ull);
  EXPECT_EQ(std::string(d.data(), d.size()), "kdf-ffffffffffffffff");
}

TEST(SerialTest, WrittenIntoSplitBuffers) {
  std::vector<Seg> segs{R(header(VIRTIO_BLK_T_GET_ID, 0)), W(5), W(40), W(1)};
  VirtIOBlockReq req;
  req.elem = element(segs);
  DiskFacts d = disk();
  ASSERT_TRUE(parse_request(d, req));
  EXPECT_EQ(write_serial(d, req), 20u);
  std::string got(segs[1].bytes.begin(), segs[1].bytes.end());
  got.append(segs[2].bytes.begin(), segs[2].bytes.begin() + 15);
  EXPECT_EQ(got, std::string("test-serial") + std::string(9, '\0'));
  EXPECT_EQ(segs[2].bytes[15], 0xCD);  // nothing past the 20 bytes
}

TEST(SerialTest, ShortBufferGetsAPrefix) {
  std::vector<Seg> segs{R(header(VIRTIO_BLK_T_GET_ID, 0)), W(4), W(1)};
  VirtIOBlockReq req;
  req.elem = element(segs);
  DiskFacts d = disk();
  ASSERT_TRUE(parse_request(d, req));
  EXPECT_EQ(write_serial(d, req), 4u);
  EXPECT_EQ(std::string(segs[1].bytes.begin(), segs[1].bytes.end()), "test");
  EXPECT_EQ(req.used_len(VIRTIO_BLK_S_OK), 5u);
}

// Descriptors may alias one guest buffer: a request's size says nothing about guest RAM. Past
// kMaxRequestBytes an IN or OUT request fails with IOERR, on a disk that could hold it.
TEST(RequestSizeTest, LargerThanTheDeviceAllowsIsIoerr) {
  std::vector<uint8_t> page(1 << 20);
  auto hdr_in = header(VIRTIO_BLK_T_IN, 0);
  auto hdr_out = header(VIRTIO_BLK_T_OUT, 0);
  uint8_t status = 0;
  DiskFacts d = disk();
  d.capacity_sectors = uint64_t{16} << 21;  // 16 GiB
  struct Size {
    uint64_t aliases;  // whole 1 MiB buffers
    uint64_t extra;    // and one buffer of this many bytes more
    uint8_t want;
  };
  for (Size sz : {Size{1, 0, VIRTIO_BLK_S_OK}, Size{1, 512, VIRTIO_BLK_S_IOERR},
                  Size{4095, 0, VIRTIO_BLK_S_IOERR}}) {
    for (bool write : {false, true}) {
      VirtIOBlockReq req;
      QueueElement& e = req.elem;
      auto& data = write ? e.out_iov : e.in_iov;
      e.out_iov.push_back({write ? hdr_out.data() : hdr_in.data(), 16});
      for (uint64_t i = 0; i < sz.aliases; ++i) data.push_back({page.data(), page.size()});
      if (sz.extra) data.push_back({page.data(), sz.extra});
      e.in_iov.push_back({&status, 1});
      for (const iovec& v : e.out_iov) e.out_bytes += v.iov_len;
      for (const iovec& v : e.in_iov) e.in_bytes += v.iov_len;
      ASSERT_TRUE(parse_request(d, req));
      EXPECT_EQ(req.data_bytes, sz.aliases * page.size() + sz.extra);
      EXPECT_EQ(req.status, sz.want) << req.data_bytes << " bytes, write " << write;
      EXPECT_EQ(req.immediate(), sz.want != VIRTIO_BLK_S_OK);
    }
  }
}

TEST(RequestPoolTest, HandsOutEverySlotOnce) {
  RequestPool pool(4);
  std::vector<uint16_t> got;
  while (auto s = pool.acquire()) got.push_back(*s);
  EXPECT_EQ(got, (std::vector<uint16_t>{0, 1, 2, 3}));
  EXPECT_EQ(pool.in_use(), 4);
  pool.release(2);
  EXPECT_EQ(pool.acquire(), std::optional<uint16_t>(2));
  EXPECT_FALSE(pool.acquire());
}

}  // namespace
}  // namespace kindling::virtio
