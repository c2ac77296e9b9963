#include "virtio/blk_device.h"

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>
#include <poll.h>
#include <sys/epoll.h>
#include <time.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/log.h"

namespace kindling::virtio {

const char* to_string(BlockDeviceError e) {
  switch (e) {
    case BlockDeviceError::kBadOptions:
      return "bad block device options";
    case BlockDeviceError::kImage:
      return "cannot open the disk image";
    case BlockDeviceError::kEngine:
      return "cannot create the I/O engine";
    case BlockDeviceError::kThread:
      return "cannot start the block I/O thread";
  }
  return "block device error";
}

namespace {

enum : uint32_t { kTagStop = 1, kTagNotify = 2, kTagEngine = 3 };

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr uint64_t bit(unsigned n) {
  return uint64_t{1} << n;
}

}  // namespace

// ---------------------------------------------------------------- construction

Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> BlockDevice::open(
    const BlockOptions& options) {
  block::OpenOptions open_options = options.open;
  open_options.allow_direct = options.direct;
  auto image = block::RawImage::open(options.path, options.read_only, open_options);
  if (!image) {
    const auto& e = image.error();
    return fail(BlockDeviceError::kImage, e.sys_errno, e.message());
  }
  return create(options, std::move(*image));
}

Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> BlockDevice::create(
    const BlockOptions& options, block::RawImage image) {
  // The engine keeps a reference to the image: give the image its final address first.
  auto owned = std::make_unique<block::RawImage>(std::move(image));
  auto engine = block::make_engine(options.engine, *owned, options.queue_size);
  if (!engine) {
    const auto& e = engine.error();
    return fail(BlockDeviceError::kEngine, e.sys_errno, e.message());
  }
  if (!options.faults.empty()) {
    auto faulty = block::FaultEngine::create(std::move(*engine), options.faults);
    if (!faulty) {
      const auto& e = faulty.error();
      return fail(BlockDeviceError::kEngine, e.sys_errno, e.message());
    }
    *engine = std::move(*faulty);
  }
  BlockOptions opts = options;
  opts.read_only = options.read_only || owned->read_only();
  auto made = create_with_engine(opts, owned->size_bytes(), owned->offset_align(),
                                 std::move(*engine), owned->device_id(), owned->inode());
  if (!made) return made.take_error();
  (*made)->image_ = std::move(owned);
  return made;
}

Result<std::unique_ptr<BlockDevice>, BlockDeviceErr> BlockDevice::create_with_engine(
    const BlockOptions& options, uint64_t capacity_bytes, uint32_t physical_block,
    std::unique_ptr<block::IoEngine> engine, uint64_t dev, uint64_t ino) {
  if (options.queue_size < 4 || options.queue_size > 32768 ||
      !std::has_single_bit(options.queue_size)) {
    return fail(BlockDeviceError::kBadOptions, 0,
                "queue size " + std::to_string(options.queue_size) +
                    " (want a power of two in [4, 32768])");
  }
  // The topology fields hold at most 2^255 sectors, min_io_size a u16 count of them.
  if (!std::has_single_bit(physical_block) || physical_block < kSectorSize ||
      physical_block / kSectorSize > UINT16_MAX) {
    return fail(BlockDeviceError::kBadOptions, 0, "block size " + std::to_string(physical_block));
  }
  if (!engine) return fail(BlockDeviceError::kEngine, 0, "no engine");
  return std::unique_ptr<BlockDevice>(
      new BlockDevice(options, capacity_bytes, physical_block, std::move(engine), dev, ino));
}

BlockDevice::BlockDevice(const BlockOptions& options, uint64_t capacity_bytes,
                         uint32_t physical_block, std::unique_ptr<block::IoEngine> engine,
                         uint64_t dev, uint64_t ino)
    : options_(options), engine_(std::move(engine)) {
  facts_.capacity_sectors = capacity_bytes >> kSectorShift;
  facts_.read_only = options.read_only;
  facts_.serial = make_serial(options.serial, dev, ino);

  features_ = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) |
              bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_BLK_F_SIZE_MAX) |
              bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH) |
              bit(VIRTIO_BLK_F_TOPOLOGY);
  if (facts_.read_only) features_ |= bit(VIRTIO_BLK_F_RO);

  // Spec 5.2.4; the host is little-endian like the virtio 1.x wire format.
  config_.capacity = facts_.capacity_sectors;
  config_.size_max = kSizeMax;
  config_.seg_max = seg_max_for(options.queue_size);
  // The guest sees 512-byte logical blocks on every host: one image keeps its partition table
  // and file systems wherever it runs. The engine's alignment layer (bounce buffers,
  // read-modify-write) absorbs a larger host block; the topology tells the guest about it so
  // that it prefers aligned I/O.
  const uint32_t per_physical = physical_block / static_cast<uint32_t>(kSectorSize);
  config_.blk_size = static_cast<uint32_t>(kSectorSize);
  config_.physical_block_exp = static_cast<uint8_t>(std::countr_zero(per_physical));
  config_.alignment_offset = 0;
  config_.min_io_size = static_cast<uint16_t>(per_physical);  // in logical blocks
  config_.opt_io_size = per_physical > 1 ? per_physical : 0;  // 0: no preference
}

