#!/usr/bin/python3
"""Writes a ViT-GPT2 checkpoint at the real sizes (nlpconnect/vit-gpt2-image-captioning:
ViT-B/16 hidden 768, 12 layers, 12 heads, MLP 3072; GPT-2 base n_embd 768, 12 layers,
12 heads, vocab 50257, n_positions 1024) with seeded random weights, in the Hugging Face
VisionEncoderDecoder file layout, for the end-to-end benchmark (bench/e2e.sh).

    /usr/bin/python3 bench/make_random_checkpoint.py [OUT_DIR] [--seed N]

OUT_DIR defaults to .cache/vit-gpt2-random/ in the repository (git-ignored; about
1 GB). Reuses tests/fixtures/make_fixtures.py's weight recipe and writer at the real
sizes, with two differences from the tiny fixture:
  * every tensor is stored F32, as in the real model.safetensors (the fixture stores
    wte as F16 and one layernorm as BF16 to exercise the conversions);
  * no eos ramp: captions never end early, so every image takes the full max_length
    (16, start token included: 15 decode steps), the same work for narrator and the
    PyTorch script. The recipe's scales (matrices N(0, 1/sqrt(fan_in)), wte N(0, 0.3))
    give peaked, well separated logits, so both engines pick the same tokens.
The GPT-2 mask buffers (attn.bias BOOL / crossattention.bias U8 [1,1,1024,1024],
masked_bias) and the unused ViT pooler are written like in real checkpoints.
vocab.json and merges.txt are copied from the tiny fixture (the real GPT-2 files).
Skips the work when OUT_DIR already holds a complete checkpoint of the same recipe.
"""

import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, FIXTURES)
import make_fixtures as mf  # noqa: E402

RECIPE = "e2e-random-v1"
FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "model.safetensors",
         "vocab.json", "merges.txt")


def main():
    args = sys.argv[1:]
    seed = 0
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    out = os.path.abspath(args[0] if args else os.path.join(ROOT, ".cache", "vit-gpt2-random"))
    stamp = os.path.join(out, "RECIPE")
    want = "%s seed %d\n" % (RECIPE, seed)
    if all(os.path.exists(os.path.join(out, f)) for f in FILES + ("RECIPE",)) and open(stamp).read() == want:
        print("make_random_checkpoint: %s is up to date" % out)
        return 0

    mf.ENC = dict(hidden=768, layers=12, heads=12, inter=3072, image=224, patch=16)
    mf.DEC = dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024)
    mf.EOS_RAMP, mf.EOS_DIR = 0.0, 0.0        # no eos direction: captions run to max_length
    mf.OUT_DIR = out
    W = mf.make_weights(seed)
    # the real checkpoint is F32 throughout (values already rounded by the recipe stay as they are)
    W = {k: ("F32" if dt in ("F16", "BF16") else dt, a) for k, (dt, a) in W.items()}
    if os.path.exists(stamp):
        os.remove(stamp)
    mf.write_checkpoint(W)
    del W
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(FIXTURES, "vit-gpt2-tiny", f), os.path.join(out, f))
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["encoder"]["hidden_size"] == 768 and cfg["decoder"]["n_positions"] == 1024
    with open(stamp, "w") as f:
        f.write(want)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in FILES)
    print("make_random_checkpoint: wrote %s (%.0f MB, seed %d)" % (out, size / 1e6, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
