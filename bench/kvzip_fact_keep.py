#!/usr/bin/env python3
"""Which words of the niah facts (and of variable_tracking's statements) a layer-level KVzip selection keeps.

Reads the target KVzip labels that `proxykv make-mapper-data` stored (labels.i, [L*H, T], T = <bos> <ctx> words
</ctx>) and the JSONL they came from; per layer, keeps the top `--rho` of the layer's (head, token) entries (the
layer-level budget, sinks not special-cased) and prints, per layer, the kept share of each word of the facts
`the magic number for KEY is d d d d .` and of all other context words.

With --per-head the share is printed per (layer, KV head) row: a layer's budget may sit on one of its heads.
With --level token the top `--rho` of the tokens by their best score over every row is kept in every row (the
selection level `token`). The row `all 4 d` is the share of facts whose four digits are all kept. With --feature
NAME the scores are that proxy feature channel (`features.i`, one row per proxy head) instead of the labels, e.g.
`--feature kvzip --level token` is how proxy_direct selects. The rows d1-d4 are the digits by their place in the
number (a fact is answerable only when all four stay). Statements `var KEY = RHS .` of variable_tracking are counted
in the rows var, LHS, =, RHS d (a digit of a number), RHS key and `.`(var). With --row-norm rank|mean each row is normalised before
the token-level max (its ranks scaled to [0, 1), or divided by its mean), a check of whether the copy head's larger
scores crowd the other rows out of the token ranking.

usage: python3 bench/kvzip_fact_keep.py DATA_DIR FILE.jsonl [--rho 0.3] [--per-head] [--level layer|token]
       [--feature NAME] [--row-norm none|rank|mean]
"""
import argparse
import json
import math
from collections import defaultdict

from mapper_labels import read_aligned, token_top

ROLES = ["the", "magic", "number", "for", "KEY", "is", "d1", "d2", "d3", "d4", "."]
ROWS = ["the", "magic", "number", "for", "KEY", "is", "d", "d1", "d2", "d3", "d4", ".", "var", "LHS", "=", "RHS d",
        "RHS key", ".(var)", "other", "all 4 d"]


def normalise_rows(x, rows, T, how):
    """Each row's finite entries as ranks / T (rank) or divided by their mean (mean); sinks (+inf) stay on top."""
    out = [0.0] * (rows * T)
    for r in range(rows):
        row = x[r * T:(r + 1) * T]
        finite = [t for t in range(T) if math.isfinite(row[t])]
        if how == "rank":
            for i, t in enumerate(sorted(finite, key=lambda t: row[t])):
                out[r * T + t] = i / T
        else:
            mean = sum(row[t] for t in finite) / max(1, len(finite))
            for t in finite:
                out[r * T + t] = row[t] / mean if mean else 0.0
        for t in range(T):
            if not math.isfinite(row[t]):
                out[r * T + t] = math.inf
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("jsonl")
    ap.add_argument("--rho", type=float, default=0.3)
    ap.add_argument("--per-head", action="store_true", help="one column per (layer, KV head)")
    ap.add_argument("--level", choices=["layer", "token"], default="layer")
    ap.add_argument("--feature", help="score with this proxy feature channel instead of the labels")
    ap.add_argument("--row-norm", choices=["none", "rank", "mean"], default="none",
                    help="normalise each row before the token-level max")
    a = ap.parse_args()
    ctxs = [json.loads(line) for line in open(a.jsonl)]
    manifest, samples = read_aligned(a.data_dir, a.jsonl, ctxs, a.feature)
    heads = manifest["proxy" if a.feature else "target"]["kv_heads"]
    keep = defaultdict(lambda: [0, 0])
    for ctx, words, rows, T, x in samples:
        layers = rows // heads
        role = ["other"] * T
        for p, w in enumerate(words):
            if w == "magic" and p >= 1:
                for q, r in zip(range(p - 1, p + 10), ROLES):
                    role[q] = r
            elif w == "var" and p + 3 < T:
                role[p], role[p + 1], role[p + 2] = "var", "LHS", "="
                q = p + 3
                while q < T and words[q] != ".":
                    role[q] = "RHS key" if words[q].startswith("k") else "RHS d"
                    q += 1
                if q < T:
                    role[q] = ".(var)"
        if a.level == "token":  # ties: the earlier token first, as select_entries
            if a.row_norm != "none":
                x = normalise_rows(x, rows, T, a.row_norm)
            top = token_top(x, rows, T, a.rho)
        for l in range(layers):
            if a.level == "token":
                kept = {(h, t) for h in range(heads) for t in top}
            else:
                entries = sorted(((x[(heads * l + h) * T + t], h, t) for h in range(heads) for t in range(T)),
                                 reverse=True)
                kept = {(h, t) for _, h, t in entries[: int(a.rho * len(entries))]}
            for h in range(heads):
                for t in range(T):
                    col = (l, h) if a.per_head else (l,)
                    for r in (role[t], "d") if role[t] in ("d1", "d2", "d3", "d4") else (role[t],):
                        keep[(col, r)][0] += (h, t) in kept
                        keep[(col, r)][1] += 1
                for p, w in enumerate(words):  # the four digits of each fact, all kept?
                    if w == "magic" and p + 8 < T:
                        keep[(col, "all 4 d")][0] += all((h, q) in kept for q in range(p + 5, p + 9))
                        keep[(col, "all 4 d")][1] += 1
    print(f"kept share at rho {a.rho}, {a.level}-level budget, {len(ctxs)} contexts of {a.jsonl}")
    cols = [(l, h) for l in range(layers) for h in range(heads)] if a.per_head else [(l,) for l in range(layers)]
    print("word     " + " ".join(f"{'L%dh%d' % c if a.per_head else 'L%d' % c:>6s}" for c in cols) + "  entries")
    for r in ROWS:
        k = [keep[(c, r)] for c in cols]
        if k[0][1] == 0:
            continue
        print(f"{r:8s} " + " ".join(f"{c[0] / max(1, c[1]):6.2f}" for c in k) + f"  {k[0][1]}")


if __name__ == "__main__":
    main()
