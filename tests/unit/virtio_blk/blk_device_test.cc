// The virtio-blk device through its I/O thread, over each real engine, driven by BlkDriver.
#include "virtio/blk_device.h"

#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_ring.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "block/bounce_pool.h"
#include "tests/support/blk_driver.h"
#include "tests/support/eventually.h"
#include "tests/support/log_capture.h"
#include "tests/support/temp_image.h"
#include "tests/unit/virtio_blk/fake_engine.h"

namespace kindling::virtio {
namespace {

using test::BlkDone;
using test::BlkDriver;
using test::ChainBuffer;
using test::TempImage;

constexpr uint64_t kImageBytes = 4 << 20;

// Options with a few fields changed.
template <typename F>
BlockOptions opt(F change) {
  BlockOptions o;
  change(o);
  return o;
}

class BlkDeviceTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { image_ = std::make_unique<TempImage>(kImageBytes); }

  std::unique_ptr<BlockDevice> open(BlockOptions o = {}) {
    o.path = image_->path();
    o.engine = GetParam();
    auto d = BlockDevice::open(o);
    EXPECT_TRUE(d) << d.error().message();
    return d ? std::move(*d) : nullptr;
  }

  // Runs one request alone and returns how it finished.
  BlkDone one(BlkDriver& drv, uint32_t type, uint64_t sector, uint32_t len, unsigned segs = 1) {
    EXPECT_TRUE(drv.add(0, type, sector, len, segs));
    drv.kick();
    auto done = drv.wait_for(1);
    EXPECT_EQ(done.size(), 1u);
    return done.empty() ? BlkDone{} : done[0];
  }

  std::unique_ptr<TempImage> image_;
};

TEST_P(BlkDeviceTest, FeaturesAndConfig) {
  auto dev = open(opt([](BlockOptions& o) {
    o.serial = "s";
    o.queue_size = 1024;  // seg_max 256 needs both low bytes of the field
  }));
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->device_type(), uint32_t{VIRTIO_ID_BLOCK});
  EXPECT_EQ(dev->queue_max_size(), 1024);
  uint64_t f = dev->device_features();
  for (unsigned b :
       {VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES}) {
    EXPECT_TRUE(f & (uint64_t{1} << b)) << "feature bit " << b;
  }
  // Not offered: their config fields must read as zero below.
  for (unsigned b :
       {VIRTIO_BLK_F_RO, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_MQ}) {
    EXPECT_FALSE(f & (uint64_t{1} << b)) << "feature bit " << b;
  }

  // The whole config space, read the way a driver may: in one go, and field by field.
  virtio_blk_config c;
  std::memset(&c, 0xAB, sizeof(c));
  dev->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&c), sizeof(c)));
  EXPECT_EQ(uint64_t{c.capacity}, kImageBytes / 512);
  EXPECT_EQ(uint32_t{c.seg_max}, 256u) << "seg_max * size_max within the 1 MiB request cap";
  EXPECT_EQ(uint32_t{c.size_max}, kSizeMax);
  // 512-byte logical blocks whatever the host; its direct-I/O block is the physical one.
  const uint32_t per_physical = dev->image()->offset_align() / 512;
  EXPECT_EQ(uint32_t{c.blk_size}, 512u);
  EXPECT_EQ(1u << c.physical_block_exp, per_physical);
  EXPECT_EQ(int{c.alignment_offset}, 0);
  EXPECT_EQ(uint32_t{c.min_io_size}, per_physical) << "in logical blocks";
  EXPECT_EQ(uint32_t{c.opt_io_size}, per_physical > 1 ? per_physical : 0u);
  virtio_blk_config want{};
  want.capacity = kImageBytes / 512;
  want.size_max = kSizeMax;
  want.seg_max = 256;
  want.blk_size = 512;
  want.physical_block_exp = static_cast<uint8_t>(std::countr_zero(per_physical));
  want.min_io_size = static_cast<uint16_t>(per_physical);
  want.opt_io_size = per_physical > 1 ? per_physical : 0;
  want.max_discard_sectors = kMaxDiscardSectors;
  want.max_discard_seg = 1;
  want.discard_sector_alignment = per_physical;
  want.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
  want.max_write_zeroes_seg = 1;
  want.write_zeroes_may_unmap = 1;
  // Every other field (geometry, wce, num_queues, padding) is zero.
  const auto* got = reinterpret_cast<const uint8_t*>(&c);
  const auto* exp = reinterpret_cast<const uint8_t*>(&want);
  for (size_t i = 0; i < sizeof(c); ++i) EXPECT_EQ(got[i], exp[i]) << "config byte " << i;
  for (size_t i = 0; i < sizeof(c); ++i) {
    uint8_t one = 0xAB;
    dev->read_config(i, std::span<uint8_t>(&one, 1));
    EXPECT_EQ(one, exp[i]) << "config byte " << i << " read alone";
  }
  uint32_t seg = 0;
  dev->read_config(offsetof(virtio_blk_config, seg_max),
                   std::span<uint8_t>(reinterpret_cast<uint8_t*>(&seg), 4));
  EXPECT_EQ(seg, 256u);
  uint8_t past[4] = {1, 2, 3, 4};
  dev->read_config(0x200, past);
  EXPECT_EQ(past[0] | past[1] | past[2] | past[3], 0);
}

