// The shared request layer with a fake kernel: every operation it starts is recorded and
// completed by the test in a chosen order, so serialization and phases are checked exactly.
#include "block/aligned_io.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "block/raw_image.h"
#include "tests/support/temp_image.h"

namespace kindling::block {
namespace {

using test::TempImage;

// Records kernel ops and performs them on an in-memory disk when the test says so.
class FakeKernel : public OpSink {
 public:
  explicit FakeKernel(std::vector<uint8_t> disk) : disk(std::move(disk)) {}
  void start(const KernelOp& op) override { started.push_back(op); }

  // Runs started op `i` against `disk`; returns its byte count (as the kernel would).
  int64_t run(size_t i) {
    const KernelOp& op = started.at(i);
    if (op.kind == KernelOp::Kind::kSync) return 0;
    uint64_t pos = op.offset;
    for (int k = 0; k < op.iovcnt; ++k) {
      auto* p = static_cast<uint8_t*>(op.iov[k].iov_base);
      size_t n = std::min<uint64_t>(op.iov[k].iov_len, disk.size() - std::min(pos, disk.size()));
      if (op.kind == KernelOp::Kind::kRead)
        std::memcpy(p, disk.data() + pos, n);
      else
        std::memcpy(disk.data() + pos, p, n);
      pos += n;
    }
    return static_cast<int64_t>(pos - op.offset);
  }

  std::vector<uint8_t> disk;
  std::vector<KernelOp> started;
};

class AlignedIoTest : public testing::Test {
 protected:
  void SetUp() override {
    auto img = RawImage::open(t_.path(), false, OpenOptions{.force_offset_align = 4096});
    ASSERT_TRUE(img) << img.error().message();
    ASSERT_TRUE(img->direct());
    image_ = std::make_unique<RawImage>(std::move(*img));
    kernel_ = std::make_unique<FakeKernel>(t_.shadow());
    io_ = std::make_unique<AlignedIo>(*image_, 16, *kernel_);
  }

  // Runs op `i` and reports its result to the layer.
  void finish_op(size_t i) { io_->complete(kernel_->started.at(i).tag, kernel_->run(i)); }

  std::vector<Completion> take() {
    std::vector<Completion> out(16);
    out.resize(io_->take(out));
    return out;
  }

  TempImage t_{64 << 10};
  std::unique_ptr<RawImage> image_;
  std::unique_ptr<FakeKernel> kernel_;
  std::unique_ptr<AlignedIo> io_;
  uint8_t data_[3][8192]{};
};

TEST_F(AlignedIoTest, AlignedRequestGoesStraightFromTheCallersBuffer) {
  alignas(4096) static uint8_t buf[8192];
  iovec v{buf, sizeof(buf)};
  ASSERT_TRUE(io_->submit(ReqKind::kRead, 4096, {&v, 1}, 1));
  ASSERT_EQ(kernel_->started.size(), 1u);
  EXPECT_EQ(kernel_->started[0].iov[0].iov_base, buf);
  EXPECT_EQ(kernel_->started[0].offset, 4096u);
  EXPECT_EQ(io_->bounced(), 0u);
}

TEST_F(AlignedIoTest, UnalignedWriteReadsHeadAndTailThenWritesTheWidenedRange) {
  test::fill_random(data_[0], 6000, 9);
  iovec v{data_[0], 6000};
  const uint64_t off = 1024;  // [1024, 7024): head block 0, tail block 1
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, off, {&v, 1}, 5));
  ASSERT_EQ(kernel_->started.size(), 2u);
  EXPECT_EQ(kernel_->started[0].kind, KernelOp::Kind::kRead);
  EXPECT_EQ(kernel_->started[0].offset, 0u);
  EXPECT_EQ(kernel_->started[1].kind, KernelOp::Kind::kRead);
  EXPECT_EQ(kernel_->started[1].offset, 4096u);
  finish_op(1);
  EXPECT_EQ(kernel_->started.size(), 2u);  // still waiting for the head
  finish_op(0);
  ASSERT_EQ(kernel_->started.size(), 3u);
  const KernelOp& w = kernel_->started[2];
  EXPECT_EQ(w.kind, KernelOp::Kind::kWrite);
  EXPECT_EQ(w.offset, 0u);
  ASSERT_EQ(w.iovcnt, 1);
  EXPECT_EQ(w.iov[0].iov_len, 8192u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.iov[0].iov_base) % 4096, 0u);
  finish_op(2);
  auto done = take();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].cookie, 5u);
  EXPECT_EQ(done[0].result, 6000);
  t_.shadow_write(off, data_[0], 6000);
  EXPECT_EQ(kernel_->disk, t_.shadow());
}

