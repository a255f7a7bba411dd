#!/usr/bin/env bash
# Configures and builds Astraea into build/ (or $ASTRAEA_BUILD_DIR). Extra arguments go to CMake;
# $ASTRAEA_BUILD_TARGETS (space-separated) builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${ASTRAEA_BUILD_DIR:-build}
jobs=${ASTRAEA_JOBS:-$(nproc)}
mkdir -p "$build_dir"
generator=()
command -v ninja >/dev/null && [[ ! -f "$build_dir/Makefile" ]] && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >"$build_dir/configure.log" 2>&1 ||
  { cat "$build_dir/configure.log"; exit 1; }
grep -E "^-- astraea:" "$build_dir/configure.log" || true
# shellcheck disable=SC2086
cmake --build "$build_dir" -j "$jobs" ${ASTRAEA_BUILD_TARGETS:+--target $ASTRAEA_BUILD_TARGETS}
