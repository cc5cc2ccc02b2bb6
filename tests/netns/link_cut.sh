#!/usr/bin/env bash
# Several hosts: redis-server, narrator-broker and a worker each in their own
# network namespace, linked by veth pairs on 10.77.x.0/30 addresses that this
# test creates and removes (nothing else on the machine is touched):
#
#   [nr-<id>-redis] 10.77.1.2 ---- 10.77.1.1 [nr-<id>-broker] 10.77.2.1 ---- 10.77.2.2 [nr-<id>-worker]
#
# A slow job (narrator-worker-test --behave sleep:3000) is submitted with
# `narrate` from the broker's namespace; while it runs, the worker's link is
# cut (ip link set down) for 3 s and then restored. The broker declares the
# worker dead and requeues the job; the worker reconnects and runs it again;
# the first attempt's late RESULT (sent when the link is back) is dropped.
# The worker is patient (heartbeat-liveness 20 = 5 s) while the broker is not
# (750 ms), so the worker keeps its TCP connection through the cut and its
# first RESULT really reaches the broker after the job was requeued.
# Checked: the job is done with the right output, attempts >= 2, and exactly
# one final transition (one "done" event in the Redis stream, P:stats done 1).
#
# Usage: tests/netns/link_cut.sh BUILD_DIR
# Exit 0 pass, 1 fail, 77 skipped (not root / ip netns not permitted / no redis).
set -uo pipefail
build=${1:-${NR_BUILD_DIR:-}}
if [[ -z $build || ! -x $build/bin/narrator-broker || ! -x $build/bin/narrator-worker-test || ! -x $build/bin/narrate ]]; then
  echo "SKIP: narrator-broker, narrator-worker-test or narrate not built in '$build'"; exit 77
fi
command -v ip >/dev/null || { echo "SKIP: no ip command"; exit 77; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "SKIP: no redis-server/redis-cli"; exit 77; }
id=$$
ns_r=nr-$id-redis ns_b=nr-$id-broker ns_w=nr-$id-worker
if ! ip netns add "$ns_r" 2>/dev/null; then
  echo "SKIP: ip netns add is not permitted here"; exit 77
fi
tmp=$(mktemp -d /tmp/nr-netns-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for ns in "$ns_r" "$ns_b" "$ns_w"; do ip netns del "$ns" 2>/dev/null; done
  [[ -n ${NR_TEST_KEEP:-} ]] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.log; do echo "---- $f"; tail -n 30 "$f"; done
  exit 1
}
ip netns add "$ns_b" && ip netns add "$ns_w" || fail "cannot make namespaces"
# veth pairs, one end moved into each namespace.
ip link add "nrb$id" type veth peer name "nrr$id" || fail "veth"
ip link set "nrr$id" netns "$ns_r" && ip link set "nrb$id" netns "$ns_b" || fail "veth move"
ip link add "nrc$id" type veth peer name "nrw$id" || fail "veth"
ip link set "nrw$id" netns "$ns_w" && ip link set "nrc$id" netns "$ns_b" || fail "veth move"
ip -n "$ns_r" addr add 10.77.1.2/30 dev "nrr$id"
ip -n "$ns_b" addr add 10.77.1.1/30 dev "nrb$id"
ip -n "$ns_b" addr add 10.77.2.1/30 dev "nrc$id"
ip -n "$ns_w" addr add 10.77.2.2/30 dev "nrw$id"
for ns in "$ns_r" "$ns_b" "$ns_w"; do ip -n "$ns" link set lo up; done
ip -n "$ns_r" link set "nrr$id" up; ip -n "$ns_b" link set "nrb$id" up
ip -n "$ns_b" link set "nrc$id" up; ip -n "$ns_w" link set "nrw$id" up

rcli() { ip netns exec "$ns_b" redis-cli -h 10.77.1.2 -p 6379 "$@"; }
ip netns exec "$ns_r" redis-server --bind 10.77.1.2 --port 6379 --protected-mode no --dir "$tmp" \
  --appendonly yes --appendfsync always --save "" --maxmemory-policy noeviction >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ $(rcli ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done
[[ $(rcli ping 2>/dev/null) == PONG ]] || fail "redis did not start"

ip netns exec "$ns_b" "$build/bin/narrator-broker" --client-endpoint tcp://127.0.0.1:5555 \
  --worker-endpoint tcp://10.77.2.1:5556 --redis-host 10.77.1.2 --redis-port 6379 \
  --heartbeat-ms 250 --retry-backoff-ms 50 --stages vision,text,speech,test \
  --log-level debug >"$tmp/broker.log" 2>&1 &
pids+=($!)
ip netns exec "$ns_w" "$build/bin/narrator-worker-test" --broker tcp://10.77.2.1:5556 --name netns-w \
  --heartbeat-ms 250 --heartbeat-liveness 20 --reconnect-ms 100 --reconnect-max-ms 500 --behave sleep:3000 \
  --log-level debug >"$tmp/worker.log" 2>&1 &
pids+=($!)
narrate() { ip netns exec "$ns_b" "$build/bin/narrate" --broker tcp://127.0.0.1:5555 --timeout 5 "$@"; }
for _ in $(seq 100); do narrate stats 2>/dev/null | grep -q "workers.test.*1" && break; sleep 0.1; done
printf 'netns input' >"$tmp/input.bin"
out=$(narrate submit "$tmp/input.bin" --route test --no-wait 2>"$tmp/narrate.log") || fail "submit: $out"
job=$(echo "$out" | grep -oE '[0-9a-f]{32}' | head -1)
[[ -n $job ]] || fail "no job id in: $out"
for _ in $(seq 100); do
  [[ $(rcli hget "narrator:job:$job" state) == running ]] && break; sleep 0.05
done
[[ $(rcli hget "narrator:job:$job" state) == running ]] || fail "job never ran"
sleep 0.3
ip -n "$ns_w" link set "nrw$id" down || fail "link down"
echo "link cut mid-job ($job)"
sleep 2
ip -n "$ns_w" link set "nrw$id" up || fail "link up"
echo "link restored"
state=
for _ in $(seq 300); do
  state=$(rcli hget "narrator:job:$job" state)
  [[ $state == done || $state == failed ]] && break; sleep 0.1
done
sleep 2 # a late duplicate RESULT would land now
state=$(rcli hget "narrator:job:$job" state)
attempts=$(rcli hget "narrator:job:$job" attempts)
done_events=$(rcli xrange narrator:events - + | grep -c '^done$')
stat_done=$(rcli hget narrator:stats done)
output=$(rcli get "narrator:out:test:$job")
late=$(grep -c "stale RESULT for job $job attempt 1" "$tmp/broker.log")
echo "state $state, attempts $attempts, done events $done_events, P:stats done $stat_done, late RESULTs dropped $late"
[[ $state == done ]] || fail "job is '$state'"
[[ $output == "netns input" ]] || fail "output '$output'"
(( attempts >= 2 )) || fail "attempts $attempts: the cut did not interrupt the job"
[[ $done_events == 1 && $stat_done == 1 ]] || fail "$done_events done events, P:stats done $stat_done"
(( late >= 1 )) || fail "the first attempt's RESULT never reached the broker (the cut did not test a late answer)"
echo "PASS"
