#!/usr/bin/env bash
# Decoder throughput: prefill and decode tokens/s of a golden-sized model and a larger random model.
# Usage: bench/decoder.sh [threads]   (run after scripts/build.sh; prints tables, JSON rows go to stderr)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
shared="${PROXYKV_SHARED_DIR:-$(cd .. && pwd)/shared}"
bin=build/bin/proxykv
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads $threads"
"$bin" bench-decoder --model "$shared/fixtures/hf-golden/qwen3" --prompt-tokens 512,2048,4096 \
  --decode-tokens 128 --repeats 3 --threads "$threads"
"$bin" bench-decoder --hidden 512 --layers 8 --heads 8 --kv-heads 2 --intermediate 1408 --vocab 512 \
  --prompt-tokens 512,2048,4096 --decode-tokens 64 --repeats 3 --threads "$threads"
