#!/usr/bin/env bash
# Builds a kindling guest kernel from Debian's linux-source-6.1 and caches it.
#
#   guest/kernel/build-kernel.sh [FLAVOR]  -> prints the cache directory holding
#                                             bzImage, vmlinux, config, build-info
#
# Flavors (the config is `make tinyconfig` + the fragments, in order, then olddefconfig):
#   default  configs/guest-kernel.config: MP table + command-line devices, and ACPI
#   acpi     the same + configs/guest-kernel-acpi.config: ACPI only (no MP table parser, no
#            command-line devices), PVH entry, i8042 + AT keyboard, as distro kernels
# Cache: $KINDLING_CACHE (default ~/.cache/kindling)
#   src/linux-source-6.1-<pkgver>/  extracted source, shared by every build (read only)
#   kbuild-<pkgver>/<flavor>/       out-of-tree object dir per flavor, reused so a config
#                                   change only recompiles what it touches
#   kernel-<key>/                   finished artifacts; key = sha256 of (package version,
#                                   flavor, its fragments, this script). Appears only complete (staged in
#                                   a temp dir and renamed), so an interrupted build never
#                                   leaves a half artifact. A second run with unchanged
#                                   inputs only prints this path.
#   logs/kernel-<key>.log           full build log
# Pruning: a cache hit touches its kernel-<key>/; after each build only the KINDLING_KERNEL_KEEP
# (default 3) most recently used kernel-<key>/ folders (and their logs) are kept, and the source
# and object folders of other linux-source package versions are removed.
# Environment: KINDLING_CACHE, KINDLING_KERNEL_JOBS (default nproc), KINDLING_KERNEL_NICE
# (default 10), KINDLING_KERNEL_KEEP (default 4: two flavors).
set -euo pipefail

script_path="$(readlink -f "${BASH_SOURCE[0]}")"
repo_root="$(cd "$(dirname "$script_path")/../.." && pwd)"
flavor="${1:-default}"
case "$flavor" in
  default) fragments=("$repo_root/configs/guest-kernel.config") ;;
  acpi) fragments=("$repo_root/configs/guest-kernel.config" "$repo_root/configs/guest-kernel-acpi.config") ;;
  *)
    echo "build-kernel: error: unknown flavor '$flavor' (default or acpi)" >&2
    exit 2
    ;;
esac
cache="${KINDLING_CACHE:-$HOME/.cache/kindling}"
jobs="${KINDLING_KERNEL_JOBS:-$(nproc)}"
niceness="${KINDLING_KERNEL_NICE:-10}"
keep="${KINDLING_KERNEL_KEEP:-4}"
source_pkg=linux-source-6.1
tarball="/usr/src/$source_pkg.tar.xz"

say() { echo "build-kernel: $*" >&2; }
die() {
  echo "build-kernel: error: $*" >&2
  exit 1
}

pkgver="$(dpkg-query -W -f='${Version}' "$source_pkg" 2>/dev/null)" ||
  die "$source_pkg is not installed (make deps)"
[[ -r "$tarball" ]] || die "$tarball missing (reinstall $source_pkg)"
for f in "${fragments[@]}"; do [[ -r "$f" ]] || die "$f missing"; done
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "KINDLING_KERNEL_KEEP must be a positive integer"

key="$( { printf '%s %s %s\n' "$source_pkg" "$pkgver" "$flavor"; cat "${fragments[@]}" "$script_path"; } |
  sha256sum | cut -c1-16)"
out="$cache/kernel-$key"

if [[ -f "$out/bzImage" && -f "$out/vmlinux" ]]; then
  touch "$out" 2>/dev/null || true  # most recently used: kept by the pruning below
  say "cached: $out"
  echo "$out"
  exit 0
fi

mkdir -p "$cache/src" "$cache/logs"
# One build at a time per cache (parallel `make test` runs share it).
exec 9>"$cache/kernel-build.lock"
if ! flock -n 9; then
  say "waiting for another kernel build (lock $cache/kernel-build.lock)"
  flock 9
fi
if [[ -f "$out/bzImage" && -f "$out/vmlinux" ]]; then
  say "cached (built meanwhile): $out"
  echo "$out"
  exit 0
fi

src="$cache/src/$source_pkg-$pkgver"
if [[ ! -f "$src/Makefile" ]]; then
  say "extracting $tarball -> $src"
  tmp_src="$(mktemp -d "$cache/src/.extract.XXXXXX")"
  tar -C "$tmp_src" -xf "$tarball"
  rm -rf "$src"
  mv -T "$tmp_src/$source_pkg" "$src"
  rmdir "$tmp_src"
fi

