#include "block/raw_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "tests/support/temp_image.h"

namespace kindling::block {
namespace {

using test::ImageFs;
using test::TempImage;

TEST(RawImage, OpensDirectOnDiskWithProbedAlignment) {
  TempImage t(1 << 20);
  auto img = RawImage::open(t.path(), false);
  ASSERT_TRUE(img) << img.error().message();
  EXPECT_TRUE(img->direct());
  EXPECT_FALSE(img->read_only());
  EXPECT_EQ(img->size_bytes(), 1u << 20);
  uint32_t oa = img->offset_align();
  EXPECT_GE(oa, 512u);
  EXPECT_LE(oa, 4096u);
  EXPECT_EQ(oa & (oa - 1), 0u);
  EXPECT_GE(img->mem_align(), 1u);
  EXPECT_EQ(img->mem_align() & (img->mem_align() - 1), 0u);
  struct stat st {};
  ASSERT_EQ(::stat(t.path().c_str(), &st), 0);
  EXPECT_EQ(img->device_id(), st.st_dev);
  EXPECT_EQ(img->inode(), st.st_ino);
}

// True when open(O_DIRECT) on `path` fails with EINVAL (the filesystem has no direct I/O).
bool refuses_o_direct(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  return fd < 0 && errno == EINVAL;
}

// tmpfs refused O_DIRECT before Linux 6.6; sysfs attributes (4096 bytes) still do.
TEST(RawImage, FallsBackToBufferedWhereODirectIsRefusedWithOneLogLine) {
  TempImage t(64 << 10, ImageFs::kTmpfs);
  ASSERT_TRUE(test::is_tmpfs(t.path()));
  std::string path = t.path();
  bool read_only = false;
  if (!refuses_o_direct(path)) {
    path = "/sys/kernel/uevent_seqnum";
    read_only = true;
    if (!refuses_o_direct(path)) GTEST_SKIP() << "no file here whose filesystem refuses O_DIRECT";
  }
  testing::internal::CaptureStderr();
  auto img = RawImage::open(path, read_only);
  std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(img) << img.error().message();
  EXPECT_FALSE(img->direct());
  EXPECT_EQ(img->mem_align(), 1u);
  EXPECT_EQ(img->offset_align(), 512u);
  EXPECT_NE(log.find(path), std::string::npos) << log;
  EXPECT_NE(log.find("buffered"), std::string::npos) << log;
  EXPECT_NE(log.find("does not support O_DIRECT"), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
}

TEST(RawImage, OpensOnTmpfs) {
  TempImage t(64 << 10, ImageFs::kTmpfs);
  testing::internal::CaptureStderr();
  auto img = RawImage::open(t.path(), false);
  (void)testing::internal::GetCapturedStderr();
  ASSERT_TRUE(img) << img.error().message();
  // Direct on Linux >= 6.6 (tmpfs learned O_DIRECT), buffered before.
  EXPECT_EQ(img->direct(), !refuses_o_direct(t.path()));
}

TEST(RawImage, DirectCanBeTurnedOff) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false, OpenOptions{.allow_direct = false});
  ASSERT_TRUE(img);
  EXPECT_FALSE(img->direct());
}

TEST(RawImage, ForcedAlignmentIsApplied) {
  TempImage t(64 << 10);
  auto img = RawImage::open(t.path(), false,
                            OpenOptions{.force_offset_align = 4096, .force_mem_align = 4096});
  ASSERT_TRUE(img);
  EXPECT_TRUE(img->direct());
  EXPECT_EQ(img->offset_align(), 4096u);
  EXPECT_EQ(img->mem_align(), 4096u);
}

TEST(RawImage, SizeNotMultipleOfDirectBlockStaysBuffered) {
  TempImage t(4096 + 512);
  testing::internal::CaptureStderr();
  auto img = RawImage::open(t.path(), false, OpenOptions{.force_offset_align = 4096});
  std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(img);
  EXPECT_FALSE(img->direct());
  EXPECT_NE(log.find("not a multiple"), std::string::npos) << log;
}

TEST(RawImage, UnknownDirectAlignmentFallsBackToBufferedWithOneLogLine) {
  TempImage t(64 << 10);
  testing::internal::CaptureStderr();
  auto img = RawImage::open(t.path(), false, OpenOptions{.fail_align_probe = true});
  std::string log = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(img) << img.error().message();
  EXPECT_FALSE(img->direct());
  EXPECT_EQ(img->offset_align(), 512u);
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_NE(log.find("alignment could not be found"), std::string::npos) << log;
  // The fd really lost O_DIRECT: an unaligned buffered read works.
  char buf[100];
  EXPECT_EQ(::pread(img->fd(), buf + 1, 7, 3), 7);
}

TEST(RawImage, TwoWritersConflict) {
  TempImage t(64 << 10);
  auto first = RawImage::open(t.path(), false);
  ASSERT_TRUE(first);
  auto second = RawImage::open(t.path(), false);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, BlockError::kLocked);
  std::string msg = second.error().message();
  EXPECT_NE(msg.find(t.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("in use by another process"), std::string::npos) << msg;
}

TEST(RawImage, LockIsReleasedWithTheImage) {
  TempImage t(64 << 10);
  {
    auto first = RawImage::open(t.path(), false);
    ASSERT_TRUE(first);
  }
  auto again = RawImage::open(t.path(), false);
  EXPECT_TRUE(again) << again.error().message();
}

TEST(RawImage, ReadersShareButExcludeAWriter) {
  TempImage t(64 << 10);
  auto r1 = RawImage::open(t.path(), true);
  auto r2 = RawImage::open(t.path(), true);
  ASSERT_TRUE(r1);
  ASSERT_TRUE(r2) << r2.error().message();
  EXPECT_TRUE(r1->read_only());
  auto w = RawImage::open(t.path(), false);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, BlockError::kLocked);
}

TEST(RawImage, WriterExcludesAReader) {
  TempImage t(64 << 10);
  auto w = RawImage::open(t.path(), false);
  ASSERT_TRUE(w);
  auto r = RawImage::open(t.path(), true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, BlockError::kLocked);
}

TEST(RawImage, SizeNotMultipleOf512IsRejected) {
  TempImage t(1000);
  auto img = RawImage::open(t.path(), false);
  ASSERT_FALSE(img);
  EXPECT_EQ(img.error().code, BlockError::kBadSize);
  EXPECT_NE(img.error().message().find("1000"), std::string::npos) << img.error().message();
}

TEST(RawImage, EmptyFileIsRejected) {
  TempImage t(0);
  auto img = RawImage::open(t.path(), true);
  ASSERT_FALSE(img);
  EXPECT_EQ(img.error().code, BlockError::kBadSize);
}

TEST(RawImage, MissingFileIsAnOpenError) {
  auto img = RawImage::open("/nonexistent/kindling/disk.img", true);
  ASSERT_FALSE(img);
  EXPECT_EQ(img.error().code, BlockError::kOpen);
  EXPECT_EQ(img.error().sys_errno, ENOENT);
  EXPECT_NE(img.error().message().find("/nonexistent/kindling/disk.img"), std::string::npos);
}

TEST(RawImage, DirectoryIsRejected) {
  auto img = RawImage::open(test::disk_temp_dir(), true);
  ASSERT_FALSE(img);
}

}  // namespace
}  // namespace kindling::block
