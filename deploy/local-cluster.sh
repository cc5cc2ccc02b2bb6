#!/usr/bin/env bash
# A whole narrator cluster on this machine: redis-server (AOF on,
# noeviction, loopback only), narrator-broker and the workers whose programs
# are built, each with a log and a pid file in one run folder.
#
#   deploy/local-cluster.sh start  [options]   start what is not running yet
#   deploy/local-cluster.sh stop   [options]   SIGTERM everything, wait for it
#   deploy/local-cluster.sh status [options]   list what runs (exit 0: all up,
#                                              1: something is down, 3: nothing runs)
#   deploy/local-cluster.sh restart [options]  stop, then start
#
# Options:
#   --run-dir DIR        run folder (default: run/ in the repository)
#   --workers "SPEC"     workers per stage (default "speech=2 vision=1 text=1");
#                        stages whose program is not built are skipped
#   --build-dir DIR      where the programs are (default: build/ in the repository)
#   --model-dir DIR      checkpoint folder for the vision and text workers
#   --speech-model DIR   a Kokoro folder (config.json, kokoro-v1_0.pth, voices/):
#                        the speech workers speak with Kokoro (--engine kokoro);
#                        without it, with Flite
#   --redis-port N       (default 6390)   --client-port N (default 5555)
#   --worker-port N      (default 5556)
#   --gateway-port N     narrator-gateway's HTTP port when it is built
#                        (default 8080; 0: do not start the gateway)
# Environment: NARRATOR_RUN_DIR, NARRATOR_BUILD_DIR, NARRATOR_MODEL_DIR,
# NARRATOR_SPEECH_MODEL,
# NARRATOR_REDIS_PORT, NARRATOR_CLIENT_PORT, NARRATOR_WORKER_PORT,
# NARRATOR_GATEWAY_PORT (defaults for the options above); NARRATOR_BROKER_* / NARRATOR_WORKER_* settings
# pass through to the programs (but for the two named below).
#
# Safe to call twice: start skips what already runs, stop what does not.
#
# Redis asks for a password: start makes one (random, 64 hex characters) in
# RUN/redis/password the first time and reuses it after. redis-server reads it
# from RUN/redis/redis.conf (requirepass), the broker from RUN/broker.conf
# (redis-password), so it is in no command line or environment (ps shows
# neither); NARRATOR_BROKER_REDIS_PASSWORD and NARRATOR_BROKER_CONFIG are not
# passed on. To use redis-cli on the cluster:
#   REDISCLI_AUTH="$(cat run/redis/password)" redis-cli -p 6390 ...
# Everything under RUN is its owner's only (umask 077): the password, the
# settings files, the logs and Redis's AOF and RDB files (0600, in 0700
# folders).
set -euo pipefail
umask 077

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${NARRATOR_RUN_DIR:-$root/run}"
build_dir="${NARRATOR_BUILD_DIR:-$root/build}"
model_dir="${NARRATOR_MODEL_DIR:-}"
speech_model="${NARRATOR_SPEECH_MODEL:-}"
workers_spec="speech=2 vision=1 text=1"
redis_port="${NARRATOR_REDIS_PORT:-6390}"
client_port="${NARRATOR_CLIENT_PORT:-5555}"
worker_port="${NARRATOR_WORKER_PORT:-5556}"
gateway_port="${NARRATOR_GATEWAY_PORT:-8080}"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "local-cluster: $*" >&2; exit 1; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
action="$1"
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --run-dir) run_dir="$2"; shift 2 ;;
    --workers) workers_spec="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --model-dir) model_dir="$2"; shift 2 ;;
    --speech-model) speech_model="$2"; shift 2 ;;
    --redis-port) redis_port="$2"; shift 2 ;;
    --client-port) client_port="$2"; shift 2 ;;
    --worker-port) worker_port="$2"; shift 2 ;;
    --gateway-port) gateway_port="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "local-cluster: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$action" in start|stop|status|restart) ;; -h|--help|help) usage; exit 0 ;;
  *) echo "local-cluster: unknown action '$action'" >&2; usage >&2; exit 2 ;; esac

mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
if [ -d "$build_dir" ]; then build_dir="$(cd "$build_dir" && pwd)"; fi
logs="$run_dir/logs"
bin="$build_dir/bin"

# The settings a running cluster was started with win over the defaults, so
# `status` and `stop` find it without repeating the options.
if [ "$action" != start ] && [ -f "$run_dir/cluster.env" ]; then
  # shellcheck disable=SC1091
  . "$run_dir/cluster.env"
fi

