#!/usr/bin/env bash
# Trains the tiny model on the GPU host for longer than one device call (10 minutes) allows:
#   scripts/gpu-train.sh start    builds if needed, starts training in its own process session, returns
#   scripts/gpu-train.sh wait     waits up to WAIT_SECONDS (default 540) for it, then prints the log's end;
#                                 once training is done, copies the weights and their record to $OUT
# Issue the next `wait` within 30 s of the previous call's end, or the machine is given back and the
# training with it. TRAIN_MINUTES (default 20), TRAIN_SIZES and TRAIN_ARGS pass through to `train`;
# TRAIN_GPU (default 0) picks the card, so that on a two-GPU host the other one stays free for tests
# and benchmarks. Training runs a copy of the binary, so rebuilding meanwhile is safe.
set -uo pipefail
cd "$(dirname "$0")/.."
run=${RUN_DIR:-/tmp/astraea-train}
out=${OUT:-out/gpu}
mkdir -p "$run" "$out"
case "${1:-}" in
  start)
    [[ -x build-gpu/apps/astraea-bench ]] || BUILD_TARGET=astraea-bench bash scripts/gpu-host.sh build || exit 1
    cp build-gpu/apps/astraea-bench "$run/astraea-bench"
    source scripts/gpu-env.sh
    CUDA_VISIBLE_DEVICES=${TRAIN_GPU:-0} setsid nohup "$run/astraea-bench" train --device cuda --minutes "${TRAIN_MINUTES:-20}" --steps 200000 \
      --sizes "${TRAIN_SIZES:-8x32x48:64,16x64x64:24,16x64x64:24}" --checkpoint-dir "$run/checkpoint" \
      --checkpoint-every 2000 --out "$run/tiny.safetensors" ${TRAIN_ARGS:-} >"$run/log" 2>&1 < /dev/null &
    echo "started training (pid $!), log in $run/log"
    ;;
  wait)
    deadline=$((SECONDS + ${WAIT_SECONDS:-540}))
    while ((SECONDS < deadline)) && ! grep -q "^wrote .*tiny.json" "$run/log" 2>/dev/null; do sleep 5; done
    tail -5 "$run/log"
    if grep -q "^wrote .*tiny.json" "$run/log"; then
      cp "$run/tiny.safetensors" "$run/tiny.json" "$run/log" "$out/" && echo "done: results in \$OUT"
    fi
    ;;
  *) echo "usage: scripts/gpu-train.sh start|wait" >&2; exit 2 ;;
esac
