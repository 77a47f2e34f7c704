#!/usr/bin/env python3
"""How a global top-k budget splits over the target's (layer, KV head) rows, from make-mapper-data labels.

    python3 bench/kvzip_budget.py SHARD.safetensors [--sample 0] [--ratios 0.1,0.2,0.3]

The labels (`labels.N`, [L*H, T], the target's KVzip scores; sinks +inf) of sample N: per row the median / p90 /
max score, and per keep ratio how many of the global top-(rho * L*H*T) entries each row gets. bench/RESULTS.md
("Compression methods on the family") quotes it on the step-14600 target:
    grep niah_single build/fe/data/methods-512.jsonl | head -2 > /tmp/ns2.jsonl   # family_eval's methods-512 file
    build/bin/proxykv make-mapper-data --proxy models/proxy-v1 --target DIR --data /tmp/ns2.jsonl --out /tmp/md
with DIR the step-14600 target (config.json, tokenizer.json and `git show 50ea283:models/target/model.safetensors`).
    python3 bench/kvzip_budget.py /tmp/md/shard-00000.safetensors
Pure Python (no numpy): the labels come from bench/mapper_labels.py.
"""
import argparse
import math

from mapper_labels import read_shard


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shard")
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--ratios", default="0.1,0.2,0.3")
    a = ap.parse_args()
    _, rows_n, t, values = read_shard(a.shard)[a.sample]
    rows = [list(values[i * t:(i + 1) * t]) for i in range(rows_n)]
    finite = sorted(((v, i) for i, r in enumerate(rows) for v in r if not math.isinf(v)), reverse=True)
    print(f"sample {a.sample}: {rows_n} rows (layer-major: L0h0 L0h1 L1h0 ...) x {t} tokens")
    for i, r in enumerate(rows):
        f = sorted(v for v in r if not math.isinf(v))
        print(f"row {i}: median {f[len(f) // 2]:.3f}  p90 {f[int(len(f) * 0.9)]:.3f}  max {f[-1]:.3f}")
    for rho in (float(x) for x in a.ratios.split(",")):
        k = int(rho * rows_n * t)
        count = [0] * rows_n
        for _, i in finite[:k]:
            count[i] += 1
        print(f"rho {rho}: global top-{k} entries per row {count}")


if __name__ == "__main__":
    main()
