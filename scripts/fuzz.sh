#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer + UndefinedBehaviorSanitizer) in
# ./build-fuzz and runs each for a while on a copy of its seed corpus (fuzz/corpus/<target>/).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]    # default 60 s, every target
#   MQDS_FUZZ_RUNS=10000000 scripts/fuzz.sh 86400 ...   # stops at 10 million executions instead
#   MQDS_FUZZ_BUILD_DIR=dir                              # builds and runs there (default build-fuzz)
#   MQDS_FUZZ_TIMEOUT=300                                # seconds one input may take (default 10;
#                                                        # raise it for runs at low priority)
#
# Prints executions, exec/s and coverage per target; exits non-zero if any target crashed (or
# hung, or ran out of memory), naming the input that did it, which stays in
# build-fuzz/crashes/<target>/. Replay one with: build-fuzz/fuzz/<target> <that file>
# Packages: clang-14 and libclang-rt-14-dev (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2
  exit 1
fi
all_targets=(events_fuzz ingest_fuzz fetch_fuzz query_fuzz edge_config_fuzz plugin_options_fuzz)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  if [[ ! " ${all_targets[*]} " == *" $t "* ]]; then
    echo "fuzz: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 1
  fi
done
if ! command -v clang++-14 >/dev/null || ! command -v clang-14 >/dev/null; then
  echo "fuzz: clang-14 is missing; run scripts/setup.sh (as root) to install it" >&2
  exit 1
fi

build_dir=${MQDS_FUZZ_BUILD_DIR:-build-fuzz}
echo "=== fuzz: build in $build_dir"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
  -DCMAKE_CXX_COMPILER=clang++-14 -DMQDS_FUZZ=ON -DMQDS_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j"${MQDS_JOBS:-2}" --target "${targets[@]}"

failed=()
printf '%-22s %12s %10s %8s %8s  %s\n' target executions exec/s cov corpus result
for t in "${targets[@]}"; do
  corpus="$build_dir/corpus/$t"      # a copy: the repository's seeds stay small
  crashes="$build_dir/crashes/$t"
  log="$build_dir/logs/$t.log"
  rm -rf "$corpus"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  cp fuzz/corpus/"$t"/* "$corpus"/
  status=0
  runs_flag=()
  [[ -n ${MQDS_FUZZ_RUNS:-} ]] && runs_flag=(-runs="$MQDS_FUZZ_RUNS")
  "$build_dir/fuzz/$t" -max_total_time="$seconds" "${runs_flag[@]}" -timeout="${MQDS_FUZZ_TIMEOUT:-10}" \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  size=$(find "$corpus" -type f | wc -l)
  if ((status == 0)); then
    result=ok
  else
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $status): input ${artifact:-not saved}, log $log"
    failed+=("$t")
  fi
  printf '%-22s %12s %10s %8s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$size" "$result"
done
if ((${#failed[@]})); then
  for t in "${failed[@]}"; do
    echo "--- $t: the end of $build_dir/logs/$t.log"
    tail -n 40 "$build_dir/logs/$t.log"
  done
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; replay with $build_dir/fuzz/<target> <input>" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran without a crash"
