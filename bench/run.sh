#!/usr/bin/env bash
# bench/run.sh — `make bench`: tunnel overhead and server memory per idle agent.
#
# Uses the RELEASE binaries in build/rel (run `make all` first), everything on
# 127.0.0.1, a fresh temp data dir, and cleans every process and the temp dir
# up on exit.  Prints the report on stdout and saves it to build/bench-latest.txt;
# progress goes to stderr.  Exit status 1 if any benchmark saw an error.
#
#   1. tunnel vs direct: BENCH_COUNT (200) runs of /bin/echo bench <i> at
#      concurrency 1, 8, 32 — through POST /api/clusters/{id}/kubectl -> one
#      aurora-agent (AURORA_KUBECTL_PATH=/bin/echo), and directly via subprocess.
#      1b. a correctness check: concurrency 32 and 17 through an agent with its
#      default 16 slots (the server must hold the excess; every command must succeed).
#      1c. the same comparison with an I/O-bound command: bench/slow_echo.c
#      (waits BENCH_IO_MS ms, then echoes), BENCH_IO_COUNT (200) commands at
#      BENCH_IO_CONCURRENCY (1,16), through its own agent, once per wait in
#      BENCH_IO_MS (30,100): at 30 ms and concurrency 16 both arms keep a 2-core
#      VM's CPU busy where an exec costs ~3 ms of CPU, and about a third busy
#      where it costs ~1 ms; at 100 ms neither is, which is what "I/O-bound"
#      means (the `busy` column says which case a run was).
#   2. server VmRSS with 0, 100, 500, 1000 idle legacy-dialect agents
#      (bench/idle_agents.js, one node process, one token per agent), then all
#      leave, 1000 come back and leave again; glibc heap in use read with gdb.
#
# Knobs: BENCH_COUNT, BENCH_CONCURRENCY (1,8,32), BENCH_AGENTS (0,100,500,1000),
#        BENCH_AGENT_MAX_CONCURRENT (the measured agent's AURORA_MAX_CONCURRENT in 1;
#        default: the highest concurrency, at least 16),
#        BENCH_HEAP=0 (skip reading the server's heap in-use with gdb between steps),
#        BENCH_IO_COUNT, BENCH_IO_CONCURRENCY, BENCH_IO_MS (1c; BENCH_IO_COUNT=0 skips it),
#        BENCH_DB_SYNC (the server's AURORA_DB_SYNC: full, the default, or normal),
#        BENCH_CLIENT (lean, the default, or stdlib: see bench/tunnel_bench.py),
#        BENCH_WORKERS (process, the default: one client process per command in
#        flight; thread: the old threads, whose interpreter lock caps the direct arm),
#        BENCH_ROUNDS (2: each row of 1 and 1c runs in up to that many batches, tunnel and
#        direct alternating; more, smaller batches let a machine whose speed drifts
#        within a run weigh on both arms alike; beyond two, each keeps at least 8x
#        the concurrency),
#        BENCH_LOGS=<dir> (keep the server and agent logs there),
#        BENCH_PERF=<dir> (perf record server + agent during 1: <dir>/perf.data,
#        then python3 bench/perf_fold.py --perf-data <dir>/perf.data --out ...),
#        BENCH_PERF_SCHED=<dir> (perf sched record, whole machine, during 1:
#        <dir>/sched.data, summarised by bench/sched_summary.py in the report),
#        BENCH_SYSCALLS=<dir> (perf record of every system call of the server, the
#        agent and its children during 1: <dir>/syscalls.data, counted per command
#        by bench/syscall_summary.py in the report; counts, unlike times, do not
#        swing with the machine's load, so two builds compare in one run each).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/build/rel
OUT=$ROOT/build/bench-latest.txt
COUNT=${BENCH_COUNT:-200}
IO_COUNT=${BENCH_IO_COUNT:-200}
IO_CONCS=${BENCH_IO_CONCURRENCY:-1,16}
IO_MS=${BENCH_IO_MS:-30,100}
CLIENT=${BENCH_CLIENT:-lean}
WORKERS=${BENCH_WORKERS:-process}
ROUNDS=${BENCH_ROUNDS:-2}
CONCS=${BENCH_CONCURRENCY:-1,8,32}
AGENTS=${BENCH_AGENTS:-0,100,500,1000}
MAX_AGENTS=$(tr ',' '\n' <<<"$AGENTS" | sort -n | tail -n1)

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for b in aurora-server aurora-agent; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run 'make all' first"
done
command -v python3 >/dev/null || die "python3 is required"
command -v node >/dev/null || die "node is required"
[ -d tests/node_modules/ws ] || die "tests/node_modules/ws missing: run 'scripts/install-deps.sh --test'"
command -v curl >/dev/null || die "curl is required"

