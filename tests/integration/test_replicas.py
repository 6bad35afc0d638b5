#!/usr/bin/env python3
"""Many replicas, one fleet (issue 13): three aurora-server replicas share one
PostgreSQL and one Redis, behind haproxy (TCP mode) on loopback.

Real peers, all started by this test in its temp dir: redis-server,
PostgreSQL (harness.Postgres), haproxy, three build/asan/aurora-server
replicas, build/asan/aurora-agent agents and tests/fixtures/v2_agent.js
stand-ins, all connecting through haproxy.  Each replica registers the
agent sessions it holds in Redis (aurora:agents:<cluster>); a command sent
to any replica reaches any cluster (forwarded to the owner over
/internal/forward/exec); revocation on one replica closes the session held
by another at once; a replica killed with -9 fails exactly its in-flight
commands with 502 AGENT_DISCONNECTED and its agents come back through the
others; a Redis restart loses nothing that matters (registrations return).
Nothing sleeps to let something happen: every wait is for an event, with a
deadline."""

import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fleet_peers import Redis, _resp, deployment_pki, redis_cmd, replica_env
from harness import (FIXTURES, HTTPSConn, NODE, ROOT, Agent, NodePeer, Postgres, RssSampler, V2Agent, World,
                     check, eq, free_port, kube_api, main, parse_sse_stream, rand_tag, refusing_port,
                     release_held, suite_shared, test, wait_until, _base_env)

FORWARD_SECRET = secrets.token_hex(24)
SIMULATED = int(os.environ.get("AURORA_TEST_SIMULATED_AGENTS", "1000"))
MIB = 1024 * 1024
# Registry and instance leases (s): a dead replica is forgotten within the
# tests' 30 s waits, and a live one whose registry thread waits seconds for a
# CPU (renewal every third of it) keeps its registrations.
LEASE = 8

_SEAL_SEQ = [int(time.time() * 1e6)]


def publish_sealed(port, message, secret=FORWARD_SECRET):
    """PUBLISHes message (a dict) on aurora:close as a replica holding secret
    does (docs/security.md, row "messages between replicas"): "ts" (ms on
    Redis's clock) and a "seq" that only goes up added, then last "sig", the
    hex HMAC-SHA256 under HMAC-SHA256(secret, "aurora-registry-v1") of every
    byte before ',"sig"'.  Written here from that text, not from the C."""
    sec, usec = redis_cmd(port, "TIME")
    _SEAL_SEQ[0] += 1
    body = json.dumps(message, separators=(",", ":"))[:-1]
    body += ',"ts":%d,"seq":%d' % (int(sec) * 1000 + int(usec) // 1000, _SEAL_SEQ[0])
    key = hmac.new(secret.encode(), b"aurora-registry-v1", hashlib.sha256).digest()
    sig = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return redis_cmd(port, "PUBLISH", "aurora:close", body + ',"sig":"%s"}' % sig)


def sealed_member(cid, instance, addr, expires_ms, secret=FORWARD_SECRET):
    """A registration of cluster cid as a replica holding secret writes it
    (docs/security.md, row "rogue replica"): "<instance> <addr> <expires_ms>
    <sig>", sig the hex HMAC-SHA256 under HMAC-SHA256(secret,
    "aurora-registration-v1") of "<cid>\n<instance> <addr> <expires_ms>".
    Written here from that text, not from the C."""
    head = "%s %s %d" % (instance, addr, expires_ms)
    key = hmac.new(secret.encode(), b"aurora-registration-v1", hashlib.sha256).digest()
    return head + " " + hmac.new(key, ("%s\n%s" % (cid, head)).encode(), hashlib.sha256).hexdigest()


def register_sealed(port, cid, instance, addr, lapses, secret=FORWARD_SECRET):
    """Registers addr for cluster cid until `lapses` (unix s), sealed as a
    replica holding secret does; the member written."""
    ms = int(lapses * 1000)
    m = sealed_member(cid, instance, addr, ms, secret)
    redis_cmd(port, "ZADD", "aurora:agents:" + cid, "%d.%03d" % (ms // 1000, ms % 1000), m)
    return m


# ---------------------------------------------------------------------------
# Redis: a minimal RESP client (the test reads what the replicas wrote)
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# the fleet
# ---------------------------------------------------------------------------
PER_CLUSTER_MAX = 8


class Replica(World):
    """One aurora-server replica: its own data dir and port, the shared store,
    Redis and the deployment's TLS certificate (haproxy passes TLS through, so
    every replica shows the client the same one)."""

    def __init__(self, t, name, env, pki, internal=False):
        """internal: a listener of its own for forwarded commands
        (AURORA_INTERNAL_PORT), which AURORA_INTERNAL_ADDR then names."""
        self.pki = pki
        # A small ASan quarantine keeps VmRSS meaningful (test_tunnel.py does the same).
        super().__init__(t, name, extra_env=env, start=False,
                         asan_extra="quarantine_size_mb=4:thread_local_quarantine_size_kb=64")
        self.internal_port = free_port() if internal else None
        if internal:
            self.extra_env["AURORA_INTERNAL_PORT"] = str(self.internal_port)
        self.extra_env["AURORA_INTERNAL_ADDR"] = self.addr
        # The certificate is issued by a CA it does not carry: the replicas
        # verify each other against the certificate itself (the default trust
        # anchor, AURORA_TLS_CERT), which takes partial-chain verification.
        self.extra_env["AURORA_TLS_CERT"] = pki["crt"]
        self.extra_env["AURORA_TLS_KEY"] = pki["key"]
        self.start()

    @property
    def ca(self):
        return self.pki["ca"]

    @property
    def addr(self):
        return "127.0.0.1:%d" % (self.internal_port or self.port)


class Front:
    """haproxy in TCP mode in front of the replicas: what agents dial."""

    def __init__(self, t, replicas):
        self.t = t
        self.port = free_port()
        d = os.path.join(t.tmp, "haproxy")
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 4096\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n"
                    "  timeout server 1h\n"
                    "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                    "backend be\n  balance roundrobin\n" % self.port)
            for i, r in enumerate(replicas):
                f.write("  server r%d 127.0.0.1:%d check inter 300 fall 1 rise 1\n" % (i, r.port))
        self.proc = t.spawn("haproxy", ["haproxy", "-f", cfg, "-db"],
                            _base_env(os.path.join(d, "home")), os.path.join(d, "haproxy.log"),
                            os.path.join(d, "san"))
        self.proc.killed = True
        self.ca = replicas[0].ca

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 20, 0.05, "haproxy to listen")

    def ws_url(self):
        return "wss://127.0.0.1:%d/kubectl-agent" % self.port


def gcp_fixture():
    """The port of tests/fixtures/gcp_fixture.py (Google's token endpoint and
    projects.list), started once: a GCP service account connects through it."""
    p = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "gcp_fixture.py")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def stop():
        p.terminate()
        p.wait(10)
    atexit.register(stop)
    line = p.stdout.readline()
    check(line.strip().isdigit(), "gcp_fixture did not print its port", line)
    return int(line)


class Fleet:
    def __init__(self, t, n=3):
        self.t = t
        self.pg = Postgres()
        # After the replicas stopped (the harness stops processes after the
        # deferred calls): the store outlives its clients.
        atexit.register(self.pg.destroy)
        self.redis = Redis(t)
        self.env = replica_env(self.pg, self.redis, FORWARD_SECRET, LEASE)
        self.gcp_port = gcp_fixture()
        self.env.update({"GCP_TOKEN_URI_OVERRIDE": "http://127.0.0.1:%d/token" % self.gcp_port,
                         "GCP_CRM_URL": "http://127.0.0.1:%d" % self.gcp_port})
        self.env.update({
            # Small enough for per_cluster_limit_holds_across_replicas to fill,
            # large enough for the other tests' loads.
            "AURORA_EXEC_MAX_PER_CLUSTER": str(PER_CLUSTER_MAX),
        })
        pki = self.pki = deployment_pki(os.path.join(t.tmp, "pki"))
        self.replicas = [Replica(t, "server-r%d" % i, dict(self.env), pki) for i in range(n)]
        d = self.replicas[0].bootstrap()
        for r in self.replicas[1:]:
            r.org_id, r.user_id, r.api_key = d["org_id"], d["user_id"], d["api_key"]
        self.front = Front(t, self.replicas)
        self.agents = {}

    @property
    def any(self):
        return self.replicas[0]

    def live(self):
        return [r for r in self.replicas if r.server.alive()]

    def agent(self, token, name):
        a = Agent(self.front, token, name, owner=self.t)
        a.wait_ready(30)
        self.agents[a.cluster_id] = a
        return a

    def by_addr(self, addr):
        for r in self.replicas:
            if r.addr == addr:
                return r
        raise AssertionError("no replica at %s" % addr)

    def owner_of(self, cluster_id, timeout=15):
        """The replica whose registration of cluster_id is live in Redis."""
        def one():
            o = self.redis.owners(cluster_id)
            addrs = [a for a in o.values() if any(r.addr == a and r.server.alive() for r in self.replicas)]
            return addrs[0] if len(addrs) == 1 else None
        return self.by_addr(wait_until(one, timeout, 0.05, "cluster %s registered by one live replica"
                                       % cluster_id))

    def sql(self, query):
        """Rows (tuples of text) of a query on the shared store, read with psql."""
        out = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-h", self.pg.dir, "-p", "5432",
                              "-U", "aurora", "-d", "postgres", "-At", "-F", "\t", "-c", query],
                             capture_output=True, timeout=30)
        eq(out.returncode, 0, "psql %s (%s)" % (query, out.stderr.decode()))
        return [tuple(line.split("\t")) for line in out.stdout.decode().splitlines() if line]

    def others(self, r):
        return [x for x in self.live() if x is not r]


def fleet(t):
    """One fleet for the whole program (its processes belong to the suite's T)."""
    return suite_shared("fleet", Fleet)


def echo(r, cid, text, **kw):
    return r.kubectl(cid, args=["get", "--raw", "/fixture/echo/%s" % text], timeout=30, **kw)


def sse(r, cid, body, timeout=60):
    """(status, events) of a streamed command sent to replica r."""
    events = []
    status, _ = r.kubectl_sse(cid, body, lambda ev, data: events.append((ev, json.loads(data))) and False,
                              timeout=timeout)
    return status, events


def server_metrics(r):
    """{sample: value} of a replica's GET /metrics (no auth on it)."""
    from harness import https_request
    res = https_request(r.port, r.ctx, "GET", "/metrics", timeout=10)
    eq(res.status, 200, "GET /metrics of %s" % r.name)
    out = {}
    for line in res.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def agent_metric(agent, name):
    status, body = agent.health("/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
@test(timeout=120)
def sessions_are_registered_and_startup_keeps_other_replicas_rows(t):
    f = fleet(t)
    # AURORA_REDIS_URL names the host: resolved once by the registry thread,
    # whose address the lookups on store workers use (no resolver there).
    for r in f.live():
        wait_until(lambda: "connected to Redis at localhost:%d (127.0.0.1)" % f.redis.port
                   in r.server.log_text(), 15, 0.05, "%s to log the address it reached" % r.name)
    tok = f.any.create_token("rep-reg")
    cid = tok["cluster_id"]
    a = f.agent(tok["token"], "agent-reg")
    owner = f.owner_of(cid)
    inst = list(f.redis.owners(cid).keys())[0]
    check(inst.startswith("ins_"), "the member names the owner's instance id", inst)
    f.any.wait_connection(cid, "active", timeout=15)
    # A replica that does not hold the agent restarts: its start-up must not
    # reset the connection row another replica counts.
    other = f.others(owner)[0]
    eq(other.server.stop(), [], "clean stop of %s" % other.name)
    other.start()
    c = other.connection(cid)
    eq(c and c.get("status"), "active", "the connection row after another replica restarted (%r)" % c)
    # The agent goes away: its registration goes with it, at once.
    a.proc.stop()
    wait_until(lambda: not f.redis.owners(cid), 10, 0.05, "the registration to be removed")
    wait_until(lambda: (f.any.connection(cid) or {}).get("status") != "active", 15, 0.1,
               "the connection to read disconnected")


@test(timeout=180)
def any_replica_reaches_any_cluster(t):
    f = fleet(t)
    clusters = []
    for i in range(3):
        tok = f.any.create_token("rep-any-%d" % i)
        f.agent(tok["token"], "agent-any-%d" % i)
        clusters.append(tok["cluster_id"])
    owners = {cid: f.owner_of(cid) for cid in clusters}
    t.note("owners: %s" % {c[-6:]: o.name for c, o in owners.items()})
    forwarded = 0
    for cid in clusters:
        for r in f.live():
            tag = "%s-%s" % (r.name[-2:], cid[-4:])
            res = echo(r, cid, tag)
            eq(res.status, 200, "kubectl through %s for a cluster held by %s (%r)"
               % (r.name, owners[cid].name, res))
            eq(res.json.get("output"), tag, "output through %s" % r.name)
            eq(res.json.get("return_code"), 0, "return_code")
            forwarded += r is not owners[cid]
    check(forwarded >= 2, "some requests must have been forwarded (%d)" % forwarded)
    # The trusted backend's route (POST /internal/kubectl/execute) through a
    # replica that does not hold the agent, as the existing backend calls it.
    for cid in clusters:
        via = f.others(owners[cid])[0]
        r = via.internal({"user_id": via.user_id, "cluster_id": cid,
                          "command": "get --raw /fixture/echo?text=internal-%s" % cid[-4:],
                          "timeout": 30})
        eq(r.status, 200, "internal execute through %s (%r)" % (via.name, r))
        eq(r.get("output"), "internal-%s" % cid[-4:], "internal execute output")
        forwarded += 1
    # What each replica forwarded and holds is on its /metrics (promtool-checked
    # by test_observability.py; here: the replicas' own families).
    fwd_ok = 0
    for r in f.live():
        m = server_metrics(r)
        eq(m.get("aurora_registry_redis_connected"), 1.0, "%s: Redis connected gauge" % r.name)
        check(m.get("aurora_registry_clusters_held", 0) >= 1, "%s holds a cluster" % r.name, m)
        # bounded queue of Redis messages (test_server_registry_redis.c): nothing
        # dropped in a fleet's ordinary traffic
        eq(m.get("aurora_registry_messages_dropped_total"), 0.0,
           "%s: Redis messages dropped" % r.name)
        fwd_ok += m.get('aurora_forward_commands_total{outcome="ok"}', 0)
    check(fwd_ok >= forwarded, "forwarded commands counted (%d of %d)" % (fwd_ok, forwarded))
    from harness import https_request
    text = https_request(f.any.port, f.any.ctx, "GET", "/metrics", timeout=10).body
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    eq(p.returncode, 0, "promtool check metrics of a replica (%s)" % (p.stdout + p.stderr).decode())
    # Streamed (SSE) through a forwarding replica: output events then the result.
    cid = clusters[0]
    fwd = f.others(owners[cid])[0]
    status, events = sse(fwd, cid, {"args": ["get", "--raw", "/fixture/bytes?n=300000&seed=7"],
                                    "timeout": 30})
    eq(status, 200, "SSE status through %s" % fwd.name)
    outs = [d for e, d in events if e == "output"]
    total = sum(len(d["text"].encode()) if "text" in d else len(base64.b64decode(d["base64"]))
                for d in outs)
    eq(total, 300000, "streamed bytes through the forwarding replica")
    eq(events[-1][0], "result", "the last event")
    eq(events[-1][1].get("return_code"), 0, "result return_code")
    # Large buffered output through the forwarding replica (flow control across two hops).
    res = fwd.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=3000000&seed=3"], timeout=60)
    eq(res.status, 200, "3 MB JSON result through %s (%r)" % (fwd.name, res))
    raw = base64.b64decode(res.json.get("output_base64", ""))
    eq(len(raw), 3000000, "3 MB of output")
    direct = owners[cid].kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=3000000&seed=3"],
                                 timeout=60)
    check(base64.b64decode(direct.json.get("output_base64", "")) == raw,
          "the same bytes through the owner and through the forwarding replica")
    # Each command is audited once, by the replica the caller reached (the owner
    # does not audit what it runs for another replica).
    # clusters[1]: one command through each replica, one internal execute.
    n = len(f.live()) + 1
    # (an end is written just after its answer: awaited)
    q = "SELECT instance_id, outcome FROM audit_log WHERE cluster_id = '%s'" % clusters[1]
    wait_until(lambda: all(o != "started" for _, o in f.sql(q)), 20, 0.05,
               "the audit rows of the commands to be completed")
    rows = f.sql(q)
    eq(len(rows), n, "audit rows of %d commands (%r)" % (n, rows))
    eq(sorted(o for _, o in rows), ["ok"] * n, "their outcomes")
    eq(len(set(i for i, _ in rows)), len(f.live()), "rows written by every replica reached (%r)"
       % rows)


