#!/usr/bin/env bash
# Starts proxykv-mapper, proxykv-proxy and proxykv-target on loopback as separate processes, waits until all
# three are healthy, prints the target's base URL (http://127.0.0.1:PORT) as the only line on stdout, and stops
# them all on SIGTERM/SIGINT (or when one of them dies). Logs go to --log-dir (one file per service).
#
#   bash scripts/run-local.sh                       # the bundled tiny family (models/), free ports
#   bash scripts/run-local.sh --target-cores 0 --proxy-cores 1 --mapper-cores 1   # dual-device on 2 cores
#   bash scripts/run-local.sh --data-plane ucx --port 8000
#
# Options (each also as an environment variable, e.g. PROXYKV_TARGET_MODEL):
#   --target-model DIR   target HF directory        (default: models/target)
#   --proxy-model DIR    proxy HF directory         (default: models/proxy)
#   --mapper DIR         mapper checkpoint for the pair (default: models/mapper)
#   --data-plane zmq|ucx feature transport between proxy and mapper (default: zmq)
#   --port N             target HTTP port; 0 = a free port (default: 0)
#   --target-cores LIST, --proxy-cores LIST, --mapper-cores LIST   taskset CPU lists (default: no pinning)
#   --threads N          LibTorch threads per service (default: 1)
#   --log-dir DIR        where the services' logs go (default: a fresh temp dir, printed on stderr)
#   --bin DIR            where the binaries are (default: build/bin)
#   --mask-deadline-ms N how long the target waits for a mask (default: 5000)
#   -- ARGS...           extra flags for proxykv-target
# The model ids the services agree on are the directory names (proxy:target pair for the mapper).
set -euo pipefail
cd "$(dirname "$0")/.."

target_model="${PROXYKV_TARGET_MODEL:-models/target}"
proxy_model="${PROXYKV_PROXY_MODEL:-models/proxy}"
mapper_dir="${PROXYKV_MAPPER:-models/mapper}"
data_plane="${PROXYKV_DATA_PLANE:-zmq}"
port="${PROXYKV_PORT:-0}"
target_cores="${PROXYKV_TARGET_CORES:-}"
proxy_cores="${PROXYKV_PROXY_CORES:-}"
mapper_cores="${PROXYKV_MAPPER_CORES:-}"
threads="${PROXYKV_THREADS:-1}"
log_dir="${PROXYKV_LOG_DIR:-}"
bin="${PROXYKV_BIN:-build/bin}"
mask_deadline_ms="${PROXYKV_MASK_DEADLINE_MS:-5000}"
extra=()

die() { echo "run-local.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target-model) target_model="$2"; shift 2 ;;
    --proxy-model) proxy_model="$2"; shift 2 ;;
    --mapper) mapper_dir="$2"; shift 2 ;;
    --data-plane) data_plane="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --target-cores) target_cores="$2"; shift 2 ;;
    --proxy-cores) proxy_cores="$2"; shift 2 ;;
    --mapper-cores) mapper_cores="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --log-dir) log_dir="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --mask-deadline-ms) mask_deadline_ms="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

for b in proxykv proxykv-mapper proxykv-proxy proxykv-target; do
  [[ -x "$bin/$b" ]] || die "$bin/$b not found: build first (bash scripts/build.sh)"
done
# A tiny-family directory whose training has not finished holds only checkpoint/ (docs/training.md, "Running it"): serve that
# snapshot, with the family tokenizer, from build/demo-models/NAME (scripts/stage-model.sh).
serve_dir() {
  local dir="$1"
  if [[ -f "$dir/config.json" && -f "$dir/tokenizer.json" ]]; then echo "$dir"; return; fi
  local out
  out="build/demo-models/$(basename "$(cd "$dir" && pwd)")"
  bash scripts/stage-model.sh --bin "$bin" "$dir" "$out" >&2 || die "cannot serve $dir"
  echo "$out"
}
target_model="$(serve_dir "$target_model")"
proxy_model="$(serve_dir "$proxy_model")"
[[ -f "$mapper_dir/mapper.json" && -f "$mapper_dir/features.json" ]] ||
  die "$mapper_dir is not a mapper checkpoint (mapper.json, features.json; see docs/training.md)"
