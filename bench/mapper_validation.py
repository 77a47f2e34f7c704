#!/usr/bin/env python3
"""Best-epoch validation of trained mappers, as a markdown table for bench/RESULTS.md and docs/training.md.

    python3 bench/mapper_validation.py MAPPER_DIR|HISTORY.json [...]

Reads each directory's train_history.json, or a copy of one named directly (written by `proxykv train-mapper`;
epochs counted from 1), and prints the epoch with the best validation mean top-rho recall: its recall per ratio, the mean and the Spearman correlation.
"""
import json
import re
import sys


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("| mapper | best epoch | recall at rho " + " / ".join(["0.1", "0.2", "0.3", "0.5", "0.7"]) +
          " | mean | Spearman |")
    print("| --- | --- | --- | --- | --- |")
    for d in sys.argv[1:]:
        path = d if d.endswith(".json") else d.rstrip("/") + "/train_history.json"
        history = json.load(open(path))
        epochs = history["epochs"] if isinstance(history, dict) else history
        best = max(epochs, key=lambda e: e["val_mean_recall"])
        recall = " / ".join(f"{best['val_recall'][r]:.3f}" for r in sorted(best["val_recall"], key=float))
        # a directory's name, or a copied history's: NAME-train_history.json -> NAME
        name = re.sub(r"([-_]?train_history)?\.json$", "", d.rstrip("/").rsplit("/", 1)[-1])
        print(f"| {name} | {best['epoch']} | {recall} | {best['val_mean_recall']:.3f} | "
              f"{best['val_spearman']:.3f} |")


if __name__ == "__main__":
    main()
