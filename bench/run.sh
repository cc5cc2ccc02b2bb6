#!/usr/bin/env bash
# bench/run.sh: the whole benchmark suite in one command, with a table at the end.
#
#   bench/run.sh [--build DIR] [--quick] [--baseline-broker PATH] [--out DIR] [--e2e]
#
# 1. Queue overhead: no-op jobs through narrator (bench_queue) and Celery
#    (bench/celery/bench_celery.py), interleaved per worker count (1 2 4 8)
#    so both see the same moment and cores; each starts its own redis-server
#    with the same settings (AOF on, appendfsync everysec, noeviction).
#    Each narrator worker holds 4 jobs and runs 1 (--capacity 4
#    --concurrency 1), as a Celery prefork process with prefetch 4 does; a
#    second table holds 256 and runs 1 with 8 clients (narrator's best
#    setting here), 3 rounds interleaved with Celery, medians.
#    --baseline-broker adds a row per worker count for another
#    narrator-broker binary (before/after a broker change, same run).
# 2. Scaling: workers with a fixed service time (behave=sleep:<ms>), 1..16,
#    against the ideal N x single-worker throughput.
# 3. Models: bench_models and its PyTorch twin when bench_models is built.
# 4. --e2e: bench/e2e.sh (image -> caption -> speech vs PyTorch; build-e2e; ~5 min).
# Not part of the test suite; takes about 3 minutes (--quick: about 1).
# Needs: a Release build with bench_queue (cmake --build DIR --target
# bench_queue bench_models), redis-server, /usr/bin/python3 with celery.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
quick=0
baseline=""
out=""
e2e=0
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$(cd "$2" && pwd); shift 2 ;;
        --quick) quick=1; shift ;;
        --baseline-broker) baseline="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --e2e) e2e=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
bin="$build/bin"
if [ ! -x "$bin/bench_queue" ]; then
    echo "run.sh: $bin/bench_queue not built: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release &&" \
         "cmake --build build-bench --target bench_queue -j2" >&2
    exit 2
fi
py=/usr/bin/python3
[ -n "$out" ] || out=$(mktemp -d /tmp/narrator-bench-XXXXXX)
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

if [ "$quick" = 1 ]; then
    njobs=1000; cjobs=500; lat=100; scale_jobs=25; scale_workers="1 4 16"; rounds=1
else
    njobs=10000; cjobs=3000; lat=500; scale_jobs=60; scale_workers="1 2 4 8 12 16"; rounds=3
fi

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git -C "$root" rev-parse --short HEAD) $(git -C "$root" status --porcelain broker bench | wc -l) local changes in broker/ bench/"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "redis: $(redis-server --version | cut -d' ' -f3)"
} | tee "$out/machine.txt"

echo "== queue overhead (no-op jobs; each worker holds 4 and runs 1, as a Celery process with prefetch 4) =="
for w in 1 2 4 8; do
    "$bin/bench_queue" --workers "$w" --capacity 4 --concurrency 1 --jobs "$njobs" --window 64 \
        --latency "$lat" | tee -a "$results"
    if [ -n "$baseline" ]; then
        "$bin/bench_queue" --workers "$w" --capacity 4 --concurrency 1 --jobs "$njobs" --window 64 \
            --latency "$lat" --broker "$baseline" --label narrator-baseline | tee -a "$results"
    fi
    "$py" "$here/celery/bench_celery.py" --workers "$w" --jobs "$cjobs" \
        --latency-samples "$lat" 2>>"$out/celery.err" | tee -a "$results"
done

echo "== best setting: each worker holds 256 jobs and runs one at a time; 8 clients, window 512;" \
     "Celery alongside at prefetch 4; $rounds rounds, interleaved =="
for r in $(seq 1 "$rounds"); do
    for w in 1 2 4 8; do
        "$bin/bench_queue" --workers "$w" --capacity 256 --concurrency 1 --clients 8 --jobs $((njobs * 2)) \
            --window 512 --latency 0 --label narrator-best | sed "s/^{/{\"round\": $r, /" | tee -a "$results"
        "$py" "$here/celery/bench_celery.py" --workers "$w" --jobs "$cjobs" --latency-samples 0 \
            2>>"$out/celery.err" | sed "s/\"system\": \"celery\"/\"round\": $r, \"system\": \"celery-best\"/" \
            | tee -a "$results"
    done
