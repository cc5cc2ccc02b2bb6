#!/usr/bin/python3
"""The plain PyTorch script a user would write for image -> caption -> speech, as the
baseline of bench/e2e.sh. One process, one image at a time:

  1. PIL load + ViTImageProcessor's slow path (RGB, 224x224 PIL bilinear, rescale 1/255,
     normalise mean/std 0.5, CHW);
  2. the ViT encoder and GPT-2 decoder of tests/fixtures/reference_vit_gpt2.py (written
     from transformers' modeling_vit.py / modeling_gpt2.py / generation code: eager
     attention, KV cache, transformers' beam search rule) in float32 with the weights of
     the same model.safetensors; greedy or beam search with the same settings; GPT-2
     byte-level decode, skip special tokens, clean_up_tokenization_spaces, strip();
  3. Flite (Debian's libflite, voice cmu_us_slt, 16 kHz) through ctypes, in process:
     flite_text_to_wave + cst_wave_save_riff writes OUT/<n>.wav.

    /usr/bin/python3 bench/e2e_torch.py --model DIR [--threads 1] [--beams 4]
        [--max-length 16] [--warmup 1] [--out DIR] [--json FILE] [--shard K/N --ready F --go F]
        IMAGE|FOLDER...

Prints one JSON object (images/min over the timed images, per-stage mean ms, peak
memory VmHWM, captions) and writes it to --json. The model load is not timed (narrator's
workers load theirs before the timed run too); --warmup images run first, untimed.
Several copies at once (bench/e2e.sh --torch-procs): each takes --shard K/N of the
images, creates --ready once warmed up, and starts timing when --go exists.
"""

import argparse
import ctypes
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import reference_vit_gpt2 as ref  # noqa: E402

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp")


def vm_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def load_checkpoint(folder):
    """reference_vit_gpt2.Checkpoint in float32 (its own loader goes through float64):
    each F32 weight is read from model.safetensors straight into its tensor, so the
    process holds one copy of the weights (what from_pretrained ends with)."""
    ck = ref.Checkpoint.__new__(ref.Checkpoint)
    with open(os.path.join(folder, "config.json")) as f:
        ck.config = json.load(f)
    gpath = os.path.join(folder, "generation_config.json")
    ck.gen = json.load(open(gpath)) if os.path.exists(gpath) else {}
    ck.dtype = torch.float32
    ck.enc, ck.dec = ck.config["encoder"], ck.config["decoder"]
    ck.w = {}
    with open(os.path.join(folder, "model.safetensors"), "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if name.endswith(".attn.bias") or name.endswith(".masked_bias") or name.endswith("crossattention.bias"):
                continue
            b, e = info["data_offsets"]
            f.seek(8 + n + b)
            dt = info["dtype"]
            if dt == "F32":  # read straight into the tensor's memory
                t = torch.empty([int(x) for x in info["shape"]], dtype=torch.float32)
                if f.readinto(memoryview(t.numpy()).cast("B")) != e - b:
                    raise ValueError("%s: short read" % name)
            elif dt in ("F16", "BF16"):
                raw = np.frombuffer(f.read(e - b), dtype="<u2")
                a = raw.view("<f2").astype(np.float32) if dt == "F16" else ref.bf16_bits_to_f32(raw)
                t = torch.from_numpy(a.reshape(info["shape"]))
            else:
                raise ValueError("%s: dtype %s" % (name, dt))
            ck.w[name] = t
    if "decoder.lm_head.weight" not in ck.w:
        ck.w["decoder.lm_head.weight"] = ck.w["decoder.transformer.wte.weight"]
    return ck


def preprocess(path):
    im = Image.open(path).convert("RGB").resize((224, 224), resample=Image.BILINEAR)
    a = (np.asarray(im).astype(np.float64) * 0.00392156862745098).astype(np.float32)
    a = (a - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(a.transpose(2, 0, 1).copy())[None]


class Detokenizer:
    """GPT-2 byte-level BPE decoding (GPT2Tokenizer.decode, skip_special_tokens,
    clean_up_tokenization_spaces)."""

    def __init__(self, folder):
        vocab = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
        self.inv = {i: t for t, i in vocab.items()}
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
            list(range(ord("\xae"), ord("\xff") + 1))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte = {chr(c): b for b, c in zip(bs, cs)}
        self.special = {vocab["<|endoftext|>"]}

    def decode(self, ids):
        text = "".join(self.inv[i] for i in ids if i not in self.special)
        s = bytes(self.byte[c] for c in text).decode("utf-8", errors="replace")
        for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            s = s.replace(a, b)
        return s.strip()


class CstWave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.c_void_p)]


