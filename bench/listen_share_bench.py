#!/usr/bin/env python3
"""listen_share_bench.py — TLS handshakes on more than one core (issue 14):
one aurora-server process vs two sharing AURORA_PORT (AURORA_LISTEN_SHARE,
server/listen_share.c), side by side in the same run.

Both arms use the same throwaway PostgreSQL and redis-server (127.0.0.1), the
same release build (build/rel unless AURORA_BUILD_DIR says otherwise), the
same tokens, and the same load: build/rel/aurora-swarm connecting
LS_AGENTS (default 3000) simulated v2 agents at once with FULL TLS handshakes
(--no-resume: the cost a reconnecting fleet pays when its tickets are no
longer valid), retrying with the agent's backoff.  Each arm is run LS_ROUNDS
times (default 3: connect all, disconnect all); per arm it prints the time
until every agent is connected, handshakes a second, CPU seconds of each
server process and of the swarm, with the ratio two/one.

On a 2-core machine the swarm's own TLS work (the client side of each
handshake: two ECDSA verifications against the server's one signature)
shares the cores with the servers, so the wall-clock rows are bounded by the
client, not the server.  The capacity row is the server-side ceiling: the
handshakes a second the servers could absorb before their busiest process
saturated its core (agents x rounds / that process's CPU seconds); the
per-process CPU line shows where the handshakes ran.

Knobs: LS_AGENTS, LS_ROUNDS, SWARM_PROCS (swarm processes, default 2).
Exit status 1 if an arm failed to connect every agent."""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AURORA_BUILD_DIR", os.path.join("build", "rel"))
os.environ.setdefault("SWARM_AGENTS", os.environ.get("LS_AGENTS", "3000"))
os.environ["SWARM_RESUME"] = "0"
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import harness  # noqa: E402
from fleet_peers import Redis, deployment_pki, replica_env  # noqa: E402
from harness import Postgres, T, World, free_port  # noqa: E402
import swarm_bench as sb  # noqa: E402

ROUNDS = int(os.environ.get("LS_ROUNDS", "3"))
FORWARD_SECRET = "listen-share-bench-" + "x" * 24


def log(msg):
    print("listen-share-bench: " + msg, file=sys.stderr, flush=True)


class Proc(World):
    """One server process bound to the shared port."""

    def __init__(self, t, name, env, pki, port):
        self.pki = pki
        super().__init__(t, name, extra_env=env, start=False)
        self.port = port
        self.internal = free_port()
        self.extra_env.update({
            "AURORA_LISTEN_SHARE": "1",
            "AURORA_INTERNAL_PORT": str(self.internal),
            "AURORA_INTERNAL_ADDR": "127.0.0.1:%d" % self.internal,
            "AURORA_OPS_PORT": str(free_port()),
            "AURORA_TLS_CERT": pki["crt"],
            "AURORA_TLS_KEY": pki["key"],
        })
        self.start(timeout=60)

    @property
    def ca(self):
        return self.pki["ca"]


def arm(t, n, env, pki, tokfile, api):
    port = free_port()
    procs = [Proc(t, "server-%d-of-%d" % (i, n), dict(env), pki, port) for i in range(n)]
    for p in procs:
        p.org_id, p.user_id, p.api_key = api
    times, cpus, swarm_cpu = [], [0.0] * n, 0.0
    try:
        for _ in range(ROUNDS):
            c0 = [sb.cpu_s(p.server.pid) for p in procs]
            swarm, t_all, _, sw = sb.start_swarm(procs[0], tokfile, "backoff")
            cpus = [a + sb.cpu_s(p.server.pid) - b for a, p, b in zip(cpus, procs, c0)]
            swarm_cpu += sw
            times.append(t_all)
            swarm.stop()
            # every session gone before the next round (the servers' view)
            harness.wait_until(lambda: not any(c.get("status") == "active"
                                               for c in procs[0].connections()),
                               120, 0.5, "every session closed")
    finally:
        for p in procs:
            p.server.stop()
    return times, cpus, swarm_cpu


def main():
    for b in (harness.SERVER_BIN, sb.SWARM_BIN):
        if not os.access(b, os.X_OK):
            sys.exit("listen-share-bench: %s missing: run 'make all build/rel/aurora-swarm'" % b)
    root = os.path.join("/tmp", "aurora-listen-share-bench-%d" % os.getpid())
    os.makedirs(root, exist_ok=True)
    harness._SUITE["root"] = root
    t = T(root, "bench")
    pg = Postgres()
    try:
        redis = Redis(t)
        pki = deployment_pki(os.path.join(t.tmp, "pki"))
        env = replica_env(pg, redis, FORWARD_SECRET, 30)
        env.update({"AURORA_LOG_LEVEL": "warn",
                    "AURORA_TLS_TICKET_KEY_FILE": os.path.join(root, "tls-ticket.key")})
        first = Proc(t, "server-setup", dict(env), pki, free_port())
        d = first.bootstrap()
        tokfile, _ = sb.make_tokens(first, root)
        first.server.stop()
        api = (d["org_id"], d["user_id"], d["api_key"])
        res = {}
        for n in (1, 2):
            log("%d process%s: %d agents x %d rounds, full handshakes"
                % (n, "es" if n > 1 else "", sb.AGENTS, ROUNDS))
            res[n] = arm(t, n, env, pki, tokfile, api)
        print("TLS handshakes on one port: 1 process vs 2 (AURORA_LISTEN_SHARE), %d agents "
              "connecting at once, full handshakes, %d rounds each, swarm %d process%s"
              % (sb.AGENTS, ROUNDS, sb.PROCS, "es" if sb.PROCS > 1 else ""))
        print("  %-34s | %12s | %12s | %7s" % ("", "1 process", "2 processes", "2/1"))
        t1, t2 = sorted(res[1][0]), sorted(res[2][0])
        med1, med2 = t1[len(t1) // 2], t2[len(t2) // 2]
        rows = [("all connected, median (s)", med1, med2),
                ("handshakes a second (median)", sb.AGENTS / med1, sb.AGENTS / med2),
                ("server CPU, all processes (s)", sum(res[1][1]), sum(res[2][1])),
                ("server CPU, busiest process (s)", max(res[1][1]), max(res[2][1])),
                ("swarm CPU (s)", res[1][2], res[2][2]),
                # what the servers could absorb before one of them saturated
                # its core: handshakes per CPU-second of the busiest process
                ("capacity: handshakes/s of busiest core", sb.AGENTS * ROUNDS / max(res[1][1]),
                 sb.AGENTS * ROUNDS / max(res[2][1]))]
        for name, a, b in rows:
            print("  %-34s | %12.2f | %12.2f | %6.2fx" % (name, a, b, b / a if a else 0.0))
        print("  server CPU per process, 2 processes: %s s"
              % " / ".join("%.2f" % c for c in res[2][1]))
        print("  rounds (s): 1 process %s; 2 processes %s"
              % (" ".join("%.2f" % x for x in res[1][0]), " ".join("%.2f" % x for x in res[2][0])))
    finally:
        for p in t.teardown():
            log(p)
        pg.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
