#include "vmm/disks.h"

#include <linux/virtio_mmio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "block/raw_image.h"
#include "common/log.h"
#include "virtio/blk_device.h"
#include "virtio/blk_stats.h"
#include "virtio/mmio_transport.h"
#include "vmm/kvm.h"
#include "vmm/machine.h"

namespace kindling::vmm {
namespace {

Unexpected<DiskErr> disk_fail(DiskError code, std::string line) {
  return fail(code, 0, std::move(line));
}

// "disk vda (path)" for messages.
std::string label(const std::string& name, const DriveConfig& drive) {
  std::string out = "disk " + name + " (" + drive.path;
  if (!drive.id.empty()) out += ", id " + drive.id;
  return out + ")";
}

// True when the command line has a `root=` word.
bool has_root(const std::optional<std::string>& cmdline) {
  if (!cmdline) return false;
  std::istringstream words(*cmdline);
  std::string w;
  while (words >> w) {
    if (w.rfind("root=", 0) == 0) return true;
  }
  return false;
}

// Turns the device layer's open error into the user's line (its context already names the
// image and the reason); a lock conflict says who holds it.
DiskErr open_error(const std::string& name, const DriveConfig& drive,
                   const virtio::BlockDeviceErr& e) {
  if (e.code != virtio::BlockDeviceError::kImage) {
    return DiskErr{DiskError::kDevice, 0, label(name, drive) + ": " + e.message()};
  }
  if (e.sys_errno == EWOULDBLOCK) {
    return DiskErr{DiskError::kImage, 0,
                   "disk " + name + ": " + drive.path +
                       ": in use by another process (it holds a conflicting lock; is another "
                       "kindling running on this image?)"};
  }
  return DiskErr{DiskError::kImage, 0, "disk " + name + ": " + e.context};
}

}  // namespace

Result<void, DiskErr> Disks::await_confined() const {
  for (const Disk& d : disks_) {
    if (auto ok = d.device->confined(); !ok) {
      return Unexpected{
          DiskErr{DiskError::kDevice, 0, label(d.name, d.drive) + ": " + ok.error().message()}};
    }
  }
  return {};
}

const char* to_string(DiskError) {
  return "";
}

int exit_code_for(const DiskErr& e) {
  return e.code == DiskError::kImage ? 2 : 1;
}

MmioSlot disk_slot(size_t index) {
  return MmioSlot{kVirtioMmioBase + index * kVirtioMmioSlotSize, kVirtioMmioSlotSize,
                  kVirtioFirstGsi + static_cast<uint32_t>(index)};
}

std::string disk_name(size_t index) {
  // Linux's sd/vd naming: a..z, then aa..zz, ...
  std::string suffix;
  size_t n = index + 1;
  while (n > 0) {
    --n;
    suffix.insert(suffix.begin(), static_cast<char>('a' + n % 26));
    n /= 26;
  }
  return "vd" + suffix;
}

std::string disk_cmdline_fragment(size_t index) {
  const MmioSlot s = disk_slot(index);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "virtio_mmio.device=%lluK@0x%llx:%u",
                static_cast<unsigned long long>(kVirtioMmioSlotSize >> 10),
                static_cast<unsigned long long>(s.base), s.gsi);
  return buf;
}

std::string root_cmdline_fragment(const std::vector<DriveConfig>& drives,
                                  const std::optional<std::string>& cmdline) {
  if (has_root(cmdline)) return {};
  for (size_t i = 0; i < drives.size(); ++i) {
    if (!drives[i].is_root) continue;
    return "root=/dev/" + disk_name(i) + (drives[i].read_only ? " ro" : "");
  }
  return {};
}

