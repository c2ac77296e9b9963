#include "vmm/boot/decompress.h"

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "vmm/boot/le_bytes.h"

namespace kindling::vmm {

namespace {

// Most bytes handed to a decoder in one call (zlib and libbz2 count in unsigned int).
constexpr uint64_t kMaxStep = 64ULL << 20;
// Smallest growth of the output buffer when the size trailer was wrong.
constexpr uint64_t kMinGrowth = 1ULL << 20;
// Decoder memory allowed to liblzma: `xz -9` and `lzma -9` dictionaries are 64 MiB; a header
// asking for more is rejected rather than allocated.
constexpr uint64_t kLzmaMemLimit = 256ULL << 20;
// zstd window log allowed (128 MiB, what `zstd -22 --ultra` uses; libzstd's default).
constexpr int kZstdWindowLogMax = 27;
// Legacy LZ4 frames (lz4 -l): magic, then blocks of at most 8 MiB of output, each prefixed by
// its compressed size (lib/decompress_unlz4.c).
constexpr uint32_t kLz4LegacyMagic = 0x184C2102;
constexpr uint64_t kLz4LegacyBlockMax = 8ULL << 20;

// The start of a payload in each format.
struct Magic {
  PayloadFormat format;
  std::span<const uint8_t> bytes;
};
constexpr uint8_t kGzipMagic[] = {0x1F, 0x8B};
constexpr uint8_t kXzMagic[] = {0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00};
// lzma_alone: properties lc=3 lp=0 pb=2, then a dictionary size whose low 16 bits are 0.
constexpr uint8_t kLzmaMagic[] = {0x5D, 0x00, 0x00};
constexpr uint8_t kLz4Magic[] = {0x02, 0x21, 0x4C, 0x18};
constexpr uint8_t kZstdMagic[] = {0x28, 0xB5, 0x2F, 0xFD};
constexpr uint8_t kBzip2Magic[] = {'B', 'Z', 'h'};
constexpr Magic kMagics[] = {
    {PayloadFormat::kGzip, kGzipMagic}, {PayloadFormat::kXz, kXzMagic},
    {PayloadFormat::kLzma, kLzmaMagic}, {PayloadFormat::kLz4, kLz4Magic},
    {PayloadFormat::kZstd, kZstdMagic}, {PayloadFormat::kBzip2, kBzip2Magic},
};

// What the error messages say about the payload being decompressed.
struct Ctx {
  const std::string& who;
  PayloadFormat format;
  uint64_t limit;
};

Unexpected<BootErr> too_large(const Ctx& c) {
  return fail(BootError::kTooLarge, 0,
              c.who + ": " + payload_format_name(c.format) + " payload inflates past " +
                  std::to_string(c.limit) + " bytes (the size of guest RAM)");
}

Unexpected<BootErr> truncated(const Ctx& c) {
  return fail(BootError::kNotKernel, 0,
              c.who + ": " + payload_format_name(c.format) + " payload is truncated");
}

Unexpected<BootErr> corrupt(const Ctx& c, const std::string& detail) {
  return fail(
      BootError::kNotKernel, 0,
      c.who + ": " + payload_format_name(c.format) + " payload is corrupt (" + detail + ")");
}

// The decoders' output: a buffer that never grows past `limit`. It starts at the size the
// payload's trailer announces (when within the limit) so a well-formed kernel is decoded with
// one allocation and no copy. Once the buffer is full at the limit (or at the announced size),
// room() hands out one scratch byte: a decoder that writes there has more output than the
// limit allows (or than announced, and the buffer grows).
class CappedOutput {
 public:
  CappedOutput(uint64_t limit, uint64_t expected)
      : limit_(limit), expected_(std::min(expected, limit)) {
    resize(expected_);
  }

  // Where the decoder may write next (at most kMaxStep bytes).
  std::span<uint8_t> room() {
    if (used_ == buf_.size() && used_ != expected_) grow();
    on_scratch_ = used_ == buf_.size();
    if (on_scratch_) return {&scratch_, 1};
    return std::span<uint8_t>(buf_).subspan(used_, std::min(buf_.size() - used_, kMaxStep));
  }

  // Records that the decoder wrote `n` bytes at the start of the last room().
  void commit(size_t n) {
    if (!on_scratch_) {
      used_ += n;
    } else if (n > 0 && grow()) {
      buf_[used_++] = scratch_;
    } else if (n > 0) {
      overflowed_ = true;
    }
  }

