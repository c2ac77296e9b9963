#!/usr/bin/env bash
# `make bench`: the virtio-blk device (queue + I/O thread + merging + engine, driven in-process
# through a real split ring) against fio with the same ioengine (libaio vs libaio, io_uring vs
# io_uring; O_DIRECT on both sides, checked in /proc) on the same 1 GiB image, same block size
# and depth, in the same run. One line per case, the engine in the name where it is not the
# default:
#   CASE: kindling N IOPS (M MB/s), fio N IOPS (M MB/s), ratio R, io_submit calls C, merged K
# followed by the spread of the rounds and, from the disk's own counters for both sides, the
# requests per disk interrupt, the size of a disk request and its time in the disk's queue;
# then the lean-VMM figures (vmm-rss-kib, exec-to-first-run-ms, density-20).
# Fairness: fresh random offsets every run on both sides (fio randrepeat=0, a new seed for
# kindling), write buffers of random bytes changed on every write on both sides (fio's default
# scramble_buffers), no CPU pinning on either side, the order of the two alternating by round.
# Usage: tests/bench/run.sh BUILD_DIR
# Environment: BENCH_SECONDS (default 2) per measurement, BENCH_ROUNDS (default 9) paired rounds
# per case, BENCH_IMAGE (default BUILD_DIR/bench/bench-1g.img; must be on a disk filesystem, not
# tmpfs), BENCH_CASES (names to run), BENCH_ENGINES (default: every engine kindling has).
set -euo pipefail

build=${1:-build}
seconds=${BENCH_SECONDS:-2}
rounds=${BENCH_ROUNDS:-9}
bench="$build/tests/bench/kindling_blk_bench"
image=${BENCH_IMAGE:-$build/bench/bench-1g.img}
image_bytes=$((1024 * 1024 * 1024))