@test(timeout=240)
def forty_mib_streamed_through_a_forwarding_replica_in_bounded_memory(t):
    """Flow control end to end: the owner and the forwarding replica hold a
    window, not the stream (the Python reader is the slowest part)."""
    f = fleet(t)
    tok = f.any.create_token("rep-stream")
    cid = tok["cluster_id"]
    a = Agent(f.front, tok["token"], "agent-stream", {"AURORA_MAX_OUTPUT": str(256 * MIB)},
              owner=f.t)
    a.wait_ready(30)
    owner = f.owner_of(cid)
    fwd = f.others(owner)[0]
    warm = fwd.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=1000000&seed=warm"], timeout=60)
    eq(warm.status, 200, "warm-up (%r)" % warm)
    n, seed = 40 * MIB, "s" + secrets.token_hex(3)
    h = hashlib.sha256()
    st = {"bytes": 0, "result": None}

    def on_event(ev, data):
        d = json.loads(data)
        if ev == "output" and d.get("stream") == "stdout":
            b = base64.b64decode(d["base64"]) if "base64" in d else d["text"].encode()
            h.update(b)
            st["bytes"] += len(b)
        elif ev in ("result", "error"):
            st["result"] = (ev, d)
        return False
    with RssSampler(fwd.server.pid) as rf, RssSampler(owner.server.pid) as ro:
        status, _ = fwd.kubectl_sse(cid, {"args": ["get", "--raw", "/fixture/bytes?n=%d&seed=%s"
                                                   % (n, seed)], "timeout": 200,
                                          "max_output": 256 * MIB}, on_event, timeout=220)
    eq(status, 200, "SSE status")
    eq(st["result"] and st["result"][0], "result", "the stream ends with a result (%r)" % (st["result"],))
    eq(st["bytes"], n, "bytes streamed through two replicas")
    eq(h.hexdigest(), kube_api.expected_sha256(n, seed), "sha256 of the stream")
    t.note("40 MiB through %s -> %s: RSS growth forwarder %.1f MiB, owner %.1f MiB"
           % (fwd.name, owner.name, rf.growth_mib, ro.growth_mib))
    check(rf.growth_mib < 32, "the forwarding replica must not buffer the stream (%.1f MiB)"
          % rf.growth_mib)
    check(ro.growth_mib < 32, "the owner must not buffer the stream (%.1f MiB)" % ro.growth_mib)


@test(timeout=120)
def revocation_on_one_replica_closes_the_session_on_another(t):
    f = fleet(t)
    tok = f.any.create_token("rep-revoke")
    cid = tok["cluster_id"]
    peer = NodePeer(f.front, tok["token"], t, "v2_agent.js", "v2-revoke")
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner = f.owner_of(cid)
    other = f.others(owner)[0]
    tokens = other.get("/api/kubectl/tokens")
    tid = [x for x in tokens.json.get("tokens", []) if x.get("cluster_id") == cid][0]["id"]
    t0 = time.monotonic()
    r = other.revoke_token(tid)
    eq(r.status, 200, "revoke through %s (%r)" % (other.name, r))
    # Without the message the owner would never learn it (nothing re-checks
    # a token while Redis stays up): the close at all proves it, so no time
    # bound on it; 30 s for the revoke, PostgreSQL, PUBLISH, the owner's
    # loop and the agent on a loaded machine.
    ev = peer.wait(lambda e: e.get("event") == "close", 30, "the agent's session to close")
    took = time.monotonic() - t0
    eq(ev.get("code"), 1008, "close code")
    check("revoked" in (ev.get("reason") or "").lower(), "close reason names the revocation", ev)
    t.note("revoked on %s, closed on %s in %.0f ms" % (other.name, owner.name, took * 1000))
    wait_until(lambda: not f.redis.owners(cid), 10, 0.05, "the registration to go")
    # Deleting the connection on another replica closes every session of the cluster.
    tok2 = f.any.create_token("rep-delete")
    cid2 = tok2["cluster_id"]
    peer2 = NodePeer(f.front, tok2["token"], t, "v2_agent.js", "v2-delete")
    peer2.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner2 = f.owner_of(cid2)
    other2 = f.others(owner2)[-1]
    f.any.wait_connection(cid2, "active", timeout=15)
    r = other2.delete("/api/kubectl/connections/%s" % cid2)
    eq(r.status, 200, "delete the connection through %s (%r)" % (other2.name, r))
    ev = peer2.wait(lambda e: e.get("event") == "close", 30, "the deleted cluster's session to close")
    eq(ev.get("code"), 1008, "close code after the deletion")
    wait_until(lambda: not f.redis.owners(cid2), 10, 0.05, "the deleted cluster's registration to go")


@test(timeout=120)
def a_forged_message_on_the_channel_closes_nothing(t):
    """Anyone who may PUBLISH on the replicas' Redis (another application
    sharing it, a client with its password but not the replicas' secret)
    wrote on aurora:close what a replica writes, and every replica acted on
    it: the cluster's tunnel closed, its agent superseded, its legacy
    connection put aside.  Now each message is sealed with a key derived
    from AURORA_INTERNAL_FORWARD_SECRET: unsealed, or sealed under another
    secret, it is dropped and counted on every replica."""
    f = fleet(t)
    tok = f.any.create_token("rep-forged")
    cid = tok["cluster_id"]
    peer = NodePeer(f.front, tok["token"], t, "v2_agent.js", "v2-forged")
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner = f.owner_of(cid)
    name = 'aurora_registry_messages_rejected_total{why="%s"}'
    before = server_metrics(owner)
    close = {"from": "forger", "org_id": owner.org_id, "cluster_id": cid, "token_id": "",
             "reason": "Token revoked"}
    redis_cmd(f.redis.port, "PUBLISH", "aurora:close", json.dumps(close))
    publish_sealed(f.redis.port, close, secret=secrets.token_hex(24))

    def heard():
        m = server_metrics(owner)
        return (m.get(name % "unsigned", 0) > before.get(name % "unsigned", 0) and
                m.get(name % "bad_signature", 0) > before.get(name % "bad_signature", 0))
    wait_until(heard, 15, 0.1, "the owner to drop both messages")
    check(not [e for e in peer.events if e.get("event") == "close"],
          "the agent's session closed on a forged message", peer.events)
    r = f.others(owner)[0].kubectl(cid, args=["get", "pods"], timeout=30)
    eq((r.status, r.get("output")), (200, "ran kubectl 2 args\n"),
       "a command after the forgeries, run by the agent (%r)" % r)


@test(timeout=120)
def a_reconnected_agent_replaces_its_old_session_on_another_replica(t):
    """An agent process whose connection died without a word (its replica
    holds the session until the idle timeout) connects again to another
    replica: the old replica closes its session at once and stops renewing
    the registration, so no command is routed to the dead one (504)."""
    f = fleet(t)
    tok = f.any.create_token("rep-supersede")
    cid = tok["cluster_id"]
    inst = secrets.token_hex(16)
    old = NodePeer(f.front, tok["token"], t, "v2_agent.js", "v2-old",
                   ["--instance", inst, "--connection", "1"])
    old.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner = f.owner_of(cid)
    other = f.others(owner)[0]
    t0 = time.monotonic()
    new = NodePeer(other, tok["token"], t, "v2_agent.js", "v2-new",
                   ["--instance", inst, "--connection", "2"])
    new.wait(lambda e: e.get("event") == "connected", 20, "the new connection")
    ev = old.wait(lambda e: e.get("event") == "close", 10, "the old session to be closed")
    eq(ev.get("code"), 1001, "close code of the superseded session")
    eq(ev.get("reason"), "Superseded by a newer connection", "close reason")
    t.note("superseded on %s %.0f ms after connecting to %s"
           % (owner.name, (time.monotonic() - t0) * 1000, other.name))
    wait_until(lambda: set(f.redis.owners(cid).values()) == {other.addr}, 10, 0.05,
               "only the new replica to hold the registration")
    superseded = sum(v for k, v in server_metrics(owner).items()
                     if k.startswith("aurora_agent_sessions_closed_total{") and 'reason="superseded"' in k)
    check(superseded >= 1, "the close counted as superseded, not as a shutdown", superseded)
    # A command sent to the old replica reaches the new session.
    r = owner.kubectl(cid, args=["get", "pods"])
    eq(r.status, 200, "command through %s (%r)" % (owner.name, r))
    new.wait(lambda e: e.get("event") == "exec", 10, "the command at the new session")
    # Another process of the same cluster (no instance named) is left alone.
    pod_b = NodePeer(owner, tok["token"], t, "v2_agent.js", "v2-pod-b")
    pod_b.wait(lambda e: e.get("event") == "connected", 20, "a second pod")
    again = NodePeer(other, tok["token"], t, "v2_agent.js", "v2-newer",
                     ["--instance", inst, "--connection", "3"])
    again.wait(lambda e: e.get("event") == "connected", 20, "a third connection")
    new.wait(lambda e: e.get("event") == "close", 10, "the second connection to be superseded")
    wait_until(lambda: set(f.redis.owners(cid).values()) == {owner.addr, other.addr}, 10, 0.05,
               "both replicas registered (pod b, the third connection)")
    check(not [e for e in pod_b.events if e.get("event") == "close"], "pod b stays connected",
          pod_b.events)


@test(timeout=60)
def forged_forward_is_refused(t):
    f = fleet(t)
    tok = f.any.create_token("rep-forge")
    cid = tok["cluster_id"]
    peer = NodePeer(f.front, tok["token"], t, "v2_agent.js", "v2-forge")
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner = f.owner_of(cid)
    body = {"org_id": owner.org_id, "user_id": "", "cluster_id": cid, "kind": "kubectl",
            "program": "", "argv": ["get", "pods"], "env": [], "timeout": 5, "max_output": 1000}
    from harness import https_request
    for hdr in ({}, {"X-Aurora-Forward-Secret": "x" * 48},
                {"X-Aurora-Forward-Secret": FORWARD_SECRET[:-1]},
                {"X-Aurora-Forward-Secret": FORWARD_SECRET + "a"}):
        r = https_request(owner.port, owner.ctx, "POST", "/internal/forward/exec", body, hdr, 10)
        eq(r.status, 401, "forward with %r (%r)" % (list(hdr.values())[:1], r))
    # Malformed bodies with the right secret: 400, nothing run.
    good = {"X-Aurora-Forward-Secret": FORWARD_SECRET}
    for bad in ({}, dict(body, kind="rm"), dict(body, timeout=-1), dict(body, argv="get pods"),
                dict(body, argv=[1, 2]), dict(body, max_output=0)):
        r = https_request(owner.port, owner.ctx, "POST", "/internal/forward/exec", bad, good, 10)
        eq(r.status, 400, "malformed forward %r (%r)" % (bad, r))
    r = https_request(owner.port, owner.ctx, "POST", "/internal/forward/exec", "{not json", good, 10)
    eq(r.status, 400, "non-JSON forward (%r)" % r)
    eq([e for e in peer.events if e.get("event") == "exec"], [], "no command reached the agent")
    # and the replica still serves
    res = echo(owner, cid, "still-serving")
    eq(res.status, 200, "a command after the forged forwards (%r)" % res)


@test(timeout=120)
def with_an_internal_port_forwards_are_served_there_only(t):
    """Replicas with AURORA_INTERNAL_PORT: a command reaches the agent another
    holds through that listener, and the main port (the one an Ingress
    reaches) answers /internal/forward/exec as an unknown route, even with
    the right secret and body; the internal port answers nothing else (API,
    console, probes: 404) and accepts no agent WebSocket."""
    f = fleet(t)
    # Few workers: the fleet's three replicas hold most of the store's connections.
    env = dict(f.env, AURORA_WORKERS="1", AURORA_OUTBOUND_WORKERS="1")
    rs = [Replica(t, "server-int%d" % i, env, f.pki, internal=True) for i in range(2)]
    for r in rs:
        r.org_id, r.user_id, r.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    holder, via = rs
    tok = via.create_token("rep-internal")
    cid = tok["cluster_id"]
    Agent(holder, tok["token"], "agent-internal", owner=t).wait_ready(30)
    wait_until(lambda: list(f.redis.owners(cid).values()) == [holder.addr], 15, 0.05,
               "the agent registered at the holder's internal address")
    res = echo(via, cid, "through-the-internal-port")
    eq(res.status, 200, "kubectl forwarded to the internal port (%r)" % res)
    eq(res.json.get("output"), "through-the-internal-port", "forwarded output")
    from harness import https_request
    good = {"X-Aurora-Forward-Secret": FORWARD_SECRET}
    body = {"org_id": holder.org_id, "user_id": "", "cluster_id": cid, "kind": "kubectl",
            "program": "", "argv": ["get", "--raw", "/fixture/echo/main-port"], "env": [],
            "timeout": 5, "max_output": 1000}
    for hdr in (good, {}):
        r = https_request(holder.port, holder.ctx, "POST", "/internal/forward/exec", body, hdr, 10)
        eq(r.status, 404, "the forward route on the main port (%r)" % r)
    # another method tells nothing either (a 405 with Allow: POST would say the path exists)
    r = https_request(holder.port, holder.ctx, "GET", "/internal/forward/exec", None, {}, 10)
    eq((r.status, r.headers.get("allow")), (404, None), "GET of the forward route on the main port (%r)" % r)
    r = https_request(holder.internal_port, holder.ctx, "POST", "/internal/forward/exec", {}, good, 10)
    eq(r.status, 400, "the internal port serves the route (%r)" % r)
    r = https_request(holder.internal_port, holder.ctx, "POST", "/internal/forward/exec", body, {}, 10)
    eq(r.status, 401, "and still wants the secret there (%r)" % r)
    # The internal port serves nothing else: no API (with a valid key or the
    # trusted backend's secret), no console, no probe.
    key = {"Authorization": "Bearer %s" % holder.api_key}
    eq(https_request(holder.port, holder.ctx, "GET", "/api/kubectl/connections", None, key,
                     10).status, 200, "the API on the main port")
    for method, path, hdr in (("GET", "/api/kubectl/connections", key),
                              ("GET", "/api/me", key),
                              ("DELETE", "/api/me", key),  # a known path, another method: no 405
                              ("POST", "/internal/kubectl/execute", holder.as_frontend()),
                              ("GET", "/", {}), ("GET", "/health", {})):
        r = https_request(holder.internal_port, holder.ctx, method, path, None, hdr, 10)
        eq(r.status, 404, "%s %s on the internal port (%r)" % (method, path, r))
    # Agents dial the main port: the internal one accepts no agent WebSocket,
    # with a valid token, with or without the v2 subprotocol.
    ws_tok = via.create_token("rep-internal-ws")
    for proto in (None, "aurora-tunnel.v2"):
        status = ws_upgrade_status(holder.internal_port, holder.ctx, ws_tok, proto)
        check(status != 101, "no agent WebSocket on the internal port (%s: %r)" % (proto, status))
    c = via.connection(ws_tok["cluster_id"])
    check(c is None or c.get("status") != "active", "the refused agent is not connected", c)
    res = echo(via, cid, "still-through-the-internal-port")
    eq(res.status, 200, "forwarding still works (%r)" % res)
    eq(res.json.get("output"), "still-through-the-internal-port", "forwarded output")


def ws_upgrade_status(port, ctx, tok, proto):
    """The status line's code of an agent's WebSocket upgrade over TLS (0: the
    connection closed without an answer)."""
    import ssl
    lines = ["GET /kubectl-agent HTTP/1.1", "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", "Authorization: Bearer %s" % tok["token"],
             "X-Cluster-ID: %s" % tok["cluster_id"]]
    if proto:
        lines.append("Sec-WebSocket-Protocol: %s" % proto)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        except (ConnectionError, ssl.SSLError):
            pass
    first = head.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else 0


