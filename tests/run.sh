#!/usr/bin/env bash
# Builds narrator (if needed) and runs its tests with ctest. Installs
# nothing (deploy/install-deps.sh does that).
#
#   tests/run.sh                       every test
#   tests/run.sh -L unit               only tests with the label (unit,
#   tests/run.sh -L integration        integration, model, gpu; a regex)
#   tests/run.sh -LE gpu               everything but a label
#   tests/run.sh -R test_proto         other ctest options pass through
#
# Environment: NARRATOR_BUILD_DIR (default build/), NARRATOR_JOBS (build
# jobs, default the number of CPUs), NARRATOR_BUILD_TYPE (for a fresh
# build folder; default RelWithDebInfo), NARRATOR_CMAKE_ARGS (more cmake
# options for a fresh build folder, e.g. "-DNR_SANITIZE=ON").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NARRATOR_BUILD_DIR:-$root/build}"
jobs="${NARRATOR_JOBS:-$(nproc 2>/dev/null || echo 2)}"

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac

if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE="${NARRATOR_BUILD_TYPE:-RelWithDebInfo}" \
    ${NARRATOR_CMAKE_ARGS:-}
fi
cmake --build "$build_dir" -j "$jobs"
exec ctest --test-dir "$build_dir" --output-on-failure "$@"
