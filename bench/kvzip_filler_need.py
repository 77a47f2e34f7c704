#!/usr/bin/env python3
"""How much of a context the target's reconstruction needs, and where KVzip's budget goes in the filler.

The haystack is made of 40 fixed sentences (common/src/tasks/vocabulary.cpp, kSentences) in random order, so each
sentence carries a choice (~5.3 bits) that a reconstruction has to read from the cache. For each task file this
prints the share of the prompt's tokens (`<bos> <ctx> words </ctx>`) made of the first two words of every filler
sentence plus every non-filler word but the fact template's `number`, `for`, `is` and `=` (which the target's
KVzip scores leave at <= 0.08 kept at keep 0.3): what this target's reconstruction reads, per
`bench/kvzip_fact_keep.py` and the table below, and the share if one entry per sentence sufficed. With --labels DIR (what `proxykv make-mapper-data` wrote for that
file) it also prints, at token level and keep --rho, the kept share of filler words by their place in the sentence,
and of each sentence's first identifying word (the shortest prefix no other sentence of its haystack shares).

With --joined the file is read as the joined haystack's (`make-tasks --haystack joined`: sentence k without its
".", then "and", then sentence k + 1); the kept shares then also count the second half's first two words
("half 2 word 1", "half 2 word 2"), which a model that knows the pairs need not read.

usage: python3 bench/kvzip_filler_need.py FILE.jsonl [--labels DIR] [--rho 0.3] [--joined]
"""
import argparse
import json
import os
import re
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mapper_labels import read_aligned, token_top  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICTABLE = ("number", "for", "is", "=")


def sentences():
    src = open(os.path.join(ROOT, "common/src/tasks/vocabulary.cpp")).read()
    body = src[src.index("kSentences[]"):]
    body = body[:body.index("};")]
    sents = [s.split() for s in re.findall(r'"([a-z ]+ \.)"', body)]
    if len(sents) < 2:
        raise SystemExit("common/src/tasks/vocabulary.cpp: could not read kSentences")
    return sents


def joined(sents):
    """The joined haystack's sentences (vocabulary.cpp, joined_filler_sentences) and where each one's second half
    starts."""
    out = [s[:-1] + ["and"] + sents[(k + 1) % len(sents)] for k, s in enumerate(sents)]
    return out, {tuple(j): len(s) for j, s in zip(out, sents)}


def parse(words, sents):
    """(start, sentence) of every filler sentence, matched greedily (longest first) left to right."""
    out, p = [], 0
    while p < len(words):
        m = max((s for s in sents if words[p:p + len(s)] == s), key=len, default=None)
        if m is None:
            p += 1
            continue
        out.append((p, m))
        p += len(m)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--labels")
    ap.add_argument("--rho", type=float, default=0.3)
    ap.add_argument("--joined", action="store_true")
    a = ap.parse_args()
    sents = sentences()
    kind_of = {tuple(s): sents for s in sents}  # the sentences a sentence's identifying word is unique among
    half2 = {}
    if a.joined:
        # Short sentences stay in the list: a budget joined sentences cannot make is filled with them.
        joined_sents, half2 = joined(sents)
        kind_of.update({tuple(s): joined_sents for s in joined_sents})
        sents = joined_sents + sents
    ctxs = [json.loads(line) for line in open(a.jsonl)]
    need, least, parsed = defaultdict(list), [], []
    for ctx in ctxs:
        w = ctx["context"].split()
        filler, first2 = [False] * len(w), [False] * len(w)
        sentences_here = parse(w, sents)
        parsed.append(sentences_here)
        for p, m in sentences_here:
            for i in range(len(m)):
                filler[p + i], first2[p + i] = True, i < 2
        facts = sum(1 for i in range(len(w)) if not filler[i] and w[i] not in PREDICTABLE)
        n = facts + sum(1 for i in range(len(w)) if filler[i] and first2[i])
        need[ctx["task"]].append((n + 2) / (len(w) + 3))  # + the sinks <bos> <ctx>; T = words + 3
        least.append((facts + len(sentences_here) + 2) / (len(w) + 3))  # one entry per sentence would do
    allv = [v for vs in need.values() for v in vs]
    print(f"{a.jsonl}: needed share {sum(allv) / len(allv):.3f} ("
          + ", ".join(f"{t} {sum(v) / len(v):.3f}" for t, v in need.items()) + f"); "
          f"with one entry per sentence {sum(least) / len(least):.3f}")
    if not a.labels:
        return
    _, samples = read_aligned(a.labels, a.jsonl, ctxs)
    kept, total = Counter(), Counter()
    for (ctx, _, rows, T, x), sentences_here in zip(samples, parsed):
        top = token_top(x, rows, T, a.rho)
        for p, m in sentences_here:
            for i in range(len(m)):
                kept[i] += (p + 2 + i) in top
                total[i] += 1
            h = half2.get(tuple(m))
            if h is not None:
                for i in range(2):
                    kept[f"half 2 word {i + 1}"] += (p + 2 + h + i) in top
                    total[f"half 2 word {i + 1}"] += 1
            same_kind = kind_of[tuple(m)]
            k = next(k for k in range(1, len(m) + 1) if sum(1 for s in same_kind if s[:k] == m[:k]) == 1)
            kept["identifying word"] += (p + 2 + k - 1) in top
            total["identifying word"] += 1
    print(f"kept share of filler words at keep {a.rho}, token level, by place in the sentence:")
    for key in sorted(total, key=lambda k: (isinstance(k, str), k)):
        label = f"word {key + 1}" if isinstance(key, int) else key
        print(f"  {label:17s} {kept[key] / total[key]:.2f}  ({total[key]})")


if __name__ == "__main__":
    main()
