#!/usr/bin/env bash
# The engine's CPU kernel and model tests on CPUs this machine is not:
# older x86-64 CPUs (no AVX-512, no AVX2, no AVX) and an AMD one under
# QEMU user-mode emulation, and an aarch64 (arm64) build, cross-compiled,
# under qemu-aarch64. See "Other CPUs" in README.md.
#
#   tests/cross/run.sh [--quick] [x86|arm64|all]     (default: all)
#
# Each emulated CPU runs cpu_path_probe (the path the dispatcher picks on
# its own, logged; OpenBLAS's kernel set; a forced path the CPU lacks is
# an error), then test_kernels_mt, test_precision and test_models with
# the path the CPU picks (and, on AVX2 CPUs, with NR_CPU_PATH=generic);
# on aarch64 also the unit tests that need no servers (ARM_UNIT below).
# TCG is 30-80x slower than the host: the full run takes hours on 2
# cores; --quick runs the fast tests only: the ops, the path checks, the
# tiny checkpoint's encoder and captions (minutes a CPU; CI runs it).
# An illegal instruction anywhere (an instruction the emulated CPU lacks,
# from our code or a library's) fails the run. OPENBLAS_NUM_THREADS=1
# keeps OpenBLAS's threads out of Criterion's runner (each test's backend
# sets its own count), which forks under the emulator.
#
# Installs what it needs with apt-get (qemu-user, gcc-aarch64-linux-gnu);
# the arm64 libraries are downloaded with apt into a private state folder
# and unpacked into a sysroot (NARRATOR_CROSS_DIR, default build-cross/):
# nothing arm64 is installed on the host, no foreign architecture added.
#
# Environment: NARRATOR_CROSS_DIR, NARRATOR_JOBS (build jobs, default
# nproc), NARRATOR_CROSS_X86 / NARRATOR_CROSS_ARM (the CPU models to run,
# "model:expected-path ..." / "model ..."), NARRATOR_CROSS_TESTS (the
# test programs, default all three), NARRATOR_CROSS_X86_BUILD (an x86-64
# build folder to reuse, e.g. build; default NARRATOR_CROSS_DIR/x86).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SRC=$PWD

quick=0
what=all
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    x86 | arm64 | all) what=$a ;;
    *) echo "usage: tests/cross/run.sh [--quick] [x86|arm64|all]" >&2; exit 2 ;;
  esac
done
DIR=${NARRATOR_CROSS_DIR:-build-cross}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
JOBS=${NARRATOR_JOBS:-$(nproc)}
TESTS=${NARRATOR_CROSS_TESTS:-test_kernels_mt test_precision test_models}
# QEMU 7.2's TCG runs x86-64 up to AVX2 (no AVX-512, no AMX). Each entry:
# a QEMU CPU model and the path the dispatcher must pick on it.
#   qemu64: x86-64 baseline with SSE3 (AMD vendor string); Nehalem: x86-64-v2;
#   SandyBridge: AVX without AVX2/FMA; Haswell-v4: x86-64-v3 (Intel);
#   EPYC-Rome: x86-64-v3 (AMD Zen 2).
# A third field: OpenBLAS picks kernels this CPU lacks (its Opteron ones,
# with 3DNow!, on qemu64), which the dispatcher must refuse with the fix;
# the tests then run with OPENBLAS_CORETYPE set to that field.
X86_CPUS=${NARRATOR_CROSS_X86:-"Haswell-v4:avx2 EPYC-Rome:avx2 SandyBridge:generic Nehalem:generic qemu64:generic:Prescott"}
ARM_CPUS=${NARRATOR_CROSS_ARM:-"neoverse-n1 cortex-a72"}
ARM_UNIT="test_common test_proto test_tokenizer test_wordpiece test_gemma_tokenizer test_torchzip test_checkpoint
  test_image test_image_formats test_g2p test_ratelimit test_metrics test_eval test_output_tree test_alttext"
TARGETS="cpu_path_probe $TESTS"
LIMIT=${NARRATOR_CROSS_LIMIT:-$([ $quick = 1 ] && echo 1800 || echo 14400)} # seconds a test program may run
fails=0
summary=()

s_log() { printf 'cross: %s\n' "$*"; }

