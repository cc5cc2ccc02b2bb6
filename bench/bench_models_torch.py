#!/usr/bin/python3
"""PyTorch counterpart of bench_models.c: ViT-B/16 encoder images/s and the
GPT-2 decoder with cross-attention ms/token (1 row, 4 rows, and 4 / 16
captions decoded together, KV cache), F32,
random weights, the sizes of nlpconnect/vit-gpt2-image-captioning, written
like transformers' modeling_vit.py / modeling_gpt2.py (eager attention).
    /usr/bin/python3 bench/bench_models_torch.py [--threads N] [--batch N] [--iters N] [--tokens N] [--bf16]
--bf16 runs the encoder under torch.autocast("cpu", torch.bfloat16) (oneDNN
BF16 matmuls; the counterpart of cpu:bf16) and skips the decoder.
"""
import contextlib
import argparse
import os
import time

import torch
import torch.nn.functional as F

# The model is bench_cuda_torch.py's (same weights layout, ViT forward,
# GPT-2 Conv1D); attention "math" is the eager one transformers uses on
# torch < 2.0 (no fused sdpa in 1.13).
from bench_cuda_torch import P, attention, c1d, gpt2_weights, heads, make_vit, vit_weights

D, H, I, L, V, S = (P[k] for k in ("D", "H", "I", "L", "V", "S"))


def gpt2_cross_kv(w, enc):
    return [tuple(heads(t) for t in c1d(enc, l["xkv"]).split(D, dim=2)) for l in w["layers"]]


def gpt2_step(w, ids, pos, cache, xkv):
    B = ids.shape[0]
    x = w["wte"][ids] + w["wpe"][pos]
    for li, l in enumerate(w["layers"]):
        h = F.layer_norm(x, (D,), *l["ln1"], eps=1e-5)
        q, k, v = c1d(h, l["attn"]).split(D, dim=2)
        q, k, v = heads(q), heads(k), heads(v)
        if cache[li] is not None:
            k = torch.cat([cache[li][0], k], dim=2)
            v = torch.cat([cache[li][1], v], dim=2)
        cache[li] = (k, v)
        a = attention(q, k, v, None, "math").transpose(1, 2).reshape(B, 1, D)
        x = x + c1d(a, l["aproj"])
        h = F.layer_norm(x, (D,), *l["lnx"], eps=1e-5)
        q = heads(c1d(h, l["xq"]))
        xk, xv = xkv[li]
        a = attention(q, xk.expand(B, -1, -1, -1), xv.expand(B, -1, -1, -1), None, "math")
        x = x + c1d(a.transpose(1, 2).reshape(B, 1, D), l["xproj"])
        h = F.layer_norm(x, (D,), *l["ln2"], eps=1e-5)
        x = x + c1d(F.gelu(c1d(h, l["fc"]), approximate="tanh"), l["mproj"])
    x = F.layer_norm(x, (D,), *w["lnf"], eps=1e-5)
    return F.linear(x, w["wte"])


def vit_flops():
    # as bench_models.c: patch embedding + per layer QKV, output, MLP, attention
    per_layer = 2.0 * S * D * (3 * D + D + 2 * I) + 2.0 * 2.0 * S * S * D
    return 2.0 * (S - 1) * D * (3 * 16 * 16) + L * per_layer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"bench_models_torch: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    with torch.inference_mode():
        vw = vit_weights(torch.device("cpu"))
        vit_forward = make_vit(vw, "math")
        px = torch.randn(a.batch, 3, 224, 224)
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext()
        with amp:
            for bs in (1, a.batch):
                vit_forward(px[:bs])
                dt = 1e9
                for _ in range(a.iters):  # best of iters, as bench_models
                    t0 = time.perf_counter()
                    enc = vit_forward(px[:bs])
                    dt = min(dt, time.perf_counter() - t0)
                print(f"vit-b16 encoder{' bf16' if a.bf16 else ''}  batch {bs}: {dt * 1e3:8.1f} ms/batch  "
                      f"{bs / dt:6.2f} images/s  {vit_flops() * bs / dt / 1e9:6.1f} GFLOP/s")
        if a.bf16:
            return
        del vw, vit_forward
        gw = gpt2_weights(torch.device("cpu"))
        enc1 = enc[:1]
        # (rows, images): greedy, beam 4 (4 rows on one image), and 4 / 16
        # captions decoded together (one row each, each its own image)
        for rows, nimg in ((1, 1), (4, 1), (4, 4), (16, 16)):
            encn = enc1.expand(nimg, -1, -1).contiguous()
            best = 1e9
            for _ in range(2):
                t0 = time.perf_counter()
                xkv = gpt2_cross_kv(gw, encn)
                tx = time.perf_counter() - t0
                cache = [None] * L
                ids = torch.full((rows, 1), 50256, dtype=torch.long)
                t0 = time.perf_counter()
                for t in range(a.tokens):
                    gpt2_step(gw, ids, torch.full((rows, 1), t, dtype=torch.long), cache, xkv)
                    ids = torch.tensor([[(t * 7919 + r * 104729) % V] for r in range(rows)])
                best = min(best, (time.perf_counter() - t0) / a.tokens)
            if nimg == 1:
                print(f"gpt2 decoder     rows {rows:2d} ({'greedy' if rows == 1 else 'beam 4'}): {best * 1e3:8.2f} "
                      f"ms/token (step of all rows), cross K/V setup {tx * 1e3:.1f} ms")
            else:
                print(f"gpt2 decoder     captions {rows:2d} together: {best * 1e3:8.2f} ms/step, "
                      f"{best * 1e3 / rows:6.2f} ms/token per caption, cross K/V setup {tx * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
