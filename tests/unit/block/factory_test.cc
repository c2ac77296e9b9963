// make_engine, engine-specific behaviour and teardown.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

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
  for (const char* name : {"libaio", "io_uring", "sync"}) {
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
  auto e = make_engine("uring", *img, 128);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, BlockError::kUnknownEngine);
  EXPECT_NE(e.error().message().find("io_uring"), std::string::npos);  // lists the known ones
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

// A kernel without IOCB_CMD_FDSYNC (before 4.18) refuses it at io_submit with EINVAL: that
// FLUSH and every later one run fdatasync on the I/O thread (which may not start a thread under
// its seccomp filter), and each still completes with success. No probe at create(): a probe
// would be a real fdatasync before the guest starts.
TEST(AioEngine, FlushSyncsInlineWhenTheKernelRefusesFdsync) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = AioEngine::create(*img, 8);
  ASSERT_TRUE(e);
  EXPECT_TRUE((*e)->kernel_fdsync());
  int refused = 0;
  (*e)->set_submit_for_testing([&](io_context_t ctx, long n, iocb** list) {
    if (list[0]->aio_lio_opcode == IO_CMD_FDSYNC) {
      ++refused;
      return -EINVAL;
    }
    return io_submit(ctx, n, list);
  });
  for (uint64_t cookie = 1; cookie <= 2; ++cookie) {
    ASSERT_TRUE((*e)->flush(cookie));
    ASSERT_TRUE((*e)->flush_submissions());
    Completion c{};
    size_t got = 0;
    while (got == 0) {
      pollfd p{(*e)->notifier_fd(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10000), 1);
      got = (*e)->reap({&c, 1});
    }
    EXPECT_EQ(c.cookie, cookie);
    EXPECT_EQ(c.result, 0);
    EXPECT_FALSE((*e)->kernel_fdsync());
  }
  EXPECT_EQ(refused, 1) << "the second FLUSH does not go to the kernel again";
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

// Completions come from the context's ring in our memory, not from io_getevents: 40 rounds of
// 16 reads (640 events, several times round the kernel's ring), each round's data and cookies
// checked, and not one system call made to collect them.
TEST(AioEngine, ReapsCompletionsFromTheRingWithoutSystemCalls) {
  TempImage t(1 << 20);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img);
  auto e = AioEngine::create(*img, 64);
  ASSERT_TRUE(e);
  AlignedBuffer buf = AlignedBuffer::allocate(16 * 4096, 4096);
  for (uint64_t round = 0; round < 40; ++round) {
    std::memset(buf.data(), 0, 16 * 4096);
    const uint64_t base = (round % 16) * 16 * 4096;  // 16 different 64 KiB windows
    for (uint64_t i = 0; i < 16; ++i) {
      iovec v{buf.data() + i * 4096, 4096};
      ASSERT_TRUE((*e)->read(base + i * 4096, {&v, 1}, round * 100 + i));
    }
    ASSERT_TRUE((*e)->flush_submissions());
    std::vector<bool> seen(16, false);
    size_t got = 0;
    Completion c[16];
    while (got < 16) {
      pollfd p{(*e)->notifier_fd(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10000), 1);
      const size_t n = (*e)->reap({c, 16});
      for (size_t k = 0; k < n; ++k) {
        ASSERT_EQ(c[k].result, 4096) << "round " << round;
        ASSERT_GE(c[k].cookie, round * 100);
        const uint64_t i = c[k].cookie - round * 100;
        ASSERT_LT(i, 16u);
        EXPECT_FALSE(seen[i]) << "cookie " << c[k].cookie << " completed twice";
        seen[i] = true;
      }
      got += n;
    }
    ASSERT_EQ(std::memcmp(buf.data(), t.shadow().data() + base, 16 * 4096), 0) << "round " << round;
  }
  EXPECT_EQ((*e)->stats().reap_calls, 0u);
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

// Queues `count` aligned 4 KiB reads (cookie i reads block i into `buf`) and submits them.
void queue_reads(AioEngine& e, AlignedBuffer& buf, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    iovec v{buf.data() + i * 4096, 4096};
    ASSERT_TRUE(e.read(i * 4096, {&v, 1}, i));
  }
  ASSERT_TRUE(e.flush_submissions());
}

// Waits on the notifier (10 s at most each time, 100 wake-ups at most) until `count` more
// requests completed; stores their results in `result`, indexed by cookie.
void collect(AioEngine& e, std::vector<int64_t>& result, size_t count) {
  size_t got = 0;
  Completion c[16];
  for (int wakeups = 0; got < count && wakeups < 100; ++wakeups) {
    pollfd p{e.notifier_fd(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) break;
    size_t n = e.reap(c);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_LT(c[i].cookie, result.size());
      if (c[i].cookie < result.size()) result[c[i].cookie] = c[i].result;
    }
    got += n;
  }
  EXPECT_EQ(got, count);
  EXPECT_EQ(e.in_flight(), 0u);
}

// Collects `count` completions of cookies 0..count-1; their results by cookie (1 where none).
std::vector<int64_t> collect(AioEngine& e, size_t count) {
  std::vector<int64_t> result(count, 1);
  collect(e, result, count);
  return result;
}

// An io_submit that refuses its first `refusals` calls with `refusal`, then passes at most
// `cap` iocbs per call (0: all) to the kernel. Counts every call in `calls`.
SubmitFn faulty_submit(int& calls, int refusals, int refusal, long cap = 0) {
  return [&calls, refusals, refusal, cap](io_context_t ctx, long n, iocb** list) {
    if (++calls <= refusals) return refusal;
    return ::io_submit(ctx, cap > 0 ? std::min(n, cap) : n, list);
  };
}