@test(timeout=60)
def an_address_planted_in_redis_gets_neither_secret_nor_command(t):
    """A registration names an address where something else than a replica
    listens: a TLS listener with a certificate of its own.  Sealed here (a
    replica's registration, live while its pod IP went to another pod; an
    unsealed one is not even dialled: a_registration_planted_without_the_secret_
    diverts_nothing).  The forwarding replica verifies the peer against the
    deployment's certificate (AURORA_TLS_CERT shared by the replicas), so the
    handshake fails and no HTTP byte (the forward secret, the command) reaches
    the impostor; the caller gets a clear 503."""
    import socket
    import ssl
    import threading
    f = fleet(t)
    tok = f.any.create_token("rep-rogue")  # a cluster of the org, no agent anywhere
    cid = tok["cluster_id"]
    crt, key = os.path.join(t.tmp, "rogue.crt"), os.path.join(t.tmp, "rogue.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    self_signed = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    self_signed.load_cert_chain(crt, key)
    # The harder impostor: a certificate from the very intermediate that issued
    # the deployment's (anyone can get one from a public CA for their own name).
    sibling = f.replicas[0].pki["issue"]("impostor")
    same_issuer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    same_issuer.load_cert_chain(sibling["crt"], sibling["key"])
    ctx = {"current": self_signed}
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    t.defer(lsock.close)
    got = {"handshakes": 0, "bytes": b""}
    accepted = threading.Event()

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            accepted.set()
            try:
                s = ctx["current"].wrap_socket(c, server_side=True)
                got["handshakes"] += 1
                s.settimeout(5)
                got["bytes"] += s.recv(65536)
                s.close()
            except (OSError, ssl.SSLError):
                c.close()
    threading.Thread(target=serve, daemon=True).start()
    rogue = "127.0.0.1:%d" % lsock.getsockname()[1]
    register_sealed(f.redis.port, cid, "ins_rogue", rogue, time.time() + 60)
    for name, server_ctx in (("self-signed", self_signed), ("same issuer", same_issuer)):
        ctx["current"] = server_ctx
        accepted.clear()
        r = echo(f.any, cid, "to-the-impostor")
        check(accepted.wait(10), "the forwarding replica connected to the planted address")
        eq(r.status, 503, "a %s peer that is not a replica (%r)" % (name, r))
        eq(got["bytes"], b"", "no request byte reached the %s impostor" % name)
    redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid)
    # A host name instead of an IP: refused before any resolution (a name whose
    # DNS never answers would stall the forwarding replica's event loop).
    register_sealed(f.redis.port, cid, "ins_named", "unresolvable.invalid:5080", time.time() + 60)
    r = echo(f.any, cid, "to-a-name")
    eq(r.status, 503, "an owner address that is a name (%r)" % r)
    eq(f.any.get("/health", auth=False).status, 200, "still serving")
    redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid)
    # A port beyond 65535 (or not only digits) is not an address either: one
    # 65536 above the listener's would be dialled modulo 65536, at the listener.
    port = lsock.getsockname()[1]
    for bad in ("127.0.0.1:%d" % (port + 65536), "127.0.0.1:+%d" % port, "127.0.0.1:%dx" % port):
        register_sealed(f.redis.port, cid, "ins_badport", bad, time.time() + 60)
        accepted.clear()
        r = echo(f.any, cid, "to-a-bad-port")
        eq(r.status, 503, "an owner address %s (%r)" % (bad, r))
        check("registered a bad address" in (r.get("error") or ""), "the error for %s (%r)" % (bad, r))
        check(not accepted.is_set(), "the listener was dialled for %s" % bad)
        redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid)


@test(timeout=90)
def a_registration_planted_without_the_secret_diverts_nothing(t):
    """Whoever can write to Redis without the replicas' secret registers a
    cluster whose agent a replica holds, at an address of theirs and scored to
    outrank the holder: unsigned, sealed under another secret, and a member
    the replicas sealed for another cluster, copied into this one's key.  Every
    replica sent the cluster's commands to the planted address (where the
    trust store refused it: 503) instead of the holder.  Now a lookup passes
    over what its seal does not vouch for (counted): the commands run at the
    holder, and nothing dials the planted address."""
    f = fleet(t)
    tok = f.any.create_token("rep-planted")
    cid = tok["cluster_id"]
    f.agent(tok["token"], "agent-planted")
    owner = f.owner_of(cid)
    # holding the deployment's key, even: what the trust store cannot stop
    peer = TLSPeer(t, f.pki, b"HTTP/1.1 503 Planted\r\ncontent-length: 0\r\n\r\n")
    rogue = "127.0.0.1:%d" % peer.port
    key = "aurora:agents:" + cid
    later = time.time() + 600
    planted = ["ins_rogue " + rogue,
               sealed_member(cid, "ins_rogue2", rogue, int(later * 1000), secret="x" * 48),
               sealed_member("cluster-elsewhere", "ins_rogue3", rogue, int(later * 1000))]
    for m in planted:
        redis_cmd(f.redis.port, "ZADD", key, "%.3f" % later, m)
    t.defer(lambda: [redis_cmd(f.redis.port, "ZREM", key, m) for m in planted])

    def rejected(r):
        m = server_metrics(r)
        return {w: m.get('aurora_registry_registrations_rejected_total{why="%s"}' % w, 0)
                for w in ("unsigned", "bad_signature")}
    for r in f.others(owner):
        before = rejected(r)
        text = "past-the-planted-" + secrets.token_hex(3)
        res = echo(r, cid, text)
        eq((res.status, res.get("output")), (200, text),
           "a command through %s ran at the holder (%r)" % (r.name, res))
        after = rejected(r)
        eq((after["unsigned"] - before["unsigned"], after["bad_signature"] - before["bad_signature"]),
           (1, 2), "the planted registrations counted by %s" % r.name)
    eq(peer.accepted, 0, "connections to the planted address")


class TLSPeer:
    """A TLS listener showing the deployment's own certificate (what a replica,
    or whatever holds its key, presents).  `accepted` counts the connections,
    `received` holds the bytes each sent, kept as they come; a request's head
    and body (content-length) read, it is answered with `answer`."""

    def __init__(self, t, pki, answer):
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki["crt"], pki["key"])
        self.answer = answer
        self.accepted = 0
        self.received = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        t.defer(self.lsock.close)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import ssl
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            self.received.append(b"")
            i = len(self.received) - 1
            try:
                s = self.ctx.wrap_socket(c, server_side=True)
                s.settimeout(10)
                while b"\r\n\r\n" not in self.received[i]:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    self.received[i] += chunk
                head, _, body = self.received[i].partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                while len(body) < length:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                    self.received[i] += chunk
                s.sendall(self.answer)
                s.close()
            except (OSError, ssl.SSLError, ValueError):
                c.close()


@test(timeout=200)
def a_redirecting_owner_sends_the_secret_and_command_nowhere_else(t):
    """The address a registration names answers the forwarded command with a
    redirect (a replica's listener behind something that redirects, or
    whatever holds the deployment's key there).  libwebsockets' client follows
    3xx by default, and asked for its headers again: the forward secret and
    the command (its cloud credentials) went to wherever Location named.  A
    forward is one request to the address the registry named: the redirect is
    a refusal (502), and nothing reaches its target."""
    f = fleet(t)
    tok = f.any.create_token("rep-redirect")
    cid = tok["cluster_id"]
    target = TLSPeer(t, f.pki, b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n"
                               b"connection: close\r\n\r\n")
    t.defer(lambda: redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid))
    for code in (301, 302, 303, 307, 308):
        location = "https://127.0.0.1:%d/internal/forward/exec" % target.port
        redirector = TLSPeer(t, f.pki, ("HTTP/1.1 %d Moved\r\nlocation: %s\r\ncontent-length: 0\r\n"
                                        "connection: close\r\n\r\n" % (code, location)).encode())
        redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid)
        register_sealed(f.redis.port, cid, "ins_redirect", "127.0.0.1:%d" % redirector.port,
                        time.time() + 60)
        r = echo(f.any, cid, "to-the-redirector-%d" % code, http_timeout=60)
        eq(redirector.accepted, 1, "the registered address dialled once (%d)" % code)
        check(FORWARD_SECRET.encode() in redirector.received[0], "the registered address was "
              "sent the forward (%d)" % code)
        eq((target.accepted, target.received), (0, []),
           "nothing reached the redirect's target (%d)" % code)
        eq(r.status, 502, "a forward answered with %d (%r)" % (code, r))


@test(timeout=200)
def a_forged_status_from_the_owner_becomes_502(t):
    """The replica a registration names (or whatever holds the deployment's key
    and secret there) answers a forwarded command with a status no replica
    gives: in the stream's error event (`http_status`) or on its status line
    with an error body.  It was put in the caller's answer as it came: 101,
    302 without a Location, 999, -1, a failure answered 200.  What a replica
    gives for a failed command (tunnel.c, exec.c, forward.c: 400, 409, 413,
    429, 500, 502, 503, 504) passes; anything else is 502 FORWARD_BAD_STATUS,
    logged."""
    f = fleet(t)
    tok = f.any.create_token("rep-forged-status")
    cid = tok["cluster_id"]
    owner = TLSPeer(t, f.pki, b"")
    register_sealed(f.redis.port, cid, "ins_forger", "127.0.0.1:%d" % owner.port, time.time() + 120)
    t.defer(lambda: redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid))

    def event(status):
        data = json.dumps({"success": False, "return_code": -1, "error": "forged",
                           "error_code": "TIMEOUT", "http_status": status})
        return ("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                "event: error\ndata: %s\n\n" % data).encode()

    def status_line(status):
        body = json.dumps({"error": "forged", "error_code": "CLUSTER_BUSY"})
        return ("HTTP/1.1 %d Forged\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                "connection: close\r\n\r\n%s" % (status, len(body), body)).encode()
    cases = [("event", s, event(s), 502) for s in (101, 302, 999, -1, 200, 0)]
    cases += [("event", 504, event(504), 504), ("event", 429, event(429), 429)]
    cases += [("status line", s, status_line(s), 502) for s in (999, 418, 600)]
    cases += [("status line", 429, status_line(429), 429)]
    for how, status, answer, want in cases:
        owner.answer = answer
        mark = len(f.any.server.log_text())
        r = echo(f.any, cid, "forged-%d" % status, http_timeout=30)
        eq(r.status, want, "the owner's %s said %d (%r)" % (how, status, r))
        if want == 502:
            eq(r.get("error_code"), "FORWARD_BAD_STATUS", "error_code for %s %d (%r)" % (how, status, r))
            check("HTTP status %d" % status in f.any.server.log_text()[mark:],
                  "the forged status %d logged" % status)
    # counts out of int64_t's range (a double cast to it is undefined
    # behaviour: UBSan stopped the forwarding replica) or negative are not
    # taken: the forwarding replica's own count stands (well under the 30 s)
    data = json.dumps({"success": True, "return_code": 0, "duration_ms": 1e300, "bytes": -5})
    owner.answer = ("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                    "event: result\ndata: %s\n\n" % data).encode()
    r = echo(f.any, cid, "forged-counts", http_timeout=30)
    eq((r.status, r.get("bytes")), (200, 0), "a result naming 1e300 ms and -5 bytes (%r)" % r)
    check(0 <= r.get("duration_ms") < 30000, "the duration is the forwarder's own (%r)" % r)
    # a streaming caller reads the same in its error event
    owner.answer = event(999)
    status, events = sse(f.any, cid, {"args": ["get", "--raw", "/fixture/echo/x"]}, timeout=30)
    eq(status, 200, "the stream opened")
    eq([(e, d.get("http_status"), d.get("error_code")) for e, d in events if e == "error"],
       [("error", 502, "FORWARD_BAD_STATUS")], "the stream's error event (%r)" % events)


@test(timeout=120)
def a_registered_owner_that_never_answers_fails_the_command_fast(t):
    """The replica a registration names is frozen (SIGSTOP, a hung node) or its
    pod IP black-holed: the kernel (or nobody) takes the connection, and no TLS
    handshake ever comes back.  Its registration stays live until the lease
    lapses, so every command for the cluster goes there: each must fail with a
    clear 503 within the forward's connect deadline (5 s), not wait out
    libwebsockets' 30 s connection timeout holding one of the cluster's slots."""
    f = fleet(t)
    tok = f.any.create_token("rep-frozen")  # a cluster of the org, no agent anywhere
    cid = tok["cluster_id"]
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)  # connections complete in the kernel; nothing ever answers
    t.defer(lsock.close)
    frozen = "127.0.0.1:%d" % lsock.getsockname()[1]
    register_sealed(f.redis.port, cid, "ins_frozen", frozen, time.time() + 300)
    t.defer(lambda: redis_cmd(f.redis.port, "DEL", "aurora:agents:" + cid))
    ex = ThreadPoolExecutor(3)

    def timed(r):
        t0 = time.monotonic()
        res = echo(r, cid, "to-the-frozen-replica", http_timeout=90)
        return res, time.monotonic() - t0
    futs = [ex.submit(timed, r) for r in f.live()]
    for fu in futs:
        res, took = fu.result(timeout=90)
        eq(res.status, 503, "a command for a cluster registered by a silent replica (%r)" % res)
        eq(res.get("error_code"), "AGENT_NOT_CONNECTED", "error_code (%r)" % res)
        check(frozen in (res.get("error") or ""), "the error names the silent replica", res)
        # 5 s deadline; 20 s leaves a loaded machine room and is still well
        # under the 30 s the connection timeout took.
        check(took < 20, "the failure must come at the connect deadline (%.1fs)" % took)
    ex.shutdown()


@test(timeout=120)
def per_cluster_limit_holds_across_replicas(t):
    """AURORA_EXEC_MAX_PER_CLUSTER counts every command of a cluster, whichever
    replica the caller reached: the replica holding the agent takes a slot for
    each forwarded command too, and the one past the limit is 429 CLUSTER_BUSY
    through any replica."""
    f = fleet(t)
    tok = f.any.create_token("rep-limit")
    f.agent(tok["token"], "agent-limit")
    cid = tok["cluster_id"]
    owner = f.owner_of(cid)
    others = f.others(owner)
    ex = ThreadPoolExecutor(PER_CLUSTER_MAX)
    # The limit filled from the other replicas only (each holds fewer than the
    # limit on its own): only the owner's count can see them all.
    # Held by the kube API fixture until the checks below are done (a 15 s
    # sleep could end under a loaded machine's checks, freeing a slot).
    tag = rand_tag(4)
    holds = ["limit-%s-%d" % (tag, k) for k in range(PER_CLUSTER_MAX)]
    t.defer(lambda: [release_held(h) for h in holds])
    futs = [ex.submit(lambda h=h, k=k: others[k % len(others)].kubectl(
        cid, args=["get", "--raw", "/fixture/hold/%s" % h], timeout=100))
        for k, h in enumerate(holds)]
    agent = f.agents[cid]
    wait_until(lambda: agent_metric(agent, "aurora_agent_commands_in_flight") == PER_CLUSTER_MAX,
               20, 0.05, "%d commands in flight on the agent" % PER_CLUSTER_MAX)
    for via in [owner] + others:
        r = echo(via, cid, "one-too-many")
        eq(r.status, 429, "one command past the limit through %s (%r)" % (via.name, r))
        eq(r.get("error_code"), "CLUSTER_BUSY", "error code through %s" % via.name)
    for h in holds:
        release_held(h)
    for fu in futs:
        eq(fu.result(timeout=60).status, 200, "the commands within the limit")
    ex.shutdown()
    eq(echo(others[0], cid, "after").status, 200, "room again once they ended")


@test(timeout=60)
def a_forwarded_cloud_exec_reaches_the_agent_with_its_credentials(t):
    """The owner's side of a forward, as the origin sends it: kind, program,
    argv and the environment (cloud credentials) reach the agent unchanged,
    and the answer streams back as SSE."""
    f = fleet(t)
    tok = f.any.create_token("rep-cloud")
    cid = tok["cluster_id"]
    peer = V2Agent(f.front, tok["token"], t)
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner = f.owner_of(cid)
    body = {"org_id": owner.org_id, "user_id": owner.user_id, "cluster_id": cid,
            "kind": "cloud_exec", "program": "gcloud", "argv": ["projects", "list"],
            "env": ["CLOUDSDK_AUTH_ACCESS_TOKEN=ya29.fake-%s" % secrets.token_hex(4)],
            "timeout": 20, "max_output": 100000}
    conn = HTTPSConn(owner.port, owner.ctx, timeout=30)
    conn.request("POST", "/internal/forward/exec", body=json.dumps(body).encode(),
                 headers={"X-Aurora-Forward-Secret": FORWARD_SECRET,
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    eq(r.status, 200, "forwarded cloud_exec status")
    events = []
    parse_sse_stream(r, lambda ev, data: events.append((ev, json.loads(data))) and False)
    conn.close()
    ex = peer.wait_execs(1)[0]
    eq(ex.get("kind"), "cloud_exec", "kind at the agent")
    eq(ex.get("program"), "gcloud", "program at the agent")
    eq(ex.get("argv"), ["projects", "list"], "argv at the agent")
    name, _, value = body["env"][0].partition("=")
    eq((ex.get("env") or {}).get(name), value, "the credentials at the agent")
    eq(events[-1][0], "result", "the stream ends with the result (%r)" % events[-1:])


@test(timeout=120)
def a_legacy_agent_is_reached_through_another_replica(t):
    """A deployed Python agent (legacy dialect) held by one replica serves a
    command sent to another: the command text reaches it verbatim (what the
    backend's tool sent), its command_response comes back, and a NUL in its
    output (json.dumps' \\u0000) arrives as U+FFFD."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy")
    cid = tok["cluster_id"]
    owner = f.replicas[1]
    a = owner.legacy_agent(tok["token"], name="legacy-rep")
    a.wait_event("connected", 30)
    eq(f.owner_of(cid).name, owner.name, "the replica the legacy agent dialled holds it")
    other = f.others(owner)[0]
    text = "rep-legacy-" + secrets.token_hex(4)
    cmd = "get --raw /fixture/echo?text=%s%%00x" % text
    r = other.kubectl(cid, command=cmd, timeout=30)
    eq(r.status, 200, "command through %s (%r)" % (other.name, r))
    eq((r.get("return_code"), r.get("output")), (0, text + "\ufffdx"), "the legacy answer")
    ev = a.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                      "the kubectl_command at the agent")
    eq(ev.get("command"), cmd, "the command text, verbatim through the forward")
    r = other.internal({"user_id": other.user_id, "cluster_id": cid,
                        "command": "kubectl get --raw /fixture/echo/%s" % text, "timeout": 30})
    eq((r.status, r.get("output")), (200, text), "the backend's tool through %s (%r)"
       % (other.name, r))


def gcp_user(f, r):
    """A new user of the fleet's org with a GCP service account connected
    through replica r (whose secrets backend keeps its key): its API key."""
    _, k = r.new_user()
    d = tempfile.mkdtemp(dir=f.t.tmp)
    priv, pub = os.path.join(d, "k.pem"), os.path.join(d, "pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", priv], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                   capture_output=True)
    email = "aurora-%s@proj-alpha.iam.gserviceaccount.com" % rand_tag(3)
    aud = "https://oauth2.googleapis.com/token"
    key = {"type": "service_account", "project_id": "proj-alpha", "private_key_id": rand_tag(20),
           "private_key": open(priv).read(), "client_email": email, "client_id": "1" + rand_tag(10),
           "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": aud}
    c = http.client.HTTPConnection("127.0.0.1", f.gcp_port, timeout=10)
    c.request("POST", "/_control", json.dumps({"pubkeys": {email: open(pub).read()},
                                               "expected_aud": aud}),
              {"Content-Type": "application/json"})
    eq(c.getresponse().status, 200, "the GCP fixture takes the key")
    c.close()
    res = r.post("/gcp/service-account", key, key=k)
    eq(res.status, 200, "the service account connects (%r)" % res)
    return k


@test(timeout=150)
def a_cloud_exec_beside_a_legacy_connection_reaches_the_v2_agent_elsewhere(t):
    """A cluster's Python agent (legacy: kubectl only) on one replica, its C
    agent (v2) on another, as while the one replaces the other: a cloud_exec
    sent to the replica holding the legacy connection goes to the v2 agent
    through the other replica, not 409 AGENT_UNSUPPORTED because the one
    connection of the cluster that replica holds cannot run it."""
    f = fleet(t)
    r_legacy, r_v2 = f.replicas[0], f.replicas[1]
    k = gcp_user(f, r_legacy)
    tok = r_legacy.create_token("rep-cloud-beside-legacy", key=k)
    cid = tok["cluster_id"]
    old = r_legacy.legacy_agent(tok["token"], name="legacy-beside-v2")
    old.wait_event("connected", 30)
    peer = V2Agent(r_v2, tok["token"], t)
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_legacy.addr, r_v2.addr}, 15, 0.05,
               "both replicas registered for the cluster")
    r = r_legacy.post("/api/cloud_exec", {"provider": "gcp", "cluster_id": cid,
                                          "command": "projects list"}, key=k)
    eq(r.status, 200, "cloud_exec through %s (%r)" % (r_legacy.name, r))
    ex = peer.wait_execs(1)[0]
    eq((ex.get("kind"), ex.get("program")), ("cloud_exec", "gcloud"), "at the v2 agent")
    check(not old.has_event("command"), "the legacy agent received nothing")
    # legacy connections only, on both: still 409, from the replica holding the newest
    tok2 = r_legacy.create_token("rep-cloud-legacy-only", key=k)
    cid2 = tok2["cluster_id"]
    a0 = r_legacy.legacy_agent(tok2["token"], name="legacy-only-0")
    a0.wait_event("connected", 30)
    a1 = r_v2.legacy_agent(tok2["token"], name="legacy-only-1")
    a1.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid2).values()) == {r_v2.addr}, 15, 0.05,
               "only the replica of the newest legacy connection registered")
    r = r_legacy.post("/api/cloud_exec", {"provider": "gcp", "cluster_id": cid2,
                                          "command": "projects list"}, key=k)
    eq((r.status, r.error_code), (409, "AGENT_UNSUPPORTED"), "legacy agents only (%r)" % r)
    check(not a0.has_event("command") and not a1.has_event("command"),
          "no legacy agent received anything")


@test(timeout=150)
def the_newest_legacy_connection_takes_the_commands_across_replicas(t):
    """A Python agent names no instance: its connection that died without a
    word stays on its replica until the idle timeout after it dialled again,
    maybe to another replica.  The existing server kept one connection per
    cluster, the newest: so must the fleet.  The replica holding the older
    one stops taking the cluster's commands (it forwards them, and is no
    longer registered for it), every replica routes to the newest, and the
    older one takes commands again once the newer one ends."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-newest")
    cid = tok["cluster_id"]
    r_old, r_new, r_third = f.replicas[0], f.replicas[1], f.replicas[2]
    old = r_old.legacy_agent(tok["token"], name="legacy-newest-old")
    old.wait_event("connected", 30)
    eq(f.owner_of(cid).name, r_old.name, "the replica the first connection dialled holds it")
    eq(echo(r_third, cid, "warm").get("output"), "warm", "a command before")
    old.proc.p.send_signal(signal.SIGSTOP)  # silent, its TCP connection still open
    try:
        new = r_new.legacy_agent(tok["token"], name="legacy-newest-new")
        new.wait_event("connected", 30)
        wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 15, 0.05,
                   "only the replica of the newest legacy connection registered")
        texts = ["newest-%d-%s" % (i, secrets.token_hex(3)) for i in range(4)]
        via = [r_old, r_third, r_old, r_third]
        # 15 s, not 3: the timeout reaches the legacy agent's kubectl as a
        # hard kill, and a kubectl start on a loaded machine used up 3 s; a
        # command sent to the stopped older connection still fails (504).
        rs = [r.kubectl(cid, args=["get", "--raw", "/fixture/echo/%s" % x], timeout=15,
                        http_timeout=60) for r, x in zip(via, texts)]
        bad = [(r.name, x, res.status, res.error_code) for r, x, res in zip(via, texts, rs)
               if res.status != 200 or res.get("output") != x]
        check(not bad, "commands that missed the newest legacy connection", *bad)
        got = [e.get("command", "") for e in list(new.events) if e.get("event") == "command"]
        check(all(any(x in c for c in got) for x in texts), "all at the newest connection", got)
    finally:
        old.proc.p.send_signal(signal.SIGCONT)
    # The newer one ends: the older one, alive again, takes the commands.
    new.op(op="close", code=1000)
    new.wait_event("close", 15)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 15, 0.05,
               "the older connection's replica registered again")
    text = "after-" + secrets.token_hex(3)
    r = echo(r_third, cid, text)
    eq((r.status, r.get("output")), (200, text), "a command once the newer one ended (%r)" % r)
    old.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                   "the command at the older connection")


