#!/usr/bin/env bash
# fetch.sh [options] REPO [DIR]: downloads a Hugging Face checkpoint for
# narrator, e.g.
#   models/fetch.sh nlpconnect/vit-gpt2-image-captioning
#   models/fetch.sh ydshieh/vit-gpt2-coco-en /srv/models/vit-gpt2-coco-en
#   HF_TOKEN=hf_... models/fetch.sh --revision bfloat16 google/paligemma-3b-mix-224
# DIR defaults to ./checkpoints/<repository name>.
#
# It lists the repository through the Hub API and downloads config.json, the
# generation, preprocessor and tokenizer files the repository has, and the
# weights: model.safetensors (or model.safetensors.index.json and its
# shards) when the revision has them; else, on main, the safetensors of the
# Hub's conversion pull request (open, by SFconvertbot, titled "Adding
# `safetensors` variant of this model", whose parent is main's head); else
# pytorch_model.bin (or pytorch_model.bin.index.json and its shards).
# A Kokoro checkpoint (hexgrad/Kokoro-82M: kokoro-v1_0.pth, no
# safetensors) comes with every voice pack of its voices/ folder:
#   models/fetch.sh hexgrad/Kokoro-82M
# Downloads resume from DIR/.NAME.part; each file is checked against the size
# and sha256 (git blob id for small files) the API lists, JSON must parse,
# and a file is moved into place only when complete and verified. A file
# already in DIR that matches is not downloaded again.
#
# Options:
#   --revision REV   branch, tag or commit (default main; env HF_REVISION)
#   --include GLOB   also fetch the listed files matching the shell pattern
#                    (* matches across /), e.g. 'voices/*.pt'; repeatable.
#                    When something matched, missing weights are not an error.
#   -h, --help       this text
# Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (sent as
# "Authorization: Bearer"; needed for gated or private repositories).
#
# Exit status:
#   0  done
#   1  other failure (curl or python3 missing, DIR not writable, unexpected
#      HTTP answer)
#   2  network: the endpoint cannot be reached or keeps failing (timeouts,
#      5xx); partial downloads are kept, run again to resume
#   3  not found: no such repository, revision or file
#   4  gated or unauthorized: accept the licence on the model page and set
#      HF_TOKEN (or the token was refused)
#   5  bad file: size or sha256 mismatch, truncated download, bad JSON or
#      safetensors header, an unsafe path in the listing
#   6  unsupported: no weights in a form narrator reads (safetensors, .bin)
#   64 usage
set -euo pipefail

prog=fetch.sh
EX_OTHER=1 EX_NET=2 EX_NOTFOUND=3 EX_GATED=4 EX_BADFILE=5 EX_UNSUPPORTED=6 EX_USAGE=64

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
say() { printf '%s: %s\n' "$prog" "$*"; }
die() { # code message...
  local code=$1
  shift
  local line
  for line in "$@"; do printf '%s: %s\n' "$prog" "$line" >&2; done
  exit "$code"
}

rev=${HF_REVISION:-main}
includes=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --revision) [ $# -ge 2 ] || die $EX_USAGE "--revision needs a value"; rev=$2; shift 2 ;;
    --revision=*) rev=${1#*=}; shift ;;
    --include) [ $# -ge 2 ] || die $EX_USAGE "--include needs a pattern"; includes+=("$2"); shift 2 ;;
    --include=*) includes+=("${1#*=}"); shift ;;
    --) shift; args+=("$@"); break ;;
    -*) die $EX_USAGE "unknown option $1 (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ ${#args[@]} -lt 1 ] || [ ${#args[@]} -gt 2 ]; then
  usage >&2
  exit $EX_USAGE
