#!/usr/bin/env bash
# `make bench`: the virtio-blk device (queue + I/O thread + merging + libaio, driven in-process
# through a real split ring) against fio (libaio, O_DIRECT) on the same 1 GiB image, same block
# size and depth, in the same run. One line per case:
#   CASE: kindling N IOPS (M MB/s), fio N IOPS (M MB/s), ratio R, io_submit calls C, merged K
# Usage: tests/bench/run.sh BUILD_DIR
# Environment: BENCH_SECONDS (default 2) per measurement, BENCH_ROUNDS (default 7) paired rounds
# per case, BENCH_IMAGE (default BUILD_DIR/bench/bench-1g.img; must be on a disk filesystem, not
# tmpfs), BENCH_CASES (names to run), BENCH_ENGINE (kindling's engine: libaio (default),
# io_uring or sync).
set -euo pipefail

build=${1:-build}
seconds=${BENCH_SECONDS:-2}
rounds=${BENCH_ROUNDS:-7}
bench="$build/tests/bench/kindling_blk_bench"
image=${BENCH_IMAGE:-$build/bench/bench-1g.img}
engine=${BENCH_ENGINE:-libaio}
image_bytes=$((1024 * 1024 * 1024))

die() { echo "bench: error: $*" >&2; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"

command -v fio >/dev/null || die "fio is not installed (make deps)"
# Up to date with the sources (a no-op under `make bench`, which has just built everything).
cmake --build "$build" --target kindling_blk_bench kindling testguest -j"$(nproc)" >/dev/null ||
  die "cannot build the benchmark, kindling and the test guest in $build"

mkdir -p "$(dirname "$image")"
fs=$(stat -f -c %T "$(dirname "$image")")
[[ $fs == tmpfs || $fs == ramfs ]] && die "$(dirname "$image") is on $fs; put BENCH_IMAGE on a disk"

# Created once: a fully written (not sparse) 1 GiB file, so reads really reach the disk.
if [[ ! -f $image || $(stat -c %s "$image") -ne $image_bytes ]]; then
  echo "bench: creating $image (1 GiB, once)"
  dd if=/dev/urandom of="$image.tmp" bs=1M count=1024 oflag=direct status=none
  mv "$image.tmp" "$image"
fi

# kindling_case RW BS QD MERGE -> "iops io_submit merged"
kindling_case() {
  local out
  out=$("$bench" --image "$image" --rw "$1" --bs "$2" --qd "$3" --merge "$4" --seconds "$seconds" \
    --engine "$engine") ||
    die "kindling_blk_bench failed: $out"
  awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["iops"], v["io_submit"], v["merged"]}' <<<"$out"
}

# fio_case RW BS QD -> "iops"
fio_case() {
  local rw=$1 out
  [[ $rw == seqread ]] && rw=read
  out=$(fio --name=bench --filename="$image" --ioengine=libaio --direct=1 --rw="$rw" --bs="$2" \
        --iodepth="$3" --numjobs=1 --size="$image_bytes" --runtime="$seconds" --time_based \
        --norandommap --randrepeat=0 --output-format=terse 2>/dev/null) || die "fio failed"
  # Terse v3: field 8 = read IOPS, 49 = write IOPS.
  awk -F';' '{print $8 + $49}' <<<"$out"
}

