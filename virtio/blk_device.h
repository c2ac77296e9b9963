// The virtio-blk device (virtio 1.x, section 5.2) and its per-device I/O thread.
//
// One BlockDevice owns an open image, the I/O engine over it, and one thread, started with the
// device (by the builder, before any filter: see common/seccomp/worker.h) and parked until
// activation; while active, it waits in epoll on the queue's notify eventfd, the engine's
// completion fd and a stop eventfd. Each wakeup is one batch: reap completions, push their used
// elements and interrupt the driver (if its EVENT_IDX state asks for it) before anything else; then
// pop every available chain (notifications off, drain, on, re-check); parse; merge; submit; one
// flush_submissions(); and one more interrupt only if requests were answered without I/O (errors,
// GET_ID).
//
// With a rate limiter (BlockOptions::rate_limiter, Firecracker's token buckets), each parsed
// request is charged one op and its data bytes before it is handed on. A request the buckets
// refuse is held (the only one popped and not handed on: the rest stay in the guest's ring,
// order kept), a timerfd in the epoll set is armed for when the tokens are back, and popping
// resumes when it fires or when set_rate_limiter() delivers a new configuration.
//
// For the VMM builder, one call does it all:
//   virtio::BlockOptions o;
//   o.path = "disk.img";
//   auto dev = virtio::BlockDevice::open(o);
// opens and locks the image, creates the engine (libaio, else the named one) sized to the queue
// and returns the device ready to hand to an MMIO transport.
#pragma once

#include <linux/virtio_blk.h>
#include <sys/epoll.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "block/fault_engine.h"
#include "block/io_engine.h"
#include "block/rate_limiter.h"
#include "block/raw_image.h"
#include "common/event_fd.h"
#include "common/result.h"
#include "common/seccomp/worker.h"
#include "common/unique_fd.h"
#include "virtio/blk_merge.h"
#include "virtio/blk_request.h"
#include "virtio/blk_stats.h"
#include "virtio/virtio_device.h"

namespace kindling::virtio {

// How to build one block device.
struct BlockOptions {
  std::string path;               // image file or block device (open() only)
  std::string serial;             // GET_ID answer; empty = derived from the image's dev/inode
  bool read_only = false;         // open read-only and offer VIRTIO_BLK_F_RO
  bool direct = true;             // O_DIRECT when the filesystem allows it (open() only)
  bool merge = true;              // merge contiguous requests (off: to measure merging)
  uint16_t queue_size = 256;      // the queue's maximum size (a power of two)
  std::string engine = "libaio";  // I/O engine: "libaio" or "sync"
  uint32_t poll_us = 0;           // busy-poll this long for new work before sleeping (0 = off)
  block::OpenOptions open;  // image open options (open() only; `direct` wins over allow_direct)
  bool seccomp = false;     // confine the I/O thread (and the engine's) to their allow-lists
  std::string thread_name = "blk";  // the I/O thread's name (a seccomp violation line shows it)
  block::RateLimiterConfig rate_limiter;  // Firecracker's token buckets; none: unlimited
  // Testing only: requests matching these rules fail on purpose (block/fault_engine.h);
  // create() wraps the engine in a FaultEngine when there are any.
  std::vector<block::FaultRule> faults;
};

enum class BlockDeviceError {
  kBadOptions,  // queue size not a power of two in [4, 32768], ...
  kImage,       // the image cannot be opened
  kEngine,      // the engine cannot be created
  kThread,      // epoll / eventfd / thread creation failed
};
const char* to_string(BlockDeviceError e);
using BlockDeviceErr = Error<BlockDeviceError>;

// A virtio-blk device with one request queue and its own I/O thread.
class BlockDevice : public VirtioDevice, private RequestSink {
 public:
  // Opens options.path (locked, O_DIRECT when possible), creates the engine, builds the device.
  static Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> open(const BlockOptions& options);
  // Builds the device over an image already open; creates the engine named in options.
  static Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> create(const BlockOptions& options,
                                                                     block::RawImage image);
  // Builds the device over any engine (tests: a fake). `capacity_bytes` is the disk size,
  // `physical_block` the host's direct-I/O block size (advertised as the physical block and
  // the I/O size hints; the guest's logical block is always 512 bytes), `dev`/`ino` seed the
  // default serial.
  static Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> create_with_engine(
      const BlockOptions& options, uint64_t capacity_bytes, uint32_t physical_block,
      std::unique_ptr<block::IoEngine> engine, uint64_t dev = 0, uint64_t ino = 0);

