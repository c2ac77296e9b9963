#!/usr/bin/env bash
# Boots the default Linux VM interactively (what `make run` does): the guest kernel from
# BUILD/guest, the ext4 rootfs as the root disk (/dev/vda), 128 MiB, one vCPU, the serial
# console on this terminal. The guest's /init starts a busybox shell; `poweroff` (ACPI S5),
# `reboot`, `halt` (--exit-on-halt) or `exit` end the VM (kindling exits 0).
#
#   guest/run-default.sh BUILD [extra kindling run flags...]
#
# The kernel is the ELF vmlinux. KINDLING_KERNEL=bzImage picks the bzImage instead (kindling
# decompresses it on the host), KINDLING_KERNEL=acpi/vmlinux the second, ACPI-only kernel.
#
# Memory: KINDLING_MEM (default 128M; kindling takes --mem only once). A busybox shell needs
# far less, and on PVM hosts every 128 MiB more costs ~2 s of boot (struct-page
# initialisation runs as emulated kernel code).
set -euo pipefail

[[ $# -ge 1 ]] || {
  echo "usage: $0 BUILD [kindling run flags...]" >&2
  exit 2
}
build="$1"
shift
kindling="$build/kindling"
guest="$build/guest"
kernel="$guest/${KINDLING_KERNEL:-vmlinux}"
for f in "$kindling" "$kernel" "$guest/rootfs.img"; do
  [[ -e "$f" ]] || {
    echo "run-default: $f missing (make build guest)" >&2
    exit 2
  }
done
# The root disk is attached read-only: the image in the build tree stays pristine and other
# VMs (smoke tests) may share it. /tmp is a tmpfs.
echo "run-default: booting $kernel with root $guest/rootfs.img (this takes a while on PVM" \
  "hosts; 'poweroff' ends the VM)" >&2
exec "$kindling" run --kernel "$kernel" --disk "$guest/rootfs.img,ro" --root \
  --mem "${KINDLING_MEM:-128M}" --exit-on-halt "$@"