fi
repo=${args[0]}
if ! [[ "$repo" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || [[ "$repo" == *..* ]]; then
  die $EX_USAGE "REPO must be owner/name, e.g. nlpconnect/vit-gpt2-image-captioning (got '$repo')"
fi
[ -n "$rev" ] && [[ "$rev" != *$'\n'* ]] || die $EX_USAGE "bad --revision"
dir=${args[1]:-checkpoints/${repo#*/}}
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}
token=${HF_TOKEN:-}

command -v curl >/dev/null || die $EX_OTHER "curl is not installed (apt-get install curl)"
command -v python3 >/dev/null || die $EX_OTHER "python3 is not installed (apt-get install python3)"
command -v sha256sum >/dev/null || die $EX_OTHER "sha256sum is missing (coreutils)"

work=$(mktemp -d "${TMPDIR:-/tmp}/nr-fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT

# The JSON and hashing helpers: every answer of the API is parsed here, never
# by the shell. Exit 3 from a helper means the answer was not what the Hub
# sends (bad JSON or a missing field).
cat >"$work/hub.py" <<'PY'
import hashlib, json, re, sys, urllib.parse

def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"not valid JSON: {e}", file=sys.stderr)
        sys.exit(3)

def last_headers(path):
    # -D keeps every response of a redirect chain: the last one counts.
    blocks, cur = [], {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.startswith("HTTP/"):
                cur = {}
                blocks.append(cur)
            elif ":" in line:
                k, v = line.split(":", 1)
                cur.setdefault(k.strip().lower(), v.strip())
    return blocks[-1] if blocks else {}

def clean(s):
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(s))[:300]

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "info":
    d = load(args[0])
    sha = d.get("sha") if isinstance(d, dict) else None
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
        print("no commit sha in the model info", file=sys.stderr)
        sys.exit(3)
    gated = d.get("gated", False)
    print(sha, "gated" if gated not in (False, None, "false") else "open",
          "private" if d.get("private") else "public")
elif cmd == "tree":
    d = load(args[0])
    if not isinstance(d, list):
        print("tree listing is not a list", file=sys.stderr)
        sys.exit(3)
    for e in d:
        if not isinstance(e, dict) or e.get("type") != "file":
            continue
        p = e.get("path")
        if not isinstance(p, str) or re.search(r"[\x00-\x1f\x7f]", p) or not p:
            continue
        lfs = e.get("lfs") or {}
        size = lfs.get("size", e.get("size"))
        sha = lfs.get("oid", "-") if lfs else "-"
        oid = "-" if lfs else e.get("oid", "-")
        if not isinstance(size, int) or size < 0:
            print(f"no size for {clean(p)}", file=sys.stderr)
            sys.exit(3)
        if sha != "-" and not re.fullmatch(r"[0-9a-f]{64}", str(sha)):
            sha = "-"
        if oid != "-" and not re.fullmatch(r"[0-9a-f]{40}", str(oid)):
            oid = "-"
        print(f"{p}\t{size}\t{sha}\t{oid}")
elif cmd == "next":
    link = last_headers(args[0]).get("link", "")
    for part in link.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;.*rel="?next"?', part)
        if m:
            print(m.group(1))
elif cmd == "error":
    h = last_headers(args[0])
    msg = h.get("x-error-message", "")
    if not msg:
        try:
            with open(args[1], encoding="utf-8") as f:
                e = json.load(f).get("error", "")
            msg = e if isinstance(e, str) else ""
        except (OSError, ValueError, AttributeError):
            pass
    print(clean(h.get("x-error-code", "-")) or "-")
    print(clean(msg))
elif cmd == "discussions":
    # args: file title author; prints the numbers of open pull requests with
    # that exact title and author, then "more" when there is another page.
    d = load(args[0])
    title, author = args[1], args[2]
    ds = d.get("discussions") if isinstance(d, dict) else None
    if not isinstance(ds, list):
        print("no discussions list", file=sys.stderr)
        sys.exit(3)
    for x in ds:
        if not isinstance(x, dict):
            continue
        a = (x.get("author") or {}).get("name") if isinstance(x.get("author"), dict) else None
        if (x.get("title") == title and x.get("status") == "open" and x.get("isPullRequest") is True
                and a == author and isinstance(x.get("num"), int) and x["num"] > 0):
            print(x["num"])
    start, count = d.get("start", 0), d.get("count", 0)
    if isinstance(start, int) and isinstance(count, int) and ds and start + len(ds) < count:
        print("more")
elif cmd == "commits":
    d = load(args[0])
    if not isinstance(d, list):
        print("commit listing is not a list", file=sys.stderr)
        sys.exit(3)
    for c in d:
        cid = c.get("id") if isinstance(c, dict) else None
        print(cid if isinstance(cid, str) and re.fullmatch(r"[0-9a-f]{40}", cid) else "-")
elif cmd == "index":
    d = load(args[0])
    wm = d.get("weight_map") if isinstance(d, dict) else None
    if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
        print("no weight_map of file names", file=sys.stderr)
        sys.exit(3)
    for v in sorted(set(wm.values())):
        print(clean(v))
elif cmd == "json":
    load(args[0])
elif cmd == "gitoid":
    h = hashlib.sha1()
    with open(args[0], "rb") as f:
        data = f.read()
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    print(h.hexdigest())
elif cmd == "quote":
    print(urllib.parse.quote(args[0], safe=args[1] if len(args) > 1 else ""))
else:
    sys.exit(2)
PY
# (The interpreter itself, not a wrapper such as pyenv's: it starts ~20 times.)
py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [ -x "$py" ] || py=python3
hub() { "$py" "$work/hub.py" "$@"; }

if [ -n "$token" ]; then
  # The token goes to curl through a file, not the command line (ps).
  (umask 077 && printf 'Authorization: Bearer %s\n' "$token" >"$work/auth")
  auth=(-H "@$work/auth")
else
  auth=()
fi
if [ -t 2 ]; then progress=(-#); else progress=(-sS); fi

# curl_get URL OUT [curl options]: sets HTTP (000 when nothing answered) and
# CURL_RC; headers in $work/hdr, curl's message in $work/err. Custom
# Authorization headers are not sent on to another host after a redirect.
HTTP=000
CURL_RC=0
curl_get() {
  local url=$1 out=$2
  shift 2
  CURL_RC=0
  HTTP=$(curl -L --fail --connect-timeout 15 --speed-limit 1024 --speed-time 60 \
    -D "$work/hdr" -o "$out" -w '%{http_code}' ${auth[@]+"${auth[@]}"} "$@" "$url" 2>"$work/err") || CURL_RC=$?
  [ -n "$HTTP" ] || HTTP=000
}

# fail_http WHAT: exits with the code that tells why the last request failed.
fail_http() {
  local what=$1 ecode emsg curlmsg
  curlmsg=$(tr '\n' ' ' <"$work/err" | sed 's/ *$//' | head -c 300)
  if [ "$HTTP" = 000 ]; then
    die $EX_NET "$what: cannot reach $endpoint (${curlmsg:-curl exit $CURL_RC})." \
      "no network? On a machine with internet access, run this script and copy $dir here."
  fi
  { read -r ecode; read -r emsg; } < <(hub error "$work/hdr" "$work/body" 2>/dev/null || printf -- '-\n\n')
  [ -n "$emsg" ] && emsg=" ($emsg)"
  case "$ecode" in
    GatedRepo)
      if [ -n "$token" ]; then
        die $EX_GATED "$what: $repo is gated and HF_TOKEN has no access to it$emsg." \
          "accept the licence on the model page ($endpoint/$repo) with the account of HF_TOKEN"
      fi
      die $EX_GATED "$what: $repo is gated (HTTP $HTTP)$emsg." \
        "accept the licence on the model page ($endpoint/$repo) and set HF_TOKEN to a token of that account" ;;
    RepoNotFound)
      if [ -n "$token" ]; then
        die $EX_NOTFOUND "$repo: no such repository on $endpoint, or HF_TOKEN cannot see it (HTTP $HTTP)"
      fi
      die $EX_NOTFOUND "$repo: no such repository on $endpoint (HTTP $HTTP)." \
        "if it is private or gated, accept the licence on the model page and set HF_TOKEN" ;;
    RevisionNotFound) die $EX_NOTFOUND "$repo has no revision '$rev' (HTTP $HTTP)$emsg" ;;
    EntryNotFound) die $EX_NOTFOUND "$what: not in the repository (HTTP $HTTP)" ;;
  esac
  case "$HTTP" in
    401|403)
      if [ -n "$token" ]; then
        die $EX_GATED "$what: HTTP $HTTP$emsg: HF_TOKEN was refused or has no access to $repo." \
          "check the token, and accept the licence on the model page ($endpoint/$repo)"
      fi
      die $EX_GATED "$what: HTTP $HTTP$emsg: $repo needs authorization." \
        "accept the licence on the model page ($endpoint/$repo) and set HF_TOKEN" ;;
    404|410) die $EX_NOTFOUND "$what: not found (HTTP $HTTP)$emsg" ;;
    408|429|5??) die $EX_NET "$what: $endpoint answered HTTP $HTTP$emsg; try again later" ;;
  esac
  die $EX_OTHER "$what: unexpected HTTP $HTTP from $endpoint$emsg ${curlmsg}"
}

