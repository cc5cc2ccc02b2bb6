#!/usr/bin/python3
"""narrator against PyTorch on the same device, from their "result TAG KEY
VALUE" lines (bench_git / bench_blip / bench_paligemma --device D print TAG
= D; the *_torch.py scripts print TAG = torch). Prints a Markdown table:
each key both sides have, and narrator's whole caption against PyTorch's
transformers-style generate (hf_caption_*) where the script measured it.
The ratio is how many times faster narrator is (images/s: narrator /
PyTorch; milliseconds: PyTorch / narrator).

    bench/gpu_compare.py --title "GIT-base, H100, F32" --narrator git.log --tag cuda:0 --torch git-torch.log
"""
import argparse
import sys


def results(path, tag):
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        sys.exit(f"gpu_compare: {e}")
    for line in lines:
        f = line.split()
        if len(f) == 4 and f[0] == "result" and f[1] == tag:
            out[f[2]] = float(f[3])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", required=True)
    ap.add_argument("--narrator", required=True, help="narrator's log")
    ap.add_argument("--tag", required=True, help="the device narrator ran on (its result lines' tag)")
    ap.add_argument("--torch", required=True, help="the PyTorch script's log")
    a = ap.parse_args()
    n, t = results(a.narrator, a.tag), results(a.torch, "torch")
    print(f"\n#### {a.title}\n")
    if not n or not t:
        print(f"(no results: narrator {len(n)} values for {a.tag} in {a.narrator}, PyTorch {len(t)} in {a.torch})")
        return 1
    print("| figure | narrator | PyTorch | narrator faster by |")
    print("| --- | --- | --- | --- |")
    pairs = [(k, k) for k in n if k in t]
    pairs += [(k, "hf_" + k) for k in ("caption_beam4_ms", "caption_greedy_ms") if k in n and "hf_" + k in t]
    for nk, tk in pairs:
        if nk.startswith("rss") or nk.endswith("_mb"):
            continue
        nv, tv = n[nk], t[tk]
        ratio = (nv / tv if nk.endswith("_ips") else tv / nv) if nv > 0 and tv > 0 else float("nan")
        name = nk if nk == tk else f"{nk} (PyTorch: transformers-style generate)"
        print(f"| {name} | {nv:.3f} | {tv:.3f} | **{ratio:.2f}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
