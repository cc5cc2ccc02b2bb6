#!/bin/sh
# Packs what a GPU run needs from this machine's NR_CUDA build into .gpu/
# (ignored by git via .git/info/exclude), for the device tool, whose machine
# has the CUDA 13 driver, runtime and cuBLAS but not this project's other
# libraries: test_cuda, bench_cuda, bench_git (GIT and BLIP),
# bench_paligemma and test_models, plus the shared
# libraries they link (OpenBLAS, cJSON, Criterion, image codecs ...) in one
# xz tarball, leaving out glibc and the CUDA libraries (the GPU machine has
# its own; cuBLASLt alone is 540 MB). Usage, from the repository root:
#   bench/gpu_pack.sh [build-dir]        (default build-cuda)
# The build dir must be configured with -DNR_CUDA=ON and CUDA architectures
# that include 90 (H100 / H200), e.g. -DCMAKE_CUDA_ARCHITECTURES=90.
# then see bench/README.md, "GPU", for the run command.
set -eu
build=${1:-build-cuda}
cmake --build "$build" --target test_cuda bench_cuda bench_git bench_paligemma test_models -j2
rm -rf .gpu && mkdir -p .gpu/stage/bin .gpu/stage/lib
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
cp "$build/tests/test_cuda" "$build/tests/test_models" "$build/bin/bench_cuda" "$build/bin/bench_git" \
  "$build/bin/bench_paligemma" .gpu/stage/bin/
for b in .gpu/stage/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|ld-linux*) ;;
    libstdc++.so.*|libgcc_s.so.*) ;; # the GPU machine's (newer) ones
    libcudart*|libcublas*|libcuda.so*) ;;
    *) cp -L "$lib" .gpu/stage/lib/ ;;
  esac
done
strip --strip-unneeded .gpu/stage/bin/* .gpu/stage/lib/* 2>/dev/null || true
tar -C .gpu/stage -cJf .gpu/pack.tar.xz bin lib
rm -rf .gpu/stage
ls -la .gpu/pack.tar.xz