@test(timeout=150)
def commands_held_for_a_legacy_connection_that_steps_aside_run_at_the_newer_one(t):
    """A legacy connection runs one command at a time; the replica holds the
    others.  When a newer legacy connection of the cluster comes up on another
    replica, the older one steps aside: what it held unsent is forwarded to
    that replica and runs at the newer connection (the caller's command text,
    verbatim), not failed with 503 "did not run"; what it was running is
    still answered."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-held")
    cid = tok["cluster_id"]
    r_old, r_new = f.replicas[0], f.replicas[1]
    old = r_old.legacy_agent(tok["token"], name="legacy-held-old")
    old.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 15, 0.05,
               "the older connection's replica registered")
    box = {}

    def run(key, command):
        box[key] = r_old.kubectl(cid, command=command, timeout=60, http_timeout=90)

    # The first command runs until the older connection has stepped aside
    # (the kube API fixture holds it), not for a fixed 8 s: metrics polls,
    # the newer agent's start and the Redis announcement on a loaded
    # machine outlasted it, and the held command then ran at the older one.
    hold = rand_tag(8)
    t.defer(lambda: release_held(hold))  # ends it even if a check below fails
    slow = "get --raw /fixture/hold/" + hold
    text = "held-" + secrets.token_hex(4)
    held = "get --raw /fixture/echo/" + text
    th = [threading.Thread(target=run, args=("slow", slow))]
    th[0].start()
    old.wait_event(lambda e: e.get("event") == "command" and e.get("command") == slow, 30,
                   "the first command at the older connection")
    waiting0 = server_metrics(r_old).get("aurora_agent_commands_waiting", 0)
    th.append(threading.Thread(target=run, args=("held", held)))
    th[1].start()
    wait_until(lambda: server_metrics(r_old).get("aurora_agent_commands_waiting", 0) > waiting0,
               15, 0.05, "the second command held at %s" % r_old.name)
    new = r_new.legacy_agent(tok["token"], name="legacy-held-new")
    new.wait_event("connected", 30)
    # r_old removes its registration in the same loop pass as it forwards
    # what it held (tunnel_legacy_elsewhere): the first command may end now.
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 30, 0.05,
               "the older connection to step aside")
    release_held(hold)
    for x in th:
        x.join(90)
    eq(box["held"].status, 200, "the held command, forwarded to %s (%r)" % (r_new.name, box["held"]))
    eq(box["held"].get("output"), text, "its output")
    ev = new.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""),
                        5, "the held command at the newer connection")
    eq(ev.get("command"), held, "the command text, verbatim")
    check(not any(text in (e.get("command") or "") for e in list(old.events)
                  if e.get("event") == "command"), "the held command reached the older connection")
    eq(box["slow"].status, 200, "the command the older connection ran (%r)" % box["slow"])


@test(timeout=120)
def an_older_legacy_connection_learns_of_a_newer_one_when_it_takes_over(t):
    """Two legacy connections of a cluster on one replica, an older one on
    another: when the newest ends, the older one elsewhere takes over for a
    moment and says so; the replica of the one in between (its own newest,
    never announced again) answers, and the older one steps aside again."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-pair")
    cid = tok["cluster_id"]
    r_old, r_pair, r_third = f.replicas[0], f.replicas[1], f.replicas[2]
    steps = "agent %s: a newer legacy connection of the cluster is up on another replica" % cid
    mark = len(r_old.server.log_text())
    old = r_old.legacy_agent(tok["token"], name="legacy-pair-old")
    old.wait_event("connected", 30)
    mid = r_pair.legacy_agent(tok["token"], name="legacy-pair-mid")
    mid.wait_event("connected", 30)
    new = r_pair.legacy_agent(tok["token"], name="legacy-pair-new")
    new.wait_event("connected", 30)
    wait_until(lambda: r_old.server.log_text()[mark:].count(steps) == 1, 15, 0.05,
               "the older connection to step aside")
    new.op(op="close", code=1000)
    new.wait_event("close", 15)
    wait_until(lambda: r_old.server.log_text()[mark:].count(steps) == 2, 15, 0.05,
               "the older connection to step aside again, for the one in between")
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_pair.addr}, 15, 0.05,
               "only the replica of the newest connection left registered")
    text = "pair-" + secrets.token_hex(3)
    r = echo(r_third, cid, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
    mid.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                   "the command at the newest connection left")
    check(not old.has_event("command"), "the older connection got no command", old.events)


@test(timeout=120)
def a_replica_that_asks_again_is_forgotten_until_it_answers(t):
    """A replica whose subscription came back asks every other to announce
    its legacy connections again, and announces its own: what the others
    heard of it before may be stale (the end of its connection, published on
    a primary a failover was demoting, reached nobody), so they forget it.
    Before, a connection that had stepped aside for a newer one there stayed
    aside for as long as it lived, and the cluster took no command."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-resync")
    cid = tok["cluster_id"]
    r0, r_third = f.replicas[0], f.replicas[2]
    a = r0.legacy_agent(tok["token"], name="legacy-resync")
    a.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r0.addr}, 15, 0.05,
               "the legacy connection's replica registered")
    ghost = "ghost-" + secrets.token_hex(4)
    # That replica says a newer connection of the cluster is up there ...
    publish_sealed(f.redis.port, {
        "from": ghost, "org_id": r0.org_id, "cluster_id": cid,
        "legacy_ready_ms": int(time.time() * 1000) + 60000, "legacy_up": True})
    wait_until(lambda: not f.redis.owners(cid), 15, 0.05, "the older connection to step aside")
    # ... then, subscribed again, asks again and announces nothing of it.
    publish_sealed(f.redis.port, {"from": ghost, "legacy_resync": True})
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r0.addr}, 15, 0.05,
               "the connection to take the cluster's commands again")
    text = "resync-" + secrets.token_hex(3)
    r = echo(r_third, cid, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)


class CloseChannel:
    """A subscriber to aurora:close: every message the replicas publish there,
    decoded, in the order Redis delivered them."""

    def __init__(self, t, port):
        self.messages = []
        self.s = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$12\r\naurora:close\r\n")
        self.f = self.s.makefile("rb")
        eq(_resp(self.f)[0], "subscribe", "SUBSCRIBE answered")
        self.s.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()
        t.defer(self.close)

    def _read(self):
        try:
            while True:
                m = _resp(self.f)
                if isinstance(m, list) and len(m) == 3 and m[0] == "message":
                    self.messages.append(json.loads(m[2]))
        except (OSError, ValueError, AssertionError):
            pass

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()

    def legacy(self, addr, cid, since=0):
        """The ready times a replica (its internal address) announced up for cluster cid."""
        return [m["legacy_ready_ms"] for m in self.messages[since:]
                if m.get("addr") == addr and m.get("cluster_id") == cid and m.get("legacy_up")]


@test(timeout=150)
def a_resync_answer_announces_only_the_connections_that_take_commands(t):
    """A replica asked to announce its legacy connections again (another one's
    subscription came back) answers as its renewals do: the connection of
    each cluster that takes the commands there.  Before, it announced every
    one it held, one that had stepped aside for a newer one elsewhere and an
    older one beside the newest there, and the asking replica could step
    aside for a connection that takes no command, forwarding what it held
    there."""
    f = fleet(t)
    ch = CloseChannel(t, f.redis.port)
    r0, r1 = f.replicas[0], f.replicas[1]
    # cluster 1: its older connection on r0 stepped aside for a newer one on r1
    tok1 = f.any.create_token("rep-legacy-answer-aside")
    cid1 = tok1["cluster_id"]
    aside = r0.legacy_agent(tok1["token"], name="legacy-answer-aside")
    aside.wait_event("connected", 30)
    wait_until(lambda: ch.legacy(r0.addr, cid1), 15, 0.05, "r0's connection announced")
    newer = r1.legacy_agent(tok1["token"], name="legacy-answer-newer")
    newer.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid1).values()) == {r1.addr}, 15, 0.05,
               "the older connection to step aside")
    # cluster 2: two connections on r0, the newer takes the commands
    tok2 = f.any.create_token("rep-legacy-answer-pair")
    cid2 = tok2["cluster_id"]
    first = r0.legacy_agent(tok2["token"], name="legacy-answer-first")
    first.wait_event("connected", 30)
    first_ms = wait_until(lambda: ch.legacy(r0.addr, cid2), 15, 0.05, "the first announced")[0]
    second = r0.legacy_agent(tok2["token"], name="legacy-answer-second")
    second.wait_event("connected", 30)
    second_ms = wait_until(lambda: [x for x in ch.legacy(r0.addr, cid2) if x != first_ms], 15,
                           0.05, "the second announced")[0]
    mark = len(ch.messages)
    publish_sealed(f.redis.port, {"from": "ghost-" + secrets.token_hex(4), "legacy_resync": True})
    # r0 publishes in order: its answer, then a renewal at least, are in.
    wait_until(lambda: len(ch.legacy(r0.addr, cid2, mark)) >= 3, 6 * LEASE, 0.05,
               "r0's answer and its next renewal")
    eq(ch.legacy(r0.addr, cid1, mark), [], "announced by r0 for the cluster it stepped aside for")
    check(first_ms not in ch.legacy(r0.addr, cid2, mark),
          "r0 announced the older of its two connections", ch.legacy(r0.addr, cid2, mark))
    check(set(ch.legacy(r0.addr, cid2, mark)) == {second_ms}, "r0 announced its newest",
          ch.legacy(r0.addr, cid2, mark))
    text = "answer-" + secrets.token_hex(3)
    r = echo(f.replicas[2], cid1, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
    newer.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                     "the command at the newest connection")


@test(timeout=150)
def a_legacy_connection_aside_for_one_on_a_killed_replica_takes_commands_again(t):
    """The replica holding a cluster's newest legacy connection is killed
    (-9, an OOM kill) and that agent does not come back: nobody publishes the
    connection's end.  The older connection on another replica, stepped aside
    for it, takes the commands again once the killed replica has not
    announced it again for a few renewals (a lease, as its registrations);
    before, it stayed aside for as long as it lived and the cluster, whose
    agent is up, took no command."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-killed")
    cid = tok["cluster_id"]
    r_old, r_new, r_third = f.replicas[0], f.replicas[1], f.replicas[2]
    mark = len(r_old.server.log_text())
    old = r_old.legacy_agent(tok["token"], name="legacy-killed-old")
    old.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 15, 0.05,
               "the older connection's replica registered")
    new = r_new.legacy_agent(tok["token"], name="legacy-killed-new")
    new.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 15, 0.05,
               "the older connection to step aside")
    r_new.kill9()
    try:
        new.wait_event("exit", 15, "the newer connection's agent to end with its replica")
        killed = time.monotonic()
        wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 45, 0.1,
                   "the older connection's replica to register the cluster again")
        t.note("the older connection took over %.1f s after the kill (lease %d s)"
               % (time.monotonic() - killed, LEASE))
        check("agent %s: the newer legacy connection on another replica was not announced again"
              % cid in r_old.server.log_text()[mark:], "the log says why it took over")
        text = "killed-" + secrets.token_hex(3)
        r = echo(r_third, cid, text)
        eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
        old.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""),
                       5, "the command at the older connection")
    finally:
        r_new.start()  # same port, same data dir, for the next tests


