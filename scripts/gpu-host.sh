#!/usr/bin/env bash
# Builds and checks Astraea on the offline GPU host (docs: ../shared/GPU-HOST.md), then runs
# the GPU benchmarks. Needs .debs/ (Debian packages, see below) and, for the PyTorch baseline,
# .gpu/pytorch_wan_step.py. Logs and numbers go to $OUT (or out/gpu).
#   Here, once:  mkdir -p .debs && (cd .debs && apt-get download libsqlite3-dev libsqlite3-0 \
#                  libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev libfmt-dev libfmt9 \
#                  libbenchmark-dev libbenchmark1debian \
#                  libopencv-core-dev libopencv-imgproc-dev libopencv-video-dev libopencv-core406 \
#                  libopencv-imgproc406 libopencv-video406 libopencv-calib3d406 libopencv-dnn406 \
#                  libopencv-features2d406 libopencv-flann406 libtbb12 libprotobuf32 libblas3 liblapack3 \
#                  libgfortran5 libquadmath0 libglx0 libglvnd0)
#   (the OpenCV modules give the GPU host optical flow, so VBench-proxy scores there too; not yet
#   tried on the host)
# Usage: scripts/gpu-host.sh [build] [test] [bench] [baseline] [profile] [tune] [adherence] [generate] [train] [parallel] [peers] [peers-study] [wan-real]
#        (default: build test bench baseline profile generate; TRAIN_MINUTES sets the training time,
#        default 6; BUILD_TARGET builds one target only; tune needs profile's store, $out/gpu.db;
#        parallel runs on every GPU of the host, or NPROC of them, each layout of LAYOUTS (default
#        auto); it needs .gpu/pytorch_wan_usp.py for the PyTorch baseline; peers-study prices with
#        PEER_COSTS, default peers' table)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
mkdir -p "$out"
steps=("$@")
((${#steps[@]})) || steps=(build test bench baseline profile generate)
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }
log() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }

source scripts/gpu-env.sh  # the unpacked packages' libraries, before the build
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv | tee "$out/gpu.txt"
if want build; then
  mkdir -p /opt/deps && for f in .debs/*.deb; do dpkg -x "$f" /opt/deps; done
  torch_cmake=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  log "configure"
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DASTRAEA_BUILD_BENCH=ON \
    -DCMAKE_PREFIX_PATH="/opt/deps/usr;$torch_cmake" -DCMAKE_CUDA_ARCHITECTURES=90a >"$out/configure.log" 2>&1 ||
    { tail -30 "$out/configure.log"; exit 1; }
  grep -- "-- astraea" "$out/configure.log"
  log "build"
  cmake --build build-gpu -j 16 ${BUILD_TARGET:+--target $BUILD_TARGET} >"$out/build.log" 2>&1 || { grep -B2 -A12 -m5 "error" "$out/build.log" | head -80; exit 1; }
fi
if want train; then
  log "train tiny for ${TRAIN_MINUTES:-6} minutes"
  build-gpu/apps/astraea-bench train --device cuda --minutes "${TRAIN_MINUTES:-6}" --steps 40000 \
    --sizes "${TRAIN_SIZES:-8x32x48:32,16x64x64:12,16x64x64:12}" \
    --checkpoint-dir /tmp/tiny.checkpoint --checkpoint-every 2000 --out "$out/tiny.safetensors" 2>&1 | tee "$out/train.txt"
fi
if want test; then
  log "ctest"
  # Beside a training run (scripts/gpu-train.sh) keep CTEST_JOBS low: at 8 parallel tests the
  # training steps took 640 ms instead of 82 ms, and a timing-sensitive CLI test failed.
  (cd build-gpu && ctest -j "${CTEST_JOBS:-8}" --output-on-failure --timeout 600 -LE full) >"$out/ctest.log" 2>&1
  tail -25 "$out/ctest.log"
  grep -h "bf16 fused vs" "$out/ctest.log" | head -3
fi
if want bench; then
  log "kernels_bench"
  build-gpu/kernels/kernels_bench --benchmark_min_time=0.2 >"$out/kernels_bench.txt" 2>&1; tail -12 "$out/kernels_bench.txt"
  log "forward_bench"
  build-gpu/bench/astraea_forward_bench --json "$out/forward.json" >"$out/forward_bench.txt" 2>&1
  head -6 "$out/forward_bench.txt"
fi
if want baseline; then
  log "pytorch baseline, eager"
  PYTHONUNBUFFERED=1 python3 .gpu/pytorch_wan_step.py 30 >"$out/pytorch_eager.txt" 2>&1; cat "$out/pytorch_eager.txt"
  log "pytorch baseline, torch.compile"
  PYTHONUNBUFFERED=1 python3 .gpu/pytorch_wan_step.py 30 compile >"$out/pytorch_compile.txt" 2>&1; tail -7 "$out/pytorch_compile.txt"
fi
if want profile; then
  log "profile wan2.1-1.3b at 32760 tokens, budgets 1 to 0.3, CUPTI trace"
  build-gpu/apps/astraea-bench profile --model wan2.1-1.3b --frames 81 --height 480 --width 832 --device cuda \
    --budgets 1,0.7,0.5,0.4,0.3 --max-seconds 10 --db "$out/gpu.db" --trace "$out/wan_step_trace.json" \
    2>&1 | tee "$out/profile.txt"
fi
if want tune; then
  # The tuner's GPU bar (docs/tuning.md): quality on the tiny model at its evaluation size, latency
  # from the Wan2.1-1.3B profile above; the schedule is then run on the Wan preset and timed.
  log "tune tiny 16x64x64 against wan2.1-1.3b@81x480x832 latency, target ${TUNE_SPEEDUP:-2.6}x"
  build-gpu/apps/astraea-bench tune --study "wan-${TUNE_SPEEDUP:-2.6}x" --model tiny --frames 16 --height 64 --width 64 \
    --steps 30 --target-speedup "${TUNE_SPEEDUP:-2.6}" --latency-model wan2.1-1.3b@81x480x832 --devices cuda \
    --calibration-prompts bench/calibration_prompts.txt --fitness "${TUNE_FITNESS:-both}" --population "${TUNE_POPULATION:-16}" \
    --generations "${TUNE_GENERATIONS:-8}" --validation-count 8 --measure-repeats 2 --save-videos "$out/heldout" \
    --db "$out/gpu.db" --export "$out/wan_schedule.json" 2>&1 | tee "$out/tune.txt"
fi
if want adherence; then
  log "prompt adherence of ${ADHERENCE_WEIGHTS:-the shipped weights} at guidance ${ADHERENCE_GUIDANCE:-3,4,6,8}"
  build-gpu/apps/astraea-bench train --eval-only --device cuda ${ADHERENCE_WEIGHTS:+--init "$ADHERENCE_WEIGHTS"} \
    --eval-guidance "${ADHERENCE_GUIDANCE:-3,4,6,8}" --eval-seed "${ADHERENCE_SEED:-2000}" 2>&1 | tee "$out/adherence.txt"
fi
if want generate; then
  log "generate wan2.1-1.3b 81x480x832, 2 steps"
  build-gpu/apps/astraea-bench generate --model wan2.1-1.3b --weights random --frames 81 --height 480 \
    --width 832 --steps 2 --device cuda --out "$out/wan_latents.safetensors" 2>&1 | tee "$out/generate.txt"
  rm -f "$out/wan_latents.safetensors"
fi
if want parallel; then
  # The runs of docs/parallel.md on P GPUs: the split forwards against one process (NCCL, bf16), then
  # the Wan2.1-1.3B guided step at 32760 tokens on 1 GPU and on P, dense and at each budget, through
  # launch and through torchrun, beside the PyTorch Ulysses x CFG baseline; speedups from the store.
  np=${NPROC:-$(nvidia-smi -L | wc -l)}
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  bench=build-gpu/apps/astraea-bench
  wan="--model wan2.1-1.3b --frames 81 --height 480 --width 832 --device cuda --max-seconds ${PAR_SECONDS:-5}"
  budgets=${PAR_BUDGETS:-1,0.7,0.5,0.4,0.3}
  log "split forwards and collectives on $np GPUs (NCCL)"
  $bench launch --nproc "$np" --program build-gpu/parallel/parallel_rank_check -- --device cuda 2>&1 | tee "$out/rank_check.txt"
  log "profile on 1 GPU"
  $bench profile $wan --budgets "$budgets" --db "$out/par.db" 2>&1 | grep -v "\[#" | tee "$out/par_1.txt"
  for layout in ${LAYOUTS:-auto}; do
    log "profile on $np GPUs, --parallel $layout (launch)"
    $bench launch --nproc "$np" -- profile $wan --budgets "$budgets" --parallel "$layout" --db "$out/par.db" \
      --trace "$out/par_${np}_${layout//[=,]/_}.json" 2>&1 | grep -v "\[#" | tee "$out/par_${np}_${layout//[=,]/_}.txt"
  done
  log "profile on $np GPUs, dense only (torchrun --no-python)"
  torchrun --nproc-per-node "$np" --no-python $bench profile $wan --budgets 1 --no-store 2>&1 | grep -v "\[#" |
    tail -6 | tee "$out/par_torchrun.txt"
  if [[ -f .gpu/pytorch_wan_usp.py ]]; then
    log "pytorch Ulysses x CFG baseline, 1 and $np GPUs"
    torchrun --nproc-per-node 1 .gpu/pytorch_wan_usp.py 2>&1 | tail -8 | tee "$out/usp_1.txt"
    torchrun --nproc-per-node "$np" .gpu/pytorch_wan_usp.py 2>&1 | tail -8 | tee "$out/usp_$np.txt"
    ((np % 2 == 0)) && torchrun --nproc-per-node "$np" .gpu/pytorch_wan_usp.py 30 cfg 2>&1 | tail -8 | tee "$out/usp_${np}_cfg.txt"
  fi
  $bench query "SELECT * FROM world_speedup" --db "$out/par.db" 2>&1 | tee "$out/world_speedup.txt"
  $bench query latency --db "$out/par.db" 2>&1 | tee -a "$out/world_speedup.txt"
fi
if want peers; then
  # docs/peers.md: the cost of each kind of model call of the methods on Wan2.1-1.3B at 32760 tokens
  # (the table that prices the tiny runs' step actions); every method on the GPU on the shipped tiny
  # model; and a Wan run per method whose measured time checks the table's price of its actions.
  bench=build-gpu/apps/astraea-bench
  log "step costs of the methods' calls, Wan2.1-1.3B 81x480x832"
  $bench step-costs --model wan2.1-1.3b --weights random --frames 81 --height 480 --width 832 --device cuda \
    --max-seconds "${PEER_SECONDS:-3}" --out "$out/step_costs.json" 2>&1 | grep -v "\[#" | tee "$out/step_costs.txt"
  mkdir -p "$out/peers"
  for m in dense astraea:budget=0.5 teacache:threshold=0.08 magcache easycache fbcache:threshold=0.1 pab toca; do
    $bench generate --model tiny --device cuda --method "$m" --out "$out/peers/tiny.safetensors" \
      --result-json "$out/peers/tiny_${m//[:=,.]/_}.json" 2>&1 | grep -E "wrote|token-wise|error" | tee -a "$out/peers.txt"
  done
  for m in ${PEER_WAN_METHODS:-dense teacache:threshold=0.2,coefficients=identity pab astraea:budget=0.4}; do
    $bench generate --model wan2.1-1.3b --weights random --frames 81 --height 480 --width 832 --steps "${PEER_STEPS:-8}" \
      --device cuda --method "$m" --out "$out/peers/wan.safetensors" \
      --result-json "$out/peers/wan_${m//[:=,.]/_}.json" 2>&1 | grep -E "wrote|token-wise|error" | tee -a "$out/peers.txt"
  done
fi
if want peers-study; then
  # docs/peers.md: the quality-at-priced-speed sweep of every method on the tiny model (3 held-out
  # prompts) and the mixed-genome search, both priced with peers' Wan2.1-1.3B table; then the report.
  bench=build-gpu/apps/astraea-bench costs="${PEER_COSTS:-$out/step_costs.json}" db="$out/peers.db"
  head -3 bench/heldout_prompts.txt >"$out/heldout3.txt"
  head -"${MIXED_PROMPTS:-3}" bench/calibration_prompts.txt >"$out/calibration.txt"
  log "sweep of the peers, tiny, 3 held-out prompts"
  $bench sweep --model tiny --device cuda --prompts-file "$out/heldout3.txt" --db "$db" --metrics both \
    --method dense --method "astraea:budget=0.2|0.3|0.4|0.5|0.7" --method "teacache:threshold=0.08|0.15|0.3|0.6" \
    --method "magcache:ratios=assets/calibration/magcache_tiny.json,threshold=0.06|0.12|0.24,K=2|4" \
    --method "easycache:threshold=0.025|0.05|0.1|0.2" --method "fbcache:threshold=0.05|0.1|0.2|0.4" \
    --method "pab:self_range=2|3|4" --method "toca:ratio=0.1|0.25|0.5" --method "toca:ratio=0.25,interval=5" \
    2>&1 | grep -v "\[#" | tail -3 | tee -a "$out/peers-study.txt"
  log "mixed-genome search at ${MIXED_SPEEDUP:-3}x on the table"
  $bench tune --study "mixed-${MIXED_SPEEDUP:-3}x" --model tiny --devices cuda --genome mixed --step-costs "$costs" \
    --target-speedup "${MIXED_SPEEDUP:-3}" --population "${MIXED_POPULATION:-16}" --generations "${MIXED_GENERATIONS:-10}" \
    --calibration-prompts bench/calibration_prompts.txt --fitness both --validation-count 0 --measure-repeats 0 \
    --db "$db" --export "$out/mixed.json" 2>&1 | grep -v "\[#" | tail -12 | tee -a "$out/peers-study.txt"
  $bench sweep --model tiny --device cuda --prompts-file "$out/heldout3.txt" --db "$db" --metrics both \
    --method dense --schedules "$out/mixed.json" 2>&1 | grep -v "\[#" | tail -3 | tee -a "$out/peers-study.txt"
  $bench report --db "$db" --out "$out/peers.html" --step-costs "$costs" 2>&1 | tail -2 | tee -a "$out/peers-study.txt"
fi
if want wan-real; then
  # Wan2.1-1.3B from prompt to MP4 at the official size, random DiT and VAE weights at full size
  # (the release is not on the host; its text encoder is not either, so the context is random):
  # time and peak memory of each stage, dense and at a uniform budget (docs/wan.md).
  bench=build-gpu/apps/astraea-bench
  for run in "dense:" "b05:--budget 0.5 --dense-steps 10"; do
    name=${run%%:*}
    log "wan-real $name: 81x480x832, 50 UniPC steps, VAE decode"
    # shellcheck disable=SC2086
    $bench generate --model wan2.1-1.3b --weights random --vae random --frames 81 --height 480 --width 832 \
      --steps 50 --device cuda --prompt "a cat walks on the grass at sunset" ${run#*:} \
      --out "$out/wan_$name.mp4" --result-json "$out/wan_$name.json" 2>&1 | grep -v "\[#" | tee -a "$out/wan-real.txt"
  done
fi
log "done"
