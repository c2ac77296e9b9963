#include "virtio/queue.h"

#include <gtest/gtest.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>

#include <functional>
#include <limits>
#include <string>

#include "tests/support/mock_queue.h"
#include "tests/support/test_memory.h"

namespace kindling::virtio {
namespace {

using test::ChainBuffer;
using test::MockQueue;
using test::QueueLayout;

constexpr uint16_t kSize = 16;
constexpr uint64_t kRingBase = 0x10000;
constexpr uint64_t kDataBase = 0x100000;
constexpr uint64_t kTableBase = 0x80000;  // indirect tables

class QueueTest : public ::testing::Test {
 protected:
  QueueTest()
      : mem_(test::make_test_memory()),
        mq_(mem_, QueueLayout::contiguous(GuestAddress(kRingBase), kSize)),
        alloc_(mem_, GuestAddress(kDataBase), GuestAddress(test::kLowRamEnd)) {}

  void configure(bool event_idx = false, bool indirect = false) {
    mq_.configure(q_, event_idx, indirect);
    ASSERT_TRUE(q_.is_valid(mem_));
  }
  ChainBuffer buf(uint32_t len, bool writable) {
    return ChainBuffer{alloc_.alloc(len), len, writable};
  }

  GuestMemory mem_;
  MockQueue mq_;
  test::GuestAllocator alloc_;
  Queue q_{kSize};
  QueueElement elem_;
};

TEST_F(QueueTest, EmptyRingPopsNothing) {
  configure();
  auto r = q_.pop(mem_, elem_);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(*r);
}

TEST_F(QueueTest, NotReadyQueueRefusesEverything) {
  auto r = q_.pop(mem_, elem_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, QueueError::kNotReady);
  EXPECT_FALSE(q_.push(mem_, 0, 0));
}

TEST_F(QueueTest, PopsDirectChainWithHostViews) {
  configure();
  ChainBuffer bufs[] = {buf(16, false), buf(100, false), buf(512, true), buf(1, true)};
  test::fill_guest(mem_, bufs[1].addr, 100, 0xAB);
  auto head = mq_.add_chain(bufs);
  ASSERT_TRUE(head);
  mq_.publish();

  auto r = q_.pop(mem_, elem_);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(*r);
  EXPECT_EQ(elem_.head, *head);
  ASSERT_EQ(elem_.out_iov.size(), 2u);
  ASSERT_EQ(elem_.in_iov.size(), 2u);
  EXPECT_EQ(elem_.out_bytes, 116u);
  EXPECT_EQ(elem_.in_bytes, 513u);
  EXPECT_EQ(elem_.out_iov[1].iov_len, 100u);
  EXPECT_EQ(static_cast<uint8_t*>(elem_.out_iov[1].iov_base)[99], 0xAB);
  // The writable view aliases guest memory.
  static_cast<uint8_t*>(elem_.in_iov[0].iov_base)[0] = 0x5A;
  EXPECT_EQ(test::read_guest(mem_, bufs[2].addr, 1)[0], 0x5A);
  EXPECT_EQ(q_.in_flight(), 1);

  ASSERT_TRUE(q_.push(mem_, elem_.head, 513));
  EXPECT_EQ(q_.in_flight(), 0);
  auto used = mq_.next_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->id, *head);
  EXPECT_EQ(used->len, 513u);
  EXPECT_EQ(mq_.free_descriptors(), kSize);
}

TEST_F(QueueTest, PopsIndirectChain) {
  configure(false, true);
  ChainBuffer bufs[] = {buf(16, false), buf(4096, true), buf(1, true)};
  auto head = mq_.add_indirect_chain(bufs, GuestAddress(kTableBase));
  ASSERT_TRUE(head);
  mq_.publish();
  auto r = q_.pop(mem_, elem_);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(*r);
  EXPECT_EQ(elem_.out_iov.size(), 1u);
  EXPECT_EQ(elem_.in_iov.size(), 2u);
  EXPECT_EQ(elem_.in_bytes, 4097u);
  EXPECT_EQ(mq_.free_descriptors(), kSize - 1);
  ASSERT_TRUE(q_.push(mem_, elem_.head, 4097));
  ASSERT_TRUE(mq_.next_used());
  EXPECT_EQ(mq_.free_descriptors(), kSize);
}

TEST_F(QueueTest, IndirectTableAsLongAsTheQueue) {
  configure(false, true);
  std::vector<ChainBuffer> bufs;
  for (int i = 0; i < kSize; ++i) bufs.push_back(buf(8, i >= kSize / 2));
  ASSERT_TRUE(mq_.add_indirect_chain(bufs, GuestAddress(kTableBase)));
  mq_.publish();
  auto r = q_.pop(mem_, elem_);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(elem_.out_iov.size() + elem_.in_iov.size(), size_t{kSize});
}

TEST_F(QueueTest, UsedRingOutsideRamFailsPush) {
  configure();
  ChainBuffer b[] = {buf(8, true)};
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  ASSERT_TRUE(*q_.pop(mem_, elem_));
  // Not reachable through the transport (is_valid() runs first); push() still checks.
  q_.set_used_ring(GuestAddress(test::kLowRamEnd - 8));
  auto r = q_.push(mem_, elem_.head, 8);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, QueueError::kOutOfRam);
}

