#include "virtio/mmio_transport.h"

#include <gtest/gtest.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>
#include <poll.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "tests/support/eventually.h"
#include "tests/support/log_capture.h"
#include "tests/support/mock_queue.h"
#include "tests/support/test_memory.h"
#include "tests/unit/virtio/echo_device.h"

namespace kindling::virtio {
namespace {

using fake::EchoDevice;
using fake::EchoProbe;
using kindling::test::ChainBuffer;
using kindling::test::MockQueue;
using kindling::test::QueueLayout;

constexpr uint64_t kVersion1 = 1ULL << VIRTIO_F_VERSION_1;
constexpr uint64_t kEventIdx = 1ULL << VIRTIO_RING_F_EVENT_IDX;
constexpr uint64_t kIndirect = 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
constexpr uint64_t kDevBit0 = 1ULL << 0;
constexpr uint64_t kOffered = kVersion1 | kEventIdx | kIndirect | kDevBit0;
constexpr uint32_t kAck = VIRTIO_CONFIG_S_ACKNOWLEDGE;
constexpr uint32_t kDriver = VIRTIO_CONFIG_S_DRIVER;
constexpr uint32_t kFeaturesOk = VIRTIO_CONFIG_S_FEATURES_OK;
constexpr uint32_t kDriverOk = VIRTIO_CONFIG_S_DRIVER_OK;
constexpr uint32_t kNeedsReset = VIRTIO_CONFIG_S_NEEDS_RESET;
constexpr uint64_t kRing0 = 0x10000;
constexpr uint64_t kRing1 = 0x20000;

using kindling::test::eventually;

// Waits up to 5 s for `fd` to become readable.
bool readable(const EventFd& fd) {
  pollfd p{fd.fd(), POLLIN, 0};
  return poll(&p, 1, 5000) == 1;
}

class TransportTest : public ::testing::Test {
 protected:
  TransportTest()
      : mem_(kindling::test::make_test_memory()),
        mq_(mem_, QueueLayout::contiguous(GuestAddress(kRing0), EchoDevice::kMaxSize)),
        alloc_(mem_, GuestAddress(0x100000), GuestAddress(kindling::test::kLowRamEnd)) {
    auto t = MmioTransport::create(mem_, std::make_unique<EchoDevice>(probe_, kOffered));
    EXPECT_TRUE(t) << t.error().message();
    t_ = std::move(*t);
  }

  uint32_t rd(uint64_t off, size_t width = 4) {
    uint8_t b[8] = {};
    t_->read(off, std::span<uint8_t>(b, width));
    uint64_t v = 0;
    std::memcpy(&v, b, width);
    return static_cast<uint32_t>(v);
  }
  void wr(uint64_t off, uint32_t v, size_t width = 4) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    t_->write(off, std::span<const uint8_t>(b, width));
  }
  // Status bits without the ones the device may add.
  uint32_t driver_status() { return rd(VIRTIO_MMIO_STATUS) & ~kNeedsReset; }