s_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  s_log "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The /proc/cpuinfo the emulated program reads: qemu-user shows the host's,
# whose flags (AVX-512, AMX here) are not the emulated CPU's. QEMU looks up
# absolute paths in its prefix (-L) first, so each CPU gets a flags line
# with what its QEMU model has (QEMU's target/i386/cpu.c), which
# test_precision's paths_match_cpu_flags compares with cpuid.
s_x86_flags() {
  local base="fpu tsc cx8 cmov mmx fxsr sse sse2 syscall nx lm"
  case "$1" in
    qemu64*) echo "$base pni cx16 lahf_lm" ;;
    Nehalem*) echo "$base pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm" ;;
    SandyBridge*) echo "$base pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 popcnt aes xsave avx lahf_lm" ;;
    Haswell* | EPYC-Rome*) echo "$base pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm abm bmi1 avx2 bmi2" ;;
    *) return 1 ;;
  esac
}

# One test program under the emulator; $1 a label, $2 the path every
# process must log (the proof it ran on the emulated CPU, not the host;
# - for a test that uses no kernels), the rest the command. Passes when Criterion says nothing failed or
# crashed and no program died of an illegal instruction.
s_run() {
  local label=$1 want=$2 log
  shift 2
  log="$DIR/logs/$(echo "$label" | tr ' /=' '___').log"
  mkdir -p "$DIR/logs"
  local t0=$SECONDS rc=0
  timeout -k 30 "$LIMIT" "$@" >"$log" 2>&1 || rc=$?
  # qemu-user can deadlock forking a threaded program (Criterion starting
  # a test): a run that hangs or cannot start a test gets one more try
  if [ $rc = 124 ] || grep -aq 'Could not spawn test instance' "$log"; then
    s_log "     $label: hung or could not start a test under the emulator: once more"
    mv "$log" "$log.try1"
    rc=0
    timeout -k 30 "$LIMIT" "$@" >"$log" 2>&1 || rc=$?
  fi
  local synth
  synth=$(grep -a 'Synthesis:' "$log" | tail -1 | sed 's/.*Synthesis: //' || true)
  local paths
  paths=$(sed -n 's/.*cpu kernels: \([a-z0-9]*\) path.*/\1/p' "$log" | sort -u | tr '\n' ' ')
  if grep -aq 'Illegal instruction\|target signal 4' "$log"; then
    s_log "FAIL $label: illegal instruction (see $log)"
    fails=$((fails + 1))
  elif [ "$want" != - ] && [ "$paths" != "$want " ]; then
    s_log "FAIL $label: not run on the emulated CPU: paths logged '$paths', want $want (see $log)"
    fails=$((fails + 1))
  elif [ $rc -ne 0 ] || [ -z "$synth" ]; then
    s_log "FAIL $label: exit $rc ${synth:-no Criterion summary} (see $log)"
    grep -a '\[FAIL\]\|\[----\].*[Ff]ail' "$log" | head -20 || true
    fails=$((fails + 1))
  else
    s_log "ok   $label: $synth ($((SECONDS - t0)) s)"
  fi
  summary+=("$label: ${synth:-exit $rc}")
}

# The tests of one CPU: $1 label, $2 build dir, $3 the path they must run
# on, then the emulator command.
s_tests() {
  local label=$1 build=$2 want=$3
  shift 3
  for t in $TESTS; do
    local args=(--jobs 1 --timeout 7200 --verbose)
    if [ $quick = 1 ]; then
      case $t in
        # 4 threads x 4 repetitions of ViT-sized work, the BF16/INT8
        # kernels over many shapes, the caption agreement: each 5-60 min
        test_kernels_mt) continue ;;
        test_precision) args+=(--filter 'precision/@(paths_*|forced_*|device_names|backend_matmul)') ;;
        test_models) args+=(--filter '@(models_ops/*|models_fixture/encoder_hidden_states|models_fixture/greedy_and_beam_ids)') ;;
      esac
    fi
    s_run "$label $t" "$want" env NR_SOURCE_DIR="$SRC" NR_BUILD_DIR="$build" "$@" "$build/tests/$t" "${args[@]}"
  done
}

# The path the dispatcher picked, from the probe's log line.
s_picked() { sed -n 's/.*cpu kernels: \([a-z0-9]*\) path.*/\1/p' "$1" | head -1; }

