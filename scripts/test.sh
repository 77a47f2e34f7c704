#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every CPU test (CTest labels unit and integration;
# gpu and slow are excluded). Prints CTest's summary ("100% tests passed, 0 tests failed out of N").
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -LE 'gpu|slow' -j "${PROXYKV_TEST_JOBS:-2}" --timeout 1200
echo "scripts/test.sh: install + build + tests took $(( $(date +%s) - start )) s"
