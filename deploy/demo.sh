#!/usr/bin/env bash
# The narrator demo, from a fresh checkout to spoken captions:
#   1. installs the Debian packages (deploy/install-deps.sh),
#   2. builds everything (cmake -B build, Release),
#   3. gets five public-domain sample photos from Debian's python3-skimage
#      package (apt-get download + dpkg -x, cached in .cache/),
#   4. gets a captioning model, by default microsoft/git-large-coco (the
#      best published COCO score among the freely downloadable captioners
#      narrator runs, and cheaper on a CPU than BLIP-large: README.md says
#      why), or the one named by --model REPO / NARRATOR_DEMO_MODEL
#      (models/fetch.sh; when that fails it says why, from fetch.sh's exit
#      status: no network, not found, gated, a download that failed
#      verification, unsupported weights; then it uses the project's tiny
#      generated checkpoint, whose captions are random words),
#   5. starts a local cluster (redis, broker, speech + vision + text workers;
#      the speech workers speak with Kokoro-82M when models/fetch.sh
#      hexgrad/Kokoro-82M has put it in models/cache/hexgrad/Kokoro-82M, or
#      NARRATOR_KOKORO_DIR names its folder, and say so when they fall back
#      to Flite),
#   6. runs `narrate submit <photos> -o out/` and prints the captions and the
#      paths of the WAV and JSON files.
# The cluster is left running; the last lines say how to stop it.
#
# Usage: deploy/demo.sh [--model REPO]   (REPO: a Hugging Face repository of a
# supported family, e.g. Salesforce/blip-image-captioning-large,
# nlpconnect/vit-gpt2-image-captioning; models/MODELS.md lists them)
#
# Environment: NARRATOR_DEMO_MODEL (the model repository; --model wins),
# NARRATOR_BUILD_DIR (default build), NARRATOR_RUN_DIR (default
# run), NARRATOR_OUT_DIR (default out), NARRATOR_JOBS (build jobs, default
# the number of CPUs), NARRATOR_SKIP_DEPS=1 (do not run install-deps.sh),
# NARRATOR_CLIENT_PORT / NARRATOR_WORKER_PORT / NARRATOR_REDIS_PORT (ports of
# the local cluster: 5555, 5556, 6390).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${NARRATOR_BUILD_DIR:-$root/build}"
run_dir="${NARRATOR_RUN_DIR:-$root/run}"
out_dir="${NARRATOR_OUT_DIR:-$root/out}"
cache="$root/.cache"
jobs="${NARRATOR_JOBS:-$(nproc 2>/dev/null || echo 2)}"
# The default captioner: GIT-large fine-tuned on COCO (MIT licence,
# safetensors on main, COCO Karpathy-test CIDEr 138.5, the best published
# score of the families narrator runs; BLIP-large scores 136.7 and its
# ViT-L runs at 384 px, about 2.5x the vision compute per image).
model_repo="${NARRATOR_DEMO_MODEL:-microsoft/git-large-coco}"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) [ $# -ge 2 ] || { echo "demo.sh: --model needs a repository (owner/name)" >&2; exit 2; }
      model_repo="$2"; shift 2 ;;
    --model=*) model_repo="${1#--model=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (usage: deploy/demo.sh [--model REPO])" >&2; exit 2 ;;
  esac
