#!/bin/sh
# Kokoro-82M real-time factor, narrator (bench_kokoro) against PyTorch
# (tests/fixtures/reference_kokoro.py, the independent reference) with the
# same random weights at Kokoro-82M's sizes, alternately --rounds times on
# the same cores (--threads: OpenBLAS threads for narrator, torch threads
# for PyTorch). The model folder (about 330 MB) is made once in OUT.
#   bench/bench_kokoro.sh [--rounds 3] [--threads 2] [--phonemes 100] [--build build] [--out DIR]
set -eu
ROUNDS=3
THREADS=2
NPH=100
BUILD=build
OUT=/tmp/bench-kokoro
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --phonemes) NPH=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--threads N] [--phonemes N] [--build DIR] [--out DIR]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
[ -x "$BUILD/bin/bench_kokoro" ] || { echo "build $BUILD/bin/bench_kokoro first (target bench_kokoro)" >&2; exit 1; }
mkdir -p "$OUT"
: > "$OUT/results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
    NR_THREADS=$THREADS /usr/bin/python3 tests/fixtures/reference_kokoro.py bench "$OUT" "$NPH" | tee -a "$OUT/results.txt"
    OPENBLAS_NUM_THREADS=$THREADS "$BUILD/bin/bench_kokoro" "$OUT" | tee -a "$OUT/results.txt"
    r=$((r + 1))
done
/usr/bin/python3 - "$OUT/results.txt" <<'PY'
import re, statistics, sys
t, n = [], []
for line in open(sys.argv[1]):
    m = re.search(r"rtf=([0-9.]+)", line)
    if m:
        (t if line.startswith("pytorch") else n).append(float(m.group(1)))
if t and n:
    mt, mn = statistics.median(t), statistics.median(n)
    print(f"median rtf: narrator {mn:.4f}, pytorch {mt:.4f}; narrator is {mt / mn:.2f}x faster")
PY
