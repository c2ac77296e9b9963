// End-to-end virtio-blk: the kindling binary boots the test guest with disks attached, the
// guest's own virtio-mmio driver runs a blk-* test (guest/testguest/blk_tests.c), and the host
// then checks every image byte: the sectors the guest wrote hold exactly its deterministic
// pattern (guest/testguest/blk_pattern.h), every other byte is what the image held before.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "guest/testguest/blk_pattern.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/temp_image.h"

namespace kindling::test {
namespace {

constexpr uint64_t kImageBytes = 8ULL << 20;  // 16384 sectors
constexpr uint32_t kSector = BLK_PATTERN_SECTOR;

// Puts the guest's pattern for sectors [first, first+count) into an image's shadow.
void expect_written(TempImage& img, uint32_t seed, uint64_t first, uint64_t count) {
  for (uint64_t s = first; s < first + count; ++s) {
    for (uint32_t i = 0; i < BLK_PATTERN_WORDS; ++i) {
      const uint64_t w = blk_pattern_word(seed, s, i);
      img.shadow_write(s * kSector + i * 8, reinterpret_cast<const uint8_t*>(&w), sizeof(w));
    }
  }
}

// True when `sector` of `data` holds the guest's pattern for that sector.
bool sector_is_pattern(const uint8_t* data, uint32_t seed, uint64_t sector) {
  for (uint32_t i = 0; i < BLK_PATTERN_WORDS; ++i) {
    uint64_t w;
    std::memcpy(&w, data + i * 8, sizeof(w));
    if (w != blk_pattern_word(seed, sector, i)) return false;
  }
  return true;
}

// The number after `key` in the --stats block, or -1.
long stat_value(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtol(text.c_str() + at + key.size(), nullptr, 10);
}

// True when /proc/locks lists an exclusive flock on `path`'s inode.
bool flock_held(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  std::ifstream locks("/proc/locks");
  const std::string inode = ":" + std::to_string(st.st_ino) + " ";
  for (std::string line; std::getline(locks, line);) {
    if (line.find("FLOCK") != std::string::npos && line.find("WRITE") != std::string::npos &&
        line.find(inode) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// `kindling run` of the test guest with `cmdline`, a 30 s timeout, then `extra`.
std::vector<std::string> base_args(const std::string& cmdline,
                                   const std::vector<std::string>& extra) {
  std::vector<std::string> args = {KINDLING_BIN, "run",   "--kernel",  TESTGUEST_ELF,
                                   "--cmdline",  cmdline, "--timeout", "30"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

class BlkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!kvm_usable(why)) GTEST_SKIP() << why;
    if (disk_temp_dir().empty()) GTEST_SKIP() << "no disk (non-tmpfs) directory for images";
  }

  // Runs `kindling run` with the test guest, `cmdline` and the extra flags.
  static ChildResult guest(const std::string& cmdline, std::vector<std::string> extra,
                           const ChildOptions& opts = {}) {
    std::vector<std::string> args = base_args(cmdline, {"--log-level", "info"});
    args.insert(args.end(), extra.begin(), extra.end());
    return run_child(args, opts);
  }

  // Runs guest test `test` on one disk and expects it to pass.
  static void expect_pass(const ChildResult& r, const std::string& test) {
    ASSERT_TRUE(r.exited) << "killed at the deadline\n" << r.out << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("testguest: " + test + ": ok"), std::string::npos) << r.out << r.err;
  }
};

TEST_F(BlkTest, WriteFlushReadBackLeavesExactlyThePattern) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-rw blk.seed=7", {"--disk", img.path()});
  expect_pass(r, "blk-rw");
  std::vector<uint8_t> before = img.shadow();
  expect_written(img, 7, BLK_RW_FIRST, BLK_RW_COUNT);
  EXPECT_TRUE(img.matches_shadow());
  EXPECT_NE(before, img.shadow());  // the check above compared against a changed image
  EXPECT_NE(r.err.find("GSI 5 at 0xd0000000"), std::string::npos) << r.err;
}

TEST_F(BlkTest, QueueNotifiesBypassUserSpace) {
  // 400 requests at depth 1, polled: 400 QueueNotify writes. They land on the ioeventfd inside
  // KVM; only the register-file setup (a few dozen accesses) exits to kindling as MMIO.
  TempImage img(kImageBytes);
  const ChildResult r =
      guest("test=blk-bench blk.n=400 blk.qd=1 blk.irq=0", {"--disk", img.path()});
  expect_pass(r, "blk-bench");
  EXPECT_NE(r.out.find("notifies=400 "), std::string::npos) << r.out;
  const long mmio_exits = stat_value(r.err, " mmio=");
  EXPECT_GE(mmio_exits, 10) << r.err;
  EXPECT_LT(mmio_exits, 100) << r.err;
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, GetIdAnswersTheConfiguredSerial) {
  TempImage img(kImageBytes);
  const ChildResult r =
      guest("test=blk-id blk.serial=data-disk-01", {"--disk", img.path() + ",id=data-disk-01"});
  expect_pass(r, "blk-id");
  EXPECT_NE(r.out.find("serial 'data-disk-01'"), std::string::npos) << r.out;
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, GetIdWithoutIdDerivesASerial) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-id", {"--disk", img.path()});
  expect_pass(r, "blk-id");
  // Derived from the image's device and inode numbers (virtio/blk_request.h, make_serial).
  struct stat st {};
  ASSERT_EQ(::stat(img.path().c_str(), &st), 0);
  char want[64];
  std::snprintf(want, sizeof(want), "kd%llx-%llx", static_cast<unsigned long long>(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
  EXPECT_NE(r.out.find("serial '" + std::string(want).substr(0, 20) + "'"), std::string::npos)
      << r.out;
}

TEST_F(BlkTest, MultiDescriptorIndirectAndLargeRequests) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-multi blk.seed=3", {"--disk", img.path()});
  expect_pass(r, "blk-multi");
  EXPECT_NE(r.out.find("indirect write"), std::string::npos) << r.out;
  expect_written(img, 3, BLK_MULTI_FIRST, BLK_MULTI_COUNT);
  expect_written(img, 3, BLK_MULTI_BIG_FIRST, BLK_MULTI_BIG_COUNT);
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, BatchInOneNotifyIsMergedAndEachRequestCompletes) {
  TempImage img(kImageBytes);
  const ChildResult r =
      guest("test=blk-batch blk.batch=16 blk.seed=5", {"--disk", img.path(), "--stats"});
  expect_pass(r, "blk-batch");
  expect_written(img, 5, BLK_BATCH_FIRST, 16 * BLK_BATCH_SECTORS);
  EXPECT_TRUE(img.matches_shadow());
  // 16 writes + 16 reads, each batch in one notify: the device merged them.
  EXPECT_GE(stat_value(r.err, "merged groups "), 2) << r.err;
  EXPECT_NE(r.err.find("write 16"), std::string::npos) << r.err;
}

TEST_F(BlkTest, BatchWithMergingOffStillCompletesEachRequest) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-batch blk.batch=16 blk.seed=5",
                              {"--disk", img.path(), "--stats", "--no-merge"});
  expect_pass(r, "blk-batch");
  expect_written(img, 5, BLK_BATCH_FIRST, 16 * BLK_BATCH_SECTORS);
  EXPECT_TRUE(img.matches_shadow());
  EXPECT_EQ(stat_value(r.err, "merged groups "), 0) << r.err;
}