# api URL OUT WHAT: an API request that must succeed (a couple of retries on
# timeouts and 5xx; a refused connection fails at once).
api() {
  local url=$1 out=$2 what=$3
  curl_get "$url" "$out" -sS --max-time 120 --retry 2 --retry-delay 1
  if [ "$CURL_RC" != 0 ] || [ "$HTTP" -ge 400 ]; then
    [ -f "$out" ] && cp "$out" "$work/body"
    fail_http "$what"
  fi
}

# api_try URL OUT: the same, returning 1 on failure (HTTP tells why).
api_try() {
  curl_get "$1" "$2" -sS --max-time 120 --retry 2 --retry-delay 1
  [ "$CURL_RC" = 0 ] && [ "$HTTP" -lt 400 ]
}

# q STRING [SAFE]: percent-encodes as Python's urllib.parse.quote(s, safe=SAFE)
# does (huggingface_hub quotes revisions with safe="": refs%2Fpr%2F1).
q() {
  local s=$1 safe=${2:-} out="" c i LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
      [A-Za-z0-9_.~-]) out+=$c ;;
      *) if [ -n "$safe" ] && [[ "$safe" == *"$c"* ]]; then out+=$c; else printf -v c '%%%02X' "'$c"; out+=$c; fi ;;
    esac
  done
  printf '%s\n' "$out"
}
repo_api="$endpoint/api/models/$repo"

