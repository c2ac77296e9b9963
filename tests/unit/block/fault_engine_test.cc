// The fault-injection wrapper: rule parsing, matching (kind, range, every n-th), what each
// fault does to the result and to the image, and that everything else passes through.
#include "block/fault_engine.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <cstring>
#include <vector>

#include "block/raw_image.h"
#include "block/sync_engine.h"
#include "tests/support/temp_image.h"

namespace kindling::block {
namespace {

using test::ImageFs;
using test::TempImage;

constexpr uint64_t kImage = 1 << 20;

TEST(FaultRuleTest, ParsesEveryPart) {
  auto r = parse_fault_rule("short:wf@2048+8/3");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->kind, FaultKind::kShort);
  EXPECT_EQ(r->ops, kFaultWrite | kFaultFlush);
  EXPECT_EQ(r->first_sector, 2048u);
  EXPECT_EQ(r->sectors, 8u);
  EXPECT_EQ(r->every, 3u);
  EXPECT_EQ(to_string(*r), "short:wf@2048+8/3");
}

TEST(FaultRuleTest, DefaultsToReadsAndWritesOfTheWholeDisk) {
  auto r = parse_fault_rule("enospc");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (FaultRule{FaultKind::kEnospc, kFaultRead | kFaultWrite, 0, UINT64_MAX, 1}));
  EXPECT_EQ(to_string(*r), "enospc:rw");
}

TEST(FaultRuleTest, RejectsMalformedRules) {
  for (const char* bad : {"", "eiox", "eio:", "eio:x", "eio@", "eio@5", "eio@5+", "eio@5+0",
                          "eio/0", "eio/", "eio@1+2junk", "eio@99999999999999999999+1"}) {
    auto r = parse_fault_rule(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, BlockError::kBadFaultRule) << bad;
    EXPECT_NE(r.error().message().find("fault rule"), std::string::npos);
  }
}

class FaultEngineTest : public testing::Test {
 protected:
  // A sync engine over `t` wrapped with `rules`.
  void open(TempImage& t, std::vector<FaultRule> rules) {
    auto img = RawImage::open(t.path(), false, {});
    ASSERT_TRUE(img) << img.error().message();
    image_ = std::make_unique<RawImage>(std::move(*img));
    auto inner = SyncEngine::create(*image_, 16);
    ASSERT_TRUE(inner) << inner.error().message();
    auto e = FaultEngine::create(std::move(*inner), std::move(rules));
    ASSERT_TRUE(e) << e.error().message();
    engine_ = std::move(*e);
  }