namespace {

// One info line per limiting bucket of a drive (Firecracker's semantics: block/rate_limiter.h).
void log_rate_limiter(const std::string& what, const RateLimiterConfig& rl) {
  const std::pair<const char*, const std::optional<TokenBucketConfig>*> buckets[] = {
      {"bytes", &rl.bandwidth}, {"requests", &rl.ops}};
  for (const auto& [unit, b] : buckets) {
    if (!*b || !block::limits(**b)) continue;
    KLOG_INFO("%s: rate limit %llu %s per %llu ms (one-time burst %llu)", what.c_str(),
              static_cast<unsigned long long>((*b)->size), unit,
              static_cast<unsigned long long>((*b)->refill_time_ms),
              static_cast<unsigned long long>((*b)->one_time_burst));
  }
}

}  // namespace

Result<std::unique_ptr<Disks>, DiskErr> Disks::attach(Machine& machine, const VmConfig& config) {
  if (config.drives.size() > kMaxDisks) {
    return disk_fail(DiskError::kImage, std::to_string(config.drives.size()) + " disks: at most " +
                                            std::to_string(kMaxDisks) + " fit the I/O APIC's pins");
  }
  std::unique_ptr<Disks> disks(new Disks(machine.vm()));
  for (size_t i = 0; i < config.drives.size(); ++i) {
    auto ok = disks->attach_one(machine, config, i);
    if (!ok) return ok.take_error();
  }
  return disks;
}

Result<void, DiskErr> Disks::attach_one(Machine& machine, const VmConfig& config, size_t index) {
  const DriveConfig& drive = config.drives[index];
  Disk d;
  d.name = disk_name(index);
  d.drive = drive;
  d.slot = disk_slot(index);
  const std::string what = label(d.name, drive);

  virtio::BlockOptions o;
  o.path = drive.path;
  o.serial = drive.id;
  o.read_only = drive.read_only;
  o.merge = drive.merge;
  o.engine = drive.io_engine;
  o.seccomp = config.seccomp;
  o.thread_name = "blk-" + d.name;  // "blk-vda": names the thread in a seccomp violation line
  o.rate_limiter = drive.rate_limiter;
  o.faults = drive.faults;
  for (const block::FaultRule& rule : drive.faults) {
    KLOG_WARN("%s: fault injection (testing): %s", what.c_str(), block::to_string(rule).c_str());
  }
  auto dev = virtio::BlockDevice::open(o);
  if (!dev) return Unexpected{open_error(d.name, drive, dev.error())};
  d.device = dev->get();
  auto transport = virtio::MmioTransport::create(machine.memory(), std::move(*dev));
  if (!transport) return disk_fail(DiskError::kDevice, what + ": " + transport.error().message());
  d.transport = std::move(*transport);
  const block::RawImage* image = d.device->image();
  KLOG_INFO("%s: %llu MiB, %s, %s I/O (block %u), engine %s, GSI %u at 0x%llx", what.c_str(),
            static_cast<unsigned long long>(d.device->disk().capacity_sectors >> 11),
            drive.read_only ? "read-only" : "read-write",
            image && image->direct() ? "direct" : "buffered", image ? image->offset_align() : 512u,
            drive.io_engine.c_str(), d.slot.gsi, static_cast<unsigned long long>(d.slot.base));

  log_rate_limiter(what, drive.rate_limiter);

  disks_.push_back(std::move(d));
  Disk& added = disks_.back();
  if (auto ok = wire(added); !ok) return ok;
  std::string fragment = disk_cmdline_fragment(index);
  if (drive.is_root) {
    const std::string root = root_cmdline_fragment(config.drives, config.cmdline);
    if (!root.empty()) fragment += " " + root;
  }
  auto ok = machine.attach_virtio_mmio(added.slot, added.transport, std::move(fragment));
  if (!ok) return disk_fail(DiskError::kWiring, what + ": " + ok.error().message());
  return {};
}

