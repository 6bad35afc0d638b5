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
# The web console is served by the server itself: OAuth callbacks and chat
# links (FRONTEND_URL/connectors, FRONTEND_URL/incidents/<id>) land on it.
export FRONTEND_URL=${FRONTEND_URL:-https://localhost:$PORT}
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

# A server already answering there (another terminal's run, or one a killed
# run left behind) would pass the poll below for ours, which cannot bind:
# say so instead of going on with a dead server.  -k: any server's answer.
if curl -sk --max-time 2 -o /dev/null "https://localhost:$PORT/health" 2>/dev/null; then
  echo "a server already answers on port $PORT (an earlier make run still running?);" >&2
  echo "stop it, or set AURORA_PORT to use another port." >&2
  exit 1
fi

"$BIN/aurora-server" serve &
pids+=($!)

CURL=(curl -sS --cacert "$DATA/tls/server.crt")
# Poll until the server answers; a server that exits, or a port that stays
# silent (another program on it, a firewall), ends the run with a reason.
up=0
for _ in $(seq 1 300); do
  # --max-time: something else on the port may accept and never answer.
  if "${CURL[@]}" --max-time 2 "https://localhost:$PORT/health" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "${pids[0]}" 2>/dev/null || { echo "aurora-server failed to start (its log is above)" >&2; exit 1; }
  sleep 0.1
done
if [ "$up" != 1 ]; then
  echo "aurora-server is running but https://localhost:$PORT/health did not answer within 30 s;" >&2
  echo "is another program on port $PORT?  Set AURORA_PORT to use another one." >&2
  exit 1
fi

# Organization, admin user and API key: once.
if [ ! -s "$DATA/admin-api-key" ]; then
  out=$("$BIN/aurora-server" admin bootstrap)
  key=$(printf '%s' "$out" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
  if [ -z "$key" ]; then
    # Bootstrapped by a run that stopped before saving its key (or the file
    # was removed): a new key for the organization's first admin.
    org=$(printf '%s' "$out" | sed -n 's/.*"org_id":"\([^"]*\)".*/\1/p')
    # (sed reads every line: quitting early could cut the command's output)
    user=$("$BIN/aurora-server" admin list-users --org "$org" |
           sed -n '/"role":"admin"/s/.*"id":"\([^"]*\)".*/\1/p')
    user=${user%%$'\n'*}
    if [ -n "$user" ]; then
      out=$("$BIN/aurora-server" admin create-key --org "$org" --user "$user" --name make-run)
      key=$(printf '%s' "$out" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
    fi
  fi
  if [ -z "$key" ]; then
    echo "The store is bootstrapped but $DATA/admin-api-key is missing; create a key with" >&2
    echo "  $BIN/aurora-server admin create-key --org <org> --user <user>" >&2
    exit 1
  fi
  (umask 077; printf '%s\n' "$key" > "$DATA/admin-api-key")
fi
API_KEY=$(cat "$DATA/admin-api-key")

# Agent token for the local cluster: created once through the API like a user
# would, and replaced when it was revoked or expired since (a rotation: the
# cluster keeps its id and history), so the printed command always works.
# The key goes to curl on its standard input (a config line), never as an
# argument: any local user reads every process's command line (ps).
api() {
  printf 'header = "Authorization: Bearer %s"\n' "$API_KEY" | "${CURL[@]}" -K - "$@"
}
# The saved token, its id and the cluster id are three files, written once
# the token is made: a run stopped before all three are kept (a crash,
# Ctrl-C) must not make the next one create a second "local" cluster, nor
# leave active a token nobody holds.  So every run reads the listing; the
# tokens this script made ("… by make run") name the cluster to reuse, and
# those active but not saved are revoked before a new one is made.
list=$(api "https://localhost:$PORT/api/kubectl/tokens") || list=
case "$list" in *'"tokens"'*) ;; *)
  echo "listing agent tokens failed (is $DATA/admin-api-key still valid?): $list" >&2; exit 1 ;;
esac
# One token object per line (they hold no nested objects).
tokens=$(printf '%s\n' "$list" | tr '{' '\n')
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
save() {  # save FILE VALUE: whole or not at all (umask 077 from the caller)
  printf '%s\n' "$2" > "$DATA/$1.tmp" && mv -f "$DATA/$1.tmp" "$DATA/$1"
}
saved_id=$(cat "$DATA/agent-token-id" 2>/dev/null || true)
ours=$(printf '%s\n' "$tokens" | grep -E '"notes":"(created|rotated) by make run"' || true)
if [ -s "$DATA/agent-token" ] && [ -n "$saved_id" ] &&
   printf '%s\n' "$tokens" | grep -F "\"id\":\"$saved_id\"" | grep -qF '"status":"active"'; then
  if [ ! -s "$DATA/agent-cluster-id" ]; then
    cluster=$(printf '%s\n' "$tokens" | grep -F "\"id\":\"$saved_id\"" | field cluster_id)
    (umask 077; save agent-cluster-id "$cluster")
  fi
else
  [ -s "$DATA/agent-token" ] && echo "the saved agent token is revoked, expired or unknown: creating a new one"
  if [ ! -s "$DATA/agent-cluster-id" ]; then
    cluster=$(printf '%s\n' "$ours" | field cluster_id | sed -n 1p)  # (no early exit: pipefail)
    [ -z "$cluster" ] || (umask 077; save agent-cluster-id "$cluster")
  fi
  # Active tokens of ours that no file holds: their values are lost.
  for id in $(printf '%s\n' "$ours" | grep -F '"status":"active"' | field id); do
    out=$(api -X DELETE "https://localhost:$PORT/api/kubectl/tokens/$id")
    case "$out" in *'"revoked":true'*) echo "revoked agent token $id, made by a run that stopped before saving it" ;;
      *) echo "revoking the unsaved agent token $id failed: $out" >&2; exit 1 ;; esac
  done
  body='{"cluster_name":"local","notes":"created by make run"}'
  if [ -s "$DATA/agent-cluster-id" ]; then
    body="{\"cluster_id\":\"$(cat "$DATA/agent-cluster-id")\",\"notes\":\"rotated by make run\"}"
  fi
  out=$(api -X POST "https://localhost:$PORT/api/kubectl/tokens" \
        -H 'Content-Type: application/json' -d "$body")
  tok=$(printf '%s' "$out" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$tok" ] || { echo "creating the agent token failed: $out" >&2; exit 1; }
  # The cluster first: a run stopped after it rotates the same cluster.
  (umask 077
   save agent-cluster-id "$(printf '%s' "$out" | field cluster_id)"
   save agent-token "$tok"
   save agent-token-id "$(printf '%s' "$out" | field token_id)")
fi

# The agent stands for the cluster: the server's internal secret (any user of
# any organization) is not its to hold, nor kubectl's, which inherits its
# environment.  (Values in env's arguments would show in ps: none there.)
NEXT_PUBLIC_WEBSOCKET_URL="wss://localhost:$PORT/kubectl-agent" \
AURORA_AGENT_TOKEN="$(cat "$DATA/agent-token")" \
AURORA_CA_FILE="$DATA/tls/server.crt" \
AURORA_HEALTH_PORT=$HEALTH_PORT \
  env -u INTERNAL_API_SECRET "$BIN/aurora-agent" &
pids+=($!)

ready=0
for _ in $(seq 1 300); do
  if curl -sf --max-time 2 "http://127.0.0.1:$HEALTH_PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "${pids[1]}" 2>/dev/null || { echo "aurora-agent exited (its log is above)" >&2; exit 1; }
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "aurora-agent did not connect within 30 s (its log is above; health port $HEALTH_PORT)" >&2
  exit 1
fi
CLUSTER=$(cat "$DATA/agent-cluster-id")

cat <<MSG

Aurora is running: server https://localhost:$PORT, agent connected as $CLUSTER.

console: https://localhost:$PORT/  (sign in with API key: $API_KEY)

Run a kubectl command through the tunnel:

  curl -sS --cacert $DATA/tls/server.crt -H @<(echo "Authorization: Bearer \$(cat $DATA/admin-api-key)") \\
    -H 'Content-Type: application/json' -d '{"args":["version","--client"]}' \\
    https://localhost:$PORT/api/clusters/$CLUSTER/kubectl

Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
