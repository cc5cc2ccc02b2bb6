#!/usr/bin/python3
"""PyTorch counterpart of bench_paligemma (same shapes, F32, random weights):
SigLIP-So400m/14 at 224 px + projector for one image; the prefix step (256
image tokens + 5 text tokens through Gemma-2B layers, bidirectional) and
greedy decode steps with a KV cache.  Written with torch.nn.functional the
way transformers v4.46's modeling_siglip.py / modeling_gemma.py compute
(eager attention, rotate-half rotary, RMSNorm (1 + w), GeGLU), without
transformers itself (not installable here).

    /usr/bin/python3 bench/bench_paligemma_torch.py [--threads 2] [--iters 3] [--tokens 16] [--layers 4] [--vocab 32768]
        [--dir DIR] [--device cpu|cuda[:N]] [--autocast bf16|f16]

--device cuda runs the same code on a GPU, eager, F32 with TF32 off (the
counterpart of bench_paligemma --device cuda:0; --autocast bf16 of
cuda:0:bf16): each decode step copies its logits to the host, as narrator's
step does, and every timer reads after torch.cuda.synchronize.

--dir DIR reads a BF16 checkpoint folder (bench/make_paligemma_checkpoint.py,
sharded safetensors: each tensor read into its own BF16 tensor, as
from_pretrained(torch_dtype=torch.bfloat16) holds them) and runs in BF16 the
way transformers does in that dtype (RMSNorm and rotary in float32, cast
back); it reports the load time and resident memory as bench_paligemma does.

Prints "result torch KEY VALUE" lines for bench/bench_paligemma.sh."""
import json
import os
import resource
import struct
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import torch_device as tdev

Dv, Iv, Lv, Hv, P, IMG = 1152, 4304, 27, 16, 14, 224
D, I, H, KV, HD = 2048, 16384, 8, 1, 256
DEV = torch.device("cpu")  # --device: every tensor is made there


def rnd(*shape):
    return torch.randn(*shape, device=DEV) * 0.02


def siglip_weights():
    w = {"patch": rnd(Dv, 3, P, P), "patch_b": rnd(Dv), "pos": rnd((IMG // P) ** 2, Dv),
         "post_g": torch.ones(Dv, device=DEV), "post_b": torch.zeros(Dv, device=DEV), "proj": rnd(D, Dv), "proj_b": rnd(D), "layers": []}
    for _ in range(Lv):
        w["layers"].append({k: rnd(*s) for k, s in {
            "q": (Dv, Dv), "k": (Dv, Dv), "v": (Dv, Dv), "o": (Dv, Dv), "qb": (Dv,), "kb": (Dv,), "vb": (Dv,),
            "ob": (Dv,), "fc1": (Iv, Dv), "fc1b": (Iv,), "fc2": (Dv, Iv), "fc2b": (Dv,)}.items()}
                           | {"ln1g": torch.ones(Dv, device=DEV), "ln1b": torch.zeros(Dv, device=DEV),
                              "ln2g": torch.ones(Dv, device=DEV), "ln2b": torch.zeros(Dv, device=DEV)})
    return w


def siglip(w, px):
    x = F.conv2d(px, w["patch"], w["patch_b"], stride=P).flatten(2).transpose(1, 2) + w["pos"][None]
    B, S, _ = x.shape
    hd = Dv // Hv
    for L in w["layers"]:
        h = F.layer_norm(x, (Dv,), L["ln1g"], L["ln1b"], 1e-6)
        q, k, v = (F.linear(h, L[n], L[n + "b"]).view(B, S, Hv, hd).transpose(1, 2) for n in "qkv")
        a = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, dim=-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(B, S, Dv), L["o"], L["ob"])
        h = F.layer_norm(x, (Dv,), L["ln2g"], L["ln2b"], 1e-6)
        x = x + F.linear(F.gelu(F.linear(h, L["fc1"], L["fc1b"]), approximate="tanh"), L["fc2"], L["fc2b"])
    x = F.layer_norm(x, (Dv,), w["post_g"], w["post_b"], 1e-6)
    return F.linear(x, w["proj"], w["proj_b"]) / D ** 0.5


def gemma_weights(layers, vocab):
    return {"emb": rnd(vocab, D), "norm": rnd(D), "layers": [
        {"q": rnd(H * HD, D), "k": rnd(KV * HD, D), "v": rnd(KV * HD, D), "o": rnd(D, H * HD), "g": rnd(I, D),
         "u": rnd(I, D), "d": rnd(D, I), "ln1": rnd(D), "ln2": rnd(D)} for _ in range(layers)]}


def rms(x, w):  # GemmaRMSNorm: in float32, cast back
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + w.float())).type_as(x)


