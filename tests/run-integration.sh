#!/usr/bin/env bash
# run-integration.sh [tests/integration/test_X.py ...] — runs the integration test
# programs (default: every tests/integration/test_*.py) against build/asan, with
# one shared Kubernetes API fixture (tests/fixtures/kube_api.py) that the real
# kubectl talks to.  Prints each program's output and, last, the overall
# `N passed, M failed`.  A program that dies without its summary line counts as
# one failure.
set -uo pipefail
args=()
for a in "$@"; do args+=("$(realpath -m -- "$a")"); done
cd "$(dirname "$0")/.."

BUILD="${AURORA_BUILD_DIR:-build/asan}"
PROG_TIMEOUT="${INTEGRATION_PROG_TIMEOUT:-600}"
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
cleanup() {
  if [ -n "$kube_pid" ]; then kill "$kube_pid" 2>/dev/null; wait "$kube_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Kubernetes API fixture, shared by every program.
"$PY" tests/fixtures/kube_api.py --kubeconfig "$work/kubeconfig" >"$work/kube_port" 2>"$work/kube_api.log" &
kube_pid=$!
for _ in $(seq 100); do
  [ -s "$work/kube_port" ] && break
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

total_pass=0
total_fail=0
for prog in "${progs[@]}"; do
  [ -f "$prog" ] || { echo "run-integration: no such test program $prog"; total_fail=$((total_fail + 1)); continue; }
  echo "== $prog"
  out="$work/$(basename "$prog").out"
  timeout -k 10 "$PROG_TIMEOUT" "$PY" -u "$prog" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n1)
  if [ -z "$summary" ]; then
    echo "run-integration: $prog ended without a summary (status $rc)"
    total_fail=$((total_fail + 1))
    continue
  fi
  p=${summary%% passed*}
  f=${summary#*passed, }; f=${f%% failed}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "run-integration: $prog exited with status $rc"
    f=1
  fi
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
done

# the shared fixture must have survived every program
if ! kill -0 "$kube_pid" 2>/dev/null; then
  echo "run-integration: the kube_api fixture died during the run"
  total_fail=$((total_fail + 1))
fi

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
