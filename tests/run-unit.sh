#!/usr/bin/env bash
# run-unit.sh BIN... — runs each cmocka unit-test binary, aggregates the cmocka
# summaries and prints `N passed, M failed` as the last line.  A binary that
# crashes, is killed by a sanitizer, times out, skips tests or exits non-zero
# without reporting a failed test counts as (at least) one failure.
set -uo pipefail
bins=()
for b in "$@"; do bins+=("$(realpath -m -- "$b")"); done
cd "$(dirname "$0")/.."

UNIT_TIMEOUT="${UNIT_TIMEOUT:-300}"
export CMOCKA_MESSAGE_OUTPUT=STDOUT
: "${ASAN_OPTIONS:=detect_leaks=1:abort_on_error=0}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS

total_pass=0
total_fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for bin in ${bins[@]+"${bins[@]}"}; do
  if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    echo "run-unit: $bin is not an executable file"
    total_fail=$((total_fail + 1))
    continue
  fi
  case "$bin" in *.o|*.d) continue ;; esac
  echo "== $bin"
  timeout -k 10 "$UNIT_TIMEOUT" "$bin" >"$log" 2>&1
  rc=$?
  cat "$log"
  pass=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  fail=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s), listed below.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  skip=$(sed -n 's/^\[  SKIPPED \] \([0-9][0-9]*\) test(s), listed below.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  fail=$((fail + skip))
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    if [ "$rc" -eq 124 ]; then
      echo "run-unit: $bin timed out after ${UNIT_TIMEOUT}s"
    else
      echo "run-unit: $bin exited with status $rc"
    fi
    fail=1
  fi
  if [ "$pass" -eq 0 ] && [ "$fail" -eq 0 ]; then
    echo "run-unit: $bin reported no tests"
    fail=1
  fi
  echo "-- $bin: $pass passed, $fail failed"
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
done

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
