#!/usr/bin/python3
"""Writes a PaliGemma checkpoint at google/paligemma-3b-mix-224's shapes with
seeded random BF16 weights, in the layout the Hub publishes (config.json,
model-0000N-of-0000M.safetensors shards and model.safetensors.index.json;
tensor names of transformers v4.46's PaliGemmaForConditionalGeneration):
SigLIP-So400m/14 at 224 px (27 layers of 1152, MLP 4304), the projector to
2048, Gemma-2B (18 layers, 8 heads of 256, 1 KV head, MLP 16384, vocabulary
257216 rows as published; the tied lm_head is not stored). 2.92e9
parameters, 5.9 GB. For bench/bench_paligemma.sh --full: narrator and
bench_paligemma_torch.py read the same files.

    /usr/bin/python3 bench/make_paligemma_checkpoint.py OUT_DIR [--layers 18] [--vocab 257216] [--seed 0]

Weights N(0, 0.02) (norm weights 0: RMSNorm's 1 + w is 1; layer norms 1
and 0), written tensor by tensor (no whole model in memory). Skips the work
when OUT_DIR already holds the same recipe."""
import json
import os
import struct
import sys

import torch

SHARD_BYTES = 2 << 30  # the shards' size bound (the Hub's are a few GB)


def tensors(layers, vocab):
    """(name, shape, kind) in name order; kind: w (random), one, zero."""
    Dv, Iv, Lv, P, S = 1152, 4304, 27, 14, 256
    D, I, QW, KW = 2048, 16384, 8 * 256, 256
    t = []
    v = "vision_tower.vision_model."
    t += [(v + "embeddings.patch_embedding.weight", (Dv, 3, P, P), "w"), (v + "embeddings.patch_embedding.bias", (Dv,), "w"),
          (v + "embeddings.position_embedding.weight", (S, Dv), "w"), (v + "post_layernorm.weight", (Dv,), "one"),
          (v + "post_layernorm.bias", (Dv,), "zero")]
    for i in range(Lv):
        q = v + "encoder.layers.%d." % i
        for k in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += [(q + "self_attn.%s.weight" % k, (Dv, Dv), "w"), (q + "self_attn.%s.bias" % k, (Dv,), "w")]
        t += [(q + "mlp.fc1.weight", (Iv, Dv), "w"), (q + "mlp.fc1.bias", (Iv,), "w"),
              (q + "mlp.fc2.weight", (Dv, Iv), "w"), (q + "mlp.fc2.bias", (Dv,), "w")]
        for n in ("layer_norm1", "layer_norm2"):
            t += [(q + n + ".weight", (Dv,), "one"), (q + n + ".bias", (Dv,), "zero")]
    t += [("multi_modal_projector.linear.weight", (D, Dv), "w"), ("multi_modal_projector.linear.bias", (D,), "w"),
          ("language_model.model.embed_tokens.weight", (vocab, D), "w"),
          ("language_model.model.norm.weight", (D,), "zero")]
    for i in range(layers):
        q = "language_model.model.layers.%d." % i
        t += [(q + "self_attn.q_proj.weight", (QW, D), "w"), (q + "self_attn.k_proj.weight", (KW, D), "w"),
              (q + "self_attn.v_proj.weight", (KW, D), "w"), (q + "self_attn.o_proj.weight", (D, QW), "w"),
              (q + "mlp.gate_proj.weight", (I, D), "w"), (q + "mlp.up_proj.weight", (I, D), "w"),
              (q + "mlp.down_proj.weight", (D, I), "w"), (q + "input_layernorm.weight", (D,), "zero"),
              (q + "post_attention_layernorm.weight", (D,), "zero")]
    return sorted(t)


def config(layers, vocab):
    # the published config.json's keys (what differs from the defaults)
    return {"architectures": ["PaliGemmaForConditionalGeneration"], "bos_token_id": 2, "eos_token_id": 1,
            "hidden_size": 2048, "ignore_index": -100, "image_token_index": 257152, "model_type": "paligemma",
            "pad_token_id": 0, "projection_dim": 2048,
            "text_config": {"hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma",
                            "num_attention_heads": 8, "num_hidden_layers": layers, "num_image_tokens": 256,
                            "num_key_value_heads": 1, "torch_dtype": "bfloat16", "vocab_size": vocab},
            "torch_dtype": "bfloat16", "transformers_version": "4.46.0",
            "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "model_type": "siglip_vision_model",
                              "num_attention_heads": 16, "num_hidden_layers": 27, "num_image_tokens": 256,
                              "patch_size": 14, "projection_dim": 2048, "projector_hidden_act": "gelu_fast",
                              "vision_use_head": False},
            "vocab_size": vocab}


def main():
    a = sys.argv[1:]
    if not a or a[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if a else 2
    out, opts = a[0], dict(zip(a[1::2], a[2::2]))
    layers, vocab, seed = int(opts.get("--layers", 18)), int(opts.get("--vocab", 257216)), int(opts.get("--seed", 0))
    recipe = "paligemma-bf16-random-v1 layers %d vocab %d seed %d\n" % (layers, vocab, seed)
    stamp = os.path.join(out, "RECIPE")
    if os.path.exists(stamp) and open(stamp).read() == recipe:
        print("make_paligemma_checkpoint: %s is up to date" % out)
        return 0
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("model") or f == "RECIPE":
            os.remove(os.path.join(out, f))
    ts = tensors(layers, vocab)
    shards, cur, size = [], [], 0
    for name, shape, kind in ts:
        n = 2 * int(torch.tensor(shape).prod())
        if cur and size + n > SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape, kind))
        size += n
    shards.append(cur)
    g = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for s, part in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, len(shards))
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in part:
            n = 2 * int(torch.tensor(shape).prod())
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        total += off
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(out, fname), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            for name, shape, kind in part:
                if kind == "w":  # in row blocks: no whole F32 matrix at once
                    rows = max(1, (16 << 20) // max(1, int(torch.tensor(shape[1:]).prod())))
                    for r0 in range(0, shape[0], rows):
                        blk = (torch.randn((min(rows, shape[0] - r0),) + tuple(shape[1:]), generator=g) * 0.02)
                        f.write(blk.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
                else:
                    f.write((torch.ones if kind == "one" else torch.zeros)(shape, dtype=torch.bfloat16)
                            .view(torch.int16).numpy().tobytes())
        print("make_paligemma_checkpoint: %s (%.2f GB)" % (fname, off / 1e9), flush=True)
    files = {"model.safetensors.index.json": {"metadata": {"total_size": total}, "weight_map": weight_map},
             "config.json": config(layers, vocab),
             "generation_config.json": {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
                                        "transformers_version": "4.46.0"}}
    for f, obj in files.items():
        with open(os.path.join(out, f), "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
    with open(stamp, "w") as fh:
        fh.write(recipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