  ~BlockDevice() override;
  BlockDevice(const BlockDevice&) = delete;
  BlockDevice& operator=(const BlockDevice&) = delete;

  // --- VirtioDevice ---
  uint32_t device_type() const override;
  uint64_t device_features() const override { return features_; }
  uint16_t num_queues() const override { return 1; }
  uint16_t queue_max_size() const override { return options_.queue_size; }
  // Advertises the seg_max that fits the queue the driver chose.
  void queue_size_selected(uint16_t index, uint16_t size) override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  Result<void, DeviceErr> activate(const ActivateContext& ctx) override;
  void reset() override;

  // A snapshot of the counters (exact once the device is reset; live while active).
  BlockStats stats() const;
  // The engine's counters (requests, kernel submissions, bounced requests).
  block::EngineStats engine_stats() const { return engine_->stats(); }
  // What the parser checks requests against (capacity, read-only, serial).
  const DiskFacts& disk() const { return facts_; }
  // Whether the I/O thread is running the queue.
  bool active() const { return worker_ && worker_->has_job(); }
  // The I/O thread confines itself while the VM is still being built (open() does not wait for
  // it): waits until it has, and says why when it could not (the device then never activates).
  // Call before the guest runs.
  Result<void, BlockDeviceErr> confined() const;
  // The image behind the device (nullptr when built over a bare engine): the VMM fdatasyncs
  // it at shutdown and logs how it was opened. Not stable across replace_image().
  const block::RawImage* image() const { return image_.get(); }
  // Replaces the rate limiter (full buckets), from any thread, live: the I/O thread picks it
  // up at its next wakeup (an eventfd wakes it) and re-examines a request it holds back.
  void set_rate_limiter(const block::RateLimiterConfig& config);
  // The rate limiter configuration last set (or given at creation).
  block::RateLimiterConfig rate_limiter() const;
  // Swaps the backing image for the one at `path` (opened like open() does, read-only as the
  // device was built, same engine kind). While active, the I/O thread finishes every request
  // in flight on the old image, switches, updates the capacity in the config space and raises
  // a configuration-change interrupt (the generation moves), so the driver re-reads the size.
  // Any thread; blocks until the switch is done. The old image is closed.
  Result<void, BlockDeviceErr> replace_image(const std::string& path);

 private:
  BlockDevice(const BlockOptions& options, uint64_t capacity_bytes, uint32_t physical_block,
              std::unique_ptr<block::IoEngine> engine, uint64_t dev, uint64_t ino);