# One fd per agent connection in the server (and in the node client), plus slack.
need_fds=$((MAX_AGENTS * 2 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$need_fds" ]; then
    ulimit -n "$need_fds"
  else
    ulimit -n "$hard"
    log "warning: ulimit -n capped at $hard (wanted $need_fds)"
  fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aurora-bench.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ -n "${BENCH_LOGS:-}" ]; then # keep the server/agent logs for a look afterwards
    mkdir -p "$BENCH_LOGS" && cp "$WORK"/*.log "$BENCH_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$WORK"
  if [ -n "${TEE_PID:-}" ]; then # let tee write its last lines before we return
    exec 1>&3 3>&-
    wait "$TEE_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run copies: build/rel may be rebuilt (by `make` elsewhere) while we run.
mkdir -p "$WORK/bin"
cp "$BIN/aurora-server" "$BIN/aurora-agent" "$WORK/bin/"
BIN=$WORK/bin
"$BIN/aurora-server" --version >/dev/null && "$BIN/aurora-agent" --help >/dev/null \
  || die "the binaries in build/rel do not run (being rebuilt?)"
if [ "$IO_COUNT" != 0 ]; then
  for ms in ${IO_MS//,/ }; do
    [[ $ms =~ ^[0-9]+$ ]] || die "BENCH_IO_MS: '$ms' is not a number of milliseconds"
    cc -O2 -DSLOW_ECHO_MS="$ms" -o "$BIN/slow_echo_$ms" bench/slow_echo.c \
      || die "cannot build bench/slow_echo.c"
  done
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
json_get() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

PORT=$(free_port)
HEALTH_PORT=$(free_port)
export AURORA_DATA_DIR=$WORK/data AURORA_PORT=$PORT AURORA_BIND=127.0.0.1
export INTERNAL_API_SECRET=bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export AURORA_LOG_LEVEL=info
export AURORA_DB_SYNC=${BENCH_DB_SYNC:-full}
export AURORA_TOKEN_RATE_LIMIT=$((MAX_AGENTS + 100)) # tokens for phase 2 come from the API
export AURORA_TOKEN_RATE_LIMIT_PER_MINUTE=$AURORA_TOKEN_RATE_LIMIT
mkdir -p "$AURORA_DATA_DIR"
chmod 700 "$AURORA_DATA_DIR"
CA=$AURORA_DATA_DIR/tls/server.crt
SERVER_PID=

start_server() { # $1: log file
  "$BIN/aurora-server" serve >>"$1" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 1 100); do
    [ -f "$CA" ] && curl -fsS --cacert "$CA" "https://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$1" >&2; die "aurora-server exited at start"; }
    sleep 0.1
  done
  tail -n 20 "$1" >&2
  die "aurora-server not healthy after 10 s"
}

STOP_STATUS=0
stop_pid() { # $1 pid: SIGTERM, wait up to 10 s; exit status in STOP_STATUS
  local p=$1
  STOP_STATUS=0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$p" 2>/dev/null; then
    log "pid $p ignored SIGTERM for 10 s; killing"
    kill -KILL "$p"
  fi
  wait "$p" 2>/dev/null || STOP_STATUS=$?
  # reaped: forget it, so cleanup never signals a recycled pid
  local keep=() q
  for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}

AGENT_PID=
start_agent() { # $1 token, $2 AURORA_MAX_CONCURRENT ('' = default), $3 log file, [$4 program]
  (
    if [ -n "$2" ]; then export AURORA_MAX_CONCURRENT=$2; fi
    NEXT_PUBLIC_WEBSOCKET_URL="wss://127.0.0.1:$PORT/kubectl-agent" \
    AURORA_AGENT_TOKEN="$1" AURORA_CA_FILE="$CA" \
    AURORA_HEALTH_PORT=$HEALTH_PORT AURORA_HEALTH_BIND=127.0.0.1 \
    AURORA_KUBECTL_PATH="${4:-/bin/echo}" \
    AURORA_POLICY_MODE=custom AURORA_POLICY_ALLOW=bench \
      exec "$BIN/aurora-agent"
  ) >"$3" 2>&1 &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$HEALTH_PORT/ready" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$3" >&2
  die "aurora-agent not ready"
}

report() {
  # ---- machine -------------------------------------------------------------
  echo "== Aurora tunnel benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- server agent common 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "machine: nproc $(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null || echo '?'), openssl $(openssl version | awk '{print $2}'), node $(node --version), $(python3 --version)"
  echo "binaries (copied from build/rel at start; -O2 -g, dynamically linked):"
  for b in aurora-server aurora-agent; do
    sz=$(stat -c %s "$BIN/$b")
    txt=$(size "$BIN/$b" 2>/dev/null | awk 'NR==2{print $1+$2+$3}')
    awk -v b="$b" -v sz="$sz" -v txt="${txt:-0}" \
      'BEGIN{printf "  %-14s %8.1f KiB file, %8.1f KiB text+data+bss\n", b, sz/1024, txt/1024}'
  done
  echo "ulimit -n $(ulimit -n); server workers: default (AURORA_WORKERS unset); AURORA_DB_SYNC=$AURORA_DB_SYNC; client: $CLIENT"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews the numbers)"
  echo

  # ---- setup -----------------------------------------------------------------
  log "starting aurora-server on 127.0.0.1:$PORT (data $AURORA_DATA_DIR)"
  start_server "$WORK/server.log"
  local boot org user key tokjson token cluster
  boot=$("$BIN/aurora-server" admin bootstrap --org-name bench --email bench@example.invalid)
  org=$(json_get org_id <<<"$boot")
  user=$(json_get user_id <<<"$boot")
  key=$(json_get api_key <<<"$boot")
  tokjson=$("$BIN/aurora-server" admin create-agent-token --org "$org" --user "$user" --cluster-name bench-tunnel)
  token=$(json_get token <<<"$tokjson")
  cluster=$(json_get cluster_id <<<"$tokjson")

  # The measured agent gets as many slots as the highest concurrency, so the
  # table measures the tunnel; the agent's default limit (16) is exercised
  # separately below (1b).
  local maxc agent_max
  maxc=$(tr ',' '\n' <<<"$CONCS" | sort -n | tail -n1)
  agent_max=${BENCH_AGENT_MAX_CONCURRENT:-$((maxc > 16 ? maxc : 16))}
  start_agent "$token" "$agent_max" "$WORK/agent.log"
  local agent_pid=$AGENT_PID

  # ---- 1. tunnel vs direct -----------------------------------------------------
  local rc1=0 rc1b=0 rc2=0
  echo "== 1. tunnel vs direct: /bin/echo through POST /api/clusters/{id}/kubectl -> aurora-agent (v2 dialect, AURORA_MAX_CONCURRENT=$agent_max) vs subprocess"
  log "tunnel vs direct: $COUNT commands at concurrency $CONCS"
  local perf_pid=
  if [ -n "${BENCH_PERF:-}" ]; then # profile server and agent while 1 runs (see docs/performance.md)
    mkdir -p "$BENCH_PERF"
    perf record -q -F "${BENCH_PERF_FREQ:-1999}" --call-graph dwarf,16384 \
      -p "$SERVER_PID,$agent_pid" -o "$BENCH_PERF/perf.data" 2>"$WORK/perf.log" &
    perf_pid=$!
    sleep 1 # perf attaches asynchronously
  elif [ -n "${BENCH_PERF_SCHED:-}" ]; then # scheduler events, whole machine, while 1 runs
    mkdir -p "$BENCH_PERF_SCHED"
    perf sched record -a -o "$BENCH_PERF_SCHED/sched.data" 2>"$WORK/perf.log" &
    perf_pid=$!
    sleep 1 # perf attaches asynchronously
  elif [ -n "${BENCH_SYSCALLS:-}" ]; then # every system call of server, agent, children
    mkdir -p "$BENCH_SYSCALLS"
    perf record -q -e raw_syscalls:sys_enter -p "$SERVER_PID,$agent_pid" \
      -o "$BENCH_SYSCALLS/syscalls.data" 2>"$WORK/perf.log" &
    perf_pid=$!
    sleep 1 # perf attaches asynchronously
  fi
  python3 bench/tunnel_bench.py --port "$PORT" --ca "$CA" --key "$key" --cluster "$cluster" \
    --program /bin/echo --count "$COUNT" --concurrency "$CONCS" --client "$CLIENT" --workers "$WORKERS" \
    --rounds "$ROUNDS" --server-pid "$SERVER_PID" --agent-pid "$agent_pid" || rc1=$?
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    # the tunnel's commands in 1: each concurrency's count plus its warm-up
    local ncmd=0 c
    for c in ${CONCS//,/ }; do ncmd=$((ncmd + COUNT + (c > 20 ? c : 20))); done
    if [ -n "${BENCH_PERF:-}" ]; then
      log "perf data in $BENCH_PERF/perf.data (fold it with bench/perf_fold.py)"
    elif [ -n "${BENCH_PERF_SCHED:-}" ]; then
      echo "-- scheduler: run time and wake-up delay per tunnelled command ($ncmd), both arms' machine"
      python3 bench/sched_summary.py --sched-data "$BENCH_PERF_SCHED/sched.data" \
        --per-command "$ncmd" --server-pid "$SERVER_PID" --agent-pid "$agent_pid" || rc1=1
    else
      echo "-- system calls per tunnelled command ($ncmd)"
      python3 bench/syscall_summary.py --perf-data "$BENCH_SYSCALLS/syscalls.data" \
        --per-command "$ncmd" --server-pid "$SERVER_PID" --agent-pid "$agent_pid" || rc1=1
    fi
  fi
  stop_pid "$agent_pid"
  [ "$STOP_STATUS" = 0 ] || { echo "  PROBLEM aurora-agent exited with status $STOP_STATUS on SIGTERM"; rc1=1; }
  echo

  # ---- 1b. more requests in flight than the agent has slots ------------------------
  local tok2 cluster2
  tok2=$("$BIN/aurora-server" admin create-agent-token --org "$org" --user "$user" --cluster-name bench-default)
  cluster2=$(json_get cluster_id <<<"$tok2")
  start_agent "$(json_get token <<<"$tok2")" "" "$WORK/agent-default.log"
  agent_pid=$AGENT_PID
  echo "== 1b. check: $((COUNT * 2)) commands at concurrency 32 and 17 through an agent with its default AURORA_MAX_CONCURRENT (16); the server must hold the excess, so every command must succeed"
  log "slot check: concurrency 32 and 17 against an agent with 16 slots"
  python3 bench/tunnel_bench.py --port "$PORT" --ca "$CA" --key "$key" --cluster "$cluster2" \
    --program /bin/echo --count $((COUNT * 2)) --concurrency 32,17 --tunnel-only || rc1b=$?
  stop_pid "$agent_pid"
  [ "$STOP_STATUS" = 0 ] || { echo "  PROBLEM aurora-agent exited with status $STOP_STATUS on SIGTERM"; rc1b=1; }
  echo

  # ---- 1c. an I/O-bound command, once per wait ----------------------------------------
  if [ "$IO_COUNT" != 0 ]; then
    local tok3 cluster3 ms
    for ms in ${IO_MS//,/ }; do
      tok3=$("$BIN/aurora-server" admin create-agent-token --org "$org" --user "$user" --cluster-name "bench-io-$ms")
      cluster3=$(json_get cluster_id <<<"$tok3")
      start_agent "$(json_get token <<<"$tok3")" "$agent_max" "$WORK/agent-io-$ms.log" "$BIN/slow_echo_$ms"
      agent_pid=$AGENT_PID
      echo "== 1c. tunnel vs direct, I/O-bound: bench/slow_echo (waits $ms ms, then echoes) through the tunnel vs subprocess"
      log "I/O-bound ($ms ms): $IO_COUNT commands at concurrency $IO_CONCS"
      python3 bench/tunnel_bench.py --port "$PORT" --ca "$CA" --key "$key" --cluster "$cluster3" \
        --program "$BIN/slow_echo_$ms" --count "$IO_COUNT" --concurrency "$IO_CONCS" --client "$CLIENT" --workers "$WORKERS" \
        --warmup 16 --rounds "$ROUNDS" --targets c16 --server-pid "$SERVER_PID" --agent-pid "$agent_pid" || rc1=$?
      stop_pid "$agent_pid"
      [ "$STOP_STATUS" = 0 ] || { echo "  PROBLEM aurora-agent exited with status $STOP_STATUS on SIGTERM"; rc1=1; }
      echo
    done
  fi

  # ---- 2. RSS vs idle agents -----------------------------------------------------
  echo "== 2. aurora-server VmRSS vs idle legacy-dialect agents (one node client, one token per agent)"
  # One token per agent, through the API (this server runs with a raised
  # AURORA_TOKEN_RATE_LIMIT); then a fresh server process for a clean baseline.
  log "creating $MAX_AGENTS agent tokens (POST /api/kubectl/tokens)"
  local t0=$SECONDS
  python3 bench/make_tokens.py --port "$PORT" --ca "$CA" --key "$key" --count "$MAX_AGENTS" \
    --out "$WORK/tokens.jsonl" || die "creating agent tokens failed"
  [ "$(grep -c '"token"' "$WORK/tokens.jsonl")" -ge "$MAX_AGENTS" ] || die "fewer tokens than $MAX_AGENTS"
  log "tokens created in $((SECONDS - t0)) s; restarting the server"
  stop_pid "$SERVER_PID"
  [ "$STOP_STATUS" = 0 ] || { echo "  PROBLEM aurora-server exited with status $STOP_STATUS on SIGTERM (after phase 1)"; rc1=1; }
  start_server "$WORK/server2.log"
  local heap_opt=
  if [ "${BENCH_HEAP:-1}" != 0 ] && command -v gdb >/dev/null; then heap_opt=--heap; fi
  python3 bench/rss_bench.py --port "$PORT" --ca "$CA" --key "$key" --pid "$SERVER_PID" \
    --tokens "$WORK/tokens.jsonl" --server-log "$WORK/server2.log" \
    --node-script bench/idle_agents.js --counts "$AGENTS" $heap_opt || rc2=$?
  stop_pid "$SERVER_PID"
  [ "$STOP_STATUS" = 0 ] || { echo "  PROBLEM aurora-server exited with status $STOP_STATUS on SIGTERM (after phase 2)"; rc2=1; }
  echo

  # ---- server/agent log health -------------------------------------------------------
  echo "== logs: warn/error lines (server phase 1, agent of 1, agent of 1b, agent of 1c, server phase 2)"
  local io_logs=() ms
  for ms in ${IO_MS//,/ }; do io_logs+=("agent-io-$ms.log"); done
  for f in server.log agent.log agent-default.log "${io_logs[@]}" server2.log; do
    [ -f "$WORK/$f" ] || continue
    local n
    n=$(grep -Ec ' (warn|error) ' "$WORK/$f" || true)
    echo "  $f: $n"
    # grouped, with timestamps dropped and numbers folded to N
    grep -E ' (warn|error) ' "$WORK/$f" | sed -E 's/^[0-9TZ:.-]+ +//; s/[0-9]+/N/g' \
      | sort | uniq -c | sort -rn | head -n 5 | sed 's/^/   /' || true
  done
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$rc1" = 0 ] && [ "$rc1b" = 0 ] && [ "$rc2" = 0 ]; then
    echo "result: OK (0 errors)"
  else
    echo "result: ERRORS (status of 1: $rc1, 1b: $rc1b, 2: $rc2; see ERROR/PROBLEM lines above)"
  fi
  [ "$rc1" = 0 ] && [ "$rc1b" = 0 ] && [ "$rc2" = 0 ]
}

mkdir -p "$(dirname "$OUT")"
T_START=$SECONDS
exec 3>&1
exec > >(tee "$OUT")
TEE_PID=$!
report
log "done in $((SECONDS - T_START)) s; report saved to build/bench-latest.txt"
