#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the demo need. Idempotent: safe to run again.
# libopenblas0-pthread matters: without it Debian's LibTorch falls back to the reference BLAS (~40x slower).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  libtorch-dev libopenblas0-pthread
  libucx-dev libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler zlib1g-dev
  prometheus-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  libpcre2-dev libutf8proc-dev
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev
  curl python3 gnuplot-nox
)
# The tokenizer parity test runs the reference JS tokenizer; node/npm from Debian only where none is present.
# PROXYKV_DEPS=build: only what building needs (the container image's build stage: no tests, no demo tools).
if [ "${PROXYKV_DEPS:-all}" = build ]; then
  packages=(build-essential cmake ninja-build pkg-config
            libtorch-dev libucx-dev libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler zlib1g-dev
            prometheus-cpp-dev libspdlog-dev libfmt-dev libpcre2-dev libutf8proc-dev
            nlohmann-json3-dev libcpp-httplib-dev libcli11-dev)
else
  packages+=(python3-yaml)  # tests/deploy/check_deploy.py reads the Kubernetes manifests
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
