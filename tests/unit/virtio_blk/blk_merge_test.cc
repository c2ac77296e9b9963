// MultiReqBuffer: sorting, gaps, direction changes, limits, completion splitting, errors.
#include "virtio/blk_merge.h"

#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "tests/unit/virtio_blk/fake_engine.h"

namespace kindling::virtio {
namespace {

using test::FakeEngine;

// Records what the buffer completed.
struct RecordingSink : RequestSink {
  std::vector<std::pair<uint16_t, uint8_t>> done;
  void complete(uint16_t slot, uint8_t status) override { done.emplace_back(slot, status); }
};

class MergeTest : public testing::Test {
 protected:
  void make(MergeLimits limits = {}, size_t max_in_flight = 256, uint64_t max_transfer = 1 << 20) {
    engine_ = std::make_unique<FakeEngine>(max_in_flight, max_transfer);
    mrb_ = std::make_unique<MultiReqBuffer>(pool_, *engine_, sink_, limits);
  }

  // A parsed request in a fresh slot: `iovs` buffers of `bytes_each` at `sector`.
  uint16_t req(BlkReqType type, uint64_t sector, size_t iovs = 1, size_t bytes_each = 4096) {
    uint16_t slot = *pool_.acquire();
    VirtIOBlockReq& r = pool_[slot];
    r.elem.clear();
    r.elem.head = slot;
    buffers_.emplace_back(iovs * bytes_each);
    uint8_t* base = buffers_.back().data();
    for (size_t i = 0; i < iovs; ++i) r.elem.in_iov.push_back({base + i * bytes_each, bytes_each});
    r.type = type;
    r.status = VIRTIO_BLK_S_OK;
    r.sector = sector;
    r.data = std::span<iovec>(r.elem.in_iov);
    r.data_bytes = iovs * bytes_each;
    return slot;
  }
  uint16_t rd(uint64_t sector, size_t iovs = 1, size_t bytes = 4096) {
    return req(BlkReqType::kIn, sector, iovs, bytes);
  }
  uint16_t wr(uint64_t sector, size_t iovs = 1, size_t bytes = 4096) {
    return req(BlkReqType::kOut, sector, iovs, bytes);
  }
  uint16_t fl() { return req(BlkReqType::kFlush, 0, 0, 0); }

  RequestPool pool_{256};
  std::vector<std::vector<uint8_t>> buffers_;
  RecordingSink sink_;
  std::unique_ptr<FakeEngine> engine_;
  std::unique_ptr<MultiReqBuffer> mrb_;
};

TEST_F(MergeTest, SingleRequestGoesAsIs) {
  make();
  uint16_t a = rd(8);
  mrb_->add(a);
  EXPECT_TRUE(engine_->subs.empty()) << "buffered until the batch ends";
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 1u);
  EXPECT_EQ(engine_->subs[0].op, FakeEngine::Op::kRead);
  EXPECT_EQ(engine_->subs[0].offset, 8u * 512);
  EXPECT_EQ(engine_->subs[0].iov[0].iov_base, pool_[a].data[0].iov_base);
  EXPECT_EQ(mrb_->counters().merged_groups, 0u);
}

TEST_F(MergeTest, SortsAndMergesContiguousRun) {
  make();
  uint16_t a = rd(16), b = rd(0), c = rd(8);
  for (uint16_t s : {a, b, c}) mrb_->add(s);
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 1u);
  const auto& s = engine_->subs[0];
  EXPECT_EQ(s.offset, 0u);
  ASSERT_EQ(s.iov.size(), 3u);
  EXPECT_EQ(s.iov[0].iov_base, pool_[b].data[0].iov_base);
  EXPECT_EQ(s.iov[1].iov_base, pool_[c].data[0].iov_base);
  EXPECT_EQ(s.iov[2].iov_base, pool_[a].data[0].iov_base);
  EXPECT_EQ(mrb_->counters().merged_groups, 1u);
  EXPECT_EQ(mrb_->counters().merged_requests, 3u);

