#!/usr/bin/env bash
# scripts/demo.sh beside two busy processes (as many as the CI machine has cores): it must
# complete and write its report. The busy loops end with this script, or after 30 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
busy=()
for _ in 1 2; do
  timeout 1800 bash -c 'while :; do :; done' &
  busy+=($!)
done
cleanup() {
  kill "${busy[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
ASTRAEA_DEMO_OUT="$out" scripts/demo.sh >"$out.log" 2>&1 || { cat "$out.log"; rm -f "$out.log"; exit 1; }
grep -E "^(warning|profile:)" "$out.log" || true
rm -f "$out.log"
test -s "$out/report.html" || { echo "demo_under_load: no report at $out/report.html"; exit 1; }
echo "demo_under_load: the demo completed beside 2 busy processes and wrote its report"
