#!/usr/bin/env python3
"""Markdown tables from `proxykv eval` results JSON files, for bench/RESULTS.md.

    python3 bench/results_table.py [--per-task] [--vs METHOD [--per-ratio]] [--recall] R1.json [R2.json ...]
    python3 bench/results_table.py --means --vs METHOD R1.json R2.json ...

One table per file: a row per method, a column per keep ratio, accuracy over all queries (the file's `summary`),
then full's accuracy and the retention accuracy/full at each ratio; --vs kvzip adds accuracy/kvzip. --per-ratio
then lists, per method, accuracy/METHOD at each ratio and their mean. --recall lists recall_vs_kvzip (the share of
KVzip's kept entries a method keeps too, query-weighted over the tasks) per ratio. --per-task adds one row per
(method, task). --means prints one table for all files instead: a row per method, per file the mean over the ratios
of accuracy/METHOD and of accuracy/full (methods missing from a file get a blank cell).
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--per-task", action="store_true")
    ap.add_argument("--vs", default="")
    ap.add_argument("--per-ratio", action="store_true")
    ap.add_argument("--recall", action="store_true")
    ap.add_argument("--means", action="store_true")
    a = ap.parse_args()
    if a.means:
        if not a.vs:
            raise SystemExit("--means needs --vs METHOD")
        means_table(a.files, a.vs)
        return
    for path in a.files:
        d = json.load(open(path))
        summary = d["summary"]
        ratios = sorted({round(r["keep_ratio"], 3) for r in summary if r["method"] != "full"})
        full = next((r["accuracy"] for r in summary if r["method"] == "full"), None)
        queries = max(r.get("queries", 0) for r in summary)
        acc = {(r["method"], round(r["keep_ratio"], 3)): r for r in summary}
        methods = [m for m in dict.fromkeys(r["method"] for r in summary) if m != "full"]
        print(f"\n{path}: accuracy over {queries} queries; full {full:.3f}\n")
        print("| method | " + " | ".join(f"rho {x}" for x in ratios) + " | mean acc / full |" +
              (f" mean acc / {a.vs} |" if a.vs else ""))
        print("| --- " * (len(ratios) + 2 + (1 if a.vs else 0)) + "|")
        for m in methods:
            cells = [acc[(m, x)]["accuracy"] if (m, x) in acc else float("nan") for x in ratios]
            ret = sum(c / full for c in cells) / len(cells) if full else float("nan")
            line = f"| {m} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {ret:.3f} |"
            if a.vs:
                base = [acc[(a.vs, x)]["accuracy"] for x in ratios]
                rel = [c / b if b else float("nan") for c, b in zip(cells, base)]
                line += f" {sum(rel) / len(rel):.3f} |"
            print(line)
        kv = {x: acc[(methods[0], x)]["kv_bytes"] for x in ratios if (methods[0], x) in acc}
        full_bytes = acc.get(("full", 1.0), {}).get("kv_bytes")
        if full_bytes:
            print("\nkv_bytes / full: " + ", ".join(f"rho {x}: {kv[x] / full_bytes:.3f}" for x in kv))
        if a.vs and a.per_ratio:
            print(f"\naccuracy / {a.vs} at rho {' / '.join(str(x) for x in ratios)}, then the mean:\n")
            for m in methods:
                if m == a.vs:
                    continue
                rel = [acc[(m, x)]["accuracy"] / acc[(a.vs, x)]["accuracy"] if acc[(a.vs, x)]["accuracy"]
                       else float("nan") for x in ratios]
                print(f"- `{m}`: " + " / ".join(f"{r:.2f}" for r in rel) + f", mean **{sum(rel) / len(rel):.3f}**")
        if a.recall:
            rec = {}
            for r in d["results"]:
                if "recall_vs_kvzip" in r:
                    s = rec.setdefault((r["method"], round(r["keep_ratio"], 3)), [0.0, 0])
                    s[0] += r["recall_vs_kvzip"] * r["queries"]
                    s[1] += r["queries"]
            print(f"\nrecall_vs_kvzip at rho {' / '.join(str(x) for x in ratios)}:\n")
            for m in methods:
                if (m, ratios[0]) in rec:
                    print(f"- `{m}`: " + " / ".join(f"{rec[(m, x)][0] / rec[(m, x)][1]:.3f}" for x in ratios))
        if a.per_task:
            rows = d["results"]
            tasks = list(dict.fromkeys(r["task"] for r in rows))
            print("\n| method | task | full | " + " | ".join(f"rho {x}" for x in ratios) + " |")
            print("| --- " * (len(ratios) + 3) + "|")
            per = {(r["method"], r["task"], round(r["keep_ratio"], 3)): r["accuracy"] for r in rows}
            for m in methods:
                for t in tasks:
                    print(f"| {m} | {t} | {per.get(('full', t, 1.0), float('nan')):.3f} | " +
                          " | ".join(f"{per.get((m, t, x), float('nan')):.3f}" for x in ratios) + " |")


def mean_ratios(summary, method, vs):
    """(mean over the keep ratios of accuracy(method) / accuracy(vs), the same of accuracy(method) / full)."""
    full = next(r["accuracy"] for r in summary if r["method"] == "full")
    acc = {(r["method"], round(r["keep_ratio"], 3)): r["accuracy"] for r in summary}
    ratios = sorted({x for (m, x) in acc if m != "full"})
    cells = [acc[(method, x)] for x in ratios]
    base = [acc[(vs, x)] for x in ratios]
    return (sum(c / b if b else float("nan") for c, b in zip(cells, base)) / len(cells),
            sum(c / full for c in cells) / len(cells))


def means_table(files, vs):
    per_file, methods = [], {}
    for path in files:
        summary = json.load(open(path))["summary"]
        out = {}
        for m in dict.fromkeys(r["method"] for r in summary if r["method"] != "full"):
            methods[m] = None
            out[m] = mean_ratios(summary, m, vs)
        per_file.append(out)
    names = [path.rsplit("/", 1)[-1].removesuffix(".json") for path in files]
    print("| method | " + " | ".join(f"{n}: acc / {vs} | {n}: acc / full" for n in names) + " |")
    print("| --- " * (1 + 2 * len(files)) + "|")
    for m in methods:
        cells = [f"{f[m][0]:.3f} | {f[m][1]:.3f}" if m in f else " | " for f in per_file]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