TEST_F(QueueTest, DirectDescriptorsFollowedByIndirectTable) {
  // Spec 2.7.5.3.2: zero or more normal descriptors followed by one indirect descriptor.
  configure(false, true);
  ChainBuffer hdr = buf(16, false);
  ChainBuffer data = buf(512, true);
  mq_.write_table_desc(GuestAddress(kTableBase), 0, data.addr.value, 512, VRING_DESC_F_WRITE, 0);
  mq_.write_desc(0, hdr.addr.value, 16, VRING_DESC_F_NEXT, 1);
  mq_.write_desc(1, kTableBase, 16, VRING_DESC_F_INDIRECT, 0);
  mq_.offer(0);
  mq_.publish();
  auto r = q_.pop(mem_, elem_);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(elem_.out_bytes, 16u);
  EXPECT_EQ(elem_.in_bytes, 512u);
}

TEST_F(QueueTest, IndicesWrapAround65535) {
  configure(true, true);
  mq_.set_indirect_pool(GuestAddress(kTableBase), 4);
  ChainBuffer bufs[] = {buf(8, false), buf(8, true)};
  // 70,000 chains through a 16-entry ring: avail.idx and used.idx both wrap.
  for (uint32_t i = 0; i < 70000; ++i) {
    auto head = (i % 2) ? mq_.add_indirect_chain(bufs) : mq_.add_chain(bufs);
    ASSERT_TRUE(head);
    mq_.publish();
    auto r = q_.pop(mem_, elem_);
    ASSERT_TRUE(r && *r) << i;
    ASSERT_EQ(elem_.head, *head);
    ASSERT_TRUE(q_.push(mem_, elem_.head, i & 0xff));
    auto used = mq_.next_used();
    ASSERT_TRUE(used);
    ASSERT_EQ(used->id, *head);
    ASSERT_EQ(used->len, i & 0xff);
  }
  EXPECT_EQ(q_.last_avail_idx(), static_cast<uint16_t>(70000));
  EXPECT_EQ(mq_.used_idx(), static_cast<uint16_t>(70000));
}

TEST_F(QueueTest, FillsTheWholeRingThenDrains) {
  configure();
  ChainBuffer b[] = {buf(8, true)};
  for (int i = 0; i < kSize; ++i) ASSERT_TRUE(mq_.add_chain(b));
  EXPECT_FALSE(mq_.add_chain(b));
  mq_.publish();
  std::vector<uint16_t> heads;
  for (int i = 0; i < kSize; ++i) {
    auto r = q_.pop(mem_, elem_);
    ASSERT_TRUE(r && *r);
    heads.push_back(elem_.head);
  }
  EXPECT_EQ(q_.in_flight(), kSize);
  // Complete out of order.
  for (auto it = heads.rbegin(); it != heads.rend(); ++it) ASSERT_TRUE(q_.push(mem_, *it, 8));
  int n = 0;
  while (mq_.next_used()) ++n;
  EXPECT_EQ(n, kSize);
  EXPECT_EQ(mq_.free_descriptors(), kSize);
}

// --- malformed chains: each setup produces exactly one QueueError on pop() ---

struct BadChain {
  const char* name;
  bool indirect_negotiated;
  std::function<void(MockQueue&)> setup;
  QueueError want;
};

constexpr uint64_t kBuf = kDataBase;
constexpr uint64_t kTbl = kTableBase;
constexpr uint16_t N = VRING_DESC_F_NEXT;
constexpr uint16_t W = VRING_DESC_F_WRITE;
constexpr uint16_t I = VRING_DESC_F_INDIRECT;

