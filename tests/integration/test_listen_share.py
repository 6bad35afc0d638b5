#!/usr/bin/env python3
"""One port, several processes (AURORA_LISTEN_SHARE, server/listen_share.c):
two aurora-server processes on this host bind the same AURORA_PORT with
SO_REUSEPORT, so the kernel spreads connections, and their TLS handshakes,
over both; each is a replica (one PostgreSQL, one Redis) with a listener of
its own, AURORA_INTERNAL_PORT, where the other forwards commands for the
agents it holds.

Real peers, all started by this test in its temp dir: PostgreSQL
(harness.Postgres), redis-server, build/asan/aurora-server and
build/asan/aurora-agent.  The deployment's certificate chain is made with the
openssl command (fleet_peers.deployment_pki); both processes share it and the
TLS ticket key file, as processes on one host share a data dir.

  * connections to the shared port reach both processes;
  * every cluster answers through either process's own listener, whichever
    holds its agent (the other forwards), and through the shared port;
  * a TLS session from one process resumes on the other;
  * admission holds on the shared accept: beyond AURORA_MAX_PENDING_HANDSHAKES
    a connection is closed before any TLS work, garbage is dropped, and the
    process still serves;
  * settings that would misroute forwarded commands are refused at start;
    a process started without the setting cannot take the shared port;
  * a process killed with -9: its agents come back through the survivor.
Every wait is for an event, with a deadline."""

import atexit
import json
import os
import secrets
import socket
import ssl
import subprocess
import time

from fleet_peers import Redis, deployment_pki, replica_env
from harness import (SERVER_BIN, Agent, HTTPSConn, Postgres, Resp, World, check, contains, eq, free_port,
                     https_request, main, sanitizer_reports, suite_shared, test, wait_until)

FORWARD_SECRET = secrets.token_hex(24)
# Registry and instance leases (s): a dead process is forgotten within the
# tests' 30 s waits, and a live one whose registry thread waits seconds for a
# CPU (renewal every third of it) keeps its registrations.
LEASE = 8


class Shared(World):
    """One process of the group bound to the shared port."""

    def __init__(self, t, name, env, pki, shared_port, extra=None):
        self.pki = pki
        super().__init__(t, name, extra_env=env, start=False)
        self.port = shared_port  # what agents and clients dial
        self.internal = free_port()
        self.ops = free_port()
        self.extra_env.update({
            "AURORA_LISTEN_SHARE": "1",
            "AURORA_INTERNAL_PORT": str(self.internal),
            "AURORA_INTERNAL_ADDR": "127.0.0.1:%d" % self.internal,
            "AURORA_OPS_PORT": str(self.ops),
            "AURORA_TLS_CERT": pki["crt"],
            "AURORA_TLS_KEY": pki["key"],
        })
        self.extra_env.update(extra or {})
        self.start()

    @property
    def ca(self):
        return self.pki["ca"]

    def own_answers(self, timeout=10):
        """The internal listener's answer to a forward without the secret (it
        serves the replicas' route alone): 401 while this process serves."""
        return https_request(self.internal, self.ctx, "POST", "/internal/forward/exec", {},
                             None, timeout).status

    def pinned(self, port):
        """A keep-alive connection to the shared port that the kernel gave to
        this process (ss names the process holding the accepted socket)."""
        for _ in range(64):
            c = HTTPSConn(port, self.ctx, timeout=60)
            c.connect()
            mine = c.sock.getsockname()[1]
            out = subprocess.run(["ss", "-Htnp", "state", "established",
                                  "( sport = :%d and dport = :%d )" % (port, mine)],
                                 capture_output=True, text=True, timeout=10).stdout
            if "pid=%d," % self.server.pid in out:
                return c
            c.close()
        raise AssertionError("no connection to port %d reached %s" % (port, self.name))

    def metrics(self):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.ops, timeout=10)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            eq(r.status, 200, "GET /metrics of %s" % self.name)
            return r.read().decode()
        finally:
            c.close()

    def answered(self, route):
        """Requests to route this process answered with 200."""
        n = 0
        for line in self.metrics().splitlines():
            if line.startswith("aurora_http_requests_total{") and 'route="%s"' % route in line \
                    and 'status="200"' in line:
                n += int(float(line.rsplit(" ", 1)[1]))
        return n