# list_tree REV OUT: every file of the revision as "path size sha256 gitoid"
# (tab-separated; "-" where the API gives none), following the Link header's
# next pages.
list_tree() {
  local url n=0
  url="$repo_api/tree/$(q "$1")?recursive=true"
  : >"$2"
  while [ -n "$url" ]; do
    n=$((n + 1))
    [ $n -le 1000 ] || die $EX_BADFILE "tree listing of $repo@$1 does not end"
    api "$url" "$work/page.json" "listing $repo@$1"
    hub tree "$work/page.json" >>"$2" 2>"$work/perr" ||
      die $EX_BADFILE "listing $repo@$1: the API's answer is not a tree listing ($(head -c 200 "$work/perr"))"
    url=$(hub next "$work/hdr")
    case "$url" in
      ""|"$endpoint"/*) ;;
      /*) url="$endpoint$url" ;;
      *) die $EX_BADFILE "listing $repo@$1: next page on another host: $url" ;;
    esac
  done
}
has() { awk -F'\t' -v p="$2" '$1 == p { f = 1 } END { exit !f }' "$1"; }
meta() { awk -F'\t' -v p="$2" '$1 == p { print $2, $3, $4; exit }' "$1"; }

# A path from the listing or an index may be used only when every component
# is a plain name (no "..", no leading "/" or "."); sub folders only where
# asked for (shards named by an index, --include).
safe_path() { # path allow_sub
  [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9._+@-]*(/[A-Za-z0-9_][A-Za-z0-9._+@-]*)*$ ]] || return 1
  [ "$2" = 1 ] || [[ "$1" != */* ]]
}

# check_content FILE: JSON must parse; a safetensors header must be sane.
check_content() {
  local f=$1 size hl
  case "$f" in
    *.json)
      hub json "$f" 2>"$work/perr" || { echo "$(head -c 200 "$work/perr")"; return 1; } ;;
    *.safetensors)
      size=$(stat -c %s "$f")
      [ "$size" -ge 10 ] || { echo "too short for safetensors"; return 1; }
      hl=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
      if [ "$hl" -lt 2 ] || [ "$hl" -gt $((size - 8)) ]; then echo "bad safetensors header length $hl"; return 1; fi
      [ "$(dd if="$f" bs=1 skip=8 count=1 2>/dev/null)" = "{" ] || { echo "safetensors header is not JSON"; return 1; } ;;
  esac
  return 0
}

