#!/usr/bin/env bash
# run-integration.sh [tests/integration/test_X.py ...] — runs the integration test
# programs (default: every tests/integration/test_*.py) against build/asan, with
# one shared Kubernetes API fixture (tests/fixtures/kube_api.py) that the real
# kubectl talks to.  Prints each program's output and, last, the overall
# `N passed, M failed`.  A program that dies without its summary line counts as
# one failure.
#
# The programs run INTEGRATION_JOBS (default 4) at a time: they pick free ports
# and temp dirs.  Inside `make test` they share the two cores with the other
# four parts, and a fifth program at a time only added contention: the test
# phase took 515 s (899 CPU seconds) with 5, 456 s (778) with 4 and 484 s
# (785) with 3, on one idle 2-core machine one after the other (2026-12-05).  The longest (by the durations
# of the previous run, kept in $BUILD/integration-seconds/, or else by
# tests/integration/seconds) start first; each
# program's output is printed in one piece when it ends, in the order above.
set -uo pipefail
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done
cd "$(dirname "$0")/.."

BUILD="${AURORA_BUILD_DIR:-build/asan}"
PROG_TIMEOUT="${INTEGRATION_PROG_TIMEOUT:-600}"
JOBS="${INTEGRATION_JOBS:-4}"
# Once the files INTEGRATION_ALONE_WHEN names all exist (run-all.sh: the other
# four parts have ended), up to INTEGRATION_JOBS_ALONE programs run at a time:
# in `make test` the last ~140 s were this part alone, and with 4 programs, many
# of them waiting on timers (idle sessions, leases), the machine was 55-90% busy.
JOBS_ALONE="${INTEGRATION_JOBS_ALONE:-$JOBS}"
ALONE_WHEN="${INTEGRATION_ALONE_WHEN:-}"
PY="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1

if [ ! -x "$BUILD/aurora-server" ] || [ ! -x "$BUILD/aurora-agent" ]; then
  echo "run-integration: $BUILD/aurora-server and $BUILD/aurora-agent must be built first" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [ ! -d tests/node_modules/ws ]; then
  echo "run-integration: tests/node_modules/ws is missing (scripts/install-deps.sh --test)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

work=$(mktemp -d -t aurora-integration.XXXXXX)
kube_pid=""
declare -A running=()  # pid of a program's `timeout` -> its index in progs
cleanup() {
  # each pid is GNU time's (or timeout's): its child, timeout, passes the
  # signal on to the program
  for pid in "${!running[@]}"; do pkill -TERM -P "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; done
  for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -n "$kube_pid" ]; then kill "$kube_pid" 2>/dev/null; wait "$kube_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Kubernetes API fixture, shared by every program.
"$PY" tests/fixtures/kube_api.py --kubeconfig "$work/kubeconfig" >"$work/kube_port" 2>"$work/kube_api.log" &
kube_pid=$!
# until it prints its port, or exits: the parts of `make test` all start at
# once (a fresh clone also builds the chart renderer then), and Python's
# start-up there took 2 s on a core shared with three busy processes; 5 s
# was the old bound.  60 s only ends a fixture that hangs.
for _ in $(seq 1200); do
  [ -s "$work/kube_port" ] && break
  kill -0 "$kube_pid" 2>/dev/null || break
  sleep 0.05
done
kube_port=$(head -n1 "$work/kube_port" 2>/dev/null)
if ! [[ "$kube_port" =~ ^[0-9]+$ ]]; then
  echo "run-integration: the kube_api fixture did not start" >&2
  cat "$work/kube_api.log" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
export AURORA_TEST_KUBECONFIG="$work/kubeconfig" AURORA_TEST_KUBE_PORT="$kube_port"
export AURORA_BUILD_DIR="$BUILD"

