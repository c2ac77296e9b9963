// One typed suite run against every I/O engine, checked against the image's shadow copy.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <type_traits>
#include <vector>

#include "block/aio_engine.h"
#include "block/bounce_pool.h"
#include "block/raw_image.h"
#include "block/sync_engine.h"
#include "block/uring_engine.h"
#include "tests/support/temp_image.h"

namespace kindling::block {
namespace {

using test::ImageFs;
using test::TempImage;

struct SyncKind {
  static auto make(RawImage& img, size_t n) { return SyncEngine::create(img, n); }
};
struct AioKind {
  static auto make(RawImage& img, size_t n) { return AioEngine::create(img, n); }
};
// libaio with FLUSH forced onto the fdatasync helper thread.
struct AioHelperFlushKind {
  static auto make(RawImage& img, size_t n) { return AioEngine::create(img, n, false); }
};

struct UringKind {
  static auto make(RawImage& img, size_t n) { return UringEngine::create(img, n); }
};

// A buffer of `len` bytes whose data starts `misalign` bytes past a 4096 boundary.
struct Buf {
  Buf(size_t len, size_t misalign = 0) : mem(AlignedBuffer::allocate(len + 4096, 4096)), n(len) {
    p = mem.data() + misalign;
    std::memset(p, 0xAA, n);
  }
  iovec iov() const { return {p, n}; }
  AlignedBuffer mem;
  uint8_t* p;
  size_t n;
};

template <typename Kind>
class EngineTest : public testing::Test {
 protected:
  // Opens `t` and builds the engine; fails the test on error.
  void open(TempImage& t, bool read_only = false, OpenOptions opts = {}, size_t depth = 64) {
    auto img = RawImage::open(t.path(), read_only, opts);
    ASSERT_TRUE(img) << img.error().message();
    image_ = std::make_unique<RawImage>(std::move(*img));
    auto e = Kind::make(*image_, depth);
    ASSERT_TRUE(e) << e.error().message();
    engine_ = std::move(*e);
  }

  // Submits the queue and collects `count` completions (waiting on the notifier, 10 s at most).
  std::vector<Completion> wait(size_t count) {
    EXPECT_TRUE(engine_->flush_submissions());
    std::vector<Completion> got;
    Completion buf[64];
    for (int spins = 0; got.size() < count && spins < 1000; ++spins) {
      pollfd p{engine_->notifier_fd(), POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) break;
      size_t n = engine_->reap(buf);
      got.insert(got.end(), buf, buf + n);
    }
    EXPECT_EQ(got.size(), count);
    return got;
  }