  // I/O thread.
  void run();
  int wait_events(std::span<epoll_event> evs);
  void process_queue();
  void handle(uint16_t slot);
  // Hands a parsed request on: answered at once, or to the merge buffer.
  void dispatch(uint16_t slot);
  // Charges the request to the rate limiter; false (the timer armed) when it must wait.
  bool admit(const VirtIOBlockReq& req);
  // Dispatches the held request if the limiter lets it through now.
  bool admit_held();
  // Arms the limiter's timerfd for `at_ns` (CLOCK_MONOTONIC).
  void arm_limiter_timer(uint64_t at_ns);
  // Takes the configuration set_rate_limiter() left for the I/O thread.
  void apply_rate_limiter();
  bool room() const;
  // Hands every completion the engine has ready to merge_ (deferred submissions stay deferred).
  void reap_completions();
  // reap_completions(), then offers the deferred submissions again.
  void reap();
  // Signals the interrupt if used elements were pushed and the driver wants to hear (EVENT_IDX).
  void notify_driver();
  void update_counters();
  void drain_in_flight();
  void broken(const char* what, const std::string& why);
  // The replace_image() job the I/O thread runs: finishes the old image's requests, switches.
  void run_replacement();
  // Installs a new image and engine (I/O thread, or no thread running), updating the disk facts
  // and the config space.
  // Puts `image` and `engine` in service; the old ones come back in the same arguments for the
  // caller to destroy (the engine first: it refers to its image).
  void install(std::unique_ptr<block::RawImage>& image, std::unique_ptr<block::IoEngine>& engine);
  // seg_max for a queue of `queue_size` entries: a chain is at most that long (header and
  // status take two), and seg_max * kSizeMax stays within kMaxRequestBytes.
  static uint32_t seg_max_for(uint16_t queue_size);
  void complete(uint16_t slot, uint8_t status) override;

  BlockOptions options_;
  DiskFacts facts_;
  uint64_t features_ = 0;
  virtio_blk_config config_{};
  std::unique_ptr<block::RawImage> image_;  // declared before engine_: outlives it
  std::unique_ptr<block::IoEngine> engine_;

  // The guest memory handed to engine_->register_memory() (kept across resets: same VM).
  const memory::GuestMemory* registered_mem_ = nullptr;  // what engine_ has registered
  // Hands guest RAM to the engine once per engine and memory (I/O thread only).
  void register_guest_memory();
  // Hands the engine what is queued and waits up to 1 s for a completion (I/O thread, or
  // after it stopped). False when waiting fails.
  bool await_engine();
  // Set by activate(), used by the I/O thread only, cleared by reset() after the join.
  const memory::GuestMemory* mem_ = nullptr;
  Queue* queue_ = nullptr;
  const EventFd* notify_ = nullptr;
  DeviceInterrupt* interrupt_ = nullptr;
  std::unique_ptr<RequestPool> pool_;
  std::unique_ptr<MultiReqBuffer> merge_;
  bool stalled_ = false;   // stopped popping: the engine or the pool is full
  bool broken_ = false;    // the driver broke the protocol: no more popping
  bool pushed_ = false;    // used elements pushed in this batch
  bool dropping_ = false;  // resetting: completions are dropped, guest memory untouched

  // The rate limiter: used by the I/O thread only (rebuilt by activate() and on an update).
  block::RateLimiter limiter_;
  UniqueFd limiter_timer_;         // timerfd (from open()): fires when the held request can pass
  std::optional<uint16_t> held_;   // the one request popped and held back by the limiter
  mutable std::mutex limiter_mu_;  // guards limiter_config_ and limiter_update_'s lifetime
  block::RateLimiterConfig limiter_config_;
  std::optional<EventFd> limiter_update_;  // set_rate_limiter() -> I/O thread

  std::optional<EventFd> stop_;
  UniqueFd epoll_;
  // replace_image(): the job handed to the I/O thread, and how it signals back.
  std::optional<EventFd> replace_wakeup_;
  std::mutex replace_mu_;  // serialises replace_image() with activate() and reset()
  std::mutex job_mu_;
  std::condition_variable job_cv_;
  std::unique_ptr<block::RawImage> job_image_;
  std::unique_ptr<block::IoEngine> job_engine_;
  bool job_pending_ = false;
  mutable std::mutex config_mu_;  // config_.capacity changes while the driver may read it
  std::unique_ptr<seccomp::Worker> worker_;  // the I/O thread; runs run() while active

  mutable std::mutex stats_mu_;  // held by the I/O thread while it processes a batch
  BlockStats stats_;
  BlockStats base_;  // merge/engine counters of earlier activations
};

}  // namespace kindling::virtio
