#!/usr/bin/env bash
# device-train.sh: finishes the tiny family's training on a GPU machine lent by the device tool (docs/training.md
# "On a GPU"). Builds the offline CLI (PROXYKV_OFFLINE_TOOLS_ONLY) against that machine's CUDA LibTorch (its pip
# torch) with the Debian packages carried in .device-debs/ (scripts/fetch-device-debs.sh), resumes the
# trainings named by --models from models/*/checkpoint on the GPU side by side (configs as committed, "device" set to cuda), and
# leaves everything in one tarball, $OUT/family.tar (models/<each model> with its train.log, and the runs' stdout): unpack it here with
# `tar -xf .../family.tar` in the repository root.
#   device run: command "bash scripts/device-train.sh", carry [".device-debs"], timeout_s 590
#   options: --build-only (stop after the build), --train-seconds N (each training stops, with a checkpoint that
#   the tarball keeps, after N s; default 330), --models "A B ..." (models/configs/A.json ...; default
#   "target proxy-v2"; each config's out_dir is models/A. Not proxy: the shipped proxy is its run stopped at step 750
#   of 800 with no checkpoint, so resuming it would train the whole run again and overwrite models/proxy)
# Status: the build path was dry-run on the CPU VM against Debian's LibTorch with the carried packages
# (TORCH_CMAKE_PREFIX=/usr/lib/x86_64-linux-gnu/cmake/Torch ... --build-only); it has not run on a device yet.
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=0
train_seconds=330
models="target proxy-v2"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) build_only=1; shift ;;
    --train-seconds) train_seconds="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    *) echo "device-train.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out="${OUT:-/tmp/device-out}"
mkdir -p "$out"
log() { echo "device-train.sh: $*" | tee -a "$out/device-train.log" >&2; }
ls .device-debs/*.deb >/dev/null 2>&1 || { log "no .device-debs/: run scripts/fetch-device-debs.sh here first"; exit 1; }

deps=/tmp/proxykv-deps
rm -rf "$deps" && mkdir -p "$deps"
for f in .device-debs/*.deb; do dpkg -x "$f" "$deps"; done
multiarch="$deps/usr/lib/x86_64-linux-gnu"
# A shared build needs no private requirements; their .pc files (krb5, norm, ...) are not carried.
sed -i '/^Requires.private/d' "$multiarch"/pkgconfig/*.pc
export PATH="$deps/usr/bin:$PATH"
export LD_LIBRARY_PATH="$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_SYSROOT_DIR="$deps" PKG_CONFIG_LIBDIR="$multiarch/pkgconfig:$deps/usr/share/pkgconfig"
torch_prefix="${TORCH_CMAKE_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}"
log "LibTorch from $torch_prefix; $(nproc) cores; $(command -v nvidia-smi >/dev/null && nvidia-smi -L | head -1)"
t0=$(date +%s)
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DPROXYKV_OFFLINE_TOOLS_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf" \
  -DProtobuf_PROTOC_EXECUTABLE="$deps/usr/bin/protoc" -DProtobuf_INCLUDE_DIR="$deps/usr/include" \
  > "$out/cmake.log" 2>&1 || { tail -40 "$out/cmake.log"; log "configure failed"; exit 1; }
cmake --build build-device -j "$(nproc)" --target proxykv > "$out/build.log" 2>&1 ||
  { grep -E "error|Error" "$out/build.log" | head -40; log "build failed"; exit 1; }
log "built build-device/bin/proxykv in $(( $(date +%s) - t0 )) s"
[[ $build_only == 1 ]] && exit 0

pids=()
for m in $models; do
  [[ -f "models/configs/$m.json" ]] || { log "no models/configs/$m.json"; exit 2; }
  python3 - "$m" <<'PY'
import json, sys
m = sys.argv[1]
c = json.load(open(f"models/configs/{m}.json"))
c["device"] = "cuda"
json.dump(c, open(f"/tmp/{m}-cuda.json", "w"), indent=1)
PY
  timeout --signal=INT "$train_seconds" build-device/bin/proxykv train-lm --config "/tmp/$m-cuda.json" --resume \
    --log "models/$m/train.log" > "$out/train-$m.out" 2>&1 &
  pids+=("$!")
done
for pid in "${pids[@]}"; do wait "$pid" || log "a training ended with status $? (124: stopped at --train-seconds)"; done
dirs=() outs=()
for m in $models; do log "$m: $(tail -n 1 "$out/train-$m.out")"; dirs+=("models/$m"); outs+=("train-$m.out"); done
tar -cf "$out/family.tar" "${dirs[@]}" -C "$out" "${outs[@]}"
rm -f "${outs[@]/#/$out/}"
log "family.tar: $(du -h "$out/family.tar" | cut -f1)"
