#!/usr/bin/env bash
# The demo: installs the Debian packages, builds, checks the decoder against Hugging Face on the golden models,
# then starts the three services on loopback (scripts/run-local.sh: mapper, proxy, target, each its own process)
# and serves one long-context question from a context compressed by full, snapkv, kvzip and proxykv.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${PROXYKV_SHARED_DIR:-$(cd .. && pwd)/shared}"
bash scripts/install-deps.sh
bash scripts/build.sh
bin=build/bin/proxykv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo
echo "== Parity with Hugging Face transformers (float32 logits, 48-token prompt)"
for m in llama qwen2 qwen3 llama-plain; do
  dir="$shared/fixtures/hf-golden/$m"
  printf '%-12s ' "$m"
  "$bin" forward --model "$dir" --input-ids "$dir/golden.safetensors" --out "$tmp/$m.safetensors" \
    --reference "$dir/golden.safetensors" 2>/dev/null
done

echo
echo "== A served long-context answer: proxy -> mapper -> target on loopback (scripts/run-local.sh)"
bash scripts/run-local.sh --log-dir "$tmp/logs" >"$tmp/url" &
launcher=$!
trap 'kill -TERM $launcher 2>/dev/null || true; wait $launcher 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 600); do
  [[ -s "$tmp/url" ]] && break
  kill -0 $launcher 2>/dev/null || { echo "run-local.sh failed (logs in $tmp/logs)"; exit 1; }
  sleep 0.5
done
url="$(head -n 1 "$tmp/url")"
echo "target at $url"
# 1024 words: the family's training length (at 2048 the target answers 0.30 of held-out queries with a full cache).
"$bin" make-tasks --task niah_single --length 1024 --n 1 --seed 11 --out "$tmp/task.jsonl" >/dev/null 2>&1
python3 scripts/demo_client.py "$url" "$tmp/task.jsonl"
echo "(* = the requested method fell back; the tiny family's training is not finished, see bench/RESULTS.md)"