void one(MockQueue& mq, uint64_t addr, uint32_t len, uint16_t flags = 0) {
  mq.write_desc(0, addr, len, flags, 0);
  mq.offer(0);
  mq.publish();
}

const BadChain kBadChains[] = {
    {"looping_chain", false,
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 8, N, 1);
       mq.write_desc(1, kBuf, 8, N, 0);
       mq.offer(0);
       mq.publish();
     },
     QueueError::kChainLoop},
    {"self_loop", false,
     [](MockQueue& mq) {
       mq.write_desc(3, kBuf, 8, N, 3);
       mq.offer(3);
       mq.publish();
     },
     QueueError::kChainLoop},
    {"next_out_of_range", false,
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 8, N, kSize);
       mq.offer(0);
       mq.publish();
     },
     QueueError::kNextOutOfRange},
    {"head_out_of_range", false,
     [](MockQueue& mq) {
       mq.offer(kSize);
       mq.publish();
     },
     QueueError::kHeadOutOfRange},
    {"head_0xffff", false,
     [](MockQueue& mq) {
       mq.offer(0xffff);
       mq.publish();
     },
     QueueError::kHeadOutOfRange},
    {"avail_idx_jump", false, [](MockQueue& mq) { mq.set_avail_idx(kSize + 1); },
     QueueError::kAvailIdxJump},
    {"avail_idx_backwards", false, [](MockQueue& mq) { mq.set_avail_idx(0xffff); },
     QueueError::kAvailIdxJump},
    {"zero_length", false, [](MockQueue& mq) { one(mq, kBuf, 0); }, QueueError::kZeroLength},
    {"zero_length_writable", false, [](MockQueue& mq) { one(mq, kBuf, 0, W); },
     QueueError::kZeroLength},
    {"buffer_in_hole", false, [](MockQueue& mq) { one(mq, test::kLowRamEnd + 0x1000, 8); },
     QueueError::kOutOfRam},
    {"buffer_across_hole", false, [](MockQueue& mq) { one(mq, test::kLowRamEnd - 0x800, 0x1000); },
     QueueError::kOutOfRam},
    {"buffer_past_end", false, [](MockQueue& mq) { one(mq, test::kHighRamEnd - 8, 16, W); },
     QueueError::kOutOfRam},
    {"buffer_wraps_address_space", false,
     [](MockQueue& mq) { one(mq, std::numeric_limits<uint64_t>::max() - 4, 16); },
     QueueError::kOutOfRam},
    {"readable_after_writable", false,
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 8, N | W, 1);
       mq.write_desc(1, kBuf + 8, 8, 0, 0);
       mq.offer(0);
       mq.publish();
     },
     QueueError::kReadableAfterWritable},
    {"indirect_not_negotiated", false, [](MockQueue& mq) { one(mq, kTbl, 16, I); },
     QueueError::kBadIndirect},
    {"indirect_len_0", true, [](MockQueue& mq) { one(mq, kTbl, 0, I); }, QueueError::kBadIndirect},
    {"indirect_len_not_multiple_of_16", true, [](MockQueue& mq) { one(mq, kTbl, 24, I); },
     QueueError::kBadIndirect},
    {"indirect_with_next", true,
     [](MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kTbl), 0, kBuf, 8, 0, 0);
       mq.write_desc(0, kTbl, 16, I | N, 1);
       mq.write_desc(1, kBuf, 8, 0, 0);
       mq.offer(0);
       mq.publish();
     },
     QueueError::kBadIndirect},
    {"indirect_longer_than_queue", true, [](MockQueue& mq) { one(mq, kTbl, 16 * (kSize + 1), I); },
     QueueError::kBadIndirect},
    {"nested_indirect", true,
     [](MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kTbl), 0, kTbl + 0x100, 16, I, 0);
       mq.write_table_desc(GuestAddress(kTbl + 0x100), 0, kBuf, 8, 0, 0);
       one(mq, kTbl, 16, I);
     },
     QueueError::kBadIndirect},
    {"indirect_table_in_hole", true, [](MockQueue& mq) { one(mq, test::kLowRamEnd, 32, I); },
     QueueError::kOutOfRam},
    {"indirect_next_outside_table", true,
     [](MockQueue& mq) {
       // Entry 1 links to 2, but the table holds only 2 entries (len 32).
       mq.write_table_desc(GuestAddress(kTbl), 0, kBuf, 8, N, 1);
       mq.write_table_desc(GuestAddress(kTbl), 1, kBuf, 8, N, 2);
       mq.write_table_desc(GuestAddress(kTbl), 2, kBuf, 8, 0, 0);
       one(mq, kTbl, 32, I);
     },
     QueueError::kNextOutOfRange},
    {"indirect_loop", true,
     [](MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kTbl), 0, kBuf, 8, N, 1);
       mq.write_table_desc(GuestAddress(kTbl), 1, kBuf, 8, N, 0);
       one(mq, kTbl, 32, I);
     },
     QueueError::kChainLoop},
    {"indirect_zero_length_buffer", true,
     [](MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kTbl), 0, kBuf, 0, 0, 0);
       one(mq, kTbl, 16, I);
     },
     QueueError::kZeroLength},
    {"indirect_buffer_out_of_ram", true,
     [](MockQueue& mq) {
       mq.write_table_desc(GuestAddress(kTbl), 0, test::kHighRamEnd, 8, 0, 0);
       one(mq, kTbl, 16, I);
     },
     QueueError::kOutOfRam},
    {"same_head_offered_twice", false,
     [](MockQueue& mq) {
       mq.write_desc(0, kBuf, 8, 0, 0);
       mq.offer(0);
       mq.offer(0);
       mq.publish();
     },
     QueueError::kHeadInFlight},
};

