#!/usr/bin/env bash
# bench/family_eval.sh: every accuracy table of the family, methods and ProxyKV issues, from the final models,
# in one run. Prints each table and keeps every results JSON under --out; bench/RESULTS.md quotes them with this
# command. Long: on the 2-core CPU VM plan hours (a GPU: minutes, --device cuda); never part of CI.
#
#   bash bench/family_eval.sh [--stages family,methods,mapper,proxykv,cost] [--quick] [--out DIR]
#                             [--n N] [--lengths L1,L2] [--level global|layer|head|token] [--device cpu|cuda] [--threads T]
#                             [--jobs J] [--mapper DIR] [--ablations LIST] [--seeds S1,S2 [--seed-ablations LIST]]
#                             [--bin DIR] [--haystack short|joined] [--proxy DIR]
#
# Stages (each reads what the earlier ones wrote into --out; run them one by one if you like):
#   family   full-cache accuracy of target and proxy at the training length (1024) and 2x, 4x, on fresh seeds;
#            the target's reconstruction accuracy (eval-repeat)                                   (issue 3)
#   methods  every method x keep ratio on the target, two lengths, with kv_bytes, score_s and the plot (issue 4)
#   mapper   retrains the shipped mapper of --level on the final pair: models/mapper (token) or models/mapper-LEVEL
#            (training seeds 101 (1024 words) and 102 (512), validation seed 202)                       (issue 5)
#   proxykv  kvzip_iam calibration, the ablation mappers (plain MSE, linear, one loss term off at a time; the
#            recipe has the value-weighted MSE term off, so its ablation with_mse turns it on),
#            and proxykv against kvzip, snapkv, h2o, proxy_direct, kvzip_iam and the ablations          (issue 5)
#   cost     prefill / +kvzip / +snapkv / +proxy path (bench-scoring) at 1k, 2k, 4k                    (issues 4, 5)
# --level: the selection level of the methods, proxykv and mapper stages (default global, KVzip's); the mapper's
#   loss then ranks at that level too (loss.level; heads_per_layer from the target's config). token (the same
#   tokens kept in every layer and head) is a selection rule only: its mapper learns the labels' max over the rows
#   (train.label_rows "max") with a global-level loss.
# --no-ablations: the proxykv stage trains no ablation mapper and compares proxykv with full, kvzip, snapkv, h2o,
#   proxy_direct and kvzip_iam only (an hour less on the CPU VM).
# --jobs J: train up to J ablation mappers at once (each on the config's one thread; on the 2-core VM --jobs 2).
# --mapper DIR: the proxykv stage's main mapper (default: the shipped one of --level); the mapper stage trains into
#   DIR instead of the shipped one, so a trial mapper leaves models/ alone.
# --proxy DIR: the proxy model of every stage (default models/proxy), e.g. a trial proxy; give the run its own --out
#   (the mapper data under --out is the proxy's features) and a --mapper DIR.
# --bin DIR: the proxykv binary's directory (default build/bin; a copy keeps a long run apart from rebuilds).
# --ablations LIST: train and compare only these ablation mappers (default: the seven above; 'none' = --no-ablations).
#   Also known, not in the default: the channel ablation, the recipe on a subset of the proxy's feature channels
#   (train-mapper's "channels"): no_kvzip_ch (window_attn, key_norm, value_norm: no proxy reconstruction pass),
#   no_window_attn_ch (kvzip, key_norm, value_norm), no_norms_ch (kvzip, window_attn).
# --seeds S1,S2: also train the main recipe at these training seeds (train.seed; models/configs/mapper.json's is 2) as
#   methods proxykv_seedS, and with --seed-ablations LIST those ablations too (NAME_seedS): seed-to-seed spread.
# --haystack: the filler of every task file the run makes (make-tasks --haystack; docs/tasks.md, "Haystacks");
#   the family and methods files of the joined haystack are named with a "-joined" suffix, so one --out can hold
#   both; the mapper and proxykv stages' files are not, so give each haystack its own --out for them.
# --quick: a smoke run of the whole chain (tiny files, one mapper epoch) to check it works; numbers meaningless.
# Seeds: held-out task files use seeds 7000+ (the LM trainer draws its own stream from seeds 101/202; the
# mapper's training files use 101+, its validation 202+), so evaluation never sees training data.
set -euo pipefail
cd "$(dirname "$0")/.."