  // Enlarges the buffer (doubling, capped at the limit); false when it is at the limit.
  bool grow() {
    if (buf_.size() >= limit_) return false;
    expected_ = std::numeric_limits<uint64_t>::max();
    resize(std::min(limit_, std::max(buf_.size() * 2, buf_.size() + kMinGrowth)));
    return true;
  }

  // True once the decoder produced more than the limit.
  bool overflowed() const { return overflowed_; }

  // The bytes written, in order.
  std::vector<uint8_t> take() {
    buf_.resize(used_);
    return std::move(buf_);
  }

 private:
  // reserve() first: a plain resize() may allocate up to twice what it is asked for.
  void resize(uint64_t size) {
    buf_.reserve(size);
    buf_.resize(size);
  }

  uint64_t limit_;
  uint64_t expected_;
  std::vector<uint8_t> buf_;
  uint64_t used_ = 0;
  uint8_t scratch_ = 0;
  bool on_scratch_ = false;
  bool overflowed_ = false;
};

// Outcome of one decoder call.
enum class Step { kMore, kEnd, kTruncated, kCorrupt };
struct StepResult {
  Step step;
  size_t produced = 0;      // bytes written into the room
  std::string detail = {};  // for kCorrupt
};

// Calls `step(room)` until the stream ends, the output passes the limit or the decoder fails.
// Each step must make progress (consume or produce) or report kTruncated, so this terminates.
template <typename StepFn>
Result<void, BootErr> pump(CappedOutput& out, const Ctx& c, StepFn step) {
  for (;;) {
    StepResult r = step(out.room());
    out.commit(r.produced);
    if (out.overflowed()) return too_large(c);
    switch (r.step) {
      case Step::kMore:
        continue;
      case Step::kEnd:
        return {};
      case Step::kTruncated:
        return truncated(c);
      case Step::kCorrupt:
        return corrupt(c, r.detail);
    }
  }
}

// gzip through zlib (windowBits 16 + 15: gzip header and trailer, CRC and ISIZE checked).
Result<void, BootErr> gunzip(std::span<const uint8_t> in, CappedOutput& out, const Ctx& c) {
  struct Inflater {
    z_stream s{};
    ~Inflater() { inflateEnd(&s); }
  } z;
  if (inflateInit2(&z.s, 16 + MAX_WBITS) != Z_OK) return corrupt(c, "zlib init failed");
  z.s.next_in = const_cast<Bytef*>(in.data());
  z.s.avail_in = static_cast<uInt>(in.size());
  return pump(out, c, [&](std::span<uint8_t> room) {
    z.s.next_out = room.data();
    z.s.avail_out = static_cast<uInt>(room.size());
    uInt in_before = z.s.avail_in;
    int ret = inflate(&z.s, Z_NO_FLUSH);
    StepResult r{Step::kMore, room.size() - z.s.avail_out};
    if (ret == Z_STREAM_END) {
      r.step = Step::kEnd;
    } else if (ret == Z_OK || ret == Z_BUF_ERROR) {
      if (r.produced == 0 && z.s.avail_in == in_before) r.step = Step::kTruncated;
    } else {
      r = {Step::kCorrupt, r.produced, z.s.msg != nullptr ? z.s.msg : "zlib error"};
    }
    return r;
  });
}

// Describes a liblzma error.
std::string lzma_detail(lzma_ret ret) {
  switch (ret) {
    case LZMA_MEMLIMIT_ERROR:
      return "needs more than " + std::to_string(kLzmaMemLimit >> 20) + " MiB of decoder memory";
    case LZMA_FORMAT_ERROR:
      return "bad header";
    case LZMA_OPTIONS_ERROR:
      return "unsupported options";
    case LZMA_DATA_ERROR:
      return "bad data or checksum";
    default:
      return "liblzma error " + std::to_string(static_cast<int>(ret));
  }
}

// xz (.xz container) or lzma_alone through liblzma. Neither decoder reads past its stream's end.
Result<void, BootErr> unxz(std::span<const uint8_t> in, CappedOutput& out, const Ctx& c) {
  struct Decoder {
    lzma_stream s = LZMA_STREAM_INIT;
    ~Decoder() { lzma_end(&s); }
  } d;
  lzma_ret init = c.format == PayloadFormat::kXz ? lzma_stream_decoder(&d.s, kLzmaMemLimit, 0)
                                                 : lzma_alone_decoder(&d.s, kLzmaMemLimit);
  if (init != LZMA_OK) return corrupt(c, lzma_detail(init));
  d.s.next_in = in.data();
  d.s.avail_in = in.size();
  return pump(out, c, [&](std::span<uint8_t> room) {
    d.s.next_out = room.data();
    d.s.avail_out = room.size();
    size_t in_before = d.s.avail_in;
    // All input is there: LZMA_FINISH makes a stream cut short an error, not a wait.
    lzma_ret ret = lzma_code(&d.s, LZMA_FINISH);
    StepResult r{Step::kMore, room.size() - d.s.avail_out};
    if (ret == LZMA_STREAM_END) {
      r.step = Step::kEnd;
    } else if (ret == LZMA_OK || ret == LZMA_BUF_ERROR) {
      if (r.produced == 0 && d.s.avail_in == in_before) r.step = Step::kTruncated;
    } else {
      r = {Step::kCorrupt, r.produced, lzma_detail(ret)};
    }
    return r;
  });
}

// Describes a libzstd error code.
std::string zstd_detail(size_t code) {
  return ZSTD_getErrorName(code);
}

// One zstd frame through libzstd; bytes after the frame (the size trailer) are not read.
Result<void, BootErr> unzstd(std::span<const uint8_t> in, CappedOutput& out, const Ctx& c) {
  size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
  if (ZSTD_isError(frame)) {
    if (ZSTD_getErrorCode(frame) == ZSTD_error_srcSize_wrong) return truncated(c);
    return corrupt(c, zstd_detail(frame));
  }
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!dctx) return corrupt(c, "cannot create a zstd context");
  size_t set = ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  if (ZSTD_isError(set)) return corrupt(c, zstd_detail(set));
  ZSTD_inBuffer src{in.data(), frame, 0};
  return pump(out, c, [&](std::span<uint8_t> room) {
    ZSTD_outBuffer dst{room.data(), room.size(), 0};
    size_t in_before = src.pos;
    size_t ret = ZSTD_decompressStream(dctx.get(), &dst, &src);
    StepResult r{Step::kMore, dst.pos};
    if (ZSTD_isError(ret)) {
      r = {Step::kCorrupt, dst.pos, zstd_detail(ret)};
    } else if (ret == 0) {
      r.step = Step::kEnd;  // the frame is decoded and flushed
    } else if (dst.pos == 0 && src.pos == in_before) {
      r.step = Step::kTruncated;
    }
    return r;
  });
}

// Describes a libbz2 error.
std::string bzip2_detail(int ret) {
  switch (ret) {
    case BZ_DATA_ERROR:
      return "bad data or checksum";
    case BZ_DATA_ERROR_MAGIC:
      return "bad header";
    case BZ_MEM_ERROR:
      return "out of memory";
    default:
      return "libbz2 error " + std::to_string(ret);
  }
}

// One bzip2 stream through libbz2; it stops at the end-of-stream marker.
Result<void, BootErr> bunzip2(std::span<const uint8_t> in, CappedOutput& out, const Ctx& c) {
  struct Decoder {
    bz_stream s{};
    bool live = false;
    ~Decoder() {
      if (live) BZ2_bzDecompressEnd(&s);
    }
  } d;
  int init = BZ2_bzDecompressInit(&d.s, 0, 0);
  if (init != BZ_OK) return corrupt(c, bzip2_detail(init));
  d.live = true;
  d.s.next_in = reinterpret_cast<char*>(const_cast<uint8_t*>(in.data()));
  d.s.avail_in = static_cast<unsigned>(in.size());
  return pump(out, c, [&](std::span<uint8_t> room) {
    d.s.next_out = reinterpret_cast<char*>(room.data());
    d.s.avail_out = static_cast<unsigned>(room.size());
    unsigned in_before = d.s.avail_in;
    int ret = BZ2_bzDecompress(&d.s);
    StepResult r{Step::kMore, room.size() - d.s.avail_out};
    if (ret == BZ_STREAM_END) {
      r.step = Step::kEnd;
    } else if (ret == BZ_OK) {
      if (r.produced == 0 && d.s.avail_in == in_before) r.step = Step::kTruncated;
    } else {
      r = {Step::kCorrupt, r.produced, bzip2_detail(ret)};
    }
    return r;
  });
}

// Decodes one legacy LZ4 block into `out`, growing it when the block needs more room.
Result<void, BootErr> unlz4_block(std::span<const uint8_t> block, CappedOutput& out, const Ctx& c) {
  const char* src = reinterpret_cast<const char*>(block.data());
  int src_size = static_cast<int>(block.size());
  for (;;) {
    auto room = out.room();
    char* dst = reinterpret_cast<char*>(room.data());
    int cap = static_cast<int>(room.size());
    int n = LZ4_decompress_safe(src, dst, src_size, cap);
    if (n >= 0) {
      out.commit(static_cast<size_t>(n));
      if (out.overflowed()) return too_large(c);
      return {};
    }
    // Corrupt, or more output than `cap`: a block that still decodes up to `cap` needs room.
    int part = LZ4_decompress_safe_partial(src, dst, src_size, cap, cap);
    if (part < cap || room.size() >= kLz4LegacyBlockMax) {
      return corrupt(c, "bad block");
    }
    if (!out.grow()) return too_large(c);
  }
}

// Legacy LZ4 frames (`lz4 -l`): [magic] then [le32 compressed size][block] until the input
// ends or a size of 0; a repeated magic starts another frame. `in` excludes the size trailer,
// which the format has no end marker to tell from a block size.
Result<void, BootErr> unlz4_legacy(std::span<const uint8_t> in, CappedOutput& out, const Ctx& c) {
  const uint64_t max_block = LZ4_compressBound(static_cast<int>(kLz4LegacyBlockMax));
  uint64_t pos = sizeof(kLz4Magic);
  while (pos < in.size()) {
    if (in.size() - pos < 4) return truncated(c);
    uint32_t size = le32(in, pos);
    pos += 4;
    if (size == kLz4LegacyMagic) continue;
    if (size == 0) break;
    if (size > max_block) return corrupt(c, "block of " + std::to_string(size) + " bytes");
    if (size > in.size() - pos) return truncated(c);
    if (auto r = unlz4_block(in.subspan(pos, size), out, c); !r) return r.take_error();
    pos += size;
  }
  return {};
}

}  // namespace