@test(timeout=300)
def replicas_with_different_leases_agree_on_the_newest_legacy_connection(t):
    """Replicas need not share AURORA_REGISTRY_LEASE_S (a rolling change of
    it, a replica set otherwise).  The newer legacy connection of a cluster
    is on a replica with a longer lease, which announces it again every third
    of that lease; the older one, stepped aside on a replica with a shorter
    lease, counted the announcer's silence in its own renewals and took
    commands again after 4 of them, while the newer one was alive and
    announced: two connections of the cluster took commands.  It stays aside
    as long as it hears the announcements, and still takes over within 4 of
    the announcer's periods once that replica is killed."""
    f = fleet(t)
    ch = CloseChannel(t, f.redis.port)
    # announced every 5 s; the short lease renews every second, so 4 of its
    # renewals pass between two announcements (the leases are short to keep
    # the test short: 8 s and 45 s made it 78 s)
    short_lease, long_lease = 3, 15
    env = dict(f.env, AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")  # the store's connections
    short = Replica(t, "server-ls", dict(env, AURORA_REGISTRY_LEASE_S=str(short_lease)), f.pki)
    long_ = Replica(t, "server-ll", dict(env, AURORA_REGISTRY_LEASE_S=str(long_lease)), f.pki)
    for r in (short, long_):
        r.org_id, r.user_id, r.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    tok = short.create_token("rep-legacy-leases")
    cid = tok["cluster_id"]
    took = "agent %s: the newer legacy connection on another replica was not announced again" % cid
    mark = len(short.server.log_text())
    old = short.legacy_agent(tok["token"], name="legacy-leases-old")
    old.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {short.addr}, 15, 0.05,
               "the older connection's replica registered")
    new = long_.legacy_agent(tok["token"], name="legacy-leases-new")
    new.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {long_.addr}, 15, 0.05,
               "the older connection to step aside")
    since = len(ch.messages)
    # Two announcements again: between them a whole period of the announcer
    # (5 s), more than 4 of the short-lease replica's renewals (4 s).
    wait_until(lambda: len(ch.legacy(long_.addr, cid, since)) >= 2, 2 * long_lease / 3 + 30, 0.1,
               "%s to announce the newer connection again twice" % long_.name)
    check(took not in short.server.log_text()[mark:],
          "the older connection took commands again while the newer one was announced")
    eq(set(f.redis.owners(cid).values()), {long_.addr}, "only the newer connection's replica registered")
    long_.kill9()
    new.wait_event("exit", 15, "the newer connection's agent to end with its replica")
    killed = time.monotonic()
    wait_until(lambda: set(f.redis.owners(cid).values()) == {short.addr}, 4 * long_lease / 3 + 15,
               0.1, "the older connection's replica to register the cluster again")
    t.note("the older connection took over %.1f s after the kill (announcer's lease %d s)"
           % (time.monotonic() - killed, long_lease))
    check(took in short.server.log_text()[mark:], "the log says why it took over")
    text = "leases-" + secrets.token_hex(3)
    r = echo(f.replicas[2], cid, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
    old.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                   "the command at the older connection")


@test(timeout=150)
def a_short_lease_never_expires_the_registration_of_a_longer_one(t):
    """Every replica holding a cluster sets its key's time to live.  Set to
    two of its own leases by a replica with a short one, the key outlived
    that replica's registration but not the one of a replica with a longer
    lease (over six times as long), which went with the key until its next
    renewal: lookups found nobody for a cluster whose agent was connected.
    Two agent pods of one cluster, on replicas with 2 s and 600 s leases;
    the short lease's pod leaves."""
    f = fleet(t)
    env = dict(f.env, AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")  # the store's connections
    short = Replica(t, "server-ks", dict(env, AURORA_REGISTRY_LEASE_S="2"), f.pki)
    long_ = Replica(t, "server-kl", dict(env, AURORA_REGISTRY_LEASE_S="600"), f.pki)
    for r in (short, long_):
        r.org_id, r.user_id, r.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    tok = long_.create_token("rep-key-ttl")
    cid = tok["cluster_id"]
    key = "aurora:agents:" + cid
    Agent(long_, tok["token"], "agent-ttl-long", owner=t).wait_ready(30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {long_.addr}, 15, 0.05,
               "%s to register the cluster" % long_.name)
    leaving = Agent(short, tok["token"], "agent-ttl-short", owner=t)
    leaving.wait_ready(30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {long_.addr, short.addr}, 15, 0.05,
               "%s to register it too" % short.name)
    leaving.proc.stop()
    wait_until(lambda: set(f.redis.owners(cid).values()) == {long_.addr}, 15, 0.05,
               "%s to remove its registration" % short.name)
    lapses = max(float(s) for m, s in zip(*[iter(redis_cmd(f.redis.port, "ZRANGE", key, "0", "-1",
                                                           "WITHSCORES"))] * 2)
                 if m.split(" ")[1] == long_.addr)
    ttl = redis_cmd(f.redis.port, "TTL", key)
    check(ttl >= lapses - time.time(), "the key expires in %s s, before the registration of %s "
          "(in %.0f s)" % (ttl, long_.name, lapses - time.time()))
    text = "ttl-" + secrets.token_hex(3)
    r = echo(f.replicas[2], cid, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)


@test(timeout=150)
def a_replica_stopping_says_its_legacy_connections_ended(t):
    """A replica stopped with SIGTERM says the legacy connections it still
    holds ended, also one whose agent never answers the close frame (frozen
    here): its connection outlived the registry, whose stop sent nothing
    after it, and the older connection elsewhere that stepped aside for it
    waited out the lapse of the announcements rather than taking over at
    once."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-stop")
    cid = tok["cluster_id"]
    r_old, r_third = f.replicas[0], f.replicas[2]
    # The newer connection's replica is the test's own, with a 30 s lease
    # (announcing every 10 s): the older one's replica waits ~13 of its
    # renewals for the lapse, ~30 s, not 4 of a fleet replica's (~8-11 s
    # from the last announcement), so a stop held up on a loaded machine
    # cannot let the lapse come first.  Without the end said at shutdown
    # the lapse still comes within the 45 s waited below.
    env = dict(f.env, AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")  # the store's connections
    r_new = Replica(t, "server-stop", dict(env, AURORA_REGISTRY_LEASE_S="30"), f.pki)
    r_new.org_id, r_new.user_id, r_new.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    ended = "agent %s: the newer legacy connection on another replica ended" % cid
    lapsed = "agent %s: the newer legacy connection on another replica was not announced" % cid
    mark = len(r_old.server.log_text())
    old = r_old.legacy_agent(tok["token"], name="legacy-stop-old")
    old.wait_event("connected", 30)
    new = r_new.legacy_agent(tok["token"], name="legacy-stop-new")
    new.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 15, 0.05,
               "the older connection to step aside")
    new.proc.p.send_signal(signal.SIGSTOP)  # answers no close frame
    try:
        eq(r_new.server.stop(), [], "%s stops cleanly" % r_new.name)
        wait_until(lambda: ended in r_old.server.log_text()[mark:]
                   or lapsed in r_old.server.log_text()[mark:], 45, 0.05,
                   "the older connection to take the commands again")
        check(lapsed not in r_old.server.log_text()[mark:],
              "the older connection took over only once the announcements lapsed")
    finally:
        new.proc.p.send_signal(signal.SIGCONT)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 15, 0.05,
               "the older connection's replica registered again")
    text = "stop-" + secrets.token_hex(3)
    r = echo(r_third, cid, text)
    eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
    old.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                   "the command at the older connection")


@test(timeout=180)
def a_replica_whose_clock_runs_ahead_does_not_outrank_a_newer_legacy_connection(t):
    """Legacy connections of a cluster are ranked across replicas by when each
    became ready.  Read from each replica's own wall clock, one whose clock
    ran ahead (here by ten minutes: AURORA_REGISTRY_TEST_CLOCK_SKEW_MS, as
    such a host reads its clock) outranked every connection the others made
    meanwhile: the cluster's newest connection stepped aside for an older one
    there, which took the commands, maybe over a connection its agent had
    left without a word.  Read from Redis's clock (TIME, as each registry
    last measured it), every replica ranks by one clock and the newest
    connection takes the commands."""
    f = fleet(t)
    ch = CloseChannel(t, f.redis.port)
    r_ahead, r_new, r_third = f.replicas[0], f.replicas[1], f.replicas[2]
    eq(r_ahead.server.stop(), [], "%s stops cleanly" % r_ahead.name)
    r_ahead.extra_env["AURORA_REGISTRY_TEST_CLOCK_SKEW_MS"] = str(10 * 60 * 1000)
    try:
        r_ahead.start()
        wait_until(lambda: server_metrics(r_ahead).get("aurora_registry_redis_connected") == 1,
                   30, 0.05, "%s to reach Redis" % r_ahead.name)
        tok = f.any.create_token("rep-legacy-clock-ahead")
        cid = tok["cluster_id"]
        old = r_ahead.legacy_agent(tok["token"], name="legacy-clock-old")
        old.wait_event("connected", 30)
        wait_until(lambda: ch.legacy(r_ahead.addr, cid), 15, 0.05, "the older connection announced")
        new = r_new.legacy_agent(tok["token"], name="legacy-clock-new")
        new.wait_event("connected", 30)
        wait_until(lambda: ch.legacy(r_new.addr, cid), 15, 0.05, "the newer connection announced")
        wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 15, 0.05,
                   "only the replica of the newest legacy connection registered")
        text = "clock-" + secrets.token_hex(3)
        r = echo(r_third, cid, text)
        eq((r.status, r.get("output")), (200, text), "a command through a third replica (%r)" % r)
        new.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""),
                       5, "the command at the newest connection")
        check(not old.has_event("command"), "the older connection got no command", old.events)
    finally:
        eq(r_ahead.server.stop(), [], "%s stops cleanly" % r_ahead.name)
        del r_ahead.extra_env["AURORA_REGISTRY_TEST_CLOCK_SKEW_MS"]
        r_ahead.start()  # same port, same data dir, its own clock, for the next tests


@test(timeout=120)
def forwarded_answers_match_the_owners(t):
    """A timeout, a failing command and a 404 cluster read the same through a
    forwarding replica as through the owner."""
    f = fleet(t)
    tok = f.any.create_token("rep-same")
    cid = tok["cluster_id"]
    f.agent(tok["token"], "agent-same")
    owner = f.owner_of(cid)
    fwd = f.others(owner)[0]
    keys = ("success", "return_code", "error_code", "truncated")
    for what, args, extra in (
            ("timeout", ["get", "--raw", "/fixture/sleep/30/same"], {"timeout": 2}),
            ("failing command", ["get", "--raw", "/fixture/status/404"], {}),
            ("output cap", ["get", "--raw", "/fixture/bytes?n=5000&seed=1"], {"max_output": 100})):
        a = owner.kubectl(cid, args=args, **extra)
        b = fwd.kubectl(cid, args=args, **extra)
        eq(b.status, a.status, "%s: HTTP status through %s (%r vs %r)" % (what, fwd.name, b, a))
        eq({k: b.get(k) for k in keys}, {k: a.get(k) for k in keys}, "%s: result fields" % what)
    r = fwd.kubectl("cluster-00000000deadbeef", args=["get", "pods"])
    eq(r.status, 404, "an unknown cluster through any replica (%r)" % r)
    offline = f.any.create_token("rep-offline")["cluster_id"]
    for rep in f.live():
        r = rep.kubectl(offline, args=["get", "pods"])
        eq(r.status, 503, "a cluster whose agent no replica holds, through %s (%r)" % (rep.name, r))
        eq(r.get("error_code"), "AGENT_NOT_CONNECTED", "error_code")


@test(timeout=120)
def forward_outcomes_tell_an_unreachable_owner_from_an_agent_gone(t):
    """aurora_forward_commands_total counts an owner that cannot be reached as
    `unreachable`, and an owner that answered AGENT_NOT_CONNECTED (its agent
    left before the command started there, or while it was queued; here a
    registration that outlived the agent) as `not_connected`."""
    f = fleet(t)
    cid = f.any.create_token("rep-stale")["cluster_id"]  # no agent anywhere
    fwd, stale = f.replicas[0], f.replicas[1]
    key = "aurora:agents:" + cid

    def outcomes():
        m = server_metrics(fwd)
        return {k: m.get('aurora_forward_commands_total{outcome="%s"}' % k, 0)
                for k in ("unreachable", "not_connected")}
    before = outcomes()
    register_sealed(f.redis.port, cid, "ins_stale", stale.addr, time.time() + 60)
    r = echo(fwd, cid, "to-a-replica-without-the-agent")
    redis_cmd(f.redis.port, "DEL", key)
    eq((r.status, r.get("error_code")), (503, "AGENT_NOT_CONNECTED"),
       "through a replica that does not hold the agent (%r)" % r)
    eq(outcomes(), {"unreachable": before["unreachable"],
                    "not_connected": before["not_connected"] + 1},
       "counted as the owner's answer, not as unreachable")
    register_sealed(f.redis.port, cid, "ins_gone", "127.0.0.1:%d" % refusing_port(t), time.time() + 60)
    r = echo(fwd, cid, "to-a-closed-port")
    redis_cmd(f.redis.port, "DEL", key)
    eq((r.status, r.get("error_code")), (503, "AGENT_NOT_CONNECTED"),
       "through an owner address nobody listens on (%r)" % r)
    eq(outcomes(), {"unreachable": before["unreachable"] + 1,
                    "not_connected": before["not_connected"] + 1},
       "an owner that cannot be reached is unreachable")


@test(timeout=120)
def a_forward_that_did_not_run_is_retried_where_the_agent_is_now(t):
    """The replica the origin's lookup named answers AGENT_NOT_CONNECTED (its
    session stepped aside or dropped between the lookup and the forward: here
    a registration naming a replica without the agent, gone by the time it
    answers) while another replica holds the cluster's live session: the
    origin looks the cluster up again and sends the command there, once, in
    JSON and in SSE mode.  Before, the caller got the 503 although the
    cluster took commands.  Each command is audited once, ok, by the origin."""
    f = fleet(t)
    tok = f.any.create_token("rep-retry")
    cid = tok["cluster_id"]
    f.agent(tok["token"], "agent-retry")
    owner = f.owner_of(cid)
    origin, stale = f.others(owner)[:2]
    key = "aurora:agents:" + cid

    def retried():
        return server_metrics(origin).get('aurora_forward_commands_total{outcome="retried"}', 0)

    def through_a_stale_registration(send):
        # Named first (the latest expiry), as a registration not yet removed.
        member = register_sealed(f.redis.port, cid, "ins_stepped_aside", stale.addr, time.time() + 300)
        t.defer(lambda: redis_cmd(f.redis.port, "ZREM", key, member))
        mark = len(origin.server.log_text())
        # Frozen until the origin has forwarded to it and the registration
        # is gone: then it answers that it does not hold the agent.
        stale.server.p.send_signal(signal.SIGSTOP)
        thawed = []

        def thaw():
            if not thawed:
                thawed.append(1)
                stale.server.p.send_signal(signal.SIGCONT)
        t.defer(thaw)
        ex = ThreadPoolExecutor(1)
        fu = ex.submit(send)
        wait_until(lambda: "exec on %s forwarded to the replica at %s" % (cid, stale.addr)
                   in origin.server.log_text()[mark:], 15, 0.02, "the forward to the stale replica")
        redis_cmd(f.redis.port, "ZREM", key, member)
        thaw()
        res = fu.result(timeout=90)
        ex.shutdown()
        log = origin.server.log_text()[mark:]
        check("exec on %s: the replica at %s did not run it; the replica at %s holds the agent "
              "now" % (cid, stale.addr, owner.addr) in log, "the origin logs the retry", log[-3000:])
        return res

    before = retried()
    text = "retry-" + secrets.token_hex(3)
    r = through_a_stale_registration(lambda: echo(origin, cid, text, http_timeout=90))
    eq((r.status, r.get("output")), (200, text),
       "the command, retried at the replica holding the agent (%r)" % r)
    eq(retried(), before + 1, "counted as retried")
    text = "retry-sse-" + secrets.token_hex(3)
    status, events = through_a_stale_registration(
        lambda: sse(origin, cid, {"args": ["get", "--raw", "/fixture/echo/%s" % text],
                                  "timeout": 30}, timeout=90))
    eq(status, 200, "SSE status")
    eq([e for e, _ in events][-1], "result", "the stream ends with a result (%r)" % events)
    eq("".join(d.get("text", "") for e, d in events if e == "output"), text, "its output")
    eq(retried(), before + 2, "counted as retried")
    q = "SELECT outcome FROM audit_log WHERE cluster_id = '%s'" % cid
    wait_until(lambda: len(f.sql(q)) == 2 and all(o != "started" for (o,) in f.sql(q)), 20, 0.05,
               "the audit rows to be completed")
    eq(f.sql(q), [("ok",), ("ok",)], "one audit row per command, ok")


@test(timeout=180)
def a_retry_runs_here_when_the_agent_moved_to_the_forwarding_replica(t):
    """The replica the origin forwarded to answers AGENT_NOT_CONNECTED (the
    agent left it) while the agent has dialled again and the load balancer
    picked the origin itself.  The registry then names no other replica (a
    lookup skips the origin's own registration), so the retry must hand the
    command to the origin's own session: the caller gets its output (200),
    not the first answer's 503 -- for a v2 agent in JSON and SSE mode and
    for a legacy (Python) agent.  Each command is audited once, ok, by the
    origin, and counted as retried_here.

    The replica the agent left is a stand-in serving the deployment's
    certificate, which takes the forward and answers what a replica without
    the agent answers, when the test says so: the forward stays in flight
    (TLS done, request received) for as long as the agent takes to dial the
    origin, which a frozen replica's 5 s connect deadline would not allow."""
    import ssl
    f = fleet(t)
    origin = f.replicas[0]
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(f.pki["crt"], f.pki["key"])
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    t.defer(lsock.close)
    left = "127.0.0.1:%d" % lsock.getsockname()[1]
    forwards = []
    arrived, answer = threading.Event(), threading.Event()
    t.defer(answer.set)

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            try:
                s = srv.wrap_socket(c, server_side=True)
                s.settimeout(90)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed before the request")
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                headers = {}
                for line in head.decode().split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                while len(body) < int(headers.get("content-length", "0")):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed mid-body")
                    body += chunk
                forwards.append((head.decode().split("\r\n")[0], headers, json.loads(body)))
                arrived.set()
                answer.wait(120)
                msg = json.dumps({"error": "the agent for cluster %s is not connected"
                                  % forwards[-1][2].get("cluster_id"),
                                  "error_code": "AGENT_NOT_CONNECTED"}).encode()
                s.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(msg), msg))
                s.close()
            except (OSError, ssl.SSLError, ValueError):
                c.close()
    threading.Thread(target=serve, daemon=True).start()

    def here():
        return server_metrics(origin).get('aurora_forward_commands_total{outcome="retried_here"}', 0)

    def moved_here(cid, dial, send):
        """send() to the origin, forwarded to the replica the agent left; the
        agent dials the origin meanwhile; then that replica answers."""
        key = "aurora:agents:" + cid
        member = register_sealed(f.redis.port, cid, "ins_agent_left", left, time.time() + 300)
        t.defer(lambda: redis_cmd(f.redis.port, "ZREM", key, member))
        arrived.clear()
        answer.clear()
        n = len(forwards)
        mark = len(origin.server.log_text())
        ex = ThreadPoolExecutor(1)
        fu = ex.submit(send)
        check(arrived.wait(30), "the origin forwarded the command to the replica the agent left")
        eq(len(forwards), n + 1, "one forward")
        line, headers, body = forwards[-1]
        eq((line.split(" ")[:2], body.get("cluster_id")), (["POST", "/internal/forward/exec"], cid),
           "the forward")
        eq(headers.get("x-aurora-forward-secret"), FORWARD_SECRET, "the forward's secret")
        agent = dial()
        wait_until(lambda: origin.addr in f.redis.owners(cid).values(), 30, 0.05,
                   "the origin to register the cluster's new session")
        # The replica the agent left removes its registration, then answers.
        redis_cmd(f.redis.port, "ZREM", key, member)
        answer.set()
        res = fu.result(timeout=120)
        ex.shutdown()
        eq(len(forwards), n + 1, "no second forward")
        log = origin.server.log_text()[mark:]
        return res, agent, lambda: check(
            "exec on %s: the replica at %s did not run it; this replica holds the agent now: "
            "run here" % (cid, left) in log, "the origin logs the retry here", log[-3000:])

    before = here()
    # a v2 agent, JSON
    tok = f.any.create_token("rep-moved-here")
    cid = tok["cluster_id"]
    text = "here-" + secrets.token_hex(3)
    r, _, logged = moved_here(cid, lambda: origin.start_agent(tok["token"], name="agent-moved-here"),
                              lambda: echo(origin, cid, text, http_timeout=120))
    eq((r.status, r.get("output"), r.get("return_code")), (200, text, 0),
       "the command, run on the origin's own session (%r)" % r)
    logged()
    eq(here(), before + 1, "counted as retried_here")
    clusters = [cid]
    # a v2 agent, SSE
    tok = f.any.create_token("rep-moved-here-sse")
    cid = tok["cluster_id"]
    text = "here-sse-" + secrets.token_hex(3)
    (status, events), _, logged = moved_here(
        cid, lambda: origin.start_agent(tok["token"], name="agent-moved-here-sse"),
        lambda: sse(origin, cid, {"args": ["get", "--raw", "/fixture/echo/%s" % text],
                                  "timeout": 30}, timeout=120))
    eq(status, 200, "SSE status")
    eq([e for e, _ in events][-1], "result", "the stream ends with a result (%r)" % events)
    eq("".join(d.get("text", "") for e, d in events if e == "output"), text, "its output")
    logged()
    eq(here(), before + 2, "counted as retried_here")
    clusters.append(cid)
    # a legacy agent (one command at a time, the command text verbatim)
    tok = f.any.create_token("rep-moved-here-legacy")
    cid = tok["cluster_id"]
    text = "here-legacy-" + secrets.token_hex(3)
    cmd = "get --raw /fixture/echo/" + text

    def legacy():
        a = origin.legacy_agent(tok["token"], name="legacy-moved-here")
        a.wait_event("connected", 30)
        return a
    r, a, logged = moved_here(cid, legacy, lambda: origin.kubectl(cid, command=cmd, timeout=30,
                                                                  http_timeout=120))
    eq((r.status, r.get("output")), (200, text), "the command, run on the origin's own legacy "
       "session (%r)" % r)
    logged()
    ev = a.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                      "the command at the legacy agent")
    eq(ev.get("command"), cmd, "the command text, verbatim")
    eq(here(), before + 3, "counted as retried_here")
    clusters.append(cid)
    q = ("SELECT outcome FROM audit_log WHERE cluster_id IN (%s)"
         % ", ".join("'%s'" % c for c in clusters))
    wait_until(lambda: len(f.sql(q)) == 3 and all(o != "started" for (o,) in f.sql(q)), 20, 0.05,
               "the audit rows to be completed")
    eq(f.sql(q), [("ok",)] * 3, "one audit row per command, ok")


