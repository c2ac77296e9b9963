// The block device behind the virtio-mmio transport, programmed through registers the way
// Linux's virtio_mmio + virtio_blk drivers do, with the notify/interrupt eventfds the VMM would
// register as ioeventfd/irqfd. Over the real engine for the data path; over the fake engine to
// hold I/O in flight across a reset, and for every malformed chain of notes section B.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_ring.h>
#include <poll.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/eventually.h"
#include "tests/support/mock_queue.h"
#include "tests/support/temp_image.h"
#include "tests/support/test_memory.h"
#include "tests/unit/virtio_blk/fake_engine.h"
#include "virtio/blk_device.h"
#include "virtio/mmio_transport.h"

namespace kindling::virtio {
namespace {

using memory::GuestAddress;

// Registers, the Linux init sequence and test memory; subclasses pick the device.
class BlkMmioBase : public testing::Test {
 protected:
  void attach(std::unique_ptr<BlockDevice> dev) {
    auto t = MmioTransport::create(mem_, std::move(dev));
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

  // The Linux driver's init sequence, accepting the offered features in `mask`; returns the
  // Status the driver reads at the end.
  uint32_t init_driver(const test::QueueLayout& l, uint64_t mask = ~uint64_t{0}) {
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint32_t hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
    lo &= static_cast<uint32_t>(mask);
    hi &= static_cast<uint32_t>(mask >> 32);
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
  std::unique_ptr<MmioTransport> mmio_;
};

// The block device over a real image.
class BlkMmioTest : public BlkMmioBase {
 protected:
  void SetUp() override {
    image_ = std::make_unique<test::TempImage>(1 << 20);
    BlockOptions o;
    o.path = image_->path();
    o.serial = "mmio";
    auto dev = BlockDevice::open(o);
    ASSERT_TRUE(dev) << dev.error().message();
    attach(std::move(*dev));
  }

  std::unique_ptr<test::TempImage> image_;
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

// SEG_MAX follows the QueueNum the driver writes: a driver that reads the config after sizing
// its queue is told what fits the queue it chose; a reset offers the maximum again.
TEST_F(BlkMmioTest, SegMaxFollowsQueueNum) {
  const uint64_t seg_max = VIRTIO_MMIO_CONFIG + offsetof(virtio_blk_config, seg_max);
  EXPECT_EQ(rd(seg_max), 254u) << "256-entry queue";
  auto layout = test::QueueLayout::contiguous(GuestAddress(0x10000), 64);
  ASSERT_EQ(init_driver(layout) & VIRTIO_CONFIG_S_DRIVER_OK, uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  EXPECT_EQ(rd(seg_max), 62u) << "the driver chose 64 entries";
  wr(VIRTIO_MMIO_STATUS, 0);
  EXPECT_EQ(rd(seg_max), 254u);
  wr(VIRTIO_MMIO_QUEUE_SEL, 0);
  wr(VIRTIO_MMIO_QUEUE_NUM, 32);
  EXPECT_EQ(rd(seg_max), 30u) << "before DRIVER_OK too";
}

// Where the fake-engine tests put their requests' buffers in guest RAM.
constexpr uint16_t kQueueSize = 256;
constexpr uint64_t kHdr = 0x100000, kStatus = 0x100800, kData = 0x101000;
constexpr uint64_t kTable = 0x103000;  // an indirect table

// The block device over a fake engine that holds every request until the test completes it.
class BlkMmioFakeTest : public BlkMmioBase {
 protected:
  void SetUp() override {
    auto engine = std::make_unique<test::FakeEngine>(kQueueSize);
    fake_ = engine.get();
    BlockOptions o;
    o.merge = false;
    auto dev = BlockDevice::create_with_engine(o, 1 << 20, 512, std::move(engine));
    ASSERT_TRUE(dev) << dev.error().message();
    attach(std::move(*dev));
  }
  void TearDown() override {
    // A failed assertion may leave requests held: release them so that the reset in the
    // transport's destructor can finish.
    if (fake_ != nullptr) fake_->complete_pending();
  }

  // Writes a read request's header, a canary status byte and canary data for request `n`; returns
  // its three buffers.
  std::vector<test::ChainBuffer> read_request(uint64_t n, uint64_t sector) {
    virtio_blk_outhdr h{};
    h.type = VIRTIO_BLK_T_IN;
    h.sector = sector;
    GuestAddress hdr(kHdr + 16 * n), status(kStatus + n), data(kData + 4096 * n);
    EXPECT_TRUE(mem_.write_obj(hdr, h));
    EXPECT_TRUE(mem_.write_obj(status, uint8_t{0xFF}));
    test::fill_guest(mem_, data, 4096, 0x5A);
    return {{hdr, 16, false}, {data, 4096, true}, {status, 1, true}};
  }
  // Every byte of guest RAM (both regions of the test layout).
  std::vector<uint8_t> snapshot() const {
    auto low = test::read_guest(mem_, GuestAddress(0), test::kLowRamEnd);
    auto high = test::read_guest(mem_, GuestAddress(test::kHighRamBase),
                                 test::kHighRamEnd - test::kHighRamBase);
    low.insert(low.end(), high.begin(), high.end());
    return low;
  }
  bool wait_submitted(size_t n) {
    (void)test::eventually([&] { return fake_->submitted() >= n; }, 5000);
    return fake_->submitted() == n;
  }

  test::FakeEngine* fake_ = nullptr;
};

// Status 0 with two reads held by the engine: the register write does not return until the
// engine finished both; neither is answered, and the device comes back with a new init.
TEST_F(BlkMmioFakeTest, StatusZeroWaitsForTheEngine) {
  auto layout = test::QueueLayout::contiguous(GuestAddress(0x10000), kQueueSize);
  test::MockQueue mq(mem_, layout);
  mq.set_event_idx(true);
  ASSERT_EQ(init_driver(layout) & VIRTIO_CONFIG_S_DRIVER_OK, uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  ASSERT_TRUE(mq.add_chain(read_request(0, 0)));
  ASSERT_TRUE(mq.add_chain(read_request(1, 100)));
  mq.publish();
  ASSERT_TRUE(mmio_->queue_notifies()[0].signal());
  ASSERT_TRUE(wait_submitted(2));

  std::atomic<bool> returned{false};
  std::thread driver([&] {
    wr(VIRTIO_MMIO_STATUS, 0);
    returned = true;
  });
  usleep(100000);
  EXPECT_FALSE(returned.load()) << "status 0 returned while the engine held 2 reads";
  fake_->complete(1);
  usleep(50000);
  EXPECT_FALSE(returned.load()) << "status 0 returned while the engine held 1 read";
  fake_->complete(0);
  driver.join();
  EXPECT_EQ(fake_->in_flight(), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  EXPECT_FALSE(mmio_->activated());
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
  EXPECT_EQ(mq.used_idx(), 0u) << "dropped requests are not pushed";
  EXPECT_EQ(*mem_.read_obj<uint8_t>(GuestAddress(kStatus)), 0xFF);
  EXPECT_EQ(*mem_.read_obj<uint8_t>(GuestAddress(kStatus + 1)), 0xFF);

  mq.reset();
  ASSERT_EQ(init_driver(layout) & VIRTIO_CONFIG_S_DRIVER_OK, uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  ASSERT_TRUE(mq.add_chain(read_request(2, 8)));
  mq.publish();
  ASSERT_TRUE(mmio_->queue_notifies()[0].signal());
  ASSERT_TRUE(wait_submitted(3));
  EXPECT_EQ(fake_->subs[2].offset, 8u * 512);
  fake_->complete(2);
  pollfd p{mmio_->interrupt_eventfd().fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1) << "no interrupt";
  auto used = mq.next_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 4097u);
  EXPECT_EQ(*mem_.read_obj<uint8_t>(GuestAddress(kStatus + 2)), VIRTIO_BLK_S_OK);
}

// A malformed chain (notes section B) reaching the running block device through the transport.
// `held` valid reads are offered (and held by the engine) before `setup` offers the bad chain.
struct BlkBadChainCase {
  const char* name;
  std::function<void(test::MockQueue&)> setup;
  uint64_t features_mask = ~uint64_t{0};
  size_t held = 0;
};

// Readable test parameters (instead of the bytes of the struct).
void PrintTo(const BlkBadChainCase& c, std::ostream* os) {
  *os << c.name;
}

constexpr uint16_t kN = kQueueSize;
constexpr uint64_t kH = kHdr, kS = kStatus, kD = kData, kT = kTable;
constexpr uint16_t kNext = VRING_DESC_F_NEXT, kW = VRING_DESC_F_WRITE;
constexpr uint16_t kInd = VRING_DESC_F_INDIRECT;

// A three-descriptor read chain from descriptor 0 with data buffer (addr, len).
void read_chain(test::MockQueue& mq, uint64_t addr, uint32_t len) {
  mq.write_desc(0, kH, 16, kNext, 1);
  mq.write_desc(1, addr, len, kNext | kW, 2);
  mq.write_desc(2, kS, 1, kW, 0);
  mq.offer(0);
}
// Descriptor 0 names an indirect table of `len` bytes at `table`, holding a valid read chain.
void indirect_chain(test::MockQueue& mq, uint64_t table, uint32_t len, uint16_t flags = kInd) {
  mq.write_desc(0, table, len, flags, 1);
  if (table == kT) {
    mq.write_table_desc(GuestAddress(kT), 0, kH, 16, kNext, 1);
    mq.write_table_desc(GuestAddress(kT), 1, kD, 4096, kNext | kW, 2);
    mq.write_table_desc(GuestAddress(kT), 2, kS, 1, kW, 0);
  }
  mq.offer(0);
}

// Too many in flight (in-flight >= queue size) cannot be reached through this device: it stops
// popping while its request pool (one slot per queue entry) is full. Its neighbour, a head that
// is already in flight, is covered instead.
const BlkBadChainCase kBlkBadChains[] = {
    {"zero_length_buffer", [](test::MockQueue& mq) { read_chain(mq, kD, 0); }},
    {"buffer_in_hole", [](test::MockQueue& mq) { read_chain(mq, test::kLowRamEnd, 4096); }},
    {"buffer_past_ram_end",
     [](test::MockQueue& mq) { read_chain(mq, test::kHighRamEnd - 512, 4096); }},
    {"buffer_address_wraps", [](test::MockQueue& mq) { read_chain(mq, ~uint64_t{0} - 511, 4096); }},
    {"readable_after_writable",
     [](test::MockQueue& mq) {
       mq.write_desc(0, kH, 16, kNext, 1);
       mq.write_desc(1, kS, 1, kNext | kW, 2);
       mq.write_desc(2, kD, 512, 0, 0);
       mq.offer(0);
     }},
    {"next_out_of_range",
     [](test::MockQueue& mq) {
       mq.write_desc(0, kH, 16, kNext, kN);
       mq.offer(0);
     }},
    {"loop",
     [](test::MockQueue& mq) {
       mq.write_desc(0, kH, 16, kNext, 1);
       mq.write_desc(1, kD, 512, kNext, 0);  // readable too: only the loop is wrong
       mq.offer(0);
     }},
    {"head_out_of_range", [](test::MockQueue& mq) { mq.offer(kN); }},
    {"head_0xffff", [](test::MockQueue& mq) { mq.offer(0xFFFF); }},
    {"avail_idx_jump", [](test::MockQueue& mq) { mq.set_avail_idx(kN + 1); }},
    {"avail_idx_jump_backwards", [](test::MockQueue& mq) { mq.set_avail_idx(0xFFFF); }},
    {"head_already_in_flight", [](test::MockQueue& mq) { mq.offer(0); }, ~uint64_t{0}, 1},
    {"no_status_byte",
     [](test::MockQueue& mq) {
       mq.write_desc(0, kH, 16, 0, 0);
       mq.offer(0);
     }},
    {"indirect_len_0", [](test::MockQueue& mq) { indirect_chain(mq, kT, 0); }},
    {"indirect_len_24", [](test::MockQueue& mq) { indirect_chain(mq, kT, 24); }},
    {"indirect_with_next", [](test::MockQueue& mq) { indirect_chain(mq, kT, 48, kInd | kNext); }},
    {"indirect_larger_than_queue",
     [](test::MockQueue& mq) { indirect_chain(mq, kT, 16 * (kN + 1)); }},
    {"indirect_table_in_hole",
     [](test::MockQueue& mq) { indirect_chain(mq, test::kLowRamEnd, 48); }},
    {"indirect_nested",
     [](test::MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kT + 0x100), 0, kT, 48, kInd, 0);
       indirect_chain(mq, kT + 0x100, 16);
     }},
    {"indirect_next_out_of_range",
     [](test::MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kT + 0x100), 0, kH, 16, kNext, 3);
       indirect_chain(mq, kT + 0x100, 48);
     }},
    {"indirect_not_negotiated", [](test::MockQueue& mq) { indirect_chain(mq, kT, 48); },
     ~(uint64_t{1} << VIRTIO_RING_F_INDIRECT_DESC)},
};

class BlkBadChainTest : public BlkMmioFakeTest,
                        public testing::WithParamInterface<BlkBadChainCase> {};

TEST_P(BlkBadChainTest, NeedsResetConfigInterruptAndNoGuestWrite) {
  const BlkBadChainCase& c = GetParam();
  auto layout = test::QueueLayout::contiguous(GuestAddress(0x10000), kQueueSize);
  test::MockQueue mq(mem_, layout);
  mq.set_event_idx(true);
  ASSERT_EQ(init_driver(layout, c.features_mask) & VIRTIO_CONFIG_S_DRIVER_OK,
            uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  for (size_t i = 0; i < c.held; ++i) ASSERT_TRUE(mq.add_chain(read_request(i, 8 * i)));
  if (c.held > 0) {
    mq.publish();
    ASSERT_TRUE(mmio_->queue_notifies()[0].signal());
    ASSERT_TRUE(wait_submitted(c.held));
  }
  // Canaries where a confused device might write: the data and status buffers the bad chains use.
  test::fill_guest(mem_, GuestAddress(kD), 4096, 0x5A);
  ASSERT_TRUE(mem_.write_obj(GuestAddress(kS), uint8_t{0xFF}));
  c.setup(mq);
  mq.publish();
  const std::vector<uint8_t> before = snapshot();
  ASSERT_TRUE(mmio_->queue_notifies()[0].signal());

  // The device sets NEEDS_RESET, then sends the config interrupt (spec 2.1.2): a driver learns
  // of it from the interrupt, so wait for that before reading the registers.
  pollfd irq{mmio_->interrupt_eventfd().fd(), POLLIN, 0};
  ASSERT_EQ(poll(&irq, 1, 5000), 1) << "no interrupt";
  ASSERT_TRUE(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK,
            uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  EXPECT_TRUE(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
  EXPECT_GE(*mmio_->interrupt_eventfd().consume(), 1u);
  EXPECT_EQ(fake_->submitted(), c.held) << "the bad chain reached the engine";
  EXPECT_EQ(mq.used_idx(), 0u);
  EXPECT_TRUE(snapshot() == before) << "the device wrote to guest RAM for a bad chain";

  // Held requests still finish; then the driver's recovery: reset, init, a good request.
  EXPECT_EQ(fake_->complete_pending(), c.held);
  (void)test::eventually([&] { return mq.used_idx() >= c.held; }, 5000);
  EXPECT_EQ(mq.used_idx(), c.held);
  wr(VIRTIO_MMIO_STATUS, 0);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  mq.reset();
  ASSERT_EQ(init_driver(layout) & VIRTIO_CONFIG_S_DRIVER_OK, uint32_t{VIRTIO_CONFIG_S_DRIVER_OK});
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0u);
  ASSERT_TRUE(mq.add_chain(read_request(0, 0)));
  mq.publish();
  ASSERT_TRUE(mmio_->queue_notifies()[0].signal());
  ASSERT_TRUE(wait_submitted(c.held + 1));
  fake_->complete(c.held);
  (void)test::eventually([&] { return mq.used_idx() >= 1; }, 5000);
  ASSERT_EQ(mq.used_idx(), 1u);
  EXPECT_EQ(*mem_.read_obj<uint8_t>(GuestAddress(kS)), VIRTIO_BLK_S_OK);
}

INSTANTIATE_TEST_SUITE_P(Malformed, BlkBadChainTest, testing::ValuesIn(kBlkBadChains),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kindling::virtio
