#!/usr/bin/env bash
# probe_recall.sh MODEL_DIR [N] [FACTS]: a quick probe of key retrieval in the tasks' shape (the proxy's sticking
# point, docs/training.md): N prompts "<bos> k is v . ... <sep> <q> k ? <a>" with FACTS facts each (seeded), the
# greedy next token compared with the fact's value. Prints "correct/N". A probe, not the family's evaluation
# (that is `proxykv eval` on task files, bench/family_eval.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1" n="${2:-20}" facts="${3:-8}"
ok=0
while IFS=$'\t' read -r prompt want; do
  got="$(build/bin/proxykv generate --model "$model" --prompt "$prompt" --max-tokens 1 --threads 1 2>/dev/null | tail -n 1)"
  [[ "$got" == "$want" ]] && ok=$((ok + 1))
done < <(python3 - "$n" "$facts" <<'PY'
import random, sys
n, facts = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(5)
for _ in range(n):
    keys = rng.sample(range(500), facts)
    values = [rng.randrange(500) for _ in keys]
    i = rng.randrange(facts)
    context = " ".join(f"k{k:03d} is v{v:03d} ." for k, v in zip(keys, values))
    print(f"<bos> {context} <sep> <q> k{keys[i]:03d} ? <a>\tv{values[i]:03d}")
PY
)
echo "$ok/$n"
