#!/usr/bin/env bash
# ctest clock_step (LABELS integration): the broker's timers run on the
# monotonic clock, so steps of its wall clock (an NTP step, a person setting
# the date) revoke no lease and neither declare live workers dead nor hide
# dead ones. A real redis-server, narrator-broker under libfaketime (wall
# clock offset read from a file at every call, monotonic clock left alone),
# two narrator-worker-test workers of capacity 4 and eight jobs that sleep
# 12 s. With all eight leased the broker's wall clock is stepped two hours
# forward, then four back (two hours behind the real time), then back to
# the real time. Meanwhile:
#   - no job is leased twice: all eight end done with attempts 1;
#   - no live worker is declared dead, and the broker keeps heartbeating
#     them (no worker finds it silent);
#   - a worker killed while the clock is two hours behind leaves STATS.
#   tests/clock_step_test.sh BUILD_DIR
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR}"
bin="$build/bin"
for p in narrator-broker narrator-worker-test narrate; do
  [ -x "$bin/$p" ] || { echo "SKIP: $bin/$p is not built"; exit 77; }
done
command -v redis-server >/dev/null || { echo "SKIP: no redis-server"; exit 77; }
faketime_lib=""
for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 \
  /usr/local/lib/faketime/libfaketime.so.1; do
  [ -f "$f" ] && { faketime_lib="$f"; break; }
done
[ -n "$faketime_lib" ] || {
  echo "SKIP: libfaketime not found (Debian package faketime; deploy/install-deps.sh installs it)"
  exit 77
}

run="$(mktemp -d "${TMPDIR:-/tmp}/nr-clock-XXXXXX")"
# Three distinct free ports below Linux's ephemeral range (see
# local_cluster_test.sh).
ports=()
while [ ${#ports[@]} -lt 3 ]; do
  p=$((20000 + RANDOM % 12700))
  [[ " ${ports[*]} " == *" $p "* ]] && continue
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
  ports+=("$p")
done
redis_port="${ports[0]}"
export NARRATOR_BROKER="tcp://127.0.0.1:${ports[1]}"
export NARRATOR_WORKER_BROKER="tcp://127.0.0.1:${ports[2]}"
pids=()

fail() {
  echo "FAIL: $*" >&2
  for f in "$run"/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -n 40 "$f"; }; done >&2
  exit 1
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${NR_TEST_KEEP:-}" ] && echo "kept $run" >&2 || rm -rf "$run"
}
trap cleanup EXIT

# The broker's wall clock offset, as libfaketime reads it: "+0", "+2h", "-2h".
step() { echo "$1" >"$run/faketime.tmp" && mv "$run/faketime.tmp" "$run/faketime"; }
# stats_workers: the live test-stage workers in the broker's STATS.
stats_workers() {
  "$bin/narrate" --json stats 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("workers.test", 0))'
}

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  >"$run/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null 2>&1 || fail "redis-server did not start"

step "+0"
LD_PRELOAD="$faketime_lib" FAKETIME_TIMESTAMP_FILE="$run/faketime" FAKETIME_NO_CACHE=1 \
  FAKETIME_DONT_FAKE_MONOTONIC=1 \
  "$bin/narrator-broker" --client-endpoint "$NARRATOR_BROKER" \
  --worker-endpoint "$NARRATOR_WORKER_BROKER" --redis-port "$redis_port" \
  --redis-prefix clockstep --stages test --heartbeat-ms 500 --heartbeat-liveness 4 \
  --job-deadline-ms 60000 >"$run/broker.log" 2>&1 &
pids+=($!)
broker_pid=$!
for name in w1 w2; do
  "$bin/narrator-worker-test" --name "$name" --capacity 4 --concurrency 4 --behave sleep:12000 \
    --heartbeat-ms 500 --heartbeat-liveness 4 >"$run/worker-$name.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do [ "$(stats_workers)" = 2 ] && break; sleep 0.1; done
