#!/usr/bin/env bash
# run-unit.sh BIN... — runs each cmocka unit-test binary, aggregates the cmocka
# summaries and prints `N passed, M failed` as the last line.  A binary that
# crashes, is killed by a sanitizer, times out, skips tests or exits non-zero
# without reporting a failed test counts as (at least) one failure.
# The binaries run UNIT_JOBS (default: the number of CPUs) at a time, each with
# its own temp dirs and free ports, the longest first (by the durations of the
# previous run, kept in build/asan/unit-seconds/); each one's output is printed
# in one piece when it ends, in the order given.
set -uo pipefail
bins=()
for b in "$@"; do bins+=("$(realpath -m -- "$b")"); done
cd "$(dirname "$0")/.."

UNIT_TIMEOUT="${UNIT_TIMEOUT:-300}"
JOBS="${UNIT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
export CMOCKA_MESSAGE_OUTPUT=STDOUT
: "${ASAN_OPTIONS:=detect_leaks=1:abort_on_error=0}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS UBSAN_OPTIONS

total_pass=0
total_fail=0
work=$(mktemp -d)
declare -A running=()  # pid of a binary's `timeout` -> its index in bins
cleanup() {
  for pid in "${!running[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

report() {  # index: prints the binary's output and adds its counts to the totals
  local i=$1 bin=${bins[$1]} log="$work/$1.log" rc=${rcs[$1]}
  echo "== $bin (${took[$i]}s)"
  cat "$log"
  echo "${took[$i]}" >"$secs_dir/$(basename "$bin")" 2>/dev/null
  local pass fail skip
  pass=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  fail=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s), listed below.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  skip=$(sed -n 's/^\[  SKIPPED \] \([0-9][0-9]*\) test(s), listed below.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  # a group's setup or teardown that fails (cmocka: "[  FAILED  ] GROUP
  # TEARDOWN", then "[  ERROR   ] <group>") leaves the exit status 0 and the
  # PASSED count whole: counted here, one failure each
  local group
  group=$(grep -c '^\[  FAILED  \] GROUP \(SETUP\|TEARDOWN\)' "$log")
  fail=$((fail + skip + group))
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
}

n=${#bins[@]}
secs_dir=build/asan/unit-seconds
mkdir -p "$secs_dir" 2>/dev/null
# start order: longest first (a binary never timed counts as the longest)
mapfile -t order < <(for i in "${!bins[@]}"; do
  s=$(cat "$secs_dir/$(basename "${bins[$i]}")" 2>/dev/null)
  [[ "$s" =~ ^[0-9]+$ ]] || s=999999
  echo "$s $i"
done | sort -k1,1nr -k2,2n | cut -d' ' -f2)
rcs=()     # index -> exit status once it ended; "skip" for a file that is not a test
started=() # index -> $SECONDS at its start
took=()    # index -> its duration in seconds
next=0
shown=0
while [ "$shown" -lt "$n" ]; do
  while [ "${#running[@]}" -lt "$JOBS" ] && [ "$next" -lt "$n" ]; do
    i=${order[$next]}
    bin=${bins[$i]}
    next=$((next + 1))
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then rcs[$i]=missing; continue; fi
    case "$bin" in *.o|*.d) rcs[$i]=skip; continue ;; esac
    started[$i]=$SECONDS
    timeout -k 10 "$UNIT_TIMEOUT" "$bin" >"$work/$i.log" 2>&1 &
    running[$!]=$i
  done
  while [ "$shown" -lt "$n" ] && [ -n "${rcs[$shown]+x}" ]; do
    case "${rcs[$shown]}" in
      skip) ;;
      missing)
        echo "run-unit: ${bins[$shown]} is not an executable file"
        total_fail=$((total_fail + 1)) ;;
      *) report "$shown" ;;
    esac
    shown=$((shown + 1))
  done
  [ "$shown" -lt "$n" ] || break
  ended=""
  wait -n -p ended
  rc=$?
  if [ -n "$ended" ] && [ -n "${running[$ended]+x}" ]; then
    i=${running[$ended]}
    rcs[$i]=$rc
    took[$i]=$((SECONDS - ${started[$i]}))
    unset "running[$ended]"
  elif [ -z "$ended" ] && [ "${#running[@]}" -eq 0 ]; then
    break  # nothing left to wait for (cannot happen: every started binary is in running)
  fi
done

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