stages="family,methods,mapper,proxykv,cost"
out="build/family-eval"
n=16            # contexts per task family per file: 6 families, 1-4 queries each -> ~290 queries per length
lengths="1024,2048"
level="global"
device="cpu"
threads="${PROXYKV_THREADS:-0}"
quick=0
ablations=1
jobs=1
main_mapper=""
proxy_dir="models/proxy"
ablation_names="proxykv_mse,proxykv_linear,no_binary,with_mse,no_intra_rank,no_mass_rank,no_cosine"
seeds=""
seed_ablations=""
bin="build/bin"
haystack="short"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stages) stages="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --n) n="$2"; shift 2 ;;
    --lengths) lengths="$2"; shift 2 ;;
    --level) level="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-ablations) ablations=0; shift ;;
    --jobs) jobs="$2"; shift 2 ;;
    --mapper) main_mapper="$2"; shift 2 ;;
    --proxy) proxy_dir="${2%/}"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --haystack) haystack="$2"; shift 2 ;;
    --ablations) ablation_names="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --seed-ablations) seed_ablations="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "family_eval.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
train_len=1024
mapper_epochs=""
mapper_train_n=32
if [[ $quick == 1 ]]; then
  n=1; lengths="128,256"; train_len=128; mapper_epochs=1; mapper_train_n=2
fi
IFS=, read -r -a length_list <<<"$lengths"
has() { [[ ",$stages," == *",$1,"* ]]; }
run() { echo "+ $*" >&2; "$@"; }
rt=(--device "$device" --threads "$threads")
mkdir -p "$out"/{data,results,models}

# The final models, or (while training) their checkpoints staged as servable directories.
[[ -d $proxy_dir ]] || { echo "family_eval.sh: --proxy $proxy_dir is not a directory" >&2; exit 2; }
declare -A model_dir=([target]="models/target" [proxy]="$proxy_dir")
for m in target proxy; do
  src="${model_dir[$m]}"
  if [[ -f $src/model.safetensors ]]; then
    ln -sfn "$(cd "$src" && pwd)" "$out/models/$m"
  else
    echo "family_eval.sh: $src has no final model; using its checkpoint (numbers are not the family's)" >&2
    rm -f "$out/models/$m"
    bash scripts/stage-model.sh --bin "$bin" "$src" "$out/models/$m"
  fi
done
target="$out/models/target" proxy="$out/models/proxy"

# Files of the joined haystack get a "-joined" suffix, so one --out can hold both.
hs=""
[[ $haystack == short ]] || hs="-$haystack"
tasks() {  # tasks LENGTH SEED N FILE
  [[ -f "$4" ]] || run "$bin/proxykv" make-tasks --task all --length "$1" --n "$3" --seed "$2" \
    --haystack "$haystack" --out "$4" 2>/dev/null
}

if has family; then
  files=()
  for mult in 1 2 4; do
    len=$((train_len * mult))
    tasks "$len" $((7000 + mult)) "$n" "$out/data/heldout-$len$hs.jsonl"
    files+=("$out/data/heldout-$len$hs.jsonl")
  done
  for m in target proxy; do
    for f in "${files[@]}"; do
      run "$bin/proxykv" eval --target "$out/models/$m" --data "$f" --methods full \
        --out "$out/results/family-$m-$(basename "$f" .jsonl).json" "${rt[@]}"
    done
  done
  run "$bin/proxykv" eval-repeat --model "$target" --data "${files[0]}" --out "$out/results/repeat-target.json" "${rt[@]}"
  run "$bin/proxykv" eval-repeat --model "$proxy" --data "${files[0]}" --out "$out/results/repeat-proxy.json" "${rt[@]}"
fi

method_files=()
for len in "${length_list[@]}"; do
  tasks "$len" $((7100 + len)) "$n" "$out/data/methods-$len$hs.jsonl"
  method_files+=("$out/data/methods-$len$hs.jsonl")
done
if has methods; then
  for f in "${method_files[@]}"; do
    run "$bin/proxykv" eval --target "$target" --data "$f" \
      --methods full,kvzip,snapkv,streaming,h2o,laprox,knorm,random --ratios 0.1,0.2,0.3,0.5,0.7 --level "$level" \
      --out "$out/results/methods-$(basename "$f" .jsonl).json" --plot "$out/results/methods-$(basename "$f" .jsonl).png" \
      "${rt[@]}"
  done
fi