[ "$(stats_workers)" = 2 ] || fail "the two workers did not register"

ids=()
for i in $(seq 8); do echo "clock step job $i" >"$run/in$i.txt"; done
"$bin/narrate" submit --route test --no-wait --id-from random "$run"/in*.txt >"$run/ids.txt" ||
  fail "narrate submit"
mapfile -t ids < <(grep -oE '[0-9a-f]{16,}' "$run/ids.txt" | sort -u)
[ ${#ids[@]} -eq 8 ] || fail "wanted 8 job ids, got: $(cat "$run/ids.txt")"

# state ID: the job's state; attempts ID: its attempts.
field() {
  "$bin/narrate" --json status "$2" 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', ''))"
}
all_running() {
  for id in "${ids[@]}"; do [ "$(field state "$id")" = running ] || return 1; done
}
for _ in $(seq 50); do all_running && break; sleep 0.1; done
all_running || fail "the eight jobs are not all leased"

# Two hours forward, for a few of the broker's timer periods.
step "+2h"
sleep 2
for id in "${ids[@]}"; do
  st="$(field state "$id")" at="$(field attempts "$id")"
  [ "$st" = running ] && [ "$at" = 1 ] ||
    fail "2 h forward: job $id is $st after $at attempt(s), wanted running after 1 (lease revoked?)"
done
[ "$(stats_workers)" = 2 ] || fail "2 h forward: STATS shows $(stats_workers) test workers, wanted 2"
# Two hours behind the real time: a worker that dies now is still found dead.
step "-2h"
"$bin/narrator-worker-test" --name canary --capacity 1 --heartbeat-ms 500 \
  --heartbeat-liveness 4 >"$run/worker-canary.log" 2>&1 &
canary=$!
pids+=($canary)
for _ in $(seq 50); do [ "$(stats_workers)" = 3 ] && break; sleep 0.1; done
[ "$(stats_workers)" = 3 ] || fail "the canary worker did not register"
kill -KILL "$canary"
wait "$canary" 2>/dev/null || true
for _ in $(seq 60); do [ "$(stats_workers)" = 2 ] && break; sleep 0.1; done
[ "$(stats_workers)" = 2 ] ||
  fail "a worker killed with the broker's clock 2 h behind is still in STATS after 6 s"
sleep 1
step "+0"
# libfaketime took hold: the broker logged the canary two hours behind the
# canary's own log (log lines carry the wall clock).
skew="$(python3 - "$run/broker.log" "$run/worker-canary.log" <<'EOF'
import datetime, sys
def at(path, word):
    for line in open(path):
        if word in line:
            return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return None
b, w = at(sys.argv[1], "canary/"), at(sys.argv[2], "connected")
print(round((b - w).total_seconds() / 60) if b and w else "none")
EOF
)"
[ "$skew" = -120 ] || fail "the broker's wall clock was not stepped (skew $skew min, wanted -120)"

for id in "${ids[@]}"; do
  "$bin/narrate" wait "$id" --timeout 60 >/dev/null || fail "job $id did not finish"
done
for id in "${ids[@]}"; do
  st="$(field state "$id")" at="$(field attempts "$id")"
  [ "$st" = done ] && [ "$at" = 1 ] || fail "job $id ended $st after $at attempt(s), wanted done after 1"
done
! grep -E "lost \(no heartbeat|is gone|deadline passed|retry in" "$run/broker.log" | grep -v canary ||
  fail "the broker revoked a lease or declared a live worker dead"
for name in w1 w2; do
  ! grep -q "broker silent" "$run/worker-$name.log" ||
    fail "worker $name found the broker silent (no heartbeats while its clock was stepped)"
done
[ "$(stats_workers)" = 2 ] || fail "STATS shows $(stats_workers) test workers at the end, wanted 2"
kill -0 "$broker_pid" || fail "the broker died"
echo "clock_step: ok"