  // Completion splits into the members, in sector order, each OK.
  engine_->complete(0);
  block::Completion out[4];
  size_t n = engine_->reap(out);
  ASSERT_EQ(n, 1u);
  mrb_->on_completion(out[0]);
  std::vector<std::pair<uint16_t, uint8_t>> want{
      {b, VIRTIO_BLK_S_OK}, {c, VIRTIO_BLK_S_OK}, {a, VIRTIO_BLK_S_OK}};
  EXPECT_EQ(sink_.done, want);
  // Each member reports its own used length.
  for (uint16_t m : {a, b, c}) EXPECT_EQ(pool_[m].used_len(VIRTIO_BLK_S_OK), 4097u);
}

TEST_F(MergeTest, GapStartsNewGroup) {
  make();
  mrb_->add(rd(0));
  mrb_->add(rd(9));  // 0..7 then 9: one sector gap
  mrb_->add(rd(17));
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[0].offset, 0u);
  EXPECT_EQ(engine_->subs[0].iov.size(), 1u);
  EXPECT_EQ(engine_->subs[1].offset, 9u * 512);
  EXPECT_EQ(engine_->subs[1].iov.size(), 2u);
}

TEST_F(MergeTest, DirectionChangeSubmitsFirst) {
  make();
  mrb_->add(rd(0));
  mrb_->add(rd(8));
  mrb_->add(wr(16));
  ASSERT_EQ(engine_->subs.size(), 1u) << "the reads go when the write arrives";
  EXPECT_EQ(engine_->subs[0].op, FakeEngine::Op::kRead);
  EXPECT_EQ(engine_->subs[0].iov.size(), 2u);
  mrb_->add(rd(24));
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[1].op, FakeEngine::Op::kWrite);
  EXPECT_EQ(engine_->subs[1].offset, 16u * 512);
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 3u);
  EXPECT_EQ(engine_->subs[2].op, FakeEngine::Op::kRead);
}

TEST_F(MergeTest, ThirtyTwoRequestLimit) {
  make();
  for (int i = 0; i < 32; ++i) mrb_->add(rd(static_cast<uint64_t>(i) * 8));
  EXPECT_TRUE(engine_->subs.empty());
  mrb_->add(rd(32 * 8));
  ASSERT_EQ(engine_->subs.size(), 1u) << "full at 32: submitted before the 33rd is buffered";
  EXPECT_EQ(engine_->subs[0].iov.size(), 32u);
  EXPECT_EQ(mrb_->buffered(), 1u);
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[1].offset, 32u * 8 * 512);
}

TEST_F(MergeTest, IovMaxLimit) {
  make();
  // 11 contiguous requests of 100 x 512-byte buffers: 1100 iovecs > IOV_MAX (1024).
  for (int i = 0; i < 11; ++i) mrb_->add(rd(static_cast<uint64_t>(i) * 100, 100, 512));
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[0].iov.size(), 1000u);
  EXPECT_EQ(engine_->subs[1].iov.size(), 100u);
  EXPECT_EQ(engine_->subs[1].offset, 1000u * 512);
  for (const auto& s : engine_->subs) EXPECT_LE(s.iov.size(), static_cast<size_t>(IOV_MAX));
}

TEST_F(MergeTest, MaxTransferLimit) {
  make({}, 256, 64 * 1024);
  for (int i = 0; i < 4; ++i) mrb_->add(rd(static_cast<uint64_t>(i) * 64, 1, 32 * 1024));
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 2u);
  for (const auto& s : engine_->subs) EXPECT_EQ(s.bytes(), 64u * 1024);
  EXPECT_EQ(engine_->subs[1].offset, 128u * 512);
}

TEST_F(MergeTest, MergeOffSubmitsEachAlone) {
  MergeLimits off;
  off.merge = false;
  make(off);
  for (int i = 0; i < 3; ++i) mrb_->add(rd(static_cast<uint64_t>(i) * 8));
  EXPECT_EQ(engine_->subs.size(), 3u);
  EXPECT_EQ(mrb_->counters().merged_groups, 0u);
  EXPECT_EQ(mrb_->counters().submissions, 3u);
}

