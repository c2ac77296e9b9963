// kindling_ratelimit_bench: the virtio-blk device with a rate limiter, driven in-process like
// kindling_blk_bench (same split ring, same driver), to measure what the limiter holds a disk
// to and what it costs when it does not bind.
//
//   kindling_ratelimit_bench --image FILE --limit none|plain|bw=BYTES|ops=N|huge
//                            [--seconds S] [--bs BYTES] [--qd N]
//   none:  no rate limiter configured (the plain device)
//   bw=B:  a bandwidth bucket of B/10 bytes refilled every 100 ms (B bytes per second)
//   ops=N: an ops bucket of N/10 requests refilled every 100 ms (N requests per second)
//   huge:  both buckets, too big to ever run dry (every request is charged, none waits)
// Random 4 KiB reads at depth 32 by default. Prints one line:
//   `bytes_per_s=N iops=N requests=N seconds=S throttled=N limiter_events=N`
// The buckets hold a tenth of a second, so the initial full bucket adds 1 % to a 10 s figure.
#include <linux/virtio_blk.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

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
  std::string limit = "none";
  double seconds = 10;
  uint32_t bs = 4096;
  uint16_t qd = 32;
};

[[noreturn]] void usage(const std::string& why) {
  fprintf(stderr,
          "kindling_ratelimit_bench: %s\nusage: kindling_ratelimit_bench --image FILE "
          "--limit none|bw=BYTES|ops=N|huge [--seconds S] [--bs BYTES] [--qd N]\n",
          why.c_str());
  exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--image")
      a.image = v;
    else if (k == "--limit")
      a.limit = v;
    else if (k == "--seconds")
      a.seconds = std::stod(v);
    else if (k == "--bs")
      a.bs = static_cast<uint32_t>(std::stoul(v));
    else if (k == "--qd")
      a.qd = static_cast<uint16_t>(std::stoul(v));
    else
      usage("unknown option " + k);
  }
  if (argc % 2 == 0) usage("an option without its value");
  if (a.image.empty()) usage("--image is required");
  if (a.bs == 0 || a.bs % 512 != 0 || a.bs > 1024 * 1024) usage("bad --bs");
  if (a.qd == 0 || a.qd > 128) usage("bad --qd (1..128)");
  return a;
}

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
    usage("bad --limit " + limit);
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  BlockOptions o;
  o.path = a.image;
  o.read_only = true;
  o.rate_limiter = limiter_for(a.limit);
  auto dev = BlockDevice::open(o);
  if (!dev) {
    fprintf(stderr, "kindling_ratelimit_bench: %s\n", dev.error().message().c_str());
    return 1;
  }
  BlkDriver::Options dopt;
  dopt.max_data = a.bs;
  BlkDriver drv(dopt);
  if (!drv.activate(**dev)) return 1;

  const uint64_t blocks = (*dev)->disk().capacity_sectors * 512 / a.bs;
  std::mt19937_64 rng(11);
  auto next_sector = [&] { return rng() % blocks * (a.bs / 512); };

  uint64_t completed = 0, errors = 0, in_flight = 0;
  std::vector<BlkDone> done;
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration<double>(a.seconds);
  for (uint16_t t = 0; t < a.qd; ++t, ++in_flight) drv.add(t, VIRTIO_BLK_T_IN, next_sector(), a.bs);
  drv.kick();
  bool stopping = false;
  while (in_flight > 0) {
    done.clear();
    if (drv.wait(done, 5000) == 0) {
      fprintf(stderr, "kindling_ratelimit_bench: no completion within 5 s\n");
      return 1;
    }
    for (const BlkDone& d : done) {
      --in_flight;
      ++completed;
      if (d.status != VIRTIO_BLK_S_OK) ++errors;
      if (!stopping) {
        drv.add(d.tag, VIRTIO_BLK_T_IN, next_sector(), a.bs);
        ++in_flight;
      }
    }
    if (!stopping) drv.kick();
    if (!stopping && std::chrono::steady_clock::now() >= deadline) stopping = true;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  drv.reset();
  auto s = (*dev)->stats();
  printf(
      "bytes_per_s=%.0f iops=%.1f requests=%llu seconds=%.3f throttled=%llu limiter_events=%llu\n",
      static_cast<double>(completed) * a.bs / secs, static_cast<double>(completed) / secs,
      static_cast<unsigned long long>(completed), secs,
      static_cast<unsigned long long>(s.rate_limiter_throttled_events),
      static_cast<unsigned long long>(s.rate_limiter_event_count));
  return errors == 0 ? 0 : 1;
}