  // Driver init up to FEATURES_OK; returns whether the device kept FEATURES_OK.
  bool negotiate(uint64_t features) {
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, kAck);
    wr(VIRTIO_MMIO_STATUS, kAck | kDriver);
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features));
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features >> 32));
    wr(VIRTIO_MMIO_STATUS, kAck | kDriver | kFeaturesOk);
    return rd(VIRTIO_MMIO_STATUS) & kFeaturesOk;
  }
  void setup_queue(uint32_t index, const QueueLayout& l, bool ready = true) {
    wr(VIRTIO_MMIO_QUEUE_SEL, index);
    wr(VIRTIO_MMIO_QUEUE_NUM, l.size);
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(l.desc.value));
    wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, static_cast<uint32_t>(l.desc.value >> 32));
    wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, static_cast<uint32_t>(l.avail.value));
    wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, static_cast<uint32_t>(l.avail.value >> 32));
    wr(VIRTIO_MMIO_QUEUE_USED_LOW, static_cast<uint32_t>(l.used.value));
    wr(VIRTIO_MMIO_QUEUE_USED_HIGH, static_cast<uint32_t>(l.used.value >> 32));
    if (ready) wr(VIRTIO_MMIO_QUEUE_READY, 1);
  }
  void driver_ok() { wr(VIRTIO_MMIO_STATUS, driver_status() | kDriverOk); }
  // Full bring-up with queue 0 on mq_.
  void bring_up(uint64_t features = kOffered) {
    ASSERT_TRUE(negotiate(features));
    setup_queue(0, mq_.layout());
    mq_.set_event_idx(features & kEventIdx);
    driver_ok();
    ASSERT_TRUE(t_->activated());
  }
  ChainBuffer buf(uint32_t len, bool writable) {
    return ChainBuffer{alloc_.alloc(len), len, writable};
  }
  // Offers an echo request of `payload` and kicks through the MMIO register.
  GuestAddress echo(std::span<const uint8_t> payload) {
    ChainBuffer bufs[] = {ChainBuffer{alloc_.alloc_copy(payload), uint32_t(payload.size()), false},
                          buf(uint32_t(payload.size()), true)};
    EXPECT_TRUE(mq_.add_chain(bufs));
    mq_.publish();
    wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return bufs[1].addr;
  }

  GuestMemory mem_;
  MockQueue mq_;
  kindling::test::GuestAllocator alloc_;
  EchoProbe probe_;
  std::unique_ptr<MmioTransport> t_;
};

TEST_F(TransportTest, IdentityRegisters) {
  EXPECT_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976u);  // "virt"
  EXPECT_EQ(rd(VIRTIO_MMIO_VERSION), 2u);
  EXPECT_EQ(rd(VIRTIO_MMIO_DEVICE_ID), EchoDevice::kType);
  EXPECT_EQ(rd(VIRTIO_MMIO_VENDOR_ID), kMmioVendorId);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
  // No shared memory regions: length -1.
  EXPECT_EQ(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xFFFFFFFFu);
  EXPECT_EQ(rd(VIRTIO_MMIO_SHM_LEN_HIGH), 0xFFFFFFFFu);
  // Write-only registers read as zero.
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_NOTIFY), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_DRIVER_FEATURES), 0u);
}

TEST_F(TransportTest, DeviceFeatureWindows) {
  const struct {
    uint32_t sel;
    uint32_t want;
  } cases[] = {{0, static_cast<uint32_t>(kOffered)},
               {1, static_cast<uint32_t>(kOffered >> 32)},
               {2, 0},
               {0xffffffff, 0}};
  for (const auto& c : cases) {
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, c.sel);
    EXPECT_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), c.want) << c.sel;
  }
  EXPECT_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0u);
}

TEST_F(TransportTest, NarrowOrUnalignedRegisterAccessesAreIgnored) {
  EXPECT_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE, 2), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE + 1, 4), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE, 1), 0u);
  wr(VIRTIO_MMIO_STATUS, kAck, 1);
  wr(VIRTIO_MMIO_STATUS + 2, kAck, 2);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  wr(VIRTIO_MMIO_STATUS, kAck);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), kAck);
}

struct FeatureCase {
  const char* name;
  uint64_t accepted;
  bool ok;
};

const FeatureCase kFeatureCases[] = {
    {"everything_offered", kOffered, true},
    {"version1_only", kVersion1, true},
    {"subset", kVersion1 | kEventIdx, true},
    {"not_offered_low_bit", kOffered | (1ULL << 5), false},
    {"not_offered_high_bit", kOffered | (1ULL << 40), false},
    {"no_version1", kEventIdx | kIndirect, false},
    {"nothing", 0, false},
};

class FeaturesOkTest : public TransportTest, public ::testing::WithParamInterface<FeatureCase> {};

