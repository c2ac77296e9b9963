#!/usr/bin/env bash
# Removes what build-kernel.sh no longer needs from its cache:
#   - kernel-<key>/ folders beyond the KEEP most recently used (by mtime: build-kernel.sh touches
#     a folder when it serves it from the cache), with their logs/kernel-<key>.log, and the
#     logs of kernels no longer there (failed or pruned builds);
#   - source (src/linux-source-*) and object (kbuild-*) folders other than the current ones.
# Run only while holding the cache's build lock (build-kernel.sh does), so that no build is
# writing into what is removed. Folders whose names start with "." (builds being staged) are
# never touched.
#
#   guest/kernel/prune-cache.sh CACHE KEEP CURRENT_SRC CURRENT_OBJ
set -euo pipefail

die() {
  echo "prune-cache: error: $*" >&2
  exit 1
}
(($# == 4)) || die "usage: prune-cache.sh CACHE KEEP CURRENT_SRC CURRENT_OBJ"
cache=$1 keep=$2 current_src=$3 current_obj=$4
[[ -d "$cache" ]] || die "$cache is not a directory"
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "KEEP must be a positive integer, not '$keep'"

pruned=0
while IFS= read -r old; do
  rm -rf -- "$old" "$cache/logs/$(basename "$old").log"
  pruned=$((pruned + 1))
done < <(find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'kernel-*' -printf '%T@ %p\n' |
  sort -rn | tail -n +$((keep + 1)) | cut -d' ' -f2-)

while IFS= read -r old; do
  [[ "$old" == "$current_src" || "$old" == "$current_obj" ]] && continue
  rm -rf -- "$old"
  pruned=$((pruned + 1))
done < <({
  find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'kbuild-*'
  [[ -d "$cache/src" ]] && find "$cache/src" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*'
} || true)

if [[ -d "$cache/logs" ]]; then
  while IFS= read -r log; do
    name=$(basename "$log" .log)
    [[ -d "$cache/$name" ]] && continue
    rm -f -- "$log"
    pruned=$((pruned + 1))
  done < <(find "$cache/logs" -mindepth 1 -maxdepth 1 -type f -name 'kernel-*.log')
fi

((pruned == 0)) || echo "prune-cache: removed $pruned old folder(s) and log(s) from $cache"
