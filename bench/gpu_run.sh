#!/bin/sh
# Runs on the GPU machine (device tool), from the repository root, with .gpu/
# carried (made here by bench/gpu_pack.sh). Phases:
#   test     nvidia-smi, test_cuda (label gpu) and test_models, bench_cuda
#   eager    bench_cuda_torch.py eager PyTorch, compared with bench_cuda
#   compile  bench_cuda_torch.py torch.compile, compared with bench_cuda
# Logs and JSON go to $OUT (or ./gpu-out when OUT is unset). Extra arguments
# after the phase go to bench_cuda / bench_cuda_torch.py (e.g. --batches 1,8,64).
set -u
phase=${1:-test}
[ $# -gt 0 ] && shift
out=${OUT:-gpu-out}
mkdir -p "$out" /tmp/nr-gpu
tar -C /tmp/nr-gpu -xJf .gpu/pack.tar.xz || { echo "no .gpu/pack.tar.xz: run bench/gpu_pack.sh here first and carry .gpu"; exit 2; }
cudalib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublasLt.so.13" ] && cudalib="$cudalib:$d"
done
if [ -z "$cudalib" ]; then # PyTorch's wheels (nvidia-cublas, nvidia-cuda-runtime)
  for f in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    for d in $(find "$f/nvidia" -name 'libcublasLt.so.13' -o -name 'libcudart.so.13' 2>/dev/null | xargs -r -n1 dirname | sort -u); do
      cudalib="$cudalib:$d"
    done
  done
fi
export LD_LIBRARY_PATH="/tmp/nr-gpu/lib$cudalib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NR_SOURCE_DIR="$PWD"
bin=/tmp/nr-gpu/bin
case "$phase" in
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
    PYTHONUNBUFFERED=1 python3 bench/bench_cuda_torch.py --modes "$phase" --json "$out/torch-$phase.json" $cmp "$@" \
      2>&1 | tee "$out/torch-$phase.txt"
    ;;
  *) echo "usage: bench/gpu_run.sh test|eager|compile [args]"; exit 2 ;;
esac
