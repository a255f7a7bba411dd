#!/usr/bin/env bash
# Held-out videos for a tuning study on the GPU host (docs/tuning.md): for each prompt of
# bench/heldout_prompts.txt, seed 0, the dense video, the schedule's, and uniform budgets 0.3 and 0.35
# after 2 dense steps, as safetensors for `astraea-bench score`. Usage: WEIGHTS SCHEDULE OUTDIR
# (paths from the repository root; after scripts/gpu-host.sh build; tune --save-videos does the same
# for its own held-out prompts).
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh
w=$1; s=$2; d=$3; mkdir -p "$d"; i=0
B=build-gpu/apps/astraea-bench
while IFS= read -r p; do
  [[ -z "$p" || "$p" == \#* ]] && continue
  c=(--model tiny --weights "$w" --frames 16 --height 64 --width 64 --steps 30 --device cuda --seed 0 --prompt "$p")
  $B generate "${c[@]}" --out "$d/p${i}_dense.safetensors" >/dev/null
  $B generate "${c[@]}" --schedule "$s" --out "$d/p${i}_tuned.safetensors" >/dev/null
  for u in 0.3 0.35; do $B generate "${c[@]}" --budget $u --dense-steps 2 --out "$d/p${i}_u$u.safetensors" >/dev/null; done
  echo "$i $p" >> "$d/prompts.txt"; i=$((i+1))
done < bench/heldout_prompts.txt
