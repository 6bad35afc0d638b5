#!/usr/bin/env bash
# `make run`: the server plus a local agent on embedded defaults.
# First run creates ./data (SQLite, self-signed TLS, an org, an admin API key
# and an agent token); later runs reuse them.  Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/rel
DATA=${AURORA_DATA_DIR:-$PWD/data}
PORT=${AURORA_PORT:-5080}
HEALTH_PORT=${AURORA_HEALTH_PORT:-8080}
export AURORA_DATA_DIR=$DATA AURORA_PORT=$PORT
mkdir -p "$DATA"
chmod 700 "$DATA"

# The internal secret is generated once and kept with the data.
if [ ! -s "$DATA/internal-api-secret" ]; then
  (umask 077; openssl rand -hex 32 > "$DATA/internal-api-secret")
fi
export INTERNAL_API_SECRET=${INTERNAL_API_SECRET:-$(cat "$DATA/internal-api-secret")}

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped."
}
trap cleanup INT TERM EXIT

"$BIN/aurora-server" serve &
pids+=($!)

CURL=(curl -sS --cacert "$DATA/tls/server.crt")
for _ in $(seq 1 100); do
  "${CURL[@]}" "https://localhost:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "aurora-server failed to start" >&2; exit 1; }
  sleep 0.1
done

# Organization, admin user and API key: once.
if [ ! -s "$DATA/admin-api-key" ]; then
  out=$("$BIN/aurora-server" admin bootstrap)
  key=$(printf '%s' "$out" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
  if [ -z "$key" ]; then
    echo "The store is bootstrapped but $DATA/admin-api-key is missing; create a key with" >&2
    echo "  $BIN/aurora-server admin create-key --org <org> --user <user>" >&2
    exit 1
  fi
  (umask 077; printf '%s\n' "$key" > "$DATA/admin-api-key")
fi
API_KEY=$(cat "$DATA/admin-api-key")

# Agent token for the local cluster: once, through the API like a user would.
if [ ! -s "$DATA/agent-token" ]; then
  out=$("${CURL[@]}" -X POST "https://localhost:$PORT/api/kubectl/tokens" \
        -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
        -d '{"cluster_name":"local","notes":"created by make run"}')
  tok=$(printf '%s' "$out" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$tok" ] || { echo "creating the agent token failed: $out" >&2; exit 1; }
  (umask 077; printf '%s\n' "$tok" > "$DATA/agent-token")
fi

NEXT_PUBLIC_WEBSOCKET_URL="wss://localhost:$PORT/kubectl-agent" \
AURORA_AGENT_TOKEN="$(cat "$DATA/agent-token")" \
AURORA_CA_FILE="$DATA/tls/server.crt" \
AURORA_HEALTH_PORT=$HEALTH_PORT \
  "$BIN/aurora-agent" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HEALTH_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
CLUSTER=$("${CURL[@]}" -H "Authorization: Bearer $API_KEY" "https://localhost:$PORT/api/kubectl/connections" \
          | sed -n 's/.*"cluster_id":"\([^"]*\)".*/\1/p' | head -n1)

cat <<MSG

Aurora is running: server https://localhost:$PORT, agent connected as $CLUSTER.
Run a kubectl command through the tunnel:

  curl -sS --cacert $DATA/tls/server.crt -H "Authorization: Bearer \$(cat $DATA/admin-api-key)" \\
    -H 'Content-Type: application/json' -d '{"args":["version","--client"]}' \\
    https://localhost:$PORT/api/clusters/$CLUSTER/kubectl

Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
