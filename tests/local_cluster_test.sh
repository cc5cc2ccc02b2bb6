#!/usr/bin/env bash
# ctest local_cluster (LABELS integration): deploy/local-cluster.sh on free
# ports in a temporary run folder: start (twice, same Redis password), status,
# Redis refuses commands without the password, the password and Redis's files
# readable by the owner only and in no started process's command line or
# environment, a spoken text and a captioned image through the cluster, a
# dead worker shown by status, stop (twice), nothing left running; then
# --speech-model: the speech worker speaks with Kokoro at 24 kHz.
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

# mode_of FILE: its permission bits in octal (600, 700 ...).
mode_of() { stat -c %a "$1"; }

"${lc[@]}" start "${opts[@]}" || fail "start"
pwfile="$run/redis/password"
[ -s "$pwfile" ] || fail "no Redis password in $pwfile"
password="$(cat "$pwfile")"
[ ${#password} -ge 32 ] || fail "the Redis password has ${#password} characters, wanted 32 or more"
again="$("${lc[@]}" start "${opts[@]}")" || fail "second start"
grep -q "already running" <<<"$again" || fail "second start did not find the cluster running: $again"
[ "$(cat "$pwfile")" = "$password" ] || fail "the second start changed the Redis password"
"${lc[@]}" status --run-dir "$run" || fail "status after start: exit $?"

# Redis answers nothing without the password, everything with it (given
# through the environment, never -a, which ps would show).
noauth="$(redis-cli -p "${ports[0]}" config get maxmemory-policy 2>&1 || true)"
grep -q NOAUTH <<<"$noauth" || fail "redis served a command without the password: $noauth"
noauth="$(redis-cli -p "${ports[0]}" set nr-lc-probe 1 2>&1 || true)"
grep -q NOAUTH <<<"$noauth" || fail "redis took a write without the password: $noauth"
wrong="$(REDISCLI_AUTH=not-the-password redis-cli -p "${ports[0]}" ping 2>&1 || true)"
! grep -q PONG <<<"$wrong" || fail "redis accepted a wrong password"
export REDISCLI_AUTH="$password"
[ "$(redis-cli -p "${ports[0]}" config get maxmemory-policy | tail -1)" = noeviction ] || fail "redis is not noeviction"
[ "$(redis-cli -p "${ports[0]}" config get appendonly | tail -1)" = yes ] || fail "redis has no AOF"

"$bin/narrate" --timeout 60 speak "The local cluster speaks." -o "$run/hello.wav" || fail "narrate speak"
[ "$(head -c 4 "$run/hello.wav")" = RIFF ] || fail "hello.wav is not a WAV"

if [ -x "$bin/narrator-worker-vision" ] && [ -x "$bin/narrator-worker-text" ]; then
  "$bin/narrate" --timeout 60 submit "$src/tests/fixtures/images/rocket_223x225.jpg" -o "$run/out" \
    --max-length 8 || fail "narrate submit"
  if [ ! -s "$run/out/rocket_223x225.jpg.txt" ] || [ ! -s "$run/out/rocket_223x225.jpg.wav" ]; then
    fail "no caption or audio for the image"
  fi
fi
if [ -x "$bin/narrator-gateway" ]; then
  (exec 3<>"/dev/tcp/127.0.0.1/${ports[3]}") 2>/dev/null || fail "the gateway does not listen"
fi

# Redis's files (password, config, AOF, RDB) are the owner's only: a job ran,
# so the AOF holds its record; SAVE writes the RDB too.
[ "$(redis-cli -p "${ports[0]}" save)" = OK ] || fail "redis SAVE"
[ "$(mode_of "$run/redis")" = 700 ] || fail "$run/redis is mode $(mode_of "$run/redis"), wanted 700"
datafiles="$(find "$run/redis" -mindepth 1 -type f)"
grep -q '\.aof$' <<<"$datafiles" || fail "no AOF file under $run/redis: $datafiles"
grep -q '\.rdb$' <<<"$datafiles" || fail "no RDB file under $run/redis: $datafiles"
while IFS= read -r f; do
  [ "$(mode_of "$f")" = 600 ] || fail "$f is mode $(mode_of "$f"), wanted 600"
done <<<"$datafiles"
while IFS= read -r d; do
  [ "$(mode_of "$d")" = 700 ] || fail "folder $d is mode $(mode_of "$d"), wanted 700"
done < <(find "$run/redis" -type d)
[ "$(mode_of "$pwfile")" = 600 ] || fail "$pwfile is mode $(mode_of "$pwfile"), wanted 600"
for f in "$run"/*.conf; do
  [ -e "$f" ] || continue
  [ "$(mode_of "$f")" = 600 ] || fail "$f is mode $(mode_of "$f"), wanted 600"
done

# The password is in no started process's command line (what ps shows every
# user) nor its environment (what ps e shows).
for pid in $(cat "$run"/*.pid); do
  kill -0 "$pid" 2>/dev/null || fail "pid $pid from $(grep -l "^$pid\$" "$run"/*.pid) does not run"
  ! ps -ww -o args= -p "$pid" | grep -qF -f "$pwfile" || fail "pid $pid shows the Redis password in ps"
  ! ps eww -o args= -p "$pid" | grep -qF -f "$pwfile" || fail "pid $pid has the Redis password in its environment"
  ! tr '\0' '\n' <"/proc/$pid/environ" | grep -qF -f "$pwfile" || fail "pid $pid has the Redis password in /proc/$pid/environ"
done
! ps -eww -o args= | grep -qF -f "$pwfile" || fail "some process shows the Redis password in ps"

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
# --speech-model: the speech workers speak with Kokoro (the tiny fixture)
# at 24 kHz, when the build has espeak-ng.
if grep -q '^NR_ESPEAK:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  "${lc[@]}" start --run-dir "$run" --build-dir "$build" --workers "speech=1" \
    --speech-model "$src/tests/fixtures/kokoro-tiny" || fail "start with --speech-model"
  "$bin/narrate" --timeout 60 speak "The local cluster speaks with Kokoro." -o "$run/kokoro.wav" ||
    fail "narrate speak with kokoro"
  rate=$(od -An -t u4 -j 24 -N 4 "$run/kokoro.wav" | tr -d ' ')
  [ "$rate" = 24000 ] || fail "kokoro.wav is at $rate Hz, wanted 24000"
  "${lc[@]}" stop --run-dir "$run" >/dev/null || fail "stop after kokoro"
fi
echo "local_cluster: ok"
