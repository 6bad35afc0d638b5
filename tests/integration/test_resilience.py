#!/usr/bin/env python3
"""Resilience: a stalled database, an expiring token, a peer that ignores close frames.

stalled_postgres_bounded_waits_and_recovery — the server runs on a real PostgreSQL
(started here from /usr/lib/postgresql/<v>/bin on a unix socket in a temp dir) with
AURORA_DB_STATEMENT_TIMEOUT_MS / AURORA_DB_CONNECT_TIMEOUT_MS of 1 s.  Every postgres
process is SIGSTOPped: the sockets stay open and the kernel keeps accepting
connections, so nothing fails by itself.  While API calls wait on the database (six
times as many as there are store workers, beside the server's own background
sweeps), /health answers 200 within 1 s (liveness is the event loop, not the store),
/ready answers 503 {"store":"unavailable"}, each API call answers 503
STORE_UNAVAILABLE within two timeouts plus a margin (not one timeout per call queued
ahead of it: once a call found the database silent, one call at a time tries it and
the others fail at once), an unknown route still gets its 404 and the connected
agent's tunnel stays up.  After SIGCONT /ready, the API and commands recover (waited
for with deadlines), the log says when the database answered again and
aurora_store_fast_failures_total counts the calls that did not wait.

expired_token_ends_its_live_session — an agent token that expires while its agent is
connected: the session is closed with 1008 `Token expired` when the token expires
(not before), commands then get 503 AGENT_NOT_CONNECTED and the agent's reconnect is
refused.  The API sets expiry in whole days, so the test sets the token's stored
expires_at (Unix seconds, the column the server reads at authentication) a few
seconds ahead, directly in the SQLite file, before the agent connects: the same
value the API would have written, only sooner.

a_log_reader_that_stops_reading_stalls_nothing — the server's and the agent's stderr
are pipes of one page (F_SETPIPE_SZ 4096) that the test does not read, as a container
runtime or a `| less` that stopped reading would leave them.  Requests are made until
the server's /metrics counts dropped log lines (before the fix the first full pipe
stopped the event loop in write(2) and the request timed out); then, with both pipes
still full, /health, an API call, the agent's /ready and kubectl commands through the
tunnel are answered, and the agent counts its own dropped lines.  Once the test reads
the server's pipe again, the next lines come through, led by one saying how many were
dropped, with the same number /metrics shows.

revoked_session_of_a_peer_ignoring_close_is_dropped — a raw WebSocket client (stdlib
only) that reads the server's close frame and neither answers it nor closes its end:
after a revocation the server drops the TCP connection within its close grace (2 s)
plus a margin, and the connection shows disconnected.

Real peers: build/asan/aurora-server and aurora-agent, PostgreSQL, kubectl against
the kube API fixture."""

import base64
import fcntl
import glob
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import Postgres, check, contains, eq, https_request, main, test, wait_until

# Long enough that the checks made while the first calls wait on the stopped
# database (is /health answered meanwhile?) fit inside that wait, also on a
# loaded machine.
DB_TIMEOUT_MS = 3000
# What a loaded 2-core machine may add to a bounded wait (scheduling, ASan).
MARGIN_S = 4.0


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def get_within(w, path, limit=10):
    """GET path (no credentials) with a socket timeout; (response, seconds)."""
    try:
        return timed(https_request, w.port, w.ctx, "GET", path, timeout=limit)
    except (socket.timeout, TimeoutError):
        raise AssertionError("GET %s did not answer within %ds" % (path, limit))