TEST_F(AlignedIoTest, WriteInsideOneBlockReadsThatBlockOnce) {
  iovec v{data_[0], 512};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 1024, {&v, 1}, 1));
  ASSERT_EQ(kernel_->started.size(), 1u);
  EXPECT_EQ(kernel_->started[0].offset, 0u);
  EXPECT_EQ(kernel_->started[0].iov[0].iov_len, 4096u);
}

TEST_F(AlignedIoTest, OverlappingReadModifyWritesRunOneAfterTheOther) {
  iovec a{data_[0], 512}, b{data_[1], 512};
  std::memset(data_[0], 'A', 512);
  std::memset(data_[1], 'B', 512);
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 512, {&a, 1}, 1));
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 1024, {&b, 1}, 2));  // same 4096 block
  ASSERT_EQ(kernel_->started.size(), 1u);                       // b waits
  finish_op(0);                                                 // a's head read
  ASSERT_EQ(kernel_->started.size(), 2u);
  EXPECT_EQ(kernel_->started[1].kind, KernelOp::Kind::kWrite);
  finish_op(1);  // a written: b may start, and must read a's block
  ASSERT_EQ(kernel_->started.size(), 3u);
  EXPECT_EQ(kernel_->started[2].kind, KernelOp::Kind::kRead);
  finish_op(2);
  finish_op(3);
  EXPECT_EQ(take().size(), 2u);
  EXPECT_EQ(kernel_->disk[512], 'A');
  EXPECT_EQ(kernel_->disk[1024], 'B');
}

TEST_F(AlignedIoTest, DisjointReadModifyWritesRunTogether) {
  iovec a{data_[0], 512}, b{data_[1], 512};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 512, {&a, 1}, 1));
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 4096 + 512, {&b, 1}, 2));
  EXPECT_EQ(kernel_->started.size(), 2u);
}

TEST_F(AlignedIoTest, AlignedWriteQueuesBehindAnOverlappingReadModifyWrite) {
  alignas(4096) static uint8_t aligned[4096];
  std::memset(aligned, 'C', sizeof(aligned));
  std::memset(data_[0], 'A', 512);
  iovec a{data_[0], 512}, c{aligned, 4096};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 512, {&a, 1}, 1));
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 0, {&c, 1}, 2));
  ASSERT_EQ(kernel_->started.size(), 1u);  // c waits for a's read-modify-write
  finish_op(0);
  finish_op(1);
  ASSERT_EQ(kernel_->started.size(), 3u);
  finish_op(2);
  EXPECT_EQ(take().size(), 2u);
  EXPECT_EQ(kernel_->disk[512], 'C');  // the later write wins
}

TEST_F(AlignedIoTest, OverlappingAlignedWritesAndReadsDoNotWait) {
  alignas(4096) static uint8_t buf[3][4096];
  iovec v0{buf[0], 4096}, v1{buf[1], 4096}, v2{buf[2], 4096};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 0, {&v0, 1}, 1));
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 0, {&v1, 1}, 2));
  ASSERT_TRUE(io_->submit(ReqKind::kRead, 0, {&v2, 1}, 3));
  EXPECT_EQ(kernel_->started.size(), 3u);
}

TEST_F(AlignedIoTest, FailedHeadReadFailsTheWriteWithoutWriting) {
  iovec v{data_[0], 512};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 512, {&v, 1}, 4));
  io_->complete(kernel_->started[0].tag, -EIO);
  EXPECT_EQ(kernel_->started.size(), 1u);
  auto done = take();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, -EIO);
  EXPECT_EQ(kernel_->disk, t_.shadow());
}

TEST_F(AlignedIoTest, ShortWriteIsAnIoError) {
  alignas(4096) static uint8_t buf[8192];
  iovec v{buf, sizeof(buf)};
  ASSERT_TRUE(io_->submit(ReqKind::kWrite, 0, {&v, 1}, 4));
  io_->complete(kernel_->started[0].tag, 4096);
  auto done = take();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, -EIO);
}

TEST_F(AlignedIoTest, ShortReadInsideTheImageIsAnIoError) {
  alignas(4096) static uint8_t buf[8192];
  iovec v{buf, sizeof(buf)};
  ASSERT_TRUE(io_->submit(ReqKind::kRead, 0, {&v, 1}, 4));
  io_->complete(kernel_->started[0].tag, 4096);
  auto done = take();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, -EIO);
}

