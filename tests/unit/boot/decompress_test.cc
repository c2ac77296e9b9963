// decompress_payload() on payloads made by each compressor CLI: byte-exact output, the limit
// (a zip bomb is kTooLarge without allocating past it), truncated and corrupt streams.
#include "vmm/boot/decompress.h"

#include <gtest/gtest.h>

#include <map>

#include "alloc_probe.h"
#include "compress_util.h"

namespace kindling::vmm {
namespace {

using test::Compressor;
using test::kCompressors;

constexpr uint64_t kMiB = 1ULL << 20;
const std::string kWho = "kernel /boot/bzImage";

class DecompressTest : public ::testing::TestWithParam<Compressor> {
 protected:
  // A 1 MiB sample and its payload, made once per compressor.
  const std::vector<uint8_t>& data() {
    static const std::vector<uint8_t> d = test::sample_bytes(kMiB);
    return d;
  }
  const std::vector<uint8_t>& payload() {
    static std::map<std::string, std::vector<uint8_t>> cache;
    auto& p = cache[GetParam().name];
    if (p.empty()) p = test::kernel_payload(GetParam(), data());
    return p;
  }
  // 64 MiB of zeros (a few KiB compressed), as a payload with an honest size trailer.
  const std::vector<uint8_t>& bomb() {
    static std::map<std::string, std::vector<uint8_t>> cache;
    auto& p = cache[GetParam().name];
    if (p.empty()) p = test::kernel_payload(GetParam(), std::vector<uint8_t>(64 * kMiB, 0));
    return p;
  }
  // The payload's stream with a different size trailer.
  static std::vector<uint8_t> with_trailer(std::vector<uint8_t> p, uint32_t size) {
    p.resize(p.size() - 4);
    test::append_size(p, size);
    return p;
  }
  // Expects a kNotKernel error naming the file.
  static void expect_bad(const Result<std::vector<uint8_t>, BootErr>& r) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, BootError::kNotKernel) << r.error().message();
    EXPECT_NE(r.error().message().find(kWho), std::string::npos) << r.error().message();
  }
};

TEST_P(DecompressTest, RecognisesTheFormat) {
  ASSERT_FALSE(payload().empty());
  EXPECT_EQ(detect_payload_format(payload()), GetParam().format);
}

TEST_P(DecompressTest, RoundTripsByteForByte) {
  ASSERT_FALSE(payload().empty());
  auto r = decompress_payload(payload(), 64 * kMiB, kWho);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(r->size(), data().size());
  EXPECT_TRUE(*r == data());
}

TEST_P(DecompressTest, OutputExactlyAtTheLimit) {
  ASSERT_FALSE(payload().empty());
  auto r = decompress_payload(payload(), kMiB, kWho);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(*r == data());
}

TEST_P(DecompressTest, OneByteOverTheLimitIsTooLarge) {
  ASSERT_FALSE(payload().empty());
  auto r = decompress_payload(payload(), kMiB - 1, kWho);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kTooLarge) << r.error().message();
}

TEST_P(DecompressTest, ATrailerThatUndersellsGrowsTheBufferThenFails) {
  ASSERT_FALSE(payload().empty());
  auto r = decompress_payload(with_trailer(payload(), 1000), 64 * kMiB, kWho);
  expect_bad(r);
  // gzip's trailer is its own ISIZE field, which zlib checks first.
  const char* reason = GetParam().format == PayloadFormat::kGzip
                           ? "gzip payload is corrupt (incorrect length check)"
                           : "inflated to 1048576 bytes but its size trailer says 1000";
  EXPECT_NE(r.error().message().find(reason), std::string::npos) << r.error().message();
}

TEST_P(DecompressTest, ZipBombWithHonestTrailerIsRefusedBeforeAllocating) {
  ASSERT_FALSE(bomb().empty());
  test::reset_largest_allocation();
  auto r = decompress_payload(bomb(), 16 * kMiB, kWho);
  size_t largest = test::largest_allocation();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kTooLarge);
  EXPECT_NE(r.error().message().find("says it inflates to 67108864 bytes"), std::string::npos)
      << r.error().message();
  EXPECT_LT(largest, kMiB);
}

TEST_P(DecompressTest, ZipBombWithLyingTrailerStopsAtTheLimit) {
  ASSERT_FALSE(bomb().empty());
  auto lying = with_trailer(bomb(), kMiB);
  test::reset_largest_allocation();
  auto r = decompress_payload(lying, 16 * kMiB, kWho);
  size_t largest = test::largest_allocation();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kTooLarge) << r.error().message();
  EXPECT_NE(r.error().message().find("inflates past 16777216 bytes"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find(kWho), std::string::npos);
  EXPECT_LE(largest, 16 * kMiB);
}

