#!/usr/bin/env bash
# guest/kernel/prune-cache.sh on a fake cache: keeps the N most recently used kernels and the
# current source and object folders, removes the rest (orphaned logs too), and refuses bad arguments.
#   prune_cache_test.sh PATH/TO/prune-cache.sh
set -euo pipefail
prune=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

c=$t/cache
mkdir -p "$c/src/linux-source-6.1-old" "$c/src/linux-source-6.1-new" "$c/src/.extract.x" \
  "$c/kbuild-old" "$c/kbuild-new" "$c/logs" "$c/.kernel-staging.abc"
: >"$c/kernel-build.lock"
# kernel-a oldest ... kernel-e newest (mtime); kernel-b used recently.
age=5
for k in a b c d e; do
  mkdir "$c/kernel-$k"
  : >"$c/kernel-$k/vmlinux"
  : >"$c/logs/kernel-$k.log"
  touch -d "-$age hours" "$c/kernel-$k"
  age=$((age - 1))
done
touch "$c/kernel-b"
: >"$c/logs/kernel-failed.log"  # a build that never finished

out=$("$prune" "$c" 3 "$c/src/linux-source-6.1-new" "$c/kbuild-new")
[[ $out == *"removed 5 old folder(s) and log(s)"* ]] || fail "unexpected report: $out"
for k in b d e; do
  [[ -f "$c/kernel-$k/vmlinux" && -f "$c/logs/kernel-$k.log" ]] || fail "kernel-$k was removed"
done
for k in a c; do
  [[ ! -e "$c/kernel-$k" && ! -e "$c/logs/kernel-$k.log" ]] || fail "kernel-$k was kept"
done
[[ ! -e "$c/logs/kernel-failed.log" ]] || fail "the orphaned log was kept"
[[ -d "$c/src/linux-source-6.1-new" && -d "$c/kbuild-new" ]] || fail "current src/obj removed"
[[ ! -e "$c/src/linux-source-6.1-old" && ! -e "$c/kbuild-old" ]] || fail "old src/obj kept"
[[ -d "$c/.kernel-staging.abc" && -d "$c/src/.extract.x" && -f "$c/kernel-build.lock" ]] ||
  fail "a staging folder or the lock was removed"

# Nothing left to prune: silent, and nothing changes.
out=$("$prune" "$c" 3 "$c/src/linux-source-6.1-new" "$c/kbuild-new")
[[ -z $out ]] || fail "second run reported: $out"
[[ $(find "$c" -maxdepth 1 -name 'kernel-*' -type d | wc -l) == 3 ]] || fail "second run removed a kernel"

# Bad arguments: a clear error and a failing status, nothing removed.
for args in "$c 0 x y" "$c -1 x y" "$c abc x y" "$t/missing 3 x y" "$c 3 x"; do
  # shellcheck disable=SC2086
  if err=$("$prune" $args 2>&1); then fail "accepted: $args"; fi
  [[ $err == prune-cache:\ error:* ]] || fail "no error line for '$args': $err"
done
[[ $(find "$c" -maxdepth 1 -name 'kernel-*' -type d | wc -l) == 3 ]] || fail "bad arguments removed a kernel"
echo "prune_cache_test: ok"