# matches FILE SIZE SHA256 GITOID: the file has the listed size and hash.
hash_of() { # file sha256 gitoid -> "sha256 X" / "git Y" / ""
  if [ "$2" != - ]; then echo "sha256 $(sha256sum "$1" | cut -d' ' -f1)"
  elif [ "$3" != - ] && command -v git >/dev/null; then echo "git $(git hash-object --no-filters "$1")"
  elif [ "$3" != - ]; then echo "git $(hub gitoid "$1")"
  fi
}
want_hash() { if [ "$1" != - ]; then echo "sha256 $1"; elif [ "$2" != - ]; then echo "git $2"; fi; }
hash_name() { if [ "$1" != - ]; then echo sha256; else echo "git blob id"; fi; }
matches() {
  [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$2" ] && [ "$(hash_of "$1" "$3" "$4")" = "$(want_hash "$3" "$4")" ]
}

# download LISTING REV PATH: fetches one listed file of commit REV into DIR.
download() {
  local listing=$1 r=$2 path=$3 size sha oid dest part url have attempt=0 got why
  read -r size sha oid < <(meta "$listing" "$path")
  dest="$dir/$path"
  part="$(dirname "$dest")/.$(basename "$dest").part"
  mkdir -p "$(dirname "$dest")" || die $EX_OTHER "cannot create $(dirname "$dest")"
  if matches "$dest" "$size" "$sha" "$oid"; then
    say "$path: up to date ($size bytes)"
    return 0
  fi
  url="$endpoint/$repo/resolve/$(q "$r")/$(q "$path" /)"
  while :; do
    have=0
    [ -f "$part" ] && have=$(stat -c %s "$part")
    if [ "$have" -gt "$size" ]; then rm -f "$part"; have=0; fi
    if [ "$have" -lt "$size" ] || [ ! -f "$part" ]; then
      if [ "$have" -gt 0 ]; then say "$path: resuming at byte $have of $size"
      elif [ -t 2 ]; then say "$path: $size bytes"
      fi
      [ -f "$part" ] || : >"$part"
      curl_get "$url" "$part" "${progress[@]}" -C -
      if [ "$CURL_RC" = 33 ] || [ "$HTTP" = 416 ]; then
        # The server cannot resume here: start again from the first byte.
        rm -f "$part"
        attempt=$((attempt + 1))
        [ $attempt -lt 3 ] && continue
      fi
      if [ "$HTTP" != 000 ] && [ "$HTTP" -ge 400 ]; then
        cp /dev/null "$work/body"
        fail_http "$path"
      fi
      case "$CURL_RC" in
        0) ;;
        18|28|52|55|56|92|16)
          # Cut off mid-transfer: resume from what arrived.
          attempt=$((attempt + 1))
          if [ $attempt -lt 3 ]; then sleep 1; continue; fi
          die $EX_NET "$path: the download keeps breaking off ($(head -c 200 "$work/err" | tr '\n' ' '))." \
            "the partial file is kept in $part: run again to resume" ;;
        *) [ "$HTTP" = 000 ] && fail_http "$path"
           die $EX_OTHER "$path: curl failed ($(head -c 200 "$work/err" | tr '\n' ' '))" ;;
      esac
    fi
    got=$(stat -c %s "$part")
    if [ "$got" -lt "$size" ]; then
      attempt=$((attempt + 1))
      [ $attempt -lt 3 ] && continue
      die $EX_BADFILE "$path: truncated: got $got of $size bytes." \
        "the partial file is kept in $part: run again to resume"
    fi
    if [ "$got" -gt "$size" ]; then
      rm -f "$part"
      die $EX_BADFILE "$path: got $got bytes, the listing says $size; removed, run again"
    fi
    why=$(hash_of "$part" "$sha" "$oid")
    if [ "$why" != "$(want_hash "$sha" "$oid")" ]; then
      why=${why#* }
      rm -f "$part"
      die $EX_BADFILE "$path: $(hash_name "$sha") mismatch: the listing says $(want_hash "$sha" "$oid" | cut -d' ' -f2), the download is $why." \
        "the download was removed: run again to fetch it anew"
    fi
    if ! why=$(check_content "$part"); then
      rm -f "$part"
      die $EX_BADFILE "$path: bad file: $why"
    fi
    mv -f "$part" "$dest"
    say "$path: ok ($size bytes, $(hash_name "$sha") verified)"
    return 0
  done
}

