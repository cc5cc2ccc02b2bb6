#!/usr/bin/python3
"""PyTorch counterpart of bench_cuda.c on the same GPU: the ViT-B/16 encoder
(images/s) and the GPT-2 decoder with cross-attention (ms per decode step,
greedy = B rows each with its own image, beam4 = 4B rows sharing B images'
encoder K/V), batch 1..64, random weights, the sizes of
nlpconnect/vit-gpt2-image-captioning, written as transformers'
modeling_vit.py / modeling_gpt2.py compute them. Two ways: eager PyTorch
and torch.compile (inductor). F32 with TF32 off unless --tf32, as the
narrator CUDA backend. Decode uses a static KV cache (one compiled graph
per shape), and each step copies the rows' logits to the host, as
narrator's nr_gpt2_step does (--logits-on-device to skip that copy).

    /usr/bin/python3 bench/bench_cuda_torch.py [--device cuda:0] [--modes eager,compile]
        [--batches 1,2,4,8,16,32,64] [--iters 10] [--warmup 3] [--tokens 16]
        [--attn sdpa|math] [--compile-mode default|reduce-overhead|max-autotune]
        [--json FILE] [--compare narrator.json] [--tf32] [--autocast bf16|f16] [--small]

--compare reads bench_cuda --json output and prints narrator vs PyTorch side
by side. --small (tiny sizes) is a smoke test for machines with no GPU.
"""
import argparse
import importlib
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

P = {"D": 768, "H": 12, "I": 3072, "L": 12, "V": 50257, "S": 197, "IMG": 224}


def cfg_small():
    P.update({"D": 64, "H": 4, "I": 128, "L": 2, "V": 1000, "S": 17, "IMG": 64})


def attention(q, k, v, mask, how):
    """q [R,H,Tq,hd], k/v [R,H,Tk,hd], mask additive [.., Tk] or None."""
    if how == "sdpa" and hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    w = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        w = w + mask
    return torch.matmul(torch.softmax(w, dim=-1), v)


def rnd(*shape, dev):
    return torch.randn(*shape, device=dev) * 0.02


def ln_w(dev):
    return torch.ones(P["D"], device=dev), torch.zeros(P["D"], device=dev)


def vit_weights(dev):
    D, I = P["D"], P["I"]
    lin = lambda o, i: (rnd(o, i, dev=dev), rnd(o, dev=dev))
    w = {"patch": rnd(D, 3, 16, 16, dev=dev), "patch_b": rnd(D, dev=dev), "cls": rnd(1, 1, D, dev=dev),
         "pos": rnd(1, P["S"], D, dev=dev), "lnf": ln_w(dev), "layers": []}
    for _ in range(P["L"]):
        w["layers"].append({"q": lin(D, D), "k": lin(D, D), "v": lin(D, D), "o": lin(D, D), "fc1": lin(I, D),
                            "fc2": lin(D, I), "ln1": ln_w(dev), "ln2": ln_w(dev)})
    return w


def make_vit(w, how):
    D, H, S = P["D"], P["H"], P["S"]
    HD = D // H

    def fwd(px):
        B = px.shape[0]
        x = F.conv2d(px, w["patch"], w["patch_b"], stride=16).flatten(2).transpose(1, 2)
        x = torch.cat([w["cls"].expand(B, -1, -1), x], dim=1) + w["pos"]
        for l in w["layers"]:
            h = F.layer_norm(x, (D,), *l["ln1"], eps=1e-12)
            q = F.linear(h, *l["q"]).view(B, S, H, HD).transpose(1, 2)
            k = F.linear(h, *l["k"]).view(B, S, H, HD).transpose(1, 2)
            v = F.linear(h, *l["v"]).view(B, S, H, HD).transpose(1, 2)
            a = attention(q, k, v, None, how).transpose(1, 2).reshape(B, S, D)
            x = x + F.linear(a, *l["o"])
            h = F.layer_norm(x, (D,), *l["ln2"], eps=1e-12)
            x = x + F.linear(F.gelu(F.linear(h, *l["fc1"])), *l["fc2"])
        return F.layer_norm(x, (D,), *w["lnf"], eps=1e-12)

    return fwd


