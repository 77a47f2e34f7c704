#!/usr/bin/env python3
"""Rewrites a joined-haystack task file (`make-tasks --haystack joined`) with another connector between each joined
sentence's halves: `--word W` puts W where `and` was, `--word ''` drops it. A diagnostic of what the connector does
to a model that was trained without it (bench/RESULTS.md, sixteenth session); the facts and queries are unchanged,
a dropped connector shortens the context by one word per joined sentence.

usage: python3 bench/joined_connector.py IN.jsonl OUT.jsonl --word W
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvzip_filler_need as need  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--word", required=True)
    a = ap.parse_args()
    sents = need.sentences()
    joined, half2 = need.joined(sents)
    every = joined + sents  # a budget joined sentences cannot make is filled with short ones
    with open(a.dst, "w") as out:
        for line in open(a.src):
            ctx = json.loads(line)
            words = ctx["context"].split()
            for p, m in need.parse(words, every):
                h = half2.get(tuple(m))
                if h is not None:
                    assert words[p + h - 1] == "and"
                    words[p + h - 1] = a.word
            ctx["context"] = " ".join(w for w in words if w)
            out.write(json.dumps(ctx) + "\n")


if __name__ == "__main__":
    main()