# 1. The revision and its files.
api "$repo_api/revision/$(q "$rev")" "$work/info.json" "$repo@$rev"
read -r sha gated _ < <(hub info "$work/info.json" 2>"$work/perr") ||
  die $EX_BADFILE "$repo@$rev: the API's model info is not what the Hub sends ($(head -c 200 "$work/perr"))"
if [ "$gated" = gated ] && [ -z "$token" ]; then
  die $EX_GATED "$repo is gated: accept the licence on the model page ($endpoint/$repo)" \
    "and set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens)"
fi
say "$repo@$rev is commit $sha"
list_tree "$sha" "$work/main.tsv"

mkdir -p "$dir" || die $EX_OTHER "cannot create $dir"
if command -v flock >/dev/null; then
  exec 9>"$dir/.fetch.lock"
  flock -n 9 || die $EX_OTHER "another fetch.sh is writing into $dir"
fi

plan=()       # "listing<TAB>commit<TAB>path" for each file to fetch
add() { plan+=("$1"$'\t'"$2"$'\t'"$3"); }
for f in config.json generation_config.json preprocessor_config.json \
  vocab.json merges.txt tokenizer.json tokenizer_config.json special_tokens_map.json \
  added_tokens.json vocab.txt tokenizer.model; do
  has "$work/main.tsv" "$f" && add "$work/main.tsv" "$sha" "$f"