Result<void, DiskErr> Disks::wire(Disk& d) {
  const std::string what = label(d.name, d.drive);
  const auto notifies = d.transport->queue_notifies();
  for (size_t q = 0; q < notifies.size(); ++q) {
    auto ok = vm_.register_ioeventfd(d.slot.base + VIRTIO_MMIO_QUEUE_NOTIFY, sizeof(uint32_t), q,
                                     notifies[q]);
    if (!ok) return disk_fail(DiskError::kWiring, what + ": ioeventfd: " + ok.error().message());
    d.ioeventfds = q + 1;
  }
  auto ok = vm_.register_irqfd(d.slot.gsi, d.transport->interrupt_eventfd());
  if (!ok) return disk_fail(DiskError::kWiring, what + ": irqfd: " + ok.error().message());
  d.irqfd = true;
  return {};
}

Disks::~Disks() {
  if (auto ok = shutdown(); !ok) KLOG_ERROR("%s", ok.error().message().c_str());
  for (Disk& d : disks_) {
    const auto notifies = d.transport->queue_notifies();
    for (size_t q = 0; q < d.ioeventfds; ++q) {
      (void)vm_.unregister_ioeventfd(d.slot.base + VIRTIO_MMIO_QUEUE_NOTIFY, sizeof(uint32_t), q,
                                     notifies[q]);
    }
    if (d.irqfd) (void)vm_.unregister_irqfd(d.slot.gsi, d.transport->interrupt_eventfd());
  }
}

Result<void, DiskErr> Disks::shutdown() {
  if (shut_down_) return {};
  shut_down_ = true;
  // Every device first: each reset waits for its own in-flight I/O.
  for (Disk& d : disks_) d.transport->shutdown();
  std::optional<DiskErr> first;
  for (Disk& d : disks_) {
    const block::RawImage* image = d.device->image();
    if (d.drive.read_only || image == nullptr) continue;
    // A guest FLUSH already made its writes stable; this covers writes it never flushed.
    if (::fdatasync(image->fd()) != 0 && !first) {
      first = DiskErr{DiskError::kSync, errno,
                      label(d.name, d.drive) + ": fdatasync at shutdown failed"};
    }
  }
  if (first) return Unexpected{*first};
  return {};
}

std::string Disks::stats_report() const {
  std::string out;
  for (const Disk& d : disks_) {
    out += label(d.name, d.drive) + (d.drive.read_only ? ", read-only" : "") + ", engine " +
           d.drive.io_engine + (d.drive.merge ? "" : ", merging off") + ":\n";
    out += virtio::format_stats(d.device->stats(), "  ");
  }
  return out;
}

virtio::BlockStats Disks::stats(size_t index) const {
  return disks_.at(index).device->stats();
}

Result<void, DiskErr> Disks::replace_image(size_t index, const std::string& path) {
  if (index >= disks_.size())
    return disk_fail(DiskError::kDevice, "no disk " + std::to_string(index));
  Disk& d = disks_[index];
  const std::string what = label(d.name, d.drive);
  if (auto ok = d.device->replace_image(path); !ok) {
    return disk_fail(DiskError::kImage, what + ": " + path + ": " + ok.error().message());
  }
  d.drive.path = path;
  KLOG_INFO("%s: now backed by %s (%llu MiB)", what.c_str(), path.c_str(),
            static_cast<unsigned long long>(d.device->disk().capacity_sectors >> 11));
  return {};
}

Result<void, DiskErr> Disks::apply_rate_limiter(size_t index, const RateLimiterConfig& limiter) {
  if (index >= disks_.size())
    return disk_fail(DiskError::kDevice, "no disk " + std::to_string(index));
  Disk& d = disks_[index];
  d.device->set_rate_limiter(limiter);
  d.drive.rate_limiter = limiter;
  const std::string what = label(d.name, d.drive);
  if (!limiter.bandwidth && !limiter.ops) KLOG_INFO("%s: rate limiter removed", what.c_str());
  log_rate_limiter(what, limiter);
  return {};
}

}  // namespace kindling::vmm
