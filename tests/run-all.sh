#!/usr/bin/env bash
# run-all.sh — unit tests (build/asan/tests/test_*), integration tests, the Helm
# chart tests, then a short run of every fuzz target (build/fuzz/fuzz_*); the last
# line is the total `N passed, M failed`; exit status 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d -t aurora-all.XXXXXX)
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
units=(build/asan/tests/test_*)
shopt -u nullglob

tests/run-unit.sh "${units[@]}" 2>&1 | tee "$work/unit"
tests/run-integration.sh 2>&1 | tee "$work/integration"
tests/chart/run.sh 2>&1 | tee "$work/chart"
tests/run-fuzz.sh 2>&1 | tee "$work/fuzz"

total_pass=0
total_fail=0
for part in unit integration chart fuzz; do
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/$part" | tail -n1)
  if [ -z "$summary" ]; then
    echo "run-all: the $part tests printed no summary"
    total_fail=$((total_fail + 1))
    continue
  fi
  p=${summary%% passed*}
  f=${summary#*passed, }; f=${f%% failed}
  echo "run-all: $part: $summary"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
