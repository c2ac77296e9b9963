#include "virtio/blk_device.h"

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#define VIRTIO_RING_NO_LEGACY  // its legacy vring_init() is not valid C++
#include <linux/virtio_ring.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

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

enum : uint32_t {
  kTagStop = 1,
  kTagNotify = 2,
  kTagEngine = 3,
  kTagLimiterTimer = 4,
  kTagLimiterUpdate = 5,
  kTagReplace = 6,
};

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
  auto engine = block::make_engine(options.engine, *owned, options.queue_size, options.seccomp);
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
  UniqueFd timer(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer) {
    return fail(BlockDeviceError::kThread, errno, "virtio-blk rate limiter timerfd_create");
  }
  // Not waited for here: the thread builds its filter while the rest of the VM is built.
  auto worker =
      seccomp::Worker::launch(seccomp::ThreadKind::kBlockIo, options.thread_name, options.seccomp);
  if (!worker)
    return fail(BlockDeviceError::kThread, worker.error().sys_errno, worker.error().message());
  std::unique_ptr<BlockDevice> d(
      new BlockDevice(options, capacity_bytes, physical_block, std::move(engine), dev, ino));
  d->worker_ = std::move(*worker);
  d->limiter_timer_ = std::move(timer);
  return d;
}

Result<void, BlockDeviceErr> BlockDevice::confined() const {
  if (auto ok = worker_->confined(); !ok) {
    return fail(BlockDeviceError::kThread, ok.error().sys_errno, ok.error().message());
  }
  return {};
}

BlockDevice::BlockDevice(const BlockOptions& options, uint64_t capacity_bytes,
                         uint32_t physical_block, std::unique_ptr<block::IoEngine> engine,
                         uint64_t dev, uint64_t ino)
    : options_(options), engine_(std::move(engine)), limiter_config_(options.rate_limiter) {
  facts_.capacity_sectors = capacity_bytes >> kSectorShift;
  facts_.read_only = options.read_only;
  facts_.serial = make_serial(options.serial, dev, ino);

  features_ = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) |
              bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_BLK_F_SIZE_MAX) |
              bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH) |
              bit(VIRTIO_BLK_F_TOPOLOGY);
  if (facts_.read_only) features_ |= bit(VIRTIO_BLK_F_RO);
  // A read-only disk offers neither: its driver never asks, and the parser refuses them.
  facts_.discard = facts_.write_zeroes = !facts_.read_only;
  if (facts_.discard) features_ |= bit(VIRTIO_BLK_F_DISCARD);
  if (facts_.write_zeroes) features_ |= bit(VIRTIO_BLK_F_WRITE_ZEROES);

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
  if (facts_.discard) {
    config_.max_discard_sectors = kMaxDiscardSectors;
    config_.max_discard_seg = kMaxDiscardSeg;
    // The guest's discard granularity: the host block, the unit a hole can free.
    config_.discard_sector_alignment = per_physical;
  }
  if (facts_.write_zeroes) {
    config_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
    config_.max_write_zeroes_seg = kMaxWriteZeroesSeg;
    config_.write_zeroes_may_unmap = 1;  // the unmap flag is honoured (PUNCH_HOLE)
  }
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
  std::lock_guard lock(config_mu_);
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
  std::lock_guard replacing(replace_mu_);
  if (active()) return fail(DeviceError::kActivate, 0, "virtio-blk already active");
  if (ctx.queues.size() != 1 || ctx.notifies.size() != 1) {
    return fail(DeviceError::kBadQueue, 0, "virtio-blk has exactly one queue");
  }
  if (!ctx.queues[0].ready()) return fail(DeviceError::kBadQueue, 0, "virtio-blk queue not ready");
  auto stop = EventFd::create();
  if (!stop) return fail(DeviceError::kActivate, stop.error().sys_errno, "virtio-blk stop eventfd");
  auto update = EventFd::create();
  if (!update) {
    return fail(DeviceError::kActivate, update.error().sys_errno, "virtio-blk limiter eventfd");
  }
  auto replace = EventFd::create();
  if (!replace) {
    return fail(DeviceError::kActivate, replace.error().sys_errno, "virtio-blk replace eventfd");
  }
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return fail_errno(DeviceError::kActivate, "virtio-blk epoll_create1");
  const std::pair<int, uint32_t> fds[] = {{stop->fd(), kTagStop},
                                          {ctx.notifies[0].fd(), kTagNotify},
                                          {engine_->notifier_fd(), kTagEngine},
                                          {limiter_timer_.get(), kTagLimiterTimer},
                                          {update->fd(), kTagLimiterUpdate},
                                          {replace->fd(), kTagReplace}};
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
  held_.reset();
  {
    std::lock_guard lock(limiter_mu_);
    limiter_ = block::RateLimiter(limiter_config_, now_ns());
    limiter_update_.emplace(std::move(*update));
  }
  stop_.emplace(std::move(*stop));
  replace_wakeup_.emplace(std::move(*replace));
  epoll_ = std::move(ep);
  if (!worker_->run([this] { run(); })) {
    return fail(DeviceError::kActivate, 0, "virtio-blk I/O thread busy");
  }
  return {};
}