def forwarded_and_held(t, f, origin, cid, tag):
    """A JSON and an SSE command sent to origin for cluster cid, each held by
    the kube API fixture (tag-json, tag-sse) until the test's end: their
    results, filled in by threads (joined by the returned wait())."""
    res = {}
    holds = [tag + "-json", tag + "-sse"]
    t.defer(lambda: [release_held(h) for h in holds])

    def run_json():
        try:
            res["json"] = origin.kubectl(cid, args=["get", "--raw", "/fixture/hold/%s" % holds[0]],
                                         timeout=60, http_timeout=120)
        except Exception as e:  # noqa: BLE001
            res["json-error"] = e

    def run_sse():
        try:
            res["sse"] = sse(origin, cid, {"args": ["get", "--raw", "/fixture/hold/%s" % holds[1]],
                                           "timeout": 60}, timeout=120)
        except Exception as e:  # noqa: BLE001
            res["sse-error"] = e
    threads = [threading.Thread(target=run_json, daemon=True),
               threading.Thread(target=run_sse, daemon=True)]
    for th in threads:
        th.start()

    def wait():
        for th in threads:
            th.join(60)
        check("json" in res and "sse" in res, "both callers got an answer", res)
        return res
    return wait


def cut_answers(res, what):
    """Both answers of forwarded_and_held say the command may have run."""
    r = res["json"]
    eq((r.status, r.get("error_code")), (502, "COMMAND_INTERRUPTED"), "%s: JSON (%r)" % (what, r))
    check("may have run" in r.get("error", ""), "%s: the message says it may have run" % what, r)
    status, events = res["sse"]
    eq(status, 200, "%s: SSE status" % what)
    eq(events[-1][0], "error", "%s: the stream ends with an error event (%r)" % (what, events))
    eq((events[-1][1].get("http_status"), events[-1][1].get("error_code")),
       (502, "COMMAND_INTERRUPTED"), "%s: the stream's end event" % what)


@test(timeout=180)
def a_command_cut_by_the_owners_shutdown_may_have_run(t):
    """The replica holding a cluster's agent stops (SIGTERM, then a second
    signal ends its drain) while its agent runs two commands another replica
    forwarded: that replica's callers get 502 COMMAND_INTERRUPTED (JSON, and
    the stream's end event), which it does not retry (the command may have
    run), and its audit rows say interrupted.  Before, the owner ended them
    with 503 SERVER_SHUTTING_DOWN, the answer of a command that did not run."""
    f = fleet(t)
    tok = f.any.create_token("rep-owner-stop")
    cid = tok["cluster_id"]
    a = f.agent(tok["token"], "agent-owner-stop")
    owner = f.owner_of(cid)
    origin = f.others(owner)[0]

    def counted(outcome):
        return server_metrics(origin).get('aurora_forward_commands_total{outcome="%s"}' % outcome, 0)
    before = {k: counted(k) for k in ("interrupted", "retried", "retried_here")}
    mark = len(origin.server.log_text())
    wait = forwarded_and_held(t, f, origin, cid, "owner-stop-" + rand_tag(4))
    wait_until(lambda: agent_metric(a, "aurora_agent_commands_in_flight") == 2, 20, 0.05,
               "both commands to run at the agent")
    owner.server.p.send_signal(signal.SIGTERM)
    try:
        wait_until(lambda: "draining 2 running command" in owner.server.log_text(), 15, 0.02,
                   "the owner to drain its two commands")
        owner.server.p.send_signal(signal.SIGINT)
        eq(owner.server.p.wait(30), 0, "the owner's exit status")
        res = wait()
    finally:
        eq(owner.server.stop(), [], "%s stopped cleanly" % owner.name)
        owner.start()  # same port, same data dir, for the next tests
    cut_answers(res, "cut by the owner's shutdown")
    eq({k: counted(k) for k in before},
       dict(before, interrupted=before["interrupted"] + 2), "counted as interrupted, not retried")
    check("did not run it" not in origin.server.log_text()[mark:], "no retry logged")
    q = "SELECT outcome FROM audit_log WHERE cluster_id = '%s'" % cid
    wait_until(lambda: len(f.sql(q)) == 2 and all(o != "started" for (o,) in f.sql(q)), 20, 0.05,
               "the audit rows to be completed")
    eq(f.sql(q), [("interrupted",), ("interrupted",)], "the forwarding replica's audit rows")


@test(timeout=180)
def a_forwarding_replicas_shutdown_cuts_what_it_forwarded(t):
    """The replica a caller reached stops (SIGTERM, then a second signal ends
    its drain) while the replica holding the agent runs two commands it
    forwarded: its callers get 502 COMMAND_INTERRUPTED before it exits (JSON,
    and the stream's end event), its audit rows say interrupted, and the
    commands are cancelled at the agent.  Before, the callers' connections
    and the forwards closed in no set order as the server stopped: a caller
    got no answer (or AGENT_DISCONNECTED), and its audit row stayed
    "started"."""
    f = fleet(t)
    tok = f.any.create_token("rep-origin-stop")
    cid = tok["cluster_id"]
    a = f.agent(tok["token"], "agent-origin-stop")
    owner = f.owner_of(cid)
    origin = f.others(owner)[0]
    wait = forwarded_and_held(t, f, origin, cid, "origin-stop-" + rand_tag(4))
    wait_until(lambda: agent_metric(a, "aurora_agent_commands_in_flight") == 2, 20, 0.05,
               "both commands to run at the agent")
    q = "SELECT outcome FROM audit_log WHERE cluster_id = '%s'" % cid
    origin.server.p.send_signal(signal.SIGTERM)
    try:
        wait_until(lambda: "draining 2 running command" in origin.server.log_text(), 15, 0.02,
                   "the forwarding replica to drain its two commands")
        origin.server.p.send_signal(signal.SIGINT)
        eq(origin.server.p.wait(30), 0, "the forwarding replica's exit status")
        res = wait()
        # written before it exited: read while it is down
        eq(f.sql(q), [("interrupted",), ("interrupted",)], "its audit rows")
    finally:
        eq(origin.server.stop(), [], "%s stopped cleanly" % origin.name)
        origin.start()  # same port, same data dir, for the next tests
    cut_answers(res, "cut by the forwarding replica's shutdown")
    wait_until(lambda: agent_metric(a, "aurora_agent_commands_in_flight") == 0, 20, 0.05,
               "the agent to cancel both commands")


