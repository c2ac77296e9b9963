// Hardware-reduced ACPI power control (ACPI 6.4, 4.8.3.7 and 4.8.3.6): the sleep control,
// sleep status and reset registers the FADT names, one byte each at devices/ports.h's
// kAcpiPmBase. A guest's power-off (S5) and ACPI reset end up here; nothing else does.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "common/bus_device.h"

namespace kindling::devices {

// ACPI 6.4, 4.8.3.7: sleep control register bits.
inline constexpr uint8_t kSlpEn = 1u << 5;
inline constexpr uint8_t kSlpTypShift = 2;
inline constexpr uint8_t kSlpTypMask = 0x7;
// ACPI 6.4, 4.8.3.8: sleep status register, WAK_STS.
inline constexpr uint8_t kWakSts = 1u << 7;

// Offsets 0 (sleep control), 1 (sleep status), 2 (reset). Reads return 0 (WAK_STS clear: the
// machine never wakes from a sleep state, it only powers off).
class AcpiPm : public BusDevice {
 public:
  // on_power_off runs when the guest enters S5; on_reset when it writes the reset value.
  AcpiPm(std::function<void()> on_power_off, std::function<void()> on_reset);

  // Reads as zero.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  // GUEST: SLP_EN with SLP_TYP == S5 powers off; the reset value at offset 2 resets; any
  // other value (S1-S4, which kindling does not offer in the DSDT) is ignored.
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  std::function<void()> on_power_off_;
  std::function<void()> on_reset_;
};

}  // namespace kindling::devices
