// Faults the device survives: requests a FaultEngine fails (EIO, ENOSPC, short transfers)
// reach the driver as VIRTIO_BLK_S_IOERR, the other requests and disks complete, nothing
// hangs and the image outside the failed requests is intact; and the FLUSH durability seam:
// every completed FLUSH was preceded by a successful fdatasync of the writes before it.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "block/fault_engine.h"
#include "tests/support/blk_driver.h"
#include "tests/support/temp_image.h"
#include "virtio/blk_device.h"

namespace kindling::virtio {
namespace {

using test::BlkDone;
using test::BlkDriver;
using test::TempImage;

constexpr uint64_t kImageBytes = 1 << 20;

std::vector<block::FaultRule> rules(std::initializer_list<const char*> specs) {
  std::vector<block::FaultRule> out;
  for (const char* s : specs) {
    auto r = block::parse_fault_rule(s);
    EXPECT_TRUE(r) << s;
    if (r) out.push_back(*r);
  }
  return out;
}

class BlkFaultTest : public testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<BlockDevice> open(TempImage& img, std::vector<block::FaultRule> faults) {
    BlockOptions o;
    o.path = img.path();
    o.engine = GetParam();
    o.faults = std::move(faults);
    auto d = BlockDevice::open(o);
    EXPECT_TRUE(d) << d.error().message();
    return d ? std::move(*d) : nullptr;
  }
  // Offers every request of one batch, kicks once, returns the statuses by tag.
  std::map<uint16_t, uint8_t> batch(
      BlkDriver& drv, const std::vector<std::tuple<uint32_t, uint64_t, uint32_t>>& reqs) {
    for (uint16_t tag = 0; tag < reqs.size(); ++tag) {
      auto [type, sector, len] = reqs[tag];
      EXPECT_TRUE(drv.add(tag, type, sector, len));
    }
    drv.kick();
    std::map<uint16_t, uint8_t> got;
    for (const BlkDone& d : drv.wait_for(reqs.size())) got[d.tag] = d.status;
    EXPECT_EQ(got.size(), reqs.size()) << "requests left unanswered";
    return got;
  }
  uint8_t one(BlkDriver& drv, uint32_t type, uint64_t sector, uint32_t len) {
    auto got = batch(drv, {{type, sector, len}});
    return got.empty() ? 0xFF : got.begin()->second;
  }
};

TEST_P(BlkFaultTest, FailedSectorsAreIoerrAndEverythingElseCompletes) {
  TempImage img(kImageBytes, test::ImageFs::kDisk, 11);
  auto dev = open(img, rules({"eio@64+8"}));  // bytes 32768..36863
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  for (uint16_t tag : {2, 4}) test::fill_random(drv.data(tag).data(), 4096, 100 + tag);
  auto got = batch(drv, {{VIRTIO_BLK_T_IN, 0, 4096},
                         {VIRTIO_BLK_T_IN, 64, 4096},     // inside
                         {VIRTIO_BLK_T_OUT, 128, 4096},   // after
                         {VIRTIO_BLK_T_IN, 72, 512},      // first sector after the range
                         {VIRTIO_BLK_T_OUT, 60, 4096}});  // overlaps its first sectors
  EXPECT_EQ(got[0], VIRTIO_BLK_S_OK);
  EXPECT_EQ(got[1], VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(got[2], VIRTIO_BLK_S_OK);
  EXPECT_EQ(got[3], VIRTIO_BLK_S_OK);
  EXPECT_EQ(got[4], VIRTIO_BLK_S_IOERR);
  img.shadow_write(128 * 512, drv.data(2).data(), 4096);
  // The device keeps serving after the errors, the same range included.
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 64, 512), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 0, 8192), VIRTIO_BLK_S_OK);
  EXPECT_EQ(0, std::memcmp(drv.data(0).data(), img.shadow().data(), 8192));
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_OK);
  EXPECT_FALSE(drv.irq().needs_reset.load()) << "an I/O error is not a protocol error";
  EXPECT_EQ(dev->engine_stats().faults_injected, 3u);
  EXPECT_EQ(dev->stats().errors, 3u);
  drv.reset();
  EXPECT_TRUE(img.matches_shadow()) << "the failed write or something else changed the image";
}