TEST_P(BlkDeviceTest, ReadsTheImage) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  for (unsigned segs : {1u, 3u}) {
    BlkDone d = one(drv, VIRTIO_BLK_T_IN, 24, 12288, segs);
    EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
    EXPECT_EQ(d.used_len, 12289u);
    EXPECT_EQ(0, std::memcmp(drv.data(0).data(), image_->shadow().data() + 24 * 512, 12288));
  }
}

TEST_P(BlkDeviceTest, WritesReachTheFile) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  test::fill_random(drv.data(0).data(), 8192, 77);
  BlkDone d = one(drv, VIRTIO_BLK_T_OUT, 100, 8192, 2);
  EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(d.used_len, 1u);
  image_->shadow_write(100 * 512, drv.data(0).data(), 8192);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0).status, VIRTIO_BLK_S_OK);
  drv.reset();
  EXPECT_TRUE(image_->read_back() == image_->shadow());
}

TEST_P(BlkDeviceTest, ErrorsAndGetId) {
  auto dev = open(opt([](BlockOptions& o) { o.serial = "disk-serial-1"; }));
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, kImageBytes / 512 - 1, 1024).status, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_OUT, kImageBytes / 512, 512).status, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, 11 /* DISCARD */, 0, 512).status, VIRTIO_BLK_S_UNSUPP);
  BlkDone id = one(drv, VIRTIO_BLK_T_GET_ID, 0, 20);
  EXPECT_EQ(id.status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(id.used_len, 21u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(drv.data(0).data())), "disk-serial-1");
  drv.reset();
  BlockStats s = dev->stats();
  EXPECT_EQ(s.errors, 2u);
  EXPECT_EQ(s.unsupported, 1u);
  EXPECT_EQ(s.get_ids, 1u);
  EXPECT_TRUE(image_->read_back() == image_->shadow());
}

TEST_P(BlkDeviceTest, ReadOnlyRefusesWrites) {
  auto dev = open(opt([](BlockOptions& o) { o.read_only = true; }));
  ASSERT_TRUE(dev);
  EXPECT_TRUE(dev->device_features() & (uint64_t{1} << VIRTIO_BLK_F_RO));
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  std::memset(drv.data(0).data(), 0x5A, 4096);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_OUT, 0, 4096).status, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 0, 4096).status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(0, std::memcmp(drv.data(0).data(), image_->shadow().data(), 4096));
  drv.reset();
  EXPECT_TRUE(image_->read_back() == image_->shadow()) << "nothing written";
}

// Writes one DISCARD / WRITE_ZEROES segment into tag 0's data area; returns its size.
uint32_t put_segment(BlkDriver& drv, uint64_t sector, uint32_t nsect, uint32_t flags) {
  virtio_blk_discard_write_zeroes seg{};
  seg.sector = sector;
  seg.num_sectors = nsect;
  seg.flags = flags;
  std::memcpy(drv.data(0).data(), &seg, sizeof(seg));
  return sizeof(seg);
}