TEST_P(FeaturesOkTest, RefusesWhatWasNotOffered) {
  const FeatureCase& c = GetParam();
  EXPECT_EQ(negotiate(c.accepted), c.ok);
  // The other bits stay as the driver wrote them.
  EXPECT_EQ(driver_status() & (kAck | kDriver), kAck | kDriver);
  if (!c.ok) {
    // DRIVER_OK without FEATURES_OK does not activate.
    setup_queue(0, mq_.layout());
    driver_ok();
    EXPECT_FALSE(t_->activated());
    EXPECT_EQ(probe_.activations, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Negotiation, FeaturesOkTest, ::testing::ValuesIn(kFeatureCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(TransportTest, DriverFeaturesAreFrozenAfterFeaturesOk) {
  ASSERT_TRUE(negotiate(kVersion1));
  wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  wr(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(kEventIdx | kIndirect));
  setup_queue(0, mq_.layout());
  driver_ok();
  ASSERT_TRUE(t_->activated());
  EXPECT_EQ(probe_.features, kVersion1);
  EXPECT_FALSE(probe_.event_idx);
  EXPECT_FALSE(probe_.indirect);
}

TEST_F(TransportTest, NegotiatedRingFeaturesReachTheQueues) {
  bring_up(kVersion1 | kEventIdx | kIndirect);
  EXPECT_EQ(probe_.features, kVersion1 | kEventIdx | kIndirect);
  EXPECT_TRUE(probe_.event_idx);
  EXPECT_TRUE(probe_.indirect);
}

TEST_F(TransportTest, QueueNumMaxIsZeroForAbsentQueues) {
  for (uint32_t sel = 0; sel < EchoDevice::kQueues; ++sel) {
    wr(VIRTIO_MMIO_QUEUE_SEL, sel);
    EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), EchoDevice::kMaxSize);
  }
  for (uint32_t sel : {2u, 100u, 0xffffffffu}) {
    wr(VIRTIO_MMIO_QUEUE_SEL, sel);
    EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0u);
    wr(VIRTIO_MMIO_QUEUE_READY, 1);  // ignored, no crash
    EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0u);
  }
}

TEST_F(TransportTest, QueueRegistersAreIgnoredWhileReady) {
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, mq_.layout());
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 1u);
  // Moving a ready queue's rings is ignored: the queue still works on the original layout.
  wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x200000);
  wr(VIRTIO_MMIO_QUEUE_NUM, 4);
  mq_.set_event_idx(true);
  driver_ok();
  ASSERT_TRUE(t_->activated());
  const uint8_t payload[] = {1, 2, 3, 4};
  GuestAddress out = echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.completed == 1; }));
  EXPECT_EQ(kindling::test::read_guest(mem_, out, 4), std::vector<uint8_t>(payload, payload + 4));
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & kNeedsReset, 0u);
}

TEST_F(TransportTest, QueueRegistersAreIgnoredAfterDriverOk) {
  bring_up();
  wr(VIRTIO_MMIO_QUEUE_SEL, 1);
  setup_queue(1, QueueLayout::contiguous(GuestAddress(kRing1), EchoDevice::kMaxSize));
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0u);
  // Moving the running queue's rings is ignored too.
  wr(VIRTIO_MMIO_QUEUE_SEL, 0);
  wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x200000);
  const uint8_t payload[] = {5, 6};
  GuestAddress out = echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.completed == 1; }));
  EXPECT_EQ(kindling::test::read_guest(mem_, out, 2), std::vector<uint8_t>(payload, payload + 2));
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 1u);
}

TEST_F(TransportTest, QueueReadyZeroAfterDriverOkStopsTheDevice) {
  bring_up();
  probe_.delay_ms = 300;
  const uint8_t payload[] = {1, 2, 3};
  echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.popped == 1; }));
  wr(VIRTIO_MMIO_QUEUE_SEL, 0);
  wr(VIRTIO_MMIO_QUEUE_READY, 0);
  // The write returned after the chain in flight finished; the queue reads back 0.
  EXPECT_EQ(probe_.completed, 1);
  EXPECT_FALSE(probe_.running);
  EXPECT_FALSE(t_->activated());
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0u);
  EXPECT_EQ(driver_status() & kDriverOk, kDriverOk);
  // Re-enabling it without a reset is ignored, and new requests are not processed.
  wr(VIRTIO_MMIO_QUEUE_READY, 1);
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0u);
  probe_.delay_ms = 0;
  echo(payload);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(probe_.popped, 1);
  // A reset and a new bring-up make the device work again.
  wr(VIRTIO_MMIO_STATUS, 0);
  mq_.reset();
  bring_up();
  EXPECT_EQ(probe_.activations, 2);
  GuestAddress out = echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.completed == 2; }));
  EXPECT_EQ(kindling::test::read_guest(mem_, out, 3), std::vector<uint8_t>(payload, payload + 3));
}