def rotary(x, pos):
    inv = 1.0 / (10000.0 ** (torch.arange(0, HD, 2, device=DEV).float() / HD))
    emb = torch.cat([pos[:, None].float() * inv[None]] * 2, dim=-1)
    h = HD // 2
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


def status_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    return -1


def load_dir(folder):
    """The checkpoint's tensors (BF16, each in its own storage), the SigLIP
    and Gemma weight dicts of this script, the number of layers and ids."""
    index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
    t = {}
    for shard in sorted(set(index["weight_map"].values())):
        with open(os.path.join(folder, shard), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            base = 8 + n
            for name, e in header.items():
                if name == "__metadata__":
                    continue
                assert e["dtype"] == "BF16", name
                a, b = e["data_offsets"]
                f.seek(base + a)
                t[name] = torch.frombuffer(bytearray(f.read(b - a)), dtype=torch.bfloat16).view(e["shape"])
    v = "vision_tower.vision_model."
    sw = {"patch": t[v + "embeddings.patch_embedding.weight"], "patch_b": t[v + "embeddings.patch_embedding.bias"],
          "pos": t[v + "embeddings.position_embedding.weight"], "post_g": t[v + "post_layernorm.weight"],
          "post_b": t[v + "post_layernorm.bias"], "proj": t["multi_modal_projector.linear.weight"],
          "proj_b": t["multi_modal_projector.linear.bias"], "layers": []}
    names = {"q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight",
             "o": "self_attn.out_proj.weight", "qb": "self_attn.q_proj.bias", "kb": "self_attn.k_proj.bias",
             "vb": "self_attn.v_proj.bias", "ob": "self_attn.out_proj.bias", "fc1": "mlp.fc1.weight",
             "fc1b": "mlp.fc1.bias", "fc2": "mlp.fc2.weight", "fc2b": "mlp.fc2.bias", "ln1g": "layer_norm1.weight",
             "ln1b": "layer_norm1.bias", "ln2g": "layer_norm2.weight", "ln2b": "layer_norm2.bias"}
    for i in range(Lv):
        sw["layers"].append({k: t[v + "encoder.layers.%d.%s" % (i, n)] for k, n in names.items()})
    lm = "language_model.model."
    layers = 1 + max(int(k.split(".")[3]) for k in t if k.startswith(lm + "layers."))
    gnames = {"q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight",
              "o": "self_attn.o_proj.weight", "g": "mlp.gate_proj.weight", "u": "mlp.up_proj.weight",
              "d": "mlp.down_proj.weight", "ln1": "input_layernorm.weight", "ln2": "post_attention_layernorm.weight"}
    gw = {"emb": t[lm + "embed_tokens.weight"], "norm": t[lm + "norm.weight"],
          "layers": [{k: t[lm + "layers.%d.%s" % (i, n)] for k, n in gnames.items()} for i in range(layers)]}
    return sw, gw, layers, gw["emb"].shape[0]


def to_dev(w):
    """A weight dict (of dicts, lists, tensors) on DEV."""
    if isinstance(w, dict):
        return {k: to_dev(v) for k, v in w.items()}
    if isinstance(w, list):
        return [to_dev(v) for v in w]
    return w.to(DEV)


def gemma_step(w, x, cache, pos, causal):
    """x [1, T, D] (already scaled embeddings); cache: per layer [k, v] or None."""
    T = x.shape[1]
    for i, L in enumerate(w["layers"]):
        h = rms(x, L["ln1"])
        q = F.linear(h, L["q"]).view(1, T, H, HD).transpose(1, 2)
        k = F.linear(h, L["k"]).view(1, T, KV, HD).transpose(1, 2)
        v = F.linear(h, L["v"]).view(1, T, KV, HD).transpose(1, 2)
        q, k = rotary(q, pos), rotary(k, pos)
        if cache[i] is not None:
            k = torch.cat([cache[i][0], k], dim=2)
            v = torch.cat([cache[i][1], v], dim=2)
        cache[i] = [k, v]
        s = q @ k.repeat_interleave(H // KV, 1).transpose(-1, -2) / math.sqrt(HD)
        if causal and T > 1:
            s = s + torch.full((T, k.shape[2]), float("-inf"), device=DEV).triu(k.shape[2] - T + 1)
        a = torch.softmax(s, dim=-1) @ v.repeat_interleave(H // KV, 1)
        x = x + F.linear(a.transpose(1, 2).reshape(1, T, H * HD), L["o"])
        h = rms(x, L["ln2"])
        x = x + F.linear(F.gelu(F.linear(h, L["g"]), approximate="tanh") * F.linear(h, L["u"]), L["d"])
    return F.linear(rms(x[:, -1:], w["norm"]), w["emb"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--dir")
    tdev.add_args(ap)
    a = ap.parse_args()
    global DEV
    DEV = tdev.setup(a)

    def now():  # after the device's queued work
        tdev.sync(DEV)
        return time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.float32
    if a.dir:
        t0 = time.perf_counter()
        sw, gwd, a.layers, a.vocab = load_dir(a.dir)
        if DEV.type != "cpu":
            sw, gwd = to_dev(sw), to_dev(gwd)
        dtype = torch.bfloat16
        load, rss = time.perf_counter() - t0, status_mb("VmRSS")
        print("load %.2f s, resident %d MB" % (load, rss))
        print("result torch load_s %.2f\nresult torch rss_load_mb %d\nresult torch rss_file_mb %d"
              % (load, rss, status_mb("RssFile")))
    print("torch %s, threads %d, Gemma-2B layers x %d, vocab %d, %s, %s" % (
        torch.__version__, a.threads, a.layers, a.vocab, dtype, tdev.describe(DEV, a)))
    with torch.no_grad(), tdev.autocast(DEV, a):
        if not a.dir:
            sw = siglip_weights()
        px = torch.randn(1, 3, IMG, IMG, device=DEV).to(dtype)
        siglip(sw, px)
        t = []
        for _ in range(a.iters):
            t0 = now()
            feats = siglip(sw, px)
            t.append(now() - t0)
        enc = statistics.median(t)
        print("SigLIP-So400m + projector, 1 image: %.1f ms" % (enc * 1e3))
        del sw
        gw = gwd if a.dir else gemma_weights(a.layers, a.vocab)
        norm = torch.tensor(D ** 0.5, dtype=dtype, device=DEV)
        prompt = torch.tensor([2, 303, 5765, 1149, 108], device=DEV) % a.vocab
        tp, ts = [], []
        for it in range(-1, a.iters):
            cache = [None] * a.layers
            t0 = now()
            x = torch.cat([feats, gw["emb"][prompt][None]], dim=1) * norm
            S0 = x.shape[1]
            gemma_step(gw, x, cache, torch.arange(1, S0 + 1, device=DEV), causal=False).cpu()  # host logits
            t1 = now()
            tok = 1000 % a.vocab
            for st in range(a.tokens):
                gemma_step(gw, gw["emb"][[tok]][None] * norm, cache, torch.tensor([S0 + 1 + st], device=DEV),
                           causal=True).cpu()
                tok = (1000 + st * 7919) % a.vocab
            if it >= 0:
                tp.append(t1 - t0)
                ts.append((now() - t1) / a.tokens)
        pre, step = statistics.median(tp), statistics.median(ts)
        print("prefix step: %.1f ms; decode %.2f ms/token" % (pre * 1e3, step * 1e3))
        print("result torch siglip_ms %.1f\nresult torch prefix_ms %.1f\nresult torch decode_ms_tok %.2f"
              % (enc * 1e3, pre * 1e3, step * 1e3))
        print("result torch rss_peak_mb %d" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))


if __name__ == "__main__":
    main()
