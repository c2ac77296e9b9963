#!/usr/bin/env bash
# Builds the kindling guest root file system as an initramfs (cpio newc), for initrd-only
# boots: the same tree as make-rootfs.sh plus /dev/console and /dev/port device nodes (the
# kernel opens /dev/console for /init before anything is mounted, and /init writes the
# boot-timer port through /dev/port).
#
#   guest/make-initramfs.sh OUT.cpio       uncompressed (cheapest to unpack when emulated)
#   guest/make-initramfs.sh OUT.cpio.gz    gzip-compressed
#
# Device nodes need no root: they are written as a second, hand-made newc archive appended
# to the one cpio makes from the tree (the kernel unpacks concatenated archives).
set -euo pipefail

here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
[[ $# == 1 ]] || {
  echo "usage: $0 OUT.cpio[.gz]" >&2
  exit 2
}
out="$1"
command -v cpio >/dev/null || {
  echo "make-initramfs: error: cpio missing (install cpio)" >&2
  exit 1
}

# newc_entry NAME MODE RDEVMAJOR RDEVMINOR INO: one data-less newc header (110 bytes) +
# NUL-terminated name, padded to 4 bytes.
newc_entry() {
  local name="$1" mode="$2" rmajor="$3" rminor="$4" ino="$5"
  local namesize=$((${#name} + 1))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$ino" "$mode" 0 0 1 0 0 0 0 "$rmajor" "$rminor" "$namesize" 0
  printf '%s\0' "$name"
  head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
}

out_dir="$(cd "$(dirname "$out")" && pwd)"
work="$(mktemp -d "$out_dir/.initramfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$here/stage-rootfs.sh" "$work/tree"
(
  cd "$work/tree"
  find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0
  newc_entry dev/console $((0020600)) 5 1 900001
  newc_entry dev/port $((0020600)) 1 4 900002
  newc_entry dev/null $((0020666)) 1 3 900003
  newc_entry TRAILER!!! 0 0 0 0
) >"$work/initramfs.cpio"
case "$out" in
*.gz) gzip -9 -n -c "$work/initramfs.cpio" >"$work/out" ;;
*) mv "$work/initramfs.cpio" "$work/out" ;;
esac
mv -f "$work/out" "$out"
echo "make-initramfs: $out ($(stat -c %s "$out") bytes)"
