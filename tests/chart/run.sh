#!/usr/bin/env bash
# run.sh — tests of the Helm charts chart/agent/ and chart/server/: YAML parses,
# values.schema.json, rendering (default values, tests/chart/{agent,server}/values-*.yaml),
# strict Kubernetes schema validation of every rendered object, content assertions. The last line is `N passed, M failed`.
#
# Rendering uses build/chart/aurora-chart-render, built here from tests/chart/render/main.go:
# a STAND-IN FOR `helm template` (Helm is not packaged for Debian 12), made of Debian's Go
# packages golang-go, golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev and
# golang-github-xeipuuv-gojsonschema-dev (scripts/install-deps.sh installs them).
# Validation uses the npm packages kubernetes-models, ajv and yaml (tests/package.json).
set -uo pipefail
cd "$(dirname "$0")/../.."

fail_setup() {
  echo "chart: $*"
  echo "0 passed, 1 failed"
  exit 1
}

command -v go >/dev/null || fail_setup "go is missing: run scripts/install-deps.sh"
command -v node >/dev/null || fail_setup "node is missing"

out=build/chart
bin=$out/aurora-chart-render
mkdir -p "$out"
if [ ! -x "$bin" ] || [ -n "$(find tests/chart/render -newer "$bin" -name '*.go' 2>/dev/null)" ]; then
  echo "# building $bin (GOPATH mode from /usr/share/gocode)"
  GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$PWD/$out/gocache" \
    go build -o "$bin.tmp" ./tests/chart/render || fail_setup "cannot build the renderer"
  mv "$bin.tmp" "$bin"
fi

if ! (cd tests && node -e 'require("kubernetes-models/apps/v1"); require("ajv"); require("yaml")' 2>/dev/null); then
  echo "# installing the npm test packages (tests/package.json)"
  (cd tests && npm install --no-audit --no-fund --silent) || fail_setup "npm install failed in tests/"
fi

AURORA_CHART_RENDER="$PWD/$bin" node tests/chart/chart_test.js
