#!/usr/bin/env bash
# Soak: the chaos test (tests/test_chaos.c) at 100,000 jobs, with the same
# checks: a real redis-server (appendonly yes, appendfsync always), the real
# broker, 4 test workers and 2 speech workers; workers SIGKILLed and
# restarted, the broker SIGKILLed and restarted, redis-server restarted
# (SIGTERM and SIGKILL in turn) while jobs run. At the end every job must be
# DONE or FAILED with a reason, none lost, exactly one final transition per
# id (event stream and P:stats), outputs match inputs. It prints one
# "chaos:" line of figures.
#
#   bench/soak.sh [BUILD_DIR] [JOBS]     (defaults: build-rel, 100000)
#   NR_CHAOS_SEED=n                      another fault schedule
#
# Note: the event stream keeps about 100,000 entries (MAXLEN ~), so at this
# size the per-id duplicate check covers the jobs whose events are still in
# it ("covering N jobs"); the P:stats transition counters cover all of them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-rel}
jobs=${2:-100000}
[[ $build = /* ]] || build=$here/$build
bin=$build/tests/test_chaos
if [[ ! -x $bin ]]; then
  echo "soak: $bin is not built (cmake --build $build --target test_chaos)" >&2
  exit 2
fi
export NR_BUILD_DIR=$build NR_SOURCE_DIR=$here
export NR_CHAOS_JOBS=$jobs NR_CHAOS_SPREAD_MS=${NR_CHAOS_SPREAD_MS:-0}
exec "$bin" --jobs 1 --filter 'chaos/kills_and_restarts*' 2>&1