die() { echo "bench: error: $*" >&2; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"

command -v fio >/dev/null || die "fio is not installed (make deps)"
# Up to date with the sources (a no-op under `make bench`, which has just built everything).
cmake --build "$build" --target kindling_blk_bench kindling testguest exec_baseline -j"$(nproc)" \
  >/dev/null || die "cannot build the benchmark, kindling and the test guest in $build"

mkdir -p "$(dirname "$image")"
# The mount's own type (stat -f names every ext file system "ext2/ext3", ext4 included).
fs=$(findmnt -n -o FSTYPE --target "$(dirname "$image")" 2>/dev/null || stat -f -c %T "$(dirname "$image")")
[[ $fs == tmpfs || $fs == ramfs ]] && die "$(dirname "$image") is on $fs; put BENCH_IMAGE on a disk"

# Created once: a fully written (not sparse) 1 GiB file, so reads really reach the disk.
if [[ ! -f $image || $(stat -c %s "$image") -ne $image_bytes ]]; then
  echo "bench: creating $image (1 GiB, once)"
  dd if=/dev/urandom of="$image.tmp" bs=1M count=1024 oflag=direct status=none
  mv "$image.tmp" "$image"
fi

# The block device under the image, as the kernel counts it, for where the requests wait:
# /sys/dev/block/MAJ:MIN/stat (for a partition, its disk's interrupts) and the disk's interrupt
# lines in /proc/interrupts (those named after its device, e.g. virtio1-req.0 or nvme0q1).
disk_stat=/sys/dev/block/$(stat -c '%Hd:%Ld' "$image")/stat
disk_name=unknown disk_irq=""
if [[ -r $disk_stat ]]; then
  disk_sys=$(readlink -f "$(dirname "$disk_stat")")
  disk_name=${disk_sys##*/}
  [[ -f $disk_sys/partition ]] && disk_sys=$(dirname "$disk_sys")
  [[ -e $disk_sys/device ]] && disk_irq=$(basename "$(readlink -f "$disk_sys/device")")
else
  disk_stat=""
fi
# disk_snapshot -> "requests sectors ms_in_queue interrupts" (fields of Documentation/block/stat;
# interrupts -1 when the disk's lines are not found). %.0f: the sector count outgrows mawk's %d.
disk_snapshot() {
  [[ -n $disk_stat ]] || { echo "0 0 0 -1"; return; }
  local irqs=-1
  [[ -n $disk_irq ]] && irqs=$(awk -v d="$disk_irq" '$NF ~ "^" d "[-q]" {
      for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; found = 1 }
      END { printf "%.0f\n", found ? n : -1 }' /proc/interrupts)
  awk -v irqs="$irqs" '{ printf "%.0f %.0f %.0f %.0f\n", $1 + $5, $3 + $7, $11, irqs }' "$disk_stat"
}
# disk_delta BEFORE AFTER -> "requests sectors ms_in_queue interrupts" between two snapshots.
disk_delta() {
  local -a a b
  read -ra a <<<"$1"
  read -ra b <<<"$2"
  local irqs=-1
  ((a[3] >= 0 && b[3] >= 0)) && irqs=$((b[3] - a[3]))
  echo "$((b[0] - a[0])) $((b[1] - a[1])) $((b[2] - a[2])) $irqs"
}

# kindling_case ENGINE RW BS QD MERGE -> "iops io_submit merged" and the disk's delta; every run
# must report that its image fd had O_DIRECT (read by the benchmark from /proc/self/fdinfo).
kindling_case() {
  local out before
  before=$(disk_snapshot)
  out=$("$bench" --image "$image" --engine "$1" --rw "$2" --bs "$3" --qd "$4" --merge "$5" \
        --seconds "$seconds") || die "kindling_blk_bench failed: $out"
  [[ $out == *" odirect=1 "* ]] || die "kindling_blk_bench ran without O_DIRECT on $image: $out"
  echo "$(awk '{for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["iops"], v["io_submit"], v["merged"]}' <<<"$out") $(disk_delta "$before" "$(disk_snapshot)")"
}

# fio_args ENGINE RW BS QD: fio's arguments for the same workload.
fio_args() {
  local rw=$2
  [[ $rw == seqread ]] && rw=read
  echo --name=bench --filename="$image" --ioengine="$1" --direct=1 --rw="$rw" --bs="$3" \
    --iodepth="$4" --numjobs=1 --size="$image_bytes" --time_based --norandommap --randrepeat=0
}

# fio_case ENGINE RW BS QD -> "iops" and the disk's delta
fio_case() {
  local out before
  before=$(disk_snapshot)
  # shellcheck disable=SC2046  # fio_args prints words without spaces inside them
  out=$(fio $(fio_args "$@") --runtime="$seconds" --output-format=terse 2>/dev/null) ||
    die "fio failed ($*)"
  # Terse v3: field 8 = read IOPS, 49 = write IOPS.
  echo "$(awk -F';' '{print $8 + $49}' <<<"$out") $(disk_delta "$before" "$(disk_snapshot)")"
}

# disk_figures ROWS... (each "requests sectors ms_in_queue interrupts") -> the medians per run of
# requests per disk interrupt, KiB per disk request and microseconds per request in the disk's
# queue (blk-mq's time from insertion to completion), as "R K L" ("?" where not counted).
disk_figures() {
  local per_run r k l
  per_run=$(printf '%s\n' "$@" |
    awk '$1 > 0 { print ($4 > 0 ? $1 / $4 : "?"), $2 / 2 / $1, $3 * 1000 / $1 }')
  r=$(column_median 1 <<<"$per_run")
  k=$(column_median 2 <<<"$per_run")
  l=$(column_median 3 <<<"$per_run")
  awk -v r="$r" -v k="$k" -v l="$l" 'BEGIN {
    printf "%s %s %s\n", (r == "?" ? r : sprintf("%.1f", r)), (k == "?" ? k : sprintf("%.1f", k)),
      (l == "?" ? l : sprintf("%.0f", l)) }'
}

# fio_odirect ENGINE: runs fio for a moment and reads the flags of its fds on the image from
# /proc (fio's job is a child process): O_DIRECT must be in effect, not only asked for.
fio_odirect() {
  local pid p fd flags seen=""
  # shellcheck disable=SC2046
  fio $(fio_args "$1" randread 4096 1) --runtime=3 --output-format=terse >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 60); do
    for p in $pid $(pgrep -P "$pid" || true); do
      for fd in /proc/"$p"/fd/*; do
        [[ $(readlink "$fd" 2>/dev/null) == "$(realpath "$image")" ]] || continue
        flags=$(awk '/^flags:/ { print $2 }' "/proc/$p/fdinfo/${fd##*/}" 2>/dev/null) || continue
        [[ -n $flags ]] && seen=$(( (8#$flags & 8#40000) ? 1 : 0 ))
      done
    done
    [[ -n $seen ]] && break
    sleep 0.05
  done
  wait "$pid" || true
  [[ $seen == 1 ]]
}

# The host disk's speed drifts by tens of percent over seconds, so one kindling run next to one
# fio run says little. Each case runs ROUNDS paired rounds (kindling and fio back to back, the
# order alternating) and reports the medians and the median of the per-round ratios.
# MB/s (10^6 bytes, as fio prints) of IOPS requests of BS bytes.
mb_per_s() { awk -v i="$1" -v b="$2" 'BEGIN { print i * b / 1e6 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# column_median N: the median of column N of stdin's rows, "?" where no row has a number there.
column_median() {
  local values
  values=$(awk -v c="$1" '$c != "" && $c != "?" { print $c }')
  if [[ -n $values ]]; then median <<<"$values"; else echo "?"; fi
}

declare -A k_iops f_iops ratios merged_mbps
# run_case NAME ENGINE RW BS QD MERGE: ROUNDS paired rounds. A merging case with a transfer size
# under 128 KiB is also measured against fio at the merged size (bs=128k, the same bytes in
# flight), so that "merging beats fio" is not won by comparing with fio's small requests.
run_case() {
  local name=$1 engine=$2 rw=$3 bs=$4 qd=$5 merge=$6 round ki ks kmerged fv
  [[ $engine != "$default_engine" ]] && name="$name-$engine"
  [[ -n ${BENCH_CASES:-} && " $BENCH_CASES " != *" $name "* ]] && return 0
  local big_qd=$((bs * qd / 131072))
  local -a kis=() fis=() rs=() rows=() bigs=() kdisk=() fdisk=()
  for ((round = 0; round < rounds; round++)); do
    # Command substitutions, not `< <(...)`: a failing measurement must stop the script.
    local k f
    if ((round % 2 == 0)); then
      k=$(kindling_case "$engine" "$rw" "$bs" "$qd" "$merge")
      f=$(fio_case "$engine" "$rw" "$bs" "$qd")
    else
      f=$(fio_case "$engine" "$rw" "$bs" "$qd")
      k=$(kindling_case "$engine" "$rw" "$bs" "$qd" "$merge")
    fi
    if [[ $merge == 1 && $rw == seqread && $bs -lt 131072 && $big_qd -ge 1 ]]; then
      bigs+=("$(fio_case "$engine" "$rw" 131072 "$big_qd")")
    fi
    local kd fd
    read -r ki ks kmerged kd <<<"$k"
    read -r fv fd <<<"$f"
    kis+=("$ki") fis+=("$fv") kdisk+=("$kd") fdisk+=("$fd")
    rs+=("$(awk -v a="$ki" -v b="$fv" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
    rows+=("$k")
  done
  k_iops[$name]=$(printf '%s\n' "${kis[@]}" | median)
  f_iops[$name]=$(printf '%s\n' "${fis[@]}" | median)
  ratios[$name]=$(printf '%s\n' "${rs[@]}" | median)
  # Counters are those of the round whose kindling figure is closest to the median.
  read -r ki ks kmerged _ < <(printf '%s\n' "${rows[@]}" |
    awk -v m="${k_iops[$name]}" '{ d = ($1 > m ? $1 - m : m - $1); if (NR == 1 || d < best) { best = d; row = $0 } } END { print row }')
  local lo hi
  read -r lo hi < <(printf '%s\n' "${rs[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
  # A spread this wide (the best round 1.5 times the worst) leaves the median meaning little.
  local spread
  spread=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN { if (lo > 0 && hi / lo > 1.5) print "; spread too wide for the median to mean much" }')
  printf '%s: kindling %.0f IOPS (%.1f MB/s), fio %.0f IOPS (%.1f MB/s), ratio %.2f, io_submit calls %s, merged %s\n    (medians of %d paired rounds; per-round ratios %s-%s%s)\n' \
    "$name" "${k_iops[$name]}" "$(mb_per_s "${k_iops[$name]}" "$bs")" \
    "${f_iops[$name]}" "$(mb_per_s "${f_iops[$name]}" "$bs")" \
    "${ratios[$name]}" "$ks" "$kmerged" "$rounds" "$lo" "$hi" "$spread"
  # Where the requests wait, from the disk's own counters (both sides, the same disk).
  if [[ -n $disk_stat ]]; then
    local kr kk kl fr fk fl
    read -r kr kk kl < <(disk_figures "${kdisk[@]}")
    read -r fr fk fl < <(disk_figures "${fdisk[@]}")
    printf '    (disk %s, medians per run: kindling %s requests per disk interrupt, %s KiB per disk request, %s us in the disk queue; fio %s, %s KiB, %s us)\n' \
      "$disk_name" "$kr" "$kk" "$kl" "$fr" "$fk" "$fl"
  fi
  if ((${#bigs[@]} > 0)); then
    local big
    big=$(printf '%s\n' "${bigs[@]}" | median)
    merged_mbps[$name]=$(mb_per_s "$big" 131072)
    printf '%s vs fio at the merged size: kindling %.1f MB/s, fio bs=128k qd%d %.1f MB/s, ratio %.2f\n' \
      "$name" "$(mb_per_s "${k_iops[$name]}" "$bs")" "$big_qd" "${merged_mbps[$name]}" \
      "$(awk -v a="$(mb_per_s "${k_iops[$name]}" "$bs")" -v b="${merged_mbps[$name]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
  fi
}

# The engines: kindling's default (the device's BlockOptions) first, then the others it has.
default_engine=libaio
engines=${BENCH_ENGINES:-libaio io_uring}
echo "bench: image $image ($fs), $rounds paired rounds of ${seconds}s per case, $(nproc) CPUs, no CPU pinning on either side"
for engine in $engines; do
  fio_odirect "$engine" || die "fio --ioengine=$engine --direct=1: O_DIRECT not in effect on $image"
  echo "bench: engine $engine (fio --ioengine=$engine; O_DIRECT confirmed in /proc for both)"
  run_case 4k-randread-qd32 "$engine" randread 4096 32 1
  run_case 4k-randwrite-qd32 "$engine" randwrite 4096 32 1
  run_case 128k-seqread-qd8 "$engine" seqread 131072 8 1
  run_case 4k-seqread-qd32 "$engine" seqread 4096 32 1
  run_case 4k-seqread-qd32-nomerge "$engine" seqread 4096 32 0
done

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

# A lean VMM: the kindling binary itself, with the test guest (it boots in milliseconds).
lean_dir=$(mktemp -d)
trap 'rm -f "$guest_err"; rm -rf "$lean_dir"' EXIT
truncate -s 64M "$lean_dir/disk.img"
wait_for_line() { # FILE TEXT: up to 30 s
  for _ in $(seq 1 600); do grep -q "$2" "$1" && return 0; sleep 0.05; done
  return 1
}

# vmm-rss-kib: the resident memory of a running 1-vCPU 128 MiB VM with one disk, outside guest
# RAM (every mapping of /proc/PID/smaps but the one 128 MiB guest RAM mapping): the binary,
# heap, thread stacks, the engine's rings. The median of 3 VMs.
lean_rss() {
  local out="$lean_dir/rss.out" pid kib rc=0
  "$kindling" run --kernel "$testguest" --mem 128M --timeout 60 --cmdline "test=hello then=idle" \
    --disk "$lean_dir/disk.img" >"$out" 2>&1 &
  pid=$!
  wait_for_line "$out" "testguest: hello" || die "vmm-rss: the test guest did not start: $(cat "$out")"
  kib=$(awk -v mem=131072 '/^Size:/ { size = $2 } /^Rss:/ { if (size == mem) ram++; else t += $2 }
        END { if (ram != 1) exit 1; print t }' "/proc/$pid/smaps") ||
    die "vmm-rss: no single 128 MiB guest RAM mapping in /proc/$pid/smaps"
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  ((rc == 143)) || die "vmm-rss: kindling ended with $rc on SIGTERM, not 143"
  echo "$kib"
}

# exec-to-first-run-ms: from just before exec (bash's $EPOCHREALTIME, CLOCK_REALTIME) to vCPU 0's
# first KVM_RUN (kindling's info line, CLOCK_REALTIME). The median of 10 runs, each next to the
# baseline below.
lean_exec() {
  local out
  out=$(bash -c 'echo "exec-at $EPOCHREALTIME"; exec "$@" 2>&1' _ "$kindling" run \
        --kernel "$testguest" --mem 128M --timeout 60 --cmdline test=hello \
        --disk "$lean_dir/disk.img" --log-level info) || die "exec-to-first-run: kindling failed: $out"
  awk '/^exec-at/ { t0 = $2 } /first KVM_RUN at/ { for (i = 1; i <= NF; i++) if ($i == "at") t = $(i + 1) }
       END { if (!t0 || !t) exit 1; printf "%.2f\n", (t - t0) * 1000 }' <<<"$out" ||
    die "exec-to-first-run: no timestamps in: $out"
}

# The baseline in the same minutes: exec of a static C program to its main() (what any static
# binary pays before its first line; it swings with the host's load).
lean_exec_baseline() {
  local out
  out=$(bash -c 'echo "exec-at $EPOCHREALTIME"; exec "$@"' _ "$build/tests/bench/exec_baseline") ||
    die "exec baseline failed: $out"
  awk '/^exec-at/ { t0 = $2 } /^main-at/ { t = $2 }
       END { if (!t0 || !t) exit 1; printf "%.2f\n", (t - t0) * 1000 }' <<<"$out" ||
    die "exec baseline: no timestamps in: $out"
}

# density-20: 20 test-guest VMs of 32 MiB started at once; VMs per second until the last one's
# first KVM_RUN, and their total resident memory (guest RAM included) once all are running.
# Each guest then halts and kindling --exit-on-halt ends it with exit 0.
lean_density() {
  local n=20 i t0 pids=() rc total last
  t0=$EPOCHREALTIME
  for ((i = 0; i < n; i++)); do
    "$kindling" run --kernel "$testguest" --mem 32M --timeout 120 --exit-on-halt --log-level info \
      --cmdline "test=hello then=idle" >"$lean_dir/vm$i.out" 2>&1 &
    pids+=($!)
  done
  for ((i = 0; i < n; i++)); do
    wait_for_line "$lean_dir/vm$i.out" "testguest: hello" || die "density: VM $i did not start"
  done
  total=0
  for pid in "${pids[@]}"; do
    total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")))
  done
  for ((i = 0; i < n; i++)); do
    rc=0
    wait "${pids[$i]}" || rc=$?
    ((rc == 0)) || die "density: VM $i exited with $rc: $(tail -3 "$lean_dir/vm$i.out")"
  done
  last=$(cat "$lean_dir"/vm*.out | awk '/first KVM_RUN at/ { for (i = 1; i <= NF; i++) if ($i == "at" && $(i + 1) > m) m = $(i + 1) } END { print m }')
  awk -v n="$n" -v t0="$t0" -v last="$last" -v kib="$total" \
    'BEGIN { printf "density-20: %.1f VMs/s, %.1f MiB total (%d VMs of 32 MiB, all exited 0)\n", n / (last - t0), kib / 1024, n }'
}

if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "bench: lean-VMM figures skipped: /dev/kvm cannot be opened"
else
  rss=$(for _ in 1 2 3; do lean_rss; done | median)
  echo "vmm-rss-kib: $rss (RSS outside guest RAM, 1 vCPU, 128 MiB, one disk; median of 3)"
  exec_rows=$(for _ in $(seq 1 10); do echo "$(lean_exec) $(lean_exec_baseline)"; done)
  exec_ms=$(awk '{ print $1 }' <<<"$exec_rows" | median)
  base_ms=$(awk '{ print $2 }' <<<"$exec_rows" | median)
  echo "exec-to-first-run-ms: $exec_ms (median of 10; baseline: a static C program's exec to main() $base_ms ms, median of the same 10 rounds)"
  lean_density
fi

# The targets of the issue, checked on what ran.
check() { # NAME CONDITION-TEXT AWK-EXPR
  if awk "BEGIN { exit !($3) }"; then echo "target met: $1 ($2)"; else echo "target MISSED: $1 ($2)"; fi
}
for c in 4k-randread-qd32:0.97 4k-randwrite-qd32:0.95 128k-seqread-qd8:0.97; do
  name=${c%%:*} min=${c##*:}
  [[ -n ${ratios[$name]:-} ]] &&
    check "$name" "median ratio ${ratios[$name]} >= $min" "${ratios[$name]} >= $min"
done
if [[ -n ${k_iops[4k-seqread-qd32]:-} && -n ${k_iops[4k-seqread-qd32-nomerge]:-} ]]; then
  m=${k_iops[4k-seqread-qd32]} n=${k_iops[4k-seqread-qd32-nomerge]}
  check "4k-seqread-qd32 merge beats nomerge" "$m vs $n IOPS" "$m > $n"
  if [[ -n ${merged_mbps[4k-seqread-qd32]:-} ]]; then
    km=$(mb_per_s "$m" 4096) fm=${merged_mbps[4k-seqread-qd32]}
    check "4k-seqread-qd32 merged keeps up with fio at the merged size" "$km vs $fm MB/s" "$km >= 0.97 * $fm"
  fi
fi
[[ -n ${rss:-} ]] && check "vmm-rss-kib" "$rss <= 3072" "$rss <= 3072"
[[ -n ${exec_ms:-} ]] && check "exec-to-first-run-ms" "$exec_ms <= 5" "$exec_ms <= 5"

# The drive rate limiter (issue 11), by kindling_blk_bench --limit on the same image (4k random
# reads at depth 32):
# a disk limited to 10 MiB/s, and one to 500 requests/s, over RATELIMIT_SECONDS (default 10),
# must stay within 5 % of the limit; a limiter whose buckets never run dry (every request
# charged, none held) against the plain device (no limiter), in paired rounds as above, must
# keep a median ratio >= 0.98.
rl_seconds=${RATELIMIT_SECONDS:-10}
rl_run() { # LIMIT SECONDS -> the bench's line
  "$bench" --image "$image" --rw randread --bs 4096 --qd 32 --limit "$1" --seconds "$2" ||
    die "kindling_blk_bench --limit $1 failed"
}
rl_field() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }'; }
rl_limited() { # NAME LIMIT FIELD TARGET DIVISOR UNIT
  [[ -n ${BENCH_CASES:-} && " $BENCH_CASES " != *" $1 "* ]] && return 0
  local out got
  out=$(rl_run "$2" "$rl_seconds")
  got=$(rl_field "$3" <<<"$out")
  ratios[$1]=$(awk -v g="$got" -v t="$4" 'BEGIN { printf "%.3f", g / t }')
  awk -v n="$1" -v g="$got" -v t="$4" -v d="$5" -v u="$6" -v r="${ratios[$1]}" \
    -v th="$(rl_field throttled <<<"$out")" -v s="$rl_seconds" \
    'BEGIN { printf "%s: kindling %.2f %s, limit %.0f %s, ratio %.3f (%d s, held back %d times)\n", n, g / d, u, t / d, u, r, s, th }'
  check "$1" "ratio ${ratios[$1]} within 5 % of 1" "${ratios[$1]} >= 0.95 && ${ratios[$1]} <= 1.05"
}
rl_unlimited() {
  local name=ratelimit-unlimited round p q
  [[ -n ${BENCH_CASES:-} && " $BENCH_CASES " != *" $name "* ]] && return 0
  local -a ps=() qs=() rs=()
  for ((round = 0; round < rounds; round++)); do
    if ((round % 2 == 0)); then
      p=$(rl_run none "$seconds" | rl_field iops); q=$(rl_run huge "$seconds" | rl_field iops)
    else
      q=$(rl_run huge "$seconds" | rl_field iops); p=$(rl_run none "$seconds" | rl_field iops)
    fi
    ps+=("$p") qs+=("$q") rs+=("$(awk -v a="$q" -v b="$p" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
  done
  ratios[$name]=$(printf '%s\n' "${rs[@]}" | median)
  printf '%s: kindling %.0f IOPS with buckets that never run dry, plain %.0f IOPS, ratio %.3f (4k-randread-qd32, medians of %d paired rounds of %ss; per-round ratios %s)\n' \
    "$name" "$(printf '%s\n' "${qs[@]}" | median)" "$(printf '%s\n' "${ps[@]}" | median)" \
    "${ratios[$name]}" "$rounds" "$seconds" "$(printf '%s\n' "${rs[@]}" | sort -g | tr '\n' ' ' | sed 's/ $//')"
  check "$name" "median ratio ${ratios[$name]} >= 0.98" "${ratios[$name]} >= 0.98"
}
rl_limited ratelimit-bw-10MiB bw=10485760 bytes_per_s 10485760 1048576 MiB/s
rl_limited ratelimit-ops-500 ops=500 iops 500 1 IOPS
rl_unlimited
true