TEST_P(BlkDeviceTest, DiscardAndWriteZeroes) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  auto blocks = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(image_->path().c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks);
  };
  auto& shadow = image_->shadow();
  uint64_t before = blocks();
  // DISCARD of 1 MiB at 1 MiB: the host file loses those blocks; the range reads zeroes.
  uint32_t len = put_segment(drv, 2048, 2048, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_DISCARD, 0, len).status, VIRTIO_BLK_S_OK);
  EXPECT_LE(blocks() + 2048, before);
  std::fill(shadow.begin() + (1 << 20), shadow.begin() + (2 << 20), 0);
  // WRITE_ZEROES, without and with unmap.
  len = put_segment(drv, 8, 16, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, len).status, VIRTIO_BLK_S_OK);
  std::fill(shadow.begin() + 8 * 512, shadow.begin() + 24 * 512, 0);
  len = put_segment(drv, 6000, 100, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, len).status, VIRTIO_BLK_S_OK);
  std::fill(shadow.begin() + 6000 * 512, shadow.begin() + 6100 * 512, 0);
  // GUEST: bad segments change nothing.
  const uint64_t cap = kImageBytes / 512;
  len = put_segment(drv, cap - 1, 2, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_DISCARD, 0, len).status, VIRTIO_BLK_S_IOERR) << "past the end";
  len = put_segment(drv, ~uint64_t{0}, 1, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, len).status, VIRTIO_BLK_S_IOERR) << "overflow";
  len = put_segment(drv, 0, 8, 2);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, len).status, VIRTIO_BLK_S_UNSUPP) << "flags";
  len = put_segment(drv, 0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_DISCARD, 0, len).status, VIRTIO_BLK_S_UNSUPP) << "unmap";
  put_segment(drv, 0, 8, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_DISCARD, 0, 15).status, VIRTIO_BLK_S_IOERR) << "short";
  drv.reset();
  BlockStats s = dev->stats();
  EXPECT_EQ(s.discards, 1u + 2u);  // IOERR counts by type, UNSUPP as unsupported
  EXPECT_EQ(s.write_zeroes, 2u + 1u);
  EXPECT_EQ(s.unsupported, 2u);
  EXPECT_EQ(s.errors, 3u);
  EXPECT_TRUE(image_->matches_shadow());
}

TEST_P(BlkDeviceTest, ReadOnlyRefusesDiscardAndWriteZeroes) {
  auto dev = open(opt([](BlockOptions& o) { o.read_only = true; }));
  ASSERT_TRUE(dev);
  uint64_t f = dev->device_features();
  EXPECT_FALSE(f & (uint64_t{1} << VIRTIO_BLK_F_DISCARD));
  EXPECT_FALSE(f & (uint64_t{1} << VIRTIO_BLK_F_WRITE_ZEROES));
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  uint32_t len = put_segment(drv, 0, 8, 0);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_DISCARD, 0, len).status, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_WRITE_ZEROES, 0, len).status, VIRTIO_BLK_S_IOERR);
  drv.reset();
  EXPECT_TRUE(image_->read_back() == image_->shadow()) << "nothing written";
}

TEST_P(BlkDeviceTest, MergesOneBatchOfContiguousReads) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  // 32 contiguous 4 KiB reads in reverse order, one publish, one kick: one engine request.
  for (uint16_t t = 0; t < 32; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, (31 - t) * 8, 4096));
  drv.kick();
  auto done = drv.wait_for(32);
  ASSERT_EQ(done.size(), 32u);
  for (const BlkDone& d : done) {
    EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
    EXPECT_EQ(d.used_len, 4097u);
    EXPECT_EQ(0, std::memcmp(drv.data(d.tag).data(), image_->shadow().data() + (31 - d.tag) * 4096,
                             4096));
  }
  drv.reset();
  BlockStats s = dev->stats();
  EXPECT_EQ(s.merged_groups, 1u);
  EXPECT_EQ(s.merged_requests, 32u);
  EXPECT_EQ(s.reads, 32u);
  EXPECT_EQ(s.bytes_read, 32u * 4096);
}