TEST_F(BlkTest, ReadOnlyDiskRefusesWritesAndStaysUnchanged) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-ro", {"--disk", img.path() + ",ro", "--stats"});
  expect_pass(r, "blk-ro");
  EXPECT_TRUE(img.matches_shadow());
  EXPECT_GE(stat_value(r.err, "errors "), 1) << r.err;
}

TEST_F(BlkTest, InterruptsArriveThroughTheIrqfd) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-irq", {"--disk", img.path()});
  expect_pass(r, "blk-irq");
  EXPECT_NE(r.out.find("1 for 8 requests (EVENT_IDX)"), std::string::npos) << r.out;
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, RequestsPastTheEndFailAndWriteNothing) {
  TempImage img(kImageBytes);
  const ChildResult r = guest("test=blk-eof", {"--disk", img.path()});
  expect_pass(r, "blk-eof");
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, TwoDisksAtOnce) {
  TempImage a(kImageBytes, ImageFs::kDisk, 11);
  TempImage b(kImageBytes / 2, ImageFs::kDisk, 12);
  const ChildResult r =
      guest("test=blk-two blk.seed=9", {"--disk", a.path(), "--disk", b.path(), "--stats"});
  expect_pass(r, "blk-two");
  EXPECT_NE(r.out.find("vdb: virtio-blk at d0001000 gsi 6: 8192 sectors"), std::string::npos)
      << r.out;
  expect_written(a, 9, BLK_TWO_FIRST, BLK_TWO_COUNT);
  expect_written(b, 10, BLK_TWO_FIRST, BLK_TWO_COUNT);
  EXPECT_TRUE(a.matches_shadow());
  EXPECT_TRUE(b.matches_shadow());
  EXPECT_NE(r.err.find("disk vda ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("disk vdb ("), std::string::npos) << r.err;
}

TEST_F(BlkTest, JsonConfigWithDrivesAndStats) {
  TempImage root(kImageBytes, ImageFs::kDisk, 21);
  TempImage data(kImageBytes, ImageFs::kDisk, 22);
  const TempDir dir;
  std::ostringstream config;
  config << R"({
  "boot-source": {"kernel_image_path": ")"
         << TESTGUEST_ELF << R"(", "boot_args": "test=blk-two blk.seed=4"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
  "drives": [
    {"drive_id": "rootfs", "path_on_host": ")"
         << root.path() << R"(", "is_root_device": true, "is_read_only": false},
    {"drive_id": "data", "path_on_host": ")"
         << data.path() << R"(", "is_root_device": false, "is_read_only": false,
     "io_engine": "Sync"}
  ],
  "network-interfaces": [],
  "stats": true
})";
  const std::string json_path = dir.write("vm.json", config.str());
  const ChildResult r = run_child(
      {KINDLING_BIN, "run", "--config", json_path, "--timeout", "30", "--log-level", "info"});
  expect_pass(r, "blk-two");
  EXPECT_NE(r.err.find("virtio_mmio.device=4K@0xd0000000:5 root=/dev/vda virtio_mmio.device="
                       "4K@0xd0001000:6"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("disk vdb (" + data.path() + ", id data), engine sync"), std::string::npos)
      << r.err;
  expect_written(root, 4, BLK_TWO_FIRST, BLK_TWO_COUNT);
  expect_written(data, 5, BLK_TWO_FIRST, BLK_TWO_COUNT);
  EXPECT_TRUE(root.matches_shadow());
  EXPECT_TRUE(data.matches_shadow());
}

// Firecracker's "metrics" section: kindling appends one line of drive counters at exit (no API
// socket, so no FlushMetrics), with what the guest did: per disk one write, one FLUSH and one
// read of 8 sectors.
TEST_F(BlkTest, JsonConfigMetricsFileGetsTheDriveCountersAtExit) {
  TempImage root(kImageBytes, ImageFs::kDisk, 23);
  TempImage data(kImageBytes, ImageFs::kDisk, 24);
  const TempDir dir;
  const std::string metrics = dir.write("metrics.json", "");
  std::ostringstream config;
  config << R"({
  "boot-source": {"kernel_image_path": ")"
         << TESTGUEST_ELF << R"(", "boot_args": "test=blk-two blk.seed=6"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
  "drives": [
    {"drive_id": "rootfs", "path_on_host": ")"
         << root.path() << R"(", "is_root_device": true, "is_read_only": false},
    {"drive_id": "data", "path_on_host": ")"
         << data.path() << R"(", "is_root_device": false, "is_read_only": false}
  ],
  "metrics": {"metrics_path": "metrics.json"}
})";
  const std::string json_path = dir.write("vm.json", config.str());
  const ChildResult r = run_child({KINDLING_BIN, "run", "--config", json_path, "--timeout", "30"});
  expect_pass(r, "blk-two");
  std::ifstream in(metrics);
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << "no metrics line; stderr: " << r.err;
  const nlohmann::json m = nlohmann::json::parse(line);
  EXPECT_FALSE(std::getline(in, line)) << "one line at exit";
  for (const char* drive : {"block_rootfs", "block_data"}) {
    SCOPED_TRACE(drive);
    EXPECT_EQ(m[drive]["write_count"], 1);
    EXPECT_EQ(m[drive]["write_bytes"], BLK_TWO_COUNT * 512);
    EXPECT_EQ(m[drive]["read_count"], 1);
    EXPECT_EQ(m[drive]["read_bytes"], BLK_TWO_COUNT * 512);
    EXPECT_EQ(m[drive]["flush_count"], 1);
    EXPECT_EQ(m[drive]["execute_fails"], 0);
  }
  EXPECT_EQ(m["block"]["write_count"], 2);
  EXPECT_EQ(m["block"]["read_bytes"], 2 * BLK_TWO_COUNT * 512);
}

// A metrics file that does not exist (Firecracker wants it created first) ends kindling before
// the guest runs, with one line that names it.
TEST_F(BlkTest, JsonConfigMissingMetricsFileIsOneErrorLine) {
  const TempDir dir;
  const std::string json_path =
      dir.write("vm.json", std::string(R"({"boot-source": {"kernel_image_path": ")") +
                               TESTGUEST_ELF + R"(", "boot_args": "test=hello"},
  "metrics": {"metrics_path": "absent.fifo"}})");
  const ChildResult r = run_child({KINDLING_BIN, "run", "--config", json_path, "--timeout", "30"});
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "kindling: error: metrics: " + dir.path() +
                       "/absent.fifo: cannot open the metrics file (No such file or directory)\n");
  EXPECT_EQ(r.out.find("testguest"), std::string::npos) << "the guest must not have run";
}