struct BadQueueCase {
  const char* name;
  std::function<void(QueueLayout&)> edit;
};

const BadQueueCase kBadQueues[] = {
    {"size_not_power_of_two", [](QueueLayout& l) { l.size = 12; }},
    {"size_above_max", [](QueueLayout& l) { l.size = 32; }},
    {"size_zero", [](QueueLayout& l) { l.size = 0; }},
    {"desc_outside_ram", [](QueueLayout& l) { l.desc = GuestAddress(kindling::test::kLowRamEnd); }},
    {"used_above_4g", [](QueueLayout& l) { l.used = GuestAddress(0x1'0000'0000ULL); }},
    {"avail_misaligned", [](QueueLayout& l) { l.avail = l.avail + 1; }},
};

class BadQueueTest : public TransportTest, public ::testing::WithParamInterface<BadQueueCase> {};

TEST_P(BadQueueTest, DriverOkWithBadQueueNeedsReset) {
  ASSERT_TRUE(negotiate(kOffered));
  QueueLayout l = mq_.layout();
  GetParam().edit(l);
  setup_queue(0, l);
  driver_ok();
  EXPECT_FALSE(t_->activated());
  EXPECT_EQ(probe_.activations, 0);
  EXPECT_TRUE(rd(VIRTIO_MMIO_STATUS) & kNeedsReset);
  EXPECT_TRUE(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
  EXPECT_EQ(*t_->interrupt_eventfd().consume(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Setup, BadQueueTest, ::testing::ValuesIn(kBadQueues),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(TransportTest, QueueNotifyWriteSignalsTheQueueEventFd) {
  auto n = t_->queue_notifies();
  ASSERT_EQ(n.size(), EchoDevice::kQueues);
  wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
  wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
  wr(VIRTIO_MMIO_QUEUE_NOTIFY, 7);  // absent queue: ignored
  EXPECT_EQ(*n[0].consume(), 0u);
  EXPECT_EQ(*n[1].consume(), 2u);
}

TEST_F(TransportTest, EchoRoundTripRaisesUsedInterruptAndAckClearsIt) {
  bring_up();
  const uint8_t payload[] = {9, 8, 7, 6, 5};
  GuestAddress out = echo(payload);
  ASSERT_TRUE(readable(t_->interrupt_eventfd()));
  EXPECT_GE(*t_->interrupt_eventfd().consume(), 1u);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), uint32_t{VIRTIO_MMIO_INT_VRING});
  auto used = mq_.next_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 5u);
  EXPECT_EQ(kindling::test::read_guest(mem_, out, 5), std::vector<uint8_t>(payload, payload + 5));
  wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
}

TEST_F(TransportTest, InterruptAckClearsOnlyTheWrittenBits) {
  t_->signal_used();
  t_->signal_config();
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
            uint32_t{VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG});
  EXPECT_EQ(*t_->interrupt_eventfd().consume(), 2u);
  wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), uint32_t{VIRTIO_MMIO_INT_VRING});
  wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
}

TEST_F(TransportTest, ConfigGenerationChangesWithConfig) {
  uint32_t g0 = rd(VIRTIO_MMIO_CONFIG_GENERATION);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG_GENERATION), g0);
  t_->signal_config();
  EXPECT_NE(rd(VIRTIO_MMIO_CONFIG_GENERATION), g0);
  // A NEEDS_RESET config interrupt is not a config change.
  uint32_t g1 = rd(VIRTIO_MMIO_CONFIG_GENERATION);
  t_->mark_needs_reset();
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG_GENERATION), g1);
}