[[ "$data_plane" == zmq || "$data_plane" == ucx ]] || die "--data-plane must be zmq or ucx"
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"

target_id="$(basename "$(cd "$target_model" && pwd)")"
proxy_id="$(basename "$(cd "$proxy_model" && pwd)")"
# The feature channels the mapper was trained on; the proxy must extract the same ones.
channels="$(tr -d ' \n' < "$mapper_dir/features.json" | sed -n 's/.*"channels":\[\([^]]*\)\].*/\1/p' | tr -d '"')"
[[ -n "$channels" ]] || die "$mapper_dir/features.json names no channels"

if [[ -z "$log_dir" ]]; then log_dir="$(mktemp -d -t proxykv-local.XXXXXX)"; fi
mkdir -p "$log_dir"
echo "run-local.sh: logs in $log_dir" >&2

pids=()
stop_all() {
  trap - TERM INT EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 0' TERM INT
trap 'stop_all' EXIT

pinned() {  # pinned CORES CMD...: the command, under taskset when CORES is set
  local cores="$1"; shift
  if [[ -n "$cores" ]]; then exec taskset -c "$cores" "$@"; else exec "$@"; fi
}

# start NAME CORES CMD...: runs the service in the background, stdout to NAME.out, stderr to NAME.log.
start() {
  local name="$1" cores="$2"; shift 2
  (pinned "$cores" "$@") >"$log_dir/$name.out" 2>"$log_dir/$name.log" &
  pids+=("$!")
}

# first_line NAME: waits (up to 120 s) for the service's first stdout line, the one it announces itself with.
first_line() {
  local name="$1" pid="${pids[-1]}"
  for _ in $(seq 1200); do
    if [[ -s "$log_dir/$name.out" ]] && [[ "$(wc -l < "$log_dir/$name.out")" -ge 1 ]]; then
      head -n 1 "$log_dir/$name.out"; return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log_dir/$name.log" >&2; die "$name exited during start-up"; }
    sleep 0.1
  done
  die "$name did not start within 120 s (see $log_dir/$name.log)"
}

json_field() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" <<<"$1"; }

wait_healthy() {  # wait_healthy NAME URL
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null "$2/health"; then return 0; fi
    sleep 0.1
  done
  die "$1 is not healthy at $2/health after 60 s (see $log_dir/$1.log)"
}

start mapper "$mapper_cores" "$bin/proxykv-mapper" --mappers "$proxy_id:$target_id=$mapper_dir" \
  --data-plane "$data_plane" --threads "$threads"
mapper_line="$(first_line mapper)"
mapper_control="$(json_field "$mapper_line" control)"
mapper_admin="$(json_field "$mapper_line" admin)"

start proxy "$proxy_cores" "$bin/proxykv-proxy" --model "$proxy_model" --model-id "$proxy_id" \
  --mapper-endpoints "$mapper_control" --data-plane "$data_plane" --channels "$channels" --threads "$threads"
proxy_line="$(first_line proxy)"
proxy_control="$(json_field "$proxy_line" control)"
proxy_admin="$(json_field "$proxy_line" admin)"

start target "$target_cores" "$bin/proxykv-target" --model "$target_model" --model-name "$target_id" --port "$port" \
  --torch-threads "$threads" --proxy-endpoints "$proxy_control" --proxy-model-id "$proxy_id" \
  --mask-deadline-ms "$mask_deadline_ms" "${extra[@]}"
target_url="$(first_line target)"

wait_healthy mapper "$mapper_admin"
wait_healthy proxy "$proxy_admin"
wait_healthy target "$target_url"
echo "run-local.sh: mapper $mapper_control ($(json_field "$mapper_line" data_plane)), proxy $proxy_control," \
  "target $target_url; metrics at $mapper_admin/metrics $proxy_admin/metrics $target_url/metrics" >&2
echo "$target_url"

# Serve until a signal, or until one service dies (then stop the others and fail).
while true; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run-local.sh: a service exited; stopping the others (logs in $log_dir)" >&2
      stop_all
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
