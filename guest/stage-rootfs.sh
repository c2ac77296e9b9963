#!/usr/bin/env bash
# Populates DIR (empty or absent) with the kindling guest's root file system tree:
# busybox-static with a link per applet, /init (guest/rootfs/init.c, compiled here: it marks the
# boot-timer port and runs /etc/kindling/init.sh, guest/rootfs/init.sh) and /sbin/init -> /init,
# /etc from guest/rootfs/etc, the write-vdb test pattern, and empty /dev /proc /sys /tmp.
# Used by make-rootfs.sh (ext4 image) and make-initramfs.sh (cpio).
#
#   guest/stage-rootfs.sh DIR
#
# The write-vdb pattern (/etc/kindling/pattern.bin, also printed by `--pattern FILE`) is
# 64 KiB of 64-byte text lines, so a host test can compare a disk image with it.
set -euo pipefail

here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
busybox=/bin/busybox

# Writes the write-vdb pattern (65536 bytes) to stdout.
write_pattern() {
  awk 'BEGIN { for (i = 0; i < 1024; i++) printf "%-63s\n", "kindling write-vdb pattern line " i }'
}

if [[ "${1:-}" == --pattern ]]; then
  write_pattern >"$2"
  exit 0
fi
[[ $# == 1 ]] || {
  echo "usage: $0 DIR | --pattern FILE" >&2
  exit 2
}
dir="$1"
[[ -x "$busybox" ]] || {
  echo "stage-rootfs: error: $busybox missing (install busybox-static)" >&2
  exit 1
}
# A dynamically linked busybox (Debian's "busybox" package) has a program interpreter.
! readelf -l "$busybox" | grep -q INTERP || {
  echo "stage-rootfs: error: $busybox is not statically linked (install busybox-static)" >&2
  exit 1
}

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin dev proc sys tmp root run mnt etc
chmod 1777 tmp
chmod 0700 root
cp "$busybox" bin/busybox
# One symlink per applet at its usual place; reboot/poweroff/halt/init stay busybox applets,
# /sbin/init is our /init.
while read -r applet; do
  case "$applet" in
  bin/busybox | sbin/init | linuxrc) continue ;;
  esac
  [[ -e "$applet" || -L "$applet" ]] || ln -s /bin/busybox "$applet"
done < <("$busybox" --list-full)
cp -R "$here/rootfs/etc/." etc/
# PID 1's first program: freestanding, static, a few hundred bytes of code (${CC:-cc}).
"${CC:-cc}" -Os -s -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
  -fno-asynchronous-unwind-tables -Wl,--build-id=none -Wall -Wextra -Werror \
  -o init "$here/rootfs/init.c"
install -m 0755 "$here/rootfs/init.sh" etc/kindling/init.sh
ln -sf /init sbin/init
write_pattern >etc/kindling/pattern.bin
stat -c %s etc/kindling/pattern.bin >etc/kindling/pattern.size