  // One request to completion; returns its result.
  int64_t read(uint64_t off, std::vector<iovec> iov) {
    auto r = engine_->read(off, iov, 7);
    if (!r) return -1000;
    auto c = wait(1);
    return c.size() == 1 && c[0].cookie == 7 ? c[0].result : -1000;
  }
  int64_t write(uint64_t off, std::vector<iovec> iov) {
    auto r = engine_->write(off, iov, 8);
    if (!r) return -1000;
    auto c = wait(1);
    return c.size() == 1 && c[0].cookie == 8 ? c[0].result : -1000;
  }
  int64_t flush() {
    auto r = engine_->flush(9);
    if (!r) return -1000;
    auto c = wait(1);
    return c.size() == 1 && c[0].cookie == 9 ? c[0].result : -1000;
  }
  int64_t discard(uint64_t off, uint64_t len) {
    auto r = engine_->discard(off, len, 10);
    if (!r) return -1000;
    auto c = wait(1);
    return c.size() == 1 && c[0].cookie == 10 ? c[0].result : -1000;
  }
  int64_t write_zeroes(uint64_t off, uint64_t len, bool unmap) {
    auto r = engine_->write_zeroes(off, len, unmap, 11);
    if (!r) return -1000;
    auto c = wait(1);
    return c.size() == 1 && c[0].cookie == 11 ? c[0].result : -1000;
  }
  // 512-byte blocks the image file occupies on the host.
  uint64_t host_blocks(const TempImage& t) const {
    struct stat st {};
    EXPECT_EQ(::stat(t.path().c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks);
  }

  std::unique_ptr<RawImage> image_;
  std::unique_ptr<IoEngine> engine_;
};

using EngineKinds = testing::Types<SyncKind, AioKind, AioHelperFlushKind, UringKind>;
TYPED_TEST_SUITE(EngineTest, EngineKinds);

constexpr uint64_t kImage = 1 << 20;

TYPED_TEST(EngineTest, ReadsWhatTheImageHolds) {
  TempImage t(kImage);
  this->open(t);
  Buf b(64 << 10);
  ASSERT_EQ(this->read(128 << 10, {b.iov()}), 64 << 10);
  EXPECT_EQ(std::memcmp(b.p, t.shadow().data() + (128 << 10), b.n), 0);
}

TYPED_TEST(EngineTest, WriteThenReadRoundTrips) {
  TempImage t(kImage);
  this->open(t);
  Buf w(16 << 10);
  test::fill_random(w.p, w.n, 42);
  ASSERT_EQ(this->write(4096 * 7, {w.iov()}), 16 << 10);
  t.shadow_write(4096 * 7, w.p, w.n);
  Buf r(16 << 10);
  ASSERT_EQ(this->read(4096 * 7, {r.iov()}), 16 << 10);
  EXPECT_EQ(std::memcmp(r.p, w.p, w.n), 0);
  EXPECT_EQ(t.read_back(), t.shadow());
}

TYPED_TEST(EngineTest, VectoredIovecs) {
  TempImage t(kImage);
  this->open(t);
  Buf a(4096), b(8192), c(4096);
  test::fill_random(a.p, a.n, 1);
  test::fill_random(b.p, b.n, 2);
  test::fill_random(c.p, c.n, 3);
  ASSERT_EQ(this->write(65536, {a.iov(), b.iov(), c.iov()}), 16384);
  t.shadow_write(65536, a.p, a.n);
  t.shadow_write(65536 + 4096, b.p, b.n);
  t.shadow_write(65536 + 12288, c.p, c.n);
  Buf x(8192), y(8192);
  ASSERT_EQ(this->read(65536, {x.iov(), y.iov()}), 16384);
  EXPECT_EQ(std::memcmp(x.p, t.shadow().data() + 65536, 8192), 0);
  EXPECT_EQ(std::memcmp(y.p, t.shadow().data() + 65536 + 8192, 8192), 0);
  EXPECT_EQ(t.read_back(), t.shadow());
}

TYPED_TEST(EngineTest, ShortReadAtEndIsZeroFilled) {
  TempImage t(kImage);
  this->open(t);
  Buf b(16384);
  ASSERT_EQ(this->read(kImage - 4096, {b.iov()}), 16384);
  EXPECT_EQ(std::memcmp(b.p, t.shadow().data() + kImage - 4096, 4096), 0);
  EXPECT_EQ(std::count(b.p + 4096, b.p + b.n, 0), 12288);
}

TYPED_TEST(EngineTest, ShortReadThroughBounceIsZeroFilled) {
  TempImage t(kImage);
  this->open(t);
  Buf b(8192, 3);  // misaligned: goes through a bounce buffer when direct
  ASSERT_EQ(this->read(kImage - 512, {b.iov()}), 8192);
  EXPECT_EQ(std::memcmp(b.p, t.shadow().data() + kImage - 512, 512), 0);
  EXPECT_EQ(std::count(b.p + 512, b.p + b.n, 0), 8192 - 512);
}

TYPED_TEST(EngineTest, FlushCompletes) {
  TempImage t(kImage);
  this->open(t);
  Buf w(4096);
  ASSERT_EQ(this->write(0, {w.iov()}), 4096);
  EXPECT_EQ(this->engine_->stats().syncs, 0u);
  EXPECT_EQ(this->flush(), 0);
  // The seam the device's FLUSH test reads: each completed flush is one fdatasync that succeeded.
  EXPECT_EQ(this->engine_->stats().syncs, 1u);
  ASSERT_EQ(this->write(4096, {w.iov()}), 4096);
  EXPECT_EQ(this->flush(), 0);
  EXPECT_EQ(this->engine_->stats().syncs, 2u);
}

TYPED_TEST(EngineTest, FlushOnReadOnlyImageCompletes) {
  TempImage t(kImage);
  this->open(t, true);
  EXPECT_EQ(this->flush(), 0);
}

TYPED_TEST(EngineTest, ManyInFlightUpToTheCapThenQueueFull) {
  TempImage t(kImage);
  this->open(t, false, {}, 32);
  ASSERT_EQ(this->engine_->max_in_flight(), 32u);
  std::vector<Buf> bufs;
  for (int i = 0; i < 32; ++i) bufs.emplace_back(4096);
  for (uint64_t i = 0; i < 32; ++i) {
    iovec v = bufs[i].iov();
    ASSERT_TRUE(this->engine_->read(i * 8192, {&v, 1}, 100 + i));
  }
  EXPECT_EQ(this->engine_->in_flight(), 32u);
  iovec v = bufs[0].iov();
  auto full = this->engine_->read(0, {&v, 1}, 999);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, BlockError::kQueueFull);
  auto done = this->wait(32);
  std::vector<bool> seen(32);
  for (const Completion& c : done) {
    ASSERT_GE(c.cookie, 100u);
    ASSERT_LT(c.cookie, 132u);
    EXPECT_EQ(c.result, 4096);
    seen[c.cookie - 100] = true;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 32);
  for (uint64_t i = 0; i < 32; ++i) {
    EXPECT_EQ(std::memcmp(bufs[i].p, t.shadow().data() + i * 8192, 4096), 0) << i;
  }
  EXPECT_EQ(this->engine_->in_flight(), 0u);
  EXPECT_TRUE(this->engine_->read(0, {&v, 1}, 1000));  // room again
  EXPECT_EQ(this->wait(1).size(), 1u);
}

TYPED_TEST(EngineTest, AlignedRequestsGoWithoutBounce) {
  TempImage t(kImage);
  this->open(t);
  ASSERT_TRUE(this->image_->direct());
  Buf b(8192);
  ASSERT_EQ(this->read(4096, {b.iov()}), 8192);
  ASSERT_EQ(this->write(4096, {b.iov()}), 8192);
  EXPECT_EQ(this->engine_->stats().bounced, 0u);
  EXPECT_EQ(this->engine_->stats().requests, 2u);
}

TYPED_TEST(EngineTest, UnalignedBuffersBounceAndStayCorrect) {
  TempImage t(kImage);
  this->open(t);
  ASSERT_TRUE(this->image_->direct());
  Buf w1(4096, 1), w2(4096, 7);  // odd addresses: never aligned for O_DIRECT
  test::fill_random(w1.p, w1.n, 5);
  test::fill_random(w2.p, w2.n, 6);
  ASSERT_EQ(this->write(8192, {w1.iov(), w2.iov()}), 8192);
  t.shadow_write(8192, w1.p, 4096);
  t.shadow_write(8192 + 4096, w2.p, 4096);
  Buf r(8192, 5);
  ASSERT_EQ(this->read(8192, {r.iov()}), 8192);
  EXPECT_EQ(std::memcmp(r.p, t.shadow().data() + 8192, 8192), 0);
  EXPECT_EQ(this->engine_->stats().bounced, 2u);
  EXPECT_EQ(t.read_back(), t.shadow());
}

TYPED_TEST(EngineTest, SmallIoOnA4096AlignedImage) {
  TempImage t(kImage);
  this->open(t, false, OpenOptions{.force_offset_align = 4096});
  ASSERT_EQ(this->image_->offset_align(), 4096u);
  // 512-byte writes at odd sectors, one spanning a 4096 boundary: read-modify-write.
  for (uint64_t sector : {1u, 7u, 9u, 15u, 200u}) {
    Buf w(1024);
    test::fill_random(w.p, w.n, sector);
    ASSERT_EQ(this->write(sector * 512, {w.iov()}), 1024) << sector;
    t.shadow_write(sector * 512, w.p, w.n);
  }
  for (uint64_t sector : {0u, 1u, 7u, 8u, 15u, 201u}) {
    Buf r(512);
    ASSERT_EQ(this->read(sector * 512, {r.iov()}), 512);
    EXPECT_EQ(std::memcmp(r.p, t.shadow().data() + sector * 512, 512), 0) << sector;
  }
  EXPECT_GE(this->engine_->stats().bounced, 11u);
  EXPECT_EQ(t.read_back(), t.shadow());
}

// Unaligned writes overlapping in the same 4096 blocks, all in flight at once: each must see
// the previous one's result (read-modify-write serialized), so the last one wins.
TYPED_TEST(EngineTest, OverlappingUnalignedWritesEndWithTheLaterData) {
  TempImage t(kImage);
  this->open(t, false, OpenOptions{.force_offset_align = 4096});
  std::mt19937_64 rng(11);
  std::vector<Buf> bufs;
  constexpr int kWrites = 48;
  bufs.reserve(kWrites);
  for (int i = 0; i < kWrites; ++i) {
    uint64_t sector = 1 + 2 * (rng() % 12);  // odd sectors in the first 3 blocks: always RMW
    size_t len = 512 * (1 + rng() % 6);
    bufs.emplace_back(len, i % 2 ? 0 : 3);
    test::fill_random(bufs.back().p, len, 1000 + i);
    iovec v = bufs.back().iov();
    ASSERT_TRUE(this->engine_->write(sector * 512, {&v, 1}, i));
    t.shadow_write(sector * 512, bufs.back().p, len);
  }
  auto done = this->wait(kWrites);
  for (const Completion& c : done) EXPECT_EQ(c.result, static_cast<int64_t>(bufs[c.cookie].n));
  EXPECT_EQ(t.read_back(), t.shadow());
}

TYPED_TEST(EngineTest, WriteToReadOnlyImageFails) {
  TempImage t(kImage);
  this->open(t, true);
  Buf w(4096);
  EXPECT_LT(this->write(0, {w.iov()}), 0);
  Buf r(4096);
  EXPECT_EQ(this->read(0, {r.iov()}), 4096);
  EXPECT_EQ(t.read_back(), t.shadow());
}

// Fault injection: the image's fd is replaced by one opened read-only, so the kernel refuses
// writes (EBADF) while reads still work.
TYPED_TEST(EngineTest, KernelErrorsBecomeNegativeResults) {
  TempImage t(kImage);
  this->open(t);
  int ro = ::open(t.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  ASSERT_EQ(::dup2(ro, this->image_->fd()), this->image_->fd());
  if constexpr (std::is_same_v<TypeParam, UringKind>) {
    // io_uring holds its own reference to the registered file: swap that one too.
    auto& uring = static_cast<UringEngine&>(*this->engine_);
    ASSERT_TRUE(uring.replace_file_for_testing(ro));
  }
  ::close(ro);
  Buf w(4096);
  EXPECT_EQ(this->write(0, {w.iov()}), -EBADF);
  Buf u(512, 1);  // bounced too
  EXPECT_EQ(this->write(512, {u.iov()}), -EBADF);
  Buf r(4096);
  EXPECT_EQ(this->read(0, {r.iov()}), 4096);
  EXPECT_EQ(std::memcmp(r.p, t.shadow().data(), 4096), 0);
}

// The page-cache path: no alignment, so even misaligned buffers and offsets go as they are.
TYPED_TEST(EngineTest, BufferedImageWorks) {
  TempImage t(kImage, ImageFs::kTmpfs);
  this->open(t, false, OpenOptions{.allow_direct = false});
  ASSERT_FALSE(this->image_->direct());
  Buf w(1536, 3);
  test::fill_random(w.p, w.n, 77);
  ASSERT_EQ(this->write(512, {w.iov()}), 1536);
  t.shadow_write(512, w.p, w.n);
  Buf r(4096, 1);
  ASSERT_EQ(this->read(0, {r.iov()}), 4096);
  EXPECT_EQ(std::memcmp(r.p, t.shadow().data(), 4096), 0);
  Buf e(8192);
  ASSERT_EQ(this->read(kImage - 512, {e.iov()}), 8192);
  EXPECT_EQ(std::count(e.p + 512, e.p + e.n, 0), 8192 - 512);
  EXPECT_EQ(this->engine_->stats().bounced, 0u);
  EXPECT_EQ(this->flush(), 0);
  EXPECT_EQ(t.read_back(), t.shadow());
}

// Thousands of random reads, writes and flushes of random sizes, offsets and buffer alignments
// with up to the queue depth in flight, on an image that needs 4096 alignment; every read is
// checked against the shadow copy when it completes, and the file at the end.
TYPED_TEST(EngineTest, RandomMixMatchesTheShadow) {
  TempImage t(kImage);
  this->open(t, false, OpenOptions{.force_offset_align = 4096}, 32);
  struct Req {
    bool write;
    uint64_t off;
    size_t len;
    Buf buf;
  };
  constexpr uint64_t kFlushBit = uint64_t{1} << 63;
  std::vector<std::unique_ptr<Req>> slots(1024);
  std::mt19937_64 rng(1234);
  size_t in_flight = 0;
  uint64_t next = 0, checked = 0;
  Completion done[64];
  auto overlaps_in_flight = [&](uint64_t off, size_t len) {
    for (auto& r : slots) {
      if (r && off < r->off + r->len && r->off < off + len) return true;
    }
    return false;
  };
  auto reap_some = [&] {
    ASSERT_TRUE(this->engine_->flush_submissions());
    pollfd p{this->engine_->notifier_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    size_t n = this->engine_->reap(done);
    for (size_t i = 0; i < n; ++i) {
      auto& r = slots[done[i].cookie % slots.size()];
      if (done[i].cookie & kFlushBit) {
        EXPECT_EQ(done[i].result, 0);
      } else {
        ASSERT_TRUE(r);
        ASSERT_EQ(done[i].result, static_cast<int64_t>(r->len)) << r->write << " " << r->off;
        if (!r->write) {
          ASSERT_EQ(std::memcmp(r->buf.p, t.shadow().data() + r->off, r->len), 0) << r->off;
          ++checked;
        }
        r.reset();
      }
      --in_flight;
    }
  };
  for (int op = 0; op < 4000; ++op) {
    uint64_t cookie = next++;
    while (in_flight >= 32 || slots[cookie % slots.size()]) reap_some();
    if (rng() % 20 == 0) {
      ASSERT_TRUE(this->engine_->flush(kFlushBit | cookie));
      ++in_flight;
      continue;
    }
    size_t sectors = 1 + rng() % 24;
    uint64_t off = 512 * (rng() % (kImage / 512 - sectors + 1));
    size_t len = sectors * 512;
    while (overlaps_in_flight(off, len)) reap_some();
    auto r = std::make_unique<Req>(
        Req{rng() % 2 == 0, off, len, Buf(len, (rng() % 4) * 512 + (rng() % 2))});
    iovec v = r->buf.iov();
    if (r->write) {
      test::fill_random(r->buf.p, len, cookie);
      t.shadow_write(off, r->buf.p, len);
      ASSERT_TRUE(this->engine_->write(off, {&v, 1}, cookie));
    } else {
      ASSERT_TRUE(this->engine_->read(off, {&v, 1}, cookie));
    }
    slots[cookie % slots.size()] = std::move(r);
    ++in_flight;
  }
  while (in_flight > 0) reap_some();
  EXPECT_GT(checked, 1000u);
  EXPECT_EQ(t.read_back(), t.shadow());
}

// `count` iovecs over one buffer, of mixed lengths (`unit`, every 7th twice that), each starting
// `unit` past the previous one's end so that a misplaced byte cannot land in a neighbour.
struct SpreadIovecs {
  SpreadIovecs(size_t count, size_t unit, uint64_t seed) {
    size_t span = 0;
    for (size_t i = 0; i < count; ++i) span += unit * (i % 7 == 6 ? 2 : 1) + unit;
    mem = AlignedBuffer::allocate(span, 4096);
    test::fill_random(mem.data(), span, seed);
    uint8_t* p = mem.data();
    for (size_t i = 0; i < count; ++i) {
      size_t len = unit * (i % 7 == 6 ? 2 : 1);
      iov.push_back({p, len});
      total += len;
      p += len + unit;
    }
  }
  // Whether the iovecs hold the `total` bytes of `image` starting at `off`.
  bool matches(const std::vector<uint8_t>& image, uint64_t off) const {
    for (const iovec& v : iov) {
      if (std::memcmp(v.iov_base, image.data() + off, v.iov_len) != 0) return false;
      off += v.iov_len;
    }
    return true;
  }
  AlignedBuffer mem;
  std::vector<iovec> iov;
  size_t total = 0;
};

// More iovecs than one preadv/pwritev takes (IOV_MAX): the request layer gathers them through
// one bounce buffer. Exactly IOV_MAX aligned iovecs still go straight from the caller's memory,
// so the bounce counter tells which path each request took.
TYPED_TEST(EngineTest, MoreThanIovMaxIovecsGoThroughOneBuffer) {
  TempImage t(16 << 20);
  this->open(t);
  ASSERT_TRUE(this->image_->direct());
  const size_t unit = std::max<size_t>(this->image_->offset_align(), this->image_->mem_align());
  const uint64_t off = 3 * unit;

  SpreadIovecs direct(IOV_MAX, unit, 1);
  ASSERT_EQ(this->read(off, direct.iov), static_cast<int64_t>(direct.total));
  EXPECT_TRUE(direct.matches(t.shadow(), off));
  EXPECT_EQ(this->engine_->stats().bounced, 0u);

  SpreadIovecs w(IOV_MAX + 5, unit, 2);
  ASSERT_EQ(this->write(off, w.iov), static_cast<int64_t>(w.total));
  EXPECT_EQ(this->engine_->stats().bounced, 1u);
  for (size_t i = 0, pos = off; i < w.iov.size(); pos += w.iov[i].iov_len, ++i) {
    t.shadow_write(pos, static_cast<const uint8_t*>(w.iov[i].iov_base), w.iov[i].iov_len);
  }
  EXPECT_EQ(t.read_back(), t.shadow());

  SpreadIovecs r(IOV_MAX + 5, unit, 3);
  ASSERT_EQ(this->read(off + unit, r.iov), static_cast<int64_t>(r.total));
  EXPECT_EQ(this->engine_->stats().bounced, 2u);
  EXPECT_TRUE(r.matches(t.shadow(), off + unit));
}

TYPED_TEST(EngineTest, ZeroLengthRequestCompletes) {
  TempImage t(kImage);
  this->open(t);
  EXPECT_EQ(this->read(0, {}), 0);
}

}  // namespace
}  // namespace kindling::block

namespace kindling::block {
namespace {

// DISCARD punches a hole: the host file loses its blocks there, the range reads back as zeroes
// (ext4 and tmpfs both punch), and the data around it stays.
TYPED_TEST(EngineTest, DiscardFreesHostBlocksAndKeepsTheRest) {
  for (ImageFs fs : {ImageFs::kDisk, ImageFs::kTmpfs}) {
    TempImage t(4 * kImage, fs);
    this->open(t);
    uint64_t before = this->host_blocks(t);
    ASSERT_EQ(this->discard(kImage, 2 * kImage), 0);
    EXPECT_LE(this->host_blocks(t) + (2 * kImage) / 512, before);
    std::fill(t.shadow().begin() + kImage, t.shadow().begin() + 3 * kImage, 0);
    EXPECT_TRUE(t.matches_shadow());
    this->engine_.reset();
  }
}

// WRITE_ZEROES with and without unmap, on ext4 (PUNCH_HOLE / ZERO_RANGE) and on tmpfs, which
// refuses ZERO_RANGE: without unmap the engine falls back to writing zeroes, in 1 MiB pieces
// (2.5 MiB here), and the blocks stay allocated.
TYPED_TEST(EngineTest, WriteZeroesReadsZeroesOnEveryFileSystem) {
  for (ImageFs fs : {ImageFs::kDisk, ImageFs::kTmpfs}) {
    for (bool unmap : {false, true}) {
      TempImage t(4 * kImage, fs);
      this->open(t);
      uint64_t before = this->host_blocks(t);
      const uint64_t off = 512 * 3, len = 5 * kImage / 2;  // not 4096-aligned at the start
      ASSERT_EQ(this->write_zeroes(off, len, unmap), 0) << unmap;
      std::fill(t.shadow().begin() + off, t.shadow().begin() + off + len, 0);
      EXPECT_TRUE(t.matches_shadow()) << "unmap " << unmap;
      if (unmap) {
        EXPECT_LT(this->host_blocks(t), before) << "unmap: punched";
      } else {
        EXPECT_GE(this->host_blocks(t), before) << "no unmap: stays allocated";
      }
      // Writes after the fallback still land (the zero buffer was not written through).
      Buf w(4096);
      ASSERT_EQ(this->write(0, {w.iov()}), 4096);
      t.shadow_write(0, w.p, 4096);
      ASSERT_EQ(this->write_zeroes(2 * kImage, 8192, false), 0);
      std::fill(t.shadow().begin() + 2 * kImage, t.shadow().begin() + 2 * kImage + 8192, 0);
      EXPECT_TRUE(t.matches_shadow());
      this->engine_.reset();
    }
  }
}

TYPED_TEST(EngineTest, DiscardAndWriteZeroesOnReadOnlyImageFail) {
  TempImage t(kImage);
  this->open(t, true);
  EXPECT_EQ(this->discard(0, 4096), -EROFS);
  EXPECT_EQ(this->write_zeroes(0, 4096, true), -EROFS);
  EXPECT_EQ(t.read_back(), t.shadow());
}

TYPED_TEST(EngineTest, EmptyAndOverflowingRanges) {
  TempImage t(kImage);
  this->open(t);
  EXPECT_EQ(this->discard(4096, 0), 0);
  EXPECT_EQ(this->write_zeroes(4096, 0, false), 0);
  EXPECT_FALSE(this->engine_->discard(~uint64_t{0} - 511, 1024, 1));
  EXPECT_FALSE(this->engine_->write_zeroes(~uint64_t{0} - 511, 1024, true, 1));
  EXPECT_EQ(this->engine_->in_flight(), 0u);
  EXPECT_EQ(t.read_back(), t.shadow());
}

// A write-zeroes and an overlapping unaligned (read-modify-write) write keep their order.
TYPED_TEST(EngineTest, WriteZeroesOrderedAfterAnOverlappingWrite) {
  TempImage t(kImage);
  OpenOptions o;
  this->open(t, false, o);
  Buf w(1000, 3);
  ASSERT_TRUE(this->engine_->write(512, {{w.iov()}}, 1));
  ASSERT_TRUE(this->engine_->write_zeroes(0, 8192, false, 2));
  auto c = this->wait(2);
  ASSERT_EQ(c.size(), 2u);
  for (const Completion& x : c) EXPECT_EQ(x.result, x.cookie == 1 ? 1000 : 0);
  std::fill(t.shadow().begin(), t.shadow().begin() + 8192, 0);
  EXPECT_TRUE(t.matches_shadow());
}

// io_uring only: a single-buffer op inside registered memory goes as READ_FIXED/WRITE_FIXED;
// one outside it, or a failed registration, goes as READV/WRITEV; the data is right either way.
TEST(UringEngine, FixedBuffersWhereRegistered) {
  TempImage t(kImage);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = UringEngine::create(*img, 16);
  ASSERT_TRUE(e) << e.error().message();
  UringEngine& eng = **e;
  Buf ram(64 << 10);
  iovec region = ram.iov();
  eng.register_memory({&region, 1});
  ASSERT_EQ(eng.fixed_buffers(), 1u);
  auto run = [&](bool write, uint64_t off, iovec v) {
    auto r = write ? eng.write(off, {&v, 1}, 5) : eng.read(off, {&v, 1}, 5);
    EXPECT_TRUE(r);
    EXPECT_TRUE(eng.flush_submissions());
    Completion c[1];
    size_t n = 0;
    for (int i = 0; i < 100 && n == 0; ++i) {
      pollfd p{eng.notifier_fd(), POLLIN, 0};
      ::poll(&p, 1, 10000);
      n = eng.reap(c);
    }
    return n == 1 ? c[0].result : -1000;
  };
  EXPECT_EQ(run(false, 8192, {ram.p + 4096, 8192}), 8192);
  EXPECT_EQ(std::memcmp(ram.p + 4096, t.shadow().data() + 8192, 8192), 0);
  EXPECT_EQ(eng.fixed_ops(), 1u);
  std::memset(ram.p, 0x5c, 4096);
  EXPECT_EQ(run(true, 0, {ram.p, 4096}), 4096);
  EXPECT_EQ(eng.fixed_ops(), 2u);
  t.shadow_write(0, ram.p, 4096);
  Buf outside(4096);
  EXPECT_EQ(run(false, 4096, outside.iov()), 4096);
  EXPECT_EQ(eng.fixed_ops(), 2u);  // not registered: READV
  EXPECT_EQ(std::memcmp(outside.p, t.shadow().data() + 4096, 4096), 0);
  // Runs past the registered buffer (into the Buf's 4096 spare bytes): not fixed either.
  iovec straddles{ram.p + (64 << 10) - 4096, 8192};
  EXPECT_EQ(run(false, 0, straddles), 8192);
  EXPECT_EQ(eng.fixed_ops(), 2u);
  EXPECT_EQ(std::memcmp(straddles.iov_base, t.shadow().data(), 8192), 0);
  // A registration the kernel refuses (memory that is not there) leaves plain READV/WRITEV.
  iovec bad{nullptr, 1 << 20};
  eng.register_memory({&bad, 1});
  EXPECT_EQ(eng.fixed_buffers(), 0u);
  EXPECT_EQ(run(false, 0, {ram.p, 4096}), 4096);
  EXPECT_EQ(eng.fixed_ops(), 2u);
  EXPECT_TRUE(t.matches_shadow());
}

}  // namespace
}  // namespace kindling::block

namespace kindling::block {
namespace {

// The deepest queue the device allows (32768, two operations per request) is more than the
// kernel's largest ring: the ring is clamped, not refused (no fallback to libaio).
TEST(UringEngine, DeepestQueueGetsAClampedRing) {
  TempImage t(kImage);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = UringEngine::create(*img, 32768);
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ((*e)->max_in_flight(), 32768u);
}

// The image's lock goes with the engine: a registered file would keep the image open (and
// locked) until the kernel tears the ring down later, so the next open would find it locked.
TEST(UringEngine, ImageLockIsReleasedWithTheEngine) {
  TempImage t(kImage);
  for (int i = 0; i < 5; ++i) {
    auto img = RawImage::open(t.path(), false);
    ASSERT_TRUE(img) << "round " << i << ": " << img.error().message();
    auto e = UringEngine::create(*img, 8);
    ASSERT_TRUE(e) << e.error().message();
    Buf b(4096);
    iovec v = b.iov();
    ASSERT_TRUE((*e)->read(0, {&v, 1}, 1));
    ASSERT_TRUE((*e)->flush_submissions());
    Completion c[1];
    pollfd p{(*e)->notifier_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    ASSERT_EQ((*e)->reap(c), 1u);
  }
}

}  // namespace
}  // namespace kindling::block