void BlockDevice::reset() {
  std::lock_guard replacing(replace_mu_);
  config_.seg_max = seg_max_for(options_.queue_size);  // the queue is back at its maximum
  if (!active()) return;
  if (auto r = stop_->signal(); !r) KLOG_ERROR("virtio-blk: %s", r.error().message().c_str());
  worker_->wait();
  {
    std::lock_guard lock(stats_mu_);
    base_ = stats_;
  }
  {
    std::lock_guard lock(limiter_mu_);
    limiter_update_.reset();
  }
  held_.reset();  // popped, never answered: the driver owns the chain again after a reset
  // The next activation may bring other guest memory at the same address (a new VM, a test's
  // driver): it registers again rather than trusting the pointer.
  registered_mem_ = nullptr;
  // The limiter's timer stays (made in open(): activation runs on a vCPU thread, whose seccomp
  // filter has no timerfd_create); an expiry left armed only wakes the next I/O thread once.
  merge_.reset();
  pool_.reset();
  epoll_.reset();
  stop_.reset();
  replace_wakeup_.reset();
  mem_ = nullptr;
  queue_ = nullptr;
  notify_ = nullptr;
  interrupt_ = nullptr;
}

void BlockDevice::set_rate_limiter(const block::RateLimiterConfig& config) {
  std::lock_guard lock(limiter_mu_);
  limiter_config_ = config;
  if (!limiter_update_) return;  // inactive: activate() builds the limiter from the config
  if (auto r = limiter_update_->signal(); !r) {
    KLOG_ERROR("virtio-blk: rate limiter update: %s", r.error().message().c_str());
  }
}

