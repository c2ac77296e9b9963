// The VmControl of `kindling run --api-sock`: hands InstanceStart from the API thread to the
// main thread (which builds, boots and runs the Machine) and reaches the running VM's devices
// for the live endpoints.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "common/event_fd.h"
#include "vmm/api/api_handler.h"

namespace kindling::vmm {
class Machine;
class Disks;
}  // namespace kindling::vmm

namespace kindling::vmm::api {

class ApiVm : public VmControl {
 public:
  explicit ApiVm(EventFd start_wakeup) : start_wakeup_(std::move(start_wakeup)) {}

  // --- API thread ---
  // Posts the config to the main thread and waits for its answer (booted, or why not).
  Result<void, ControlErr> start(const VmConfig& config) override;
  Result<void, ControlErr> send_ctrl_alt_del() override;
  Result<void, ControlErr> replace_drive(size_t index, const std::string& path) override;
  Result<void, ControlErr> apply_rate_limiter(size_t index,
                                              const RateLimiterConfig& limiter) override;
  virtio::BlockStats drive_stats(size_t index) override;

  // --- main thread ---
  // Readable when a start request waits.
  int start_fd() const { return start_wakeup_.fd(); }
  // The waiting start request's config, if any.
  std::optional<VmConfig> take_start_request();
  // Answers the start request: empty for booted, else the reason.
  void answer_start(std::string error);
  // The live endpoints reach `machine` and `disks` until detach() (before either is destroyed).
  void attach(Machine* machine, Disks* disks);
  void detach();

 private:
  EventFd start_wakeup_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<VmConfig> request_;
  std::optional<std::string> answer_;  // "" for success
  Machine* machine_ = nullptr;
  Disks* disks_ = nullptr;
};

}  // namespace kindling::vmm::api