class BadChainTest : public QueueTest, public ::testing::WithParamInterface<BadChain> {};

TEST_P(BadChainTest, PopReportsTheError) {
  const BadChain& c = GetParam();
  configure(false, c.indirect_negotiated);
  c.setup(mq_);
  // Pop until the error (the "twice" cases succeed once first); never more than the ring.
  for (int i = 0; i <= kSize; ++i) {
    auto r = q_.pop(mem_, elem_);
    if (!r) {
      EXPECT_EQ(r.error().code, c.want) << r.error().message();
      EXPECT_FALSE(r.error().message().empty());
      return;
    }
    ASSERT_TRUE(*r) << "ring drained without the expected error";
  }
  FAIL() << "no error";
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadChainTest, ::testing::ValuesIn(kBadChains),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(QueueTest, TooManyInFlight) {
  configure();
  ChainBuffer b[] = {buf(8, true)};
  for (int i = 0; i < kSize; ++i) ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  for (int i = 0; i < kSize; ++i) ASSERT_TRUE(*q_.pop(mem_, elem_));
  // A buggy driver re-offers head 0 while all 16 chains are still in flight.
  mq_.offer(0);
  mq_.publish();
  auto r = q_.pop(mem_, elem_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, QueueError::kTooManyInFlight);
}

TEST_F(QueueTest, PushOfHeadNotInFlight) {
  configure();
  for (uint16_t head : {uint16_t{0}, uint16_t{kSize - 1}, uint16_t{kSize}, uint16_t{0xffff}}) {
    auto r = q_.push(mem_, head, 0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, QueueError::kBadUsedHead);
  }
  ChainBuffer b[] = {buf(8, true)};
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  ASSERT_TRUE(*q_.pop(mem_, elem_));
  ASSERT_TRUE(q_.push(mem_, elem_.head, 8));
  auto again = q_.push(mem_, elem_.head, 8);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, QueueError::kBadUsedHead);
}

TEST_F(QueueTest, ChainOf4GiBIsRejected) {
  // Two 2 GiB buffers (the same RAM twice; MAP_NORESERVE keeps it virtual).
  GuestMemory big = test::make_test_memory({{0, 1ULL << 31}});
  MockQueue mq(big, QueueLayout::contiguous(GuestAddress(kRingBase), kSize));
  Queue q(kSize);
  mq.configure(q);
  mq.write_desc(0, 0, 0x80000000u, N, 1);
  mq.write_desc(1, 0, 0x7ff00000u, 0, 0);
  mq.offer(0);
  mq.write_desc(2, 0, 0x80000000u, N, 3);
  mq.write_desc(3, 0, 0x7ff00000u + 0x100000u, 0, 0);  // exactly 4 GiB
  mq.offer(2);
  mq.publish();
  auto ok = q.pop(big, elem_);
  ASSERT_TRUE(ok) << ok.error().message();  // 4 GiB - 1 MiB is fine
  auto r = q.pop(big, elem_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, QueueError::kChainTooLong);
}

struct BadRing {
  const char* name;
  uint64_t desc, avail, used;
  uint16_t size;
};