@test(timeout=120)
def client_disconnect_cancels_on_the_owner(t):
    f = fleet(t)
    tok = f.any.create_token("rep-cancel")
    cid = tok["cluster_id"]
    a = f.agent(tok["token"], "agent-cancel")
    owner = f.owner_of(cid)
    fwd = f.others(owner)[0]
    conn = HTTPSConn(fwd.port, fwd.ctx, timeout=60)
    conn.request("POST", "/api/clusters/%s/kubectl" % cid,
                 body=json.dumps({"args": ["get", "--raw", "/fixture/sleep/40/cancel"],
                                  "timeout": 60}).encode(),
                 headers={"Authorization": "Bearer %s" % fwd.api_key,
                          "Content-Type": "application/json", "Accept": "text/event-stream"})
    r = conn.getresponse()
    eq(r.status, 200, "SSE status")
    wait_until(lambda: agent_metric(a, "aurora_agent_commands_in_flight") == 1, 15, 0.05,
               "the command to run at the agent")
    t0 = time.monotonic()
    r.close()  # the response holds the socket: the client is gone
    conn.close()
    wait_until(lambda: agent_metric(a, "aurora_agent_commands_in_flight") == 0, 15, 0.05,
               "the agent to cancel the command")
    check(server_metrics(fwd).get('aurora_forward_commands_total{outcome="cancelled"}', 0) >= 1,
          "the forwarding replica counts the cancelled forward")
    t.note("client gone on %s, cancelled on %s's agent in %.0f ms"
           % (fwd.name, owner.name, (time.monotonic() - t0) * 1000))


@test(timeout=240)
def killed_replica_fails_its_inflight_and_its_agents_come_back(t):
    f = fleet(t)
    toks = [f.any.create_token("rep-kill-%d" % i) for i in range(3)]
    for i, tok in enumerate(toks):
        f.agent(tok["token"], "agent-kill-%d" % i)
    cids = [tok["cluster_id"] for tok in toks]
    owners = {cid: f.owner_of(cid) for cid in cids}
    victim = owners[cids[0]]
    victims = [c for c in cids if owners[c] is victim]
    t.note("victim %s holds %d of 3 clusters" % (victim.name, len(victims)))
    survivors = f.others(victim)
    # Load: long commands on the victim's clusters through the survivors (forwarded)
    # and through the victim itself, plus short commands everywhere.
    ex = ThreadPoolExecutor(16)
    long_futs = []
    # held by the kube API fixture until the owner's death was seen (a 20 s
    # sleep could end first on a loaded machine, and answer 200)
    tag = rand_tag(4)
    holds = ["kill-%s-%d" % (tag, k) for k in range(4)]
    t.defer(lambda: [release_held(h) for h in holds])
    for i in range(4):
        via = survivors[i % len(survivors)]
        long_futs.append((via, ex.submit(lambda v=via, k=i: (v.kubectl(
            victims[0], args=["get", "--raw", "/fixture/hold/%s" % holds[k]], timeout=60),
            time.monotonic()))))
    stop_load = threading.Event()
    short_results = []

    def short_load():
        i = 0
        while not stop_load.is_set():
            for c in cids:
                r = survivors[i % len(survivors)]
                short_results.append((c, echo(r, c, "load-%d" % i, http_timeout=30).status))
                i += 1
    # the long commands are in flight at the agent (through the forwarding hops);
    # the short load starts after, or its commands would count in the agent's gauge
    # and a long one could still be on its way to the owner when it dies
    agent_obj = f.agents[victims[0]]
    wait_until(lambda: agent_metric(agent_obj, "aurora_agent_commands_in_flight") == 4, 20, 0.05,
               "4 long commands in flight on the victim's agent")
    loaders = [ex.submit(short_load) for _ in range(2)]
    wait_until(lambda: len(short_results) >= 3, 20, 0.02, "the short load to be running")
    victim.kill9()
    killed = time.monotonic()
    for via, fu in long_futs:
        res, done = fu.result(timeout=30)
        eq(res.status, 502, "in-flight command through %s when the owner died (%r)" % (via.name, res))
        eq(res.get("error_code"), "AGENT_DISCONNECTED", "error_code (%r)" % res)
        # Prompt: at the owner's death (its connection ends), not at a deadline;
        # the forward's own is 90 s away (the command's 60 s and twice the 15 s
        # grace).  30 s leaves a loaded machine seconds to schedule the survivor
        # and this client: 5 s measured the scheduler as much as the server.
        check(done - killed < 30, "the failure must be prompt (%.1fs)" % (done - killed))
    for h in holds:  # their kubectl at the agent ends too
        release_held(h)
    gone = sum(server_metrics(r).get('aurora_forward_commands_total{outcome="owner_gone"}', 0)
               for r in survivors)
    check(gone >= len(long_futs), "the survivors count the forwards whose owner died (%d)" % gone)
    # Its agents reconnect through haproxy to a survivor; commands work again everywhere.
    for c in victims:
        new_owner = f.owner_of(c, timeout=60)
        check(new_owner is not victim, "the cluster moved to a survivor")

        def works(c=c):
            return all(echo(r, c, "back").status == 200 for r in f.live())
        wait_until(works, 30, 0.2, "commands on %s through every live replica" % c[-6:])
    stop_load.set()
    for fu in loaders:
        fu.result(timeout=60)
    ex.shutdown()
    # Nothing else fails: the clusters the victim did not hold answered every time;
    # the moved ones were briefly not connected (503) or lost mid-command (502).
    others_failed = [(c[-6:], st) for c, st in short_results if c not in victims and st != 200]
    eq(others_failed, [], "commands on clusters the dead replica did not hold")
    statuses = [st for c, st in short_results if c in victims]
    bad = [st for st in statuses if st not in (200, 502, 503)]
    eq(bad, [], "commands on the moved clusters fail only as not connected / disconnected")
    t.note("%d short commands under load: %d on other clusters, all ok; on the moved ones "
           "%d ok, %d 502, %d 503" % (len(short_results), len(short_results) - len(statuses),
                                       statuses.count(200), statuses.count(502),
                                       statuses.count(503)))
    # the dead replica's connection rows are reset by a survivor once its lease lapsed,
    # and taken back by the new owners
    for c in victims:
        wait_until(lambda c=c: (survivors[0].connection(c) or {}).get("status") == "active", 30, 0.2,
                   "the moved cluster to read connected")
    # the victim comes back (same port, same data dir) for the next tests
    victim.start()


@test(timeout=120)
def redis_restart_brings_registrations_back(t):
    f = fleet(t)
    tok = f.any.create_token("rep-redis")
    cid = tok["cluster_id"]
    f.agent(tok["token"], "agent-redis")
    owner = f.owner_of(cid)
    fwd = f.others(owner)[0]
    eq(echo(fwd, cid, "before").status, 200, "forwarded command before the restart")
    # A second cluster, held by some replica, whose token is revoked while Redis is away.
    tok2 = f.any.create_token("rep-redis-revoke")
    cid2 = tok2["cluster_id"]
    peer = NodePeer(f.front, tok2["token"], t, "v2_agent.js", "v2-redis")
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    owner2 = f.owner_of(cid2)
    other2 = f.others(owner2)[0]
    tid2 = [x for x in other2.get("/api/kubectl/tokens").json.get("tokens", [])
            if x.get("cluster_id") == cid2][0]["id"]

    # A third whose token is revoked behind every replica's back (in the store only):
    # no replica publishes that, only the re-check on resubscription can catch it.
    tok3 = f.any.create_token("rep-redis-sql")
    peer3 = NodePeer(f.front, tok3["token"], t, "v2_agent.js", "v2-redis-sql")
    peer3.wait(lambda e: e.get("event") == "connected", 20, "connected")
    f.owner_of(tok3["cluster_id"])

    f.redis.stop()
    f.sql("UPDATE agent_tokens SET revoked_at = %d WHERE cluster_id = '%s'"
          % (int(time.time()), tok3["cluster_id"]))
    # Redis away: the owner still serves its own agent.
    res = echo(owner, cid, "during")
    eq(res.status, 200, "a command on the owner while Redis is down (%r)" % res)
    # A revocation on a replica that does not hold the session: nobody hears it yet.
    eq(other2.revoke_token(tid2).status, 200, "revoke while Redis is down")
    f.redis.start()
    back = f.owner_of(cid, timeout=30)
    eq(back.name, owner.name, "the owner registered its session again")

    def fwd_ok():
        return echo(fwd, cid, "after").status == 200
    wait_until(fwd_ok, 30, 0.2, "forwarded commands to work again")
    # Once Redis is back, the revoked token's session ends on its owner (the queued
    # publish, or the owner's re-check of every token when it subscribes again).
    ev = peer.wait(lambda e: e.get("event") == "close", 30, "the session revoked during the outage to close")
    eq(ev.get("code"), 1008, "close code")
    ev3 = peer3.wait(lambda e: e.get("event") == "close", 30,
                     "the session revoked in the store only to close after the re-check")
    eq(ev3.get("code"), 1008, "close code after the re-check")
    # and fan-out works on the new subscriptions
    tokens = fwd.get("/api/kubectl/tokens").json.get("tokens", [])
    tid = [x for x in tokens if x.get("cluster_id") == cid][0]["id"]
    eq(fwd.revoke_token(tid).status, 200, "revoke after the Redis restart")
    wait_until(lambda: not f.redis.owners(cid), 10, 0.05, "the revoked session to be gone")


@test(timeout=180)
def a_legacy_connection_aside_serves_its_replica_while_redis_is_away(t):
    """Redis away, no replica hears another: each serves the agents it holds
    (docs/api.md).  A legacy connection that stepped aside for a newer one on
    another replica heard nothing more, and with no renewal while Redis was
    away its stepping aside never lapsed: every command reaching its replica
    got 503 for the whole outage although the cluster's agent was connected
    there.  It takes them again once the lease has run out, as when the
    other replica dies; once Redis is back it steps aside again."""
    f = fleet(t)
    tok = f.any.create_token("rep-legacy-outage")
    cid = tok["cluster_id"]
    r_old, r_new, r_third = f.replicas[0], f.replicas[1], f.replicas[2]
    lapsed = "agent %s: no word of the newer legacy connection on another replica" % cid
    old = r_old.legacy_agent(tok["token"], name="legacy-outage-old")
    old.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_old.addr}, 15, 0.05,
               "the older connection's replica registered")
    new = r_new.legacy_agent(tok["token"], name="legacy-outage-new")
    new.wait_event("connected", 30)
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 15, 0.05,
               "the older connection to step aside")
    r = echo(r_old, cid, "aside")
    eq((r.status, r.get("output")), (200, "aside"), "forwarded while Redis is up (%r)" % r)
    mark = len(r_old.server.log_text())
    f.redis.stop()
    try:
        wait_until(lambda: "registry: lost Redis" in r_old.server.log_text()[mark:], 15, 0.05,
                   "the replica to lose Redis")
        stopped = time.monotonic()
        text = "outage-" + secrets.token_hex(3)
        seen = []

        def served():
            seen.append(echo(r_old, cid, text))
            return seen[-1].status == 200
        try:
            wait_until(served, 8 * LEASE, 0.5, "a command on the older one's replica to run, "
                       "Redis away")
        except AssertionError as e:
            raise AssertionError("%s; it answered %s" % (
                e, sorted({(x.status, x.error_code) for x in seen})))
        t.note("it took commands again %.1f s into the outage (lease %d s)"
               % (time.monotonic() - stopped, LEASE))
        eq(seen[-1].get("output"), text, "its output")
        check({x.status for x in seen[:-1]} <= {503}, "answers before it took them",
              [(x.status, x.error_code) for x in seen])
        check(lapsed in r_old.server.log_text()[mark:], "the log says why it took commands")
        old.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""),
                       5, "the command at the older connection")
        text = "outage-new-" + secrets.token_hex(3)
        r = echo(r_new, cid, text)
        eq((r.status, r.get("output")), (200, text), "the newer one's replica serves it (%r)" % r)
    finally:
        back = len(r_old.server.log_text())
        f.redis.start()
    # Redis back: the replicas announce again, the older one steps aside.
    steps = "agent %s: a newer legacy connection of the cluster is up on another replica" % cid
    wait_until(lambda: steps in r_old.server.log_text()[back:], 30, 0.1,
               "the older connection to step aside again once Redis is back")
    wait_until(lambda: set(f.redis.owners(cid).values()) == {r_new.addr}, 30, 0.1,
               "only the newer connection's replica registered again")
    text = "back-" + secrets.token_hex(3)
    r = echo(r_old, cid, text)
    eq((r.status, r.get("output")), (200, text), "a command on the older one's replica (%r)" % r)
    new.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 5,
                   "the command at the newer connection")
    check(not any(text in (e.get("command") or "") for e in list(old.events)
                  if e.get("event") == "command"), "it reached the older connection")


@test(timeout=120)
def a_stalled_redis_delays_one_lookup_not_every_command(t):
    """Redis stops answering (SIGSTOP: the kernel still takes connections).
    Every command asks Redis which replica holds its cluster, on a store
    worker, before it runs, even on the replica that holds the agent: the
    first lookup to wait out its timeout must tell the registry, so that the
    next commands skip Redis at once instead of each holding a worker for a
    second, until the registry's own renewal (a third of the lease later)
    found out.  Counted, not timed: the lookups that waited are logged."""
    f = fleet(t)
    tok = f.any.create_token("rep-stall")
    cid = tok["cluster_id"]
    f.agent(tok["token"], "agent-stall")
    owner = f.owner_of(cid)
    eq(echo(owner, cid, "before").status, 200, "a command before Redis stalls")
    mark = len(owner.server.log_text())
    f.redis.proc.p.send_signal(signal.SIGSTOP)
    t.defer(lambda: f.redis.proc.p.send_signal(signal.SIGCONT))
    for i in range(6):
        res = echo(owner, cid, "stalled-%d" % i)
        eq(res.status, 200, "a command on the replica holding the agent, Redis stalled (%r)" % res)
    # One (none if the registry's own renewal found out first); without the
    # word from the lookup, every one until then: 2 to 5 with this lease.
    waited = owner.server.log_text()[mark:].count("registry: lookup of cluster")
    check(waited <= 1, "lookups that waited on the stalled Redis: %d" % waited)
    f.redis.proc.p.send_signal(signal.SIGCONT)
    fwd = f.others(owner)[0]
    wait_until(lambda: echo(fwd, cid, "after").status == 200, 30, 0.2,
               "forwarded commands to work once Redis answers again")


class SwitchingProxy:
    """A TCP proxy standing for the Redis service's address: each new
    connection goes to the current upstream, connections made before a switch
    stay where they are (a failover moves the service, not the sockets)."""

    def __init__(self, t, upstream):
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        t.defer(self.close)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b, c), daemon=True).start()

    def _passes(self, data, sender, client):
        """Whether data read from sender goes on (FreezingProxy drops it)."""
        return True

    def _pump(self, a, b, client):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if self._passes(d, a, client):
                    b.sendall(d)
        except OSError:
            pass
        if not self._passes(b"", a, client):
            return  # silent: neither end learns
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class FreezingProxy(SwitchingProxy):
    """A SwitchingProxy that can go silent on the connections that subscribed
    (a NAT, conntrack or load balancer that dropped an idle flow without a
    word): what either end sends on them then reaches nobody, and neither
    end is told.  Connections made later pass."""

    def __init__(self, t, upstream):
        self.subscribed = set()  # the client sockets that sent SUBSCRIBE
        self.frozen = set()
        super().__init__(t, upstream)

    def freeze_subscriptions(self):
        self.frozen |= self.subscribed

    def _passes(self, data, sender, client):
        if sender is client and b"SUBSCRIBE" in data.upper():
            self.subscribed.add(client)
        return client not in self.frozen


