#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# into build-fuzz/ (or $ASTRAEA_FUZZ_BUILD_DIR), and runs each for SECONDS (default 30) from its
# seed corpus in fuzz/corpus/NAME. New inputs that grow coverage go to build-fuzz/corpus/NAME (the
# committed corpus is left alone); a crash, leak, timeout or out-of-memory input is kept in
# build-fuzz/findings/NAME and fails the run. Prints one line per target: executions, coverage.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 safetensors
# FUZZ_SEED fixes libFuzzer's seed (scripts/test.sh uses 1, so that CI replays the same inputs);
# unset, every run explores afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
build_dir=${ASTRAEA_FUZZ_BUILD_DIR:-build-fuzz}
scripts/install-deps.sh --fuzz
mkdir -p "$build_dir"
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DASTRAEA_FUZZ=ON \
  -DASTRAEA_BUILD_TESTS=OFF -DASTRAEA_CUDA=OFF >"$build_dir/configure.log" 2>&1 ||
  { cat "$build_dir/configure.log"; exit 1; }
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(sed -n 's/^ *astraea_fuzz(\([a-z_]*\) .*/\1/p' fuzz/CMakeLists.txt)
  # The video target exists where FFmpeg does.
  help=$(cmake --build "$build_dir" --target help)
  [[ $help == *fuzz_video* ]] || targets=("${targets[@]/video}")
fi
names=()
for t in "${targets[@]}"; do [[ -n $t ]] && names+=("fuzz_$t"); done
echo "fuzz: building ${names[*]}"
cmake --build "$build_dir" -j "${ASTRAEA_JOBS:-$(nproc)}" --target "${names[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for name in "${names[@]}"; do
  t=${name#fuzz_}
  corpus=$build_dir/corpus/$t findings=$build_dir/findings/$t
  mkdir -p "$corpus" "$findings"
  log=$build_dir/$name.log
  # -rss_limit_mb and -malloc_limit_mb: an input that makes a parser allocate beyond 2 GB is a finding.
  # At most a million executions: the long runs of docs/reliability.md stop there or at SECONDS.
  start=$SECONDS
  if "$build_dir/fuzz/$name" "$corpus" "fuzz/corpus/$t" -max_total_time="$seconds" -runs=1000000 -timeout=10 \
      ${FUZZ_SEED:+-seed=$FUZZ_SEED} \
      -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$findings/" >"$log" 2>&1; then
    status=ok
  else
    status="FAILED (see $log; inputs in $findings)"
    failed=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o "cov: [0-9]*" "$log" | tail -1 || true)
  printf 'fuzz %-12s %10s executions in %ss, %s, %s\n' "$t" "${runs:-?}" "$((SECONDS - start))" "${cov:-cov: ?}" \
    "$status"
done
exit $failed