done
included=0
if [ ${#includes[@]} -gt 0 ]; then
  while IFS=$'\t' read -r p _; do
    for g in "${includes[@]}"; do
      # shellcheck disable=SC2053
      if [[ "$p" == $g ]]; then
        safe_path "$p" 1 || die $EX_BADFILE "refusing the listed path '$p' (matched by --include '$g'): not a plain relative path"
        add "$work/main.tsv" "$sha" "$p"
        included=$((included + 1))
        break
      fi
    done
  done <"$work/main.tsv"
  [ $included -gt 0 ] || say "nothing in $repo@$rev matches --include ${includes[*]}"
fi
has "$work/main.tsv" config.json || [ $included -gt 0 ] ||
  die $EX_UNSUPPORTED "$repo@$rev has no config.json: not a checkpoint narrator reads"

# 2. The weights: safetensors on the revision, else the conversion pull
# request's (main only), else .bin.
wlist="" wsha="" wfile="" wfrom=""
pick() { # listing commit from
  if has "$1" model.safetensors.index.json; then wfile=model.safetensors.index.json
  elif has "$1" model.safetensors; then wfile=model.safetensors
  else return 1
  fi
  wlist=$1 wsha=$2 wfrom=$3
}
# find_conversion_pr: sets prn and prsha to the Hub's safetensors conversion
# pull request of main, found as transformers finds it
# (safetensors_conversion.py): an open pull request titled exactly "Adding
# `safetensors` variant of this model", authored by SFconvertbot, whose
# second commit (the PR commit's parent) is main's head. A listing that
# fails is not fatal: the .bin is used instead.
prn="" prsha=""
find_conversion_pr() {
  local page=0 url nums n title='Adding `safetensors` variant of this model'
  local -a commits
  while [ $page -lt 20 ]; do
    url="$repo_api/discussions?p=$page&type=pull_request&status=open&author=SFconvertbot"
    if ! api_try "$url" "$work/disc.json"; then
      say "could not list the pull requests of $repo (HTTP $HTTP): not looking for a conversion"
      return 0
    fi
    nums=$(hub discussions "$work/disc.json" "$title" SFconvertbot 2>/dev/null) || {
      say "the pull request listing of $repo is not what the Hub sends: not looking for a conversion"
      return 0
    }
    for n in $nums; do
      [ "$n" = more ] && continue
      api_try "$repo_api/commits/$(q "refs/pr/$n")" "$work/commits.json" || continue
      mapfile -t commits < <(hub commits "$work/commits.json" 2>/dev/null)
      if [ ${#commits[@]} -ge 2 ] && [ "${commits[1]}" = "$sha" ] && [ "${commits[0]}" != - ]; then
        prn=$n prsha=${commits[0]}
        return 0
      fi
      say "refs/pr/$n converts an older main (its parent is ${commits[1]:-none}, main is $sha): ignored"
    done
    [[ "$nums" == *more* ]] || return 0
    page=$((page + 1))
  done
}
if ! pick "$work/main.tsv" "$sha" "$rev"; then
  if has "$work/main.tsv" pytorch_model.bin || has "$work/main.tsv" pytorch_model.bin.index.json; then
    if [ "$rev" = main ]; then
      find_conversion_pr
      if [ -n "$prn" ]; then
        say "main has only .bin weights; using the safetensors of the Hub's conversion pull request refs/pr/$prn"
        list_tree "$prsha" "$work/pr.tsv"
        pick "$work/pr.tsv" "$prsha" "refs/pr/$prn" ||
          say "refs/pr/$prn has no safetensors after all: using the .bin"
      fi
    fi
    if [ -z "$wfile" ]; then
      wlist=$work/main.tsv wsha=$sha wfrom=$rev
      if has "$wlist" pytorch_model.bin.index.json; then wfile=pytorch_model.bin.index.json; else wfile=pytorch_model.bin; fi
      say "$repo@$rev has no safetensors: fetching $wfile (narrator reads it without running code)"
    fi
  elif [ $included -eq 0 ] && kpth=$(awk -F'\t' '$1 ~ /^kokoro-v[0-9_]+\.pth$/ { print $1 }' "$work/main.tsv" |
      sort -V | tail -n 1) && [ -n "$kpth" ]; then
    # Kokoro (hexgrad/Kokoro-82M): its .pth and every voice pack, nothing else.
    nv=0
    while IFS=$'\t' read -r p _; do
      [[ "$p" == voices/*.pt ]] || continue
      safe_path "$p" 1 || die $EX_BADFILE "refusing the listed path '$p': not a plain relative path"
      add "$work/main.tsv" "$sha" "$p"
      nv=$((nv + 1))
    done <"$work/main.tsv"
    [ $nv -gt 0 ] || die $EX_UNSUPPORTED "$repo@$rev has $kpth but no voices/*.pt: Kokoro needs its voice packs"
    wlist=$work/main.tsv wsha=$sha wfrom=$rev wfile=$kpth
    say "Kokoro checkpoint: fetching $kpth and $nv voice packs"
  elif [ $included -eq 0 ]; then
    others=$(awk -F'\t' '$1 !~ /\// && $1 ~ /\.(h5|msgpack|onnx|gguf|pth|pt|ckpt|bin|safetensors)$/ { printf "%s ", $1 }' "$work/main.tsv")
    die $EX_UNSUPPORTED "$repo@$rev has no weights narrator reads (model.safetensors, sharded safetensors," \
      "pytorch_model.bin); it has: ${others:-no weight files}"
  fi
fi

# 3. Fetch: the small files first, then the weights (an index first, then
# each shard it names).
for item in "${plan[@]}"; do
  IFS=$'\t' read -r l c p <<<"$item"
  download "$l" "$c" "$p"
done
if [ -n "$wfile" ]; then
  download "$wlist" "$wsha" "$wfile"
  case "$wfile" in
    *.index.json)
      shards=$(hub index "$dir/$wfile" 2>"$work/perr") ||
        die $EX_BADFILE "$wfile: $(head -c 200 "$work/perr")"
      while IFS= read -r s; do
        safe_path "$s" 1 || die $EX_BADFILE "$wfile names '$s': refusing a path that is not a plain relative name"
        has "$wlist" "$s" || die $EX_BADFILE "$wfile names $s, which $repo@$wfrom does not have"
        download "$wlist" "$wsha" "$s"
      done <<<"$shards"
      ;;
  esac
  say "weights: $wfile from $repo@$wfrom"
fi
say "$repo@$rev ($sha) is in $dir"
