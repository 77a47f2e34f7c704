#!/usr/bin/env python3
"""Seed-to-seed spread of a recipe's accuracy, from `proxykv eval` results JSON files, for bench/RESULTS.md.

    python3 bench/seed_spread.py --vs kvzip [--rename OLD=NEW ...] LABEL=R1.json[,R2.json ...] [LABEL=...]

Each LABEL (say a context length) names one or more results files evaluated on the same task file (eval is
deterministic, so rows that two files share are identical; a method found in several files is taken from the
first). Methods named BASE_seedS are grouped by BASE; --rename gives a method of another run its seeded name
(`proxykv=proxykv_seed1`, `no_mse_mix=no_mse_seed1`). Per group and label: the mean over rho of accuracy / METHOD
(the --vs method), per seed, then their mean and range; the same for accuracy / full.
"""
import argparse
import json
import re

from results_table import mean_ratios  # bench/ is on sys.path when this runs as a script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vs", required=True)
    ap.add_argument("--rename", action="append", default=[])
    ap.add_argument("groups", nargs="+", help="LABEL=FILE[,FILE...]")
    a = ap.parse_args()
    rename = dict(r.split("=", 1) for r in a.rename)
    labels, table = [], {}  # table[base][seed][label] = (acc/vs, acc/full)
    for group in a.groups:
        label, files = group.split("=", 1)
        labels.append(label)
        seen = set()
        for path in files.split(","):
            summary = json.load(open(path))["summary"]
            for m in dict.fromkeys(r["method"] for r in summary):
                name = rename.get(m, m)
                match = re.fullmatch(r"(.+)_seed(\d+)", name)
                if not match or name in seen:
                    continue
                seen.add(name)
                base, seed = match.group(1), int(match.group(2))
                table.setdefault(base, {}).setdefault(seed, {})[label] = mean_ratios(summary, m, a.vs)
    if not table:
        raise SystemExit("seed_spread.py: no method named BASE_seedS (use --rename)")
    print("| recipe | seed | " + " | ".join(f"{l}: acc / {a.vs} | {l}: acc / full" for l in labels) + " |")
    print("| --- " * (2 + 2 * len(labels)) + "|")
    for base, seeds in table.items():
        for seed in sorted(seeds):
            cells = [f"{seeds[seed][l][0]:.3f} | {seeds[seed][l][1]:.3f}" if l in seeds[seed] else " | "
                     for l in labels]
            print(f"| {base} | {seed} | " + " | ".join(cells) + " |")
        cells = []
        for l in labels:
            for k in (0, 1):
                v = [seeds[s][l][k] for s in seeds if l in seeds[s]]
                cells.append(f"**{sum(v) / len(v):.3f}** ({min(v):.3f}-{max(v):.3f})" if v else "")
        print(f"| {base} | mean (range) of {len(seeds)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
