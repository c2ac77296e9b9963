#!/usr/bin/env bash
# Builds (or reuses) every guest artifact the kindling smoke tests and `make run` boot:
#
#   guest/make-guest.sh OUTDIR
#
#   OUTDIR/vmlinux         the guest kernel, ELF: MP table + command-line devices, and ACPI
#   OUTDIR/bzImage         the same kernel, bzImage (LZ4)
#   OUTDIR/kernel.config   its .config
#   OUTDIR/acpi/{vmlinux,bzImage,kernel.config}
#                          the second kernel, configured as distro and Firecracker kernels are:
#                          ACPI only (no MP table, no command-line devices), PVH entry
#   OUTDIR/rootfs.img      ext4 root file system (boot with root=/dev/vda)
#   OUTDIR/initramfs.cpio  the same tree as an initramfs, for initrd-only boots
#   OUTDIR/pattern.bin     the 64 KiB pattern the guest's write-vdb check writes to /dev/vdb
#
# The kernel comes from $KINDLING_CACHE (guest/kernel/build-kernel.sh builds it once per
# input set); the rootfs and initramfs are rebuilt only when their inputs change (keys in
# OUTDIR/.kernel.key, OUTDIR/acpi/.kernel.key and OUTDIR/.rootfs.key). Everything cached: well under a second.
set -euo pipefail

here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
[[ $# == 1 ]] || {
  echo "usage: $0 OUTDIR" >&2
  exit 2
}
out="$1"
mkdir -p "$out"

say() { echo "make-guest: $*"; }

# --- kernels ---
# install_kernel FLAVOR DIR: builds (or finds in the cache) the FLAVOR kernel, copies it to DIR.
install_kernel() {
  local flavor=$1 dir=$2 start kernel_dir kernel_seconds kernel_key f
  mkdir -p "$dir"
  start=$(date +%s)
  kernel_dir="$("$here/kernel/build-kernel.sh" "$flavor")"
  kernel_seconds=$(($(date +%s) - start))
  kernel_key="$(basename "$kernel_dir")"
  if [[ "$(cat "$dir/.kernel.key" 2>/dev/null)" != "$kernel_key" || ! -f "$dir/vmlinux" ||
    ! -f "$dir/bzImage" ]]; then
    rm -f "$dir/.kernel.key"
    for f in vmlinux bzImage; do
      cp "$kernel_dir/$f" "$dir/.$f.tmp"
      mv -f "$dir/.$f.tmp" "$dir/$f"
    done
    cp "$kernel_dir/config" "$dir/kernel.config"
    echo "$kernel_key" >"$dir/.kernel.key"
    say "$flavor kernel $kernel_key -> $dir/{vmlinux,bzImage} (build step took ${kernel_seconds}s)"
  else
    say "$flavor kernel $kernel_key up to date (build step took ${kernel_seconds}s)"
  fi
}
install_kernel default "$out"
install_kernel acpi "$out/acpi"

# --- rootfs + initramfs ---
rootfs_key="$( {
  dpkg-query -W -f='${Package} ${Version}\n' busybox-static e2fsprogs cpio 2>/dev/null || true
  sha256sum /bin/busybox
  cd "$here"
  find rootfs -type f -o -type l | LC_ALL=C sort | while read -r f; do
    printf '%s %s\n' "$f" "$(stat -c %a "$f")"
    cat "$f"
  done
  cat stage-rootfs.sh make-rootfs.sh make-initramfs.sh
} | sha256sum | cut -c1-16)"
if [[ "$(cat "$out/.rootfs.key" 2>/dev/null)" != "$rootfs_key" || ! -f "$out/rootfs.img" ||
  ! -f "$out/initramfs.cpio" || ! -f "$out/pattern.bin" ]]; then
  rm -f "$out/.rootfs.key"
  "$here/make-rootfs.sh" "$out/rootfs.img" | sed 's/^/make-guest: /'
  "$here/make-initramfs.sh" "$out/initramfs.cpio" | sed 's/^/make-guest: /'
  "$here/stage-rootfs.sh" --pattern "$out/pattern.bin"
  echo "$rootfs_key" >"$out/.rootfs.key"
  say "rootfs $rootfs_key built"
else
  say "rootfs $rootfs_key up to date"
fi
sizes=""
for f in vmlinux bzImage acpi/vmlinux acpi/bzImage rootfs.img initramfs.cpio; do
  sizes="$sizes $f $(stat -c %s "$out/$f")"
done
say "ready in $out (bytes):$sizes"
