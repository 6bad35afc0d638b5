#!/usr/bin/env python3
"""replicas_bench.py — what forwarding between replicas costs (issue 13).

Two aurora-server replicas (build/rel unless AURORA_BUILD_DIR says otherwise)
share a throwaway PostgreSQL and a redis-server, all on 127.0.0.1; one
aurora-agent (AURORA_KUBECTL_PATH=/bin/echo) connects to replica A.  The same
commands, POST /api/clusters/{id}/kubectl {"args":["bench","<i>"]}, are sent
to A (the owner: local tunnel) and to B (which forwards each to A over
/internal/forward/exec), at each concurrency, over kept-alive HTTPS
connections.  Every result is checked (exact output "bench <i>\\n").

Prints p50/p99 latency and throughput side by side, with the forwarded/owner
ratios; then the RSS of both replicas with 0 and BENCH_REPLICA_AGENTS idle
legacy agents (bench/idle_agents.js) held by A, to show what registering
sessions costs the owner and what it costs the others (nothing).

Knobs: BENCH_COUNT (300), BENCH_CONCURRENCY (1,8,32), BENCH_REPLICA_AGENTS (500).
Exit status 1 if any command failed."""

import json
import math
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AURORA_BUILD_DIR", os.path.join("build", "rel"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402
from harness import Agent, HTTPSConn, Postgres, T, vm_rss_kib  # noqa: E402
import test_replicas as tr  # noqa: E402  (Replica)
from fleet_peers import Redis, deployment_pki, redis_cmd  # noqa: E402

COUNT = int(os.environ.get("BENCH_COUNT", "300"))
CONCS = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8,32").split(",")]
IDLE = int(os.environ.get("BENCH_REPLICA_AGENTS", "500"))


def log(msg):
    print("replicas-bench: %s" % msg, file=sys.stderr, flush=True)


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[max(1, math.ceil(p / 100.0 * len(sorted_ms))) - 1]


