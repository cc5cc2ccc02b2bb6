#!/usr/bin/env bash
# ctest fetch (LABELS integration): models/fetch.sh against a local stand-in
# for the Hugging Face Hub (tests/fixtures/hub_standin.py on loopback, pages
# of 2 entries so every listing is paged). Each case checks fetch.sh's exit
# status, its message and the files it leaves (sha256 against the fixture):
# safetensors on main; .bin only with the conversion pull request (and a
# look-alike by another author); .bin only without one; a conversion of an
# older main (ignored); sharded safetensors, and a --revision branch; sharded
# .bin; gated without, with a wrong and with the right token; a corrupted
# download (exit 5, then fetched anew); a truncated one (exit 5, then resumed
# from its .part); a connection cut mid-file (resumed in the same run); a
# .part left by an earlier run; a server that ignores Range; the endpoint
# down; an unknown repository and revision; TensorFlow-only weights; voices
# through --include; a Kokoro checkpoint (its .pth and voices/, nothing
# else; none without voice packs); ../ paths from the listing and an index;
# usage.
#   tests/fetch_test.sh
set -uo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fetch="$src/models/fetch.sh"
standin="$src/tests/fixtures/hub_standin.py"
for t in python3 curl sha256sum; do
  command -v $t >/dev/null || { echo "SKIP: no $t"; exit 77; }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/nr-fetch-test-XXXXXX")"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

python3 "$standin" make "$tmp/hub" || { echo "FAIL: could not build the fixture repositories"; exit 1; }
token=sekrit-test-token
python3 "$standin" serve --root "$tmp/hub" --port-file "$tmp/port" --token "$token" \
  --log "$tmp/requests.log" --page-size 2 >"$tmp/standin.out" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "FAIL: the hub stand-in did not start"; cat "$tmp/standin.out"; exit 1; }
port=$(cat "$tmp/port")
export HF_ENDPOINT="http://127.0.0.1:$port"
unset HF_TOKEN HF_REVISION

fails=0 cases=0 name="" out="$tmp/out.txt"
fail() { echo "FAIL [$name]: $*"; sed 's/^/    | /' "$out"; fails=$((fails + 1)); }
# run NAME WANT_RC ARGS...: runs fetch.sh, output in $out.
run() {
  name=$1
  local want=$2 rc=0
  shift 2
  cases=$((cases + 1))
  : >"$tmp/requests.log"
  "$fetch" "$@" >"$out" 2>&1 </dev/null || rc=$?
  if [ "$rc" != "$want" ]; then fail "exit $rc, expected $want"; return 1; fi
  return 0
}
says() { grep -qF -- "$1" "$out" || fail "no message '$1'"; }
requested() { grep -qF -- "$1" "$tmp/requests.log" || fail "no request with '$1' (log: $(tr '\n' ' ' <"$tmp/requests.log" | head -c 600))"; }
absent() { for f in "$@"; do [ ! -e "$f" ] || fail "$f should not exist"; done; }
# snap REPO REF PATH: the fixture file as the stand-in serves it.
snap() {
  local sha
  sha=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["refs"][sys.argv[2]])' \
    "$tmp/hub/$1/repo.json" "$2")
  echo "$tmp/hub/$1/snap/$sha/$3"
}
# same DIR REPO REF PATH...: each file in DIR is byte for byte the fixture's.
same() {
  local d=$1 r=$2 ref=$3 p
  shift 3
  for p in "$@"; do
    if [ ! -f "$d/$p" ]; then fail "$d/$p is missing"; continue; fi
    [ "$(sha256sum <"$d/$p")" = "$(sha256sum <"$(snap "$r" "$ref" "$p")")" ] ||
      fail "$d/$p differs from $r@$ref"
  done
}
fault() { curl -fsS -o /dev/null "$HF_ENDPOINT/_standin/fault?repo=$1&path=$2&mode=$3&times=$4"; }
small="config.json generation_config.json preprocessor_config.json vocab.json merges.txt"

# Safetensors on main: taken, the .bin and flax beside it are not.
d=$tmp/o/st
if run safetensors_on_main 0 fixture/vit-gpt2-safetensors "$d"; then
  same "$d" fixture/vit-gpt2-safetensors main $small tokenizer_config.json special_tokens_map.json model.safetensors
  absent "$d/pytorch_model.bin" "$d/flax_model.msgpack" "$d/README.md" "$d/.gitattributes" "$d/.model.safetensors.part"
  says "model.safetensors: ok (3583688 bytes, sha256 verified)"
  says "weights: model.safetensors from fixture/vit-gpt2-safetensors@main"
  requested "cursor="   # the tree listing came in pages
fi
# Run again: everything verified in place, nothing downloaded.
if run safetensors_again 0 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: up to date"
  grep -q '/resolve/' "$tmp/requests.log" && fail "downloaded again: $(grep -c /resolve/ "$tmp/requests.log") requests"
