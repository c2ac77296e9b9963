// Data-integrity soak: >= 100,000 random reads, writes and flushes of random sizes through the
// ring and the device's I/O thread, every read checked against a shadow copy, and the final file
// compared with the shadow. In-flight requests never overlap (as a guest's block layer keeps
// them), so the shadow is always the one right answer. One case opens the image as if it needed
// 4096-byte offsets and buffers: 512-byte requests and buffers then go through the engine's
// bounce buffers, widened reads and read-modify-write (serialized against neighbours that share
// a 4096-byte block, which the guest's requests may do).
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "tests/support/blk_driver.h"
#include "tests/support/temp_image.h"
#include "virtio/blk_device.h"

namespace kindling::virtio {
namespace {

using test::BlkDone;
using test::BlkDriver;

constexpr uint64_t kImageBytes = 64 << 20;
constexpr uint32_t kMaxBytes = 128 * 1024;

struct InFlight {
  bool busy = false;
  uint32_t type = 0;
  uint64_t offset = 0;
  uint32_t len = 0;
  uint32_t data_offset = 0;  // where the data starts in the tag's area
};

struct SoakCase {
  std::string engine;
  size_t ops;
  bool indirect;
  uint32_t force_align = 0;  // pretend the image needs this offset and memory alignment (0: probe)
};

// Readable test names in ctest (instead of the bytes of the struct).
void PrintTo(const SoakCase& c, std::ostream* os) {
  *os << c.engine << "/" << c.ops << (c.indirect ? "/indirect" : "");
  if (c.force_align) *os << "/align" << c.force_align;
}

class BlkSoak : public testing::TestWithParam<SoakCase> {};

TEST_P(BlkSoak, RandomIoMatchesShadow) {
  const SoakCase& sc = GetParam();
  test::TempImage image(kImageBytes, test::ImageFs::kDisk, 42);
  BlockOptions o;
  o.path = image.path();
  o.engine = sc.engine;
  o.open.force_offset_align = sc.force_align;
  o.open.force_mem_align = sc.force_align;
  auto dev = BlockDevice::open(o);
  ASSERT_TRUE(dev) << dev.error().message();
  const block::RawImage* img = (*dev)->image();
  if (sc.force_align) {
    if (!img->direct()) GTEST_SKIP() << "no O_DIRECT in the image directory: nothing to bounce";
    ASSERT_EQ(img->offset_align(), sc.force_align);
    ASSERT_EQ(img->mem_align(), sc.force_align);
  }
  BlkDriver::Options dopt;
  dopt.indirect = sc.indirect;
  dopt.max_data = kMaxBytes + sc.force_align;  // room to start the data off alignment
  BlkDriver drv(dopt);
  ASSERT_TRUE(drv.activate(**dev));

  std::mt19937_64 rng(1234);
  std::vector<uint8_t>& shadow = image.shadow();
  std::vector<InFlight> inflight(drv.queue_size());
  std::vector<uint16_t> free_tags;
  for (uint16_t t = drv.queue_size(); t > 0; --t) free_tags.push_back(static_cast<uint16_t>(t - 1));
  const uint64_t sectors = kImageBytes / 512;

  auto overlaps = [&](uint64_t off, uint32_t len) {
    for (const InFlight& f : inflight) {
      if (f.busy && f.len > 0 && off < f.offset + f.len && f.offset < off + len) return true;
    }
    return false;
  };
  // Log-uniform sizes in 512-byte units: many small requests, some large ones.
  auto random_len = [&] {
    double u = std::uniform_real_distribution<double>(0, std::log2(kMaxBytes / 512.0))(rng);
    return static_cast<uint32_t>(std::lround(std::exp2(u))) * 512;
  };

  uint64_t next_sector = 0;
  size_t issued = 0, finished = 0, reads = 0, writes = 0, flushes = 0, failures = 0;
  std::vector<BlkDone> done;
  auto start = std::chrono::steady_clock::now();
  while (finished < sc.ops) {
    size_t batch = std::uniform_int_distribution<size_t>(1, 48)(rng);
    size_t added = 0;
    for (size_t i = 0; i < batch && issued < sc.ops && !free_tags.empty(); ++i) {
      unsigned pick = std::uniform_int_distribution<unsigned>(0, 99)(rng);
      uint32_t type = pick < 47   ? VIRTIO_BLK_T_IN
                      : pick < 94 ? VIRTIO_BLK_T_OUT
                                  : VIRTIO_BLK_T_FLUSH;
      uint32_t len = 0;
      uint64_t sector = 0;
      if (type != VIRTIO_BLK_T_FLUSH) {
        len = random_len();
        bool placed = false;
        // A third of the requests continue where the previous one ended: runs to merge.
        if (rng() % 3 == 0 && next_sector + len / 512 <= sectors) {
          sector = next_sector;
          placed = !overlaps(sector * 512, len);
        }
        for (int tries = 0; tries < 8 && !placed; ++tries) {
          sector = std::uniform_int_distribution<uint64_t>(0, sectors - len / 512)(rng);
          placed = !overlaps(sector * 512, len);
        }
        if (!placed) continue;
        next_sector = sector + len / 512;
      }
      uint16_t tag = free_tags.back();
      // With a forced alignment, half of the requests start their data 512-byte aligned but
      // not aligned to it (the other half, and whole-block pieces, may go straight through).
      uint32_t data_off = 0;
      if (sc.force_align && rng() % 2 == 0) {
        data_off = std::uniform_int_distribution<uint32_t>(1, sc.force_align / 512 - 1)(rng) * 512;
      }
      if (type == VIRTIO_BLK_T_OUT) {
        test::fill_random(drv.data(tag).data() + data_off, len, rng());
      }
      unsigned segs = std::uniform_int_distribution<unsigned>(1, 4)(rng);
      // Ring full: wait for completions.
      if (!drv.add(tag, type, sector, len, segs, data_off)) break;
      free_tags.pop_back();
      inflight[tag] = {true, type, sector * 512, len, data_off};
      if (type == VIRTIO_BLK_T_OUT) {
        // No overlapping request is in flight: the write's data is the answer from now on.
        std::memcpy(shadow.data() + sector * 512, drv.data(tag).data() + data_off, len);
      }
      ++issued;
      ++added;
    }
    if (added > 0) drv.kick();
    done.clear();
    if (drv.wait(done, 10000) == 0) {
      ADD_FAILURE() << "no completion within 10 s; " << issued - finished << " in flight";
      break;
    }
    for (const BlkDone& d : done) {
      InFlight& f = inflight[d.tag];
      ASSERT_TRUE(f.busy) << "completion for idle tag " << d.tag;
      if (d.status != VIRTIO_BLK_S_OK) ++failures;
      if (f.type == VIRTIO_BLK_T_IN) {
        ++reads;
        EXPECT_EQ(d.used_len, f.len + 1);
        if (std::memcmp(drv.data(d.tag).data() + f.data_offset, shadow.data() + f.offset, f.len) !=
            0) {
          ADD_FAILURE() << "read of " << f.len << " at " << f.offset << " differs from shadow";
          ++failures;
        }
      } else {
        EXPECT_EQ(d.used_len, 1u);
        ++(f.type == VIRTIO_BLK_T_OUT ? writes : flushes);
      }
      f.busy = false;
      free_tags.push_back(d.tag);
      ++finished;
    }
    if (failures > 10) break;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(finished, sc.ops);
  drv.reset();
  BlockStats s = (*dev)->stats();
  RecordProperty("seconds", std::to_string(secs));
  printf("soak %s: %zu ops (%zu reads, %zu writes, %zu flushes) in %.1f s\n%s", sc.engine.c_str(),
         finished, reads, writes, flushes, secs, format_stats(s).c_str());
  EXPECT_EQ(s.reads, reads);
  EXPECT_EQ(s.writes, writes);
  EXPECT_EQ(s.flushes, flushes);
  EXPECT_GT(s.merged_groups, 0u) << "the contiguous runs were meant to merge";
  if (sc.force_align) {
    block::EngineStats e = (*dev)->engine_stats();
    printf("  engine: %llu requests, %llu bounced\n", static_cast<unsigned long long>(e.requests),
           static_cast<unsigned long long>(e.bounced));
    EXPECT_GT(e.bounced, 0u) << "the forced alignment was meant to bounce";
    EXPECT_LE(e.bounce_high_water, e.bounce_budget) << "bounce memory past the budget";
  }
  EXPECT_TRUE(image.read_back() == shadow) << "final image differs from the shadow";
}

INSTANTIATE_TEST_SUITE_P(
    Engines, BlkSoak,
    testing::Values(SoakCase{"libaio", 100000, false}, SoakCase{"sync", 20000, true},
                    SoakCase{"io_uring", 100000, false}, SoakCase{"io_uring", 20000, true, 4096},
                    SoakCase{"libaio", 100000, false, 4096}, SoakCase{"sync", 10000, true, 4096}),
    [](const auto& info) {
      const SoakCase& c = info.param;
      return c.engine + (c.indirect ? "_indirect" : "") +
             (c.force_align ? "_align" + std::to_string(c.force_align) : "");
    });

}  // namespace
}  // namespace kindling::virtio