TEST_P(DecompressTest, TruncatedStreamsAreErrors) {
  ASSERT_FALSE(payload().empty());
  size_t stream = payload().size() - (GetParam().appends_size ? 4 : 0);
  std::vector<size_t> cuts = {8, stream / 3, stream / 2, stream - 5};
  // gzip's last byte is its ISIZE's top byte, which the appended size would put back.
  if (GetParam().appends_size) cuts.push_back(stream - 1);
  for (size_t keep : cuts) {
    SCOPED_TRACE("keeping " + std::to_string(keep) + " of " + std::to_string(stream) + " bytes");
    std::vector<uint8_t> cut(payload().begin(), payload().begin() + keep);
    test::append_size(cut, kMiB);
    auto r = decompress_payload(cut, 64 * kMiB, kWho);
    expect_bad(r);
    // The decoder notices, not just the final size check. Near the ends, the size trailer
    // read as stream data can look like a bad header or checksum instead.
    std::string msg = r.has_value() ? "" : r.error().message();
    bool middle = keep == stream / 3 || keep == stream / 2;
    EXPECT_TRUE(msg.find("payload is truncated") != std::string::npos ||
                (!middle && msg.find("payload is corrupt") != std::string::npos))
        << msg;
  }
}

TEST_P(DecompressTest, CorruptStreamsAreErrors) {
  ASSERT_FALSE(payload().empty());
  auto bad = payload();
  // A run of 0xFF in the middle of the stream: past every format's header, in its data.
  size_t mid = bad.size() / 2;
  std::fill(bad.begin() + mid, bad.begin() + mid + 64, 0xFF);
  auto r = decompress_payload(bad, 64 * kMiB, kWho);
  expect_bad(r);
  // Legacy LZ4 has no checksum: the wrong output length gives it away.
  const char* reason =
      GetParam().format == PayloadFormat::kLz4 ? "but its size trailer says" : "payload is corrupt";
  if (!r.has_value()) {
    EXPECT_NE(r.error().message().find(reason), std::string::npos) << r.error().message();
  }
}

TEST_P(DecompressTest, MagicAloneIsAnError) {
  ASSERT_FALSE(payload().empty());
  // Six bytes hold every magic.
  std::vector<uint8_t> magic(payload().begin(), payload().begin() + 6);
  test::append_size(magic, kMiB);
  expect_bad(decompress_payload(magic, 64 * kMiB, kWho));
}

INSTANTIATE_TEST_SUITE_P(Formats, DecompressTest, ::testing::ValuesIn(kCompressors),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(DecompressLz4, BlocksOfLegacyFramesAcrossSeveralMiB) {
  // 20 MiB: three legacy blocks (8 + 8 + 4 MiB), as in a real kernel.
  auto data = test::sample_bytes(20 * kMiB, 7);
  const Compressor& lz4 = test::compressor("Lz4");
  auto payload = test::kernel_payload(lz4, data);
  ASSERT_FALSE(payload.empty());
  auto r = decompress_payload(payload, 64 * kMiB, kWho);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(*r == data);
  // The same with the buffer grown from a too-small trailer: only the final size check fails.
  auto small = payload;
  small.resize(small.size() - 4);
  test::append_size(small, 4096);
  auto g = decompress_payload(small, 64 * kMiB, kWho);
  ASSERT_FALSE(g.has_value());
  EXPECT_NE(g.error().message().find("inflated to 20971520"), std::string::npos)
      << g.error().message();
}

TEST(DecompressLz4, OversizedBlockLengthIsCorrupt) {
  std::vector<uint8_t> p = {0x02, 0x21, 0x4C, 0x18, 0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3};
  test::append_size(p, 100);
  auto r = decompress_payload(p, 64 * kMiB, kWho);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kNotKernel);
  EXPECT_NE(r.error().message().find("lz4 payload is corrupt"), std::string::npos)
      << r.error().message();
}

TEST(DecompressPayload, NoRoomForTheTrailerIsTruncated) {
  std::vector<uint8_t> p = {'B', 'Z', 'h', '9'};
  auto r = decompress_payload(p, 64 * kMiB, kWho);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kNotKernel);
  EXPECT_NE(r.error().message().find("bzip2 payload is truncated"), std::string::npos)
      << r.error().message();
}

TEST(DecompressPayload, UnknownMagicIsUnsupported) {
  std::vector<uint8_t> lzo = {0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0};
  EXPECT_EQ(detect_payload_format(lzo), PayloadFormat::kUnknown);
  auto r = decompress_payload(lzo, 64 * kMiB, kWho);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, BootError::kUnsupported);
}

TEST(DecompressPayload, FormatNames) {
  EXPECT_STREQ(payload_format_name(PayloadFormat::kLz4), "lz4");
  EXPECT_STREQ(payload_format_name(PayloadFormat::kLzma), "lzma");
  EXPECT_STREQ(payload_format_name(PayloadFormat::kUnknown), "unknown");
  EXPECT_EQ(detect_payload_format(std::vector<uint8_t>{}), PayloadFormat::kUnknown);
  EXPECT_EQ(detect_payload_format(std::vector<uint8_t>{0x1F}), PayloadFormat::kUnknown);
}

}  // namespace
}  // namespace kindling::vmm
