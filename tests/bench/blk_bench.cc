// kindling_blk_bench: drives the real virtio-blk device (queue, I/O thread, merging, engine)
// from an in-process driver that uses the same split-ring layout a guest does. The driver keeps
// `qd` requests in flight, publishes and kicks like Linux's virtio_blk, and waits on the
// interrupt eventfd (EVENT_IDX) when it has nothing to do.
//
//   kindling_blk_bench --image FILE --rw randread|randwrite|seqread --bs BYTES --qd N
//                      [--seconds S] [--merge 0|1] [--engine libaio|io_uring|sync] [--seed N]
// prints one line: `iops=N mbps=M io_submit=C merged=K requests=R p50_us=X p99_us=Y ...
// odirect=0|1 seed=N bytes_per_s=B throttled=T` (MB/s is 10^6 bytes per second, like fio's
// figure in parentheses; `throttled`: requests the --limit rate limiter held back).
//
// Fair to fio: random offsets are drawn from a fresh seed each run (fio randrepeat=0), the
// write buffers hold random bytes and each write changes some of them (as fio's default
// scramble_buffers), and `odirect` reports whether the image's fd really has O_DIRECT, read from
// /proc/self/fdinfo rather than from the device's own account.
#include <linux/virtio_blk.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/log.h"
#include "tests/support/blk_driver.h"
#include "virtio/blk_device.h"

namespace {

using kindling::block::RateLimiterConfig;
using kindling::block::TokenBucketConfig;
using kindling::test::BlkDone;
using kindling::test::BlkDriver;
using kindling::virtio::BlockDevice;
using kindling::virtio::BlockOptions;

struct Args {
  std::string image;
  std::string rw = "randread";
  uint32_t bs = 4096;
  uint16_t qd = 32;
  double seconds = 5;
  bool merge = true;
  std::string engine = "libaio";
  bool stats = false;
  uint32_t poll_us = 0;
  std::string limit = "none";  // the drive's rate limiter (see limiter_for)
  uint64_t seed = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
};

[[noreturn]] void usage(const char* why) {
  fprintf(
      stderr,
      "kindling_blk_bench: %s\nusage: kindling_blk_bench --image FILE --rw "
      "randread|randwrite|seqread --bs BYTES --qd N [--seconds S] [--merge 0|1] "
      "[--engine libaio|io_uring|sync] [--poll-us N] [--seed N] [--limit none|bw=BYTES|ops=N|huge] "
      "[--stats]\n",
      why);
  exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--stats") {
      a.stats = true;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value for " + k).c_str());
    std::string v = argv[++i];
    if (k == "--image")
      a.image = v;
    else if (k == "--rw")
      a.rw = v;
    else if (k == "--bs")
      a.bs = static_cast<uint32_t>(std::stoul(v));
    else if (k == "--qd")
      a.qd = static_cast<uint16_t>(std::stoul(v));
    else if (k == "--seconds")
      a.seconds = std::stod(v);
    else if (k == "--merge")
      a.merge = v != "0";
    else if (k == "--engine")
      a.engine = v;
    else if (k == "--limit")
      a.limit = v;
    else if (k == "--seed")
      a.seed = std::stoull(v);
    else if (k == "--poll-us")
      a.poll_us = static_cast<uint32_t>(std::stoul(v));
    else
      usage(("unknown option " + k).c_str());
  }
  if (a.image.empty()) usage("--image is required");
  if (a.rw != "randread" && a.rw != "randwrite" && a.rw != "seqread") usage("bad --rw");
  if (a.bs == 0 || a.bs % 512 != 0 || a.bs > 1024 * 1024) usage("bad --bs");
  if (a.qd == 0 || a.qd > 128) usage("bad --qd (1..128)");
  return a;
}

// The drive's rate limiter for --limit: none; bw=BYTES or ops=N per second (a bucket of a tenth
// of that, refilled every 100 ms); huge: buckets that never run dry, so every request is
// charged and none held (the limiter's own cost).
RateLimiterConfig limiter_for(const std::string& limit) {
  RateLimiterConfig c;
  auto per_second = [&](size_t prefix) {
    uint64_t n = std::stoull(limit.substr(prefix));
    if (n < 10) usage("a limit below 10 per second");
    return TokenBucketConfig{n / 10, 0, 100};
  };
  if (limit == "none") return c;
  if (limit == "huge") {
    c.bandwidth = TokenBucketConfig{uint64_t{1} << 50, 0, 1};
    c.ops = TokenBucketConfig{uint64_t{1} << 40, 0, 1};
  } else if (limit.rfind("bw=", 0) == 0) {
    c.bandwidth = per_second(3);
  } else if (limit.rfind("ops=", 0) == 0) {
    c.ops = per_second(4);
  } else {
    usage(("bad --limit " + limit).c_str());
  }
  return c;
}