  // Waits (poll on the notifier, 10 s at most) for one completion and returns its result.
  int64_t wait_one(uint64_t cookie) {
    EXPECT_TRUE(engine_->flush_submissions());
    Completion c[4];
    pollfd p{engine_->notifier_fd(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return -1000;
    size_t n = engine_->reap(c);
    EXPECT_EQ(n, 1u);
    if (n != 1) return -1001;
    EXPECT_EQ(c[0].cookie, cookie);
    return c[0].result;
  }
  int64_t read(uint64_t off, std::vector<uint8_t>& buf) {
    iovec v{buf.data(), buf.size()};
    if (!engine_->read(off, {&v, 1}, off + 1)) return -999;
    return wait_one(off + 1);
  }
  int64_t write(uint64_t off, std::vector<uint8_t>& buf) {
    iovec v{buf.data(), buf.size()};
    if (!engine_->write(off, {&v, 1}, off + 2)) return -999;
    return wait_one(off + 2);
  }

  std::unique_ptr<RawImage> image_;
  std::unique_ptr<FaultEngine> engine_;
};

TEST_F(FaultEngineTest, EioInsideTheRangeOnlyAndTheImageUntouched) {
  TempImage t(kImage, ImageFs::kTmpfs, 3);
  open(t, {*parse_fault_rule("eio@16+8")});  // bytes 8192..12287
  std::vector<uint8_t> buf(4096, 0x5A);
  EXPECT_EQ(write(8192, buf), -EIO);
  EXPECT_EQ(write(12288 - 512, buf), -EIO);  // overlaps the last failing sector
  EXPECT_EQ(read(8192, buf), -EIO);
  EXPECT_EQ(write(12288, buf), 4096);  // just after the range
  t.shadow_write(12288, buf.data(), buf.size());
  EXPECT_EQ(write(8192 - 4096, buf), 4096);  // just before it
  t.shadow_write(8192 - 4096, buf.data(), buf.size());
  EXPECT_EQ(read(0, buf), 4096);
  EXPECT_EQ(engine_->in_flight(), 0u);
  EXPECT_EQ(engine_->stats().faults_injected, 3u);
  EXPECT_TRUE(t.matches_shadow()) << "a failed write reached the image";
}

TEST_F(FaultEngineTest, EnospcForWritesOnlyEveryThird) {
  TempImage t(kImage, ImageFs::kTmpfs);
  open(t, {*parse_fault_rule("enospc:w/3")});
  std::vector<uint8_t> buf(512, 1);
  std::vector<int64_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(write(uint64_t(i) * 512, buf));
  EXPECT_EQ(got, (std::vector<int64_t>{512, 512, -ENOSPC, 512, 512, -ENOSPC}));
  EXPECT_EQ(read(0, buf), 512);  // reads are not in the rule
}

TEST_F(FaultEngineTest, ShortTransferWritesOnlyTheFirstHalfAndSaysSo) {
  TempImage t(kImage, ImageFs::kTmpfs, 5);
  open(t, {*parse_fault_rule("short:w")});
  std::vector<uint8_t> buf(8192, 0x77);
  EXPECT_EQ(write(0, buf), 4096);
  t.shadow_write(0, buf.data(), 4096);
  std::vector<uint8_t> one(512, 0x11);
  EXPECT_EQ(write(65536, one), 0);  // half of one sector is nothing
  EXPECT_TRUE(t.matches_shadow());
}

TEST_F(FaultEngineTest, ShortFlushFailsRatherThanCompletingWithoutASync) {
  TempImage t(kImage, ImageFs::kTmpfs);
  open(t, {*parse_fault_rule("short:f")});
  ASSERT_TRUE(engine_->flush(4));
  EXPECT_EQ(wait_one(4), -EIO);
  EXPECT_EQ(engine_->stats().syncs, 0u);
}

TEST_F(FaultEngineTest, FlushFaultsMatchByKind) {
  TempImage t(kImage, ImageFs::kTmpfs);
  open(t, {*parse_fault_rule("eio:f@0+1")});
  ASSERT_TRUE(engine_->flush(5));
  EXPECT_EQ(wait_one(5), -EIO);
  EXPECT_EQ(engine_->stats().syncs, 0u);
  std::vector<uint8_t> buf(512);
  EXPECT_EQ(write(0, buf), 512);  // sector 0 still writable: the rule is for flushes
}

TEST_F(FaultEngineTest, InjectedFailuresCountTowardsTheQueueDepth) {
  TempImage t(kImage, ImageFs::kTmpfs);
  open(t, {*parse_fault_rule("eio")});
  std::vector<uint8_t> buf(512);
  iovec v{buf.data(), buf.size()};
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(engine_->read(0, {&v, 1}, i));
  auto full = engine_->read(0, {&v, 1}, 99);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, BlockError::kQueueFull);
  Completion c[8];
  size_t total = 0;
  while (size_t n = engine_->reap(c)) total += n;
  EXPECT_EQ(total, 16u);
  EXPECT_EQ(engine_->in_flight(), 0u);
}

TEST_F(FaultEngineTest, NoRulesIsTransparent) {
  TempImage t(kImage, ImageFs::kTmpfs, 9);
  open(t, {});
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(read(4096, buf), 4096);
  EXPECT_EQ(0, std::memcmp(buf.data(), t.shadow().data() + 4096, 4096));
  ASSERT_TRUE(engine_->flush(3));
  EXPECT_EQ(wait_one(3), 0);
  EXPECT_EQ(engine_->stats().syncs, 1u);
  EXPECT_EQ(engine_->stats().faults_injected, 0u);
}

}  // namespace
}  // namespace kindling::block
