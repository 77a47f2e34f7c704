#!/usr/bin/env bash
# probe_recall.sh MODEL_DIR [N] [FACTS] [DIGITS]: a quick probe of key retrieval in the tasks' shape (the proxy's
# sticking point, docs/training.md): N prompts "<bos> k is v . ... <sep> <q> k ? <a>" with FACTS facts each
# (seeded), the greedy answer compared with the fact's value. DIGITS > 0: each value is that many digits (as the
# niah numbers are) instead of one vNNN token. Prints "correct/N". A probe, not the family's evaluation (that is
# `proxykv eval` on task files, bench/family_eval.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1" n="${2:-20}" facts="${3:-8}" digits="${4:-0}"
ok=0
while IFS=$'\t' read -r prompt want; do
  got="$(build/bin/proxykv generate --model "$model" --prompt "$prompt" --max-tokens "$(( digits > 0 ? digits : 1 ))" --threads 1 2>/dev/null | tail -n 1)"
  [[ "$got" == "$want" ]] && ok=$((ok + 1))
done < <(python3 - "$n" "$facts" "$digits" <<'PY'
import random, sys
n, facts, digits = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(5)
for _ in range(n):
    keys = rng.sample(range(256), facts)  # the vocabulary's k000..k255 (TASKS.md)
    if digits > 0:
        values = [" ".join(str(rng.randrange(10)) for _ in range(digits)) for _ in keys]
    else:
        values = [f"v{rng.randrange(256):03d}" for _ in keys]
    i = rng.randrange(facts)
    context = " ".join(f"k{k:03d} is {v} ." for k, v in zip(keys, values))
    print(f"<bos> {context} <sep> <q> k{keys[i]:03d} ? <a>\t{values[i]}")
PY
)
echo "$ok/$n"