class Group:
    def __init__(self, t):
        self.t = t
        self.pg = Postgres()
        atexit.register(self.pg.destroy)  # after the processes stopped
        self.redis = Redis(t)
        self.port = free_port()
        self.pki = deployment_pki(os.path.join(t.tmp, "pki"))
        self.env = replica_env(self.pg, self.redis, FORWARD_SECRET, LEASE)
        # processes on one host share the ticket key (their data dir)
        self.env["AURORA_TLS_TICKET_KEY_FILE"] = os.path.join(t.tmp, "tls-ticket.key")
        self.procs = [Shared(t, "server-p%d" % i, dict(self.env), self.pki, self.port)
                      for i in range(2)]
        d = self.procs[0].bootstrap()
        for p in self.procs[1:]:
            p.org_id, p.user_id, p.api_key = d["org_id"], d["user_id"], d["api_key"]
        self.agents = {}

    def live(self):
        return [p for p in self.procs if p.server.alive()]

    def by_internal(self, addr):
        for p in self.procs:
            if "127.0.0.1:%d" % p.internal == addr:
                return p
        raise AssertionError("no process at %s" % addr)


def group(t):
    """One group for the whole program (its processes belong to the suite's T)."""
    return suite_shared("group", Group)


def echo_pinned(p, conn, cid, text):
    """echo_on over conn, a keep-alive connection to one process."""
    body = json.dumps({"args": ["get", "--raw", "/fixture/echo/%s" % text]})
    conn.request("POST", "/api/clusters/%s/kubectl" % cid, body=body,
                 headers={"Authorization": "Bearer %s" % p.api_key,
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())


def echo_on(p, port, cid, text):
    return https_request(port, p.ctx, "POST", "/api/clusters/%s/kubectl" % cid,
                         {"args": ["get", "--raw", "/fixture/echo/%s" % text]},
                         {"Authorization": "Bearer %s" % p.api_key}, 60)


def start_agents(g, n):
    p = g.procs[0]
    out = []
    for i in range(n):
        tok = p.create_token("share-%d-%s" % (i, secrets.token_hex(2)))
        a = Agent(p, tok["token"], "agent-share-%d-%s" % (i, tok["cluster_id"][8:14]),
                  owner=g.t)
        out.append(a)
    for a in out:
        a.wait_ready(40)
        g.agents[a.cluster_id] = a
    return out


def owner_addr(g, cid, timeout=20):
    def one():
        live = ["127.0.0.1:%d" % p.internal for p in g.live()]
        addrs = [a for a in g.redis.owners(cid).values() if a in live]
        return addrs[0] if len(addrs) == 1 else None
    return wait_until(one, timeout, 0.05, "cluster %s registered by one live process" % cid)


# ---------------------------------------------------------------------------
@test(timeout=120)
def connections_to_the_shared_port_reach_both_processes(t):
    g = group(t)
    route = "/api/kubectl/connections"
    before = [p.answered(route) for p in g.procs]
    n = 40
    for _ in range(n):  # a new connection each: the kernel picks a process per connection
        r = https_request(g.port, g.procs[0].ctx, "GET", route, None,
                          {"Authorization": "Bearer %s" % g.procs[0].api_key}, 30)
        eq(r.status, 200, "GET %s through the shared port" % route)
    got = [p.answered(route) - b for p, b in zip(g.procs, before)]
    eq(sum(got), n, "requests answered by the two processes together (%r)" % got)
    check(all(x >= 1 for x in got), "each process answered some of %d connections: %r" % (n, got))


@test(timeout=180)
def every_cluster_answers_through_either_process(t):
    g = group(t)
    agents = start_agents(g, 4)
    fwd = "/internal/forward/exec"
    conns = {p.name: p.pinned(g.port) for p in g.procs}  # one per process
    before = {p.name: p.answered(fwd) for p in g.procs}
    want = {p.name: 0 for p in g.procs}  # forwarded calls each owner should answer
    for a in agents:
        owner = g.by_internal(owner_addr(g, a.cluster_id))
        for p in g.procs:
            text = "c-%s-%s" % (a.cluster_id[8:14], p.name[-2:])
            r = echo_pinned(p, conns[p.name], a.cluster_id, text)
            eq(r.status, 200, "%s through %s (%r)" % (a.cluster_id, p.name, r))
            contains(r.json.get("output", ""), text, "the agent's answer")
            if p is not owner:
                want[owner.name] += 1
    # the calls to a non-owner really went through the owner's forward route.  The
    # owner counts a forward once the stream's last chunk is out, a loop turn after
    # the result event the forwarding process answers on: awaited.
    wait_until(lambda: sum(p.answered(fwd) - before[p.name] for p in g.procs) >= sum(want.values()),
               10, 0.05, "the owners to count the forwarded calls they answered")
    eq({p.name: p.answered(fwd) - before[p.name] for p in g.procs}, want,
       "forwarded commands answered by each owner")
    for c in conns.values():
        c.close()
    for a in agents:
        for i in range(3):
            r = echo_on(g.procs[0], g.port, a.cluster_id, "shared-%d" % i)
            eq(r.status, 200, "%s through the shared port (%r)" % (a.cluster_id, r))
            contains(r.json.get("output", ""), "shared-%d" % i, "the agent's answer")


@test(timeout=60)
def a_tls_session_resumes_on_the_other_process(t):
    g = group(t)
    ctx = ssl.create_default_context(cafile=g.pki["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3

    def request(port, session=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        ts = ctx.wrap_socket(s, server_hostname="127.0.0.1", session=session)
        try:
            # the internal listener serves the replicas' route alone: 401 without the secret
            ts.sendall(b"POST /internal/forward/exec HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            data = b""
            while True:  # the whole answer: the ticket arrives after the handshake
                chunk = ts.recv(65536)
                if not chunk:
                    break
                data += chunk
            check(data.startswith(b"HTTP/1.1 401"), "answer on port %d" % port, data[:200])
            return ts.session, ts.session_reused
        finally:
            ts.close()
    a, b = g.procs
    sess, reused = request(a.internal)
    check(not reused, "the first handshake is a full one")
    check(sess is not None and sess.has_ticket, "process %s issued a session ticket" % a.name)
    _, reused = request(b.internal, sess)
    check(reused, "the session from %s resumed on %s (shared ticket key)" % (a.name, b.name))


@test(timeout=90)
def admission_holds_on_the_shared_accept(t):
    g = group(t)
    port = free_port()
    p = Shared(t, "server-adm", dict(g.env), g.pki, port,
               extra={"AURORA_MAX_PENDING_HANDSHAKES": "2"})
    p.org_id, p.api_key = g.procs[0].org_id, g.procs[0].api_key
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        # Both are accepted and pending (no TLS yet): wait until a third is
        # closed at accept, which only the cap does.
        def refused():
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                s.settimeout(5)
                try:
                    return s.recv(1) == b""
                except socket.timeout:
                    return False
                except ConnectionResetError:
                    return True
            finally:
                s.close()
        wait_until(refused, 30, 0.1, "a third connection to be closed at accept")
        for s in idle:  # the two pending ones were kept: the cap closed only the excess
            s.settimeout(0.2)
            try:
                check(s.recv(1) != b"", "a pending connection is still open")
            except socket.timeout:
                pass
    finally:
        for s in idle:
            s.close()
    # Garbage where a TLS ClientHello belongs, then a truncated handshake.
    for junk in (b"\x16\x03\x01\x00\x05hello" + os.urandom(64), b"GET / HTTP/1.1\r\n\r\n",
                 b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(15)
        try:  # the server may drop it at any point: reset, or already gone
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()

    def serves():
        try:
            r2 = https_request(port, p.ctx, "GET", "/api/kubectl/connections", None,
                               {"Authorization": "Bearer %s" % p.api_key}, 10)
            return p.own_answers() == 401 and r2.status == 200
        except (OSError, ssl.SSLError):
            return False
    wait_until(serves, 30, 0.1, "the process to serve again on both listeners")
    check(p.server.alive(), "the process is still up")


@test(timeout=90)
def out_of_descriptors_the_listener_rests_instead_of_spinning(t):
    """accept() failing with EMFILE leaves the connection queued and the
    socket readable: the listener must pause (and say so), not spin the
    loop, and accept again once descriptors are free."""
    g = group(t)
    port = free_port()
    p = Shared(t, "server-fds", dict(g.env), g.pki, port)
    p.org_id, p.api_key = g.procs[0].org_id, g.procs[0].api_key
    pid = p.server.pid
    used = len(os.listdir("/proc/%d/fd" % pid))
    limit = used + 4
    r = subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, limit)],
                       capture_output=True)
    eq(r.returncode, 0, "prlimit (%s)" % r.stderr.decode())
    # Every failed accept is counted (aurora_listener_accept_failures_total)
    # and followed by a 100 ms rest, so over any stretch of time there can be
    # at most one failure per rest; a listener that spun on the readable
    # socket would fail thousands of times a second.  No failure can happen
    # before t0 or after t1.
    t0 = time.monotonic()
    idle = []
    try:
        for _ in range(12):  # more than the descriptors left
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_until(lambda: "pausing accepts" in p.server.log_text(), 30, 0.1,
                   "the listener to say it pauses")
    finally:
        for s in idle:
            s.close()
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=65536:65536"], capture_output=True)

    def serves():
        try:
            return https_request(port, p.ctx, "GET", "/api/kubectl/connections", None,
                                 {"Authorization": "Bearer %s" % p.api_key}, 10).status == 200
        except (OSError, ssl.SSLError):
            return False
    wait_until(serves, 30, 0.2, "the process to accept again")
    t1 = time.monotonic()
    failures = sum(int(float(line.rsplit(" ", 1)[1])) for line in p.metrics().splitlines()
                   if line.startswith('aurora_listener_accept_failures_total{reason="emfile"}'))
    rests = (t1 - t0) / 0.09 + 3  # the loop's cached clock may start a rest a little early
    check(1 <= failures <= rests,
          "one failed accept per 100 ms rest at most: %d failures in %.2f s (at most %d)"
          % (failures, t1 - t0, rests))


@test(timeout=90)
def settings_that_would_misroute_are_refused_at_start(t):
    g = group(t)
    w = World(t, "refused", extra_env=dict(g.env), start=False)

    def run(env_over, want):
        sandir = os.path.join(w.dir, "san", "run-%s" % secrets.token_hex(3))
        env = w.env(sandir)
        env.update(env_over)
        r = subprocess.run([SERVER_BIN], env={k: v for k, v in env.items() if v is not None},
                           cwd=w.dir, capture_output=True, timeout=60)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        check(r.returncode != 0, "the server refused to start (%s)" % want, out[-2000:])
        contains(out, want, "the reason")
        eq(sanitizer_reports(sandir), [], "no sanitizer report")
    own = free_port()
    run({"AURORA_LISTEN_SHARE": "1", "AURORA_REDIS_URL": None, "AURORA_INTERNAL_PORT": str(own)},
        "AURORA_LISTEN_SHARE needs AURORA_REDIS_URL")
    run({"AURORA_LISTEN_SHARE": "1", "AURORA_INTERNAL_PORT": str(own),
         "AURORA_INTERNAL_ADDR": "127.0.0.1:%d" % g.port},
        "AURORA_INTERNAL_ADDR must name AURORA_INTERNAL_PORT")
    run({"AURORA_LISTEN_SHARE": "1", "AURORA_INTERNAL_ADDR": "127.0.0.1:%d" % own},
        "AURORA_LISTEN_SHARE needs a fixed AURORA_PORT and this process's own AURORA_INTERNAL_PORT")
    run({"AURORA_INTERNAL_PORT": str(w.port), "AURORA_REDIS_URL": None},
        "AURORA_INTERNAL_PORT must differ from AURORA_PORT")
    # The shared port is not taken by a process that did not ask to share it.
    run({"AURORA_PORT": str(g.port), "AURORA_REDIS_URL": None, "AURORA_TLS_CERT": g.pki["crt"],
         "AURORA_TLS_KEY": g.pki["key"]}, "cannot start the listener")
    for p in g.procs:
        check(p.server.alive(), "%s still serves" % p.name)


@test(timeout=180)
def a_killed_process_s_agents_come_back_through_the_survivor(t):
    g = group(t)
    if not g.agents:
        start_agents(g, 4)
    victim = g.by_internal(owner_addr(g, next(iter(g.agents))))
    survivor = [p for p in g.procs if p is not victim][0]
    victim.kill9()
    for cid in g.agents:
        eq(owner_addr(g, cid, timeout=60), "127.0.0.1:%d" % survivor.internal,
           "cluster %s held by the survivor" % cid)

        def answers():
            r = echo_on(survivor, g.port, cid, "back")
            return r if r.status == 200 else None
        wait_until(answers, 30, 0.2, "cluster %s to answer through the shared port" % cid)


if __name__ == "__main__":
    main()
