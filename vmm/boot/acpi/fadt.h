// The Fixed ACPI Description Table for a hardware-reduced ACPI machine (as Firecracker and
// Cloud Hypervisor describe theirs): no PM1/PM2/GPE register blocks, no SCI handler, power-off
// through the sleep control register, reset through the reset register, and the DSDT's address.
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/boot/acpi/sdt.h"

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.9 table 5.9: Fixed ACPI Description Table, revision 6 (276 bytes). Fields from
// SCI_INT to CENTURY and the X_ PM/GPE blocks are ignored on a hardware-reduced machine.
struct __attribute__((packed)) Fadt {
  SdtHeader header;        // "FACP", revision 6
  uint32_t firmware_ctrl;  // FACS address: 0, a hardware-reduced machine has none
  uint32_t dsdt;           // DSDT address (also in x_dsdt)
  uint8_t reserved0;
  uint8_t pm_profile;  // Preferred_PM_Profile: 0 unspecified
  uint16_t sci_int;    // the SCI's GSI
  uint32_t smi_cmd;    // 0: no SMI command port (ACPI is always enabled)
  uint8_t acpi_enable;
  uint8_t acpi_disable;
  uint8_t s4bios_req;
  uint8_t pstate_cnt;
  uint32_t pm1a_evt_blk;  // the legacy fixed-hardware register blocks: all 0
  uint32_t pm1b_evt_blk;
  uint32_t pm1a_cnt_blk;
  uint32_t pm1b_cnt_blk;
  uint32_t pm2_cnt_blk;
  uint32_t pm_tmr_blk;
  uint32_t gpe0_blk;
  uint32_t gpe1_blk;
  uint8_t pm1_evt_len;
  uint8_t pm1_cnt_len;
  uint8_t pm2_cnt_len;
  uint8_t pm_tmr_len;
  uint8_t gpe0_blk_len;
  uint8_t gpe1_blk_len;
  uint8_t gpe1_base;
  uint8_t cst_cnt;
  uint16_t p_lvl2_lat;
  uint16_t p_lvl3_lat;
  uint16_t flush_size;
  uint16_t flush_stride;
  uint8_t duty_offset;
  uint8_t duty_width;
  uint8_t day_alrm;  // CMOS RTC alarm / century indexes: 0, not supported
  uint8_t mon_alrm;
  uint8_t century;
  uint16_t iapc_boot_arch;  // kIapc* flags
  uint8_t reserved1;
  uint32_t flags;            // kFadt* flags
  GenericAddress reset_reg;  // written with reset_value to reset the machine
  uint8_t reset_value;
  uint16_t arm_boot_arch;         // 0 on x86
  uint8_t minor_version;          // FADT minor version: 5 = ACPI 6.5
  uint64_t x_firmware_ctrl;       // 0: no FACS
  uint64_t x_dsdt;                // DSDT address
  GenericAddress x_pm1a_evt_blk;  // the legacy blocks again, 64-bit: all 0
  GenericAddress x_pm1b_evt_blk;
  GenericAddress x_pm1a_cnt_blk;
  GenericAddress x_pm1b_cnt_blk;
  GenericAddress x_pm2_cnt_blk;
  GenericAddress x_pm_tmr_blk;
  GenericAddress x_gpe0_blk;
  GenericAddress x_gpe1_blk;
  GenericAddress sleep_control_reg;  // SLP_TYP | SLP_EN written here enters a sleep state
  GenericAddress sleep_status_reg;   // WAK_STS read here
  char hypervisor_vendor_id[8];      // "KINDLING"

  // kindling's FADT pointing at the DSDT at `dsdt_address`, checksum set.
  static Fadt for_kindling(uint64_t dsdt_address);
  // The 276 bytes as written to guest memory.
  std::vector<uint8_t> bytes() const;
};
static_assert(sizeof(Fadt) == 276);

// The FADT layout revision and minor version kindling writes (ACPI 6.5).
inline constexpr uint8_t kFadtRevision = 6;
inline constexpr uint8_t kFadtMinorVersion = 5;

// ACPI 6.5 table 5.10: FADT flags kindling sets.
inline constexpr uint32_t kFadtPowerButton = 1u << 4;     // PWR_BUTTON: no fixed power button
inline constexpr uint32_t kFadtSleepButton = 1u << 5;     // SLP_BUTTON: no fixed sleep button
inline constexpr uint32_t kFadtResetRegSup = 1u << 10;    // RESET_REG_SUP: reset_reg works
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;  // HW_REDUCED_ACPI

// ACPI 6.5 table 5.11: IA-PC boot architecture flags.
inline constexpr uint16_t kIapcLegacyDevices = 1u << 0;      // LPC/ISA devices not in ACPI
inline constexpr uint16_t kIapc8042 = 1u << 1;               // an 8042 at 0x60/0x64
inline constexpr uint16_t kIapcVgaNotPresent = 1u << 2;      // do not probe VGA
inline constexpr uint16_t kIapcMsiNotSupported = 1u << 3;    // do not enable MSI
inline constexpr uint16_t kIapcPcieAspmControls = 1u << 4;   // OSPM must not touch ASPM
inline constexpr uint16_t kIapcCmosRtcNotPresent = 1u << 5;  // no CMOS RTC at 0x70

}  // namespace kindling::vmm::acpi
