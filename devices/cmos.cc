#include "devices/cmos.h"

#include <algorithm>

namespace kindling::devices {
namespace {

// MC146818 register indices (data sheet; Linux include/linux/mc146818rtc.h).
constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kDayOfWeek = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kStatusA = 0x0A;
constexpr uint8_t kStatusB = 0x0B;
constexpr uint8_t kStatusC = 0x0C;
constexpr uint8_t kStatusD = 0x0D;
constexpr uint8_t kCentury = 0x32;  // the PC/AT convention (ACPI FADT century = 0x32)

constexpr uint8_t kStatusAUip = 0x80;      // update in progress: never set here
constexpr uint8_t kStatusADefault = 0x26;  // 32.768 kHz time base, 1024 Hz rate
constexpr uint8_t kStatusB24Hour = 0x02;
constexpr uint8_t kStatusBBinary = 0x04;  // DM: binary instead of BCD
constexpr uint8_t kStatusDValid = 0x80;   // VRT: RAM and time are valid
constexpr uint8_t kHoursPm = 0x80;
constexpr uint8_t kIndexMask = 0x7F;  // bit 7 of the index port masks NMIs

bool is_clock_register(uint8_t index) {
  return index == kSeconds || index == kMinutes || index == kHours || index == kDayOfWeek ||
         index == kDayOfMonth || index == kMonth || index == kYear || index == kCentury;
}

}  // namespace

Cmos::Cmos(std::function<std::time_t()> clock) : clock_(std::move(clock)) {
  ram_[kStatusA] = kStatusADefault;
  ram_[kStatusB] = kStatusB24Hour;
  ram_[kStatusD] = kStatusDValid;
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xFF);
  if (data.empty() || offset != 1) return;
  std::lock_guard lock(mu_);
  data[0] = read_register(index_);
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mu_);
  // GUEST: the index is masked to the 128-byte RAM; writes to the clock are dropped.
  if (offset == 0) {
    index_ = data[0] & kIndexMask;
    return;
  }
  if (offset != 1 || is_clock_register(index_)) return;
  switch (index_) {
    case kStatusA:
      ram_[kStatusA] = data[0] & static_cast<uint8_t>(~kStatusAUip);
      return;
    case kStatusC:
    case kStatusD:
      return;  // read-only
    default:
      ram_[index_] = data[0];
  }
}

uint8_t Cmos::encode(int value) const {
  if (ram_[kStatusB] & kStatusBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

uint8_t Cmos::read_register(uint8_t index) const {
  if (!is_clock_register(index)) return ram_[index];
  std::time_t now = clock_ ? clock_() : std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  switch (index) {
    case kSeconds:
      return encode(std::min(tm.tm_sec, 59));  // no leap seconds on this RTC
    case kMinutes:
      return encode(tm.tm_min);
    case kHours:
      if (ram_[kStatusB] & kStatusB24Hour) return encode(tm.tm_hour);
      {
        int h12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
        return encode(h12) | (tm.tm_hour >= 12 ? kHoursPm : 0);
      }
    case kDayOfWeek:
      return encode(tm.tm_wday + 1);  // 1 = Sunday
    case kDayOfMonth:
      return encode(tm.tm_mday);
    case kMonth:
      return encode(tm.tm_mon + 1);
    case kYear:
      return encode((tm.tm_year + 1900) % 100);
    case kCentury:
      return encode((tm.tm_year + 1900) / 100);
  }
  return 0;
}

}  // namespace kindling::devices