// A libaio engine (no io_submit batch cap) over a 1 MiB image, for the io_submit seam tests.
class AioSubmitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto img = RawImage::open(t_.path(), false);
    ASSERT_TRUE(img) << img.error().message();
    img_.emplace(std::move(*img));
    auto e = AioEngine::create(*img_, 64, true, 0);
    ASSERT_TRUE(e) << e.error().message();
    e_ = std::move(*e);
  }
  void TearDown() override { e_.reset(); }

  TempImage t_{1 << 20};
  std::optional<RawImage> img_;
  std::unique_ptr<AioEngine> e_;
};

// The kernel accepting fewer iocbs than offered, without an error (the case above has one):
// the loop offers the rest at once, and every request completes with its data.
TEST_F(AioSubmitTest, ShortSubmissionOffersTheRestAgain) {
  int calls = 0;
  e_->set_submit_for_testing(faulty_submit(calls, 0, 0, 2));
  AlignedBuffer buf = AlignedBuffer::allocate(5 * 4096, 4096);
  queue_reads(*e_, buf, 5);
  EXPECT_EQ(calls, 3);  // 2 + 2 + 1, all within one flush_submissions()
  EXPECT_EQ(e_->stats().submit_calls, 3u);
  auto result = collect(*e_, 5);
  for (int64_t r : result) EXPECT_EQ(r, 4096);
  EXPECT_EQ(std::memcmp(buf.data(), t_.shadow().data(), 5 * 4096), 0);
}

// -EAGAIN while some of our iocbs are in flight: the rest stay queued (no error, no retry at
// once, no self-wake: the completions bring the I/O thread back) and go out after the next reap.
TEST_F(AioSubmitTest, RefusalWithIocbsInFlightWaitsForAReap) {
  int calls = 0;
  e_->set_submit_for_testing([&](io_context_t ctx, long n, iocb** list) {
    ++calls;
    if (calls == 1) return ::io_submit(ctx, std::min(n, 2L), list);  // 2 go in flight
    if (calls == 2) return -EAGAIN;
    return ::io_submit(ctx, n, list);
  });
  AlignedBuffer buf = AlignedBuffer::allocate(8 * 4096, 4096);
  queue_reads(*e_, buf, 8);
  EXPECT_EQ(calls, 2);  // stopped at the refusal instead of retrying at once
  // The eventfd counts one per kernel completion; a self-wake would add one more.
  uint64_t signals = 0;
  while (signals < 2) {
    pollfd p{e_->notifier_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    uint64_t v = 0;
    ASSERT_EQ(::read(e_->notifier_fd(), &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
    signals += v;
  }
  EXPECT_EQ(signals, 2u);
  // Both kernel completions are in: this reap takes them and submits the six left together.
  std::vector<int64_t> result(8, 1);
  Completion c[8];
  size_t n = e_->reap(c);
  EXPECT_EQ(n, 2u);
  for (size_t i = 0; i < n; ++i) result[c[i].cookie % 8] = c[i].result;
  EXPECT_EQ(calls, 3);
  collect(*e_, result, 8 - n);
  for (int64_t r : result) EXPECT_EQ(r, 4096);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(std::memcmp(buf.data(), t_.shadow().data(), 8 * 4096), 0);
}

// -EAGAIN with nothing in flight: no completion would ever retry, so the engine wakes itself and
// offers the iocbs again (kIdleSubmitRetries times at most); a passing blip costs no request.
TEST_F(AioSubmitTest, RefusalWithNothingInFlightIsRetried) {
  int calls = 0;
  e_->set_submit_for_testing(faulty_submit(calls, kIdleSubmitRetries, -EAGAIN));
  AlignedBuffer buf = AlignedBuffer::allocate(2 * 4096, 4096);
  queue_reads(*e_, buf, 2);
  EXPECT_EQ(calls, 1);
  pollfd p{e_->notifier_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1) << "the engine must wake the I/O thread to retry";
  auto result = collect(*e_, 2);
  EXPECT_EQ(result[0], 4096);
  EXPECT_EQ(result[1], 4096);
  EXPECT_EQ(calls, static_cast<int>(kIdleSubmitRetries) + 1);
  EXPECT_EQ(std::memcmp(buf.data(), t_.shadow().data(), 2 * 4096), 0);
}

// A refusal that outlasts the retries fails only the first queued request (-EAGAIN, an I/O
// error for a guest); the others still go, the engine works afterwards, and nothing spins.
TEST_F(AioSubmitTest, PersistentRefusalWithNothingInFlightFailsOneRequest) {
  int calls = 0;
  e_->set_submit_for_testing(faulty_submit(calls, kIdleSubmitRetries + 1, -EAGAIN));
  AlignedBuffer buf = AlignedBuffer::allocate(3 * 4096, 4096);
  queue_reads(*e_, buf, 3);
  auto result = collect(*e_, 3);
  EXPECT_EQ(result[0], -EAGAIN);
  EXPECT_EQ(result[1], 4096);
  EXPECT_EQ(result[2], 4096);
  EXPECT_EQ(calls, static_cast<int>(kIdleSubmitRetries) + 2);  // refusals, then the other two
  EXPECT_EQ(std::memcmp(buf.data() + 4096, t_.shadow().data() + 4096, 2 * 4096), 0);
  std::memset(buf.data(), 0, 4096);
  queue_reads(*e_, buf, 1);
  EXPECT_EQ(collect(*e_, 1)[0], 4096);
  EXPECT_EQ(std::memcmp(buf.data(), t_.shadow().data(), 4096), 0);
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
