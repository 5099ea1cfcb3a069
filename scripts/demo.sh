#!/usr/bin/env bash
# The demo: sets up and builds (scripts/setup.sh), then, in a temp directory, starts Debian's
# mosquitto with the mqds tracker plugin and three mqds-edge boards, puts a sample file, gets it
# back, verifies it, and stops everything, saying what happens along the way.
#   MQDS_DEMO_SIZE_MIB   size of the sample file (default 24)
#   MQDS_KEEP_DEMO=1     keep the temp directory (logs, stores) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo needs the programs, not the tests: building without them halves the time.
MQDS_CMAKE_ARGS=${MQDS_CMAKE_ARGS:--DMQDS_BUILD_TESTS=OFF} scripts/setup.sh
build=$(realpath "${MQDS_BUILD_DIR:-build}")
mqds_edge="$build/edge/mqds-edge"
mqds="$build/edge/mqds"

work=$(mktemp -d /tmp/mqds-demo-XXXXXX)
chmod 755 "$work"
pids=()
broker_pid=""
say() { printf '\n== %s\n' "$*"; }
finish() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $broker_pid ]]; then kill -TERM "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  if [[ $status -ne 0 ]]; then
    echo "demo: FAILED (exit $status); logs are in $work" >&2
    for log in "$work"/*.log; do echo "---- $log" >&2; tail -n 15 "$log" >&2; done
  elif [[ ${MQDS_KEEP_DEMO:-} == 1 ]]; then
    echo "demo: logs and stores kept in $work"
  else
    rm -rf "$work"
  fi
  exit $status
}
trap finish EXIT

# A free loopback port: one nobody answers on.
port=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
done
[[ -n $port ]] || { echo "demo: no free port found" >&2; exit 1; }

say "Starting mosquitto on 127.0.0.1:$port with the mqds tracker plugin (k = 2, fragments of 1 MiB)"
mkdir -p "$work/tracker"
touch "$work/broker.log"
# Debian's broker started as root runs as the user mosquitto: it must own what it writes.
if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then chown mosquitto: "$work/tracker" "$work/broker.log"; fi
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
log_dest file $work/broker.log
plugin $build/plugin/mqds_tracker.so
plugin_opt_data_dir $work/tracker
plugin_opt_acl_fallback allow
plugin_opt_replicas 2
plugin_opt_startup_settle_ms 0
plugin_opt_ingest_users *
plugin_opt_fetch_users *
plugin_opt_edge_users *
plugin_opt_edge_ids any
CONF
cat "$work/mosquitto.conf" | sed 's/^/   /'
mosquitto -c "$work/mosquitto.conf" > "$work/broker.out.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$broker_pid" 2>/dev/null || { echo "demo: mosquitto did not start" >&2; exit 1; }
  sleep 0.1
done

say "Starting three edges (mqds-edge), each with its own LMDB store and 1 GiB of capacity"
for n in 1 2 3; do
  "$mqds_edge" -p "$port" -i "board-$n" --data-dir "$work/board-$n" --capacity 1G 2> "$work/board-$n.log" &
  pids+=($!)
  echo "   board-$n: pid ${pids[-1]}, store $work/board-$n"
done
for _ in $(seq 1 100); do
  registered=$("$mqds" -p "$port" status --json 2>/dev/null | grep -c '"ClientIdentifier"' || true)
  [[ $registered -eq 3 ]] && break
  sleep 0.1
done
[[ $registered -eq 3 ]] || { echo "demo: the edges did not register" >&2; exit 1; }
"$mqds" -p "$port" status | sed 's/^/   /'

size_mib=${MQDS_DEMO_SIZE_MIB:-24}
say "Putting a sample file of $size_mib MiB (random bytes): mqds put"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/sample.bin"
hash=$("$mqds" -p "$port" put "$work/sample.bin" | tail -n 1)
echo "   its hash: $hash"

say "What the service holds now: mqds ls, mqds status"
"$mqds" -p "$port" ls | sed 's/^/   /'
"$mqds" -p "$port" status | sed 's/^/   /'

say "Getting it back from the edges: mqds get"
"$mqds" -p "$port" get "$hash" -o "$work/sample.out"

say "Verifying"
if cmp -s "$work/sample.bin" "$work/sample.out"; then
  echo "   identical: $(sha256sum "$work/sample.out" | cut -c1-64 | tr a-f A-F)"
else
  echo "demo: the file got back differs" >&2
  exit 1
fi

say "Stopping: the edges say goodbye (SIGTERM), then the broker stops"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid"; done
pids=()
grep -h "said goodbye" "$work"/board-*.log | sed 's/^/   /'
echo
echo "demo: OK"