# ---------------------------------------------------------------------------
# issue 8, item 6
# ---------------------------------------------------------------------------
@test(timeout=240)
def stalled_postgres_bounded_waits_and_recovery(t):
    pg = Postgres()
    t.defer(pg.destroy)
    w = t.world(extra_env={"DATABASE_URL": pg.url,
                           "AURORA_DB_STATEMENT_TIMEOUT_MS": str(DB_TIMEOUT_MS),
                           "AURORA_DB_CONNECT_TIMEOUT_MS": str(DB_TIMEOUT_MS)})
    tok, agent = w.new_connected_agent(cluster_name="stall")
    cid = tok["cluster_id"]
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=before"])
    eq(r.status, 200, "command before the stall (%r)" % r)
    limit = DB_TIMEOUT_MS / 1000.0

    pg.freeze()
    # Six times as many API calls as store workers (4): queued one deadline
    # each, the last would wait six.
    calls = 24
    results = []

    def api_call(i):
        path = "/api/kubectl/connections" if i % 2 else "/api/clusters/%s/kubectl" % cid
        body = None if i % 2 else {"args": ["get", "--raw", "/fixture/echo?text=x"]}
        results.append(timed(w.request, "GET" if i % 2 else "POST", path, body, timeout=120))

    threads = [threading.Thread(target=api_call, args=(i,)) for i in range(calls)]
    for th in threads:
        th.start()
    def answered_meanwhile(path, status, what):
        """Liveness is the loop: `path` is answered while the store workers
        wait on the database.  Proof either way: within a second, or in less
        than a statement deadline and asked before any API call came back
        (each waits a whole deadline first)."""
        # Counted before asking: a probe asked before any call came back
        # but slowed by the calls' TLS handshakes on a loaded machine while
        # the first calls came back was held to the 1 s.
        done = len(results)
        r, took = get_within(w, path)
        eq(r.status, status, "%s while the database is stopped (%r)" % (what, r))
        check(took < 1.0 or (done == 0 and took < limit),
              "%s must not wait for the database (took %.2fs, asked after %d API calls had come "
              "back)" % (what, took, done))

    try:
        for _ in range(5):
            answered_meanwhile("/health", 200, "/health")
        answered_meanwhile("/no/such/route", 404, "an unknown route")
    except BaseException:
        pg.thaw()  # so that calls stuck on the database end and the failure is reported
        raise
    finally:
        for th in threads:
            th.join(120)
    eq(len(results), calls, "every API call returned")
    # A call may first wait for its worker (busy with a statement that began
    # before the database was known silent), then on the database: one
    # statement deadline plus the client's grace, or the one reconnect that
    # tries it while the other calls fail at once.
    for r, took in results:
        eq(r.status, 503, "API call while the database is stopped (%r)" % r)
        eq(r.error_code, "STORE_UNAVAILABLE", "error_code (%r)" % r)
        check(took < 2 * (limit + 0.5) + MARGIN_S, "an API call must fail within the database "
              "timeout, not hang (took %.1fs)" % took)
    t.note("%d API calls on a stopped database: 503 after %.1f-%.1fs (timeout %.1fs)"
           % (calls, min(x[1] for x in results), max(x[1] for x in results), limit))
    contains(w.server.log_text(), "state store: the database does not answer", "server log")
    # One more, alone: its worker's connection is gone, so this is the reconnect path.
    r, took = timed(w.get, "/api/kubectl/connections")
    eq(r.status, 503, "API call on a reconnect (%r)" % r)
    check(took < limit + 0.5 + MARGIN_S, "a reconnect must give up within the connect timeout "
          "(took %.1fs)" % took)

    # Readiness reports the store (a result may be reused for 1 s).
    def not_ready():
        r, took = timed(w.get, "/ready", auth=False)
        check(took < limit + 0.5 + MARGIN_S, "/ready must answer within the database timeout "
              "(took %.1fs)" % took)
        return r if r.status == 503 else None
    r = wait_until(not_ready, 2 * (limit + 1.5) + MARGIN_S, 0.1, "/ready to answer 503")
    eq(r.get("store"), "unavailable", "/ready body (%r)" % r)
    eq(r.error_code, "STORE_UNAVAILABLE", "/ready error_code")
    r, took = get_within(w, "/health")
    eq(r.status, 200, "/health after the API calls (%r)" % r)
    check(took < limit, "/health within the database timeout (took %.2fs)" % took)
    eq(agent.health("/ready")[0], 200, "the agent's tunnel stays up during the stall")
    check(w.server.alive(), "the server survives the stall")

    pg.thaw()
    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(w.get("/ready", auth=False)),
                   20, 0.2, "/ready to answer 200 again")
    eq(r.get("store"), "ok", "/ready body once the database runs (%r)" % r)
    wait_until(lambda: w.get("/api/kubectl/connections").status == 200, 20, 0.2,
               "the API to answer again")
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=after"])
    eq(r.status, 200, "command after the stall (%r)" % r)
    eq(r.json.get("output"), "after", "output after the stall")
    contains(w.server.log_text(), "readiness: the state store does not answer", "server log")
    contains(w.server.log_text(), "state store: the database answers again after", "server log")
    m = w.get("/metrics", auth=False)
    eq(m.status, 200, "/metrics")
    fast = [ln for ln in m.body.decode().splitlines()
            if ln.startswith("aurora_store_fast_failures_total ")]
    check(fast and float(fast[0].split()[1]) > 0,
          "calls failed fast while the database was stopped (%r)" % fast)
    # Stop the server while the database runs (its last bookkeeping needs it).
    problems = agent.proc.stop() + w.server.stop()
    check(not problems, "clean exit", *problems)


