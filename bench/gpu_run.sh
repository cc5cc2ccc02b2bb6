#!/bin/sh
# Runs on the GPU machine (device tool), from the repository root, with .gpu/
# carried (made here by bench/gpu_pack.sh). Phases:
#   all       gputest, then families, then vitgpt2: the one-visit sequence
#             (bench/README.md, "GPU"); every step under a timeout cut to
#             what is left of NR_GPU_BUDGET_S (default 540 s), so the call
#             ends inside the device tool's limit with whatever finished
#   gputest   nvidia-smi, test_cuda (label gpu: ops, ViT-GPT2, GIT, BLIP,
#             PaliGemma on cuda:0 and cuda:0:bf16)
#   families  bench_git (GIT-base, BLIP-base with --family blip) and
#             bench_paligemma on cuda:0 and cuda:0:bf16, the PyTorch scripts
#             with --device cuda (F32, TF32 off) and --autocast bf16, and
#             the narrator / PyTorch tables (families.md)
#   vitgpt2   bench_cuda and bench_cuda_torch.py eager at batch 1, 8, 64
#   test      (older) nvidia-smi, test_cuda, test_models, bench_cuda
#   eager|compile  bench_cuda_torch.py eager / torch.compile vs bench_cuda
# Logs, tables and summary.txt (each step's exit status and seconds) go to
# $OUT (or ./gpu-out when OUT is unset). NR_GPU_ITERS (default 10) sets the
# families' --iters; NR_GPU_DEVICES (default cuda:0,cuda:0:bf16: F32, then
# BF16) and NR_GPU_TORCH_DEVICE (default cuda) let the families phase run
# on the CPU as a smoke test of this script (cpu,cpu:bf16 and cpu; the
# autocast runs then stop with a message: PyTorch's autocast is CUDA-only
# here); NR_GPU_PYTHON (default python3) is the Python with torch. Extra
# arguments after test, eager and compile go to bench_cuda /
# bench_cuda_torch.py (e.g. --batches 1,8,64).
set -u
phase=${1:-test}
[ $# -gt 0 ] && shift
out=${OUT:-gpu-out}
py=${NR_GPU_PYTHON:-python3}
mkdir -p "$out" /tmp/nr-gpu
tar -C /tmp/nr-gpu -xJf .gpu/pack.tar.xz || { echo "no .gpu/pack.tar.xz: run bench/gpu_pack.sh here first and carry .gpu"; exit 2; }
cudalib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublasLt.so.13" ] && cudalib="$cudalib:$d"
done
if [ -z "$cudalib" ]; then # PyTorch's wheels (nvidia-cublas, nvidia-cuda-runtime)
  for f in $("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    for d in $(find "$f/nvidia" -name 'libcublasLt.so.13' -o -name 'libcudart.so.13' 2>/dev/null | xargs -r -n1 dirname | sort -u); do
      cudalib="$cudalib:$d"
    done
  done
fi
export LD_LIBRARY_PATH="/tmp/nr-gpu/lib$cudalib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NR_SOURCE_DIR="$PWD"
bin=/tmp/nr-gpu/bin
t_end=$(( $(date +%s) + ${NR_GPU_BUDGET_S:-540} ))

# step LIMIT LOG CMD...: CMD under a timeout of LIMIT seconds (less when the
# budget has less left; skipped under 10 s), stdout and stderr to LOG; its
# exit status and seconds appended to summary.txt.
step() {
  lim=$1; log=$2; shift 2
  left=$(( t_end - $(date +%s) - 5 ))
  [ "$left" -lt "$lim" ] && lim=$left
  if [ "$lim" -lt 10 ]; then
    echo "skipped (budget spent): $*" | tee -a "$out/summary.txt"
    return 124
  fi
  t0=$(date +%s)
  timeout "$lim" "$@" > "$log" 2>&1
  rc=$?
  echo "exit $rc after $(( $(date +%s) - t0 )) s (limit $lim s): $* > $(basename "$log")" | tee -a "$out/summary.txt"
  return $rc
}

gpu_info() {
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || nvidia-smi -L; } 2>&1 | tee -a "$out/gpu.txt"
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee -a "$out/gpu.txt"
  "$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tee -a "$out/gpu.txt"
  ldd $bin/test_cuda | grep -E "not found|cublas|cudart" | tee -a "$out/gpu.txt"
}

phase_gputest() {
  step 240 "$out/test_cuda.log" $bin/test_cuda --verbose --jobs 1
  grep -E "FAIL|SKIP|CRASH|Crash|Synthesis" "$out/test_cuda.log" | head -40
  # the measured errors (states, logits, bf16 agreement) for the issue notes
  grep -E "error|bound|reproduced" "$out/test_cuda.log" | grep -v " info " > "$out/test_cuda_errors.txt"
}

phase_families() {
  it=${NR_GPU_ITERS:-10}
  devs=${NR_GPU_DEVICES:-cuda:0,cuda:0:bf16}
  tdevice=${NR_GPU_TORCH_DEVICE:-cuda}
  d32=${devs%%,*}
  d16=${devs#*,}
  for fam in git blip; do
    step 75 "$out/$fam.log" $bin/bench_git --family $fam --device "$devs" --iters "$it"
    step 60 "$out/$fam-torch.log" "$py" bench/bench_${fam}_torch.py --device "$tdevice" --iters "$it"
    step 60 "$out/$fam-torch-bf16.log" "$py" bench/bench_${fam}_torch.py --device "$tdevice" --autocast bf16 --iters "$it"
  done
  step 75 "$out/paligemma.log" $bin/bench_paligemma --device "$devs" --iters "$it"
  step 60 "$out/paligemma-torch.log" "$py" bench/bench_paligemma_torch.py --device "$tdevice" --iters "$it"
  step 60 "$out/paligemma-torch-bf16.log" "$py" bench/bench_paligemma_torch.py --device "$tdevice" --autocast bf16 --iters "$it"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$gpu" ] || gpu="no GPU ($devs)"
  for fam in git blip paligemma; do
    case $fam in git) name=GIT-base ;; blip) name=BLIP-base ;; *) name="PaliGemma-3B shapes (4 of 18 Gemma layers, vocab 32768)" ;; esac
    "$py" bench/gpu_compare.py --title "$name, $gpu, F32 (TF32 off)" --narrator "$out/$fam.log" --tag "$d32" \
      --torch "$out/$fam-torch.log"
    "$py" bench/gpu_compare.py --title "$name, $gpu, BF16 (narrator $d16, PyTorch autocast bf16)" \
      --narrator "$out/$fam.log" --tag "$d16" --torch "$out/$fam-torch-bf16.log"
  done | tee "$out/families.md"
}

