#!/usr/bin/env bash
# ctest local_cluster (LABELS integration): deploy/local-cluster.sh on free
# ports in a temporary run folder: start (twice), status, a spoken text and
# a captioned image through the cluster, a dead worker shown by status,
# stop (twice), nothing left running.
#   tests/local_cluster_test.sh BUILD_DIR
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:?usage: $0 BUILD_DIR}"
bin="$build/bin"
for p in narrator-broker narrator-worker-speech narrate; do
  [ -x "$bin/$p" ] || { echo "SKIP: $bin/$p is not built"; exit 77; }
done
command -v redis-server >/dev/null || { echo "SKIP: no redis-server"; exit 77; }

run="$(mktemp -d "${TMPDIR:-/tmp}/nr-lc-XXXXXX")"
# Four distinct ports that nothing listens on, random in 20000..32699: below
# Linux's ephemeral range (32768..60999), where another test's outgoing
# connection could take the port before redis or the broker binds it.
ports=()
while [ ${#ports[@]} -lt 4 ]; do
  p=$((20000 + RANDOM % 12700))
  [[ " ${ports[*]} " == *" $p "* ]] && continue
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
  ports+=("$p")
done
export NARRATOR_REDIS_PORT="${ports[0]}" NARRATOR_CLIENT_PORT="${ports[1]}"
export NARRATOR_WORKER_PORT="${ports[2]}" NARRATOR_GATEWAY_PORT="${ports[3]}"
export NARRATOR_BROKER="tcp://127.0.0.1:${ports[1]}"
lc=("$src/deploy/local-cluster.sh")
opts=(--run-dir "$run" --build-dir "$build" --model-dir "$src/tests/fixtures/vit-gpt2-tiny"
  --workers "speech=1 vision=1 text=1")

fail() {
  echo "FAIL: $*" >&2
  for f in "$run"/logs/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }; done >&2
  exit 1
}
cleanup() { "${lc[@]}" stop --run-dir "$run" >/dev/null 2>&1 || true; rm -rf "$run"; }
trap cleanup EXIT

"${lc[@]}" start "${opts[@]}" || fail "start"
again="$("${lc[@]}" start "${opts[@]}")" || fail "second start"
grep -q "already running" <<<"$again" || fail "second start did not find the cluster running: $again"
"${lc[@]}" status --run-dir "$run" || fail "status after start: exit $?"
[ "$(redis-cli -p "${ports[0]}" config get maxmemory-policy | tail -1)" = noeviction ] || fail "redis is not noeviction"
[ "$(redis-cli -p "${ports[0]}" config get appendonly | tail -1)" = yes ] || fail "redis has no AOF"

"$bin/narrate" --timeout 60 speak "The local cluster speaks." -o "$run/hello.wav" || fail "narrate speak"
[ "$(head -c 4 "$run/hello.wav")" = RIFF ] || fail "hello.wav is not a WAV"

if [ -x "$bin/narrator-worker-vision" ] && [ -x "$bin/narrator-worker-text" ]; then
  "$bin/narrate" --timeout 60 submit "$src/tests/fixtures/images/rocket_223x225.jpg" -o "$run/out" \
    --max-length 8 || fail "narrate submit"
  if [ ! -s "$run/out/rocket_223x225.txt" ] || [ ! -s "$run/out/rocket_223x225.wav" ]; then
    fail "no caption or audio for the image"
  fi
fi
if [ -x "$bin/narrator-gateway" ]; then
  (exec 3<>"/dev/tcp/127.0.0.1/${ports[3]}") 2>/dev/null || fail "the gateway does not listen"
fi

# A dead worker shows as DOWN, status exits 1.
kill -KILL "$(cat "$run/worker-speech-1.pid")"
sleep 0.2
set +e
"${lc[@]}" status --run-dir "$run" >"$run/status.txt"
code=$?
set -e
if [ $code -ne 1 ] || ! grep -q "worker-speech-1 *DOWN" "$run/status.txt"; then
  fail "status after a kill: exit $code: $(cat "$run/status.txt")"
fi

pids="$(cat "$run"/*.pid)"
"${lc[@]}" stop --run-dir "$run" || fail "stop"
again="$("${lc[@]}" stop --run-dir "$run")" || fail "second stop"
grep -q "nothing runs" <<<"$again" || fail "second stop: $again"
set +e
"${lc[@]}" status --run-dir "$run" >/dev/null
code=$?
set -e
[ $code -eq 3 ] || fail "status after stop: exit $code, wanted 3"
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "narrator\|redis-server"; then
    fail "pid $pid still runs after stop"
  fi
done
echo "local_cluster: ok"