TEST_P(BlkFaultTest, ShortTransfersAreNeverSuccess) {
  TempImage img(kImageBytes, test::ImageFs::kDisk, 12);
  auto dev = open(img, rules({"short@0+2048"}));
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 8, 8192), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_OUT, 16, 8192), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 24, 512), VIRTIO_BLK_S_IOERR) << "a zero-byte transfer";
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_OK) << "rw rule: flushes pass";
  EXPECT_EQ(dev->stats().bytes_read + dev->stats().bytes_written, 0u);
}

TEST_P(BlkFaultTest, EnospcOnEverySecondWrite) {
  TempImage img(kImageBytes, test::ImageFs::kDisk, 13);
  auto dev = open(img, rules({"enospc:w/2"}));
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  std::vector<uint8_t> status;
  for (uint64_t i = 0; i < 4; ++i) {
    test::fill_random(drv.data(0).data(), 4096, 200 + i);
    status.push_back(one(drv, VIRTIO_BLK_T_OUT, i * 8, 4096));
    if (status.back() == VIRTIO_BLK_S_OK) img.shadow_write(i * 4096, drv.data(0).data(), 4096);
  }
  EXPECT_EQ(status, (std::vector<uint8_t>{VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
                                          VIRTIO_BLK_S_IOERR}));
  drv.reset();
  EXPECT_TRUE(img.matches_shadow());
}

// A failing disk does not hold up a healthy one served at the same time.
TEST_P(BlkFaultTest, TheOtherDiskKeepsWorking) {
  TempImage bad_img(kImageBytes, test::ImageFs::kDisk, 14),
      good_img(kImageBytes, test::ImageFs::kDisk, 15);
  auto bad = open(bad_img, rules({"eio"}));
  auto good = open(good_img, {});
  ASSERT_TRUE(bad && good);
  BlkDriver bad_drv({}), good_drv({});
  ASSERT_TRUE(bad_drv.activate(*bad));
  ASSERT_TRUE(good_drv.activate(*good));
  for (int round = 0; round < 8; ++round) {
    for (uint16_t tag = 0; tag < 4; ++tag) {
      ASSERT_TRUE(bad_drv.add(tag, VIRTIO_BLK_T_IN, tag * 8u, 4096));
      test::fill_random(good_drv.data(tag).data(), 4096, round * 4 + tag);
      ASSERT_TRUE(good_drv.add(tag, VIRTIO_BLK_T_OUT, (round * 4 + tag) * 8u, 4096));
      good_img.shadow_write((round * 4 + tag) * 4096u, good_drv.data(tag).data(), 4096);
    }
    bad_drv.kick();
    good_drv.kick();
    for (const BlkDone& d : good_drv.wait_for(4)) EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
    auto failed = bad_drv.wait_for(4);
    ASSERT_EQ(failed.size(), 4u);
    for (const BlkDone& d : failed) EXPECT_EQ(d.status, VIRTIO_BLK_S_IOERR);
  }
  good_drv.reset();
  EXPECT_TRUE(good_img.matches_shadow());
}

// The durability seam (EngineStats::syncs counts fdatasyncs that succeeded): FLUSH number i
// completes only after sync number i, which started after the write before it completed.
TEST_P(BlkFaultTest, EveryCompletedFlushFollowsASync) {
  TempImage img(kImageBytes, test::ImageFs::kDisk, 16);
  auto dev = open(img, {});
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  for (uint64_t i = 1; i <= 4; ++i) {
    test::fill_random(drv.data(0).data(), 4096, i);
    ASSERT_EQ(one(drv, VIRTIO_BLK_T_OUT, i * 8, 4096), VIRTIO_BLK_S_OK);
    const uint64_t before = dev->engine_stats().syncs;
    EXPECT_EQ(before, i - 1) << "a sync without a FLUSH, or a FLUSH without one";
    ASSERT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_OK);
    EXPECT_EQ(dev->engine_stats().syncs, i) << "FLUSH " << i << " completed without a sync";
  }
}

// A flush the engine cannot make durable is an error, never a success.
TEST_P(BlkFaultTest, FailedSyncIsAFailedFlush) {
  TempImage img(kImageBytes, test::ImageFs::kDisk, 17);
  auto dev = open(img, rules({"eio:f"}));
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_OUT, 0, 4096), VIRTIO_BLK_S_OK);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(dev->engine_stats().syncs, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, BlkFaultTest, testing::Values("libaio", "io_uring", "sync"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kindling::virtio
