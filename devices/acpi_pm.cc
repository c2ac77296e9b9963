#include "devices/acpi_pm.h"

#include <algorithm>

#include "common/log.h"
#include "devices/ports.h"

namespace kindling::devices {

static_assert(kAcpiSleepControlPort == kAcpiPmBase && kAcpiSleepStatusPort == kAcpiPmBase + 1 &&
              kAcpiResetPort == kAcpiPmBase + 2 && kAcpiPmLen == 3);

AcpiPm::AcpiPm(std::function<void()> on_power_off, std::function<void()> on_reset)
    : on_power_off_(std::move(on_power_off)), on_reset_(std::move(on_reset)) {}

void AcpiPm::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint8_t v = data[0];
  switch (offset) {
    case kAcpiSleepControlPort - kAcpiPmBase: {
      const uint8_t slp_typ = (v >> kSlpTypShift) & kSlpTypMask;
      if ((v & kSlpEn) != 0 && slp_typ == kAcpiSlpTypS5) {
        KLOG_DEBUG_RATELIMITED("ACPI: guest entered S5 (power off)");
        if (on_power_off_) on_power_off_();
      }
      return;
    }
    case kAcpiResetPort - kAcpiPmBase:
      if (v == kAcpiResetValue) {
        KLOG_DEBUG_RATELIMITED("ACPI: guest wrote the reset register");
        if (on_reset_) on_reset_();
      }
      return;
    default:
      return;  // sleep status: writing WAK_STS to clear it has nothing to clear
  }
}

}  // namespace kindling::devices