class Flite:
    def __init__(self):
        ctypes.CDLL("libflite.so.1", mode=ctypes.RTLD_GLOBAL)
        for lib in ("libflite_usenglish.so.1", "libflite_cmulex.so.1"):
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        self.f = ctypes.CDLL("libflite.so.1")
        slt = ctypes.CDLL("libflite_cmu_us_slt.so.1")
        self.f.flite_init()
        slt.register_cmu_us_slt.restype = ctypes.c_void_p
        slt.register_cmu_us_slt.argtypes = [ctypes.c_char_p]
        self.voice = slt.register_cmu_us_slt(None)
        self.f.flite_text_to_wave.restype = ctypes.c_void_p
        self.f.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        self.f.cst_wave_save_riff.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.f.delete_wave.argtypes = [ctypes.c_void_p]

    def say(self, text, path):
        w = self.f.flite_text_to_wave(text.encode("utf-8"), self.voice)
        if not w:
            raise RuntimeError("flite_text_to_wave failed")
        n = ctypes.cast(w, ctypes.POINTER(CstWave)).contents.num_samples
        self.f.cst_wave_save_riff(w, path.encode())
        self.f.delete_wave(w)
        return n


def images(args):
    out = []
    for p in args:
        if os.path.isdir(p):
            for d, _, files in sorted(os.walk(p)):
                out += [os.path.join(d, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXT)]
        else:
            out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--label", default="")
    ap.add_argument("--shard", default="0/1", help="K/N: take images K, K+N, K+2N ... (several copies at once)")
    ap.add_argument("--ready", default="", help="file to create once loaded and warmed up")
    ap.add_argument("--go", default="", help="file to wait for before the timed run")
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    files = images(a.inputs)
    k, n_shards = (int(x) for x in a.shard.split("/"))
    warm_files = files[:a.warmup]
    files = files[k::n_shards]
    if not files:
        sys.exit("e2e_torch: no images")
    out = a.out or "/tmp/e2e-torch-out"
    os.makedirs(out, exist_ok=True)

    t0 = time.perf_counter()
    ck = load_checkpoint(a.model)
    gs = ref.generation_settings(ck)
    tok = Detokenizer(a.model)
    tts = Flite()
    load_s = time.perf_counter() - t0
    rss_loaded = vm_kb("VmRSS")

    def one(i, path):
        t = [time.perf_counter()]
        px = preprocess(path)
        t.append(time.perf_counter())
        with torch.no_grad():
            enc = ref.vit_encode(ck, px)
            t.append(time.perf_counter())
            if a.beams > 1:
                ids = ref.beam_search(ck, enc, a.beams, a.max_length, gs["start"], gs["eos"],
                                      gs["length_penalty"], gs["early_stopping"])[0][0]
            else:
                ids = ref.greedy(ck, enc, a.max_length, gs["start"], gs["eos"])[0]
        caption = tok.decode(ids)
        t.append(time.perf_counter())
        stem = os.path.splitext(os.path.basename(path))[0] if i >= 0 else "warmup%d" % -i
        samples = tts.say(caption, os.path.join(out, stem + ".wav"))
        t.append(time.perf_counter())
        ntok = len(ids) - 1 - (1 if ids[-1] == gs["eos"] and len(ids) > 1 else 0)
        return [1000 * (t[k + 1] - t[k]) for k in range(4)], caption, ntok, samples

    for i, path in enumerate(warm_files):
        one(-1 - i, path)
    if a.ready:
        open(a.ready, "w").close()
    while a.go and not os.path.exists(a.go):
        time.sleep(0.005)
    stage = np.zeros(4)
    rows = []
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        ms, caption, ntok, samples = one(i, path)
        stage += ms
        rows.append({"image": os.path.basename(path), "caption": caption, "tokens": ntok,
                     "speech_s": samples / 16000.0})
    wall = time.perf_counter() - t0
    n = len(files)
    res = {
        "system": a.label or "pytorch-threads%d" % a.threads, "torch": torch.__version__,
        "threads": a.threads, "num_beams": a.beams, "max_length": a.max_length,
        "shard": a.shard, "images": n, "wall_s": round(wall, 3), "images_per_min": round(60.0 * n / wall, 2),
        "ms_per_image": round(1000 * wall / n, 1),
        "stage_ms": {k: round(v / n, 1) for k, v in zip(("preprocess", "vision", "text", "speech"), stage)},
        "load_s": round(load_s, 2), "rss_after_load_mb": round(rss_loaded / 1024, 1),
        "peak_mb": round(vm_kb("VmHWM") / 1024, 1),
        "mean_tokens": round(sum(r["tokens"] for r in rows) / n, 2),
        "captions": rows,
    }
    s = json.dumps(res)
    if a.json:
        with open(a.json, "w") as f:
            f.write(s + "\n")
    print(s)


if __name__ == "__main__":
    main()