fi

# .bin only on main, with the Hub's conversion PR (#1 by SFconvertbot, on the
# second page of pull requests); #3 has the same title but another author,
# #2 is a discussion.
d=$tmp/o/binpr
if run bin_with_conversion_pr 0 fixture/vit-gpt2-bin-pr "$d"; then
  same "$d" fixture/vit-gpt2-bin-pr refs/pr/1 model.safetensors
  same "$d" fixture/vit-gpt2-bin-pr main $small
  absent "$d/pytorch_model.bin"
  says "using the safetensors of the Hub's conversion pull request refs/pr/1"
  says "weights: model.safetensors from fixture/vit-gpt2-bin-pr@refs/pr/1"
  requested "/api/models/fixture/vit-gpt2-bin-pr/commits/refs%2Fpr%2F1"
  requested "/discussions?p=1"
  grep -qF "refs%2Fpr%2F3" "$tmp/requests.log" && fail "looked at the PR of another author"
fi

# .bin only, no conversion PR: the .bin.
d=$tmp/o/binonly
if run bin_without_pr 0 fixture/vit-gpt2-bin-only "$d"; then
  same "$d" fixture/vit-gpt2-bin-only main $small pytorch_model.bin
  absent "$d/model.safetensors"
  says "has no safetensors: fetching pytorch_model.bin"
fi

# The bot's open PR converts an older main; the PR of main's head is closed.
d=$tmp/o/stale
if run stale_conversion_pr 0 fixture/vit-gpt2-stale-pr "$d"; then
  same "$d" fixture/vit-gpt2-stale-pr main pytorch_model.bin
  absent "$d/model.safetensors"
  says "refs/pr/1 converts an older main"
  grep -qF "refs%2Fpr%2F2" "$tmp/requests.log" && fail "looked at a closed PR"
fi

# Sharded safetensors: the index and every shard it names.
d=$tmp/o/sharded
shards3="model-00001-of-00003.safetensors model-00002-of-00003.safetensors model-00003-of-00003.safetensors"
if run sharded 0 fixture/sharded "$d"; then
  same "$d" fixture/sharded main model.safetensors.index.json $shards3 $small
fi
d=$tmp/o/bf16
if run sharded_revision 0 --revision bfloat16 fixture/sharded "$d"; then
  same "$d" fixture/sharded bfloat16 model.safetensors.index.json \
    model-00001-of-00002.safetensors model-00002-of-00002.safetensors
  absent "$d/model-00001-of-00003.safetensors"
  requested "/api/models/fixture/sharded/revision/bfloat16"
fi
d=$tmp/o/binsharded
if run bin_sharded 0 fixture/bin-sharded "$d"; then
  same "$d" fixture/bin-sharded main pytorch_model.bin.index.json \
    pytorch_model-00001-of-00002.bin pytorch_model-00002-of-00002.bin
fi

# Gated: no token, a wrong token, the right one.
d=$tmp/o/gated
if run gated_without_token 4 fixture/gated "$d"; then
  says "accept the licence on the model page"
  says "set HF_TOKEN"
  absent "$d/model.safetensors"
  grep -qi "not found" "$out" && fail "says 'not found' for a gated repository"
fi
if HF_TOKEN=wrong-token run gated_wrong_token 4 fixture/gated "$d"; then
  says "HF_TOKEN was refused"
  absent "$d/model.safetensors"
fi
if HF_TOKEN=$token run gated_with_token 0 fixture/gated "$d"; then
  same "$d" fixture/gated main model.safetensors config.json
  grep '/resolve/' "$tmp/requests.log" | grep -q '"auth": false' && fail "a download went without the token"
fi

# A corrupted download: exit 5, nothing left in place; the next run fetches
# it anew.
d=$tmp/o/corrupt
fault fixture/vit-gpt2-safetensors model.safetensors corrupt 1
if run corrupt_download 5 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: sha256 mismatch"
  absent "$d/model.safetensors" "$d/.model.safetensors.part"
  same "$d" fixture/vit-gpt2-safetensors main config.json
fi
fault fixture/vit-gpt2-safetensors config.json corrupt 1
if run corrupt_small_file 5 fixture/vit-gpt2-safetensors "$tmp/o/corrupt2"; then
  says "config.json: git blob id mismatch"
fi
if run corrupt_then_refetch 0 fixture/vit-gpt2-safetensors "$d"; then
  same "$d" fixture/vit-gpt2-safetensors main model.safetensors
fi

# A truncated download (the body ends early, three times): exit 5 with the
# .part kept; the next run resumes from it.
d=$tmp/o/short
fault fixture/vit-gpt2-safetensors model.safetensors short 3
if run truncated_download 5 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: truncated: got"
  [ -s "$d/.model.safetensors.part" ] || fail "the .part was not kept"
  absent "$d/model.safetensors"
