#!/usr/bin/env bash
# fetch-device-debs.sh: downloads (here, where apt works) the Debian packages that scripts/device-train.sh needs
# on a GPU machine lent by the device tool, where nothing can be installed: the build dependencies of the offline
# CLI except LibTorch (that machine's pip torch provides a CUDA one). Into .device-debs/ (~11 MB, git-ignored
# through .git/info/exclude); the device call names it in `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 libprotoc32 protobuf-compiler
  libzmq3-dev libzmq5 cppzmq-dev libsodium23 libpgm-5.3-0 libnorm1 libbsd0 libmd0
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libssl3
  zlib1g-dev zlib1g pkgconf pkgconf-bin libpkgconf3
)
mkdir -p .device-debs
grep -qx '/.device-debs/' .git/info/exclude 2>/dev/null || echo '/.device-debs/' >> .git/info/exclude
(cd .device-debs && apt-get download "${packages[@]}" >/dev/null 2>&1) ||
  { echo "fetch-device-debs.sh: apt-get download failed (no package mirror reachable?)" >&2; exit 1; }
echo "fetch-device-debs.sh: $(ls .device-debs | wc -l) packages, $(du -sh .device-debs | cut -f1) in .device-debs/" >&2