def run(replica, cluster_id, conc, count):
    """(sorted latencies ms, wall s, errors) of count commands at conc through replica."""
    lat, errors, lock = [], [], threading.Lock()
    nxt = [0]

    def worker():
        conn = HTTPSConn(replica.port, replica.ctx, timeout=60)
        while True:
            with lock:
                i = nxt[0]
                if i >= count:
                    break
                nxt[0] += 1
            body = json.dumps({"args": ["bench", str(i)]}).encode()
            t0 = time.monotonic()
            try:
                conn.request("POST", "/api/clusters/%s/kubectl" % cluster_id, body=body,
                             headers={"Authorization": "Bearer %s" % replica.api_key,
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                ms = (time.monotonic() - t0) * 1000
                doc = json.loads(data)
                if r.status != 200 or doc.get("output") != "bench %d\n" % i:
                    with lock:
                        errors.append("#%d: HTTP %d %s" % (i, r.status, data[:200]))
                else:
                    with lock:
                        lat.append(ms)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append("#%d: %r" % (i, e))
                conn.close()
                conn = HTTPSConn(replica.port, replica.ctx, timeout=60)
        conn.close()

    t0 = time.monotonic()
    ths = [threading.Thread(target=worker) for _ in range(conc)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return sorted(lat), time.monotonic() - t0, errors


def main():
    for b in (harness.SERVER_BIN, harness.AGENT_BIN):
        if not os.access(b, os.X_OK):
            sys.exit("replicas-bench: %s missing: run 'make all' first" % b)
    root = os.path.join("/tmp", "aurora-replicas-bench-%d" % os.getpid())
    os.makedirs(root, exist_ok=True)
    harness._SUITE["root"] = root
    t = T(root, "bench")
    pg = Postgres()
    failed = 0
    try:
        redis = Redis(t)
        env = {"DATABASE_URL": pg.url,
               "AURORA_REDIS_URL": "redis://127.0.0.1:%d/0" % redis.port,
               "AURORA_INTERNAL_FORWARD_SECRET": tr.FORWARD_SECRET,
               "AURORA_LOG_LEVEL": "warn",
               "AURORA_TOKEN_RATE_LIMIT": "100000"}
        pki = deployment_pki(os.path.join(t.tmp, "pki"))
        a = tr.Replica(t, "server-a", dict(env), pki)
        b = tr.Replica(t, "server-b", dict(env), pki)
        d = a.bootstrap()
        b.org_id, b.user_id, b.api_key = d["org_id"], d["user_id"], d["api_key"]
        tok = a.create_token("bench-replicas")
        cid = tok["cluster_id"]
        agent = Agent(a, tok["token"], "bench-agent",
                      {"AURORA_KUBECTL_PATH": "/bin/echo",
                       "AURORA_MAX_CONCURRENT": str(max(CONCS + [16])),
                       "AURORA_POLICY_MODE": "custom", "AURORA_POLICY_ALLOW": "bench",
                       "AURORA_LOG_LEVEL": "warn"}, owner=t)
        agent.wait_ready(30)
        harness.wait_until(lambda: redis_cmd(redis.port, "ZCARD", "aurora:agents:" + cid) == 1,
                           20, 0.05, "the agent's registration")
        log("agent on replica A; %d commands per run" % COUNT)
        rows = []
        for conc in CONCS:
            res = {}
            for name, rep in (("owner", a), ("forwarded", b)):
                run(rep, cid, conc, min(COUNT, 4 * conc))  # warm-up
                lat, wall, errs = run(rep, cid, conc, COUNT)
                failed += len(errs)
                for e in errs[:5]:
                    log("%s c=%d error %s" % (name, conc, e))
                res[name] = (pct(lat, 50), pct(lat, 99), len(lat) / wall if wall else 0.0)
                log("%s c=%d: p50 %.2f ms p99 %.2f ms %.0f/s" % ((name, conc) + res[name]))
            rows.append((conc, res))

        print("Replicas: commands through the owning replica vs a forwarding one")
        print("(2 replicas, PostgreSQL + Redis on 127.0.0.1, agent runs /bin/echo, %d commands each)"
              % COUNT)
        print("%5s | %-27s | %-27s | %s" % ("conc", "owner p50/p99 ms, cmd/s",
                                            "forwarded p50/p99 ms, cmd/s", "ratio fwd/owner p50 p99 tput"))
        for conc, res in rows:
            o, f = res["owner"], res["forwarded"]
            print("%5d | %7.2f %7.2f %9.0f   | %7.2f %7.2f %9.0f   | %5.2f %5.2f %5.2f"
                  % (conc, o[0], o[1], o[2], f[0], f[1], f[2], f[0] / o[0], f[1] / o[1],
                     f[2] / o[2] if o[2] else float("nan")))

        # Agents per replica vs RSS: A holds IDLE idle agents, B none.
        if IDLE > 0:
            rss0 = (vm_rss_kib(a.server.pid), vm_rss_kib(b.server.pid))
            tokfile = os.path.join(root, "tokens.jsonl")
            with open(tokfile, "w") as fh:
                for i in range(IDLE):
                    x = a.create_token("idle-%d" % i)
                    fh.write(json.dumps({"token": x["token"], "cluster_id": x["cluster_id"]}) + "\n")
            p = subprocess.Popen([harness.NODE, os.path.join(ROOT, "bench", "idle_agents.js"),
                                  "--url", a.ws_url(), "--ca", a.ca, "--tokens", tokfile],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                                 env=dict(os.environ, NODE_PATH=os.path.join(ROOT, "tests", "node_modules")))
            p.stdin.write(b"up %d\n" % IDLE)
            p.stdin.flush()
            ev = json.loads(p.stdout.readline())
            harness.wait_until(lambda: len(redis_cmd(redis.port, "KEYS", "aurora:agents:*")) >= IDLE + 1,
                               60, 0.1, "the idle agents' registrations")
            rss1 = (vm_rss_kib(a.server.pid), vm_rss_kib(b.server.pid))
            p.stdin.write(b"quit\n")
            p.stdin.flush()
            p.wait(60)
            print()
            print("Agents per replica vs RSS (KiB): %d idle legacy agents (%d open) on replica A"
                  % (IDLE, ev.get("open", 0)))
            print("%-10s | %10s | %10s" % ("", "A (owner)", "B"))
            print("%-10s | %10d | %10d" % ("0 agents", rss0[0], rss0[1]))
            print("%-10s | %10d | %10d" % ("%d agents" % IDLE, rss1[0], rss1[1]))
            print("%-10s | %10.1f | %10.1f" % ("KiB/agent", (rss1[0] - rss0[0]) / IDLE,
                                                (rss1[1] - rss0[1]) / IDLE))
    finally:
        problems = t.teardown()
        for pr in problems:
            log(pr.splitlines()[0])
        pg.destroy()
        harness._stop_kube_fixture()
    if failed:
        log("%d command(s) failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
