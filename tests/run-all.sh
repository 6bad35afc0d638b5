#!/usr/bin/env bash
# run-all.sh — unit tests (build/asan/tests/test_*), integration tests, the Helm
# chart tests, the console's browser tests (tests/run-browser.sh) and a short
# run of every fuzz target (build/fuzz/fuzz_*), the five at once; the last line
# is the total `N passed, M failed`;
# exit status 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# Scratch files go to a tmpfs when there is a roomy one (/dev/shm with 2 GiB
# free): the servers' SQLite files and test databases are written and synced
# thousands of times, and on ext4 that journal work was ~7% of the
# integration tests' CPU (633 -> 591 CPU seconds alone), where the suite is
# CPU-bound.  The directory is world-writable and sticky like /tmp: tests
# run PostgreSQL as "postgres" and sandboxed commands as other users.
scratch=""
if [ -z "${AURORA_TEST_KEEP_TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
   [ "$(df -P -k /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -ge $((2 << 20)) ] 2>/dev/null; then
  scratch=$(mktemp -d /dev/shm/aurora-test.XXXXXX) && chmod 1777 "$scratch" && export TMPDIR="$scratch"
fi
work=$(mktemp -d -t aurora-all.XXXXXX)
trap 'rm -rf "$work" ${scratch:+"$scratch"}' EXIT

shopt -s nullglob
units=(build/asan/tests/test_*)
shopt -u nullglob

# The five parts run at the same time (each also runs its own programs in
# parallel); each part's output is printed in one piece, in this order.
# Each part also notes when it ended (seconds since the start), so the
# summary says which part the suite's wall time waits for.
pids=()
part() { # name command...
  local name=$1
  shift
  # the part's CPU (user + system, its programs included) where GNU time
  # is installed: on 2 cores the suite's wall time is mostly CPU
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%U %S' -o "$work/$name.rusage" "$@" >"$work/$name" 2>&1
  else
    "$@" >"$work/$name" 2>&1
  fi
  local rc=$?
  echo "$SECONDS" >"$work/$name.secs"
  return $rc
}
SECONDS=0
part unit tests/run-unit.sh "${units[@]}" &
pids+=($!)
# Integration runs last alone: once the others have ended (their .secs files),
# it may run six programs at a time instead of four (run-integration.sh).
INTEGRATION_ALONE_WHEN="$work/unit.secs $work/chart.secs $work/browser.secs $work/fuzz.secs" \
  INTEGRATION_JOBS_ALONE="${INTEGRATION_JOBS_ALONE:-6}" part integration tests/run-integration.sh &
pids+=($!)
part chart tests/chart/run.sh &
pids+=($!)
part browser tests/run-browser.sh &
pids+=($!)
# The fuzz targets run a fixed number of inputs each (not a time), one after
# the other on one core: beside the others, not after them, where they were
# ~30 s of a machine otherwise idle.
part fuzz tests/run-fuzz.sh &
pids+=($!)
stop_parts() {
  if [ ${#pids[@]} -gt 0 ]; then
    local p
    local c
    for p in "${pids[@]}"; do
      # the part's script, and GNU time between it and the subshell
      for c in $(pgrep -P "$p" 2>/dev/null); do pkill -TERM -P "$c" 2>/dev/null; done
      pkill -TERM -P "$p" 2>/dev/null
    done
    kill "${pids[@]}" 2>/dev/null
    wait
  fi
  rm -rf "$work" ${scratch:+"$scratch"}
}
trap stop_parts EXIT
trap 'exit 130' INT TERM
i=0
for part in unit integration chart browser fuzz; do
  wait "${pids[$i]}"
  cat "$work/$part"
  i=$((i + 1))
done
pids=()

total_pass=0
total_fail=0
for part in unit integration chart browser fuzz; do
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/$part" | tail -n1)
  if [ -z "$summary" ]; then
    echo "run-all: the $part tests printed no summary"
    total_fail=$((total_fail + 1))
    continue
  fi
  p=${summary%% passed*}
  f=${summary#*passed, }; f=${f%% failed}
  cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { c = $1 + $2 } END { if (c != "") printf ", %.0f CPU-s", c }' \
    "$work/$part.rusage" 2>/dev/null)
  echo "run-all: $part: $summary (done after $(cat "$work/$part.secs" 2>/dev/null || echo '?') s$cpu)"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
done
if [ "$total_fail" -ne 0 ]; then
  # What failed, by name, again at the end: each part prints every program's
  # output whole, so a failure's own lines may be thousands of lines up, and
  # a log cut to its head and tail (CI's report) lost the second of two.
  for part in unit integration chart browser fuzz; do
    awk -v part="$part" '
      /^== / { prog = $2 ": "; next }
      /^\[  FAILED  \] / && !/test\(s\)/ {
        key = prog $4
        if (!(key in seen)) { seen[key] = 1; print "run-all: " part " failed: " key }
        next
      }
      /^FAIL / { name = substr($0, 6); sub(/^- /, "", name); print "run-all: " part " failed: " prog name; next }
      /^-- [^ ]*: failed / { name = $2; sub(/:$/, "", name); print "run-all: " part " failed: " name; next }
      /^run-(unit|integration): / && /timed out|exited with status|without a summary|reported no tests|not an executable|no such test|died/ {
        print "run-all: " part ": " substr($0, index($0, " ") + 1)
      }
    ' "$work/$part"
  done
fi
if [ "$total_fail" -ne 0 ] && [ -n "$scratch" ]; then
  # the temp dirs failed tests keep (their logs) are in it
  echo "run-all: scratch files kept in $scratch"
  scratch=""
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
