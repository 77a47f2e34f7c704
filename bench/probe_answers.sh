#!/usr/bin/env bash
# probe_answers.sh MODEL_DIR FILE.jsonl [QUERIES]: the greedy answer of each query (at most QUERIES per context,
# default 4) printed under the expected answers, for reading *how* a model fails a task family (docs/training.md,
# the target's multi-answer generations). Each prompt is `<bos> <ctx> context </ctx> <q> question <a>`, as
# `proxykv eval` formats it; 40 tokens at most. A probe, not a measurement: accuracy comes from `proxykv eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1" file="$2" maxq="${3:-4}"
python3 - "$file" "$maxq" <<'PY' | while IFS=$'\t' read -r prompt want; do
import json, sys
for line in open(sys.argv[1]):
    c = json.loads(line)
    for q in c["queries"][: int(sys.argv[2])]:
        print(f"<bos> <ctx> {c['context']} </ctx> <q> {q['question']} <a>\t{' | '.join(q['answers'])}")
PY
  got="$(build/bin/proxykv generate --model "$model" --prompt "$prompt" --max-tokens 40 --threads 1 2>/dev/null | tail -n 1)"
  echo "want: $want"
  echo " got: $got"
done
