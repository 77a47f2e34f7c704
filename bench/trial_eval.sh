#!/usr/bin/env bash
# trial_eval.sh: how a trial checkpoint of the target compares with another, on the files the trials of sessions
# 13-18 were judged on (bench/RESULTS.md). Files come from fixed seeds and are made on first use:
#   mv48-1024 / mv48-512: `make-tasks --task niah_multivalue --length 1024 --n 48 --seed 7413` (512: seed 7414);
#   fresh-1024-{joined,short} / fresh-512-*: `make-tasks --task all --length 1024 --n 16 --seed 7811 --haystack H`
#   (512: seed 7812), 288 queries each.
# Per model: `eval --methods full --answers` on the multivalue files (then bench/multivalue_answers.py on the
# answers) and `eval --methods full,kvzip --ratios 0.3 --level token` on the fresh files; then one table, a row per
# model and file: full, KVzip 0.3 and its share of full, and each family's full / KVzip accuracy.
#
# usage: bash bench/trial_eval.sh [--out DIR] [--bin DIR] [--only mv|fresh] NAME MODEL_DIR [NAME MODEL_DIR ...]
#   --out   where files and results go (default build/trial-eval); results are reused when present, so a model
#           evaluated once is not evaluated again (delete OUT/NAME-* to redo it)
#   --bin   the directory of the proxykv binary (default build/bin; a copy keeps a rebuild from changing it)
#   --only  the multivalue files or the fresh files alone
# One thread per eval (OPENBLAS_NUM_THREADS=1, --threads 1), models one after another: ~3 min per model for the
# multivalue files and ~8 min for the fresh ones on this 2-core VM.
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/trial-eval bin=build/bin only=""
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "trial_eval.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ $# -lt 2 || $(($# % 2)) -ne 0 ]]; then
  echo "usage: bash bench/trial_eval.sh [--out DIR] [--bin DIR] [--only mv|fresh] NAME MODEL_DIR [NAME MODEL_DIR ...]" >&2
  exit 2
fi
if [[ -n "$only" && "$only" != mv && "$only" != fresh ]]; then
  echo "trial_eval.sh: --only takes mv or fresh, got '$only'" >&2
  exit 2
fi
pk="$bin/proxykv"
[[ -x "$pk" ]] || { echo "trial_eval.sh: no binary at $pk (build it: ninja -C build bin/proxykv)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1
mkdir -p "$out/data"

make_file() {  # NAME, then make-tasks arguments
  local name="$1"; shift
  [[ -s "$out/data/$name.jsonl" ]] || "$pk" make-tasks "$@" --out "$out/data/$name.jsonl" >/dev/null
}
mv_files=(mv48-1024 mv48-512)
fresh_files=(fresh-1024-joined fresh-512-joined fresh-1024-short fresh-512-short)
if [[ "$only" != fresh ]]; then
  make_file mv48-1024 --task niah_multivalue --length 1024 --n 48 --seed 7413
  make_file mv48-512 --task niah_multivalue --length 512 --n 48 --seed 7414
fi
if [[ "$only" != mv ]]; then
  for h in joined short; do
    make_file "fresh-1024-$h" --task all --length 1024 --n 16 --seed 7811 --haystack "$h"
    make_file "fresh-512-$h" --task all --length 512 --n 16 --seed 7812 --haystack "$h"
  done
fi

run_eval() {  # RESULT.json, then eval arguments; the log beside the result, its tail shown on failure
  local r="$1"; shift
  [[ -s "$r" ]] && return 0
  if ! "$pk" eval "$@" --out "$r" >"${r%.json}.log" 2>&1; then
    echo "trial_eval.sh: eval failed ($r):" >&2
    tail -n 3 "${r%.json}.log" >&2
    exit 1
  fi
}

names=()
while [[ $# -gt 0 ]]; do
  name="$1" model="$2"; shift 2
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "trial_eval.sh: a NAME is letters, digits, '_', '.', '-': '$name'" >&2; exit 2; }
  [[ -f "$model/config.json" ]] || { echo "trial_eval.sh: $model is not a model directory (no config.json)" >&2; exit 2; }
  [[ -f "$model/tokenizer.json" ]] || { echo "trial_eval.sh: $model has no tokenizer.json (a train-lm checkpoint: copy the family's in)" >&2; exit 2; }
  names+=("$name")
  if [[ "$only" != fresh ]]; then
    for f in "${mv_files[@]}"; do
      run_eval "$out/$name-$f.json" --target "$model" --data "$out/data/$f.jsonl" --methods full --threads 1 \
        --answers "$out/$name-$f.answers.jsonl"
    done
  fi
  if [[ "$only" != mv ]]; then
    for f in "${fresh_files[@]}"; do
      run_eval "$out/$name-$f.json" --target "$model" --data "$out/data/$f.jsonl" --methods full,kvzip \
        --ratios 0.3 --level token --threads 1
    done
  fi
done

python3 - "$out" "${names[@]}" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
short = {"niah_single": "single", "niah_multikey": "multikey", "niah_multivalue": "multivalue",
         "niah_multiquery": "multiquery", "kv_retrieval": "kv", "variable_tracking": "vt"}
files = ["mv48-1024", "mv48-512", "fresh-1024-joined", "fresh-512-joined", "fresh-1024-short", "fresh-512-short"]
print("| model | file | full | KVzip 0.3 (share of full) | per family, full / KVzip |")
print("| --- | --- | --- | --- | --- |")
for n in names:
    for f in files:
        path = os.path.join(out, f"{n}-{f}.json")
        if not os.path.exists(path):
            continue
        d = json.load(open(path))
        s = {r["method"]: r["accuracy"] for r in d["summary"]}
        fam = {}
        for r in d["results"]:
            fam.setdefault(r["task"], {})[r["method"]] = r["accuracy"]
        kv = f"{s['kvzip']:.3f} ({s['kvzip'] / s['full']:.1%})" if "kvzip" in s and s["full"] > 0 else ""
        per = " ".join(f"{short.get(t, t)} {v['full']:.2f}" + (f"/{v['kvzip']:.2f}" if "kvzip" in v else "")
                       for t, v in fam.items())
        print(f"| {n} | {f} | {s['full']:.3f} | {kv} | {per} |")
PY
if [[ "$only" != fresh ]]; then
  for n in "${names[@]}"; do
    for f in "${mv_files[@]}"; do
      a="$out/$n-$f.answers.jsonl"
      if [[ -s "$a" ]]; then python3 bench/multivalue_answers.py "$a"; fi
    done
  done
fi