done
[[ "$model_repo" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
  { echo "demo.sh: --model '$model_repo' is not a repository name (owner/name)" >&2; exit 2; }
photos=(chelsea.png coffee.png astronaut.png rocket.jpg motorcycle_left.png)

say() { printf '\n==> %s\n' "$*"; }

say "1/6 Debian packages"
if [ "${NARRATOR_SKIP_DEPS:-0}" = 1 ]; then
  echo "skipped (NARRATOR_SKIP_DEPS=1)"
else
  deploy/install-deps.sh
fi

say "2/6 build ($build_dir, Release)"
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" -j "$jobs"

say "3/6 sample photos"
photo_dir="$cache/photos"
mkdir -p "$photo_dir"
have_all=1
for p in "${photos[@]}"; do [ -s "$photo_dir/$p" ] || have_all=0; done
if [ $have_all = 0 ]; then
  deb_dir="$cache/debs"
  mkdir -p "$deb_dir"
  if ! ls "$deb_dir"/python3-skimage_*.deb >/dev/null 2>&1; then
    # (apt-get warns that it downloads "unsandboxed as root" into a folder
    # its _apt user cannot write; that is harmless here.)
    (cd "$deb_dir" && apt-get download python3-skimage 2>&1 | { grep -v unsandboxed || true; }) ||
      echo "could not download python3-skimage (apt-get update may help)"
  fi
  deb="$(ls "$deb_dir"/python3-skimage_*.deb 2>/dev/null | head -1 || true)"
  if [ -n "$deb" ]; then
    rm -rf "$cache/skimage-deb"
    dpkg -x "$deb" "$cache/skimage-deb"
    for p in "${photos[@]}"; do
      src="$(find "$cache/skimage-deb" -path "*skimage/data/$p" | head -1)"
      [ -n "$src" ] && cp "$src" "$photo_dir/$p"
    done
    rm -rf "$cache/skimage-deb"
  fi
fi
inputs=()
for p in "${photos[@]}"; do [ -s "$photo_dir/$p" ] && inputs+=("$photo_dir/$p"); done
if [ ${#inputs[@]} -eq 0 ]; then
  echo "no sample photos could be fetched; using the test images in tests/fixtures/images"
  for f in "$root"/tests/fixtures/images/*.jpg "$root"/tests/fixtures/images/*.webp; do
    case "$f" in *bad_*) continue ;; esac
    [ -s "$f" ] && inputs+=("$f")
  done
fi
printf '  %s\n' "${inputs[@]}"

say "4/6 captioning model"
# fetch.sh verifies what is already there (sizes and sha256 against the Hub's
# listing) and downloads only what is missing; its exit status says why it
# could not, and the demo says that, not a guess.
model_dir="$root/models/cache/$model_repo"
have_model() {
  [ -f "$1/config.json" ] && { [ -f "$1/model.safetensors" ] || [ -f "$1/model.safetensors.index.json" ] ||
    [ -f "$1/pytorch_model.bin" ] || [ -f "$1/pytorch_model.bin.index.json" ]; }
}
fetch_rc=0
"$root/models/fetch.sh" "$model_repo" "$model_dir" || fetch_rc=$?
endpoint="${HF_ENDPOINT:-https://huggingface.co}"
case $fetch_rc in
  0) why="" ;;
  2) why="the Hub ($endpoint) could not be reached (no network, or it keeps failing)" ;;
  3) why="$model_repo was not found on $endpoint" ;;
  4) why="$model_repo is gated or refused the token: accept the licence on its model page and set HF_TOKEN" ;;
  5) why="the download of $model_repo failed verification (size or sha256 mismatch, or a truncated file); run the demo again to resume" ;;
  6) why="$model_repo has no weights in a form narrator reads" ;;
  *) why="models/fetch.sh failed (exit $fetch_rc; see its message above)" ;;
esac
if [ $fetch_rc -eq 0 ]; then
  echo "using $model_repo in $model_dir"
elif [ $fetch_rc -eq 2 ] && have_model "$model_dir"; then
  echo "$why;"
  echo "using the copy fetched earlier in $model_dir"
else
  model_dir="$root/tests/fixtures/vit-gpt2-tiny"
  echo "$why."
  echo "Falling back to the project's own small generated checkpoint tests/fixtures/vit-gpt2-tiny:"
  echo "captions will be random words."
fi

# The voice: Kokoro-82M when its folder is there (models/fetch.sh
# hexgrad/Kokoro-82M puts it in models/cache/hexgrad/Kokoro-82M; the demo
# does not download it by itself) and the build has espeak-ng; else Flite.
kokoro_dir="${NARRATOR_KOKORO_DIR:-$root/models/cache/hexgrad/Kokoro-82M}"
speech_args=()
if ! [ -f "$kokoro_dir/config.json" ] || ! ls "$kokoro_dir"/*.pth >/dev/null 2>&1 ||
   ! ls "$kokoro_dir"/voices/*.pt >/dev/null 2>&1; then
  echo "voice: Flite. Kokoro-82M is not in $kokoro_dir (models/fetch.sh hexgrad/Kokoro-82M \"$kokoro_dir\""
  echo "       fetches it, about 330 MB with its voices); falling back to Flite's robotic voice."
elif ! grep -q '^NR_ESPEAK:BOOL=ON' "$build_dir/CMakeCache.txt" 2>/dev/null; then
  echo "voice: Flite. Kokoro-82M is in $kokoro_dir, but this build has no espeak-ng (NR_ESPEAK=OFF;"
  echo "       Debian: libespeak-ng-dev) to turn text into phonemes; falling back to Flite."
else
  echo "voice: Kokoro-82M from $kokoro_dir ($(ls "$kokoro_dir"/voices/*.pt | wc -l) voices; default af_heart)"
  speech_args=(--speech-model "$kokoro_dir")
fi

say "5/6 local cluster"
bin="$build_dir/bin"
deploy/local-cluster.sh start --run-dir "$run_dir" --build-dir "$build_dir" --model-dir "$model_dir" \
  --workers "speech=2 vision=1 text=1" "${speech_args[@]}"
export NARRATOR_BROKER="tcp://127.0.0.1:${NARRATOR_CLIENT_PORT:-5555}"

say "6/6 narrate"
mkdir -p "$out_dir"
if [ -x "$bin/narrator-worker-vision" ] && [ -x "$bin/narrator-worker-text" ]; then
  echo "\$ narrate submit ${#inputs[@]} photos -o $out_dir"
  status=0
  "$bin/narrate" --timeout 120 submit "${inputs[@]}" -o "$out_dir" || status=$?
  echo
  echo "Captions:"
  for f in "${inputs[@]}"; do
    stem="$(basename "$f")" # outputs keep the image's whole name: cat.jpg.txt
    if [ -f "$out_dir/$stem.txt" ]; then
      printf '  %-22s "%s"\n' "$(basename "$f")" "$(cat "$out_dir/$stem.txt")"
      printf '  %-22s %s\n' "" "$out_dir/$stem.wav"
      printf '  %-22s %s\n' "" "$out_dir/$stem.json"
    else
      printf '  %-22s (no result; see the messages above)\n' "$(basename "$f")"
    fi
  done
  [ $status -eq 0 ] || echo "narrate submit exited with $status (see narrate --help for exit codes)"
else
  echo "The vision and text workers are not built yet (no narrator-worker-vision /"
  echo "narrator-worker-text in $bin), so images cannot be captioned; showing"
  echo "the speech stage alone instead:"
  text="Hello from narrator. This sentence went through the broker to a speech worker."
  echo "\$ narrate speak \"$text\" -o $out_dir/hello.wav"
  status=0
  "$bin/narrate" --timeout 60 speak "$text" -o "$out_dir/hello.wav" || status=$?
  [ $status -eq 0 ] && echo "  wrote $out_dir/hello.wav" || echo "narrate speak exited with $status"
fi

echo
echo "The cluster is still running (logs in $run_dir/logs):"
echo "  NARRATOR_BROKER=$NARRATOR_BROKER $bin/narrate stats    queues and workers"
echo "  deploy/local-cluster.sh status --run-dir $run_dir"
echo "  deploy/local-cluster.sh stop --run-dir $run_dir    stop it"
exit "$status"
