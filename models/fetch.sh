#!/usr/bin/env bash
# fetch.sh NAME [DIR]: downloads a Hugging Face VisionEncoderDecoder checkpoint
# (ViT + GPT-2) for narrator, e.g.
#   models/fetch.sh nlpconnect/vit-gpt2-image-captioning
#   models/fetch.sh ydshieh/vit-gpt2-coco-en /srv/models/vit-gpt2-coco-en
# DIR defaults to ./checkpoints/<repo name>. Files: config.json,
# model.safetensors, vocab.json, merges.txt, preprocessor_config.json
# (required), tokenizer.json and generation_config.json (when the repository
# has them). Each file is checked (JSON parses, safetensors header sane) and
# moved into place only when complete. Environment: HF_ENDPOINT (default
# https://huggingface.co), HF_REVISION (default main).
# Exit status: 0 done, 1 usage or a bad/missing file, 2 network unreachable.
set -euo pipefail

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; } && exit 0
  exit 1
fi
name=$1
case "$name" in
  */*) ;;
  *) echo "fetch.sh: NAME must be owner/repository, e.g. nlpconnect/vit-gpt2-image-captioning" >&2; exit 1 ;;
esac
if ! printf '%s' "$name" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$'; then
  echo "fetch.sh: bad repository name: $name" >&2
  exit 1
fi
dir=${2:-checkpoints/${name#*/}}
endpoint=${HF_ENDPOINT:-https://huggingface.co}
rev=${HF_REVISION:-main}
command -v curl >/dev/null || { echo "fetch.sh: curl is not installed (apt-get install curl)" >&2; exit 1; }

# Is the hub reachable at all? (no retries: fail fast and clearly offline)
errf=$(mktemp)
code=$(curl -sS -o /dev/null -w '%{http_code}' --connect-timeout 10 --max-time 30 \
  "$endpoint/api/models/$name" 2>"$errf" || true)
if [ -z "$code" ] || [ "$code" = "000" ]; then
  echo "fetch.sh: cannot reach $endpoint ($(head -c 200 "$errf" | tr '\n' ' '))." >&2
  echo "fetch.sh: no network? Download the files listed in models/MODELS.md on a machine with" >&2
  echo "fetch.sh: internet access and copy them into $dir." >&2
  rm -f "$errf"
  exit 2
fi
rm -f "$errf"
if [ "$code" = "404" ] || [ "$code" = "401" ]; then
  echo "fetch.sh: $name: no such public repository on $endpoint (HTTP $code)" >&2
  exit 1
fi

mkdir -p "$dir"
py=$(command -v python3 || true)

check() { # file kind
  local f=$1 kind=$2
  [ -s "$f" ] || { echo "empty file"; return 1; }
  case "$kind" in
    json)
      if [ -n "$py" ]; then
        "$py" -c 'import json,sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$f" 2>/dev/null ||
          { echo "not valid JSON"; return 1; }
      fi ;;
    safetensors)
      local size hl
      size=$(stat -c %s "$f")
      [ "$size" -ge 10 ] || { echo "too short for safetensors"; return 1; }
      hl=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
      if [ "$hl" -lt 2 ] || [ "$hl" -gt $((size - 8)) ]; then echo "bad safetensors header length $hl"; return 1; fi
      [ "$(dd if="$f" bs=1 skip=8 count=1 2>/dev/null)" = "{" ] || { echo "safetensors header is not JSON"; return 1; } ;;
    text)
      head -c 4096 "$f" | grep -q . || { echo "no text"; return 1; } ;;
  esac
  return 0
}

fetch() { # file kind required
  local file=$1 kind=$2 required=$3
  local url="$endpoint/$name/resolve/$rev/$file" tmp="$dir/.$file.part"
  local http
  http=$(curl -sSL --connect-timeout 15 --retry 3 --retry-delay 2 -w '%{http_code}' -o "$tmp" "$url" 2>"$dir/.curl.err" || true)
  if [ "$http" = "000" ] || [ -z "$http" ]; then
    echo "fetch.sh: $file: network error: $(head -c 200 "$dir/.curl.err" | tr '\n' ' ')" >&2
    rm -f "$tmp" "$dir/.curl.err"
    exit 2
  fi
  rm -f "$dir/.curl.err"
  if [ "$http" = "404" ]; then
    rm -f "$tmp"
    if [ "$required" = 1 ]; then
      if [ "$file" = model.safetensors ]; then
        echo "fetch.sh: $name has no model.safetensors (only pytorch_model.bin?)." >&2
        echo "fetch.sh: convert it once as models/MODELS.md describes (\"Converting a .bin-only checkpoint\")." >&2
      else
        echo "fetch.sh: $name has no $file, which narrator needs" >&2
      fi
      exit 1
    fi
    echo "fetch.sh: $file: not in the repository (optional, skipped)"
    return 0
  fi
  if [ "$http" != "200" ]; then
    rm -f "$tmp"
    echo "fetch.sh: $file: HTTP $http from $url" >&2
    exit 1
  fi
  local why
  if ! why=$(check "$tmp" "$kind"); then
    rm -f "$tmp"
    echo "fetch.sh: $file: downloaded file is bad: $why" >&2
    exit 1
  fi
  mv -f "$tmp" "$dir/$file"
  echo "fetch.sh: $file: ok ($(stat -c %s "$dir/$file") bytes)"
}

fetch config.json json 1
fetch preprocessor_config.json json 1
fetch vocab.json json 1
fetch merges.txt text 1
fetch tokenizer.json json 0
fetch generation_config.json json 0
fetch model.safetensors safetensors 1
echo "fetch.sh: $name is in $dir"
