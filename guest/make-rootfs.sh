#!/usr/bin/env bash
# Builds the kindling guest root file system as an ext4 image, without root or loop
# devices (mke2fs -d copies a staged directory tree into the new file system).
#
#   guest/make-rootfs.sh OUT.img [SIZE]     SIZE as mke2fs takes it, default 32M
#
# Contents: see guest/stage-rootfs.sh. Boot it with root=/dev/vda; /dev is devtmpfs,
# mounted by the kernel (CONFIG_DEVTMPFS_MOUNT). Files keep the builder's uid/gid (mke2fs -d
# has no ownership override); the guest runs everything as root, so that does not matter.
set -euo pipefail

here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
[[ $# == 1 || $# == 2 ]] || {
  echo "usage: $0 OUT.img [SIZE]" >&2
  exit 2
}
out="$1"
size="${2:-32M}"
command -v mke2fs >/dev/null || {
  echo "make-rootfs: error: mke2fs missing (install e2fsprogs)" >&2
  exit 1
}

out_dir="$(cd "$(dirname "$out")" && pwd)"
work="$(mktemp -d "$out_dir/.rootfs.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$here/stage-rootfs.sh" "$work/tree"
# Inode tables and journal fully initialised here, so the guest's ext4lazyinit thread has
# nothing to zero (that work would run as emulated kernel code on PVM hosts). No metadata
# checksums: the guest would verify every inode, bitmap and directory block with a software
# crc32c, run emulated (a throwaway test root gains nothing from them).
truncate -s "$size" "$work/rootfs.img"
mke2fs -q -F -t ext4 -b 4096 -L kindling-root -O ^metadata_csum -d "$work/tree" \
  -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 "$work/rootfs.img" "$size"
mv -f "$work/rootfs.img" "$out"
echo "make-rootfs: $out ($(stat -c %s "$out") bytes)"