fi
have=$(stat -c %s "$d/.model.safetensors.part" 2>/dev/null || echo 0)
if run truncated_then_resumed 0 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: resuming at byte $have of 3583688"
  requested "\"range\": \"bytes=$have-\""
  same "$d" fixture/vit-gpt2-safetensors main model.safetensors
  absent "$d/.model.safetensors.part"
fi

# The connection drops mid-file: resumed within the same run.
d=$tmp/o/drop
fault fixture/vit-gpt2-safetensors model.safetensors drop 1
if run dropped_connection 0 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: resuming at byte"
  requested '"range": "bytes='
  same "$d" fixture/vit-gpt2-safetensors main model.safetensors
fi

# A .part left by an earlier, interrupted run.
d=$tmp/o/part
mkdir -p "$d"
head -c 1000000 "$(snap fixture/vit-gpt2-safetensors main model.safetensors)" >"$d/.model.safetensors.part"
if run resume_from_part 0 fixture/vit-gpt2-safetensors "$d"; then
  says "model.safetensors: resuming at byte 1000000 of 3583688"
  requested '"range": "bytes=1000000-"'
  same "$d" fixture/vit-gpt2-safetensors main model.safetensors
fi
# ... against a server that ignores Range: started again from byte 0.
d=$tmp/o/norange
mkdir -p "$d"
head -c 1000000 "$(snap fixture/vit-gpt2-safetensors main model.safetensors)" >"$d/.model.safetensors.part"
fault fixture/vit-gpt2-safetensors model.safetensors norange 1
if run resume_without_range 0 fixture/vit-gpt2-safetensors "$d"; then
  same "$d" fixture/vit-gpt2-safetensors main model.safetensors
fi

# The endpoint is down.
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if HF_ENDPOINT="http://127.0.0.1:$closed" run endpoint_down 2 fixture/vit-gpt2-safetensors "$tmp/o/down"; then
  says "cannot reach http://127.0.0.1:$closed"
  absent "$tmp/o/down"
fi

# Not found: a repository, a revision.
if run unknown_repo 3 fixture/no-such-model "$tmp/o/nope"; then
  says "fixture/no-such-model: no such repository"
  absent "$tmp/o/nope"
fi
if run unknown_revision 3 --revision no-such-branch fixture/vit-gpt2-safetensors "$tmp/o/norev"; then
  says "has no revision 'no-such-branch'"
fi

# No weights narrator reads.
if run tf_only 6 fixture/tf-only "$tmp/o/tf"; then
  says "has no weights narrator reads"
  says "tf_model.h5"
fi

# Voices, through --include; without it the repository has nothing narrator reads.
d=$tmp/o/voices
if run voices_include 0 --include 'voices/*.pt' --include '*.pth' fixture/voices "$d"; then
  same "$d" fixture/voices main config.json kokoro-v1_0.pth voices/af_heart.pt voices/am_adam.pt
fi
# Kokoro without options: the newest kokoro-v*.pth and every voice pack,
# not the samples, docs or the older .pth.
d=$tmp/o/voices2
if run voices_without_include 0 fixture/voices "$d"; then
  same "$d" fixture/voices main config.json kokoro-v1_0.pth voices/af_heart.pt voices/am_adam.pt
  says "Kokoro checkpoint: fetching kokoro-v1_0.pth and 2 voice packs"
fi
d=$tmp/o/kokoro
if run kokoro_layout 0 fixture/kokoro "$d"; then
  same "$d" fixture/kokoro main config.json kokoro-v1_0.pth voices/af_heart.pt voices/bf_emma.pt voices/jf_alpha.pt
  for f in kokoro-v0_19.pth samples DONATE.md README.md; do
    [ ! -e "$d/$f" ] || fail "kokoro_layout: $f was fetched"
  done
fi
if run kokoro_again 0 fixture/kokoro "$d"; then says "voices/bf_emma.pt: up to date"; fi
if run kokoro_no_voices 6 fixture/kokoro-novoices "$tmp/o/kn"; then says "no voices/*.pt"; fi

# ../ from an index and from the listing: refused, nothing written outside.
if run hostile_index 5 fixture/hostile "$tmp/o/h/hostile"; then
  says "refusing a path"
  absent "$tmp/evil.safetensors" "$tmp/o/evil.safetensors"
fi
if run hostile_listing 5 --include 'voices/*' fixture/hostile "$tmp/o/h2/hostile"; then
  says "refusing the listed path 'voices/../../evil.pt'"
  absent "$tmp/o/evil.pt" "$tmp/evil.pt"
fi

# Usage.
run usage_no_args 64 || true
if run usage_bad_name 64 ../etc "$tmp/o/x"; then says "REPO must be owner/name"; fi
run usage_bad_option 64 --bogus fixture/gated || true
run help 0 --help && says "Exit status:"

echo "$cases cases, $fails failures"
[ "$fails" -eq 0 ]