const BadRing kBadRings[] = {
    {"desc_in_hole", test::kLowRamEnd, 0x20000, 0x21000, kSize},
    {"avail_past_end", 0x10000, test::kHighRamEnd - 4, 0x21000, kSize},
    {"used_across_hole", 0x10000, 0x20000, test::kLowRamEnd - 64, kSize},
    {"desc_misaligned", 0x10008, 0x20000, 0x21000, kSize},
    {"avail_misaligned", 0x10000, 0x20001, 0x21000, kSize},
    {"used_misaligned", 0x10000, 0x20000, 0x21002, kSize},
    {"size_not_power_of_two", 0x10000, 0x20000, 0x21000, 12},
    {"size_zero", 0x10000, 0x20000, 0x21000, 0},
    {"size_above_max", 0x10000, 0x20000, 0x21000, 2 * kSize},
};

class BadRingTest : public QueueTest, public ::testing::WithParamInterface<BadRing> {};

TEST_P(BadRingTest, IsInvalid) {
  const BadRing& c = GetParam();
  q_.set_size(c.size);
  q_.set_desc_table(GuestAddress(c.desc));
  q_.set_avail_ring(GuestAddress(c.avail));
  q_.set_used_ring(GuestAddress(c.used));
  EXPECT_FALSE(q_.is_valid(mem_));
}

INSTANTIATE_TEST_SUITE_P(Rings, BadRingTest, ::testing::ValuesIn(kBadRings),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(QueueTest, RingOutsideRamFailsPopWithoutTouchingIt) {
  // Even if the transport forgot is_valid(), pop never reads outside RAM.
  q_.set_desc_table(GuestAddress(test::kLowRamEnd));
  q_.set_avail_ring(GuestAddress(0x20000));
  q_.set_used_ring(GuestAddress(0x21000));
  q_.set_ready(true);
  auto r = q_.pop(mem_, elem_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, QueueError::kOutOfRam);
}

TEST_F(QueueTest, ResetForgetsEverything) {
  configure(true, true);
  ChainBuffer b[] = {buf(8, true)};
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  ASSERT_TRUE(*q_.pop(mem_, elem_));
  q_.reset();
  EXPECT_FALSE(q_.ready());
  EXPECT_EQ(q_.in_flight(), 0);
  EXPECT_EQ(q_.last_avail_idx(), 0);
  EXPECT_EQ(q_.size(), kSize);
  EXPECT_EQ(q_.desc_table(), GuestAddress());
}

// --- notification and interrupt suppression ---

struct NeedEventCase {
  uint16_t event, new_idx, old_idx;
  bool want;
};

TEST(NeedEvent, MatchesSpecFormulaIncludingWrap) {
  const NeedEventCase cases[] = {
      {0, 1, 0, true},          // first entry crosses event 0
      {5, 5, 4, false},         // event 5 means "after entry 5", i.e. when idx passes 6
      {5, 6, 5, true},          // entry 5 published
      {5, 10, 0, true},         // a batch crossing the event
      {10, 5, 0, false},        // not reached yet
      {0, 0, 0, false},         // nothing moved
      {65535, 0, 65535, true},  // crossing exactly at the wrap
      {65534, 1, 65533, true},  // batch across the wrap
      {2, 1, 65533, false},     // event ahead, across the wrap
      {65535, 65535, 65534, false},
      {100, 200, 150, false},  // event already behind old: no interrupt
  };
  for (const auto& c : cases) {
    EXPECT_EQ(need_event(c.event, c.new_idx, c.old_idx), c.want)
        << c.event << " " << c.new_idx << " " << c.old_idx;
    // The uapi helper agrees.
    EXPECT_EQ(vring_need_event(c.event, c.new_idx, c.old_idx) != 0, c.want);
  }
}

TEST_F(QueueTest, NoInterruptFlagSuppressesWithoutEventIdx) {
  configure();
  ChainBuffer b[] = {buf(8, true)};
  for (bool suppress : {false, true, false}) {
    if (suppress) {
      mq_.disable_interrupts();
    } else {
      mq_.enable_interrupts();
    }
    ASSERT_TRUE(mq_.add_chain(b));
    mq_.publish();
    ASSERT_TRUE(*q_.pop(mem_, elem_));
    ASSERT_TRUE(q_.push(mem_, elem_.head, 0));
    auto r = q_.needs_interrupt(mem_);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, !suppress);
    ASSERT_TRUE(mq_.next_used());
  }
}

