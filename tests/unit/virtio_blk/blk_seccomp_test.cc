// The virtio-blk I/O thread under its seccomp filter (BlockOptions::seccomp): requests are served
// through both real engines, and an engine that makes a forbidden syscall on the I/O thread
// ends the process with the line naming the thread.
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/seccomp/seccomp.h"
#include "tests/support/blk_driver.h"
#include "tests/support/eventually.h"
#include "tests/support/temp_image.h"
#include "tests/unit/virtio_blk/fake_engine.h"
#include "virtio/blk_device.h"

namespace kindling::virtio {
namespace {

using test::BlkDone;
using test::BlkDriver;

// A FakeEngine whose read() first opens a socket: no I/O thread may.
class SocketOnReadEngine : public test::FakeEngine {
 public:
  Result<void, block::BlockErr> read(uint64_t offset, std::span<const iovec> iov,
                                     uint64_t cookie) override {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) ::close(fd);
    return FakeEngine::read(offset, iov, cookie);
  }
};

// One request through `dev` (already active behind `drv`); its status.
uint8_t one(BlkDriver& drv, uint32_t type, uint64_t sector, uint32_t len) {
  if (!drv.add(0, type, sector, len)) return 0xff;
  drv.kick();
  auto done = drv.wait_for(1);
  return done.size() == 1 ? done[0].status : 0xff;
}

class ConfinedBlkTest : public testing::TestWithParam<std::string> {
 protected:
  // The device over `path` with the parameter's engine, its I/O thread under the filter.
  static auto open_confined(const std::string& path) {
    BlockOptions o;
    o.path = path;
    o.engine = GetParam();
    o.seccomp = true;
    o.thread_name = "blk-test";
    return BlockDevice::open(o);
  }
};

// The filter stays on the I/O thread: the test's own threads are not confined.
TEST_P(ConfinedBlkTest, ReadWriteFlushResetAndReactivate) {
  test::TempImage image(1 << 20);
  auto dev = open_confined(image.path());
  ASSERT_TRUE(dev) << dev.error().message();
  for (int round = 0; round < 2; ++round) {
    BlkDriver drv({});
    ASSERT_TRUE(drv.activate(**dev));
    std::memset(drv.data(0).data(), 0x5a, 4096);
    EXPECT_EQ(one(drv, VIRTIO_BLK_T_OUT, 8, 4096), VIRTIO_BLK_S_OK);
    EXPECT_EQ(one(drv, VIRTIO_BLK_T_FLUSH, 0, 0), VIRTIO_BLK_S_OK);
    std::memset(drv.data(0).data(), 0, 4096);
    EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 8, 4096), VIRTIO_BLK_S_OK);
    EXPECT_EQ(drv.data(0)[4095], 0x5a);
    EXPECT_EQ(one(drv, VIRTIO_BLK_T_GET_ID, 0, 20), VIRTIO_BLK_S_OK);
    // DISCARD and WRITE_ZEROES: fallocate on the I/O thread for libaio and sync.
    for (uint32_t type : {VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES}) {
      virtio_blk_discard_write_zeroes seg{};
      seg.sector = 64;
      seg.num_sectors = 16;
      std::memcpy(drv.data(0).data(), &seg, sizeof(seg));
      EXPECT_EQ(one(drv, type, 0, sizeof(seg)), VIRTIO_BLK_S_OK) << type;
    }
    drv.reset();
  }
}

// PATCH /drives path_on_host while the guest runs: the confined I/O thread switches images
// (drains, syncs, swaps the engine's notifier in its epoll set) and hands the old engine and
// image back to be closed outside its filter.
TEST_P(ConfinedBlkTest, ImageReplacedWhileActive) {
  test::TempImage first(1 << 20, test::ImageFs::kDisk, 3);
  test::TempImage second(2 << 20, test::ImageFs::kDisk, 4);
  auto dev = open_confined(first.path());
  ASSERT_TRUE(dev) << dev.error().message();
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 0, 4096), VIRTIO_BLK_S_OK);
  ASSERT_TRUE((*dev)->replace_image(second.path()));
  EXPECT_EQ((*dev)->disk().capacity_sectors, (2u << 20) / 512);
  EXPECT_EQ(one(drv, VIRTIO_BLK_T_IN, 2048, 4096), VIRTIO_BLK_S_OK);
  EXPECT_EQ(std::memcmp(drv.data(0).data(), second.shadow().data() + (1 << 20), 4096), 0);
  drv.reset();
}

INSTANTIATE_TEST_SUITE_P(Engines, ConfinedBlkTest, testing::Values("sync", "libaio", "io_uring"),
                         [](const auto& info) { return info.param; });

TEST(ConfinedBlk, ForbiddenSyscallOnTheIoThreadIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        BlockOptions o;
        o.seccomp = true;
        o.thread_name = "blk-vdb";
        auto dev = BlockDevice::create_with_engine(o, 1 << 20, 512,
                                                   std::make_unique<SocketOnReadEngine>());
        if (!dev) std::_Exit(3);
        BlkDriver drv({});
        if (!drv.activate(**dev)) std::_Exit(3);
        (void)one(drv, VIRTIO_BLK_T_IN, 0, 4096);
        std::_Exit(4);  // the read was never submitted
      },
      testing::ExitedWithCode(seccomp::kExitSeccomp),
      "^kindling: seccomp: thread 'blk-vdb' made forbidden syscall socket \\(41\\)\n$");
}

TEST(ConfinedBlk, WithoutSeccompTheSameEngineRuns) {
  BlockOptions o;
  auto engine = std::make_unique<SocketOnReadEngine>();
  SocketOnReadEngine* fake = engine.get();
  auto dev = BlockDevice::create_with_engine(o, 1 << 20, 512, std::move(engine));
  ASSERT_TRUE(dev);
  BlkDriver drv({});
  ASSERT_TRUE(drv.activate(**dev));
  ASSERT_TRUE(drv.add(0, VIRTIO_BLK_T_IN, 0, 4096));
  drv.kick();
  (void)test::eventually([&] { return fake->submitted() >= 1; }, 5000);
  ASSERT_EQ(fake->submitted(), 1u);
  fake->complete(0);
  auto done = drv.wait_for(1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status, VIRTIO_BLK_S_OK);
  drv.reset();
}

}  // namespace
}  // namespace kindling::virtio
