#!/usr/bin/python3
"""PyTorch counterpart of bench_git.c: GIT-base sizes (microsoft/git-base-coco:
CLIP ViT-B/16 at 224 px, visual projection, 6-layer BERT-style decoder over
[197 image tokens; text], vocab 30522), random F32 weights, written like
transformers' models/git/modeling_git.py (v4.46): eager attention (the
"math" path transformers uses on torch 1.13: matmul, + mask, softmax,
matmul), quick_gelu CLIP, post-LN decoder, exact-erf GELU.

Two ways to decode, both measured:
  cached  the image tokens' keys/values computed once per caption and kept
          at the front of each layer's cache; a step runs the text token
          only (what narrator does; what a user gets by writing it by hand).
  hf      what GitForCausalLM.generate runs: prepare_inputs_for_generation
          passes pixel_values at every step, so GitModel.forward reruns the
          CLIP encoder and the projection, and the 197 image tokens go
          through every decoder layer again; past_key_values keeps only the
          text part ("we discard the image component"), concatenated per
          step. Beam search expands pixel_values to batch x num_beams rows,
          so beam 4 encodes 4 copies of the image per step.
A caption: max_length 20 ([CLS] + 19 tokens), beam 4 (log_softmax + top-k
over beams x vocab, cache reordered with index_select as _reorder_cache)
and greedy. For hf the caption is 19 x its median step (each step costs the
same: the image is redone every time); --hf-caption measures it instead.

    /usr/bin/python3 bench/bench_git_torch.py [--threads 2] [--batch 8] [--iters 3] [--tokens 19]
        [--no-hf] [--hf-caption] [--device cpu|cuda[:N]] [--autocast bf16|f16]
--device cuda runs the same code on a GPU, eager, F32 with TF32 off (the
counterpart of bench_git --device cuda:0; --autocast bf16 of cuda:0:bf16):
each decode step copies its logits to the host, as narrator's step does,
and every timer reads after torch.cuda.synchronize (bench/torch_device.py).
F32 only: torch 1.13's CPU autocast to bf16 stops at the first layer_norm
("expected scalar type BFloat16 but found Float": bf16 activations, F32
LayerNorm weights), so F32 is what a user runs on CPU with this torch.
--threads 1 is PyTorch's best here (its OpenBLAS uses both cores by itself);
--threads 2 oversubscribes the 2 cores and runs 3-5x slower.
Prints "result torch KEY VALUE" lines for bench/bench_git.sh.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import torch_device as tdev

D, H, I, L_VIS, L_TXT, V, IMG, P_SZ = 768, 12, 3072, 12, 6, 30522, 224, 16
S = (IMG // P_SZ) ** 2 + 1
HD = D // H
CLS_ID = 101
DEV = torch.device("cpu")  # --device: every tensor is made there


def rnd(*shape):
    return torch.randn(*shape, device=DEV) * 0.02


def lin(o, i):
    return rnd(o, i), rnd(o)


def ln():
    return torch.ones(D, device=DEV), torch.zeros(D, device=DEV)


def weights():
    vis = {"cls": rnd(D), "patch": rnd(D, 3, P_SZ, P_SZ), "pos": rnd(S, D), "pre": ln(), "post": ln(), "layers": []}
    for _ in range(L_VIS):
        vis["layers"].append({"q": lin(D, D), "k": lin(D, D), "v": lin(D, D), "o": lin(D, D), "fc1": lin(I, D),
                              "fc2": lin(D, I), "ln1": ln(), "ln2": ln()})
    txt = {"proj": lin(D, D), "proj_ln": ln(), "wte": rnd(V, D), "wpe": rnd(1024, D), "emb_ln": ln(),
           "out": lin(V, D), "layers": []}
    for _ in range(L_TXT):
        txt["layers"].append({"q": lin(D, D), "k": lin(D, D), "v": lin(D, D), "o": lin(D, D), "ln1": ln(),
                              "fc1": lin(I, D), "fc2": lin(D, I), "ln2": ln()})
    return vis, txt


def heads(x):
    B, T, _ = x.shape
    return x.view(B, T, H, HD).permute(0, 2, 1, 3)


def merge(x):
    B, _, T, _ = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, D)


def attend(q, k, v, mask):
    w = torch.matmul(q, k.transpose(-1, -2)) / (HD ** 0.5)
    if mask is not None:
        w = w + mask
    return torch.matmul(F.softmax(w, dim=-1), v)


def encode(vis, txt, px):
    """GitVisionModel (CLIPVisionTransformer) + GitProjection: [B, S, D]."""
    B = px.shape[0]
    x = F.conv2d(px, vis["patch"], None, stride=P_SZ).flatten(2).transpose(1, 2)
    x = torch.cat([vis["cls"].expand(B, 1, D), x], dim=1) + vis["pos"]
    x = F.layer_norm(x, (D,), *vis["pre"], eps=1e-5)
    for l in vis["layers"]:
        h = F.layer_norm(x, (D,), *l["ln1"], eps=1e-5)
        q, k, v = heads(F.linear(h, *l["q"])), heads(F.linear(h, *l["k"])), heads(F.linear(h, *l["v"]))
        x = x + F.linear(merge(attend(q, k, v, None)), *l["o"])
        h = F.layer_norm(x, (D,), *l["ln2"], eps=1e-5)
        h = F.linear(h, *l["fc1"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), *l["fc2"])
    x = F.layer_norm(x, (D,), *vis["post"], eps=1e-5)
    return F.layer_norm(F.linear(x, *txt["proj"]), (D,), *txt["proj_ln"], eps=1e-5)


def layer(l, x, mask, past, cutoff):
    """GitLayer: returns the new hidden states and the layer's text K/V."""
    q, k, v = heads(F.linear(x, *l["q"])), heads(F.linear(x, *l["k"])), heads(F.linear(x, *l["v"]))
    if past is not None:  # GitSelfAttention: [image part of this pass; past text; the new token]
        k = torch.cat([k[:, :, :cutoff], past[0], k[:, :, cutoff:]], dim=2)
        v = torch.cat([v[:, :, :cutoff], past[1], v[:, :, cutoff:]], dim=2)
    present = (k[:, :, cutoff:], v[:, :, cutoff:])
    a = F.linear(merge(attend(q, k, v, mask)), *l["o"])
    x = F.layer_norm(a + x, (D,), *l["ln1"], eps=1e-12)
    h = F.linear(F.gelu(F.linear(x, *l["fc1"])), *l["fc2"])
    return F.layer_norm(h + x, (D,), *l["ln2"], eps=1e-12), present


