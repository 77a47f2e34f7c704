#!/usr/bin/env bash
# Served load side by side: proxykv-loadgen against the three services (scripts/run-local.sh, dual-device: target
# on core 0, proxy and mapper on core 1), one run per method with the same requests, printed as a Markdown table.
#   bash bench/load_bench.sh [LENGTH] [REQUESTS] [CONCURRENCY]     (defaults 2048 24 2)
set -euo pipefail
cd "$(dirname "$0")/.."
length="${1:-2048}"; requests="${2:-24}"; concurrency="${3:-2}"
tmp="$(mktemp -d)"
bash scripts/run-local.sh --target-cores 0 --proxy-cores 1 --mapper-cores 1 --log-dir "$tmp/logs" \
  --mask-deadline-ms 60000 >"$tmp/url" 2>"$tmp/run-local.err" &
launcher=$!
trap 'kill -TERM $launcher 2>/dev/null || true; wait $launcher 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 600); do [[ -s "$tmp/url" ]] && break; sleep 0.2; done
url="$(head -n 1 "$tmp/url")"
build/bin/proxykv make-tasks --task all --length "$length" --n 2 --seed 31 --out "$tmp/tasks.jsonl" >/dev/null 2>&1
for m in none snapkv kvzip proxykv; do
  build/bin/proxykv-loadgen --url "$url" --tasks "$tmp/tasks.jsonl" --concurrency "$concurrency" \
    --requests "$requests" --method "$m" --keep-ratio 0.25 --max-tokens 16 --out "$tmp/$m.json" >/dev/null || true
done
python3 - "$tmp" "$length" "$requests" "$concurrency" <<'PY'
import json, sys
tmp, length, requests, conc = sys.argv[1:]
print(f"{requests} streamed completions per method, concurrency {conc}, {length}-word contexts, keep ratio 0.25"
      " (none = full cache), max_tokens 16; seconds\n")
print("| method | ok | used | req/s | TTFT p50 | TTFT p90 | E2E p50 | E2E p90 |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for m in ("none", "snapkv", "kvzip", "proxykv"):
    s = json.load(open(f"{tmp}/{m}.json"))
    used = ", ".join(f"{k} {v}" for k, v in s["methods_used"].items())
    print(f"| {m} | {s['ok']}/{s['requests']} | {used} | {s['requests_per_s']:.2f} | {s['ttft_s']['p50']:.3f} | "
          f"{s['ttft_s']['p90']:.3f} | {s['e2e_s']['p50']:.3f} | {s['e2e_s']['p90']:.3f} |")
PY