done
# Celery with as deep a prefetch, to show that its figure is not held back by prefetch 4.
"$py" "$here/celery/bench_celery.py" --workers 4 --jobs "$cjobs" --latency-samples 0 --prefetch 256 \
    2>>"$out/celery.err" | sed 's/"system": "celery"/"system": "celery-prefetch256"/' | tee -a "$results"

echo "== large payload (256 KiB input per job, 4 workers) =="
"$bin/bench_queue" --workers 4 --capacity 4 --concurrency 1 --jobs $((njobs / 10)) --window 64 --latency $((lat / 5)) \
    --payload 262144 --label narrator-256k | tee -a "$results"
"$py" "$here/celery/bench_celery.py" --workers 4 --jobs $((cjobs / 5)) --latency-samples $((lat / 5)) \
    --payload 262144 2>>"$out/celery.err" | sed 's/"system": "celery"/"system": "celery-256k"/' | tee -a "$results"

echo "== scaling (fixed service time) =="
for ms in 20 2; do
    for w in $scale_workers; do
        "$bin/bench_queue" --workers "$w" --jobs $((scale_jobs * w * (ms == 2 ? 4 : 1))) \
            --window $((4 * w)) --latency 0 --warmup $((2 * w)) --behave "sleep:$ms" \
            --label "narrator-sleep$ms" | tee -a "$results"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

if [ -x "$bin/bench_models" ]; then
    echo "== models (ViT-B/16 encoder, GPT-2 decoder; random weights) =="
    iters=3; [ "$quick" = 1 ] && iters=1
    "$bin/bench_models" --iters "$iters" --tokens 16 --batch 4 | tee "$out/models-narrator.txt" || true
    "$py" "$here/bench_models_torch.py" --threads 1 --iters "$iters" --tokens 16 --batch 4 \
        | tee "$out/models-torch.txt" || true
fi

"$py" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
def get(system, w, behave="echo"):
    for r in rows:
        if r.get("system") == system and r.get("workers") == w and "error" not in r:
            return r
    return None
print("\nQueue overhead, no-op jobs (workers holding 4 and running 1, as Celery's prefetch 4; one client,"
      " 64 jobs in flight; latency of one job at a time, ms)")
print(f"{'workers':>7} | {'narrator jobs/s':>15} | {'celery jobs/s':>13} | {'ratio':>6} | "
      f"{'narrator p50/p99':>16} | {'celery p50/p99':>15} | {'p50 ratio':>9} | durable")
for w in (1, 2, 4, 8):
    n, c = get("narrator", w), get("celery", w)
    if not n or not c:
        print(f"{w:>7} | missing: {'narrator' if not n else 'celery'}")
        continue
    print(f"{w:>7} | {n['jobs_per_s']:>15.0f} | {c['jobs_per_s']:>13.0f} | "
          f"{n['jobs_per_s'] / c['jobs_per_s']:>5.1f}x | "
          f"{n['latency_p50_ms']:>7.3f}/{n['latency_p99_ms']:<8.3f} | "
          f"{c['latency_p50_ms']:>6.3f}/{c['latency_p99_ms']:<8.3f} | "
          f"{c['latency_p50_ms'] / n['latency_p50_ms']:>8.1f}x | "
          f"{n['durable_done']}/{n['jobs']} done in redis")
    b = get("narrator-baseline", w)
    if b:
        print(f"{'':>7} | baseline broker: {b['jobs_per_s']:.0f} jobs/s, p50 {b['latency_p50_ms']:.3f} ms "
              f"-> this broker {n['jobs_per_s'] / b['jobs_per_s']:.2f}x jobs/s")
