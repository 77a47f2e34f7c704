#!/usr/bin/env bash
# The demo: installs the Debian packages, builds, and runs the decoder on the bundled models.
# Prints the parity of our logits with Hugging Face transformers on each golden model, then the decoder's
# prefill/decode throughput on this CPU.
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
echo "== Decoder throughput on this CPU (golden-sized model, then a random hidden-512 8-layer model)"
"$bin" bench-decoder --model "$shared/fixtures/hf-golden/qwen3" --prompt-tokens 512 --decode-tokens 32 \
  --repeats 1 2>/dev/null
"$bin" bench-decoder --hidden 512 --layers 8 --prompt-tokens 512 --decode-tokens 16 --repeats 1 2>/dev/null
