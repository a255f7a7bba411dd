#!/usr/bin/env bash
# Installs the Debian 12 packages that Astraea builds and tests against, skipping what is there,
# then the report's web assets from npm (Chart.js, pinned by package-lock.json).
# Usage: scripts/install-deps.sh [--browser] [--tools] [--fuzz]   (--browser adds Chromium for the
# report tests; --tools adds python3-opencv and python3-torch for scripts/vbench_fixtures.py and
# scripts/wan_fixtures.py; --fuzz adds clang and its sanitizer and libFuzzer runtimes)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  libsqlite3-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libopencv-dev libsentencepiece-dev
)
for arg in "$@"; do
  [[ "$arg" == "--browser" ]] && packages+=(chromium)
  [[ "$arg" == "--tools" ]] && packages+=(python3-opencv python3-torch)
  [[ "$arg" == "--fuzz" ]] && packages+=(clang libclang-rt-14-dev)
done
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci installs exactly what the lock file pins; skipped while node_modules matches it.
if ! cmp -s package-lock.json node_modules/.astraea-lock 2>/dev/null; then
  echo "install-deps: npm ci (report assets)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.astraea-lock
fi
