#!/usr/bin/env bash
# Configures and builds into build/ (Release, Ninja, ccache when present). Extra args go to cmake configure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${PROXYKV_JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${PROXYKV_BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build build -j "$jobs"
