#!/usr/bin/env bash
# bench/agent_bench.sh — the agent's part of `make bench` (issue 3):
#   static agent binary size (stripped) and the release one for comparison;
#   idle RSS of a connected agent (static and release);
#   commands/s through one agent at concurrency 1 and 16;
#   reconnect time of 200 agents after a server restart;
#   then (issue 14) the static agent's size by library and its idle memory by
#   mapping, side by side with the same agent linked against Debian's packaged
#   OpenSSL (the previous static link), with the whole CA bundle loaded (what
#   lws did before) and with the release build: bench/agent_size.py and
#   bench/agent_footprint.py (docs/agent-footprint.md explains the columns).
# Needs the release binaries (make all) and the static agent (make static-agent,
# built here when missing).  Everything on 127.0.0.1; prints the report on
# stdout, progress on stderr; exit status 1 if a step saw an error.
# Knobs: BENCH_RECONNECT_AGENTS (200), BENCH_AGENT_COUNT (200 commands at
# concurrency 1, four times that at 16).
set -euo pipefail
cd "$(dirname "$0")/.."

for b in build/rel/aurora-server build/rel/aurora-agent; do
  [ -x "$b" ] || { echo "agent-bench: $b missing: run 'make all' first" >&2; exit 1; }
done
if [ ! -x build/static/aurora-agent ]; then
  echo "agent-bench: building the static agent (make static-agent)" >&2
  scripts/build-static-agent.sh build/static/aurora-agent >&2
fi
# 200 agents: one connection each in the server, plus slack
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n 4096 2>/dev/null || true
fi
if [ ! -x build/static/aurora-agent.debian-openssl ] ||
   [ build/static/aurora-agent.debian-openssl -ot build/static/aurora-agent ]; then
  echo "agent-bench: building the comparison agent (Debian's libssl.a/libcrypto.a)" >&2
  AGENT_OPENSSL=debian scripts/build-static-agent.sh build/static/aurora-agent.debian-openssl >&2
fi
rc=0
python3 bench/agent_bench.py "$@" || rc=1
python3 bench/agent_size.py build/static/aurora-agent.debian-openssl.map build/static/aurora-agent.map || rc=1
python3 bench/agent_footprint.py --binary debian-openssl=build/static/aurora-agent.debian-openssl || rc=1
exit $rc