block::RateLimiterConfig BlockDevice::rate_limiter() const {
  std::lock_guard lock(limiter_mu_);
  return limiter_config_;
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
  // Guest RAM for the engine (io_uring's fixed buffers), here on the I/O thread rather than in
  // activate(): that runs on a vCPU thread, whose seccomp filter has no io_uring_register.
  // Nothing is in flight before the first activation or after a reset (drained).
  register_guest_memory();
  epoll_event evs[6];
  while (true) {
    int n = wait_events(evs);
    if (n < 0) {
      if (errno == EINTR) continue;
      KLOG_ERROR("virtio-blk: epoll_wait: %s", strerror(errno));
      break;
    }
    bool stop = false, kick = false, done = false, timer = false, update = false;
    bool replace = false;
    for (int i = 0; i < n; ++i) {
      stop |= evs[i].data.u32 == kTagStop;
      kick |= evs[i].data.u32 == kTagNotify;
      done |= evs[i].data.u32 == kTagEngine;
      timer |= evs[i].data.u32 == kTagLimiterTimer;
      update |= evs[i].data.u32 == kTagLimiterUpdate;
      replace |= evs[i].data.u32 == kTagReplace;
    }
    if (stop) break;
    std::lock_guard lock(stats_mu_);
    if (replace) {
      (void)replace_wakeup_->consume();
      run_replacement();
    }
    ++stats_.batches;
    // Completions first: they free room for the requests the kick brings. The driver hears
    // about them before we spend time submitting, so that it refills the ring meanwhile.
    if (done) {
      reap();
      notify_driver();
    }
    if (kick) (void)notify_->consume();
    if (timer) {
      uint64_t expirations = 0;
      (void)!read(limiter_timer_.get(), &expirations, sizeof(expirations));  // EAGAIN: fine
      ++stats_.rate_limiter_event_count;
    }
    if (update) apply_rate_limiter();
    if ((kick || stalled_ || timer || update) && !broken_) process_queue();
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
  // Still throttled: the limiter's timer resumes popping.
  if (held_ && !admit_held()) return;
  while (true) {
    if (auto r = queue_->disable_notification(*mem_); !r) {
      return broken("disable_notification", r.error().message());
    }
    while (room() && !held_) {
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
    // Throttled: the rest stays in the guest's ring, notifications off, until the timer fires.
    if (held_) return;
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
  if (!admit(req)) {
    held_ = slot;
    return;
  }
  dispatch(slot);
}

void BlockDevice::dispatch(uint16_t slot) {
  VirtIOBlockReq& req = (*pool_)[slot];
  if (req.immediate()) {
    if (req.type == BlkReqType::kGetId) write_serial(facts_, req);
    return complete(slot, req.status);
  }
  if (req.type == BlkReqType::kFlush) {
    merge_->add_flush(slot);
  } else if (req.type == BlkReqType::kDiscard || req.type == BlkReqType::kWriteZeroes) {
    merge_->add_range(slot);
  } else {
    merge_->add(slot);
  }
}

bool BlockDevice::admit(const VirtIOBlockReq& req) {
  if (limiter_.unlimited()) return true;
  // One op per request, as in Firecracker; bytes only for the data of a valid read or write.
  const bool data = (req.type == BlkReqType::kIn || req.type == BlkReqType::kOut) &&
                    req.status == VIRTIO_BLK_S_OK;
  const uint64_t bytes = data ? req.data_bytes : 0;
  const uint64_t now = now_ns();
  if (limiter_.consume(bytes, now)) return true;
  ++stats_.rate_limiter_throttled_events;
  arm_limiter_timer(limiter_.ready_at(bytes, now));
  return false;
}

bool BlockDevice::admit_held() {
  const uint16_t slot = *held_;
  if (!admit((*pool_)[slot])) return false;
  held_.reset();
  dispatch(slot);
  return true;
}

void BlockDevice::arm_limiter_timer(uint64_t at_ns) {
  itimerspec its{};
  at_ns = std::max<uint64_t>(at_ns, 1);  // zero would disarm it
  its.it_value.tv_sec = static_cast<time_t>(at_ns / 1'000'000'000ULL);
  its.it_value.tv_nsec = static_cast<long>(at_ns % 1'000'000'000ULL);
  if (timerfd_settime(limiter_timer_.get(), TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
    KLOG_ERROR_RATELIMITED("virtio-blk: timerfd_settime: %s", strerror(errno));
  }
}

void BlockDevice::apply_rate_limiter() {
  (void)limiter_update_->consume();
  std::lock_guard lock(limiter_mu_);
  limiter_ = block::RateLimiter(limiter_config_, now_ns());
  ++stats_.rate_limiter_event_count;
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
  // A DISCARD / WRITE_ZEROES with flags or segments the device does not take counts as UNSUPP.
  switch (status == VIRTIO_BLK_S_UNSUPP ? BlkReqType::kUnsupported : req.type) {
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
    case BlkReqType::kDiscard:
      ++stats_.discards;
      break;
    case BlkReqType::kWriteZeroes:
      ++stats_.write_zeroes;
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

bool BlockDevice::await_engine() {
  if (auto r = engine_->flush_submissions(); !r) {
    KLOG_ERROR_RATELIMITED("virtio-blk: submission failed: %s", r.error().message().c_str());
  }
  pollfd p{engine_->notifier_fd(), POLLIN, 0};
  if (poll(&p, 1, 1000) < 0 && errno != EINTR) {
    KLOG_ERROR("virtio-blk: poll: %s", strerror(errno));
    return false;
  }
  return true;
}

void BlockDevice::drain_in_flight() {
  // After a reset the driver owns its memory again: finish what the kernel still holds (it
  // writes into guest buffers until it completes), then forget every request without a push.
  std::lock_guard lock(stats_mu_);
  dropping_ = true;
  while (engine_->in_flight() > 0) {
    if (!await_engine()) break;
    reap_completions();  // not reap(): after a reset nothing deferred may reach the engine
  }
  update_counters();
}

// ---------------------------------------------------------------- image replacement

Result<void, BlockDeviceErr> BlockDevice::replace_image(const std::string& path) {
  block::OpenOptions open_options = options_.open;
  open_options.allow_direct = options_.direct;
  auto opened = block::RawImage::open(path, facts_.read_only, open_options);
  if (!opened) {
    const auto& e = opened.error();
    return fail(BlockDeviceError::kImage, e.sys_errno, e.message());
  }
  // The engine keeps a reference to the image: give the image its final address first.
  auto image = std::make_unique<block::RawImage>(std::move(*opened));
  auto engine = block::make_engine(options_.engine, *image, options_.queue_size);
  if (!engine) {
    const auto& e = engine.error();
    return fail(BlockDeviceError::kEngine, e.sys_errno, e.message());
  }
  std::lock_guard replacing(replace_mu_);
  if (!active()) {
    install(image, *engine);
    engine->reset();  // the old engine, then the old image, go here
    return {};
  }
  std::unique_lock job(job_mu_);
  job_image_ = std::move(image);
  job_engine_ = std::move(*engine);
  job_pending_ = true;
  if (auto r = replace_wakeup_->signal(); !r) {
    job_pending_ = false;
    return fail(BlockDeviceError::kThread, r.error().sys_errno, "virtio-blk replace eventfd");
  }
  // reset() cannot run meanwhile (replace_mu_), so the thread is there to answer.
  job_cv_.wait(job, [this] { return !job_pending_; });
  // The I/O thread handed back the old engine and image: they are closed here, not under the
  // I/O thread's seccomp filter (io_destroy, close). The engine refers to the image: first.
  job_engine_.reset();
  job_image_.reset();
  return {};
}

void BlockDevice::run_replacement() {
  std::unique_ptr<block::RawImage> image;
  std::unique_ptr<block::IoEngine> engine;
  {
    std::lock_guard job(job_mu_);
    if (!job_pending_) return;
    image = std::move(job_image_);
    engine = std::move(job_engine_);
  }
  // Every request popped so far goes to the old image and completes to the driver: submit
  // what is buffered, then reap until the old engine holds nothing.
  merge_->submit();
  while (engine_->in_flight() > 0 || merge_->buffered() > 0 || merge_->deferred() > 0) {
    if (!await_engine()) break;
    reap();
    merge_->submit();
  }
  notify_driver();
  update_counters();
  base_.submissions = stats_.submissions;
  base_.merged_groups = stats_.merged_groups;
  base_.merged_requests = stats_.merged_requests;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, engine_->notifier_fd(), nullptr);
  install(image, engine);   // `image` and `engine` are the old ones now
  register_guest_memory();  // the new engine, as the first one (io_uring's fixed buffers)
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kTagEngine;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, engine_->notifier_fd(), &ev) != 0) {
    broken("epoll_ctl", strerror(errno));
  }
  MergeLimits limits;
  limits.merge = options_.merge;
  merge_ =
      std::make_unique<MultiReqBuffer>(*pool_, *engine_, static_cast<RequestSink&>(*this), limits);
  // Spec 4.2.2.1 / 2.5.1: the driver learns of the new capacity through a configuration
  // change notification (which also moves ConfigGeneration).
  interrupt_->signal_config();
  // Requests the driver queued meanwhile were left in the ring: take them now.
  if (!broken_) process_queue();
  {
    std::lock_guard job(job_mu_);
    job_image_ = std::move(image);
    job_engine_ = std::move(engine);
    job_pending_ = false;
  }
  job_cv_.notify_all();
}

void BlockDevice::register_guest_memory() {
  if (registered_mem_ == mem_) return;
  std::vector<iovec> ram;
  for (const memory::MemoryRegion& r : mem_->regions()) ram.push_back({r.host, r.size});
  engine_->register_memory(ram);
  registered_mem_ = mem_;
}

void BlockDevice::install(std::unique_ptr<block::RawImage>& image,
                          std::unique_ptr<block::IoEngine>& engine) {
  registered_mem_ = nullptr;  // the new engine has no guest RAM yet
  // What the guest wrote to the old image is made stable before it goes, as at shutdown.
  merge_.reset();
  std::swap(engine_, engine);
  if (image_ && !facts_.read_only && ::fdatasync(image_->fd()) != 0) {
    KLOG_WARN("virtio-blk: fdatasync of the replaced image failed: %s", strerror(errno));
  }
  std::swap(image_, image);
  facts_.capacity_sectors = image_->size_bytes() >> kSectorShift;
  std::lock_guard lock(config_mu_);
  config_.capacity = facts_.capacity_sectors;
}

}  // namespace kindling::virtio