obj_root="$cache/kbuild-$pkgver"
obj="$obj_root/$flavor"
# An interrupted build may have left truncated objects behind: start that dir afresh.
if [[ -e "$obj/.kindling-incomplete" ]]; then
  say "previous build in $obj was interrupted: removing it"
  rm -rf "$obj"
fi
mkdir -p "$obj"

log="$cache/logs/kernel-$key.log"
: >"$log"
kmake() { nice -n "$niceness" make -C "$src" O="$obj" ARCH=x86_64 "$@" >>"$log" 2>&1; }
on_fail() {
  say "FAILED; last lines of $log:"
  tail -n 30 "$log" >&2 || true
}
trap on_fail ERR

say "configuring $flavor (tinyconfig + $(for f in "${fragments[@]}"; do basename "$f"; done | paste -sd+)), log: $log"
kmake tinyconfig
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${fragments[@]}" >>"$log" 2>&1
kmake olddefconfig

# Every setting of the fragments (the last one wins where a later fragment overrides an
# earlier one) must have taken effect: a silently dropped option (unmet dependency, renamed
# symbol) would otherwise surface as a guest that cannot boot.
effective="$(cat "${fragments[@]}" | awk '
  match($0, /^CONFIG_[A-Za-z0-9_]+=/) { sym = substr($0, 1, RLENGTH - 1) }
  match($0, /^# CONFIG_[A-Za-z0-9_]+ is not set$/) { sym = $2 }
  sym != "" { if (!(sym in last)) order[n++] = sym; last[sym] = $0; sym = "" }
  END { for (i = 0; i < n; i++) print last[order[i]] }')"
bad=0
while IFS= read -r line; do
  if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    if ! grep -qxF "$line" "$obj/.config"; then
      got="$(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$obj/.config" || echo "absent")"
      say "config: wanted '$line', got '$got'"
      bad=1
    fi
  elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    if grep -qE "^${BASH_REMATCH[1]}=" "$obj/.config"; then
      say "config: wanted '$line', got '$(grep -E "^${BASH_REMATCH[1]}=" "$obj/.config")'"
      bad=1
    fi
  fi
done <<<"$effective"
[[ $bad == 0 ]] || die "the merged .config does not honour the $flavor fragments (see above)"

say "building bzImage + vmlinux with -j$jobs (nice $niceness); this takes minutes"
start=$(date +%s)
touch "$obj/.kindling-incomplete"
kmake -j"$jobs" bzImage
seconds=$(($(date +%s) - start))
trap - ERR

bz="$obj/arch/x86/boot/bzImage"
# 64-bit boot protocol: "HdrS" at 0x202, version >= 2.12 at 0x206, XLF_KERNEL_64 at 0x236.
[[ "$(dd if="$bz" bs=1 skip=$((0x202)) count=4 2>/dev/null)" == HdrS ]] ||
  die "$bz has no boot-protocol header"
version=$(od -An -tu2 -j $((0x206)) -N2 "$bz" | tr -d ' ')
xloadflags=$(od -An -tu2 -j $((0x236)) -N2 "$bz" | tr -d ' ')
((version >= 0x20c && (xloadflags & 1))) ||
  die "$bz is not a 64-bit boot-protocol kernel (version $version, xloadflags $xloadflags)"
elf_header="$(readelf -h "$obj/vmlinux")"
if ! grep -q 'Class: *ELF64' <<<"$elf_header" || ! grep -q 'Type: *EXEC' <<<"$elf_header" ||
  ! grep -q 'Machine: *Advanced Micro Devices X86-64' <<<"$elf_header"; then
  die "$obj/vmlinux is not an x86-64 ELF executable"
fi

stage="$(mktemp -d "$cache/.kernel-$key.XXXXXX")"
cp "$bz" "$stage/bzImage"
cp "$obj/vmlinux" "$stage/vmlinux"
cp "$obj/.config" "$stage/config"
cat >"$stage/build-info" <<INFO
source: $source_pkg $pkgver
key: $key
flavor: $flavor
fragments: ${fragments[*]}
build_seconds: $seconds
jobs: $jobs
built: $(date -u +%Y-%m-%dT%H:%M:%SZ)
boot_protocol: $(printf '2.%02d' $((version & 0xff)))
INFO
chmod 0755 "$stage"
rm -rf "$out"
mv -T "$stage" "$out"
rm -f "$obj/.kindling-incomplete"

# Prune (the build lock is held).
"$repo_root/guest/kernel/prune-cache.sh" "$cache" "$keep" "$src" "$obj_root" >&2
say "built in ${seconds}s: $out (bzImage $(stat -c %s "$out/bzImage") bytes, vmlinux $(stat -c %s "$out/vmlinux") bytes)"
echo "$out"