TEST_F(AlignedIoTest, BounceBuffersAreReusedInTheSteadyState) {
  for (int i = 0; i < 100; ++i) {
    iovec v{data_[0] + 1, 4096};
    ASSERT_TRUE(io_->submit(ReqKind::kRead, 4096, {&v, 1}, i));
    finish_op(kernel_->started.size() - 1);
    ASSERT_EQ(take().size(), 1u);
  }
  EXPECT_EQ(io_->bounced(), 100u);
  EXPECT_EQ(io_->bounce_allocations(), 1u);
}

TEST_F(AlignedIoTest, QueueFullAtTheCapUntilTaken) {
  alignas(4096) static uint8_t buf[4096];
  iovec v{buf, 4096};
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(io_->submit(ReqKind::kRead, 0, {&v, 1}, i));
  auto r = io_->submit(ReqKind::kRead, 0, {&v, 1}, 99);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, BlockError::kQueueFull);
  for (size_t i = 0; i < 16; ++i) finish_op(i);
  // Finished but not taken still counts against the cap.
  EXPECT_FALSE(io_->submit(ReqKind::kRead, 0, {&v, 1}, 99));
  EXPECT_EQ(take().size(), 16u);
  EXPECT_TRUE(io_->submit(ReqKind::kRead, 0, {&v, 1}, 99));
}

// Misaligned requests past the bounce budget wait for memory instead of allocating more; the
// pool never holds more than its budget, and every request still completes with its data.
TEST_F(AlignedIoTest, BounceMemoryStaysWithinTheBudget) {
  constexpr size_t kBudget = 16 << 10;
  AlignedIo io(*image_, 16, *kernel_, kBudget);
  // 4 KiB at a 512-byte offset, from a misaligned buffer: widened to 8 KiB, two at a time.
  static uint8_t bufs[8][4096 + 1];
  for (int i = 0; i < 8; ++i) {
    iovec v{bufs[i] + 1, 4096};
    ASSERT_TRUE(io.submit(ReqKind::kRead, 512 + 8192 * uint64_t(i), {&v, 1}, i));
  }
  EXPECT_EQ(kernel_->started.size(), 2u) << "two 8 KiB buffers fill a 16 KiB budget";
  EXPECT_EQ(io.bounce_waiting(), 6u);
  for (size_t i = 0; i < kernel_->started.size(); ++i) {
    EXPECT_LE(io.bounce_pool().held_bytes(), kBudget);
    io.complete(kernel_->started[i].tag, kernel_->run(i));
  }
  EXPECT_EQ(kernel_->started.size(), 8u) << "each returned buffer started a waiting request";
  std::vector<Completion> out(16);
  out.resize(io.take(out));
  ASSERT_EQ(out.size(), 8u);
  for (const Completion& c : out) {
    EXPECT_EQ(c.result, 4096) << "cookie " << c.cookie;
    EXPECT_EQ(std::memcmp(bufs[c.cookie] + 1, t_.shadow().data() + 512 + 8192 * c.cookie, 4096), 0);
  }
  EXPECT_EQ(io.bounce_pool().high_water_bytes(), kBudget);
  EXPECT_EQ(io.bounce_pool().outstanding_bytes(), 0u);
}

// A request that alone needs more bounce memory than the budget fails at once, allocating
// nothing and starting nothing; a fitting one after it still works.
TEST_F(AlignedIoTest, RequestLargerThanTheBudgetFails) {
  AlignedIo io(*image_, 16, *kernel_, 16 << 10);
  static uint8_t buf[32768 + 1];
  iovec big{buf + 1, 32768};
  ASSERT_TRUE(io.submit(ReqKind::kWrite, 0, {&big, 1}, 7));
  EXPECT_TRUE(kernel_->started.empty());
  std::vector<Completion> out(4);
  out.resize(io.take(out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].cookie, 7u);
  EXPECT_EQ(out[0].result, -E2BIG);
  EXPECT_EQ(io.bounce_allocations(), 0u);
  iovec small{buf + 1, 4096};
  ASSERT_TRUE(io.submit(ReqKind::kRead, 4096, {&small, 1}, 8));
  EXPECT_EQ(kernel_->started.size(), 1u);
}

}  // namespace
}  // namespace kindling::block