# ---------------------------------------------------------------------------
# issue 8, item 7
# ---------------------------------------------------------------------------
@test(timeout=120)
def expired_token_ends_its_live_session(t):
    w = t.world()
    tok = w.create_token("expiring")
    cid = tok["cluster_id"]
    # Time for the agent to start and connect and for one command, also on a
    # loaded machine, before the token expires.
    expires_at = int(time.time()) + 15
    db = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    with db:
        n = db.execute("UPDATE agent_tokens SET expires_at = ? WHERE id = ?",
                       (expires_at, tok["token_id"])).rowcount
    db.close()
    eq(n, 1, "the token's expiry was set")
    agent = w.start_agent(tok["token"], extra_env={"AURORA_RECONNECT_INTERVAL": "1",
                                                   "AURORA_RECONNECT_MAX": "1"})
    agent.proc.tolerate_exit = True
    w.wait_connection(cid)
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=still-valid"])
    eq(r.status, 200, "command before the expiry (%r)" % r)
    check(time.time() < expires_at, "the test is too slow: the token expired before the check")

    def gone():
        c = w.connection(cid)
        return c and c.get("status") != "active"
    wait_until(gone, expires_at - time.time() + 3 + MARGIN_S, 0.05,
               "the session to end when its token expires")
    ended = time.time()
    check(ended >= expires_at - 0.05, "the session ended %.2fs before the token expired"
          % (expires_at - ended))
    t.note("session ended %.2fs after the token's expiry" % (ended - expires_at))
    wait_until(lambda: "1008 Token expired" in agent.log(), 20, 0.05,
               "the agent to log the close reason `Token expired`")
    contains(w.server.log_text(), "expired, closing the session", "server log")
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=after"])
    eq(r.status, 503, "command after the expiry (%r)" % r)
    eq(r.error_code, "AGENT_NOT_CONNECTED", "error_code")
    # The agent retries (every second here) and is refused each time.
    wait_until(lambda: "agent connection rejected: Token expired" in w.server.log_text(),
               10 + MARGIN_S, 0.1, "the agent's reconnect to be refused")
    eq(w.connection(cid).get("connected"), False, "the connection stays disconnected")


# ---------------------------------------------------------------------------
# a peer that never reads: the log reader
# ---------------------------------------------------------------------------
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python 3.10+ has; spelled out for clarity


def one_page_pipe(t):
    """A pipe holding one page (the kernel's smallest): a few log lines fill it."""
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    t.defer(lambda: os.close(r))
    return r, w


def counter(text, name):
    vals = [float(ln.split()[1]) for ln in text.splitlines() if ln.startswith(name + " ")]
    check(len(vals) == 1, "one %s sample in /metrics" % name, text[:2000])
    return vals[0]


@test(timeout=180)
def a_log_reader_that_stops_reading_stalls_nothing(t):
    srv_r, srv_w = one_page_pipe(t)
    w = t.world(start=False)
    w.stderr = srv_w
    w.start()
    w.bootstrap()
    os.close(srv_w)  # the server holds the only writer

    def dropped():
        m = w.get("/metrics", auth=False, timeout=10)
        eq(m.status, 200, "/metrics while stderr is full")
        return counter(m.body.decode(), "aurora_log_lines_dropped_total")
    # Each request writes an access line; a page holds a few dozen of them.
    for i in range(400):
        r, took = get_within(w, "/no-such-route-%d" % i)
        eq(r.status, 404, "request %d while nothing reads the log" % i)
        if i % 20 == 19 and dropped() > 0:
            break
    check(dropped() > 0, "the server counted dropped log lines")

    agent_r, agent_w = one_page_pipe(t)
    tok = w.create_token("log-stall")
    cid = tok["cluster_id"]
    agent = w.start_agent(tok["token"], stderr=agent_w)
    os.close(agent_w)
    w.wait_connection(cid)
    # Two lines per command (started, ended): a page is full after a few dozen.
    agent_dropped = 0
    for i in range(60):
        r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=stalled-log-%d" % i],
                      http_timeout=30)
        eq(r.status, 200, "command %d with both logs full (%r)" % (i, r))
        eq(r.json.get("output"), "stalled-log-%d" % i, "command %d output" % i)
        if i % 10 == 9:
            st, body = agent.health("/metrics")
            eq(st, 200, "agent /metrics while its stderr is full")
            agent_dropped = counter(body.decode(), "aurora_agent_log_lines_dropped_total")
            if agent_dropped > 0:
                break
    check(agent_dropped > 0, "the agent counted dropped log lines")
    eq(agent.health("/ready")[0], 200, "agent /ready with its stderr full")
    r, took = get_within(w, "/health")
    eq(r.status, 200, "/health with the log full")
    eq(w.get("/api/kubectl/tokens").status, 200, "an API call with the log full")

    # Reading again: the gap is reported where it is, then lines flow.
    before = dropped()  # all dropped before the pipe is read again
    seen = bytearray()
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                b = os.read(srv_r, 65536)
            except OSError:
                return
            if not b:
                return
            seen.extend(b)
    th = threading.Thread(target=drain, daemon=True)
    th.start()
    t.defer(stop.set)
    tag = "after-the-stall"
    wait_until(lambda: w.get("/no-such-route", auth=False, headers={"X-Request-ID": tag},
                             timeout=10).status == 404
               and tag.encode() in seen, 20, 0.2,
               "a request's access line once the log is read again")
    total = dropped()
    text = seen.decode("utf-8", "replace")
    # A line goes out only after the report of every line dropped before it:
    # the reports ahead of the tagged line account for all dropped until then.
    # (A short report may slip into the last page's free bytes while stalled.)
    upto = text[:text.index(tag)]
    reports = [int(ln.split("dropped=")[1].split()[0]) for ln in upto.splitlines()
               if "log line(s) dropped: stderr was not being read" in ln]
    check(reports, "a line reports the dropped lines", text[-2000:])
    check(before <= sum(reports) <= total,
          "the reports ahead of the next line (%r) cover the %d lines dropped before the pipe "
          "was read, and are within /metrics' total (%d)" % (reports, before, total))
    t.note("server dropped %d line(s) while stalled; agent %d" % (total, agent_dropped))


