#!/usr/bin/python3
"""Writes tests/models_beam_cases.json (and the encoder states it needs that
no fixture file holds, tests/models_beam_states.safetensors): expected
beam-search ids from the independent reference
tests/fixtures/reference_vit_gpt2.py (float64; transformers v4.46
BeamSearchScorer semantics) over 72 settings (num_beams 2/3/4 x
length_penalty 0.5/1/2/-0.5 x early_stopping true/false/"never" x
max_length 5/16) for each set of encoder states:

  0  vit-gpt2-tiny, its 3 photos (batch.hidden_states of the reference file)
  1  vit-gpt2-tiny, 4 random images (pixels uniform in [-1, 1], seed 1461)
  2  vit-gpt2-tiny-proj (encoder 48 -> enc_to_dec_proj -> decoder 32), its 3 photos
  3  vit-gpt2-tiny-proj, 4 random images (seed 2718)

Each case records eos_best_steps: the steps where a caption not yet done had
an eos as the best of its 2*num_beams candidates and went on, the steps where
the stop rule matters (transformers tests the best of all candidates, not the
best beam that continues).  test_models.c checks the C engine against every
case.  Run: /usr/bin/python3 tests/make_models_beam_cases.py"""
import json
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
fx = os.path.join(here, "fixtures")
sys.path.insert(0, fx)
import reference_vit_gpt2 as ref  # noqa: E402

STATES = os.path.join(here, "models_beam_states.safetensors")
SETS = [  # checkpoint, states file, tensor, random seed (None: read the tensor)
    ("vit-gpt2-tiny", "tests/fixtures/vit-gpt2-tiny-reference.safetensors", "batch.hidden_states", None),
    ("vit-gpt2-tiny", "tests/models_beam_states.safetensors", "vit-gpt2-tiny.random", 1461),
    ("vit-gpt2-tiny-proj", "tests/fixtures/vit-gpt2-tiny-proj-reference.safetensors", "batch.hidden_states", None),
    ("vit-gpt2-tiny-proj", "tests/models_beam_states.safetensors", "vit-gpt2-tiny-proj.random", 2718),
]

written = {}
sets, cases = [], []
for si, (name, sfile, tensor, seed) in enumerate(SETS):
    ck = ref.Checkpoint(os.path.join(fx, name), dtype=torch.float64)
    gs = ref.generation_settings(ck)
    if seed is None:
        arrays, _ = ref.read_safetensors(os.path.join(here, "..", sfile))
        enc32 = arrays[tensor]
    else:
        g = torch.Generator().manual_seed(seed)
        size = ck.enc["image_size"]
        pv = torch.rand(4, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1
        enc32 = ref.vit_encode(ck, pv).float().numpy()
        written[tensor] = ("F32", enc32)
    enc = torch.from_numpy(enc32.astype("float64"))
    sets.append({"checkpoint": "tests/fixtures/" + name, "states_file": sfile, "states": tensor,
                 "images": int(enc.shape[0])})
    for nb in (2, 3, 4):
        for lp in (0.5, 1.0, 2.0, -0.5):
            for es in (True, False, "never"):
                for ml in (5, 16):
                    stats = {}
                    ids, scores = ref.beam_search(ck, enc, nb, ml, gs["start"], gs["eos"], length_penalty=lp,
                                                  early_stopping=es, stats=stats)
                    cases.append({"set": si, "num_beams": nb, "length_penalty": lp,
                                  "early_stopping": 1 if es is True else (0 if es is False else -1),
                                  "max_length": ml, "eos_best_steps": stats.get("eos_best_steps", 0),
                                  "ids": [list(map(int, x)) for x in ids],
                                  "scores": [round(float(s), 9) for s in scores]})
ref.write_safetensors(STATES, written, {"format": "pt", "source": "tests/make_models_beam_cases.py"})
with open(os.path.join(here, "models_beam_cases.json"), "w") as f:
    f.write('{\n"source": "tests/make_models_beam_cases.py",\n"rule": "transformers v4.46 BeamSearchScorer",\n')
    f.write('"sets": [\n' + ",\n".join(json.dumps(s) for s in sets) + "\n],\n")
    f.write('"cases": [\n' + ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases) + "\n]\n}\n")
lists = sum(len(c["ids"]) for c in cases)
eos = [c for c in cases if c["eos_best_steps"] > 0]
print(f"wrote {len(cases)} cases ({lists} id lists); {len(eos)} cases have a step whose best candidate is eos "
      f"and the caption goes on ({sum(c['eos_best_steps'] for c in eos)} such steps)")
