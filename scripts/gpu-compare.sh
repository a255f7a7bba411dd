#!/usr/bin/env bash
# Times this checkout's astraea-bench against an earlier commit's on the GPU host: the same guided
# Wan2.1-1.3B step at 32760 tokens (profile, dense and budgets 1, 0.5, 0.3) and a 2-step dense
# generation, alternating earlier, this, earlier, this. For "within 1% of before" checks.
#   Here:  git worktree add --detach .before COMMIT; echo /.before/ >> .git/info/exclude
#   There: scripts/gpu-host.sh build (this checkout first), then scripts/gpu-compare.sh .before
#          with carry [".debs", ".before"]. Logs and the table go to $OUT (or out/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: scripts/gpu-compare.sh BEFORE_WORKTREE}
out=${OUT:-out/gpu}
mkdir -p "$out"
source scripts/gpu-env.sh
if [[ ! -x "$before/build-gpu/apps/astraea-bench" ]]; then
  torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  cmake -S "$before" -B "$before/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="/opt/deps/usr;$torch_cmake" -DCMAKE_CUDA_ARCHITECTURES=90a >"$out/before_configure.log" 2>&1 &&
    cmake --build "$before/build-gpu" -j 16 --target astraea-bench >"$out/before_build.log" 2>&1 ||
    { tail -30 "$out/before_build.log"; exit 1; }
fi
wan=(--model wan2.1-1.3b --frames 81 --height 480 --width 832 --device cuda)
for round in 1 2; do
  for tree in before after; do
    bin=build-gpu/apps/astraea-bench
    [[ $tree == before ]] && bin=$before/build-gpu/apps/astraea-bench
    echo "== round $round, $tree: profile"
    "$bin" profile "${wan[@]}" --budgets 1,0.5,0.3 --max-seconds 3 --no-store --format json \
      >"$out/compare_${tree}_${round}.json" 2>"$out/compare_${tree}_${round}.err" || cat "$out/compare_${tree}_${round}.err"
    echo "== round $round, $tree: generate, 2 dense steps"
    "$bin" generate "${wan[@]}" --weights random --steps 2 --out "$out/compare.safetensors" 2>/dev/null |
      grep -o "[0-9.]* s sampling" | tee "$out/compare_${tree}_${round}_generate.txt"
  done
done
rm -f "$out/compare.safetensors"
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
rows = {}
for tree in ("before", "after"):
    for r in (1, 2):
        j = json.load(open(f"{out}/compare_{tree}_{r}.json"))
        for row in j["rows"]:
            rows.setdefault(str(row["budget"]), {}).setdefault(tree, []).append(row["step_ms"])
        g = open(f"{out}/compare_{tree}_{r}_generate.txt").read().split()
        rows.setdefault("generate 2 steps (s)", {}).setdefault(tree, []).append(float(g[0]) if g else float("nan"))
print(f"{'variant':<22} {'before (runs)':>22} {'after (runs)':>22} {'after/before':>13}")
for k, v in rows.items():
    b, a = v.get("before", []), v.get("after", [])
    ratio = (sum(a) / len(a)) / (sum(b) / len(b)) if a and b else float("nan")
    print(f"{k:<22} {' / '.join(f'{x:.1f}' for x in b):>22} {' / '.join(f'{x:.1f}' for x in a):>22} {ratio:>13.4f}")
PY
