#!/usr/bin/python3
"""PyTorch counterpart of bench_git.c --family blip (bench_blip): BLIP-base
sizes (Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px, 577
tokens; BERT-base text decoder, 12 layers with cross-attention in every
layer, 12 heads, vocab 30524), random F32 weights, written like
transformers' models/blip/modeling_blip.py (BlipVisionEmbeddings,
BlipAttention with the fused qkv, BlipEncoderLayer, post_layernorm) and
modeling_blip_text.py (BlipTextEmbeddings, BlipTextSelfAttention,
BlipTextLayer, BlipTextLMPredictionHead), v4.46: eager attention (matmul,
+ mask, softmax, matmul), exact-erf GELU on both sides.

BlipForConditionalGeneration.generate runs the vision model once per
caption and hands image_embeds to text_decoder.generate as
encoder_hidden_states (expanded to batch x num_beams rows). Two ways to
decode, both measured:
  cached  cross-attention keys/values of the 12 layers computed once per
          caption (for the one image; beams share them), self-attention
          K/V cached per row: what narrator does, and what transformers'
          newer files do (EncoderDecoderCache keeps the cross K/V after the
          first step).
  hf      what v4.46 (and 4.x before the cache classes) runs:
          BlipTextLayer calls the cross-attention without past_key_value,
          so BlipTextSelfAttention projects encoder_hidden_states through
          key and value again at every step, for every row (beam 4: 4
          copies of the 577 image states); only the self-attention K/V are
          cached (past_key_value[:2]). Its caption time is the encoder at
          batch 1 + 19 x its median step (every step costs about the same);
          --hf-caption measures it instead.
A caption: max_length 20 ([DEC] + 19 tokens), beam 4 (log_softmax + top-k
over beams x vocab, self K/V reordered with index_select as _reorder_cache)
and greedy.

    /usr/bin/python3 bench/bench_blip_torch.py [--threads 1] [--batch 8] [--iters 3] [--tokens 19]
        [--no-hf] [--hf-caption] [--device cpu|cuda[:N]] [--autocast bf16|f16]
F32 only on the CPU (torch 1.13's CPU autocast to bf16 stops at the first
layer_norm). --device cuda runs the same code on a GPU, eager, F32 with
TF32 off (the counterpart of bench_blip --device cuda:0; --autocast bf16 of
cuda:0:bf16): each decode step copies its logits to the host, as
narrator's step does, and every timer reads after torch.cuda.synchronize.
--threads 1 is PyTorch's best here (as for bench_git_torch.py).
Prints "result torch KEY VALUE" lines for bench/bench_git.sh --family blip.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import torch_device as tdev

D, H, I, L_VIS, L_TXT, V, IMG, P_SZ, NPOS = 768, 12, 3072, 12, 12, 30524, 384, 16, 512
S = (IMG // P_SZ) ** 2 + 1
HD = D // H
DEC_ID = 30522  # text_config.bos_token_id, [DEC]
DEV = torch.device("cpu")  # --device: every tensor is made there


def rnd(*shape):
    return torch.randn(*shape, device=DEV) * 0.02


def lin(o, i):
    return rnd(o, i), rnd(o)


def ln():
    return torch.ones(D, device=DEV), torch.zeros(D, device=DEV)


def weights():
    vis = {"cls": rnd(1, 1, D), "patch": (rnd(D, 3, P_SZ, P_SZ), rnd(D)), "pos": rnd(1, S, D), "post": ln(),
           "layers": []}
    for _ in range(L_VIS):
        vis["layers"].append({"qkv": lin(3 * D, D), "proj": lin(D, D), "fc1": lin(I, D), "fc2": lin(D, I),
                              "ln1": ln(), "ln2": ln()})
    txt = {"wte": rnd(V, D), "wpe": rnd(NPOS, D), "emb_ln": ln(), "tr": lin(D, D), "tr_ln": ln(),
           "dec": rnd(V, D), "dec_b": rnd(V), "layers": []}
    for _ in range(L_TXT):
        txt["layers"].append({"q": lin(D, D), "k": lin(D, D), "v": lin(D, D), "o": lin(D, D), "ln_sa": ln(),
                              "xq": lin(D, D), "xk": lin(D, D), "xv": lin(D, D), "xo": lin(D, D), "ln_x": ln(),
                              "fc1": lin(I, D), "fc2": lin(D, I), "ln_ffn": ln()})
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


def encode(vis, px):
    """BlipVisionModel: last_hidden_state [B, 577, D] (post_layernorm on every position)."""
    B = px.shape[0]
    x = F.conv2d(px, *vis["patch"], stride=P_SZ).flatten(2).transpose(1, 2)
    x = torch.cat([vis["cls"].expand(B, 1, D), x], dim=1) + vis["pos"][:, :S]
    for l in vis["layers"]:
        h = F.layer_norm(x, (D,), *l["ln1"], eps=1e-5)
        qkv = F.linear(h, *l["qkv"]).reshape(B, S, 3, H, HD).permute(2, 0, 3, 1, 4)
        a = torch.matmul(F.softmax(torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * HD ** -0.5, dim=-1), qkv[2])
        x = x + F.linear(a.permute(0, 2, 1, 3).reshape(B, S, D), *l["proj"])
        h = F.layer_norm(x, (D,), *l["ln2"], eps=1e-5)
        x = x + F.linear(F.gelu(F.linear(h, *l["fc1"])), *l["fc2"])
    return F.layer_norm(x, (D,), *vis["post"], eps=1e-5)


def cross_kv(txt, img):
    """img [n, S, D] -> per layer (K, V) [n, H, S, HD] of the cross-attention."""
    return [(heads(F.linear(img, *l["xk"])), heads(F.linear(img, *l["xv"]))) for l in txt["layers"]]


def step(txt, ids, past, xkv):
    """One decode step of BlipTextLMHeadModel: ids [R, 1]; past per layer
    self (K, V) [R, H, t, HD] or None (updated in place); xkv per layer
    cross (K, V) [R, H, S, HD] (one query: no masks needed)."""
    t0 = 0 if past[0] is None else past[0][0].shape[2]
    x = F.layer_norm(txt["wte"][ids] + txt["wpe"][t0:t0 + ids.shape[1]], (D,), *txt["emb_ln"], eps=1e-12)
    for li, l in enumerate(txt["layers"]):
        k, v = heads(F.linear(x, *l["k"])), heads(F.linear(x, *l["v"]))
        if past[li] is not None:
            k, v = torch.cat([past[li][0], k], dim=2), torch.cat([past[li][1], v], dim=2)
        past[li] = (k, v)
        a = merge(attend(heads(F.linear(x, *l["q"])), k, v, None))
        x = F.layer_norm(F.linear(a, *l["o"]) + x, (D,), *l["ln_sa"], eps=1e-12)
        a = merge(attend(heads(F.linear(x, *l["xq"])), xkv[li][0], xkv[li][1], None))
        x = F.layer_norm(F.linear(a, *l["xo"]) + x, (D,), *l["ln_x"], eps=1e-12)
        h = F.linear(F.gelu(F.linear(x, *l["fc1"])), *l["fc2"])
        x = F.layer_norm(h + x, (D,), *l["ln_ffn"], eps=1e-12)
    h = F.layer_norm(F.gelu(F.linear(x[:, -1], *txt["tr"])), (D,), *txt["tr_ln"], eps=1e-12)
    return F.linear(h, txt["dec"], txt["dec_b"])


def step_hf(txt, ids, past, img_rows):
    """v4.46: the cross K/V projected again from encoder_hidden_states
    (already expanded to the rows) at every step."""
    return step(txt, ids, past, cross_kv(txt, img_rows))


def caption(next_logits, reorder, beams, steps):
    ids = torch.full((beams, 1), DEC_ID, dtype=torch.long, device=DEV)
    scores = torch.zeros(beams, device=DEV)
    scores[1:] = -1e9  # the first step expands beam 0 only, as transformers
    for _ in range(steps):
        lp = F.log_softmax(next_logits(ids[:, -1:]), dim=-1)
        if beams == 1:
            ids = torch.cat([ids, lp.argmax(-1, keepdim=True)], dim=1)
            continue
        top, idx = (lp + scores[:, None]).view(-1).topk(2 * beams)
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
    ap.add_argument("--no-hf", action="store_true", help="skip v4.46's decode (cross K/V redone every step)")
    ap.add_argument("--hf-caption", action="store_true", help="time hf captions instead of encoder + 19 x the step")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process's CPU time (A/B runs on a shared machine: --threads 1 with "
                         "OPENBLAS_NUM_THREADS=1, against bench_blip --threads 1 --cpu-time)")
    tdev.add_args(ap)
    a = ap.parse_args()
    global DEV
    DEV = tdev.setup(a)

    def clock():  # after the device's queued work
        tdev.sync(DEV)
        return time.process_time() if a.cpu_time else time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"bench_blip_torch: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'F32' if DEV.type == 'cpu' else tdev.describe(DEV, a)}")
    res = {}

    def timed(fn, iters=a.iters):
        fn()  # warm-up
        ts = []
        for _ in range(iters):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return statistics.median(ts)

    with torch.inference_mode(), tdev.autocast(DEV, a):
        vis, txt = weights()
        px = torch.randn(a.batch, 3, IMG, IMG, device=DEV)
        for bs in (1, a.batch):
            dt = timed(lambda: encode(vis, px[:bs]))
            res[f"enc_b{bs}_ips"] = bs / dt
            print(f"encoder (ViT-B/16 384 px) batch {bs}: {dt * 1e3:8.1f} ms/batch  {bs / dt:6.2f} images/s")
        img = encode(vis, px[:1])
        res["kv_setup_ms"] = timed(lambda: cross_kv(txt, img)) * 1e3

        def steps(rows, hf):
            xkv = None if hf else [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                                   for k, v in cross_kv(txt, img)]
            img_rows = img.repeat_interleave(rows, dim=0)  # _expand_inputs_for_generation
            past, n = [None] * L_TXT, a.tokens if not hf else 3
            ids = torch.full((rows, 1), DEC_ID, dtype=torch.long, device=DEV)
            t0 = clock()
            for t in range(n):
                (step_hf(txt, ids, past, img_rows) if hf else step(txt, ids, past, xkv)).cpu()  # host logits
                ids = torch.tensor([[1000 + (t * 7919 + r * 104729) % (V - 1000)] for r in range(rows)], device=DEV)
            return (clock() - t0) / n

        for rows, key in ((1, "greedy_ms_tok"), (4, "beam4_ms_step")):
            steps(rows, False)
            res[key] = statistics.median(steps(rows, False) for _ in range(a.iters)) * 1e3
            print(f"decoder (cached cross K/V) {'greedy' if rows == 1 else 'beam 4'}: {res[key]:8.2f} ms/token "
                  f"(step of {rows} row{'s' if rows > 1 else ''}), cross K/V setup {res['kv_setup_ms']:.1f} ms")

        def cap_cached(beams):
            im = encode(vis, px[:1])
            xkv = [(k.expand(beams, -1, -1, -1), v.expand(beams, -1, -1, -1)) for k, v in cross_kv(txt, im)]
            past = [None] * L_TXT

            def reorder(src):
                for li in range(L_TXT):
                    past[li] = (past[li][0].index_select(0, src), past[li][1].index_select(0, src))
            return caption(lambda ids: step(txt, ids, past, xkv), reorder, beams, 19)

        for beams, key in ((4, "caption_beam4_ms"), (1, "caption_greedy_ms")):
            res[key] = timed(lambda: cap_cached(beams)) * 1e3
            print(f"caption (cached cross K/V), beams {beams}, max_length 20: {res[key]:8.1f} ms per image")

        if not a.no_hf:
            enc_ms = 1e3 / res["enc_b1_ips"]
            for rows, key in ((1, "hf_greedy_ms_step"), (4, "hf_beam4_ms_step")):
                steps(rows, True)
                res[key] = statistics.median(steps(rows, True) for _ in range(max(1, a.iters - 1))) * 1e3
                ck = "hf_caption_beam4_ms" if rows == 4 else "hf_caption_greedy_ms"
                res[ck] = enc_ms + 19 * res[key]
                print(f"v4.46-style step (cross K/V redone), {'greedy' if rows == 1 else 'beam 4'}: "
                      f"{res[key]:8.1f} ms/step; caption = encoder + 19 steps: {res[ck]:8.0f} ms")
                if a.hf_caption:
                    def cap_hf():
                        img_rows = encode(vis, px[:1]).repeat_interleave(rows, dim=0)
                        past = [None] * L_TXT

                        def reorder(src):
                            for li in range(L_TXT):
                                past[li] = (past[li][0].index_select(0, src), past[li][1].index_select(0, src))
                        return caption(lambda ids: step_hf(txt, ids, past, img_rows), reorder, rows, 19)
                    t0 = clock()
                    cap_hf()
                    print(f"  measured hf caption, beams {rows}: {(clock() - t0) * 1e3:8.0f} ms")
    for k, v in res.items():
        print(f"result torch {k} {v:.3f}")


if __name__ == "__main__":
    main()