TEST_F(BlkTest, GuestBenchmarkWritesArePersisted) {
  TempImage img(kImageBytes);
  const ChildResult r =
      guest("test=blk-bench blk.n=300 blk.bs=4096 blk.qd=8 blk.pattern=seq blk.op=write blk.seed=6",
            {"--disk", img.path()});
  expect_pass(r, "blk-bench");
  EXPECT_NE(r.out.find("completed=300 errors=0"), std::string::npos) << r.out;
  expect_written(img, 6, 0, 300 * 8);
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, SigtermDuringIoLeavesAConsistentImage) {
  // Sequential 4 KiB writes at depth 16 over a 64 MiB disk: far more than the guest finishes
  // before the signal, so I/O is in flight when SIGTERM arrives.
  TempImage img(64ULL << 20, ImageFs::kDisk, 31);
  ChildOptions opts;
  opts.send_signal = SIGTERM;
  opts.signal_after = std::chrono::milliseconds(1500);
  const ChildResult r = guest(
      "test=blk-bench blk.n=16000 blk.bs=4096 blk.qd=16 blk.pattern=seq blk.op=write blk.seed=8",
      {"--disk", img.path()}, opts);
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_EQ(r.exit_code, 143) << r.out << r.err;
  EXPECT_EQ(r.out.find("blk-bench: ok"), std::string::npos) << "finished before the signal";
  // Every 4 KiB block is either untouched or entirely the pattern (no torn block), and the
  // written blocks are a prefix up to the in-flight window.
  const std::vector<uint8_t> got = img.read_back();
  const std::vector<uint8_t>& old = img.shadow();
  const uint64_t blocks = got.size() / 4096;
  uint64_t written = 0, last_written = 0, first_untouched = blocks;
  for (uint64_t b = 0; b < blocks; ++b) {
    bool pattern = true, untouched = true;
    for (uint64_t s = b * 8; s < b * 8 + 8; ++s) {
      const bool p = sector_is_pattern(got.data() + s * kSector, 8, s);
      const bool u = std::memcmp(got.data() + s * kSector, old.data() + s * kSector, kSector) == 0;
      pattern = pattern && p;
      untouched = untouched && u;
    }
    ASSERT_TRUE(pattern || untouched) << "block " << b << " is torn";
    if (pattern) {
      ++written;
      last_written = b;
    } else if (first_untouched == blocks) {
      first_untouched = b;
    }
  }
  EXPECT_GT(written, 16u) << "no I/O happened before the signal";
  EXPECT_LE(last_written, first_untouched + 16) << "a hole wider than the queue depth";
}