s_x86() {
  s_apt qemu-user
  local build=${NARRATOR_CROSS_X86_BUILD:-$DIR/x86}
  build=$(mkdir -p "$build" && cd "$build" && pwd)
  [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNR_CUDA=OFF >/dev/null
  cmake --build "$build" -j"$JOBS" --target $TARGETS
  gcc -O2 -Wall -Wextra -shared -fPIC -o "$DIR/qemu_exec_x86_64.so.$$" tests/cross/qemu_exec.c -ldl
  mv -f "$DIR/qemu_exec_x86_64.so.$$" "$DIR/qemu_exec_x86_64.so"
  for spec in $X86_CPUS; do
    local cpu want blas
    IFS=: read -r cpu want blas <<<"$spec"
    local prefix="$DIR/x86-proc/$cpu"
    mkdir -p "$prefix/proc" "$DIR/logs"
    printf 'processor\t: 0\nflags\t\t: %s\n\n' "$(s_x86_flags "$cpu")" >"$prefix/proc/cpuinfo"
    local q=(env QEMU_CPU="$cpu" QEMU_LD_PREFIX="$prefix" NR_QEMU="$(command -v qemu-x86_64)" OPENBLAS_NUM_THREADS=1
      qemu-x86_64 -E LD_PRELOAD="$DIR/qemu_exec_x86_64.so")
    if [ -n "$blas" ]; then
      local blog="$DIR/logs/blas-$cpu.log"
      "${q[@]}" "$build/tests/cpu_path_probe" generic >"$blog" 2>&1 || true
      if grep -q "use 3DNow! instructions this CPU lacks.*OPENBLAS_CORETYPE=$blas" "$blog"; then
        s_log "ok   $cpu: OpenBLAS's choice refused with the fix (OPENBLAS_CORETYPE=$blas)"
      else
        s_log "FAIL $cpu: OpenBLAS's kernels for a CPU without 3DNow! not refused (see $blog)"
        fails=$((fails + 1))
      fi
      q=(env OPENBLAS_CORETYPE="$blas" "${q[@]}")
    fi
    # the dispatcher's own choice, logged, and OpenBLAS's kernel set
    local plog="$DIR/logs/probe-$cpu.log" got core
    mkdir -p "$DIR/logs"
    OPENBLAS_VERBOSE=2 "${q[@]}" "$build/tests/cpu_path_probe" generic >"$plog" 2>&1 || true
    got=$(s_picked "$plog")
    core=$(sed -n 's/^Core: //p' "$plog" | head -1)
    if [ "$got" = "$want" ] && ! grep -q 'target signal' "$plog"; then
      s_log "ok   $cpu: dispatcher picked $got, OpenBLAS core $core"
    else
      s_log "FAIL $cpu: dispatcher picked '${got}', want $want (see $plog)"
      fails=$((fails + 1))
    fi
    summary+=("$cpu: path $got, OpenBLAS $core")
    # a forced path the CPU lacks: a clear error, the kernels stay usable
    local lacking=avx512
    [ "$want" = generic ] && lacking=avx2
    local flog="$DIR/logs/forced-$cpu.log"
    NR_CPU_PATH=$lacking "${q[@]}" "$build/tests/cpu_path_probe" generic >"$flog" 2>&1 || true
    if grep -q "NR_CPU_PATH=$lacking: this CPU (or its OS) cannot run the $lacking kernels; the best it runs is $want" "$flog"; then
      s_log "ok   $cpu: NR_CPU_PATH=$lacking refused"
    else
      s_log "FAIL $cpu: NR_CPU_PATH=$lacking not refused as expected (see $flog)"
      fails=$((fails + 1))
    fi
    s_tests "$cpu" "$build" "$want" "${q[@]}"
    if [ "$want" != generic ] && [ $quick = 0 ]; then
      s_tests "$cpu NR_CPU_PATH=generic" "$build" generic env NR_CPU_PATH=generic "${q[@]}"
    fi
  done
}

# arm64: the libraries from Debian's arm64 archive, resolved and downloaded
# by apt with its own (empty) state, so nothing on the host changes.
s_arm64_sysroot() {
  local root="$DIR/arm64" pkgs
  pkgs=$(sed -n '/^packages=(/,/^)/p' deploy/install-deps.sh | tr ' ' '\n' |
    grep -E -- "-dev$" | sort -u | tr '\n' ' ')
  [ -f "$root/sysroot/.done" ] && [ "$(cat "$root/sysroot/.done")" = "$pkgs" ] && return 0
  mkdir -p "$root/apt/lists/partial" "$root/apt/cache/archives/partial"
  touch "$root/apt/status"
  local apt=(apt-get -q -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::State::Lists="$root/apt/lists" -o Dir::State::status="$root/apt/status"
    -o Dir::Cache="$root/apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  s_log "arm64 sysroot: $pkgs"
  "${apt[@]}" update >/dev/null
  # shellcheck disable=SC2086
  "${apt[@]}" install -y --download-only --no-install-recommends $pkgs >/dev/null
  rm -rf "$root/sysroot"
  mkdir -p "$root/sysroot"
  for deb in "$root"/apt/cache/archives/*.deb; do dpkg -x "$deb" "$root/sysroot"; done
  # absolute links (libm.so -> /lib/...) made relative, inside the sysroot
  (cd "$root/sysroot" && find . -type l -lname '/*' | while read -r l; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" ".$(readlink "$l")")" "$l"
  done)
  # what Debian's alternatives would link: OpenBLAS as the BLAS
  for f in libopenblas.so.0 libblas.so.3 liblapack.so.3; do
    ln -sfn "openblas-pthread/$f" "$root/sysroot/usr/lib/aarch64-linux-gnu/$f"
  done
  # an arm64 /proc/cpuinfo (no x86 flags line) instead of the host's
  mkdir -p "$root/sysroot/proc"
  printf 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU architecture: 8\n\n' \
    >"$root/sysroot/proc/cpuinfo"
  echo "$pkgs" >"$root/sysroot/.done"
}

s_arm64() {
  s_apt qemu-user gcc-aarch64-linux-gnu
  s_arm64_sysroot
  local sysroot="$DIR/arm64/sysroot" build="$DIR/arm64/build"
  NR_CROSS_SYSROOT="$sysroot" cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$SRC/tests/cross/aarch64-toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNR_CUDA=OFF >/dev/null
  NR_CROSS_SYSROOT="$sysroot" cmake --build "$build" -j"$JOBS" --target $TARGETS
  aarch64-linux-gnu-gcc --sysroot="$sysroot" -O2 -Wall -Wextra -shared -fPIC -o "$DIR/qemu_exec_arm64.so.$$" \
    tests/cross/qemu_exec.c -ldl
  mv -f "$DIR/qemu_exec_arm64.so.$$" "$DIR/qemu_exec_arm64.so"
  for cpu in $ARM_CPUS; do
    local q=(env QEMU_CPU="$cpu" QEMU_LD_PREFIX="$sysroot" NR_QEMU="$(command -v qemu-aarch64)" OPENBLAS_NUM_THREADS=1
      qemu-aarch64 -E LD_PRELOAD="$DIR/qemu_exec_arm64.so")
    local plog="$DIR/logs/probe-$cpu.log" got core
    mkdir -p "$DIR/logs"
    OPENBLAS_VERBOSE=2 "${q[@]}" "$build/tests/cpu_path_probe" generic >"$plog" 2>&1 || true
    got=$(s_picked "$plog")
    core=$(sed -n 's/^Core: //p' "$plog" | head -1)
    if [ "$got" = generic ] && grep -q 'aarch64, paths: generic' "$plog"; then
      s_log "ok   $cpu: dispatcher picked $got, OpenBLAS core $core"
    else
      s_log "FAIL $cpu: dispatcher picked '${got}' (see $plog)"
      fails=$((fails + 1))
    fi
    summary+=("$cpu: path $got, OpenBLAS $core")
    s_tests "$cpu" "$build" generic "${q[@]}"
    # the rest of the tree's unit tests that need no servers: parsers,
    # tokenizers, decoders, metrics (char is unsigned on aarch64)
    if [ $quick = 0 ]; then
      for t in $ARM_UNIT; do
        NR_CROSS_SYSROOT="$sysroot" cmake --build "$build" -j"$JOBS" --target "$t" >/dev/null
        s_run "$cpu $t" - env NR_SOURCE_DIR="$SRC" NR_BUILD_DIR="$build" "${q[@]}" "$build/tests/$t" --jobs 1
      done
    fi
  done
}

case $what in
  x86) s_x86 ;;
  arm64) s_arm64 ;;
  all) s_x86; s_arm64 ;;
esac
s_log "summary:"
for l in "${summary[@]}"; do s_log "  $l"; done
[ $fails -eq 0 ] || { s_log "$fails check(s) failed"; exit 1; }
s_log "all passed"