TEST_F(TransportTest, ConfigSpaceAccessWidths) {
  for (int i = 0; i < 16; ++i) probe_.config[i] = static_cast<uint8_t>(0x10 + i);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG + 0, 1), 0x10u);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG + 3, 1), 0x13u);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG + 2, 2), 0x1312u);
  EXPECT_EQ(rd(VIRTIO_MMIO_CONFIG + 4, 4), 0x17161514u);
  // An 8-byte read is served as two 4-byte halves.
  uint8_t b8[8];
  t_->read(VIRTIO_MMIO_CONFIG + 8, b8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b8[i], 0x18 + i);
  // Odd widths are ignored and read as zero.
  uint8_t b3[3] = {0xff, 0xff, 0xff};
  t_->read(VIRTIO_MMIO_CONFIG, b3);
  EXPECT_EQ(b3[0] | b3[1] | b3[2], 0);
  // Writes are forwarded to the device (byte 12 is its only writable byte).
  wr(VIRTIO_MMIO_CONFIG + 12, 0xAA, 1);
  EXPECT_EQ(probe_.config[12], 0xAA);
  wr(VIRTIO_MMIO_CONFIG + 11, 0x5555, 2);
  EXPECT_EQ(probe_.config[11], 0x1B);
  EXPECT_EQ(probe_.config[12], 0x55);
}

TEST_F(TransportTest, StatusBitsCannotBeClearedExceptByReset) {
  ASSERT_TRUE(negotiate(kOffered));
  wr(VIRTIO_MMIO_STATUS, kAck);  // drops DRIVER and FEATURES_OK: ignored
  EXPECT_EQ(driver_status(), kAck | kDriver | kFeaturesOk);
  wr(VIRTIO_MMIO_STATUS, kAck | kDriver | kFeaturesOk | VIRTIO_CONFIG_S_FAILED);
  EXPECT_EQ(driver_status(), kAck | kDriver | kFeaturesOk | VIRTIO_CONFIG_S_FAILED);
  // DRIVER_OK after FAILED does not activate.
  setup_queue(0, mq_.layout());
  driver_ok();
  EXPECT_FALSE(t_->activated());
}

TEST_F(TransportTest, ResetClearsEverything) {
  bring_up();
  t_->signal_used();
  wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  wr(VIRTIO_MMIO_QUEUE_SEL, 1);
  wr(VIRTIO_MMIO_STATUS, 0);
  EXPECT_FALSE(t_->activated());
  EXPECT_FALSE(probe_.running);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
  EXPECT_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), static_cast<uint32_t>(kOffered));  // sel back to 0
  EXPECT_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0u);                                   // queue 0 reset
  // Negotiated features are gone: writing only the low window leaves VERSION_1 (bit 32) clear.
  wr(VIRTIO_MMIO_STATUS, kAck | kDriver);
  wr(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(kEventIdx));
  wr(VIRTIO_MMIO_STATUS, kAck | kDriver | kFeaturesOk);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & kFeaturesOk, 0u);
  ASSERT_TRUE(negotiate(kVersion1));
  setup_queue(0, mq_.layout());
  driver_ok();
  EXPECT_TRUE(t_->activated());
  EXPECT_EQ(probe_.activations, 2);
}

TEST_F(TransportTest, ResetWaitsForInFlightIo) {
  bring_up();
  probe_.delay_ms = 300;
  const uint8_t payload[] = {1, 2, 3};
  echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.popped == 1; }));
  EXPECT_EQ(probe_.completed, 0);
  auto start = std::chrono::steady_clock::now();
  wr(VIRTIO_MMIO_STATUS, 0);
  auto waited = std::chrono::steady_clock::now() - start;
  // The reset returned only after the device finished the chain it was working on.
  EXPECT_EQ(probe_.completed, 1);
  EXPECT_FALSE(probe_.running);
  EXPECT_GE(waited, std::chrono::milliseconds(100));
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
}

TEST_F(TransportTest, ShutdownStopsTheDevice) {
  bring_up();
  t_->shutdown();
  EXPECT_FALSE(probe_.running);
  EXPECT_FALSE(t_->activated());
  t_.reset();  // destructor after shutdown is fine
  EXPECT_GE(probe_.resets, 2);
}