BlockDevice::~BlockDevice() {
  reset();
}

uint32_t BlockDevice::device_type() const {
  return VIRTIO_ID_BLOCK;
}

uint32_t BlockDevice::seg_max_for(uint16_t queue_size) {
  uint32_t chain = std::max<uint32_t>(queue_size, 3) - 2;
  return std::min<uint32_t>(chain, kMaxRequestBytes / kSizeMax);
}

void BlockDevice::queue_size_selected(uint16_t index, uint16_t size) {
  // GUEST: any size; one the queue rejects at DRIVER_OK never carries a request.
  if (index == 0 && size > 0 && size <= options_.queue_size) config_.seg_max = seg_max_for(size);
}

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), uint8_t{0});
  if (offset >= sizeof(config_)) return;
  size_t n = std::min<uint64_t>(data.size(), sizeof(config_) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config_) + offset, n);
}

void BlockDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE.
  KLOG_DEBUG_RATELIMITED("virtio-blk: ignored config write of %zu bytes at 0x%llx", data.size(),
                         static_cast<unsigned long long>(offset));
}

// ---------------------------------------------------------------- activation

Result<void, DeviceErr> BlockDevice::activate(const ActivateContext& ctx) {
  if (active()) return fail(DeviceError::kActivate, 0, "virtio-blk already active");
  if (ctx.queues.size() != 1 || ctx.notifies.size() != 1) {
    return fail(DeviceError::kBadQueue, 0, "virtio-blk has exactly one queue");
  }
  if (!ctx.queues[0].ready()) return fail(DeviceError::kBadQueue, 0, "virtio-blk queue not ready");
  auto stop = EventFd::create();
  if (!stop) return fail(DeviceError::kActivate, stop.error().sys_errno, "virtio-blk stop eventfd");
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail_errno(DeviceError::kActivate, "virtio-blk epoll_create1");
  const std::pair<int, uint32_t> fds[] = {{stop->fd(), kTagStop},
                                          {ctx.notifies[0].fd(), kTagNotify},
                                          {engine_->notifier_fd(), kTagEngine}};
  for (auto [fd, tag] : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = tag;
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return fail_errno(DeviceError::kActivate, "virtio-blk epoll_ctl");
    }
  }

  mem_ = &ctx.mem;
  queue_ = &ctx.queues[0];
  config_.seg_max = seg_max_for(queue_->size());
  notify_ = &ctx.notifies[0];
  interrupt_ = &ctx.interrupt;
  pool_ = std::make_unique<RequestPool>(options_.queue_size);
  MergeLimits limits;
  limits.merge = options_.merge;
  merge_ =
      std::make_unique<MultiReqBuffer>(*pool_, *engine_, static_cast<RequestSink&>(*this), limits);
  stalled_ = broken_ = pushed_ = dropping_ = false;
  stop_.emplace(std::move(*stop));
  epoll_ = std::move(ep);
  thread_ = std::thread([this] { run(); });
  return {};
}