TEST_P(BlkDeviceTest, NoMergeWhenOff) {
  auto dev = open(opt([](BlockOptions& o) { o.merge = false; }));
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  for (uint16_t t = 0; t < 16; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  ASSERT_EQ(drv.wait_for(16).size(), 16u);
  drv.reset();
  EXPECT_EQ(dev->stats().merged_groups, 0u);
  EXPECT_EQ(dev->stats().submissions, 16u);
}

TEST_P(BlkDeviceTest, EventIdxSuppressesInterrupts) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  // One request at a time, collected without asking for interrupts (used_event untouched).
  auto finish_one = [&](uint16_t tag, uint64_t sector) {
    std::vector<BlkDone> done;
    EXPECT_TRUE(drv.add(tag, VIRTIO_BLK_T_IN, sector, 4096));
    drv.kick();
    for (int i = 0; i < 2000 && done.empty(); ++i) {
      drv.collect(done);
      if (done.empty()) usleep(1000);
    }
    EXPECT_EQ(done.size(), 1u);
  };
  // The used entry is visible before the interrupt is signalled: wait for the count to reach n.
  auto irqs_reaching = [&](uint64_t n) {
    (void)test::eventually([&] { return drv.irq().used.load() >= n; }, 2000);
    return drv.irq().used.load();
  };
  drv.mock().set_used_event(0);
  // The device's first signal after activation has no earlier one to compare with, so it
  // always fires; it only primes the EVENT_IDX state that the rest of the test checks.
  finish_one(0, 0);
  ASSERT_EQ(irqs_reaching(1), 1u);
  // used_event stays at 0 while used.idx moves 1 -> 6: never crossed again, no interrupt.
  for (uint16_t round = 0; round < 5; ++round) finish_one(1, 8);
  usleep(20000);
  EXPECT_EQ(drv.irq().used.load(), 1u) << "used_event stayed behind: no interrupt";
  // used_event = 7: the entry that makes used.idx 7 does not cross it, the one making it 8 does.
  ASSERT_EQ(drv.mock().used_idx(), 6u);
  drv.mock().set_used_event(7);
  finish_one(2, 16);
  finish_one(3, 24);
  ASSERT_EQ(irqs_reaching(2), 2u);
  usleep(20000);
  EXPECT_EQ(drv.irq().used.load(), 2u) << "exactly one interrupt: for used.idx 7 -> 8";
  // Asking again (used_event = what the driver has seen) brings the next one.
  EXPECT_FALSE(drv.mock().enable_interrupts());
  ASSERT_TRUE(drv.add(4, VIRTIO_BLK_T_IN, 32, 4096));
  drv.kick();
  ASSERT_EQ(drv.wait_for(1).size(), 1u);
  EXPECT_EQ(irqs_reaching(3), 3u);
  drv.reset();
  EXPECT_EQ(dev->stats().interrupts, 3u);
}

TEST_P(BlkDeviceTest, IndirectChains) {
  auto dev = open();
  BlkDriver::Options indirect;
  indirect.indirect = true;
  BlkDriver drv(indirect);
  ASSERT_TRUE(drv.activate(*dev));
  BlkDone d = one(drv, VIRTIO_BLK_T_IN, 0, 16384, 4);
  EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(0, std::memcmp(drv.data(0).data(), image_->shadow().data(), 16384));
}

TEST_P(BlkDeviceTest, BrokenChainNeedsReset) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  // A header and no writable byte: the device cannot answer.
  ChainBuffer only_header[] = {{drv.header_addr(0), 16, false}};
  ASSERT_TRUE(drv.add_raw(0, only_header));
  drv.kick();
  (void)test::eventually([&] { return drv.irq().needs_reset.load(); }, 2000);
  EXPECT_TRUE(drv.irq().needs_reset.load());
  drv.reset();
}

TEST_P(BlkDeviceTest, BadRingNeedsReset) {
  auto dev = open();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  drv.mock().offer(9999);  // a head outside the queue
  drv.kick();
  (void)drv.notify().signal();
  (void)test::eventually([&] { return drv.irq().needs_reset.load(); }, 2000);
  EXPECT_TRUE(drv.irq().needs_reset.load());
}

// Reset with the real engines while I/O may be in flight (the fake-engine test below holds it
// there for sure): whatever was answered before the reset is complete and correct, nothing is
// answered after it, and the unanswered requests' status bytes are untouched.
TEST_P(BlkDeviceTest, ResetDuringIoAndReactivate) {
  auto dev = open();
  {
    BlkDriver drv({});
    ASSERT_TRUE(drv.activate(*dev));
    for (uint16_t t = 0; t < 64; ++t) {
      // 64 KiB each, side by side: all 64 inside the 4 MiB disk.
      ASSERT_TRUE(drv.add(t, t % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, t * 128, 65536));
    }
    drv.kick();
    drv.reset();  // must return with every in-flight request finished, thread joined
    EXPECT_FALSE(dev->active());
    uint16_t used = drv.mock().used_idx();
    usleep(20000);
    EXPECT_EQ(drv.mock().used_idx(), used) << "a push after reset() returned";
    std::vector<BlkDone> done;
    drv.collect(done);
    std::vector<bool> answered(64, false);
    for (const BlkDone& d : done) {
      EXPECT_EQ(d.status, VIRTIO_BLK_S_OK) << "tag " << d.tag;
      answered[d.tag] = true;
    }
    for (uint16_t t = 0; t < 64; ++t) {
      if (answered[t]) continue;
      EXPECT_EQ(*drv.mem().read_obj<uint8_t>(drv.status_addr(t)), 0xFF) << "dropped tag " << t;
    }
    BlockStats s = dev->stats();
    EXPECT_EQ(s.reads + s.writes, done.size()) << "only answered requests are counted";
  }
  BlkDriver drv2({});
  ASSERT_TRUE(drv2.activate(*dev));
  BlkDone d = one(drv2, VIRTIO_BLK_T_GET_ID, 0, 20);
  EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
  // Inside tag 1's range: a read, so no write before the reset (answered or not) changed it.
  d = one(drv2, VIRTIO_BLK_T_IN, 136, 4096);
  EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(0, std::memcmp(drv2.data(0).data(), image_->shadow().data() + 136 * 512, 4096));
}