TEST_F(TransportTest, ActivateFailureNeedsReset) {
  probe_.fail_activate = true;
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, mq_.layout());
  driver_ok();
  EXPECT_FALSE(t_->activated());
  EXPECT_TRUE(rd(VIRTIO_MMIO_STATUS) & kNeedsReset);
  EXPECT_TRUE(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
}

// Malformed chains reaching a running device: NEEDS_RESET + config interrupt, and the
// transport keeps working (a reset brings the device back).
struct BadChainCase {
  const char* name;
  std::function<void(MockQueue&)> setup;
};

constexpr uint64_t kBuf = 0x100000;
const BadChainCase kBadChains[] = {
    {"loop",
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 8, VRING_DESC_F_NEXT, 0);
       mq.offer(0);
     }},
    {"head_out_of_range", [](MockQueue& mq) { mq.offer(EchoDevice::kMaxSize); }},
    {"buffer_in_hole",
     [](MockQueue& mq) {
       mq.write_desc(0, kindling::test::kLowRamEnd, 8, 0, 0);
       mq.offer(0);
     }},
    {"indirect_len_24",
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 24, VRING_DESC_F_INDIRECT, 0);
       mq.offer(0);
     }},
    {"avail_idx_jump", [](MockQueue& mq) { mq.set_avail_idx(1000); }},
};

class BadChainTransportTest : public TransportTest,
                              public ::testing::WithParamInterface<BadChainCase> {};

TEST_P(BadChainTransportTest, NeedsResetAndConfigInterrupt) {
  bring_up();
  GetParam().setup(mq_);
  mq_.publish();
  wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
  // The device sets NEEDS_RESET, then sends the config interrupt (spec 2.1.2): a driver learns
  // of it from the interrupt, so wait for that before reading the registers.
  ASSERT_TRUE(readable(t_->interrupt_eventfd()));
  EXPECT_TRUE(rd(VIRTIO_MMIO_STATUS) & kNeedsReset);
  EXPECT_TRUE(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
  EXPECT_GE(*t_->interrupt_eventfd().consume(), 1u);
  EXPECT_EQ(probe_.completed, 0);
  // The driver's recovery: reset and start again with fresh rings.
  wr(VIRTIO_MMIO_STATUS, 0);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS), 0u);
  mq_.reset();
  bring_up();
  const uint8_t payload[] = {42};
  echo(payload);
  ASSERT_TRUE(eventually([&] { return probe_.completed == 1; }));
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & kNeedsReset, 0u);
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadChainTransportTest, ::testing::ValuesIn(kBadChains),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(TransportCreate, RejectsUnusableDevices) {
  GuestMemory mem = kindling::test::make_test_memory();
  EchoProbe probe;
  auto no_version1 = MmioTransport::create(mem, std::make_unique<EchoDevice>(probe, kEventIdx));
  ASSERT_FALSE(no_version1);
  EXPECT_EQ(no_version1.error().code, TransportError::kBadDevice);
  auto null_dev = MmioTransport::create(mem, nullptr);
  EXPECT_FALSE(null_dev);
}

// A driver thread and the device's I/O thread race on the rings for many requests, with kick
// and interrupt suppression on: every request completes with its own data and nobody waits
// forever (a lost kick or interrupt would time out the poll).
class ConcurrentEchoTest : public TransportTest, public ::testing::WithParamInterface<bool> {};