void BlockDevice::reset() {
  config_.seg_max = seg_max_for(options_.queue_size);  // the queue is back at its maximum
  if (!thread_.joinable()) return;
  if (auto r = stop_->signal(); !r) KLOG_ERROR("virtio-blk: %s", r.error().message().c_str());
  thread_.join();
  {
    std::lock_guard lock(stats_mu_);
    base_ = stats_;
  }
  merge_.reset();
  pool_.reset();
  epoll_.reset();
  stop_.reset();
  mem_ = nullptr;
  queue_ = nullptr;
  notify_ = nullptr;
  interrupt_ = nullptr;
}

BlockStats BlockDevice::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

// ---------------------------------------------------------------- the I/O thread

int BlockDevice::wait_events(std::span<epoll_event> evs) {
  if (options_.poll_us > 0) {
    // Adaptive polling (QEMU's poll-max-ns idea): right after a batch, the next kick or
    // completion often follows within microseconds; catching it without sleeping saves two
    // context switches per request.
    uint64_t until = now_ns() + uint64_t{options_.poll_us} * 1000;
    do {
      int n = epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), 0);
      if (n != 0) return n;
    } while (now_ns() < until);
  }
  return epoll_wait(epoll_.get(), evs.data(), static_cast<int>(evs.size()), -1);
}

void BlockDevice::run() {
  epoll_event evs[3];
  while (true) {
    int n = wait_events(evs);
    if (n < 0) {
      if (errno == EINTR) continue;
      KLOG_ERROR("virtio-blk: epoll_wait: %s", strerror(errno));
      break;
    }
    bool stop = false, kick = false, done = false;
    for (int i = 0; i < n; ++i) {
      stop |= evs[i].data.u32 == kTagStop;
      kick |= evs[i].data.u32 == kTagNotify;
      done |= evs[i].data.u32 == kTagEngine;
    }
    if (stop) break;
    std::lock_guard lock(stats_mu_);
    ++stats_.batches;
    // Completions first: they free room for the requests the kick brings. The driver hears
    // about them before we spend time submitting, so that it refills the ring meanwhile.
    if (done) {
      reap();
      notify_driver();
    }
    if (kick) (void)notify_->consume();
    if ((kick || stalled_) && !broken_) process_queue();
    if (auto r = engine_->flush_submissions(); !r) {
      KLOG_ERROR_RATELIMITED("virtio-blk: submission failed: %s", r.error().message().c_str());
    }
    notify_driver();  // requests answered without I/O (errors, GET_ID)
    update_counters();
  }
  drain_in_flight();
}

bool BlockDevice::room() const {
  size_t engine_busy = engine_->in_flight() + merge_->buffered() + merge_->deferred();
  return engine_busy < engine_->max_in_flight() && pool_->in_use() < pool_->size();
}

void BlockDevice::process_queue() {
  while (true) {
    if (auto r = queue_->disable_notification(*mem_); !r) {
      return broken("disable_notification", r.error().message());
    }
    while (room()) {
      uint16_t slot = *pool_->acquire();
      auto popped = queue_->pop(*mem_, (*pool_)[slot].elem);
      if (!popped || !*popped) {
        pool_->release(slot);
        if (!popped) return broken("pop", popped.error().message());
        break;
      }
      handle(slot);
      if (broken_) return;
    }
    merge_->submit();
    if (!room()) {
      // Resumed by the completion path; notifications stay off until then.
      stalled_ = true;
      return;
    }
    stalled_ = false;
    auto more = queue_->enable_notification(*mem_);
    if (!more) return broken("enable_notification", more.error().message());
    if (!*more) return;
  }
}

