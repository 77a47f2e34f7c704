#!/usr/bin/env bash
# probe_attention_layer.sh MODEL_DIR [LAYERS]: which layer of a trained model already looks at the copy sources of
# its answers (docs/training.md, "Attention supervision"). For each layer, train-lm runs 3 steps of restated niah
# task rows (256-512 words, batch 8, seed 224) at a learning rate of 1e-12 (the weights do not move) with
# attention_supervision on that layer, heads "any", and prints the attn_loss averaged over the 3 steps:
# -log(1 - prod_h(1 - p_h)), 0 when some head of the layer puts all its attention on each source.
# LAYERS: a space-separated list (default: every layer of MODEL_DIR). One thread; ~25 s per layer for the target.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1"
bin="${BIN:-build/bin}/proxykv"
layers="${2:-$(python3 -c 'import json,sys; print(*range(json.load(open(sys.argv[1]))["num_hidden_layers"]))' "$model/config.json")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for l in $layers; do
  python3 - "$model" "$l" "$work" <<'PY'
import json, sys
model, layer, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = {
    "model": json.load(open(f"{model}/config.json")), "seed": 224, "out_dir": f"{work}/l{layer}",
    "init_from": model, "threads": 1, "optimizer": {"lr": 1e-12, "warmup_steps": 1},
    "log_every": 3, "checkpoint_every": 0, "eval_every": 0,
    "phases": [{"name": "probe", "steps": 3, "batch": 8, "lr": 1e-12, "mix": {"tasks": 1.0},
                "tasks": ["niah_single", "niah_multikey", "niah_multiquery", "niah_multivalue"],
                "context_min": 256, "context_max": 512, "qa_per_sequence": 4, "answer_separator": "and",
                "answer_restate": True, "context_weight": 0.05, "attention_supervision": 1e-9,
                "attention_supervision_layer": layer, "attention_supervision_heads": "any"}],
}
json.dump(cfg, open(f"{work}/l{layer}.json", "w"))
PY
  loss="$(OPENBLAS_NUM_THREADS=1 "$bin" train-lm --config "$work/l$l.json" 2>&1 | sed -n 's/.* attn_loss \([0-9.]*\).*/\1/p' | tail -n 1)"
  echo "layer $l attn_loss ${loss:-?}"
done
