#!/usr/bin/python3
"""Writes tests/models_beam_cases.json: expected beam-search ids for the tiny
fixture checkpoint over 72 settings (num_beams 2/3/4 x length_penalty
0.5/1/2/-0.5 x early_stopping true/false/"never" x max_length 5/16), on the 3
batch.hidden_states, from the independent reference
tests/fixtures/reference_vit_gpt2.py (float64). test_models.c checks the C
engine against it. Run: /usr/bin/python3 tests/make_models_beam_cases.py"""
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "fixtures"))
import reference_vit_gpt2 as ref  # noqa: E402

ck = ref.Checkpoint(os.path.join(here, "fixtures", "vit-gpt2-tiny"), dtype=torch.float64)
arrays, _ = ref.read_safetensors(os.path.join(here, "fixtures", "vit-gpt2-tiny-reference.safetensors"))
enc = torch.from_numpy(arrays["batch.hidden_states"].astype("float64"))
cases = []
for nb in (2, 3, 4):
    for lp in (0.5, 1.0, 2.0, -0.5):
        for es in (True, False, "never"):
            for ml in (5, 16):
                ids, scores = ref.beam_search(ck, enc, nb, ml, 50256, 50256, length_penalty=lp, early_stopping=es)
                cases.append({"num_beams": nb, "length_penalty": lp,
                              "early_stopping": 1 if es is True else (0 if es is False else -1),
                              "max_length": ml, "ids": [list(map(int, x)) for x in ids],
                              "scores": [float(s) for s in scores]})
with open(os.path.join(here, "models_beam_cases.json"), "w") as f:
    json.dump({"source": "tests/make_models_beam_cases.py", "cases": cases}, f, indent=0)
print(f"wrote {len(cases)} cases")
