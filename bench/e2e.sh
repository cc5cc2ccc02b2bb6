#!/usr/bin/env bash
# bench/e2e.sh: end to end, image -> caption -> speech, narrator against a plain
# PyTorch script on the same machine, same checkpoint, same photos, same settings.
#
#   bench/e2e.sh [--build DIR] [--images N] [--beams N] [--max-length N] [--window N]
#                [--torch-threads "1 2"] [--torch-procs N] [--rounds N] [--out DIR] [--quick]
#                [--no-torch] [--no-narrator]
#
# 1. A ViT-B/16 + GPT-2 checkpoint at the real sizes with random weights, in the
#    Hugging Face file layout (bench/make_random_checkpoint.py; written once into
#    $NR_E2E_CACHE/vit-gpt2-random, default .cache/, git-ignored, ~1 GB).
# 2. N photos (default 32) from Debian's python3-skimage (16 photos, each used
#    again as needed under another name; jobs get random ids, so repeats are
#    real work).
# 3. narrator: a local cluster through deploy/local-cluster.sh (redis, broker,
#    one vision, one text, one speech worker; settings below), a warm-up of 2
#    images, then `narrate --json submit --id-from random` of the N images, timed
#    from start to the last WAV written. Per-stage worker time (<stage>.ms of the
#    records), broker-side stage time and queue wait (the broker's Prometheus
#    histograms, before/after difference), CPU seconds and peak memory (VmHWM) of
#    every process.
# 4. PyTorch: bench/e2e_torch.py with each --torch-threads value (default "1 2 2:blas1";
#    N:blas1 = torch.set_num_threads(N) with OPENBLAS_NUM_THREADS=1; without it
#    Debian's torch (OpenBLAS, pthreads) also runs OpenBLAS's own threads, 2 here),
#    then (extra row, not the script the ratio is about) --torch-procs copies of it
#    at once (default 2, one per core: threads 1, OPENBLAS_NUM_THREADS=1), each on
#    its share of the images,
#    timed together from a common start (0: skip).
# --rounds R repeats 3 and 4 alternately R times (default 1). --quick: 4 images,
# greedy, torch threads 1 (a smoke test). Prints a table; results (JSON) in --out.
# Worker settings (2 cores): vision --threads 1 --batch-size 1; text --threads 1
# --batch-size 4 (beams of up to 4 captions decoded in one step); speech 1 process;
# change with NR_E2E_VISION / NR_E2E_TEXT / NR_E2E_SPEECH ("threads batch count").
# Needs: a Release build with narrate, narrator-broker and the three workers
# (cmake --build DIR --target narrate narrator-broker narrator-worker-vision
# narrator-worker-text narrator-worker-speech), redis-server, /usr/bin/python3 with
# torch, numpy, PIL; libflite1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-e2e"
nimg=32
beams=4
maxlen=16
window=16
tthreads="1 2 2:blas1"
tprocs=2
rounds=1
out=""
do_torch=1
do_narrator=1
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$(cd "$2" && pwd); shift 2 ;;
        --images) nimg="$2"; shift 2 ;;
        --beams) beams="$2"; shift 2 ;;
        --max-length) maxlen="$2"; shift 2 ;;
        --window) window="$2"; shift 2 ;;
        --torch-threads) tthreads="$2"; shift 2 ;;
        --torch-procs) tprocs="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --quick) nimg=4; beams=1; tthreads=1; tprocs=0; shift ;;
        --no-torch) do_torch=0; shift ;;
        --no-narrator) do_narrator=0; shift ;;
        -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
read -r v_threads v_batch v_count <<<"${NR_E2E_VISION:-1 1 1}"
read -r t_threads t_batch t_count <<<"${NR_E2E_TEXT:-1 4 1}"
read -r s_threads s_batch s_count <<<"${NR_E2E_SPEECH:-1 1 1}"
bin="$build/bin"
py=/usr/bin/python3
for p in narrate narrator-broker narrator-worker-vision narrator-worker-text narrator-worker-speech; do
    if [ "$do_narrator" = 1 ] && [ ! -x "$bin/$p" ]; then
        echo "e2e.sh: $bin/$p not built: cmake -S . -B build-e2e -DCMAKE_BUILD_TYPE=Release -DNR_CUDA=OFF &&" \
             "cmake --build build-e2e --target narrate narrator-broker narrator-worker-vision" \
             "narrator-worker-text narrator-worker-speech -j2" >&2
        exit 2
    fi
done
[ -n "$out" ] || out=$(mktemp -d /tmp/narrator-e2e-XXXXXX)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache="${NR_E2E_CACHE:-$root/.cache}"
model="$cache/vit-gpt2-random"
results="$out/results.jsonl"
: >"$results"