// An image whose host needs 4096-byte direct I/O: the guest still sees 512-byte logical blocks
// (the host block is the physical one), and 512-byte-aligned I/O of any size at any sector
// works through the alignment layer, byte for byte.
TEST_P(BlkDeviceTest, GuestSees512ByteSectorsOnA4096ByteHost) {
  auto dev = open(opt([](BlockOptions& o) {
    o.open.force_offset_align = 4096;
    o.open.force_mem_align = 4096;
  }));
  ASSERT_TRUE(dev);
  if (!dev->image()->direct()) GTEST_SKIP() << "no O_DIRECT here: the host block is 512";
  ASSERT_EQ(dev->image()->offset_align(), 4096u);
  virtio_blk_config c{};
  dev->read_config(0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&c), sizeof(c)));
  EXPECT_TRUE(dev->device_features() & (uint64_t{1} << VIRTIO_BLK_F_BLK_SIZE));
  EXPECT_TRUE(dev->device_features() & (uint64_t{1} << VIRTIO_BLK_F_TOPOLOGY));
  EXPECT_EQ(uint32_t{c.blk_size}, 512u);
  EXPECT_EQ(int{c.physical_block_exp}, 3) << "8 logical blocks per physical block";
  EXPECT_EQ(int{c.alignment_offset}, 0);
  EXPECT_EQ(uint32_t{c.min_io_size}, 8u);
  EXPECT_EQ(uint32_t{c.opt_io_size}, 8u);

  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(*dev));
  struct Io {
    uint64_t sector;
    uint32_t len;
    unsigned segs;
    uint32_t data_offset;  // 512-aligned, not 4096-aligned unless 0
  };
  // A 1 KiB file-system block, a partition-table sector, a run across two host blocks, a
  // sector at the end of the disk, and one aligned block for contrast.
  const Io ios[] = {{3, 1024, 1, 512},
                    {0, 512, 1, 0},
                    {7, 4608, 3, 1536},
                    {kImageBytes / 512 - 1, 512, 1, 512},
                    {16, 4096, 1, 0}};
  uint64_t seed = 77;
  for (const Io& io : ios) {
    test::fill_random(drv.data(0).data() + io.data_offset, io.len, ++seed);
    image_->shadow_write(io.sector * 512, drv.data(0).data() + io.data_offset, io.len);
    ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_OUT, io.sector, io.len, io.segs, io.data_offset));
    drv.kick();
    auto w = drv.wait_for(1);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].status, VIRTIO_BLK_S_OK) << "write at sector " << io.sector;
  }
  for (const Io& io : ios) {
    // Read each range back, and one sector around it, into a buffer at another offset.
    uint64_t first = io.sector > 0 ? io.sector - 1 : 0;
    uint32_t len = static_cast<uint32_t>(
        std::min<uint64_t>(io.sector * 512 + io.len + 512, kImageBytes) - first * 512);
    std::memset(drv.data(1).data(), 0, len + 512);
    ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_IN, first, len, io.segs, 512));
    drv.kick();
    auto r = drv.wait_for(1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, VIRTIO_BLK_S_OK);
    EXPECT_EQ(r[0].used_len, len + 1);
    EXPECT_EQ(0, std::memcmp(drv.data(1).data() + 512, image_->shadow().data() + first * 512, len))
        << "read at sector " << first;
  }
  drv.reset();
  EXPECT_GT(dev->engine_stats().bounced, 0u) << "the 512-byte I/O went through bounce buffers";
  EXPECT_TRUE(image_->matches_shadow());
}

