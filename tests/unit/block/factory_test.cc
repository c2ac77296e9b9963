// make_engine, engine-specific behaviour and teardown.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>

#include "block/aio_engine.h"
#include "block/bounce_pool.h"
#include "block/raw_image.h"
#include "block/sync_engine.h"
#include "tests/support/temp_image.h"

namespace kindling::block {
namespace {

using test::TempImage;

TEST(MakeEngine, BuildsEachKnownEngine) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  for (const char* name : {"libaio", "sync"}) {
    auto e = make_engine(name, *img, 128);
    ASSERT_TRUE(e) << name << ": " << e.error().message();
    EXPECT_EQ((*e)->max_in_flight(), 128u);
    EXPECT_EQ((*e)->max_transfer_bytes(), kMaxTransferBytes);
    EXPECT_EQ((*e)->in_flight(), 0u);
    EXPECT_GE((*e)->notifier_fd(), 0);
  }
}

TEST(MakeEngine, UnknownNameIsAClearError) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = make_engine("io_uring", *img, 128);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, BlockError::kUnknownEngine);
  EXPECT_NE(e.error().message().find("io_uring"), std::string::npos);
}

TEST(MakeEngine, ZeroDepthIsRefused) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  EXPECT_FALSE(make_engine("libaio", *img, 0));
  EXPECT_FALSE(make_engine("sync", *img, 0));
}

TEST(AioEngine, FlushGoesToTheKernelWhenItTakesFdsync) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto kernel = AioEngine::create(*img, 8);
  ASSERT_TRUE(kernel);
  EXPECT_TRUE((*kernel)->kernel_fdsync()) << "IOCB_CMD_FDSYNC exists since Linux 4.18";
  auto helper = AioEngine::create(*img, 8, false);
  ASSERT_TRUE(helper);
  EXPECT_FALSE((*helper)->kernel_fdsync());
}

// Queues 16 aligned 4 KiB reads on a libaio engine whose io_submit takes at most `batch` iocbs
// (0: no cap), submits them, checks the number of io_submit calls and the data read back.
void check_submit_batching(size_t batch, uint64_t expected_calls) {
  TempImage t(1 << 20);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = batch == kDefaultSubmitBatch ? AioEngine::create(*img, 64)
                                        : AioEngine::create(*img, 64, true, batch);
  ASSERT_TRUE(e);
  AlignedBuffer buf = AlignedBuffer::allocate(16 * 4096, 4096);
  for (uint64_t i = 0; i < 16; ++i) {
    iovec v{buf.data() + i * 4096, 4096};
    ASSERT_TRUE((*e)->read(i * 4096, {&v, 1}, i));
  }
  EXPECT_EQ((*e)->stats().submit_calls, 0u);  // queued until flush_submissions()
  ASSERT_TRUE((*e)->flush_submissions());
  EXPECT_EQ((*e)->stats().submit_calls, expected_calls);
  size_t got = 0;
  Completion c[16];
  while (got < 16) {
    pollfd p{(*e)->notifier_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    got += (*e)->reap({c, 16});
  }
  EXPECT_EQ(std::memcmp(buf.data(), t.shadow().data(), 16 * 4096), 0);
}

TEST(AioEngine, BatchesSubmissionsIntoOneIoSubmit) {
  check_submit_batching(0, 1u);  // no cap on the batch size
}

// The default cap (create() without a batch argument) splits one flush_submissions() into
// io_submit calls of kDefaultSubmitBatch.
TEST(AioEngine, CapsIocbsPerIoSubmit) {
  check_submit_batching(kDefaultSubmitBatch, (16 + kDefaultSubmitBatch - 1) / kDefaultSubmitBatch);
}

// A refused iocb in the middle of a batch: io_submit takes the ones before it, reports the
// error for it on the next call, and the rest still go. The fault: the image fd is swapped for
// a read-only one, so writes fail with EBADF at submission.
TEST(AioEngine, PartialSubmissionKeepsTheRestQueued) {
  TempImage t(1 << 20);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = AioEngine::create(*img, 64);
  ASSERT_TRUE(e);
  int ro = ::open(t.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  ASSERT_EQ(::dup2(ro, img->fd()), img->fd());
  ::close(ro);
  AlignedBuffer buf = AlignedBuffer::allocate(4 * 4096, 4096);
  for (uint64_t i = 0; i < 4; ++i) {
    iovec v{buf.data() + i * 4096, 4096};
    if (i == 2)
      ASSERT_TRUE((*e)->write(i * 4096, {&v, 1}, i));
    else
      ASSERT_TRUE((*e)->read(i * 4096, {&v, 1}, i));
  }
  ASSERT_TRUE((*e)->flush_submissions());
  EXPECT_EQ((*e)->stats().submit_calls, 3u);  // 2 accepted, 1 refused, 1 accepted
  int64_t result[4] = {1, 1, 1, 1};
  size_t got = 0;
  Completion c[4];
  while (got < 4) {
    pollfd p{(*e)->notifier_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    size_t n = (*e)->reap({c, 4});
    for (size_t i = 0; i < n; ++i) result[c[i].cookie] = c[i].result;
    got += n;
  }
  EXPECT_EQ(result[0], 4096);
  EXPECT_EQ(result[1], 4096);
  EXPECT_EQ(result[2], -EBADF);
  EXPECT_EQ(result[3], 4096);
}

// Destroying an engine with I/O in flight waits for the kernel instead of freeing under it.
TEST(AioEngine, DestructionWaitsForInFlightWrites) {
  TempImage t(1 << 20);
  AlignedBuffer buf = AlignedBuffer::allocate(64 * 4096, 4096);
  test::fill_random(buf.data(), buf.size(), 3);
  {
    auto img = RawImage::open(t.path(), false);
    ASSERT_TRUE(img);
    auto e = AioEngine::create(*img, 64);
    ASSERT_TRUE(e);
    for (uint64_t i = 0; i < 64; ++i) {
      iovec v{buf.data() + i * 4096, 4096};
      ASSERT_TRUE((*e)->write(i * 8192, {&v, 1}, i));
      t.shadow_write(i * 8192, buf.data() + i * 4096, 4096);
    }
    ASSERT_TRUE((*e)->flush_submissions());
  }
  EXPECT_EQ(t.read_back(), t.shadow());
}

}  // namespace
}  // namespace kindling::block