print("\nnarrator CPU per job in the throughput run (us): broker / redis / workers (all) / client")
for w in (1, 2, 4, 8):
    for name in ("narrator", "narrator-baseline"):
        n = get(name, w)
        if n and "cpu_us_per_job" in n:
            c = n["cpu_us_per_job"]
            extra = ""
            if n.get("redis_cmds_per_job") is not None:
                extra = f"; redis {n['redis_cmds_per_job']:.1f} commands, {n['redis_reads_per_job']:.2f} reads per job"
            print(f"{w:>7} | {name:<17} | {c['broker']:>4} / {c['redis']:>4} / {c['workers']:>4} / {c['client']:>4}"
                  f"  = {c['broker'] + c['redis'] + c['workers'] + c['client']:>4} us{extra}")
best = {w: [r for r in rows if r.get("system") == "narrator-best" and r.get("workers") == w and "error" not in r]
        for w in (1, 2, 4, 8)}
if any(best.values()):
    print("\nBest setting: workers holding 256 jobs each and running one at a time, 8 submitting clients,"
          " window 512; Celery at prefetch 4 (all tasks sent at once) in the same rounds; medians over rounds,"
          " and the lowest and highest ratio of one round's pair")
    print(f"{'workers':>7} | {'narrator jobs/s':>15} | {'celery jobs/s':>13} | {'ratio':>6} | {'per round':>11} | "
          f"CPU us/job broker / redis / workers / client | durable")
for w in (1, 2, 4, 8):
    ns = best[w]
    cs = {r["round"]: r for r in rows if r.get("system") == "celery-best" and r.get("workers") == w and "error" not in r}
    if not ns or not cs:
        continue
    n_med = statistics.median([r["jobs_per_s"] for r in ns])
    c_med = statistics.median([r["jobs_per_s"] for r in cs.values()])
    pairs = [r["jobs_per_s"] / cs[r["round"]]["jobs_per_s"] for r in ns if r["round"] in cs] or [float("nan")]
    cu = {k: statistics.median([r["cpu_us_per_job"][k] for r in ns]) for k in ("broker", "redis", "workers", "client")}
    durable = all(r["durable_done"] == r["jobs"] for r in ns)
    print(f"{w:>7} | {n_med:>15.0f} | {c_med:>13.0f} | {n_med / c_med:>5.1f}x | "
          f"{min(pairs):>4.1f}-{max(pairs):<4.1f}x | "
          f"{cu['broker']:>4.0f} / {cu['redis']:>4.0f} / {cu['workers']:>4.0f} / {cu['client']:>4.0f}"
          f" = {sum(cu.values()):>3.0f} | {'every job done in redis' if durable else 'NOT ALL DONE IN REDIS'}")
c256, c4 = get("celery-prefetch256", 4), get("celery", 4)
if c256 and c4:
    print(f"Celery, 4 workers, prefetch 256: {c256['jobs_per_s']:.0f} jobs/s (prefetch 4: {c4['jobs_per_s']:.0f})")
n, c = get("narrator-256k", 4), get("celery-256k", 4)
if n and c:
    print(f"\n256 KiB input per job, 4 workers: narrator {n['jobs_per_s']:.0f} jobs/s, p50 {n['latency_p50_ms']:.3f} ms; "
          f"celery {c['jobs_per_s']:.0f} jobs/s, p50 {c['latency_p50_ms']:.3f} ms; "
          f"ratio {n['jobs_per_s'] / c['jobs_per_s']:.1f}x jobs/s, {c['latency_p50_ms'] / n['latency_p50_ms']:.1f}x p50")
for ms in (20, 2):
    sys_name = f"narrator-sleep{ms}"
    pts = sorted((r["workers"], r["jobs_per_s"]) for r in rows if r.get("system") == sys_name and "error" not in r)
    if not pts:
        continue
    single = dict(pts).get(1)
    print(f"\nScaling, service time {ms} ms (ideal = N x 1-worker figure)")
    print(f"{'workers':>7} | {'jobs/s':>8} | {'ideal':>8} | {'efficiency':>10}")
    for w, j in pts:
        ideal = single * w if single else float('nan')
        print(f"{w:>7} | {j:>8.0f} | {ideal:>8.0f} | {j / ideal * 100:>9.0f}%")
EOF
echo "results: $out"
if [ "$e2e" = 1 ]; then "$here/e2e.sh" --out "$out/e2e" $([ "$quick" = 1 ] && echo --quick); fi