PayloadFormat detect_payload_format(std::span<const uint8_t> payload) {
  for (const auto& m : kMagics) {
    if (payload.size() >= m.bytes.size() &&
        std::equal(m.bytes.begin(), m.bytes.end(), payload.begin())) {
      return m.format;
    }
  }
  return PayloadFormat::kUnknown;
}

const char* payload_format_name(PayloadFormat format) {
  switch (format) {
    case PayloadFormat::kUnknown:
      return "unknown";
    case PayloadFormat::kGzip:
      return "gzip";
    case PayloadFormat::kXz:
      return "xz";
    case PayloadFormat::kLzma:
      return "lzma";
    case PayloadFormat::kLz4:
      return "lz4";
    case PayloadFormat::kZstd:
      return "zstd";
    case PayloadFormat::kBzip2:
      return "bzip2";
  }
  return "unknown";
}

Result<std::vector<uint8_t>, BootErr> decompress_payload(std::span<const uint8_t> payload,
                                                         uint64_t limit, const std::string& who) {
  const Ctx c{who, detect_payload_format(payload), limit};
  if (c.format == PayloadFormat::kUnknown) {
    return fail(BootError::kUnsupported, 0, who + ": payload compression not recognised");
  }
  // GUEST: the payload and its trailer come from the kernel file; sizes are checked first.
  if (payload.size() <= kPayloadSizeTrailer) return truncated(c);
  if (payload.size() > std::numeric_limits<uint32_t>::max()) {
    return corrupt(c, std::to_string(payload.size()) + " bytes, more than 4 GiB");
  }
  uint64_t announced = le32(payload, payload.size() - kPayloadSizeTrailer);
  if (announced > limit) {
    return fail(BootError::kTooLarge, 0,
                who + ": " + payload_format_name(c.format) + " payload says it inflates to " +
                    std::to_string(announced) + " bytes, guest RAM is " + std::to_string(limit));
  }
  CappedOutput out(limit, announced);
  Result<void, BootErr> r = [&]() -> Result<void, BootErr> {
    switch (c.format) {
      case PayloadFormat::kGzip:
        return gunzip(payload, out, c);
      case PayloadFormat::kXz:
      case PayloadFormat::kLzma:
        return unxz(payload, out, c);
      case PayloadFormat::kLz4:
        return unlz4_legacy(payload.first(payload.size() - kPayloadSizeTrailer), out, c);
      case PayloadFormat::kZstd:
        return unzstd(payload, out, c);
      case PayloadFormat::kBzip2:
        return bunzip2(payload, out, c);
      case PayloadFormat::kUnknown:
        break;
    }
    return corrupt(c, "no decoder");
  }();
  if (!r) return r.take_error();
  std::vector<uint8_t> bytes = out.take();
  if (bytes.size() != announced) {
    return fail(BootError::kNotKernel, 0,
                who + ": " + payload_format_name(c.format) + " payload inflated to " +
                    std::to_string(bytes.size()) + " bytes but its size trailer says " +
                    std::to_string(announced));
  }
  return bytes;
}

}  // namespace kindling::vmm