mapper_config() {  # mapper_config NAME OUT_DIR PYTHON-DICT-OVERRIDES [SEED]: a train-mapper config from models/configs/mapper.json
  python3 - "$1" "$2" "$3" "$out" "$mapper_epochs" "$level" "$target/config.json" "${4:-}" <<'EOF'
import ast, json, sys
name, out_dir, overrides, root, epochs, level, target_config, seed = sys.argv[1:9]
c = json.load(open("models/configs/mapper.json"))
loss = c.setdefault("train", {}).setdefault("loss", {})
loss["level"] = "global" if level == "token" else level  # token: every row learns the max over the rows
c["train"]["label_rows"] = "max" if level == "token" else "each"
if loss["level"] == "layer":
    loss["heads_per_layer"] = json.load(open(target_config))["num_key_value_heads"]
else:
    loss.pop("heads_per_layer", None)
c["train_data"] = [f"{root}/data/mapper-train", f"{root}/data/mapper-train-half"]
c["val_data"], c["out_dir"] = f"{root}/data/mapper-val", out_dir
for key, value in ast.literal_eval(overrides).items():  # dotted paths: "train.loss.binary_weight"
    *path, field = key.split(".")
    node = c
    for part in path:
        node = node.setdefault(part, {})
    node[field] = value
if epochs:
    c["train"]["epochs"] = int(epochs)
if seed:
    c["train"]["seed"] = int(seed)
path = f"{root}/mapper-{name}.json"
json.dump(c, open(path, "w"), indent=1)
print(path)
EOF
}

if has mapper || has proxykv; then
  channels="$(python3 -c 'import json;print(",".join(json.load(open("models/mapper/features.json"))["channels"]))')"
  # Training contexts of two lengths (the training length and half of it): the mapper trained on both is ahead of
  # the one trained on the training length alone at both evaluated lengths (bench/RESULTS.md, fifth session).
  tasks "$train_len" 101 "$mapper_train_n" "$out/data/mapper-train.jsonl"
  tasks $((train_len / 2)) 102 "$mapper_train_n" "$out/data/mapper-train-half.jsonl"
  tasks "$train_len" 202 2 "$out/data/mapper-val.jsonl"
  for s in train train-half val; do
    [[ -d "$out/data/mapper-$s" ]] || run "$bin/proxykv" make-mapper-data --proxy "$proxy" --target "$target" \
      --data "$out/data/mapper-$s.jsonl" --out "$out/data/mapper-$s" --channels "$channels" "${rt[@]}"
  done
fi
# The shipped mappers: models/mapper for level token (the level the demo and the headline numbers use),
# models/mapper-LEVEL for the others (models/mapper-layer is bundled too).
shipped_mapper="models/mapper"
[[ $level != token ]] && shipped_mapper="models/mapper-$level"
if has mapper; then
  dest="$shipped_mapper"
  [[ -n $main_mapper ]] && dest="$main_mapper"
  [[ $quick == 1 ]] && dest="$out/mapper-quick"
  run "$bin/proxykv" train-mapper --config "$(mapper_config main "$dest" "{}")"
fi

if [[ -z $main_mapper ]]; then
  main_mapper="$shipped_mapper"
  [[ $quick == 1 ]] && main_mapper="$out/mapper-quick"
fi
if { has proxykv || has cost; } && [[ ! -f $main_mapper/mapper.json ]]; then
  echo "family_eval.sh: no mapper in $main_mapper for level $level; run --stages mapper first or give --mapper DIR" >&2
  exit 2
