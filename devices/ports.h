// Legacy port-I/O addresses of the platform devices (fixed platform layout, see README).
#pragma once

#include <cstdint>

namespace kindling::devices {

// i8042 keyboard controller: one device registered at 0x60 with length 5 (offset 0 = data
// port 0x60, offset 4 = status/command port 0x64; offsets 1..3 are inert).
inline constexpr uint16_t kI8042Base = 0x60;
inline constexpr uint16_t kI8042Len = 5;
inline constexpr uint16_t kI8042DataOffset = 0;
inline constexpr uint16_t kI8042CommandOffset = 4;

// CMOS/RTC: index register at 0x70, data register at 0x71.
inline constexpr uint16_t kCmosBase = 0x70;
inline constexpr uint16_t kCmosLen = 2;

// kindling exit port: a write of byte N makes kindling exit with status N.
inline constexpr uint16_t kExitPortBase = 0xF4;
inline constexpr uint16_t kExitPortLen = 1;

// kindling boot-timer port: the guest writes here when user space starts.
inline constexpr uint16_t kBootTimerBase = 0x3F0;
inline constexpr uint16_t kBootTimerLen = 1;

// COM1: a 16550A UART, 8 registers, IRQ/GSI 4.
inline constexpr uint16_t kCom1Base = 0x3F8;
inline constexpr uint16_t kCom1Len = 8;
inline constexpr uint32_t kCom1Gsi = 4;

// The i8042's keyboard interrupt line (ISA IRQ 1), for VMMs that wire it.
inline constexpr uint32_t kI8042KbdGsi = 1;

// ACPI power control (hardware-reduced ACPI, the FADT's sleep and reset registers): one byte
// each. Sleep control: a write with SLP_EN (bit 5) enters the sleep state SLP_TYP (bits 2-4);
// SLP_TYP 5 is S5 (soft off, the DSDT's \_S5 package). Sleep status: reads WAK_STS (bit 7)
// clear. Reset: writing kAcpiResetValue resets the machine.
inline constexpr uint16_t kAcpiPmBase = 0x600;
inline constexpr uint16_t kAcpiPmLen = 3;
inline constexpr uint16_t kAcpiSleepControlPort = kAcpiPmBase;
inline constexpr uint16_t kAcpiSleepStatusPort = kAcpiPmBase + 1;
inline constexpr uint16_t kAcpiResetPort = kAcpiPmBase + 2;
inline constexpr uint8_t kAcpiResetValue = 0x1;
// The SLP_TYP value the DSDT's \_S5 package announces.
inline constexpr uint8_t kAcpiSlpTypS5 = 5;
// The ACPI SCI interrupt the FADT names. Hardware-reduced ACPI raises none; the MADT's
// override for it says edge/active-high, because GSI 9 is also the fifth disk's irqfd line.
inline constexpr uint32_t kAcpiSciGsi = 9;

}  // namespace kindling::devices
