#!/bin/sh
# GIT-base (default) or BLIP-base (--family blip): narrator (bench_git /
# bench_blip, cpu:f32 / bf16 / int8) and PyTorch (bench_git_torch.py /
# bench_blip_torch.py, F32) alternately, --rounds times, on the same cores;
# prints each side's medians over the rounds and narrator / PyTorch ratios,
# with the load (uptime) before every run. Logs in OUT (default
# /tmp/bench-git or /tmp/bench-blip).
#   bench/bench_git.sh [--family git|blip] [--rounds 3] [--build build-bench] [--out DIR] [--torch-threads 1] [--iters 3]
set -eu
ROUNDS=3
BUILD=build-bench
OUT=
FAMILY=git
TT=1
ITERS=3
while [ $# -gt 0 ]; do
    case "$1" in
    --family) FAMILY=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --torch-threads) TT=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    *) echo "usage: $0 [--family git|blip] [--rounds N] [--build DIR] [--out DIR] [--torch-threads N] [--iters N]" >&2; exit 2 ;;
    esac
done
case "$FAMILY" in git|blip) ;; *) echo "$0: --family must be git or blip" >&2; exit 2 ;; esac
[ -n "$OUT" ] || OUT=/tmp/bench-$FAMILY
cd "$(dirname "$0")/.."
[ -x "$BUILD/bin/bench_$FAMILY" ] || { echo "build $BUILD/bin/bench_$FAMILY first (target bench_$FAMILY)" >&2; exit 1; }
mkdir -p "$OUT"
: > "$OUT/results.txt"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
    "$BUILD/bin/bench_$FAMILY" --iters "$ITERS" > "$OUT/narrator.$r.log"
    grep '^result' "$OUT/narrator.$r.log" >> "$OUT/results.txt"
    echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
    /usr/bin/python3 "bench/bench_${FAMILY}_torch.py" --threads "$TT" --iters "$ITERS" > "$OUT/torch.$r.log"
    grep '^result' "$OUT/torch.$r.log" >> "$OUT/results.txt"
    echo "round $r done"
    r=$((r + 1))
done
echo "load $(uptime | sed 's/.*load average: //')" | tee -a "$OUT/results.txt"
/usr/bin/python3 - "$OUT/results.txt" "$FAMILY" <<'EOF'
import statistics, sys
blip = sys.argv[2] == "blip"
vals, loads = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "load":
        loads.append(" ".join(f[1:]))
    elif f[0] == "result":
        vals.setdefault((f[1], f[2]), []).append(float(f[3]))
med = {k: statistics.median(v) for k, v in vals.items()}
print("loads (1, 5, 15 min) before each run:", "; ".join(loads))
rows = [("enc_b1_ips", "encoder images/s, batch 1", 1), ("enc_b8_ips", "encoder images/s, batch 8", 1),
        ("kv_setup_ms", "cross K/V setup ms (12 layers x 577 tokens)" if blip
         else "image K/V setup ms (6 layers x 197 tokens)", -1),
        ("greedy_ms_tok", "decode ms/token, greedy (1 row)", -1), ("beam4_ms_step", "decode ms/step, beam 4 (4 rows)", -1),
        ("caption_beam4_ms", "caption ms/image, beam 4 (encode + 19 steps)", -1),
        ("caption_greedy_ms", "caption ms/image, greedy", -1)]
precs = [p for p in ("f32", "bf16", "int8") if (p, "enc_b1_ips") in med]
print(("| | PyTorch F32 (cross K/V cached) | transformers v4.46 generate (cross K/V redone per step) | " if blip
       else "| | PyTorch F32 (image K/V cached) | transformers' generate (image redone per step) | ")
      + " | ".join("narrator " + p for p in precs) + " |")
print("| --- | --- | --- |" + " --- |" * len(precs))
hf = {"greedy_ms_tok": "hf_greedy_ms_step", "beam4_ms_step": "hf_beam4_ms_step",
      "caption_beam4_ms": "hf_caption_beam4_ms", "caption_greedy_ms": "hf_caption_greedy_ms"}
for key, what, better in rows:
    t = med.get(("torch", key))
    h = med.get(("torch", hf.get(key, "")))
    cells = []
    for p in precs:
        n = med.get((p, key))
        if n is None:
            cells.append("")
            continue
        ratio = (n / t if better > 0 else t / n) if t else None
        hr = (h / n) if h else None
        s = f"{n:.2f} ({ratio:.2f}x" if ratio else f"{n:.2f} ("
        s += f"; {hr:.0f}x transformers)" if hr else ")"
        cells.append(s)
    print(f"| {what} | {t:.2f} | {'%.0f' % h if h else ''} | " + " | ".join(cells) + " |")
print("(medians of", (len(loads) - 1) // 2, "rounds per side; ratio = narrator / PyTorch speed; transformers = its time / narrator time)")
EOF
