#!/usr/bin/python3
"""Converts a Hugging Face pytorch_model.bin into model.safetensors with only
torch and the standard library (no safetensors package needed):
    /usr/bin/python3 models/convert_bin.py CHECKPOINT_DIR
Writes CHECKPOINT_DIR/model.safetensors (tensor names unchanged, header
padded to 8 bytes, metadata {"format": "pt"}). Tied tensors are written
once per name; narrator ignores decoder.lm_head.weight's tie anyway.
Only load .bin files you trust: torch.load unpickles."""
import json
import os
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
          torch.uint8: "U8", torch.bool: "BOOL"}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    d = sys.argv[1]
    src, dst = os.path.join(d, "pytorch_model.bin"), os.path.join(d, "model.safetensors")
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        sd = torch.load(src, map_location="cpu")
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(sd):
        t = sd[name].detach().contiguous()
        if t.dtype not in DTYPES:
            print(f"convert_bin: {name}: dtype {t.dtype} not supported", file=sys.stderr)
            return 1
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = dst + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, dst)
    print(f"convert_bin: wrote {dst} ({len(sd)} tensors, {off} bytes of data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
