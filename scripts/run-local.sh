#!/usr/bin/env bash
# `make run`: the server plus a local agent on embedded defaults.
# First run creates ./data (SQLite, self-signed TLS, an org, an admin API key
# and an agent token); later runs reuse them.  Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/rel

# The connector guide has users write their settings into .env ("set
# SLACK_CLIENT_ID and SLACK_CLIENT_SECRET in .env and restart Aurora"), and
# the server's own messages say the same: read it here (AURORA_ENV_FILE names
# another file).  KEY=value lines as docker compose reads them: `#` comments,
# an optional `export`, a value in single quotes taken as is, in double
# quotes with \n \" \\ escapes, unquoted taken as is up to a blank and `#`
# (a comment).  A variable already in the environment wins.  The values go
# to the server only (dotenv_apply), never to the agent (which stands for
# the cluster) nor into any command line.
declare -A DOTENV=() ENV0=()
for k in $(compgen -e); do ENV0[$k]=1; done  # what the caller's environment sets
ENV_FILE=${AURORA_ENV_FILE:-$PWD/.env}
dotenv_fail() { echo "$ENV_FILE: $*" >&2; exit 1; }
if [ -e "$ENV_FILE" ]; then
  [ -f "$ENV_FILE" ] && [ -r "$ENV_FILE" ] || dotenv_fail "not a readable file"
  # Its lines become the server's settings (its database, its secrets): a
  # file others may write, or owned by another user, is not taken.  Opened
  # once, on fd 3, and the checks made on what was opened: the name may
  # change hands between a check of it and a read of it (a directory others
  # may write).
  exec 3<"$ENV_FILE" || dotenv_fail "cannot be opened"
  [ -f /dev/fd/3 ] || dotenv_fail "not a readable file"
  read -r mode owner < <(stat -L -c '%a %u' /dev/fd/3) || true
  [ -n "${mode:-}" ] && [ -n "${owner:-}" ] || dotenv_fail "cannot be examined (stat)"
  if (( 8#$mode & 8#022 )) || { [ "$owner" != "$(id -u)" ] && [ "$owner" != 0 ]; }; then
    dotenv_fail "writable by other users or owned by another user (mode $mode, uid $owner); chmod 600 it"
  fi
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    [ -z "$line" ] || [ "${line:0:1}" = "#" ] && continue
    [[ $line =~ ^export[[:space:]]+(.*)$ ]] && line=${BASH_REMATCH[1]}
    # (the line is never printed: it may hold a secret)
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] ||
      dotenv_fail "line $n is not KEY=value"
    key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
    if [ "${val:0:1}" = "'" ]; then
      [[ $val =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ ]] || dotenv_fail "line $n ($key): unterminated single quote"
      val=${BASH_REMATCH[1]}
    elif [ "${val:0:1}" = '"' ]; then
      [[ $val =~ ^\"((\\.|[^\"\\])*)\"[[:space:]]*(#.*)?$ ]] || dotenv_fail "line $n ($key): unterminated double quote"
      val=${BASH_REMATCH[1]} out=
      while [ -n "$val" ]; do
        c=${val:0:1} val=${val:1}
        if [ "$c" = '\' ]; then
          c=${val:0:1} val=${val:1}
          case "$c" in n) c=$'\n' ;; t) c=$'\t' ;; r) c=$'\r' ;; '"' | '\') ;; *) c="\\$c" ;; esac
        fi
        out+=$c
      done
      val=$out
    else
      # unquoted: a blank then `#` starts a comment, as docker compose reads it
      # (the guide's `GITHUB_AUTH_MODE=oauth # or hybrid …`); `a#b` stays
      val=${val%%[[:space:]]#*}
      val=${val%"${val##*[![:space:]]}"}
    fi
    DOTENV[$key]=$val
  done <&3
  exec 3<&-
fi
# KEY's value from the environment, else from .env, else $2.
setting() { if [ -n "${ENV0[$1]+x}" ]; then printf '%s' "${!1}"; else printf '%s' "${DOTENV[$1]-$2}"; fi; }
# Exports .env's variables the caller's environment does not set (in the
# subshell that runs the server: see server()); those this script exports
# itself were read through setting() already.
# A name bash holds read-only (UID, EUID, PPID…: compose files often set
# UID) cannot be exported from here; it is left out, with a note.  server()
# names its program before exporting anything, so a .env naming one of this
# script's own variables (BIN=…) cannot change what runs.
OWN=" AURORA_DATA_DIR AURORA_PORT FRONTEND_URL INTERNAL_API_SECRET "
dotenv_apply() {
  local k flags
  for k in "${!DOTENV[@]}"; do
    [ -n "${ENV0[$k]+x}" ] || [[ $OWN == *" $k "* ]] && continue
    flags=$(declare -p "$k" 2>/dev/null) || flags=
    flags=${flags#declare -} flags=${flags%% *} # "declare -ir UID=0": "ir"
    if [[ $flags == *r* ]]; then
      echo "$ENV_FILE: $k is read-only in the shell; not passed to the server" >&2
      continue
    fi
    export "$k=${DOTENV[$k]}"
  done
}
server() ( set -- "$BIN/aurora-server" "$@"; dotenv_apply; exec "$@" )

DATA=$(setting AURORA_DATA_DIR "$PWD/data")
PORT=$(setting AURORA_PORT 5080)
HEALTH_PORT=${AURORA_HEALTH_PORT:-8080}
export AURORA_DATA_DIR=$DATA AURORA_PORT=$PORT
# The web console is served by the server itself: OAuth callbacks and chat
# links (FRONTEND_URL/connectors, FRONTEND_URL/incidents/<id>) land on it.
FRONTEND_URL=$(setting FRONTEND_URL "https://localhost:$PORT")
export FRONTEND_URL
mkdir -p "$DATA"
chmod 700 "$DATA"

# The internal secret is generated once and kept with the data.
if [ ! -s "$DATA/internal-api-secret" ]; then
  (umask 077; openssl rand -hex 32 > "$DATA/internal-api-secret")
fi
INTERNAL_API_SECRET=$(setting INTERNAL_API_SECRET "$(cat "$DATA/internal-api-secret")")
export INTERNAL_API_SECRET

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

server serve &
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
  out=$(server admin bootstrap)
  key=$(printf '%s' "$out" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
  if [ -z "$key" ]; then
    # Bootstrapped by a run that stopped before saving its key (or the file
    # was removed): a new key for the organization's first admin.
    org=$(printf '%s' "$out" | sed -n 's/.*"org_id":"\([^"]*\)".*/\1/p')
    # (sed reads every line: quitting early could cut the command's output)
    user=$(server admin list-users --org "$org" |
           sed -n '/"role":"admin"/s/.*"id":"\([^"]*\)".*/\1/p')
    user=${user%%$'\n'*}
    if [ -n "$user" ]; then
      out=$(server admin create-key --org "$org" --user "$user" --name make-run)
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
