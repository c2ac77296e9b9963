#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time, starting from the seed corpora
# in tests/fuzz/corpus/ (new inputs go to a scratch corpus, the repo's seeds stay as they are):
#   tests/fuzz/run.sh FUZZ_BUILD SECONDS [TARGET...]
# One line per target: "fuzz: TARGET: N executions in S s, 0 crashes". A crash leaves its input
# in FUZZ_BUILD/fuzz-artifacts/ and makes the script fail (turn it into a unit test).
set -euo pipefail
build=$1 seconds=$2
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
targets=("$@")
((${#targets[@]})) || targets=(fuzz_queue fuzz_blk_request fuzz_config_json fuzz_kernel_loader fuzz_assist fuzz_mmio)
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: SECONDS must be a positive integer" >&2; exit 2; }
mkdir -p "$build/fuzz-artifacts"
status=0 total=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  [[ -x $bin ]] || { echo "fuzz: $bin missing (make fuzz builds it)" >&2; exit 2; }
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  log="$build/fuzz-artifacts/$t.log"
  if "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t-" "$work" "$here/corpus/$t" >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -1)
  runs=${runs:-0}
  total=$((total + runs))
  echo "fuzz: $t: $runs executions in $seconds s, $crashes crashes"
  if ((crashes)); then tail -n 30 "$log" >&2; fi
done
echo "fuzz: $total executions in all"
exit $status