fi
if has proxykv; then
  run "$bin/proxykv" calibrate-iam --data "$out/data/mapper-train" --out "$out/iam.json"
  declare -A ablation=(
    [main]="{}"
    [proxykv_mse]="{'train.loss.binary_weight': 0, 'train.loss.intra_rank_weight': 0, 'train.loss.mass_rank_weight': 0, 'train.loss.cosine_weight': 0, 'train.loss.mse_weight': 1, 'train.loss.mse_value_weighted': False}"
    [proxykv_linear]="{'mapper.variant': 'linear'}"
    [no_binary]="{'train.loss.binary_weight': 0}"
    [with_mse]="{'train.loss.mse_weight': 1}"
    [no_intra_rank]="{'train.loss.intra_rank_weight': 0}"
    [no_mass_rank]="{'train.loss.mass_rank_weight': 0}"
    [no_cosine]="{'train.loss.cosine_weight': 0}"
    [no_kvzip_ch]="{'channels': ['window_attn', 'key_norm', 'value_norm']}"
    [no_window_attn_ch]="{'channels': ['kvzip', 'key_norm', 'value_norm']}"
    [no_norms_ch]="{'channels': ['kvzip', 'window_attn']}"
  )
  [[ $ablations == 0 || $ablation_names == none ]] && ablation_names=""
  # Every extra mapper: NAME (an ablation at the config's seed) or NAME_seedS (main or an ablation at seed S).
  extra=()
  IFS=, read -r -a names <<<"$ablation_names"
  for name in "${names[@]}"; do
    if [[ $name == main ]]; then  # the recipe itself is the method proxykv (its other seeds: --seeds)
      echo "family_eval.sh: 'main' is not an ablation (the recipe is proxykv; other seeds: --seeds)" >&2
      exit 2
    fi
    extra+=("$name")
  done
  IFS=, read -r -a seed_list <<<"$seeds"
  IFS=, read -r -a seed_names <<<"$seed_ablations"
  for seed in "${seed_list[@]}"; do
    for name in main "${seed_names[@]}"; do extra+=("${name}_seed$seed"); done
  done
  specs="proxykv=$main_mapper"
  methods="full,kvzip,snapkv,h2o,proxy_direct,kvzip_iam,proxykv"
  running=0
  for method in "${extra[@]}"; do
    base="${method%_seed*}"
    if [[ -z ${ablation[$base]+set} ]]; then
      known="$(printf '%s\n' "${!ablation[@]}" | grep -vx main | sort | tr '\n' ' ')"
      echo "family_eval.sh: unknown ablation $base (known: ${known% })" >&2
      exit 2
    fi
    seed=""
    [[ $method == *_seed* ]] && seed="${method##*_seed}"
    [[ $base == main ]] && method="proxykv_${method#main_}"
    dir="$out/ablations/$method"
    specs+=",$method=$dir"
    methods+=",$method"
    [[ -f "$dir/train_history.json" ]] && continue  # written when its training finished
    config="$(mapper_config "$method" "$dir" "${ablation[$base]}" "$seed")"
    if [[ $jobs -le 1 ]]; then
      run "$bin/proxykv" train-mapper --config "$config"
      continue
    fi
    if [[ $running -ge $jobs ]]; then wait -n; running=$((running - 1)); fi
    echo "+ $bin/proxykv train-mapper --config $config > $out/ablations/$method.log" >&2
    mkdir -p "$out/ablations"
    "$bin/proxykv" train-mapper --config "$config" >"$out/ablations/$method.log" 2>&1 &
    running=$((running + 1))
  done
  while [[ $running -gt 0 ]]; do wait -n; running=$((running - 1)); done
  # With --jobs > 1 the lengths are evaluated side by side, one thread each (the same numbers: eval is deterministic).
  eval_rt=("${rt[@]}")
  [[ $jobs -gt 1 ]] && eval_rt=(--device "$device" --threads 1)
  pids=()
  for f in "${method_files[@]}"; do
    cmd=("$bin/proxykv" eval --target "$target" --proxy "$proxy" --mapper "$specs" --iam "$out/iam.json" --data "$f"
      --methods "$methods" --ratios 0.1,0.2,0.3,0.5,0.7 --level "$level"
      --out "$out/results/proxykv-$(basename "$f" .jsonl).json" --plot "$out/results/proxykv-$(basename "$f" .jsonl).png"
      "${eval_rt[@]}")
    if [[ $jobs -le 1 ]]; then run "${cmd[@]}"; continue; fi
    echo "+ ${cmd[*]} 2> $out/results/proxykv-$(basename "$f" .jsonl).log" >&2
    "${cmd[@]}" 2>"$out/results/proxykv-$(basename "$f" .jsonl).log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  # mean over rho of accuracy(method) / accuracy(kvzip), per file
  python3 bench/results_table.py --vs kvzip --per-ratio "$out"/results/proxykv-*.json
fi

if has cost; then
  cost_lengths="1024,2048,4096"
  [[ $quick == 1 ]] && cost_lengths="128,256"
  run "$bin/proxykv" bench-scoring --model "$target" --proxy "$proxy" --mapper "$main_mapper" \
    --lengths "$cost_lengths" --methods snapkv,kvzip --repeats 3 "${rt[@]}" | tee "$out/results/cost.txt"
fi
echo "family_eval.sh: results in $out/results" >&2