// A full ring of misaligned 64 KiB requests on an image that needs 4096-byte alignment: each
// needs a 128 KiB bounce buffer (32 MiB for the ring), yet the engine never holds more bounce
// memory than its budget; the requests past it wait, and every one completes correctly.
TEST_P(BlkDeviceTest, ConcurrentMisalignedRequestsStayWithinTheBounceBudget) {
  constexpr uint32_t kLen = 64 << 10;
  TempImage image(32 << 20, test::ImageFs::kDisk, 9);
  BlockOptions o;
  o.path = image.path();
  o.engine = GetParam();
  o.open.force_offset_align = 4096;
  o.open.force_mem_align = 4096;
  auto dev = BlockDevice::open(o);
  ASSERT_TRUE(dev) << dev.error().message();
  if (!(*dev)->image()->direct()) GTEST_SKIP() << "no O_DIRECT here: nothing to bounce";
  BlkDriver::Options dopt;
  dopt.max_data = kLen + 4096;
  dopt.indirect = true;  // one descriptor per request: the whole ring in flight
  BlkDriver drv(dopt);
  ASSERT_TRUE(drv.activate(**dev));
  const uint16_t n = drv.queue_size();
  for (uint16_t t = 0; t < n; ++t) {
    // 512 bytes into the tag's area (not 4096-aligned), one sector into a 128 KiB stride (not
    // contiguous with the neighbours, so nothing merges).
    uint32_t type = t % 2 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    uint64_t sector = uint64_t{t} * 256 + 1;
    if (type == VIRTIO_BLK_T_OUT) {
      test::fill_random(drv.data(t).data() + 512, kLen, t);
      image.shadow_write(sector * 512, drv.data(t).data() + 512, kLen);
    }
    ASSERT_TRUE(drv.add(t, type, sector, kLen, 1, 512));
  }
  drv.kick();
  auto done = drv.wait_for(n, 30000);
  ASSERT_EQ(done.size(), n);
  for (const BlkDone& d : done) {
    EXPECT_EQ(d.status, VIRTIO_BLK_S_OK) << "tag " << d.tag;
    if (d.tag % 2 == 0) {
      uint64_t at = (uint64_t{d.tag} * 256 + 1) * 512;
      EXPECT_EQ(0, std::memcmp(drv.data(d.tag).data() + 512, image.shadow().data() + at, kLen))
          << "read of tag " << d.tag;
    }
  }
  drv.reset();
  block::EngineStats e = (*dev)->engine_stats();
  EXPECT_EQ(e.bounced, n);
  EXPECT_EQ(e.bounce_budget, block::kBounceBudgetBytes);
  EXPECT_GT(e.bounce_high_water, 0u);
  EXPECT_LE(e.bounce_high_water, e.bounce_budget) << "bounce memory past the budget";
  EXPECT_TRUE(image.matches_shadow());
}

INSTANTIATE_TEST_SUITE_P(Engines, BlkDeviceTest, testing::Values("sync", "libaio", "io_uring"),
                         [](const auto& info) { return info.param; });

// A device over a FakeEngine with room for `room` requests; `fake` is set to the engine.
auto fake_device(size_t room, bool merge, test::FakeEngine*& fake) {
  auto engine = std::make_unique<test::FakeEngine>(room);
  fake = engine.get();
  BlockOptions o;
  o.merge = merge;
  return BlockDevice::create_with_engine(o, 1 << 20, 512, std::move(engine));
}

// The device over a fake engine with room for two requests: popping pauses while the engine is
// full and resumes from the completion path, without losing a request.
TEST(BlkDeviceFakeEngine, FullEngineStallsAndResumes) {
  test::FakeEngine* fake = nullptr;
  auto dev = fake_device(2, false, fake);
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  for (uint16_t t = 0; t < 6; ++t) ASSERT_TRUE(drv.add(t, VIRTIO_BLK_T_IN, t * 8, 4096));
  drv.kick();
  auto wait_submitted = [&](size_t n) {
    (void)test::eventually([&] { return fake->submitted() >= n; }, 2000);
    return fake->submitted();
  };
  ASSERT_EQ(wait_submitted(2), 2u);
  usleep(20000);
  EXPECT_EQ(fake->submitted(), 2u) << "nothing beyond the engine's room";
  for (size_t i = 0; i < 6; ++i) {
    ASSERT_GT(wait_submitted(i + 1), i);
    fake->complete(i);
  }
  auto done = drv.wait_for(6);
  ASSERT_EQ(done.size(), 6u);
  for (const BlkDone& d : done) EXPECT_EQ(d.status, VIRTIO_BLK_S_OK);
  drv.reset();
  EXPECT_EQ((*dev)->stats().reads, 6u);
}

