#!/usr/bin/env bash
# The main job on the shipped tiny model, end to end on the CPU. Grows with the project: today it
# generates a video densely and with token-wise acceleration at budget 0.5, profiles the latency
# of each budget, and sweeps two prompts over three budgets into the store (out/demo/astraea.db),
# scoring each video against the dense one (PSNR) and by VBench's network-free dimensions, then
# tunes a 10-step schedule for a predicted 2x speedup, generates with it, and writes the HTML
# report of all of it.
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
db="$out/astraea.db"
mkdir -p "$out/videos"
echo "== profile: one step's latency at each budget, stored as the latency model, with a trace"
"$bin" profile --model tiny --budgets 1,0.7,0.5,0.3 --max-seconds 5 --db "$db" --trace "$out/profile_trace.json"
echo "== sweep: 2 prompts x budgets 1, 0.7, 0.5 x seed 0 (cells already in the store are skipped)"
"$bin" sweep --model tiny "${weights[@]}" --prompt "$prompt" \
  --prompt "a yellow square moving up and a blue triangle standing still on a black background" \
  --budgets 1,0.7,0.5 --seeds 0 --videos "$out/videos" --db "$db"
"$bin" query latency --db "$db"
echo "== the sweep by budget: sampling time, PSNR against the dense video, VBench-proxy total"
"$bin" query "SELECT json_extract(r.config_json, '$.method.budget') AS budget,
                round(avg(CASE WHEN m.name = 'sample_s' THEN m.value END), 2) AS sample_s,
                round(avg(CASE WHEN m.name = 'psnr' THEN m.value END), 2) AS psnr_db,
                round(avg(CASE WHEN m.name = 'vbench_proxy_total' THEN m.value END), 4) AS vbench_proxy
              FROM runs r JOIN measurements m ON m.run_id = r.id
              WHERE r.kind = 'sweep-cell' GROUP BY budget ORDER BY budget DESC" --db "$db"
echo "== tune: per-step budgets for 10-step sampling at a predicted 2x over dense (EA, 6 x 3 generations)"
"$bin" tune --study demo --model tiny "${weights[@]}" --steps 10 --target-speedup 2 --population 6 --generations 3 \
  --prompt "$prompt" --seeds 0 --validation-count 2 --db "$db" --export "$out/tuned_schedule.json"
"$bin" generate --model tiny "${weights[@]}" --prompt "$prompt" --steps 10 --schedule "$out/tuned_schedule.json" \
  --metrics vbench-proxy --out "$out/tiny_tuned.mp4"
echo "== report: everything the store knows, as one HTML file"
"$bin" report --db "$db" --out "$out/report.html"
echo
echo "demo outputs in $(cd "$out" && pwd):"
ls -l "$out"
echo
echo "the report: $(cd "$out" && pwd)/report.html (open it in a browser; it works offline)"