@test(timeout=150)
def a_subscription_gone_silent_is_noticed_and_revocations_reach_the_holder(t):
    """The connection a replica's registry subscribed on goes silent (its
    flow dropped between the replica and Redis without a word), while its
    other connection keeps the registrations: pub/sub says nothing of a
    subscriber that no longer hears, and the replica never learned it, so a
    token revoked through another replica kept its session there for good.
    The registry checks its subscription at each renewal; one that does not
    answer is connected again, and the sessions' tokens are looked up anew
    (the revoked one closes)."""
    f = fleet(t)
    proxy = FreezingProxy(t, f.redis.port)
    env = dict(f.env, AURORA_REDIS_URL="redis://127.0.0.1:%d/0" % proxy.port,
               AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")
    holder = Replica(t, "server-silent-sub", env, f.any.pki)
    holder.org_id, holder.user_id, holder.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    via = f.replicas[1]
    tok = holder.create_token("rep-silent-sub")
    cid = tok["cluster_id"]
    Agent(holder, tok["token"], "agent-silent-sub", owner=t).wait_ready(30)
    wait_until(lambda: holder.addr in f.redis.owners(cid).values(), 15, 0.05,
               "the holder to register the cluster")
    wait_until(lambda: proxy.subscribed, 15, 0.05, "the holder's subscription through the proxy")
    proxy.freeze_subscriptions()
    tid = [x for x in via.get("/api/kubectl/tokens").json.get("tokens", [])
           if x.get("cluster_id") == cid][0]["id"]
    eq(via.revoke_token(tid).status, 200, "revoke through another replica")
    wait_until(lambda: holder.addr not in f.redis.owners(cid).values(), 8 * LEASE, 0.1,
               "the revoked session to end on its holder")
    check("subscription" in holder.server.log_text(), "the holder logs why it connected again")


@test(timeout=180)
def a_redis_failover_is_followed(t):
    """Redis fails over: the service's address now leads to the new primary,
    while the old one, demoted to its replica, keeps the connections it had and
    refuses writes (READONLY).  Each replica's registry must notice that its
    registrations are refused, connect again (to the new primary) and register
    its sessions there, and a replica that holds nothing must move too (its
    revocations, published on a replica, would reach nobody on the primary);
    commands forwarded between replicas and revocations work again.  Kept,
    the connection refused every renewal for as long as it lived, the registry
    reported itself connected, and no registration ever reached the new
    primary."""
    f = fleet(t)
    old, new = Redis(t, "redis-old"), Redis(t, "redis-new")
    proxy = SwitchingProxy(t, old.port)
    # Few workers: the fleet's replicas hold most of PostgreSQL's connections.
    env = dict(f.env, AURORA_REDIS_URL="redis://127.0.0.1:%d/0" % proxy.port,
               AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")
    pair = [Replica(t, "server-fo%d" % i, dict(env), f.any.pki) for i in range(2)]
    for r in pair:
        r.org_id, r.user_id, r.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    holder, via = pair
    tok = holder.create_token("rep-failover")
    cid = tok["cluster_id"]
    Agent(holder, tok["token"], "agent-failover", owner=t).wait_ready(30)
    wait_until(lambda: holder.addr in old.owners(cid).values(), 15, 0.05,
               "the holder to register the cluster in the first primary")
    eq(echo(via, cid, "before").status, 200, "a forwarded command before the failover")

    proxy.upstream = new.port  # the service's address moves to the new primary...
    redis_cmd(old.port, "REPLICAOF", "127.0.0.1", new.port)  # ...the old one is its replica
    wait_until(lambda: holder.addr in new.owners(cid).values(), 30, 0.1,
               "the holder to register the cluster in the new primary")
    # Both follow it, the one that holds nothing too: each subscribes there.
    wait_until(lambda: redis_cmd(new.port, "PUBSUB", "NUMSUB", "aurora:close")[1] == 2, 30, 0.1,
               "both replicas to subscribe on the new primary")
    for r in pair:
        # Waited for: the gauge goes to 1 only after SUBSCRIBE, then the
        # registrations and TIME, round trips through the Python proxy.
        wait_until(lambda r=r: server_metrics(r).get("aurora_registry_redis_connected") == 1.0, 15,
                   0.1, "%s: Redis connected gauge" % r.name)
        # Why depends on which command met the demoted primary first: the
        # role check before a renewal, or a renewal's write (READONLY).
        wait_until(lambda r=r: any(why in r.server.log_text()
                                   for why in ("not the primary", "READONLY")), 15, 0.1,
                   "%s to log why it connected again" % r.name)
    wait_until(lambda: echo(via, cid, "after").status == 200, 30, 0.2,
               "forwarded commands to work after the failover")
    # A revocation through the replica that does not hold the session reaches
    # the one that does (published where it subscribes).
    tid = [x for x in via.get("/api/kubectl/tokens").json.get("tokens", [])
           if x.get("cluster_id") == cid][0]["id"]
    eq(via.revoke_token(tid).status, 200, "revoke through the other replica")
    wait_until(lambda: not new.owners(cid), 15, 0.05, "the revoked session to end on its holder")


@test(timeout=180)
def a_revocation_right_after_a_failover_reaches_the_new_primary(t):
    """Redis fails over and a revocation is made through a replica whose
    registry has not noticed yet (its next renewal, where it asks ROLE, is
    a third of its lease away): the demoted primary takes the PUBLISH (a
    replica accepts one) and passes it to nobody subscribed on the new
    primary, where the replica holding the session listens.  The close must
    wait for the reconnection instead of being spent there: sent on the
    demoted primary, it was lost, and the revoked token's session stayed up
    on its holder for good (nothing re-checks it later)."""
    f = fleet(t)
    old, new = Redis(t, "redis-old"), Redis(t, "redis-new")
    proxy = SwitchingProxy(t, old.port)
    env = dict(f.env, AURORA_REDIS_URL="redis://127.0.0.1:%d/0" % proxy.port,
               AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")
    # the holder renews (and asks ROLE) every second; the other replica,
    # holding nothing, only in 20 minutes
    holder = Replica(t, "server-rv0", dict(env, AURORA_REGISTRY_LEASE_S="3"), f.any.pki)
    via = Replica(t, "server-rv1", dict(env, AURORA_REGISTRY_LEASE_S="3600"), f.any.pki)
    for r in (holder, via):
        r.org_id, r.user_id, r.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    tok = holder.create_token("rep-fo-revoke")
    cid = tok["cluster_id"]
    Agent(holder, tok["token"], "agent-fo-revoke", owner=t).wait_ready(30)
    wait_until(lambda: holder.addr in old.owners(cid).values(), 15, 0.05,
               "the holder to register the cluster in the first primary")
    wait_until(lambda: redis_cmd(old.port, "PUBSUB", "NUMSUB", "aurora:close")[1] == 2, 30, 0.1,
               "both replicas to subscribe on the first primary")

    proxy.upstream = new.port
    redis_cmd(old.port, "REPLICAOF", "127.0.0.1", new.port)
    wait_until(lambda: holder.addr in new.owners(cid).values(), 30, 0.1,
               "the holder to register the cluster in the new primary")
    wait_until(lambda: redis_cmd(new.port, "PUBSUB", "NUMSUB", "aurora:close")[1] == 1, 30, 0.1,
               "the holder to subscribe on the new primary")
    # Waited for: the holder's old subscription leaves the demoted primary
    # only once the proxy's pump thread has seen its end and passed it on.
    wait_until(lambda: redis_cmd(old.port, "PUBSUB", "NUMSUB", "aurora:close")[1] == 1, 15, 0.05,
               "only the other replica still subscribed on the demoted primary")
    tid = [x for x in via.get("/api/kubectl/tokens").json.get("tokens", [])
           if x.get("cluster_id") == cid][0]["id"]
    eq(via.revoke_token(tid).status, 200, "revoke through the replica that has not noticed")
    wait_until(lambda: not new.owners(cid), 20, 0.1, "the revoked session to end on its holder")


@test(timeout=400)
def legacy_announcements_never_crowd_out_a_revocation(t):
    """A replica cut off from Redis keeps what it has to publish, up to 4096
    messages: revocations, and now the news of every legacy connection that
    opens or ends.  Agents that come and go fill that queue in minutes; a
    revocation made there after it filled was dropped, and the replica
    holding the token's session, which never lost Redis and so re-checks
    nothing, kept it up.  Legacy news is made good by the announcements
    every replica makes again when one comes back: it gives way, a revocation
    does not."""
    f = fleet(t)
    proxy = SwitchingProxy(t, f.redis.port)
    env = dict(f.env, AURORA_REDIS_URL="redis://127.0.0.1:%d/0" % proxy.port,
               AURORA_WORKERS="2", AURORA_OUTBOUND_WORKERS="1")
    cut = Replica(t, "server-cut", env, f.any.pki)
    cut.org_id, cut.user_id, cut.api_key = f.any.org_id, f.any.user_id, f.any.api_key
    tok = f.any.create_token("rep-crowd")
    cid = tok["cluster_id"]
    peer = NodePeer(f.front, tok["token"], t, "v2_agent.js", "v2-crowd")
    peer.wait(lambda e: e.get("event") == "connected", 20, "connected")
    f.owner_of(cid)
    # 13 legacy clusters of 16 connections each, opened and closed 11 times:
    # 4576 announcements for a queue of 4096.
    tokfile = os.path.join(t.tmp, "crowd-tokens.jsonl")
    with open(tokfile, "w") as fh:
        for i in range(13):
            lt = f.any.create_token("rep-crowd-legacy-%d" % i)
            for _ in range(16):
                fh.write(json.dumps({"token": lt["token"], "cluster_id": lt["cluster_id"]}) + "\n")
    mark = len(cut.server.log_text())
    proxy.upstream = free_port()  # nothing listens there: the replica cannot reconnect
    for c in list(proxy.conns):
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    wait_until(lambda: "registry: lost Redis" in cut.server.log_text()[mark:], 15, 0.05,
               "the replica to lose Redis")
    node = t.spawn("crowd-agents", [NODE, os.path.join(ROOT, "bench", "idle_agents.js"), "--url",
                                    "wss://127.0.0.1:%d/kubectl-agent" % cut.port, "--ca", cut.ca,
                                    "--tokens", tokfile, "--parallel", "16"],
                   dict(os.environ), os.path.join(t.tmp, "crowd-agents.log"),
                   os.path.join(t.tmp, "san-crowd"), stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, cwd=ROOT)
    node.tolerate_exit = True
    for _ in range(11):
        node.p.stdin.write(b"up 208\n")
        node.p.stdin.flush()
        up = json.loads(node.p.stdout.readline())
        eq(up.get("open"), 208, "legacy agents connected (%r)" % up)
        node.p.stdin.write(b"down\n")
        node.p.stdin.flush()
        json.loads(node.p.stdout.readline())
    node.p.stdin.write(b"quit\n")
    node.p.stdin.flush()
    node.p.wait(30)
    tokens = cut.get("/api/kubectl/tokens")
    tid = [x for x in tokens.json.get("tokens", []) if x.get("cluster_id") == cid][0]["id"]
    r = cut.revoke_token(tid)
    eq(r.status, 200, "revoke through the replica cut off (%r)" % r)
    heard = CloseChannel(t, f.redis.port)
    proxy.upstream = f.redis.port
    ev = peer.wait(lambda e: e.get("event") == "close", 30,
                   "the revoked token's session, on another replica, to close")
    eq(ev.get("code"), 1008, "close code")
    # The revocation, queued last, is published first: the queued legacy
    # news (all stale by now) went ahead of it and held it back for 4095
    # round trips, over 30 s on a loaded machine (found when this test
    # failed under load).
    wait_until(lambda: any(m.get("token_id") == tid for m in heard.messages), 15, 0.05,
               "the revocation on aurora:close")
    order = [("close" if m.get("token_id") == tid else "news") for m in heard.messages
             if m.get("token_id") == tid or (m.get("addr") == cut.addr and "legacy_up" in m)]
    eq(order[0], "close", "the first of the cut replica's queued messages published "
       "(%d of its legacy news heard in all)" % order.count("news"))


@test(timeout=300)
def a_thousand_simulated_agents_spread_and_registered(t):
    """SIMULATED (1000) idle agents (bench/idle_agents.js, one node process) dial
    haproxy: every one is registered by the replica that holds it, the three
    replicas share them, and all registrations go when they leave."""
    f = fleet(t)
    tokfile = os.path.join(t.tmp, "tokens.jsonl")
    mk = subprocess.run(["python3", os.path.join(ROOT, "bench", "make_tokens.py"), "--port",
                         str(f.any.port), "--ca", f.any.ca, "--key", f.any.api_key, "--count",
                         str(SIMULATED), "--prefix", "sim-", "--out", tokfile],
                        timeout=240, capture_output=True)
    eq(mk.returncode, 0, "make_tokens.py (%s)" % mk.stderr.decode()[-500:])
    with open(tokfile) as fh:
        cids = [json.loads(line)["cluster_id"] for line in fh]
    eq(len(cids), SIMULATED, "tokens made")
    node = t.spawn("idle-agents", [NODE, os.path.join(ROOT, "bench", "idle_agents.js"), "--url",
                                   f.front.ws_url(), "--ca", f.front.ca, "--tokens", tokfile,
                                   "--parallel", "32"],
                   dict(os.environ), os.path.join(t.tmp, "idle-agents.log"),
                   os.path.join(t.tmp, "san-idle"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   cwd=ROOT)
    node.tolerate_exit = True
    node.p.stdin.write(b"up %d\n" % SIMULATED)
    node.p.stdin.flush()
    up = json.loads(node.p.stdout.readline())
    eq(up.get("open"), SIMULATED, "simulated agents connected (%r)" % up)

    def registered():
        pipe = [redis_cmd(f.redis.port, "ZRANGE", "aurora:agents:" + c, 0, -1) for c in cids]
        return pipe if all(len(m) == 1 for m in pipe) else None
    members = wait_until(registered, 60, 0.2, "every simulated agent registered once")
    per = {}
    for m in members:
        addr = m[0].split(" ")[1]
        per[addr] = per.get(addr, 0) + 1
    t.note("registrations per replica: %s" % {f.by_addr(a).name: n for a, n in sorted(per.items())})
    eq(sum(per.values()), SIMULATED, "registrations")
    check(len(per) == len(f.live()), "every replica holds some of the agents (%r)" % per)
    node.p.stdin.write(b"down\n")
    node.p.stdin.flush()
    json.loads(node.p.stdout.readline())
    wait_until(lambda: all(redis_cmd(f.redis.port, "ZCARD", "aurora:agents:" + c) == 0
                           for c in cids[:50] + cids[-50:]), 60, 0.2,
               "the registrations to go with the agents")
    node.p.stdin.write(b"quit\n")
    node.p.stdin.flush()
    node.p.wait(30)


@test(timeout=60)
def single_replica_without_redis_is_unchanged(t):
    w = World(t, "server-alone")
    tok, a = w.new_connected_agent()
    res = echo(w, tok["cluster_id"], "alone")
    eq(res.status, 200, "a command on a replica without Redis (%r)" % res)
    from harness import https_request
    r = https_request(w.port, w.ctx, "POST", "/internal/forward/exec", {}, 
                      {"X-Aurora-Forward-Secret": FORWARD_SECRET}, 10)
    eq(r.status, 404, "no forward route without Redis (%r)" % r)


@test(timeout=60)
def bad_cluster_settings_refuse_to_start(t):
    for name, env, needle in (
            ("no-addr", {"AURORA_REDIS_URL": "redis://127.0.0.1:1", "AURORA_INTERNAL_FORWARD_SECRET": FORWARD_SECRET}, "AURORA_INTERNAL_ADDR"),
            ("short-secret", {"AURORA_REDIS_URL": "redis://127.0.0.1:1", "AURORA_INTERNAL_ADDR": "127.0.0.1:9", "AURORA_INTERNAL_FORWARD_SECRET": "short"}, "AURORA_INTERNAL_FORWARD_SECRET"),
            ("bad-url", {"AURORA_REDIS_URL": "http://x", "AURORA_INTERNAL_ADDR": "127.0.0.1:9", "AURORA_INTERNAL_FORWARD_SECRET": FORWARD_SECRET}, "AURORA_REDIS_URL"),
            # a name would be resolved on the peers' event loops
            ("named-addr", {"AURORA_REDIS_URL": "redis://127.0.0.1:1", "AURORA_INTERNAL_ADDR": "replica-0.example:5080", "AURORA_INTERNAL_FORWARD_SECRET": FORWARD_SECRET}, "AURORA_INTERNAL_ADDR"),
            # forwards are served on the internal listener only: an address
            # naming another port would have every forwarded command fail
            ("addr-not-internal-port", {"AURORA_REDIS_URL": "redis://127.0.0.1:1", "AURORA_INTERNAL_PORT": "5999", "AURORA_INTERNAL_ADDR": "127.0.0.1:5080", "AURORA_INTERNAL_FORWARD_SECRET": FORWARD_SECRET}, "AURORA_INTERNAL_ADDR must name AURORA_INTERNAL_PORT")):
        w = World(t, "server-" + name, extra_env=env, start=False)
        w.generation += 1
        sandir = os.path.join(w.dir, "san", "x")
        from harness import SERVER_BIN
        p = t.spawn("server-" + name, [SERVER_BIN], w.env(sandir), os.path.join(w.dir, "x.log"), sandir, cwd=w.dir)
        p.p.wait(30)
        p.tolerate_exit = True
        check(p.p.returncode != 0, "%s: the server must refuse to start" % name)
        check(needle in p.log_text(), "%s: the log names %s" % (name, needle), p.log_tail())


if __name__ == "__main__":
    main()
