#!/usr/bin/env bash
# The benchmarks (README, "Benchmarks"): sets up and builds in ./build-bench (scripts/setup.sh,
# with the test harness the benchmarks drive), then runs every benchmark against its baseline and
# prints the table and one `NAME: ratio X (target Y)` line per target. Arguments go to
# mqds_bench: `scripts/bench.sh transfer --file-mib 256`, `scripts/bench.sh --help`.
# Takes about 11 minutes on 2 cores; needs about 6 GB free in $TMPDIR (or --work-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v openssl >/dev/null; then  # the hashing baseline is `openssl speed`
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench: install openssl (apt-get install openssl) as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssl
fi
MQDS_BUILD_DIR=build-bench MQDS_CMAKE_ARGS="-DMQDS_BUILD_TESTS=ON ${MQDS_CMAKE_ARGS:-}" scripts/setup.sh
exec build-bench/bench/mqds_bench "$@"
