#!/usr/bin/env python3
"""Which words of the niah facts a layer-level KVzip selection keeps.

Reads the target KVzip labels that `proxykv make-mapper-data` stored (labels.i, [L*H, T], T = <bos> <ctx> words
</ctx>) and the JSONL they came from; per layer, keeps the top `--rho` of the layer's (head, token) entries (the
layer-level budget, sinks not special-cased) and prints, per layer, the kept share of each word of the facts
`the magic number for KEY is d d d d .` and of all other context words.

usage: python3 bench/kvzip_fact_keep.py DATA_DIR FILE.jsonl [--rho 0.3]
"""
import argparse, array, glob, json, struct
from collections import defaultdict

ROLES = ["the", "magic", "number", "for", "KEY", "is", "d", "d", "d", "d", "."]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("jsonl")
    ap.add_argument("--rho", type=float, default=0.3)
    a = ap.parse_args()
    ctxs = [json.loads(line) for line in open(a.jsonl)]
    keep = defaultdict(lambda: [0, 0])
    layers = 0
    index = 0
    for shard in sorted(glob.glob(f"{a.data_dir}/shard-*.safetensors")):
        raw = open(shard, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        samples = json.loads(header["__metadata__"]["samples"])
        for i, _ in enumerate(samples):
            ctx = ctxs[index]
            index += 1
            v = header[f"labels.{i}"]
            s, e = v["data_offsets"]
            x = array.array("f")
            x.frombytes(raw[8 + n + s:8 + n + e])
            rows, T = v["shape"]
            words = ["<bos>", "<ctx>"] + ctx["context"].split() + ["</ctx>"]
            if len(words) != T:
                raise SystemExit(f"{ctx['id']}: {len(words)} words, labels for {T}")
            role = ["other"] * T
            for p, w in enumerate(words):
                if w == "magic" and p >= 1:
                    for q, r in zip(range(p - 1, p + 10), ROLES):
                        role[q] = r
            layers = rows // 2
            heads = rows // layers
            for l in range(layers):
                entries = sorted(((x[(heads * l + h) * T + t], h, t) for h in range(heads) for t in range(T)), reverse=True)
                kept = {(h, t) for _, h, t in entries[: int(a.rho * len(entries))]}
                for h in range(heads):
                    for t in range(T):
                        keep[(l, role[t])][0] += (h, t) in kept
                        keep[(l, role[t])][1] += 1
    print(f"kept share at rho {a.rho}, layer-level budget, {index} contexts of {a.jsonl}")
    print("word     " + " ".join(f"  L{l}  " for l in range(layers)) + "  entries")
    for r in ["the", "magic", "number", "for", "KEY", "is", "d", ".", "other"]:
        k = [keep[(l, r)] for l in range(layers)]
        print(f"{r:8s} " + " ".join(f"{c[0] / max(1, c[1]):6.2f}" for c in k) + f"  {k[0][1]}")


if __name__ == "__main__":
    main()