# -- checkpoint and photos ---------------------------------------------------
"$py" "$here/make_random_checkpoint.py" "$model"
photos="$cache/e2e-photos"
names="astronaut.png chelsea.png coffee.png motorcycle_left.png motorcycle_right.png rocket.jpg
       hubble_deep_field.jpg retina.jpg ihc.png camera.png moon.png coins.png brick.png grass.png
       gravel.png cell.png"
missing=0
for n in $names; do [ -s "$photos/$n" ] || missing=1; done
if [ "$missing" = 1 ]; then
    tmp=$(mktemp -d /tmp/narrator-e2e-deb-XXXXXX)
    deb=$(ls "$cache"/debs/python3-skimage_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        (cd "$tmp" && apt-get download python3-skimage >/dev/null)
        deb=$(ls "$tmp"/python3-skimage_*.deb | head -1)
    fi
    dpkg -x "$deb" "$tmp/x"
    mkdir -p "$photos"
    for n in $names; do cp "$tmp/x/usr/lib/python3/dist-packages/skimage/data/$n" "$photos/$n"; done
    rm -rf "$tmp"
fi
imgdir="$out/images"
rm -rf "$imgdir"
mkdir -p "$imgdir"
read -r -a plist <<<"$(echo $names)"
i=0
while [ "$i" -lt "$nimg" ]; do
    n=${plist[$((i % ${#plist[@]}))]}
    cp "$photos/$n" "$imgdir/$(printf '%03d' "$i")_$n"
    i=$((i + 1))
done
warmdir="$out/warmup"
rm -rf "$warmdir"
mkdir -p "$warmdir"
cp "$photos/chelsea.png" "$photos/rocket.jpg" "$warmdir/"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
    echo "images: $nimg, num_beams $beams, max_length $maxlen, window $window"
    echo "narrator workers: vision threads $v_threads batch $v_batch x$v_count; text threads $t_threads batch $t_batch x$t_count; speech x$s_count"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"

# -- narrator ----------------------------------------------------------------
free_port() {
    local p
    while :; do
        p=$((12000 + RANDOM % 18000))   # below the ephemeral range (32768-)
        ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

run_narrator() {
    local round="$1" run="$out/run" rport cport wport mport lc t0 t1 rc=0
    rport=$(free_port); cport=$(free_port); wport=$(free_port); mport=$(free_port)
    lc=("$root/deploy/local-cluster.sh")
    local common=(--run-dir "$run" --build-dir "$build" --model-dir "$model" --redis-port "$rport"
                  --client-port "$cport" --worker-port "$wport" --gateway-port 0)
    rm -rf "$run"
    trap '"${lc[@]}" stop --run-dir "'"$run"'" >/dev/null 2>&1 || true' EXIT
    # one start per stage, so each stage gets its own settings (start skips what runs)
    NARRATOR_BROKER_METRICS_LISTEN="127.0.0.1:$mport" \
    NARRATOR_WORKER_THREADS="$v_threads" NARRATOR_WORKER_BATCH_SIZE="$v_batch" \
        "${lc[@]}" start "${common[@]}" --workers "vision=$v_count" >"$out/cluster.log"
    NARRATOR_WORKER_THREADS="$t_threads" NARRATOR_WORKER_BATCH_SIZE="$t_batch" \
        "${lc[@]}" start "${common[@]}" --workers "text=$t_count" >>"$out/cluster.log"
    NARRATOR_WORKER_BATCH_SIZE="$s_batch" \
        "${lc[@]}" start "${common[@]}" --workers "speech=$s_count" >>"$out/cluster.log"
    local nr=("$bin/narrate" --broker "tcp://127.0.0.1:$cport" --timeout 60)
    local opts=(--beams "$beams" --max-length "$maxlen" --id-from random --window "$window")
    "${nr[@]}" --quiet submit "$warmdir" -o "$out/warmup-out" "${opts[@]}" >/dev/null
    curl -s "http://127.0.0.1:$mport/metrics" >"$out/metrics-before.txt"
    local names=() pids=() f
    for f in "$run"/*.pid; do names+=("$(basename "$f" .pid)"); pids+=("$(cat "$f")"); done
    local before=() k
    for k in "${!pids[@]}"; do before+=("$(cpu_ticks "${pids[$k]}")"); done
    rm -rf "$out/narrator-out"
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M %U %S' -o "$out/narrate.time" \
        "${nr[@]}" --json submit "$imgdir" -o "$out/narrator-out" "${opts[@]}" >"$out/narrator-records.jsonl" || rc=$?
    t1=$(date +%s.%N)
    curl -s "http://127.0.0.1:$mport/metrics" >"$out/metrics-after.txt"
    : >"$out/procs.txt"
    for k in "${!pids[@]}"; do
        echo "${names[$k]} ${pids[$k]} $(hwm_kb "${pids[$k]}") $(( $(cpu_ticks "${pids[$k]}") - ${before[$k]} ))" >>"$out/procs.txt"
    done
    echo "narrate - $(cut -d' ' -f1 "$out/narrate.time") $(awk '{printf "%.0f", ($2 + $3) * 100}' "$out/narrate.time")" >>"$out/procs.txt"
    "${lc[@]}" stop --run-dir "$run" >>"$out/cluster.log" 2>&1 || true
    trap - EXIT
    "$py" - "$out" "$t0" "$t1" "$rc" "$round" "$nimg" "$(getconf CLK_TCK)" >>"$results" <<'EOF'
import json, re, sys
out, t0, t1, rc, rnd, nimg, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
recs = [json.loads(l) for l in open(out + "/narrator-records.jsonl") if l.startswith("{")]
done = [r for r in recs if r.get("state") == "done"]
stages = ("vision", "text", "speech")
def metrics(path):
    m = {}
    for line in open(path):
        g = re.match(r'(narrator_(?:queue_wait|stage_duration)_seconds_(?:sum|count))\{stage="(\w+)"\} (\S+)', line)
        if g:
            m[(g.group(1), g.group(2))] = float(g.group(3))
    return m
a, b = metrics(out + "/metrics-before.txt"), metrics(out + "/metrics-after.txt")
def mean_ms(name, st):
    n = b.get((name + "_count", st), 0) - a.get((name + "_count", st), 0)
    s = b.get((name + "_sum", st), 0) - a.get((name + "_sum", st), 0)
    return round(1000 * s / n, 1) if n else None
lat = sorted(r["updated_ms"] - r["created_ms"] for r in done)
wall = t1 - t0
procs = {}
for line in open(out + "/procs.txt"):
    name, pid, hwm, ticks = line.split()
    procs[name] = {"peak_mb": round(int(hwm) / 1024, 1), "cpu_s": round(int(ticks) / hz, 2)}
res = {
    "system": "narrator", "round": rnd, "images": nimg, "done": len(done), "narrate_rc": rc,
    "wall_s": round(wall, 3), "images_per_min": round(60 * len(done) / wall, 2),
    "ms_per_image": round(1000 * wall / max(1, len(done)), 1),
    "worker_ms": {s: round(sum(r["timings_ms"].get(s, 0) for r in done) / max(1, len(done)), 1) for s in stages},
    "broker_stage_ms": {s: mean_ms("narrator_stage_duration_seconds", s) for s in stages},
    "queue_wait_ms": {s: mean_ms("narrator_queue_wait_seconds", s) for s in stages},
    "latency_ms": {"p50": lat[len(lat) // 2] if lat else None, "max": lat[-1] if lat else None},
    "speech_s": round(sum(r.get("duration_ms") or 0 for r in done) / max(1, len(done)) / 1000, 2),
    "procs": procs,
    "captions": {r["source"].split("/")[-1]: r["caption"] for r in done},
}
print(json.dumps(res))
EOF
    tail -1 "$results" | cut -c1-400
}

run_torch() {
    local th="${1%%:*}" round="$2" label="pytorch-threads${1%%:*}" envs=()
    case "$1" in *:blas1) envs=(OPENBLAS_NUM_THREADS=1); label="$label-openblas1" ;; esac
    env "${envs[@]}" "$py" "$here/e2e_torch.py" --model "$model" --threads "$th" --beams "$beams" \
        --max-length "$maxlen" --warmup 2 --out "$out/torch-out" --label "$label" "$imgdir" \
        | sed "s/^{/{\"round\": $round, /" >>"$results"
    tail -1 "$results" | cut -c1-400
}

run_torch_procs() {
    local np="$1" round="$2" k pids=() ok
    rm -f "$out"/torch-ready.* "$out/torch-go" "$out"/torch-proc*.json
    for ((k = 0; k < np; k++)); do
        OPENBLAS_NUM_THREADS=1 "$py" "$here/e2e_torch.py" --model "$model" --threads 1 --beams "$beams" \
            --max-length "$maxlen" \
            --warmup 2 --out "$out/torch-out" --shard "$k/$np" --ready "$out/torch-ready.$k" \
            --go "$out/torch-go" --json "$out/torch-proc$k.json" "$imgdir" >/dev/null &
        pids+=($!)
    done
    for _ in $(seq 1 6000); do   # 10 minutes at most for loading and warming up
        ok=1
        for ((k = 0; k < np; k++)); do [ -e "$out/torch-ready.$k" ] || ok=0; done
        [ "$ok" = 1 ] && break
        for k in "${pids[@]}"; do kill -0 "$k" 2>/dev/null || ok=2; done
        [ "$ok" = 2 ] && break
        sleep 0.1
    done
    touch "$out/torch-go"
    for k in "${pids[@]}"; do wait "$k"; done
    "$py" - "$np" "$round" "$out"/torch-proc*.json >>"$results" <<'EOF'
import json, sys
np_, rnd, rs = int(sys.argv[1]), int(sys.argv[2]), [json.load(open(p)) for p in sys.argv[3:]]
n = sum(r["images"] for r in rs)
wall = max(r["wall_s"] for r in rs)
res = {"round": rnd, "system": "pytorch-%dprocs-threads1-openblas1" % np_, "procs": np_, "images": n, "wall_s": wall,
       "images_per_min": round(60 * n / wall, 2), "ms_per_image": round(1000 * wall / n, 1),
       "stage_ms": {k: round(sum(r["stage_ms"][k] * r["images"] for r in rs) / n, 1) for k in rs[0]["stage_ms"]},
       "peak_mb": round(sum(r["peak_mb"] for r in rs), 1), "peak_mb_each": [r["peak_mb"] for r in rs],
       "captions": [c for r in rs for c in r["captions"]]}
print(json.dumps(res))
EOF
    tail -1 "$results" | cut -c1-400
}

for ((r = 1; r <= rounds; r++)); do
    if [ "$do_narrator" = 1 ]; then echo "== narrator, round $r =="; run_narrator "$r"; fi
    if [ "$do_torch" = 1 ]; then
        for th in $tthreads; do echo "== PyTorch, threads $th, round $r =="; run_torch "$th" "$r"; done
        if [ "$tprocs" -gt 1 ]; then echo "== PyTorch, $tprocs processes at once, round $r =="; run_torch_procs "$tprocs" "$r"; fi
    fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

"$py" - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def best(system):
    rs = [r for r in rows if r["system"] == system]
    return max(rs, key=lambda r: r["images_per_min"]) if rs else None
n = best("narrator")
ts = sorted({r["system"] for r in rows if r["system"].startswith("pytorch")})
single = [t for t in ts if "procs" not in t]
print("\nEnd to end (best of %d round(s)): images/min over the whole route" % max(r["round"] for r in rows))
print("%-34s | %10s | %9s | %s" % ("system", "images/min", "ms/image", "stage ms per image (PyTorch: one after the other)"))
if n:
    print("%-34s | %10.1f | %9.0f | pipelined, see below; job latency p50 %s ms, max %s ms" %
          ("narrator", n["images_per_min"], n["ms_per_image"], n["latency_ms"]["p50"], n["latency_ms"]["max"]))
for t in ts:
    r = best(t)
    s = r["stage_ms"]
    print("%-34s | %10.1f | %9.0f | preprocess %s, vision %s, text %s, speech %s" %
          (t, r["images_per_min"], r["ms_per_image"], s["preprocess"], s["vision"], s["text"], s["speech"]))
if n:
    print("\nnarrator per stage (ms): worker = handler time per job (a batch's time for each of its jobs);"
          " broker = dispatch to result; queue wait = queued to dispatched; CPU = the stage's process CPU per image")
    print("%-8s | %8s | %8s | %10s | %8s" % ("stage", "worker", "broker", "queue wait", "CPU"))
    for st in ("vision", "text", "speech"):
        cpu = sum(p["cpu_s"] for k, p in n["procs"].items() if k.startswith("worker-" + st))
        print("%-8s | %8s | %8s | %10s | %8.0f" % (st, n["worker_ms"][st], n["broker_stage_ms"][st],
                                                 n["queue_wait_ms"][st], 1000 * cpu / n["done"]))
    print("\nnarrator processes: peak memory (VmHWM) and CPU seconds in the timed run (%d images, %.1f s)" %
          (n["done"], n["wall_s"]))
    for name, p in sorted(n["procs"].items()):
        print("  %-34s %8.1f MB  %7.2f s" % (name, p["peak_mb"], p["cpu_s"]))
    print("  %-34s %8.1f MB  %7.2f s" % ("total", sum(p["peak_mb"] for p in n["procs"].values()),
                                       sum(p["cpu_s"] for p in n["procs"].values())))
    for t in ts:
        print("  %-34s %8.1f MB (%s)" % (t, best(t)["peak_mb"], "all processes" if "procs" in t else "one process"))
    for t in ts:
        if "procs" in t:
            print("\nnarrator / %s (PyTorch on every core, sharded by hand): %.2fx" %
                  (t, n["images_per_min"] / best(t)["images_per_min"]))
    if single:
        bt = max((best(t) for t in single), key=lambda r: r["images_per_min"])
        print("\nratio: narrator %.1f images/min / %s %.1f images/min = %.2fx" %
              (n["images_per_min"], bt["system"], bt["images_per_min"], n["images_per_min"] / bt["images_per_min"]))
        same = sum(1 for c in bt["captions"] if n["captions"].get(c["image"]) == c["caption"])
        print("captions identical to PyTorch's: %d of %d" % (same, len(bt["captions"])))
EOF
echo "results: $out"