// 1 when an fd of this process open on `image` has O_DIRECT in its flags (/proc/self/fdinfo),
// 0 when none has, -1 when none is open on it.
int image_fd_has_odirect(const std::string& image) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path want = fs::canonical(image, ec);
  int found = -1;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd", ec)) {
    if (fs::read_symlink(entry.path(), ec) != want || ec) continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    std::string key;
    unsigned flags = 0;
    while (info >> key) {
      if (key == "flags:") {
        info >> std::oct >> flags;
        break;
      }
    }
    found = std::max(found, (flags & O_DIRECT) != 0 ? 1 : 0);
  }
  return found;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  BlockOptions o;
  o.path = a.image;
  o.engine = a.engine;
  o.merge = a.merge;
  o.poll_us = a.poll_us;
  o.rate_limiter = limiter_for(a.limit);
  auto dev = BlockDevice::open(o);
  if (!dev) {
    fprintf(stderr, "kindling_blk_bench: %s\n", dev.error().message().c_str());
    return 1;
  }
  BlkDriver::Options dopt;
  dopt.max_data = a.bs;
  BlkDriver drv(dopt);
  if (!drv.activate(**dev)) return 1;

  const uint64_t blocks = (*dev)->disk().capacity_sectors * 512 / a.bs;
  const uint32_t type = a.rw == "randwrite" ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  std::mt19937_64 rng(a.seed);
  uint64_t next_seq = 0;
  auto next_sector = [&]() -> uint64_t {
    uint64_t block;
    if (a.rw == "seqread") {
      block = next_seq;
      next_seq = (next_seq + 1) % blocks;
    } else {
      block = rng() % blocks;
    }
    return block * (a.bs / 512);
  };
  for (uint16_t t = 0; t < a.qd; ++t) {
    for (auto& b : drv.data(t)) b = static_cast<uint8_t>(rng());
  }
  // Before each write: 8 random bytes at a random place in its buffer (fio's scramble_buffers).
  auto scramble = [&](uint16_t tag) {
    if (type != VIRTIO_BLK_T_OUT) return;
    uint64_t v = rng();
    memcpy(drv.data(tag).data() + (v % (a.bs / 8)) * 8, &v, sizeof(v));
  };

  uint64_t completed = 0, errors = 0;
  std::vector<BlkDone> done;
  done.reserve(a.qd);
  // No warm-up, as fio's default (ramp_time=0): the clock starts with the first submission.
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration<double>(a.seconds);
  for (uint16_t t = 0; t < a.qd; ++t) {
    scramble(t);
    drv.add(t, type, next_sector(), a.bs);
  }
  drv.kick();
  uint64_t in_flight = a.qd;
  bool stopping = false;
  while (in_flight > 0) {
    done.clear();
    if (drv.wait(done, 5000) == 0) {
      fprintf(stderr, "kindling_blk_bench: no completion within 5 s\n");
      return 1;
    }
    bool added = false;
    for (const BlkDone& d : done) {
      --in_flight;
      ++completed;
      if (d.status != VIRTIO_BLK_S_OK) ++errors;
      if (!stopping) {
        scramble(d.tag);
        drv.add(d.tag, type, next_sector(), a.bs);
        ++in_flight;
        added = true;
      }
    }
    if (added) drv.kick();
    if (!stopping && std::chrono::steady_clock::now() >= deadline) stopping = true;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int odirect = image_fd_has_odirect(a.image);  // while the device still holds it open
  drv.reset();
  auto s = (*dev)->stats();
  double iops = static_cast<double>(completed) / secs;
  double mbps = iops * a.bs / 1e6;
  printf(
      "iops=%.0f mbps=%.1f io_submit=%llu merged=%llu requests=%llu errors=%llu p50_us=%.1f "
      "p99_us=%.1f kicks=%llu interrupts=%llu odirect=%d seed=%llu bytes_per_s=%.0f "
      "throttled=%llu\n",
      iops, mbps, static_cast<unsigned long long>(s.io_submit_calls),
      static_cast<unsigned long long>(s.merged_groups), static_cast<unsigned long long>(completed),
      static_cast<unsigned long long>(errors),
      static_cast<double>(s.latency.percentile(0.5)) / 1000.0,
      static_cast<double>(s.latency.percentile(0.99)) / 1000.0,
      static_cast<unsigned long long>(drv.kicks()), static_cast<unsigned long long>(s.interrupts),
      odirect, static_cast<unsigned long long>(a.seed), iops * a.bs,
      static_cast<unsigned long long>(s.rate_limiter_throttled_events));
  if (a.stats) printf("%s", kindling::virtio::format_stats(s).c_str());
  return errors == 0 ? 0 : 1;
}
