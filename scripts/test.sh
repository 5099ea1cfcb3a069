#!/usr/bin/env bash
# The test suite, as CI runs it: installs what is missing, then builds and tests three
# configurations: the default (OpenSSL), the mbedTLS backend, and AddressSanitizer +
# UndefinedBehaviorSanitizer, then runs every fuzz target briefly (scripts/fuzz.sh, clang).
# Warnings are errors. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${MQDS_JOBS:-2}

run() {  # name, cmake args...
  local name=$1
  shift
  echo "=== $name: build"
  MQDS_BUILD_DIR="build-test-$name" MQDS_CMAKE_ARGS="-DMQDS_WERROR=ON $*" scripts/setup.sh
  echo "=== $name: test"
  (cd "build-test-$name" && ctest --output-on-failure -j"$jobs")
}

# The benchmarks are compiled (warnings as errors) in the default configuration only.
run default
echo "=== format (clang-format is installed by the first build's set-up)"
scripts/check-format.sh
run mbedtls -DMQDS_CRYPTO=mbedtls -DMQDS_SIM_SEEDS=200 -DMQDS_BUILD_BENCH=OFF
run sanitize -DMQDS_SANITIZE=ON -DMQDS_SIM_SEEDS=200 -DMQDS_BUILD_BENCH=OFF
echo "=== fuzz: every decoder of untrusted bytes, 10 s each (about 4 minutes with the build)"
scripts/fuzz.sh 10
echo "=== all configurations passed"