phase_vitgpt2() {
  step 90 "$out/bench_cuda.txt" $bin/bench_cuda --json "$out/narrator.json" --batches 1,8,64
  step 120 "$out/torch-eager.txt" env PYTHONUNBUFFERED=1 "$py" bench/bench_cuda_torch.py --modes eager \
    --batches 1,8,64 --json "$out/torch-eager.json" --compare "$out/narrator.json"
  tail -30 "$out/torch-eager.txt"
}

case "$phase" in
  all)
    gpu_info
    phase_gputest
    phase_families
    phase_vitgpt2
    ;;
  gputest) gpu_info; phase_gputest ;;
  families) gpu_info; phase_families ;;
  vitgpt2) gpu_info; phase_vitgpt2 ;;
  test)
    nvidia-smi -L | tee "$out/gpu.txt"
    ldd $bin/test_cuda | grep -E "not found|cublas|cudart" | tee -a "$out/gpu.txt"
    $bin/test_cuda --verbose --jobs 1 > "$out/test_cuda.log" 2>&1; echo "test_cuda exit $?" | tee -a "$out/gpu.txt"
    grep -E "FAIL|SKIP|error|Synthesis" "$out/test_cuda.log" | head -40
    $bin/test_models --jobs 1 > "$out/test_models.log" 2>&1; echo "test_models exit $?" | tee -a "$out/gpu.txt"
    $bin/bench_cuda --json "$out/narrator.json" "$@" 2>&1 | tee "$out/bench_cuda.txt"
    ;;
  eager|compile)
    [ -f "$out/narrator.json" ] || echo "(no $out/narrator.json from the test phase: no side-by-side table)"
    cmp=""
    [ -f "$out/narrator.json" ] && cmp="--compare $out/narrator.json"
    PYTHONUNBUFFERED=1 "$py" bench/bench_cuda_torch.py --modes "$phase" --json "$out/torch-$phase.json" $cmp "$@" \
      2>&1 | tee "$out/torch-$phase.txt"
    ;;
  *) echo "usage: bench/gpu_run.sh all|gputest|families|vitgpt2|test|eager|compile [args]"; exit 2 ;;
esac
