#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test, then fuzzes every parser for 30 s
# (scripts/fuzz.sh). `--full` adds the slow checks (label "full"); `--no-fuzz` skips the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
full=0 fuzz=1
for a in "$@"; do
  case "$a" in
    --full) full=1 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "error: unknown argument '$a' (usage: scripts/test.sh [--full] [--no-fuzz])" >&2; exit 2 ;;
  esac
done
scripts/install-deps.sh --browser  # Chromium opens the HTML report in a test
scripts/build.sh
labels=(-LE full)
((full)) && labels=()
# The CPU has 2 cores: run test binaries one at a time, each with all threads.
(cd "${ASTRAEA_BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 "${labels[@]}")
((fuzz)) && scripts/fuzz.sh 30
exit 0