# pid of a service when it runs (pid file present, process alive, and still
# the program that was started, so a recycled pid is not taken for it).
running_pid() {
  local name="$1" pidfile="$run_dir/$1.pid" pid exe
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe="$(cat "$run_dir/$name.exe" 2>/dev/null || true)"
  if [ -n "$exe" ] && [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" | head -1 | grep -qF "$(basename "$exe")" || return 1
  fi
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_service NAME COMMAND...: runs it in the background, in its own session.
start_service() {
  local name="$1"
  shift
  if pid="$(running_pid "$name")"; then
    echo "  $name: already running (pid $pid)"
    return 0
  fi
  mkdir -p "$logs"
  echo "=== $(date -u +%FT%TZ) start: $*" >>"$logs/$name.log"
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$run_dir/$name.pid"
  echo "$1" >"$run_dir/$name.exe"
  # Until the forked shell has exec'd the program, its command line is not
  # the program's yet; wait for that so running_pid recognises it.
  for _ in $(seq 1 50); do
    running_pid "$name" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  started+=("$name")
}

# wait_up NAME CHECK...: waits (30 s) until CHECK succeeds while NAME runs.
wait_up() {
  local name="$1"
  shift
  for _ in $(seq 1 300); do
    if ! running_pid "$name" >/dev/null; then
      echo "local-cluster: $name exited at start; last lines of $logs/$name.log:" >&2
      tail -n 20 "$logs/$name.log" >&2 || true
      return 1
    fi
    if "$@"; then return 0; fi
    sleep 0.1
  done
  echo "local-cluster: $name is not up after 30 s (see $logs/$name.log)" >&2
  return 1
}

# redis-cli authenticates from the environment (REDISCLI_AUTH), not -a,
# which would put the password in its command line.
redis_cli() {
  REDISCLI_AUTH="$(cat "$run_dir/redis/password" 2>/dev/null || true)" \
    redis-cli --no-auth-warning -h 127.0.0.1 -p "$redis_port" "$@"
}
redis_ping() { redis_cli ping 2>/dev/null | grep -q PONG; }

# The cluster's Redis password, made once: 32 random bytes as hex (no
# character that a config file would need quoted).
redis_password() {
  local f="$run_dir/redis/password" pw
  if [ ! -s "$f" ]; then
    pw="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    [ ${#pw} -eq 64 ] || die "cannot read 32 random bytes from /dev/urandom"
    printf '%s\n' "$pw" >"$f.tmp"
    mv -f "$f.tmp" "$f"
  fi
  chmod 600 "$f"
  pw="$(cat "$f")"
  [[ "$pw" =~ ^[0-9a-f]{32,}$ ]] || die "$f does not hold a password (32 or more hex digits); remove it to make a new one"
  printf '%s' "$pw"
}

# Live workers the broker counts for a stage (narrate stats), or 0.
live_workers() {
  "$bin/narrate" --broker "tcp://127.0.0.1:$client_port" --timeout 2 --json stats 2>/dev/null |
    grep -o "\"workers\.$1\":\"[0-9]*\"" | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true
}
workers_at_least() { local n; n="$(live_workers "$1")"; [ "${n:-0}" -ge "$2" ]; }

services() {
  local f
  for f in "$run_dir"/*.pid; do
    [ -e "$f" ] || continue
    basename "$f" .pid
  done
}

do_start() {
  command -v redis-server >/dev/null || die "redis-server is not installed (run deploy/install-deps.sh)"
  [ -x "$bin/narrator-broker" ] || die "$bin/narrator-broker is not built (cmake -B build && cmake --build build)"
  started=()
  cat >"$run_dir/cluster.env" <<EOF
redis_port=$redis_port
client_port=$client_port
worker_port=$worker_port
gateway_port=$gateway_port
build_dir=$build_dir
bin=$build_dir/bin
EOF
  echo "local-cluster: starting in $run_dir"
  # Owner only, also for a run folder made by an older version of this
  # script (its Redis files were world-readable).
  mkdir -p "$run_dir/redis"
  chmod 700 "$run_dir" "$run_dir/redis"
  chmod -R go-rwx "$run_dir/redis"
  local pw
  pw="$(redis_password)"
  # The password goes to redis-server and the broker in files only; the
  # other settings stay flags, so ps shows them.
  printf '# written by local-cluster.sh start\nrequirepass %s\n' "$pw" >"$run_dir/redis/redis.conf"
  printf '# written by local-cluster.sh start (the Redis password)\nredis-password = %s\n' "$pw" \
    >"$run_dir/broker.conf"
  chmod 600 "$run_dir/redis/redis.conf" "$run_dir/broker.conf"
  unset pw NARRATOR_BROKER_REDIS_PASSWORD NARRATOR_BROKER_CONFIG
  start_service redis redis-server "$run_dir/redis/redis.conf" --port "$redis_port" --bind 127.0.0.1 \
    --protected-mode yes --dir "$run_dir/redis" --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --daemonize no --logfile ""
  wait_up redis redis_ping

  start_service broker "$bin/narrator-broker" --config "$run_dir/broker.conf" \
    --client-endpoint "tcp://127.0.0.1:$client_port" --worker-endpoint "tcp://127.0.0.1:$worker_port" \
    --redis-host 127.0.0.1 --redis-port "$redis_port"
  wait_up broker port_open "$client_port"
  wait_up broker port_open "$worker_port"

  local item stage count prog i name extra
  skipped=()
  for item in $workers_spec; do
    stage="${item%%=*}"
    count="${item#*=}"
    [[ "$stage" =~ ^[a-z0-9_-]+$ && "$count" =~ ^[0-9]+$ ]] || die "bad --workers item '$item' (want stage=N)"
    prog="$bin/narrator-worker-$stage"
    if [ ! -x "$prog" ]; then
      [ "$count" -gt 0 ] && skipped+=("$stage")
      continue
    fi
    extra=()
    if [ "$stage" = vision ] || [ "$stage" = text ]; then
      if [ -n "$model_dir" ]; then
        extra+=(--model "$model_dir")
      elif [ -z "${NARRATOR_WORKER_MODEL:-}" ]; then
        [ "$count" -gt 0 ] && echo "  $stage: no --model-dir given (nor NARRATOR_WORKER_MODEL); not started"
        continue
      fi
    fi
    if [ "$stage" = speech ] && [ -n "$speech_model" ]; then
      extra+=(--engine kokoro --model "$speech_model")
    fi
    for ((i = 1; i <= count; i++)); do
      name="worker-$stage-$i"
      start_service "$name" "$prog" --broker "tcp://127.0.0.1:$worker_port" --name "$stage-$i" \
        "${extra[@]}"
    done
    [ "$count" -gt 0 ] && wait_up "worker-$stage-$count" workers_at_least "$stage" "$count"
  done
  if [ "$gateway_port" != 0 ] && [ -x "$bin/narrator-gateway" ]; then
    start_service gateway "$bin/narrator-gateway" --listen-address 127.0.0.1 --port "$gateway_port" \
      --broker "tcp://127.0.0.1:$client_port"
    wait_up gateway port_open "$gateway_port"
    echo "  web page and HTTP API: http://127.0.0.1:$gateway_port/"
  fi
  [ ${#skipped[@]} -eq 0 ] || echo "  not built, skipped: ${skipped[*]} (no narrator-worker-<stage> in $bin)"
  echo "local-cluster: up. clients: tcp://127.0.0.1:$client_port  workers: tcp://127.0.0.1:$worker_port  redis: 127.0.0.1:$redis_port"
  echo "  redis password: $run_dir/redis/password (REDISCLI_AUTH=\"\$(cat $run_dir/redis/password)\" redis-cli -p $redis_port)"
  echo "  logs: $logs/<name>.log   pids: $run_dir/<name>.pid"
  echo "  stop: $0 stop --run-dir $run_dir"
}

stop_one() {
  local name="$1" pid
  if ! pid="$(running_pid "$name")"; then
    rm -f "$run_dir/$name.pid" "$run_dir/$name.exe"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name (pid $pid) did not stop in 60 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "  $name: stopped (pid $pid)"
  rm -f "$run_dir/$name.pid" "$run_dir/$name.exe"
}

do_stop() {
  local name any=0
  # Workers first (they finish or hand back their jobs), then the broker,
  # then Redis last (SIGTERM makes it write the AOF out).
  for name in $(services | grep '^worker-' || true); do any=1; stop_one "$name" & done
  wait
  for name in gateway broker redis; do
    [ -f "$run_dir/$name.pid" ] || continue
    any=1
    stop_one "$name"
  done
  [ $any -eq 1 ] && echo "local-cluster: stopped ($run_dir)" || echo "local-cluster: nothing runs in $run_dir"
}

do_status() {
  local name pid any=0 down=0
  echo "local-cluster: $run_dir"
  for name in $(services); do
    any=1
    if pid="$(running_pid "$name")"; then
      printf '  %-18s running  pid %-8s log %s\n' "$name" "$pid" "$logs/$name.log"
    else
      down=1
      printf '  %-18s DOWN     (stale pid file)  log %s\n' "$name" "$logs/$name.log"
    fi
  done
  if [ $any -eq 0 ]; then
    echo "  nothing runs"
    return 3
  fi
  echo "  clients: tcp://127.0.0.1:$client_port  workers: tcp://127.0.0.1:$worker_port  redis: 127.0.0.1:$redis_port"
  return $down
}

case "$action" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  restart) do_stop; do_start ;;
esac
