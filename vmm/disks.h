// The VM's disks: each configured drive becomes a virtio-blk device behind a virtio-mmio
// transport in its own 4 KiB slot, wired into KVM so the data path never leaves the kernel on
// the guest side:
//   guest QueueNotify write -> KVM ioeventfd (datamatch = queue index) -> the device's I/O thread
//   I/O thread completion   -> interrupt eventfd -> KVM irqfd -> IOAPIC edge on the disk's GSI
// The rest of the register file arrives as MMIO exits on the vCPU threads (Machine's MMIO bus).
//
// Lifecycle, with Machine (vmm/machine.h):
//   Machine::create() -> Disks::attach() -> Machine::boot() -> Machine::run() -> Disks::shutdown()
// shutdown() runs after the vCPUs stopped: it resets each device (which drains its in-flight
// I/O) and fdatasyncs each writable image, so whatever stopped the VM, a completed write is on
// the image when kindling exits.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "virtio/blk_stats.h"
#include "vmm/boot/platform.h"
#include "vmm/config/config.h"
#include "vmm/layout.h"

namespace kindling::virtio {
class BlockDevice;
class MmioTransport;
}  // namespace kindling::virtio

namespace kindling::vmm {

class Machine;
class Vm;

// What went wrong attaching or stopping disks; the context is the whole user-facing line.
enum class DiskError {
  kImage,   // missing, unreadable, locked by another process, bad size (exit 2)
  kDevice,  // the device or its transport could not be built (exit 1)
  kWiring,  // MMIO slot, ioeventfd or irqfd registration failed (exit 1)
  kSync,    // fdatasync of an image failed at shutdown
};
// Empty: the context already reads as one line.
const char* to_string(DiskError e);
using DiskErr = Error<DiskError>;
// The `kindling run` exit status for an attach error (2 for image problems, else 1).
int exit_code_for(const DiskErr& e);

// The first virtio-mmio slot and its GSI (layout.md); disk i uses slot i and GSI + i.
inline constexpr uint64_t kVirtioMmioBase = 0xD0000000;
inline constexpr uint64_t kVirtioMmioSlotSize = 0x1000;
inline constexpr uint32_t kVirtioFirstGsi = 5;
// Disks that fit below the I/O APIC's last pin (GSI 5..23).
inline constexpr size_t kMaxDisks = layout::kIoapicPins - kVirtioFirstGsi;

// Pure: where disk `index` lives (its 4 KiB window and GSI), as the boot tables describe it.
MmioSlot disk_slot(size_t index);
// Pure: the guest's name of disk `index`: vda, vdb, ..., vdz, vdaa, ...
std::string disk_name(size_t index);
// Pure: `virtio_mmio.device=4K@0xd0000000:5` for disk `index`.
std::string disk_cmdline_fragment(size_t index);
// Pure: `root=/dev/vdX` (+ ` ro` for a read-only root) for the root drive; empty when no drive
// is the root or the configured command line already names a root.
std::string root_cmdline_fragment(const std::vector<DriveConfig>& drives,
                                  const std::optional<std::string>& cmdline);

// The attached disks of one VM.
class Disks {
 public:
  // Opens and locks every drive's image, builds its device and transport, puts the transport on
  // the machine's MMIO bus with its command-line fragment (and the root= fragment), registers
  // the notify ioeventfds and the irqfd. Call between Machine::create() and Machine::boot().
  static Result<std::unique_ptr<Disks>, DiskErr> attach(Machine& machine, const VmConfig& config);
  // Waits until every disk's I/O thread has confined itself (they do so while the VM is built);
  // the first that could not, as a kDevice error. Call before the guest runs.
  Result<void, DiskErr> await_confined() const;
  // shutdown(), then the KVM registrations are removed.
  ~Disks();
  Disks(const Disks&) = delete;
  Disks& operator=(const Disks&) = delete;

  // After the vCPUs stopped: resets every device (drains in-flight I/O) and fdatasyncs every
  // writable image. Idempotent; reports the first sync failure (all images are tried).
  Result<void, DiskErr> shutdown();
  // The `--stats` report: one block per disk (name, image, requests, bytes, merging,
  // io_submit calls, latency).
  std::string stats_report() const;
  // Number of disks.
  size_t size() const { return disks_.size(); }
  // Disk `index`'s counters (live).
  virtio::BlockStats stats(size_t index) const;
  // Switches disk `index` to the image at `path` while the guest runs (virtio/blk_device.h's
  // replace_image: in-flight requests finish on the old image, the guest is told the new
  // capacity). The old image is fdatasynced before it is closed when writable.
  Result<void, DiskErr> replace_image(size_t index, const std::string& path);
  // Gives disk `index` a new rate limiter, live (virtio/blk_device.h's set_rate_limiter).
  Result<void, DiskErr> apply_rate_limiter(size_t index, const RateLimiterConfig& limiter);

 private:
  struct Disk {
    std::string name;
    DriveConfig drive;
    MmioSlot slot;
    std::shared_ptr<virtio::MmioTransport> transport;
    virtio::BlockDevice* device = nullptr;  // owned by the transport
    size_t ioeventfds = 0;                  // registered so far
    bool irqfd = false;
  };

  explicit Disks(const Vm& vm) : vm_(vm) {}
  Result<void, DiskErr> attach_one(Machine& machine, const VmConfig& config, size_t index);
  Result<void, DiskErr> wire(Disk& d);

  const Vm& vm_;
  std::vector<Disk> disks_;
  bool shut_down_ = false;
};

}  // namespace kindling::vmm
