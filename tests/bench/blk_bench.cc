// kindling_blk_bench: drives the real virtio-blk device (queue, I/O thread, merging, engine)
// from an in-process driver that uses the same split-ring layout a guest does. The driver keeps
// `qd` requests in flight, publishes and kicks like Linux's virtio_blk, and waits on the
// interrupt eventfd (EVENT_IDX) when it has nothing to do.
//
//   kindling_blk_bench --image FILE --rw randread|randwrite|seqread --bs BYTES --qd N
//                      [--seconds S] [--merge 0|1] [--engine libaio|io_uring|sync]
// prints one line: `iops=N mbps=M io_submit=C merged=K requests=R p50_us=X p99_us=Y`
// (MB/s is 10^6 bytes per second, like fio's figure in parentheses).
#include <linux/virtio_blk.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/log.h"
#include "tests/support/blk_driver.h"
#include "virtio/blk_device.h"

namespace {

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
};

[[noreturn]] void usage(const char* why) {
  fprintf(stderr,
          "kindling_blk_bench: %s\nusage: kindling_blk_bench --image FILE --rw "
          "randread|randwrite|seqread --bs BYTES --qd N [--seconds S] [--merge 0|1] "
          "[--engine libaio|io_uring|sync] [--poll-us N] [--stats]\n",
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

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  BlockOptions o;
  o.path = a.image;
  o.engine = a.engine;
  o.merge = a.merge;
  o.poll_us = a.poll_us;
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
  std::mt19937_64 rng(7);
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
  for (uint16_t t = 0; t < a.qd; ++t) memset(drv.data(t).data(), 0x5A ^ t, a.bs);

  uint64_t completed = 0, errors = 0;
  std::vector<BlkDone> done;
  done.reserve(a.qd);
  // No warm-up, as fio's default (ramp_time=0): the clock starts with the first submission.
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration<double>(a.seconds);
  for (uint16_t t = 0; t < a.qd; ++t) drv.add(t, type, next_sector(), a.bs);
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
        drv.add(d.tag, type, next_sector(), a.bs);
        ++in_flight;
        added = true;
      }
    }
    if (added) drv.kick();
    if (!stopping && std::chrono::steady_clock::now() >= deadline) stopping = true;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  drv.reset();
  auto s = (*dev)->stats();
  double iops = static_cast<double>(completed) / secs;
  double mbps = iops * a.bs / 1e6;
  printf(
      "iops=%.0f mbps=%.1f io_submit=%llu merged=%llu requests=%llu errors=%llu p50_us=%.1f "
      "p99_us=%.1f kicks=%llu interrupts=%llu\n",
      iops, mbps, static_cast<unsigned long long>(s.io_submit_calls),
      static_cast<unsigned long long>(s.merged_groups), static_cast<unsigned long long>(completed),
      static_cast<unsigned long long>(errors),
      static_cast<double>(s.latency.percentile(0.5)) / 1000.0,
      static_cast<double>(s.latency.percentile(0.99)) / 1000.0,
      static_cast<unsigned long long>(drv.kicks()), static_cast<unsigned long long>(s.interrupts));
  if (a.stats) printf("%s", kindling::virtio::format_stats(s).c_str());
  return errors == 0 ? 0 : 1;
}
