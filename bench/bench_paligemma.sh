#!/bin/sh
# PaliGemma-3B-224 shapes: narrator (bench_paligemma, cpu:f32 / bf16 / int8)
# and PyTorch (bench_paligemma_torch.py, F32) one after the other, --rounds
# times, on the same cores; prints each side's medians over the rounds and
# PyTorch / narrator ratios, with the load (uptime) before every run. Logs
# in OUT (default /tmp/bench-paligemma).
#   bench/bench_paligemma.sh [--rounds 1] [--build build] [--out DIR] [--threads 2] [--iters 3] [--layers 4] [--vocab 32768]
#       [--precision f32,bf16,int8] [--full [--ckpt DIR] [--tokens 8]]
# --full: the whole PaliGemma-3B shape (18 Gemma layers, 257216 ids) from a
# random BF16 checkpoint in the published sharded layout, written once to
# --ckpt (default OUT/paligemma-3b-bf16, 5.9 GB; bench/make_paligemma_checkpoint.py)
# and mapped: narrator one process per precision (its peak memory its own)
# against PyTorch in BF16 reading the same files; adds load time, resident
# memory after load and peak rows. Needs about 15 GB of available memory.
set -eu
ROUNDS=1
BUILD=build
OUT=/tmp/bench-paligemma
TT=2
ITERS=3
LAYERS=4
VOCAB=32768
FULL=0
CKPT=
PRECS=
TOKENS=16
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --threads) TT=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --full) FULL=1; shift ;;
    --ckpt) CKPT=$2; shift 2 ;;
    --precision) PRECS=$2; shift 2 ;;
    --tokens) TOKENS=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--build DIR] [--out DIR] [--threads N] [--iters N] [--layers N] [--vocab N] [--full [--ckpt DIR] [--precision LIST] [--tokens N]]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
[ -x "$BUILD/bin/bench_paligemma" ] || { echo "build $BUILD/bin/bench_paligemma first" >&2; exit 1; }
mkdir -p "$OUT"
: > "$OUT/results.txt"
if [ "$FULL" = 1 ]; then
    CKPT=${CKPT:-$OUT/paligemma-3b-bf16}
    /usr/bin/python3 bench/make_paligemma_checkpoint.py "$CKPT"
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)
    [ "$avail" -ge 15 ] || { echo "only $avail GB available: the full bench needs about 15" >&2; exit 1; }
fi
load() { echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"; }
r=1
while [ "$r" -le "$ROUNDS" ]; do
    if [ "$FULL" = 1 ]; then
        for p in $(echo "${PRECS:-bf16,int8,f32}" | tr , ' '); do
            load
            "$BUILD/bin/bench_paligemma" --dir "$CKPT" --precision "$p" --threads "$TT" --iters "$ITERS" --tokens "$TOKENS" \
                > "$OUT/narrator.$p.$r.log"
            grep '^result' "$OUT/narrator.$p.$r.log" >> "$OUT/results.txt"
        done
        load
        /usr/bin/python3 bench/bench_paligemma_torch.py --dir "$CKPT" --threads "$TT" --iters "$ITERS" --tokens "$TOKENS" \
            > "$OUT/torch.$r.log"
    else
        load
        "$BUILD/bin/bench_paligemma" --threads "$TT" --iters "$ITERS" --layers "$LAYERS" --vocab "$VOCAB" \
            --precision "${PRECS:-f32,bf16,int8}" > "$OUT/narrator.$r.log"
        grep '^result' "$OUT/narrator.$r.log" >> "$OUT/results.txt"
        load
        /usr/bin/python3 bench/bench_paligemma_torch.py --threads "$TT" --iters "$ITERS" --layers "$LAYERS" --vocab "$VOCAB" > "$OUT/torch.$r.log"
    fi
    grep '^result' "$OUT/torch.$r.log" >> "$OUT/results.txt"
    echo "round $r done"
    r=$((r + 1))
done
/usr/bin/python3 - "$OUT/results.txt" "$FULL" <<'PY'
import statistics, sys
vals, loads = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "load":
        loads.append(" ".join(f[1:]))
    elif f[0] == "result":
        vals.setdefault((f[1], f[2]), []).append(float(f[3]))
med = {k: statistics.median(v) for k, v in vals.items()}
full = sys.argv[2] == "1"
print("loads (1, 5, 15 min) before each run:", "; ".join(loads))
precs = [p for p in ("f32", "bf16", "int8") if (p, "siglip_ms") in med]
print("| | PyTorch %s | " % ("BF16" if full else "F32") + " | ".join("narrator " + p + " (PyTorch / narrator)" for p in precs) + " |")
print("| --- | --- |" + " --- |" * len(precs))
rows = [("siglip_ms", "SigLIP-So400m 224 px + projector, ms/image"),
        ("prefix_ms", "prefix step (256 image + 5 text tokens), ms"),
        ("decode_ms_tok", "decode step, ms/token (greedy)")]
if full:
    rows += [("load_s", "load, s"), ("rss_load_mb", "resident after load, MB"),
             ("rss_file_mb", "of it mapped files, MB"), ("rss_peak_mb", "peak resident, MB")]
for key, what in rows:
    t = med.get(("torch", key))
    mem = key.startswith("rss")
    cells = []
    for p in precs:
        v = med.get((p, key))
        if v is None:
            cells.append("")
        elif mem:
            cells.append("%.0f" % v)
        else:
            cells.append("%.1f (%.2fx)" % (v, t / v) if t and v else "%.1f" % v)
    print("| %s | %s | %s |" % (what, ("%.0f" if mem else "%.1f") % t if t is not None else "", " | ".join(cells)))
PY
