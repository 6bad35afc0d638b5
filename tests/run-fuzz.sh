#!/usr/bin/env bash
# run-fuzz.sh [--long] [TARGET...] — runs the libFuzzer targets built from
# tests/fuzz/fuzz_*.c (build/fuzz/fuzz_*; `make fuzz` or `make test` builds them)
# and prints `N passed, M failed` as the last line: one per target, passed when
# it ran its whole budget without a crash, a leak, a sanitizer report or a
# broken invariant.
#
#   default   what `make test` runs: a fixed number of inputs per target
#             (FUZZ_RUNS_<target> below, scaled by FUZZ_RUNS_SCALE) from a fixed
#             seed, starting from the committed seeds in tests/fuzz/corpus/<target>/
#             only, so a run takes the same work on any machine and a failure
#             reproduces.  A wall-clock cap (FUZZ_CAP, 120 s) per target stops a
#             runaway target.
#   --long    what `make fuzz` runs: FUZZ_SECONDS (60) per target from a random
#             seed; new inputs accumulate in build/fuzz/corpus/<target>/.
#
# A failing input is saved as build/fuzz/artifacts/<target>/crash-* (or leak-*,
# timeout-*); reproduce it with `build/fuzz/fuzz_<target> <file>`.
set -uo pipefail
cd "$(dirname "$0")/.."

long=0
if [ "${1:-}" = "--long" ]; then
  long=1
  shift
fi

# Inputs per target for `make test`: 5-8 s each (about 50 s for all) on a
# 2-core machine with a load average of 10.  argv_redact's inputs cost ten
# times the others' (every rule over up to 24 words, twice, plus the stored
# form): the default 20000 took 20 s at a load of 11 (7.7 CPU s; the others
# 1-4 s), the one target near FUZZ_CAP on a busier machine; 6000 take 8-9 s.
declare -A RUNS=(
  [argv]=30000 [proto]=150000 [policy]=50000 [proxy]=200000
  [dns]=8000 [http_query]=40000 [exec_body]=30000 [github]=200000
  [argv_redact]=6000
)
DEFAULT_RUNS=20000
FUZZ_RUNS_SCALE="${FUZZ_RUNS_SCALE:-1}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_CAP="${FUZZ_CAP:-120}"
FUZZ_SEED="${FUZZ_SEED:-1}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.c; do
    t=${src#tests/fuzz/fuzz_}
    targets+=("${t%.c}")
  done
fi

work=$(mktemp -d -t aurora-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

pass=0
fail=0
for t in "${targets[@]}"; do
  bin=build/fuzz/fuzz_$t
  seeds=tests/fuzz/corpus/$t
  artifacts=build/fuzz/artifacts/$t
  log=$work/$t.log
  echo "== fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "run-fuzz: $bin is not built (make $bin)"
    fail=$((fail + 1))
    continue
  fi
  mkdir -p "$artifacts"
  args=(-artifact_prefix="$artifacts/" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1)
  [ -f "tests/fuzz/dict/$t.dict" ] && args+=(-dict="tests/fuzz/dict/$t.dict")
  if [ "$long" -eq 1 ]; then
    corpus=build/fuzz/corpus/$t
    mkdir -p "$corpus"
    args+=(-max_total_time="$FUZZ_SECONDS")
    cap=$((FUZZ_SECONDS + 120))
  else
    corpus=$work/corpus-$t # new inputs of this run only: the same work every time
    mkdir -p "$corpus"
    runs=$(( ${RUNS[$t]:-$DEFAULT_RUNS} * FUZZ_RUNS_SCALE ))
    args+=(-runs="$runs" -seed="$FUZZ_SEED")
    cap=$FUZZ_CAP
  fi
  dirs=("$corpus")
  [ -d "$seeds" ] && dirs+=("$seeds")
  start=$(date +%s)
  timeout -k 10 "$cap" "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -a -E '^Done [0-9]+ runs' "$log" | tail -n1)
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    echo "-- fuzz_$t: passed ($done_line; ${secs}s)"
    pass=$((pass + 1))
  else
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "run-fuzz: fuzz_$t did not finish within ${cap}s"
    fi
    # the report: the sanitizer / invariant message and the saved input
    grep -a -E -A30 'ERROR: |fuzz invariant broken|runtime error|SUMMARY' "$log" | head -n 60
    grep -a -E 'Test unit written to|^Base64:' "$log"
    echo "-- fuzz_$t: failed (exit status $rc; ${secs}s; full log: $artifacts/last.log)"
    cp "$log" "$artifacts/last.log"
    fail=$((fail + 1))
  fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
