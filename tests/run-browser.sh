#!/usr/bin/env bash
# run-browser.sh — the web console's browser tests (tests/browser/): Debian's
# chromium, headless, driven by playwright-core (npm, tests/package.json),
# against build/asan's aurora-server and aurora-agent. One browser and one
# server for the whole file; prints its output and, last, `N passed, M failed`.
# Failure screenshots go to build/browser-failures/.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD="${AURORA_BUILD_DIR:-build/asan}"
CHROMIUM="${AURORA_CHROMIUM:-/usr/bin/chromium}"
missing=""
[ -x "$BUILD/aurora-server" ] && [ -x "$BUILD/aurora-agent" ] || missing="$BUILD/aurora-server and $BUILD/aurora-agent (make)"
[ -x "$CHROMIUM" ] || missing="$CHROMIUM (scripts/install-deps.sh --test installs chromium)"
[ -d tests/node_modules/playwright-core ] || missing="tests/node_modules/playwright-core (scripts/install-deps.sh --test)"
if [ -n "$missing" ]; then
  echo "run-browser: missing $missing" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
rm -rf build/browser-failures
export AURORA_BUILD_DIR="$BUILD" AURORA_CHROMIUM="$CHROMIUM"
# 600 s: only a hang guard.  In an idle `make test` the part ends after
# ~300 s (308 s on 2026-12-07); beside other work (load 15-24) it passed
# 420 s twice while every page still worked.
timeout -k 10 "${BROWSER_TIMEOUT:-600}" node tests/browser/test_console.mjs "$@" 2>&1
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "run-browser: timed out"
  echo "0 passed, 1 failed"
fi
exit "$rc"
