#include "vmm/api/api_vm.h"

#include "vmm/disks.h"
#include "vmm/machine.h"

namespace kindling::vmm::api {

namespace {

Unexpected<ControlErr> control_fail(std::string why) {
  return fail(ControlError::kFailed, 0, std::move(why));
}

}  // namespace

Result<void, ControlErr> ApiVm::start(const VmConfig& config) {
  std::unique_lock lock(mu_);
  request_ = config;
  answer_.reset();
  if (auto ok = start_wakeup_.signal(); !ok) {
    request_.reset();
    return control_fail(ok.error().message());
  }
  cv_.wait(lock, [this] { return answer_.has_value(); });
  std::string error = std::move(*answer_);
  answer_.reset();
  if (!error.empty()) return control_fail(std::move(error));
  return {};
}

std::optional<VmConfig> ApiVm::take_start_request() {
  (void)start_wakeup_.consume();
  std::lock_guard lock(mu_);
  std::optional<VmConfig> r = std::move(request_);
  request_.reset();
  return r;
}

void ApiVm::answer_start(std::string error) {
  {
    std::lock_guard lock(mu_);
    answer_ = std::move(error);
  }
  cv_.notify_all();
}

void ApiVm::attach(Machine* machine, Disks* disks) {
  std::lock_guard lock(mu_);
  machine_ = machine;
  disks_ = disks;
}

void ApiVm::detach() {
  std::lock_guard lock(mu_);
  machine_ = nullptr;
  disks_ = nullptr;
}

Result<void, ControlErr> ApiVm::send_ctrl_alt_del() {
  std::lock_guard lock(mu_);
  if (machine_ == nullptr) return control_fail("the microVM is not running");
  machine_->send_ctrl_alt_del();
  return {};
}

Result<void, ControlErr> ApiVm::replace_drive(size_t index, const std::string& path) {
  std::lock_guard lock(mu_);
  if (disks_ == nullptr) return control_fail("the microVM is not running");
  if (auto ok = disks_->replace_image(index, path); !ok) return control_fail(ok.error().message());
  return {};
}

Result<void, ControlErr> ApiVm::apply_rate_limiter(size_t index, const RateLimiterConfig& limiter) {
  std::lock_guard lock(mu_);
  if (disks_ == nullptr) return control_fail("the microVM is not running");
  if (auto ok = disks_->apply_rate_limiter(index, limiter); !ok) {
    return control_fail(ok.error().message());
  }
  return {};
}

virtio::BlockStats ApiVm::drive_stats(size_t index) {
  std::lock_guard lock(mu_);
  if (disks_ == nullptr || index >= disks_->size()) return {};
  return disks_->stats(index);
}

}  // namespace kindling::vmm::api