# The host disk's speed drifts by tens of percent over seconds, so one kindling run next to one
# fio run says little. Each case runs ROUNDS paired rounds (kindling and fio back to back, the
# order alternating) and reports the medians and the median of the per-round ratios.
# MB/s (10^6 bytes, as fio prints) of IOPS requests of BS bytes.
mb_per_s() { awk -v i="$1" -v b="$2" 'BEGIN { print i * b / 1e6 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

declare -A k_iops f_iops ratios
run_case() {
  local name=$1 rw=$2 bs=$3 qd=$4 merge=$5 round ki ks kmerged fi
  [[ -n ${BENCH_CASES:-} && " $BENCH_CASES " != *" $name "* ]] && return 0
  local -a kis=() fis=() rs=() rows=()
  for ((round = 0; round < rounds; round++)); do
    # Command substitutions, not `< <(...)`: a failing measurement must stop the script.
    local k f
    if ((round % 2 == 0)); then
      k=$(kindling_case "$rw" "$bs" "$qd" "$merge")
      f=$(fio_case "$rw" "$bs" "$qd")
    else
      f=$(fio_case "$rw" "$bs" "$qd")
      k=$(kindling_case "$rw" "$bs" "$qd" "$merge")
    fi
    read -r ki ks kmerged <<<"$k"
    fi=$f
    kis+=("$ki") fis+=("$fi")
    rs+=("$(awk -v a="$ki" -v b="$fi" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
    rows+=("$k")
  done
  k_iops[$name]=$(printf '%s\n' "${kis[@]}" | median)
  f_iops[$name]=$(printf '%s\n' "${fis[@]}" | median)
  ratios[$name]=$(printf '%s\n' "${rs[@]}" | median)
  # Counters are those of the round whose kindling figure is closest to the median.
  read -r ki ks kmerged < <(printf '%s\n' "${rows[@]}" |
    awk -v m="${k_iops[$name]}" '{ d = ($1 > m ? $1 - m : m - $1); if (NR == 1 || d < best) { best = d; row = $0 } } END { print row }')
  local lo hi
  read -r lo hi < <(printf '%s\n' "${rs[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
  printf '%s: kindling %.0f IOPS (%.1f MB/s), fio %.0f IOPS (%.1f MB/s), ratio %.2f, io_submit calls %s, merged %s\n    (medians of %d paired rounds; per-round ratios %s-%s)\n' \
    "$name" "${k_iops[$name]}" "$(mb_per_s "${k_iops[$name]}" "$bs")" \
    "${f_iops[$name]}" "$(mb_per_s "${f_iops[$name]}" "$bs")" \
    "${ratios[$name]}" "$ks" "$kmerged" "$rounds" "$lo" "$hi"
}

echo "bench: image $image ($fs), $rounds paired rounds of ${seconds}s per case, $(nproc) CPUs"
run_case 4k-randread-qd32 randread 4096 32 1
run_case 4k-randwrite-qd32 randwrite 4096 32 1
run_case 128k-seqread-qd8 seqread 131072 8 1
run_case 4k-seqread-qd32 seqread 4096 32 1
run_case 4k-seqread-qd32-nomerge seqread 4096 32 0

# The guest-driven path: the test guest's own virtio-blk driver (test=blk-bench) in a real VM,
# so every request goes guest notify -> ioeventfd -> I/O thread -> libaio -> irqfd -> guest.
# On PVM hosts the guest's kernel-mode code is emulated (~1.7 M instructions/s), so the guest
# side, not the device, bounds this figure there; it is printed next to the in-process one.
# guest_case NAME PATTERN BS QD
guest_case() {
  local name=$1 pattern=$2 bs=$3 qd=$4 out err
  [[ -n ${BENCH_CASES:-} && " $BENCH_CASES " != *" $name "* ]] && return 0
  out=$("$kindling" run --kernel "$testguest" --mem 128M --timeout 300 --stats \
        --cmdline "test=blk-bench blk.n=$guest_n blk.bs=$bs blk.qd=$qd blk.pattern=$pattern" \
        --disk "$image,ro" 2>"$guest_err") || {
    cat "$guest_err" >&2
    die "guest benchmark $name failed: $out"
  }
  err=$(cat "$guest_err")
  local line
  line=$(grep 'blk-bench: ok' <<<"$out") || die "guest benchmark $name: no result line: $out"
  awk -v name="$name" -v bs="$bs" -v inproc="${k_iops[${name#guest-}]:-}" -v err="$err" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      merged = "?"; lat = "?"
      if (match(err, /merged groups [0-9]+ \(avg [0-9.]+ requests\)/)) merged = substr(err, RSTART + 14, RLENGTH - 14)
      if (match(err, /latency: p50 [0-9.]+ us, p99 [0-9.]+ us/)) lat = substr(err, RSTART + 9, RLENGTH - 9)
      ref = (inproc != "" ? sprintf("in-process %d IOPS", inproc) : "in-process not run")
      printf "%s: guest %d IOPS (%.1f MB/s, %d requests in %.2f s), %s, requests per guest notify %s (%d notifies, %d interrupts), merged %s, device latency %s\n",
        name, v["iops"], v["iops"] * bs / 1e6, v["completed"], v["us"] / 1e6, ref, v["req_per_notify"],
        v["notifies"], v["interrupts"], merged, lat
    }' <<<"$line"
}

kindling="$build/kindling"
testguest="$build/guest/testguest/testguest.elf"
guest_n=${BENCH_GUEST_N:-5000}
guest_err=$(mktemp)
trap 'rm -f "$guest_err"' EXIT
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "bench: guest-driven cases skipped: /dev/kvm cannot be opened"
else
  echo "bench: guest-driven ($guest_n requests per case; the guest's kernel-mode code is $(
    [[ -e /sys/module/kvm_pvm ]] && echo "emulated by PVM: expect the guest to be the bottleneck" || echo "run natively"))"
  guest_case guest-4k-randread-qd32 rand 4096 32
  guest_case guest-4k-seqread-qd32 seq 4096 32
fi

# The targets of the issue, checked on what ran.
check() { # NAME CONDITION-TEXT AWK-EXPR
  if awk "BEGIN { exit !($3) }"; then echo "target met: $1 ($2)"; else echo "target MISSED: $1 ($2)"; fi
}
for c in 4k-randread-qd32 128k-seqread-qd8; do
  [[ -n ${ratios[$c]:-} ]] && check "$c" "median ratio ${ratios[$c]} >= 0.9" "${ratios[$c]} >= 0.9"
done
if [[ -n ${k_iops[4k-seqread-qd32]:-} && -n ${k_iops[4k-seqread-qd32-nomerge]:-} ]]; then
  m=${k_iops[4k-seqread-qd32]} n=${k_iops[4k-seqread-qd32-nomerge]} f=${f_iops[4k-seqread-qd32]}
  check "4k-seqread-qd32 merge beats nomerge" "$m vs $n IOPS" "$m > $n"
  check "4k-seqread-qd32 merge beats fio" "$m vs $f IOPS" "$m > $f"
fi
