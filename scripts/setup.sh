#!/usr/bin/env bash
# Installs what mqds needs from Debian 12's packages (only what is missing), then configures and
# builds it in ./build. Run as root on a fresh machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config
  libssl-dev libmbedtls-dev          # SHA-256 and Base64 backends (OpenSSL is the default)
  nlohmann-json3-dev                 # the JSON of the events
  mosquitto mosquitto-dev libmosquitto-dev  # the broker, its plugin API, the MQTT client library
  liblmdb-dev                        # storage of the edge and the tracker
  libcli11-dev                       # command-line parsing
  googletest libgtest-dev            # tests
  clang-format                       # the format check of the tests (scripts/check-format.sh)
  clang-14 libclang-rt-14-dev        # libFuzzer and the sanitizers of scripts/fuzz.sh
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: run as root (or with sudo) to install packages" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${MQDS_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${MQDS_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"${MQDS_JOBS:-2}"
echo "setup: built in $build_dir"