def gpt2_weights(dev):
    D, I = P["D"], P["I"]
    c1 = lambda i, o: (rnd(i, o, dev=dev), rnd(o, dev=dev))
    w = {"wte": rnd(P["V"], D, dev=dev), "wpe": rnd(1024, D, dev=dev), "lnf": ln_w(dev), "layers": []}
    for _ in range(P["L"]):
        w["layers"].append({"attn": c1(D, 3 * D), "aproj": c1(D, D), "xq": c1(D, D), "xkv": c1(D, 2 * D),
                            "xproj": c1(D, D), "fc": c1(D, I), "mproj": c1(I, D), "ln1": ln_w(dev),
                            "lnx": ln_w(dev), "ln2": ln_w(dev)})
    return w


def c1d(x, wb):
    w, b = wb
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


def heads(x):
    B, T, _ = x.shape
    return x.view(B, T, P["H"], P["D"] // P["H"]).transpose(1, 2)


def cross_kv(w, enc, encix):
    """Per layer (K, V) [R, H, S, hd] for rows cross-attending enc[encix[r]]."""
    D = P["D"]
    out = []
    for l in w["layers"]:
        k, v = c1d(enc, l["xkv"]).split(D, dim=2)
        out.append((heads(k)[encix].contiguous(), heads(v)[encix].contiguous()))
    return out


def make_step(w, how):
    D = P["D"]

    def step(ids, pos, kc, vc, xkv):
        """ids [R,1] long, pos [1] long (device), kc/vc per layer [R,H,T,hd] (updated in place)."""
        R = ids.shape[0]
        T = kc[0].shape[2]
        mask = torch.where(torch.arange(T, device=ids.device) <= pos, 0.0, float("-inf")).view(1, 1, 1, T)
        x = w["wte"][ids] + w["wpe"][pos].view(1, 1, D)
        for li, l in enumerate(w["layers"]):
            h = F.layer_norm(x, (D,), *l["ln1"], eps=1e-5)
            q, k, v = c1d(h, l["attn"]).split(D, dim=2)
            kc[li].index_copy_(2, pos, heads(k).to(kc[li].dtype))
            vc[li].index_copy_(2, pos, heads(v).to(vc[li].dtype))
            a = attention(heads(q).to(kc[li].dtype), kc[li], vc[li], mask.to(kc[li].dtype), how)
            a = a.transpose(1, 2).reshape(R, 1, D)
            x = x + c1d(a, l["aproj"])
            h = F.layer_norm(x, (D,), *l["lnx"], eps=1e-5)
            a = attention(heads(c1d(h, l["xq"])).to(xkv[li][0].dtype), xkv[li][0], xkv[li][1], None, how)
            x = x + c1d(a.transpose(1, 2).reshape(R, 1, D), l["xproj"])
            h = F.layer_norm(x, (D,), *l["ln2"], eps=1e-5)
            x = x + c1d(F.gelu(c1d(h, l["fc"]), approximate="tanh"), l["mproj"])
        x = F.layer_norm(x, (D,), *w["lnf"], eps=1e-5)
        return F.linear(x, w["wte"]).view(R, -1)

    return step


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_mode(mode, a, dev, vw, gw, px):
    how = a.attn
    vit = make_vit(vw, how)
    step = make_step(gw, how)
    if mode == "compile":
        if not hasattr(torch, "compile"):
            print(f"torch {torch.__version__} has no torch.compile: mode 'compile' skipped")
            return None
        vit = torch.compile(vit, mode=a.compile_mode)
        step = torch.compile(step, mode=a.compile_mode)
    res = {"impl": f"torch-{mode}", "device": str(dev), "torch": torch.__version__, "vit": [], "gpt2": []}
    enc_all = None
    for B in a.batches:
        x = px[:B]
        t0 = time.perf_counter()
        for _ in range(max(a.warmup, 1)):
            enc = vit(x)
        sync(dev)
        first = time.perf_counter() - t0
        ts = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            enc = vit(x)
            sync(dev)
            ts.append(time.perf_counter() - t0)
        ms = statistics.median(ts) * 1e3
        print(f"[{mode}] vit-b16 encoder  batch {B:3d}: {ms:9.2f} ms/batch  {B / ms * 1e3:9.1f} images/s"
              f"  (warm-up {first:.1f} s)")
        res["vit"].append({"batch": B, "ms": ms, "images_per_s": B / ms * 1e3})
        enc_all = enc if enc_all is None or enc.shape[0] >= enc_all.shape[0] else enc_all
    H, HD, T = P["H"], P["D"] // P["H"], a.tokens + 1
    for B in a.batches:
        for beam in (0, 1):
            R = 4 * B if beam else B
            enc = enc_all[:B].clone()
            encix = torch.arange(R, device=dev) // 4 if beam else torch.arange(R, device=dev)
            best = None
            for rep in range(max(a.warmup, 1) + 1):
                t0 = time.perf_counter()
                xkv = cross_kv(gw, enc, encix)
                sync(dev)
                tx = time.perf_counter() - t0
                cdt = xkv[0][0].dtype  # the autocast dtype for matmul outputs, else float32
                kc = [torch.zeros(R, H, T, HD, device=dev, dtype=cdt) for _ in range(P["L"])]
                vc = [torch.zeros(R, H, T, HD, device=dev, dtype=cdt) for _ in range(P["L"])]
                ids = torch.full((R, 1), P["V"] - 1, dtype=torch.long, device=dev)
                ts = []
                for j in range(a.tokens):
                    pos = torch.tensor([j], dtype=torch.long, device=dev)
                    t1 = time.perf_counter()
                    logits = step(ids, pos, kc, vc, xkv)
                    if a.logits_on_device:
                        sync(dev)
                    else:
                        logits = logits.cpu()
                    ts.append(time.perf_counter() - t1)
                    ids = torch.tensor([[(j * 7919 + r * 104729) % P["V"]] for r in range(R)], device=dev)
                best = ts
            ms = statistics.median(best) * 1e3
            name = "beam4" if beam else "greedy"
            print(f"[{mode}] gpt2 decoder {name:6s} batch {B:3d} (rows {R:3d}): {ms:8.3f} ms/step"
                  f"  {R / ms * 1e3:9.1f} tokens/s  cross K/V {tx * 1e3:.2f} ms")
            res["gpt2"].append({"mode": name, "batch": B, "rows": R, "ms_per_step": ms,
                                "tokens_per_s": R / ms * 1e3, "cross_kv_ms": tx * 1e3})
    return res


def compare(narrator, results):
    print("\nnarrator vs PyTorch (same device); higher images/s and tokens/s are better")
    cols = [r["impl"] for r in results]
    print(f"{'what':34s} {'narrator':>12s} " + " ".join(f"{c:>14s}" for c in cols))
    for v in narrator.get("vit", []):
        row = [next((x["images_per_s"] for x in r["vit"] if x["batch"] == v["batch"]), float("nan"))
               for r in results]
        print(f"{'vit images/s batch %d' % v['batch']:34s} {v['images_per_s']:12.1f} "
              + " ".join(f"{x:14.1f}" for x in row))
    for g in narrator.get("gpt2", []):
        row = [next((x["ms_per_step"] for x in r["gpt2"] if x["batch"] == g["batch"] and x["mode"] == g["mode"]),
                    float("nan")) for r in results]
        label = "gpt2 %s ms/step batch %d" % (g["mode"], g["batch"])
        print(f"{label:34s} {g['ms_per_step']:12.3f} " + " ".join(f"{x:14.3f}" for x in row))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--attn", choices=["sdpa", "math"], default="sdpa")
    ap.add_argument("--compile-mode", default="default")
    ap.add_argument("--json")
    ap.add_argument("--compare")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--autocast", choices=["bf16", "f16"],
                    help="matmuls under torch.autocast (compare with bench_cuda --device cuda:0:bf16 / :f16)")
    ap.add_argument("--logits-on-device", action="store_true")
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    a.batches = [int(b) for b in a.batches.split(",") if b]
    if a.small:
        cfg_small()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("bench_cuda_torch: no CUDA device visible to PyTorch", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    try:  # one compiled graph per batch size and row count: allow many
        dynamo = importlib.import_module("torch._dynamo")
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dynamo.config, name):
                setattr(dynamo.config, name, 256)
    except ImportError:
        pass
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"bench_cuda_torch: torch {torch.__version__} on {a.device} ({gpu}), tf32 {a.tf32}, attention {a.attn}, "
          f"autocast {a.autocast or 'off'}, iters {a.iters} (median), warmup {a.warmup}, tokens {a.tokens}")
    results = []
    import contextlib
    amp = contextlib.nullcontext()
    if a.autocast:
        amp = torch.autocast(dev.type, dtype=torch.bfloat16 if a.autocast == "bf16" else torch.float16)
    with torch.inference_mode(), amp:
        vw, gw = vit_weights(dev), gpt2_weights(dev)
        px = torch.randn(max(a.batches), 3, P["IMG"], P["IMG"], device=dev)
        for mode in a.modes.split(","):
            r = run_mode(mode, a, dev, vw, gw, px)
            if r:
                r["gpu"] = gpu
                results.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if a.compare:
        with open(a.compare) as f:
            compare(json.load(f), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
