#!/usr/bin/env bash
# stage-model.sh [--bin DIR] SRC OUT: copies a servable model directory to OUT. A finished model (config.json,
# tokenizer.json, weights) or a mapper checkpoint (mapper.json) is copied as it is; a tiny-family directory whose
# training has not finished holds only checkpoint/ (docs/training.md, "Running it"): its snapshot is staged with the family
# tokenizer. --checkpoint stages SRC/checkpoint even where a finished model exists (a probe of a run that is
# continuing from a finished model: otherwise the finished model would be served). Used by scripts/run-local.sh
# and deploy/docker/Dockerfile.
set -euo pipefail
bin="build/bin"
checkpoint=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --checkpoint) checkpoint=1; shift ;;
    *) echo "stage-model.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -eq 2 ]] || { echo "usage: stage-model.sh [--bin DIR] [--checkpoint] SRC OUT" >&2; exit 2; }
src="$1" out="$2"
die() { echo "stage-model.sh: $*" >&2; exit 1; }
mkdir -p "$out"
stage_checkpoint() {
  cp "$src/checkpoint/config.json" "$src/checkpoint/model.safetensors" "$out/"
  "$bin/proxykv" write-family-tokenizer --out "$out/tokenizer.json" >/dev/null 2>&1 ||
    die "$bin/proxykv write-family-tokenizer failed (build first: bash scripts/build.sh)"
  echo "stage-model.sh: staged the training checkpoint of $src in $out" >&2
}
if [[ $checkpoint == 1 ]]; then
  [[ -f "$src/checkpoint/config.json" ]] || die "$src has no checkpoint/ to stage"
  stage_checkpoint
elif [[ -f "$src/mapper.json" ]]; then
  [[ -f "$src/features.json" ]] || die "$src: a mapper checkpoint needs features.json"
  cp "$src"/mapper.json "$src"/features.json "$src"/*.safetensors "$out/"
elif [[ -f "$src/config.json" && -f "$src/tokenizer.json" ]]; then
  find "$src" -maxdepth 1 -type f \( -name '*.json' -o -name '*.safetensors' \) -exec cp {} "$out/" \;
elif [[ -f "$src/checkpoint/config.json" ]]; then
  stage_checkpoint
else
  die "$src is not a model directory (config.json, tokenizer.json), a checkpoint/ or a mapper checkpoint"
fi