# ---------------------------------------------------------------------------
# issue 8, item 12
# ---------------------------------------------------------------------------
class RawWS:
    """A WebSocket client over TLS written against RFC 6455 directly, so that it can
    misbehave: it reads the server's close frame and never answers it."""

    def __init__(self, port, cafile, token, cluster_id, timeout=10):
        ctx = ssl.create_default_context(cafile=cafile)
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.s = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /kubectl-agent HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n"
                        "X-Cluster-ID: %s\r\n\r\n" % (port, key, token, cluster_id)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 101"), "WebSocket handshake refused", head[:300])

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("the server ended the TLS stream")
        self.buf += d

    def recv_frame(self):
        """(opcode, payload)."""
        while len(self.buf) < 2:
            self._fill()
        n, off = self.buf[1] & 0x7f, 2
        if n >= 126:
            off = 4 if n == 126 else 10
            while len(self.buf) < off:
                self._fill()
            n = struct.unpack(">H" if off == 4 else ">Q", self.buf[2:off])[0]
        while len(self.buf) < off + n:
            self._fill()
        op, payload = self.buf[0] & 0x0f, self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return op, payload

    def send_text(self, text):
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        hdr = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + struct.pack(">H", n)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def wait_tcp_closed(self, timeout):
        """Reads the raw TCP stream (under TLS) until the server closes it; returns
        when it did, or raises after timeout.  Never sends anything."""
        raw = socket.socket(fileno=os.dup(self.s.fileno()))
        try:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the server kept the TCP connection open for %.1fs" % timeout)
                raw.settimeout(left)
                try:
                    if not raw.recv(65536):
                        return  # FIN
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return
        finally:
            raw.close()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


@test(timeout=90)
def revoked_session_of_a_peer_ignoring_close_is_dropped(t):
    w = t.world()
    tok = w.create_token("ignores-close")
    cid = tok["cluster_id"]
    ws = RawWS(w.port, w.ca, tok["token"], cid)
    t.defer(ws.close)
    op, payload = ws.recv_frame()
    eq(op, 1, "first frame is text")
    contains(payload.decode(), '"connected"', "first frame")
    ws.send_text('{"type":"register","cluster_id":"%s","agent_version":"raw-ignores-close"}' % cid)
    w.wait_connection(cid)

    eq(w.revoke_token(tok["token_id"]).status, 200, "revoke")
    t0 = time.monotonic()
    while True:  # the close frame arrives; it is read and ignored
        op, payload = ws.recv_frame()
        if op == 8:
            break
    eq(struct.unpack(">H", payload[:2])[0], 1008, "close code")
    eq(payload[2:].decode(), "Token revoked", "close reason")
    grace = 2.0
    ws.wait_tcp_closed(grace + MARGIN_S + 1)
    took = time.monotonic() - t0
    t.note("server dropped the TCP connection %.2fs after the close frame (grace %.0fs)"
           % (took, grace))
    check(took < grace + MARGIN_S, "dropped within the grace plus a margin (took %.2fs)" % took)
    wait_until(lambda: (w.connection(cid) or {}).get("connected") is False, 2 + MARGIN_S,
               0.05, "the connection to show disconnected")
    contains(w.server.log_text(), "no close handshake", "server log")
    eq(w.get("/health", auth=False).status, 200, "the server still serves")


if __name__ == "__main__":
    main()