if [ ${#args[@]} -gt 0 ]; then progs=("${args[@]}"); else progs=(tests/integration/test_*.py); fi

n=${#progs[@]}
secs_dir="$BUILD/integration-seconds"
mkdir -p "$secs_dir" 2>/dev/null
# start order: longest first, by this tree's last run or, in a fresh clone
# (CI), by tests/integration/seconds (a full run's durations, committed);
# a program never timed counts as the longest
declare -A known=()
while read -r name secs; do
  [[ "$secs" =~ ^[0-9]+$ ]] && known[$name]=$secs
done < <(grep -v '^#' tests/integration/seconds 2>/dev/null)
mapfile -t order < <(for i in "${!progs[@]}"; do
  name=$(basename "${progs[$i]}")
  s=$(cat "$secs_dir/$name" 2>/dev/null)
  [[ "$s" =~ ^[0-9]+$ ]] || s=${known[$name]:-999999}
  echo "$s $i"
done | sort -k1,1nr -k2,2n | cut -d' ' -f2)

total_pass=0
total_fail=0
rcs=()     # index -> exit status, once the program ended
started=() # index -> $SECONDS at its start
took=()    # index -> its duration in seconds

report() {  # index: prints the program's output and adds its counts to the totals
  local i=$1 prog=${progs[$1]}
  if [ ! -f "$prog" ]; then
    echo "run-integration: no such test program $prog"
    total_fail=$((total_fail + 1))
    return
  fi
  local out="$work/$i.out" rc=${rcs[$i]}
  local cpu
  cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { c = $1 + $2 } END { if (c != "") printf "%.0f", c }' \
    "$work/$i.rusage" 2>/dev/null)
  echo "== $prog (${took[$i]}s${cpu:+, $cpu CPU-s})"
  cat "$out"
  echo "${took[$i]}" >"$secs_dir/$(basename "$prog")" 2>/dev/null
  local summary
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n1)
  if [ -z "$summary" ]; then
    echo "run-integration: $prog ended without a summary (status $rc)"
    total_fail=$((total_fail + 1))
    return
  fi
  local p=${summary%% passed*} f=${summary#*passed, }
  f=${f%% failed}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "run-integration: $prog exited with status $rc"
    f=1
  fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
}

slots() {  # how many programs may run now
  local f
  if [ -n "$ALONE_WHEN" ]; then
    for f in $ALONE_WHEN; do [ -e "$f" ] || { echo "$JOBS"; return; }; done
    echo "$JOBS_ALONE"
    [ -e "$work/alone" ] ||
      echo "run-integration: alone from ${SECONDS} s on; up to $JOBS_ALONE programs at a time" >"$work/alone"
  else
    echo "$JOBS"
  fi
}

next=0   # position in order of the next program to start
shown=0  # index of the next program to print
while [ "$shown" -lt "$n" ]; do
  jobs_now=$(slots)
  while [ "${#running[@]}" -lt "$jobs_now" ] && [ "$next" -lt "$n" ]; do
    i=${order[$next]}
    next=$((next + 1))
    started[$i]=$SECONDS
    if [ ! -f "${progs[$i]}" ]; then rcs[$i]=1; continue; fi
    # the CPU it and everything it waited for used (user + system), where
    # GNU time is installed: what the suite's wall time on 2 cores is made of
    if [ -x /usr/bin/time ]; then
      /usr/bin/time -f '%U %S' -o "$work/$i.rusage" \
        timeout -k 10 "$PROG_TIMEOUT" "$PY" -u "${progs[$i]}" >"$work/$i.out" 2>&1 &
    else
      timeout -k 10 "$PROG_TIMEOUT" "$PY" -u "${progs[$i]}" >"$work/$i.out" 2>&1 &
    fi
    running[$!]=$i
  done
  while [ "$shown" -lt "$n" ] && [ -n "${rcs[$shown]+x}" ]; do
    report "$shown"
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
    break  # nothing left to wait for (cannot happen: every started program is in running)
  fi
done

# the shared fixture must have survived every program
if ! kill -0 "$kube_pid" 2>/dev/null; then
  echo "run-integration: the kube_api fixture died during the run"
  total_fail=$((total_fail + 1))
fi

[ -e "$work/alone" ] && cat "$work/alone"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