TEST_F(QueueTest, EventIdxInterruptsOnlyWhenUsedEventIsCrossed) {
  configure(true);
  ChainBuffer b[] = {buf(8, true)};
  auto complete = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(mq_.add_chain(b));
      mq_.publish();
      ASSERT_TRUE(*q_.pop(mem_, elem_));
      ASSERT_TRUE(q_.push(mem_, elem_.head, 0));
    }
  };
  // The first decision always interrupts (no history yet).
  complete(1);
  EXPECT_TRUE(*q_.needs_interrupt(mem_));
  while (mq_.next_used()) {
  }
  // The driver asks to be woken after used entry 3 (idx 1 -> 4 crosses it).
  mq_.set_used_event(3);
  complete(1);  // used.idx 2
  EXPECT_FALSE(*q_.needs_interrupt(mem_));
  complete(1);  // 3
  EXPECT_FALSE(*q_.needs_interrupt(mem_));
  complete(1);  // 4: entry 3 published
  EXPECT_TRUE(*q_.needs_interrupt(mem_));
  complete(1);  // 5: used_event stale -> suppressed
  EXPECT_FALSE(*q_.needs_interrupt(mem_));
  // A batch of several pushes then one decision.
  mq_.set_used_event(6);
  complete(3);  // 8
  EXPECT_TRUE(*q_.needs_interrupt(mem_));
  // Nothing pushed since: no interrupt.
  EXPECT_FALSE(*q_.needs_interrupt(mem_));
}

TEST_F(QueueTest, EventIdxInterruptAcrossIndexWrap) {
  configure(true);
  ChainBuffer b[] = {buf(8, true)};
  // Run the indices up to 65534.
  for (int i = 0; i < 65534; ++i) {
    ASSERT_TRUE(mq_.add_chain(b));
    mq_.publish();
    ASSERT_TRUE(*q_.pop(mem_, elem_));
    ASSERT_TRUE(q_.push(mem_, elem_.head, 0));
    ASSERT_TRUE(mq_.next_used());
  }
  (void)q_.needs_interrupt(mem_);
  mq_.set_used_event(65535);  // wake me after entry 65535, i.e. when used.idx becomes 0
  for (int want : {0, 1}) {   // 65534 -> 65535: no; 65535 -> 0: yes
    ASSERT_TRUE(mq_.add_chain(b));
    mq_.publish();
    ASSERT_TRUE(*q_.pop(mem_, elem_));
    ASSERT_TRUE(q_.push(mem_, elem_.head, 0));
    ASSERT_TRUE(mq_.next_used());
    EXPECT_EQ(*q_.needs_interrupt(mem_), want == 1);
  }
  EXPECT_EQ(q_.used_idx(), 0);
}

TEST_F(QueueTest, NotificationFlagWithoutEventIdx) {
  configure();
  EXPECT_TRUE(mq_.needs_kick());
  ASSERT_TRUE(q_.disable_notification(mem_));
  EXPECT_EQ(mq_.used_flags() & VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);
  EXPECT_FALSE(mq_.needs_kick());
  auto r = q_.enable_notification(mem_);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);  // nothing pending
  EXPECT_EQ(mq_.used_flags() & VRING_USED_F_NO_NOTIFY, 0);
  EXPECT_TRUE(mq_.needs_kick());
}

TEST_F(QueueTest, EnableNotificationPublishesAvailEventAndReportsPending) {
  configure(true);
  ChainBuffer b[] = {buf(8, true)};
  ASSERT_TRUE(mq_.add_chain(b));
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  EXPECT_TRUE(mq_.needs_kick());  // 0 -> 2 crosses the initial avail_event 0
  ASSERT_TRUE(*q_.pop(mem_, elem_));
  // One chain still available: the device must drain again.
  auto r = q_.enable_notification(mem_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(*r);
  EXPECT_EQ(mq_.avail_event(), 1);
  ASSERT_TRUE(*q_.pop(mem_, elem_));
  r = q_.enable_notification(mem_);
  EXPECT_FALSE(*r);
  EXPECT_EQ(mq_.avail_event(), 2);
  // The driver kicks for entry 2 (crosses avail_event 2), not for entry 3 until re-armed.
  ASSERT_TRUE(q_.disable_notification(mem_));
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  EXPECT_TRUE(mq_.needs_kick());  // avail 2 -> 3 crosses avail_event 2
  ASSERT_TRUE(mq_.add_chain(b));
  mq_.publish();
  EXPECT_FALSE(mq_.needs_kick());  // avail_event not moved: suppressed
}

}  // namespace
}  // namespace kindling::virtio
