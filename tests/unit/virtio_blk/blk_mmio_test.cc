// The block device behind the virtio-mmio transport, programmed through registers the way
// Linux's virtio_mmio + virtio_blk drivers do, with the notify/interrupt eventfds the VMM would
// register as ioeventfd/irqfd.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_ring.h>
#include <poll.h>

#include <cstring>
#include <memory>

#include "tests/support/mock_queue.h"
#include "tests/support/temp_image.h"
#include "tests/support/test_memory.h"
#include "virtio/blk_device.h"
#include "virtio/mmio_transport.h"

namespace kindling::virtio {
namespace {

using vmm::GuestAddress;

class BlkMmioTest : public testing::Test {
 protected:
  void SetUp() override {
    image_ = std::make_unique<test::TempImage>(1 << 20);
    BlockOptions o;
    o.path = image_->path();
    o.serial = "mmio";
    auto dev = BlockDevice::open(o);
    ASSERT_TRUE(dev) << dev.error().message();
    auto t = MmioTransport::create(mem_, std::move(*dev));
    ASSERT_TRUE(t) << t.error().message();
    mmio_ = std::move(*t);
  }

  uint32_t rd(uint64_t off) {
    uint32_t v = 0;
    mmio_->read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void wr(uint64_t off, uint32_t v) {
    mmio_->write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), 4));
  }

  // The Linux driver's init sequence; returns the Status the driver reads at the end.
  uint32_t init_driver(const test::QueueLayout& l) {
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint32_t hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, lo);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, hi);
    uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    wr(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK)) return rd(VIRTIO_MMIO_STATUS);
    s |= VIRTIO_CONFIG_S_FEATURES_OK;
    wr(VIRTIO_MMIO_QUEUE_SEL, 0);
    EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 256u);
    wr(VIRTIO_MMIO_QUEUE_NUM, l.size);
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(l.desc.value));
    wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, static_cast<uint32_t>(l.avail.value));
    wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    wr(VIRTIO_MMIO_QUEUE_USED_LOW, static_cast<uint32_t>(l.used.value));
    wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
    wr(VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    return rd(VIRTIO_MMIO_STATUS);
  }

  GuestMemory mem_ = test::make_test_memory();
  std::unique_ptr<test::TempImage> image_;
  std::unique_ptr<MmioTransport> mmio_;
};

TEST_F(BlkMmioTest, ReadThroughRegistersEventfdsAndRing) {
  EXPECT_EQ(rd(VIRTIO_MMIO_DEVICE_ID), 2u);
  // Config space at 0x100: capacity in sectors.
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG), (1u << 20) / 512);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG + 4), 0u);

  auto layout = test::QueueLayout::contiguous(GuestAddress(0x10000), 256);
  test::MockQueue mq(mem_, layout);
  mq.set_event_idx(true);
  ASSERT_EQ(init_driver(layout) & VIRTIO_CONFIG_S_DRIVER_OK, uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});

  virtio_blk_outhdr h{};
  h.type = VIRTIO_BLK_T_IN;
  h.sector = 8;
  GuestAddress hdr(0x100000), data(0x101000), status(0x100800);
  ASSERT_TRUE(mem_.write_obj(hdr, h));
  test::ChainBuffer chain[] = {{hdr, 16, false}, {data, 4096, true}, {status, 1, true}};
  ASSERT_TRUE(mq.add_chain(chain));
  mq.publish();
  ASSERT_TRUE(mq.needs_kick());
  ASSERT_TRUE(mmio_->queue_notifies()[0].signal());  // what the ioeventfd does on QueueNotify

  pollfd p{mmio_->interrupt_eventfd().fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1) << "no interrupt";
  EXPECT_TRUE(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
  wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
  auto used = mq.next_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 4097u);
  EXPECT_EQ(*mem_.read_obj<uint8_t>(status), VIRTIO_BLK_S_OK);
  auto got = test::read_guest(mem_, data, 4096);
  EXPECT_EQ(0, std::memcmp(got.data(), image_->shadow().data() + 8 * 512, 4096));

  // Driver reset: the device stops, and the transport is back at status 0.
  wr(VIRTIO_MMIO_STATUS, 0);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  EXPECT_FALSE(mmio_->activated());
}

}  // namespace
}  // namespace kindling::virtio