// Reset while the engine holds requests: reset() does not return until the engine has finished
// them all (the kernel writes into guest buffers until then), answers none of them (no status
// byte, no used element, no interrupt), and a new activation works.
TEST(BlkDeviceFakeEngine, ResetWaitsForHeldIoAndAnswersNothing) {
  test::FakeEngine* fake = nullptr;
  auto dev = fake_device(8, false, fake);
  ASSERT_TRUE(dev);
  {
    BlkDriver drv({});
    ASSERT_TRUE(drv.activate(**dev));
    test::fill_random(drv.data(1).data(), 4096, 5);
    ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 4096));
    ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_OUT, 64, 4096));
    ASSERT_TRUE(drv.add(2, VIRTIO_BLK_T_FLUSH, 0, 0));
    drv.kick();
    (void)test::eventually([&] { return fake->submitted() >= 3; }, 2000);
    ASSERT_EQ(fake->submitted(), 3u);
    ASSERT_EQ(fake->in_flight(), 3u);

    std::atomic<bool> returned{false};
    std::thread resetter([&] {
      (*dev)->reset();
      returned = true;
    });
    usleep(100000);
    EXPECT_FALSE(returned.load()) << "reset() returned while the engine held 3 requests";
    fake->complete(0);
    fake->complete(1);
    usleep(50000);
    EXPECT_FALSE(returned.load()) << "reset() returned while the engine held the flush";
    fake->complete(2);
    resetter.join();
    EXPECT_TRUE(returned.load());
    EXPECT_FALSE((*dev)->active());
    EXPECT_EQ(fake->in_flight(), 0u) << "every completion was reaped";
    EXPECT_EQ(drv.mock().used_idx(), 0u) << "dropped requests are not pushed";
    for (uint16_t t = 0; t < 3; ++t) {
      EXPECT_EQ(*drv.mem().read_obj<uint8_t>(drv.status_addr(t)), 0xFF) << "status of tag " << t;
    }
    EXPECT_EQ(drv.irq().used.load(), 0u);
    EXPECT_FALSE(drv.irq().needs_reset.load());
    BlockStats s = (*dev)->stats();
    EXPECT_EQ(s.reads + s.writes + s.flushes, 0u);
  }
  // A new driver (fresh rings) and a new activation: requests work again.
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  ASSERT_TRUE(drv.add(7, VIRTIO_BLK_T_IN, 16, 4096));
  drv.kick();
  (void)test::eventually([&] { return fake->submitted() >= 4; }, 2000);
  ASSERT_EQ(fake->submitted(), 4u);
  fake->complete(3);
  auto done = drv.wait_for(1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tag, 7);
  EXPECT_EQ(done[0].status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(done[0].used_len, 4097u);
  drv.reset();
  EXPECT_EQ(fake->subs[3].offset, 16u * 512);
  EXPECT_EQ((*dev)->stats().reads, 1u);
}

// Writes a request header for `tag` into the driver's header area.
void put_header(BlkDriver& drv, uint16_t tag, uint32_t type, uint64_t sector) {
  virtio_blk_outhdr h{};
  h.type = type;
  h.sector = sector;
  ASSERT_TRUE(drv.mem().write_obj(drv.header_addr(tag), h));
}

// A hostile driver points 254 descriptors of 16 MiB at the same guest pages: a request for
// 4064 MiB from 32 MiB of RAM, on a disk large enough for it. The device answers IOERR without
// handing it to the engine (which would have to bounce or read gigabytes); a request at the
// limit still goes through, one sector more does not.
TEST(BlkDeviceFakeEngine, AliasingDescriptorsAskingFor4GiBGetIoerr) {
  auto engine = std::make_unique<test::FakeEngine>(8);
  test::FakeEngine* fake = engine.get();
  auto dev = BlockDevice::create_with_engine({}, uint64_t{8} << 30, 512, std::move(engine));
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  constexpr uint32_t kAlias = 16 << 20;
  for (uint16_t tag = 0; tag < 2; ++tag) {
    bool read = tag == 0;
    put_header(drv, tag, read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, 0);
    std::vector<ChainBuffer> chain{{drv.header_addr(tag), 16, false}};
    for (int i = 0; i < 254; ++i) chain.push_back({drv.data_addr(0), kAlias, read});
    chain.push_back({drv.status_addr(tag), 1, true});
    ASSERT_EQ(chain.size(), 256u) << "the whole descriptor table";
    ASSERT_TRUE(drv.add_raw(tag, chain));
    drv.kick();
    auto done = drv.wait_for(1, 2000);
    // A device that hands the request to the engine must see it finish (or reset would wait).
    if (done.empty() && fake->complete_pending() > 0) done = drv.wait_for(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, VIRTIO_BLK_S_IOERR) << (read ? "read" : "write");
    EXPECT_EQ(done[0].used_len, 1u);
  }
  EXPECT_EQ(fake->submitted(), 0u) << "the engine never saw the 4 GiB requests";
  size_t before = fake->submitted();

  for (uint32_t len : {uint32_t(kMaxRequestBytes), uint32_t(kMaxRequestBytes + 512)}) {
    put_header(drv, 2, VIRTIO_BLK_T_IN, 0);
    ChainBuffer req[] = {{drv.header_addr(2), 16, false},
                         {drv.data_addr(0), len, true},
                         {drv.status_addr(2), 1, true}};
    ASSERT_TRUE(drv.add_raw(2, req));
    drv.kick();
    auto done = drv.wait_for(1, 500);
    if (done.empty() && fake->complete_pending() > 0) done = drv.wait_for(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, len == kMaxRequestBytes ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR)
        << len << " bytes";
  }
  EXPECT_EQ(fake->submitted(), before + 1) << "only the request at the limit reached the engine";
  drv.reset();
  EXPECT_EQ((*dev)->stats().errors, 3u);
}