void BlockDevice::handle(uint16_t slot) {
  VirtIOBlockReq& req = (*pool_)[slot];
  req.start_ns = now_ns();
  if (auto p = parse_request(facts_, req); !p) {
    // The request cannot be answered; the chain stays in flight until the driver resets.
    return broken("request", p.error().message());
  }
  if (req.immediate()) {
    if (req.type == BlkReqType::kGetId) write_serial(facts_, req);
    return complete(slot, req.status);
  }
  if (req.type == BlkReqType::kFlush) {
    merge_->add_flush(slot);
  } else {
    merge_->add(slot);
  }
}

void BlockDevice::reap_completions() {
  block::Completion done[64];
  while (true) {
    size_t n = engine_->reap(done);
    for (size_t i = 0; i < n; ++i) merge_->on_completion(done[i]);
    if (n < std::size(done)) break;
  }
}

void BlockDevice::reap() {
  reap_completions();
  merge_->retry_deferred();
}

void BlockDevice::complete(uint16_t slot, uint8_t status) {
  VirtIOBlockReq& req = (*pool_)[slot];
  if (dropping_) {
    pool_->release(slot);
    return;
  }
  // GUEST: status_byte points into a writable guest buffer that pop() bounds-checked.
  *req.status_byte = status;
  uint32_t len = req.used_len(status);
  if (auto r = queue_->push(*mem_, req.elem.head, len); !r) {
    pool_->release(slot);
    return broken("push", r.error().message());
  }
  pushed_ = true;
  stats_.latency.record(now_ns() - req.start_ns);
  if (status == VIRTIO_BLK_S_IOERR) ++stats_.errors;
  switch (req.type) {
    case BlkReqType::kIn:
      ++stats_.reads;
      if (status == VIRTIO_BLK_S_OK) stats_.bytes_read += req.data_bytes;
      break;
    case BlkReqType::kOut:
      ++stats_.writes;
      if (status == VIRTIO_BLK_S_OK) stats_.bytes_written += req.data_bytes;
      break;
    case BlkReqType::kFlush:
      ++stats_.flushes;
      break;
    case BlkReqType::kGetId:
      ++stats_.get_ids;
      break;
    case BlkReqType::kUnsupported:
      ++stats_.unsupported;
      break;
  }
  pool_->release(slot);
}

void BlockDevice::update_counters() {
  const MergeCounters& m = merge_->counters();
  stats_.submissions = base_.submissions + m.submissions;
  stats_.merged_groups = base_.merged_groups + m.merged_groups;
  stats_.merged_requests = base_.merged_requests + m.merged_requests;
  stats_.io_submit_calls = engine_->stats().submit_calls;
}

void BlockDevice::notify_driver() {
  if (!pushed_) return;
  pushed_ = false;
  auto want = queue_->needs_interrupt(*mem_);
  if (!want) return broken("needs_interrupt", want.error().message());
  if (*want) {
    interrupt_->signal_used();
    ++stats_.interrupts;
  }
}

void BlockDevice::broken(const char* what, const std::string& why) {
  if (broken_) return;
  broken_ = true;
  KLOG_ERROR_RATELIMITED("virtio-blk: %s: %s; device needs reset", what, why.c_str());
  interrupt_->mark_needs_reset();
}

void BlockDevice::drain_in_flight() {
  // After a reset the driver owns its memory again: finish what the kernel still holds (it
  // writes into guest buffers until it completes), then forget every request without a push.
  std::lock_guard lock(stats_mu_);
  dropping_ = true;
  while (engine_->in_flight() > 0) {
    if (auto r = engine_->flush_submissions(); !r) {
      KLOG_ERROR_RATELIMITED("virtio-blk: submission failed: %s", r.error().message().c_str());
    }
    pollfd p{engine_->notifier_fd(), POLLIN, 0};
    if (poll(&p, 1, 1000) < 0 && errno != EINTR) {
      KLOG_ERROR("virtio-blk: poll: %s", strerror(errno));
      break;
    }
    reap_completions();  // not reap(): after a reset nothing deferred may reach the engine
  }
  update_counters();
}

}  // namespace kindling::virtio