def embed(txt, ids, pos0):
    pos = torch.arange(pos0, pos0 + ids.shape[1], device=DEV)
    return F.layer_norm(txt["wte"][ids] + txt["wpe"][pos], (D,), *txt["emb_ln"], eps=1e-12)


# ---- cached: image K/V once per caption ----

def image_kv(txt, img):
    """img [n, S, D] -> per layer (K, V) [n, H, S, HD] of the image tokens
    (they attend to image tokens only, so text never changes them)."""
    kv, x = [], img
    for li, l in enumerate(txt["layers"]):
        kv.append((heads(F.linear(x, *l["k"])), heads(F.linear(x, *l["v"]))))
        if li < L_TXT - 1:
            x, _ = layer(l, x, None, None, 0)
    return kv


def step_cached(txt, ids, cache):
    """ids [R, 1]; cache per layer (K, V) [R, H, S + t, HD], image first; the
    new token attends to all of it (no mask needed for one query)."""
    pos0 = cache[0][0].shape[2] - S
    x = embed(txt, ids, pos0)
    for li, l in enumerate(txt["layers"]):
        q, k, v = heads(F.linear(x, *l["q"])), heads(F.linear(x, *l["k"])), heads(F.linear(x, *l["v"]))
        k = torch.cat([cache[li][0], k], dim=2)
        v = torch.cat([cache[li][1], v], dim=2)
        cache[li] = (k, v)
        a = F.linear(merge(attend(q, k, v, None)), *l["o"])
        x = F.layer_norm(a + x, (D,), *l["ln1"], eps=1e-12)
        h = F.linear(F.gelu(F.linear(x, *l["fc1"])), *l["fc2"])
        x = F.layer_norm(h + x, (D,), *l["ln2"], eps=1e-12)
    return F.linear(x[:, -1], *txt["out"])


