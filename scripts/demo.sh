#!/usr/bin/env bash
# The main job on the shipped tiny model, end to end on the CPU. Grows with the project: today it
# generates a video densely and with token-wise acceleration at budget 0.5, as MP4 and safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
bin=${ASTRAEA_BUILD_DIR:-build}/apps/astraea-bench
out=${ASTRAEA_DEMO_OUT:-out/demo}
mkdir -p "$out"

weights=()
[[ -f assets/tiny.safetensors ]] || weights=(--weights random)
prompt="a red circle moving left on a gray background"
echo "== generate: tiny preset at its CPU size (8 frames, 32x48, 768 tokens), 30 steps"
"$bin" generate --model tiny "${weights[@]}" --prompt "$prompt" --seed 0 --out "$out/tiny.mp4"
"$bin" generate --model tiny "${weights[@]}" --prompt "$prompt" --seed 0 --out "$out/tiny.safetensors"
echo "== generate: the same with token-wise acceleration, budget 0.5 after 2 dense steps"
"$bin" generate --model tiny "${weights[@]}" --prompt "$prompt" --seed 0 --budget 0.5 --out "$out/tiny_budget0.5.mp4"
echo
echo "demo outputs in $(cd "$out" && pwd):"
ls -l "$out"