TEST_F(BlkTest, SigkillAfterACompletedFlushLosesNothing) {
  // The guest writes, flushes, reads back and then idles; kindling is killed with no chance to
  // drain or sync: what the guest saw completed must already be on the image.
  TempImage img(kImageBytes);
  ChildOptions opts;
  opts.send_signal = SIGKILL;
  opts.signal_after = std::chrono::milliseconds(2000);
  const ChildResult r = guest("test=blk-rw blk.seed=12 then=idle", {"--disk", img.path()}, opts);
  EXPECT_EQ(r.term_signal, SIGKILL) << r.out << r.err;
  ASSERT_NE(r.out.find("testguest: blk-rw: ok"), std::string::npos) << r.out << r.err;
  expect_written(img, 12, BLK_RW_FIRST, BLK_RW_COUNT);
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, SecondKindlingOnAHeldImageIsRefused) {
  TempImage img(kImageBytes);
  ChildOptions first_opts;
  first_opts.send_signal = SIGTERM;
  first_opts.signal_after = std::chrono::milliseconds(4000);
  ChildResult first;
  std::thread holder([&] { first = guest("test=idle", {"--disk", img.path()}, first_opts); });
  // Wait until the first VM holds its lock. /proc/locks is read rather than probing with
  // flock(): a probe's own lock could make the first kindling fail.
  bool held = false;
  for (int i = 0; i < 300 && !held; ++i) {
    held = flock_held(img.path());
    if (!held) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ChildResult rw, ro;
  if (held) {
    rw = run_child(base_args("test=blk-rw", {"--disk", img.path()}));
    ro = run_child(base_args("test=blk-ro", {"--disk", img.path() + ",ro"}));
  }
  holder.join();
  ASSERT_TRUE(held) << "the first kindling never locked the image\n" << first.err;
  for (const ChildResult* r : {&rw, &ro}) {
    ASSERT_TRUE(r->exited);
    EXPECT_EQ(r->exit_code, 2) << r->err;
    EXPECT_NE(
        r->err.find("kindling: error: disk vda: " + img.path() + ": in use by another process"),
        std::string::npos)
        << r->err;
    EXPECT_EQ(std::count(r->err.begin(), r->err.end(), '\n'), 1) << r->err;
  }
  EXPECT_EQ(first.exit_code, 143) << first.err;
  EXPECT_TRUE(img.matches_shadow());
}

TEST_F(BlkTest, BadDisksAreOneErrorLineAndExitTwo) {
  TempImage img(kImageBytes);
  TempImage odd(1000);
  const struct {
    std::vector<std::string> flags;
    std::string says;
  } cases[] = {
      {{"--disk", "/nonexistent/disk.img"}, "disk vda: /nonexistent/disk.img: cannot open"},
      {{"--disk", img.path(), "--disk", img.path() + ",ro"}, "the same image as drives[0]"},
      {{"--disk", odd.path()}, "multiple of 512"},
      {{"--disk", img.path() + ",id=x", "--disk", odd.path() + ",id=x"}, "duplicate drive id"},
  };
  for (const auto& c : cases) {
    const ChildResult r = run_child(base_args("test=blk-rw", c.flags));
    ASSERT_TRUE(r.exited);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.rfind("kindling: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_TRUE(img.matches_shadow());
}

}  // namespace
}  // namespace kindling::test