# ---- hf: GitForCausalLM.generate as transformers runs it ----

def git_mask(n_img, n_past, n_new):
    """GitModel.create_attention_mask for the new queries (image rows: image
    only; text rows: all image + causal text), additive."""
    tot = n_img + n_past + n_new
    m = torch.full((n_img + n_new, tot), float("-inf"), device=DEV)
    m[:n_img, :n_img] = 0
    for t in range(n_new):
        m[n_img + t, :n_img + n_past + t + 1] = 0
    return m.view(1, 1, n_img + n_new, tot)


def step_hf(vis, txt, px_rows, ids, past):
    """One generate step: pixel_values [R, 3, 224, 224] (already expanded to
    the rows), ids [R, 1], past per layer text (K, V) or None."""
    img = encode(vis, txt, px_rows)
    n_past = 0 if past is None else past[0][0].shape[2]
    x = torch.cat([img, embed(txt, ids, n_past)], dim=1)
    mask = git_mask(S, n_past, ids.shape[1])
    new_past = []
    for li, l in enumerate(txt["layers"]):
        x, pres = layer(l, x, mask, None if past is None else past[li], S)
        new_past.append(pres)
    return F.linear(x[:, -1], *txt["out"]), new_past


def caption(next_logits, reorder, beams, steps):
    """Greedy / beam search over next_logits(ids [R,1]) -> logits [R, V]."""
    ids = torch.full((beams, 1), CLS_ID, dtype=torch.long, device=DEV)
    scores = torch.zeros(beams, device=DEV)
    scores[1:] = -1e9  # the first step expands beam 0 only, as transformers
    for _ in range(steps):
        lp = F.log_softmax(next_logits(ids[:, -1:]), dim=-1)
        if beams == 1:
            ids = torch.cat([ids, lp.argmax(-1, keepdim=True)], dim=1)
            continue
        cand = (lp + scores[:, None]).view(-1)
        top, idx = cand.topk(2 * beams)  # transformers keeps 2 x beams for eos handling
        top, idx = top[:beams], idx[:beams]
        src, tok = idx // V, idx % V
        reorder(src)
        ids = torch.cat([ids[src], tok[:, None]], dim=1)
        scores = top
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=19)
    ap.add_argument("--no-hf", action="store_true", help="skip transformers' decode (image redone every step)")
    ap.add_argument("--hf-caption", action="store_true", help="time hf captions instead of 19 x the hf step")
    tdev.add_args(ap)
    a = ap.parse_args()
    global DEV
    DEV = tdev.setup(a)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tag = "torch"
    print(f"bench_git_torch: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'F32' if DEV.type == 'cpu' else tdev.describe(DEV, a)}")
    res = {}

    def timed(fn):
        fn()  # warm-up
        ts = []
        for _ in range(a.iters):
            tdev.sync(DEV)
            t0 = time.perf_counter()
            fn()
            tdev.sync(DEV)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    with torch.inference_mode(), tdev.autocast(DEV, a):
        vis, txt = weights()
        px = torch.randn(a.batch, 3, IMG, IMG, device=DEV)
        for bs in (1, a.batch):
            dt = timed(lambda: encode(vis, txt, px[:bs]))
            res[f"enc_b{bs}_ips"] = bs / dt
            print(f"encoder (CLIP ViT-B/16 + projection) batch {bs}: {dt * 1e3:8.1f} ms/batch  {bs / dt:6.2f} images/s")
        img = encode(vis, txt, px[:1])
        res["kv_setup_ms"] = timed(lambda: image_kv(txt, img)) * 1e3
        # decode steps, cached: greedy (1 row) and beam 4 (4 rows, one image)
        for rows, key in ((1, "greedy_ms_tok"), (4, "beam4_ms_step")):
            def run():
                cache = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in image_kv(txt, img)]
                tdev.sync(DEV)
                t0 = time.perf_counter()
                ids = torch.full((rows, 1), CLS_ID, dtype=torch.long, device=DEV)
                for t in range(a.tokens):
                    step_cached(txt, ids, cache).cpu()  # host logits, as narrator's step
                    ids = torch.tensor([[1000 + (t * 7919 + r * 104729) % (V - 1000)] for r in range(rows)],
                                       device=DEV)
                return (time.perf_counter() - t0) / a.tokens
            run()
            res[key] = statistics.median(run() for _ in range(a.iters)) * 1e3
            print(f"decoder (cached image K/V) {'greedy' if rows == 1 else 'beam 4'}: {res[key]:8.2f} ms/token "
                  f"(step of {rows} row{'s' if rows > 1 else ''}), image K/V setup {res['kv_setup_ms']:.1f} ms")

        # whole captions, cached: encode + image K/V + 19 steps
        def cap_cached(beams):
            im = encode(vis, txt, px[:1])
            cache = [(k.expand(beams, -1, -1, -1), v.expand(beams, -1, -1, -1)) for k, v in image_kv(txt, im)]

            def reorder(src):
                for li in range(L_TXT):
                    cache[li] = (cache[li][0].index_select(0, src), cache[li][1].index_select(0, src))
            return caption(lambda ids: step_cached(txt, ids, cache), reorder, beams, 19)

        for beams, key in ((4, "caption_beam4_ms"), (1, "caption_greedy_ms")):
            res[key] = timed(lambda: cap_cached(beams)) * 1e3
            print(f"caption (cached image K/V), beams {beams}, max_length 20: {res[key]:8.1f} ms per image")

        if not a.no_hf:
            for rows, key in ((1, "hf_greedy_ms_step"), (4, "hf_beam4_ms_step")):
                pxr = px[:1].repeat_interleave(rows, dim=0)  # _expand_inputs_for_generation

                def run3():
                    past, ids = None, torch.full((rows, 1), CLS_ID, dtype=torch.long, device=DEV)
                    tdev.sync(DEV)
                    t0 = time.perf_counter()
                    for _ in range(3):
                        lg, past = step_hf(vis, txt, pxr, ids, past)
                        lg.cpu()
                    return (time.perf_counter() - t0) / 3
                run3()
                res[key] = statistics.median(run3() for _ in range(max(1, a.iters - 1))) * 1e3
                res[key.replace("_ms_step", "").replace("hf_", "hf_caption_") + "_ms"] = 19 * res[key]
                print(f"transformers-style step (image redone), {'greedy' if rows == 1 else 'beam 4'}: "
                      f"{res[key]:8.1f} ms/step; caption = 19 steps: {19 * res[key]:8.0f} ms")
                if a.hf_caption:
                    past = [None]

                    def nxt(ids):
                        lg, past[0] = step_hf(vis, txt, pxr, ids, past[0])
                        return lg

                    def reorder(src):
                        past[0] = [(k.index_select(0, src), v.index_select(0, src)) for k, v in past[0]]
                    tdev.sync(DEV)
                    t0 = time.perf_counter()
                    caption(nxt, reorder, rows, 19)
                    tdev.sync(DEV)
                    print(f"  measured hf caption, beams {rows}: {(time.perf_counter() - t0) * 1e3:8.0f} ms")
    for k, v in res.items():
        print(f"result {tag} {k} {v:.3f}")


if __name__ == "__main__":
    main()