TEST_F(MergeTest, FlushSubmitsPendingWritesFirst) {
  make();
  mrb_->add(wr(8));
  mrb_->add(wr(0));
  uint16_t f = fl();
  mrb_->add_flush(f);
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[0].op, FakeEngine::Op::kWrite);
  EXPECT_EQ(engine_->subs[0].iov.size(), 2u);
  EXPECT_EQ(engine_->subs[1].op, FakeEngine::Op::kFlush);
  EXPECT_EQ(engine_->subs[1].cookie, f);
  engine_->complete(1, 0);
  block::Completion out[2];
  ASSERT_EQ(engine_->reap(out), 1u);
  mrb_->on_completion(out[0]);
  ASSERT_EQ(sink_.done.size(), 1u);
  EXPECT_EQ(sink_.done[0], std::make_pair(f, uint8_t{VIRTIO_BLK_S_OK}));
}

TEST_F(MergeTest, ErrorFansOutToEveryMember) {
  make();
  uint16_t a = wr(0), b = wr(8), c = wr(16);
  for (uint16_t s : {c, a, b}) mrb_->add(s);
  mrb_->submit();
  ASSERT_EQ(engine_->subs.size(), 1u);
  engine_->complete(0, -EIO);
  block::Completion out[2];
  ASSERT_EQ(engine_->reap(out), 1u);
  mrb_->on_completion(out[0]);
  std::vector<std::pair<uint16_t, uint8_t>> want{
      {a, VIRTIO_BLK_S_IOERR}, {b, VIRTIO_BLK_S_IOERR}, {c, VIRTIO_BLK_S_IOERR}};
  EXPECT_EQ(sink_.done, want);
}

TEST_F(MergeTest, ShortTransferIsAnError) {
  make();
  uint16_t a = rd(0), b = rd(8);
  mrb_->add(a);
  mrb_->add(b);
  mrb_->submit();
  engine_->complete(0, 4096);  // half of the 8 KiB group
  block::Completion out[2];
  ASSERT_EQ(engine_->reap(out), 1u);
  mrb_->on_completion(out[0]);
  ASSERT_EQ(sink_.done.size(), 2u);
  for (auto [slot, st] : sink_.done) EXPECT_EQ(st, VIRTIO_BLK_S_IOERR);
}

TEST_F(MergeTest, SubmissionFailureFailsMembersAtOnce) {
  make();
  mrb_->add(rd(0));
  mrb_->add(rd(8));
  engine_->fail_submissions(true);
  mrb_->submit();
  ASSERT_EQ(sink_.done.size(), 2u);
  for (auto [slot, st] : sink_.done) EXPECT_EQ(st, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(mrb_->counters().submissions, 0u);
}

TEST_F(MergeTest, FullEngineDefersUntilCompletion) {
  make({}, 1);
  mrb_->add(rd(0));
  mrb_->add(wr(100));  // direction change: the read goes, the write waits in the buffer
  mrb_->submit();      // the write meets a full engine
  ASSERT_EQ(engine_->subs.size(), 1u);
  EXPECT_EQ(mrb_->deferred(), 1u);
  mrb_->retry_deferred();
  EXPECT_EQ(engine_->subs.size(), 1u) << "still full";
  engine_->complete(0);
  block::Completion out[2];
  ASSERT_EQ(engine_->reap(out), 1u);
  mrb_->on_completion(out[0]);
  mrb_->retry_deferred();
  ASSERT_EQ(engine_->subs.size(), 2u);
  EXPECT_EQ(engine_->subs[1].op, FakeEngine::Op::kWrite);
  EXPECT_EQ(mrb_->deferred(), 0u);
}

TEST_F(MergeTest, UnknownCookieIsIgnored) {
  make();
  mrb_->on_completion({999, 0});
  mrb_->on_completion({3, 0});  // a slot with no submission
  EXPECT_TRUE(sink_.done.empty());
}

}  // namespace
}  // namespace kindling::virtio
