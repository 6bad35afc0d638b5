#!/usr/bin/env bash
# Installs the Debian packages the build, tests and benchmarks need.
# Idempotent: when everything is present it does no work and touches no network.
set -euo pipefail

# What `make run` needs: the compiler, the libraries the two programs link,
# and the tools scripts/run-local.sh uses (openssl, curl).
PKGS=(
  build-essential pkg-config
  libwebsockets-dev libssl-dev libcurl4-openssl-dev libcjson-dev libyaml-dev
  libsqlite3-dev libpq-dev libhiredis-dev libseccomp-dev libc-ares-dev
  libev-dev libwebsockets-evlib-ev
  openssl ca-certificates curl procps
)

# Only for the tests (--test): cmocka; the real peers the integration tests
# start (PostgreSQL, Redis, haproxy, tinyproxy, the Azure CLI; promtool from
# prometheus checks /metrics); the chart renderer's Go packages; the
# libFuzzer targets (tests/fuzz/), built with clang, whose runtime is in
# libclang-rt-14-dev, and linked with lld (faster than GNU ld on the ~90
# sanitizer binaries); `stress-ng --cpu N` keeps every CPU busy while
# `make test` runs, to check the tests hold on a loaded machine; chromium is
# the browser tests/browser/ drives headless through playwright-core (npm).
TEST_PKGS=(
  libcmocka-dev python3 psmisc strace
  postgresql redis-server haproxy prometheus tinyproxy azure-cli
  golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev golang-github-xeipuuv-gojsonschema-dev
  clang libclang-rt-14-dev lld stress-ng chromium
)
[ "${1:-}" = "--test" ] && PKGS+=("${TEST_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt (unattended-upgrades on a fresh machine, often) holds the
  # lock for a while: wait for it rather than fail.
  APT=(apt-get -o DPkg::Lock::Timeout=600)
  $SUDO "${APT[@]}" update -qq
  $SUDO "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}"
fi

# Test peers from npm (ws for the legacy-agent client), installed project-locally.
if [ "${1:-}" = "--test" ]; then
  command -v node >/dev/null || { echo "install-deps: node is required for the integration tests" >&2; exit 1; }
  if [ ! -f tests/node_modules/.installed ] || [ tests/package.json -nt tests/node_modules/.installed ]; then
    # --loglevel=error, not --silent: npm's reason (stderr) must show when it
    # fails; its summary (stdout) is not needed.
    if ! (cd tests && npm install --no-audit --no-fund --loglevel=error >/dev/null); then
      echo "install-deps: 'npm install' in tests/ failed (the test peers of tests/package.json; npm's reason is above)." >&2
      echo "install-deps: fix that (network, proxy: npm config get registry) and run 'make test-deps' (scripts/install-deps.sh --test) again." >&2
      exit 1
    fi
    touch tests/node_modules/.installed
  fi
fi
