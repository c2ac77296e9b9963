// The pure parts of disk wiring: slots, names, and the command-line fragments.
#include "vmm/disks.h"

#include <gtest/gtest.h>

namespace kindling::vmm {
namespace {

TEST(DiskSlots, FollowTheLayout) {
  EXPECT_EQ(disk_slot(0).base, 0xD0000000u);
  EXPECT_EQ(disk_slot(0).gsi, 5u);
  EXPECT_EQ(disk_slot(1).base, 0xD0001000u);
  EXPECT_EQ(disk_slot(1).gsi, 6u);
  // The last disk still has an I/O APIC pin.
  EXPECT_EQ(disk_slot(kMaxDisks - 1).gsi, 23u);
}

TEST(DiskNames, AreLinuxVirtioBlockNames) {
  EXPECT_EQ(disk_name(0), "vda");
  EXPECT_EQ(disk_name(1), "vdb");
  EXPECT_EQ(disk_name(25), "vdz");
  EXPECT_EQ(disk_name(26), "vdaa");
  EXPECT_EQ(disk_name(27), "vdab");
}

TEST(DiskCmdline, OneDeviceFragmentPerDisk) {
  EXPECT_EQ(disk_cmdline_fragment(0), "virtio_mmio.device=4K@0xd0000000:5");
  EXPECT_EQ(disk_cmdline_fragment(2), "virtio_mmio.device=4K@0xd0002000:7");
}

DriveConfig drive(bool root, bool ro) {
  DriveConfig d;
  d.path = "x.img";
  d.is_root = root;
  d.read_only = ro;
  return d;
}

TEST(DiskCmdline, RootFragment) {
  EXPECT_EQ(root_cmdline_fragment({drive(false, false)}, std::nullopt), "");
  EXPECT_EQ(root_cmdline_fragment({drive(true, false)}, std::nullopt), "root=/dev/vda");
  EXPECT_EQ(root_cmdline_fragment({drive(false, false), drive(true, true)}, std::nullopt),
            "root=/dev/vdb ro");
  // The user's own root= wins; a word that merely contains "root=" does not count.
  EXPECT_EQ(root_cmdline_fragment({drive(true, false)}, "console=ttyS0 root=/dev/sda1"), "");
  EXPECT_EQ(root_cmdline_fragment({drive(true, false)}, "console=ttyS0 noroot=1"), "root=/dev/vda");
}

TEST(DiskErrors, ImageProblemsExitTwo) {
  EXPECT_EQ(exit_code_for(DiskErr{DiskError::kImage, 0, "x"}), 2);
  EXPECT_EQ(exit_code_for(DiskErr{DiskError::kWiring, 0, "x"}), 1);
  EXPECT_EQ(exit_code_for(DiskErr{DiskError::kDevice, 0, "x"}), 1);
}

}  // namespace
}  // namespace kindling::vmm