TEST_P(ConcurrentEchoTest, NoLostKicksOrInterrupts) {
  const bool event_idx = GetParam();
  bring_up(event_idx ? kOffered : kVersion1);
  constexpr int kRequests = 50000;
  constexpr uint16_t kDepth = EchoDevice::kMaxSize / 2;  // two descriptors per request
  // Each in-flight request owns a slot: an 8-byte out buffer and an 8-byte in buffer.
  GuestAddress out[kDepth], in[kDepth];
  uint64_t seq_of[kDepth] = {};
  std::vector<uint16_t> free_slots;
  for (uint16_t i = 0; i < kDepth; ++i) {
    out[i] = alloc_.alloc(8);
    in[i] = alloc_.alloc(8);
    free_slots.push_back(i);
  }
  uint16_t slot_of_head[EchoDevice::kMaxSize] = {};
  uint64_t sent = 0, done = 0;
  int kicks = 0, waits = 0;
  while (done < kRequests) {
    while (!free_slots.empty() && sent < kRequests) {
      uint16_t slot = free_slots.back();
      free_slots.pop_back();
      ++sent;
      seq_of[slot] = sent;
      kindling::test::write_guest(mem_, out[slot], std::span(reinterpret_cast<uint8_t*>(&sent), 8));
      ChainBuffer chain[] = {ChainBuffer{out[slot], 8, false}, ChainBuffer{in[slot], 8, true}};
      auto head = mq_.add_chain(chain);
      ASSERT_TRUE(head);
      slot_of_head[*head] = slot;
    }
    mq_.publish();
    if (mq_.needs_kick()) {
      wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
      ++kicks;
    }
    bool got = false;
    while (auto u = mq_.next_used()) {
      ASSERT_LT(u->id, EchoDevice::kMaxSize);
      ASSERT_EQ(u->len, 8u);
      uint16_t slot = slot_of_head[u->id];
      uint64_t echoed;
      ASSERT_TRUE(mem_.read(in[slot], std::span(reinterpret_cast<uint8_t*>(&echoed), 8)));
      ASSERT_EQ(echoed, seq_of[slot]);
      free_slots.push_back(slot);
      ++done;
      got = true;
    }
    if (got) continue;
    if (mq_.enable_interrupts()) continue;
    ASSERT_TRUE(readable(t_->interrupt_eventfd())) << "lost interrupt after " << done;
    (void)t_->interrupt_eventfd().consume();
    wr(VIRTIO_MMIO_INTERRUPT_ACK, rd(VIRTIO_MMIO_INTERRUPT_STATUS));
    if (!event_idx) mq_.disable_interrupts();
    ++waits;
  }
  EXPECT_EQ(probe_.completed, kRequests);
  EXPECT_EQ(rd(VIRTIO_MMIO_STATUS) & kNeedsReset, 0u);
  // Suppression works: far fewer kicks than requests.
  EXPECT_LT(kicks, kRequests);
  RecordProperty("kicks", kicks);
  RecordProperty("waits", waits);
}

INSTANTIATE_TEST_SUITE_P(Suppression, ConcurrentEchoTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "event_idx" : "flags"; });

// Every register access a driver gets wrong is logged, but a guest repeating one in a loop
// gets a few lines, not one per access (and the lines come back once the flood is old).
TEST_F(TransportTest, GuestErrorsCannotFloodTheLog) {
  size_t bad = test::count_log_lines(log::Level::kWarn, "virtio-mmio: ignoring", [&] {
    for (int i = 0; i < 1000; ++i) rd(VIRTIO_MMIO_STATUS, 2);  // registers are 32-bit only
  });
  EXPECT_GT(bad, 0u);
  EXPECT_LE(bad, log::RateLimit::kDefaultBurst);
  size_t notify = test::count_log_lines(log::Level::kDebug, "notify for absent queue", [&] {
    for (int i = 0; i < 1000; ++i) wr(VIRTIO_MMIO_QUEUE_NOTIFY, 7);
  });
  EXPECT_GT(notify, 0u);
  EXPECT_LE(notify, log::RateLimit::kDefaultBurst);
  size_t clear = test::count_log_lines(log::Level::kWarn, "tried to clear status bits", [&] {
    wr(VIRTIO_MMIO_STATUS, 0);
    wr(VIRTIO_MMIO_STATUS, kAck | kDriver);
    for (int i = 0; i < 1000; ++i) wr(VIRTIO_MMIO_STATUS, kAck);
  });
  EXPECT_GT(clear, 0u);
  EXPECT_LE(clear, log::RateLimit::kDefaultBurst);
}

}  // namespace
}  // namespace kindling::virtio