// SIZE_MAX and SEG_MAX promise no more than the device accepts, and SEG_MAX follows the queue
// size the driver chose (a chain is never longer than its queue).
TEST(BlkDeviceFakeEngine, SegMaxFollowsTheSelectedQueueSize) {
  BlockOptions o;
  o.queue_size = 1024;
  auto dev = BlockDevice::create_with_engine(o, 1 << 20, 512, std::make_unique<test::FakeEngine>());
  ASSERT_TRUE(dev);
  EXPECT_TRUE((*dev)->device_features() & (uint64_t{1} << VIRTIO_BLK_F_SIZE_MAX));
  auto seg_max = [&] {
    uint32_t v = 0;
    (*dev)->read_config(offsetof(virtio_blk_config, seg_max),
                        std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  };
  uint32_t size_max = 0;
  (*dev)->read_config(offsetof(virtio_blk_config, size_max),
                      std::span<uint8_t>(reinterpret_cast<uint8_t*>(&size_max), 4));
  EXPECT_EQ(size_max, kSizeMax);
  EXPECT_EQ(seg_max(), kMaxRequestBytes / kSizeMax) << "1022 segments would pass the 1 MiB cap";
  EXPECT_LE(uint64_t{seg_max()} * size_max, kMaxRequestBytes);
  (*dev)->queue_size_selected(0, 64);
  EXPECT_EQ(seg_max(), 62u) << "the driver chose 64 entries";
  (*dev)->reset();
  EXPECT_EQ(seg_max(), 256u) << "a reset brings the queue back to its maximum";

  BlkDriver::Options small;
  small.queue_size = 16;
  BlkDriver drv(small);
  ASSERT_TRUE(drv.activate(**dev));
  EXPECT_EQ(seg_max(), 14u) << "activated with a 16-entry queue";
  drv.reset();
}

// Config writes are the guest's to repeat: a flood of them makes a few debug lines.
TEST(BlkDeviceFakeEngine, ConfigWriteFloodIsRateLimited) {
  test::FakeEngine* fake = nullptr;
  auto dev = fake_device(8, true, fake);
  ASSERT_TRUE(dev);
  const uint8_t b[1] = {1};
  size_t lines = test::count_log_lines(log::Level::kDebug, "ignored config write", [&] {
    for (int i = 0; i < 1000; ++i) (*dev)->write_config(0x20, b);
  });
  EXPECT_GT(lines, 0u);
  EXPECT_LE(lines, log::RateLimit::kDefaultBurst);
}

// A failing engine: every submission error becomes IOERR for the guest.
TEST(BlkDeviceFakeEngine, EngineErrorBecomesIoerr) {
  test::FakeEngine* fake = nullptr;
  auto dev = fake_device(8, true, fake);
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 4096));
  ASSERT_TRUE(drv.add(1, VIRTIO_BLK_T_IN, 8, 4096));
  drv.kick();
  (void)test::eventually([&] { return fake->submitted() >= 1; }, 2000);
  ASSERT_EQ(fake->submitted(), 1u) << "merged into one engine request";
  fake->complete(0, -EIO);
  auto done = drv.wait_for(2);
  ASSERT_EQ(done.size(), 2u);
  for (const BlkDone& d : done) {
    EXPECT_EQ(d.status, VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(d.used_len, 1u);
  }
}

}  // namespace
}  // namespace kindling::virtio
