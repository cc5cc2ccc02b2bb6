#!/bin/sh
# PaliGemma-3B-224 shapes: narrator (bench_paligemma, cpu:f32 / bf16 / int8)
# and PyTorch (bench_paligemma_torch.py, F32) one after the other, --rounds
# times, on the same cores; prints each side's medians over the rounds and
# PyTorch / narrator ratios, with the load (uptime) before every run. Logs
# in OUT (default /tmp/bench-paligemma).
#   bench/bench_paligemma.sh [--rounds 1] [--build build] [--out DIR] [--threads 2] [--iters 3] [--layers 4] [--vocab 32768]
set -eu
ROUNDS=1
BUILD=build
OUT=/tmp/bench-paligemma
TT=2
ITERS=3
LAYERS=4
VOCAB=32768
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --threads) TT=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--build DIR] [--out DIR] [--threads N] [--iters N] [--layers N] [--vocab N]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
[ -x "$BUILD/bin/bench_paligemma" ] || { echo "build $BUILD/bin/bench_paligemma first" >&2; exit 1; }
mkdir -p "$OUT"
: > "$OUT/results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
    "$BUILD/bin/bench_paligemma" --threads "$TT" --iters "$ITERS" --layers "$LAYERS" --vocab "$VOCAB" > "$OUT/narrator.$r.log"
    grep '^result' "$OUT/narrator.$r.log" >> "$OUT/results.txt"
    echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
    /usr/bin/python3 bench/bench_paligemma_torch.py --threads "$TT" --iters "$ITERS" --layers "$LAYERS" --vocab "$VOCAB" > "$OUT/torch.$r.log"
    grep '^result' "$OUT/torch.$r.log" >> "$OUT/results.txt"
    echo "round $r done"
    r=$((r + 1))
done
/usr/bin/python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
vals, loads = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "load":
        loads.append(" ".join(f[1:]))
    elif f[0] == "result":
        vals.setdefault((f[1], f[2]), []).append(float(f[3]))
med = {k: statistics.median(v) for k, v in vals.items()}
print("loads (1, 5, 15 min) before each run:", "; ".join(loads))
precs = [p for p in ("f32", "bf16", "int8") if (p, "siglip_ms") in med]
print("| | PyTorch F32 | " + " | ".join("narrator " + p + " (PyTorch / narrator)" for p in precs) + " |")
print("| --- | --- |" + " --- |" * len(precs))
for key, what in (("siglip_ms", "SigLIP-So400m 224 px + projector, ms/image"),
                  ("prefix_ms", "prefix step (256 image + 5 text tokens), ms"),
                  ("decode_ms_tok", "decode step, ms/token (greedy)")):
    t = med.get(("torch", key))
    cells = ["%.1f (%.2fx)" % (med[(p, key)], t / med[(p, key)]) if t and (p, key) in med else "" for p in precs]
    print("| %s | %s | %s |" % (what, "%.1f" % t if t else "", " | ".join(cells)))
PY
