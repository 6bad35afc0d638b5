#!/usr/bin/env python3
"""Connection admission and TLS session resumption (server/admission.c,
server/tls_tickets.c, agent/tls_resume.c), proved functionally, never by timing.

pending_cap_refuses_before_tls — AURORA_MAX_PENDING_HANDSHAKES=3: three raw TCP
clients hold the handshake slots (one sends nothing, one half a ClientHello, one a
whole ClientHello and then never reads the answer).  Every further connection to
the main port is closed at accept, before any TLS work: a raw client gets EOF with
no byte, a TLS client's ClientHello gets no ServerHello.  Meanwhile /health on the
operations port answers.  The three slot holders are dropped at
AURORA_HANDSHAKE_TIMEOUT, and then a real agent connects and runs a command.

accept_rate_refuses_the_excess_before_tls — AURORA_ACCEPT_RATE=1: of 20 connections
opened back to back, no more are admitted than the rate allows in the time they took;
the others are closed at accept with no byte; a TLS client is served again once the
bucket refills; the ops port is not limited.

slots_released_at_once_on_bad_input — AURORA_MAX_PENDING_HANDSHAKES=1 with a long
handshake timeout: garbage instead of a ClientHello, a truncated ClientHello whose
client goes away, and a TLS client that hangs up mid-handshake each free the one
slot when the server drops them (the next TLS client is served at once, not after
the timeout); the server keeps serving.

tls_session_resumed_across_restart — a Python TLS client's session (a TLS 1.3
ticket) is resumed (session_reused) by the same server after kill -9 and restart:
the ticket keys come from <data_dir>/tls-ticket.key (0600), not from the process.
A real agent connected before the kill reconnects with a resumed session (its log
says so).  A new key file (a rotated secret) makes the old ticket useless: a full
handshake, which works.

Real peers: build/asan/aurora-server and aurora-agent, kubectl against the kube API
fixture."""

import http.client
import os
import re
import socket
import ssl
import subprocess
import time

from harness import (SERVER_BIN, Agent, World, check, contains, eq, free_port, main, rand_tag,
                     sanitizer_reports, test, wait_until)


def client_hello(server_hostname="127.0.0.1"):
    """The bytes of a real ClientHello (Python's OpenSSL), never sent by it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    check(len(data) > 100 and data[0] == 0x16, "a TLS handshake record", len(data))
    return data


def raw(port):
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_eof(s, timeout):
    """Everything the server sends until it closes: (bytes, closed)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, OSError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def ops_health(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/health")
        return c.getresponse().status
    finally:
        c.close()


def tls_get_health(w, session=None):
    """GET /health on a fresh TLS connection: (status, session, session_reused)."""
    s = w.ctx.wrap_socket(raw(w.port), server_hostname="127.0.0.1", session=session)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data, _ = read_until_eof(s, 10)  # the ticket arrives with the answer
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
        return status, s.session, s.session_reused
    finally:
        s.close()


def first_byte_or_eof(s, timeout=30):
    """Waits for the server's first bytes or its close: (bytes, closed)."""
    s.settimeout(timeout)
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        return b"", False
    except (ConnectionResetError, OSError):
        return b"", True
    return chunk, not chunk


def refused_before_tls(port):
    """A connection closed at accept: EOF, no byte, even after a ClientHello."""
    s = raw(port)
    try:
        try:
            s.sendall(client_hello())
        except (BrokenPipeError, ConnectionResetError):
            return True  # closed even before the hello got out
        data, closed = read_until_eof(s, 10)
        check(closed, "the refused connection is closed (got %d bytes, not closed)" % len(data))
        eq(data, b"", "no ServerHello (nor any byte) on a refused connection")
        return True
    finally:
        s.close()


@test(timeout=180)
def pending_cap_refuses_before_tls(t):
    ops = free_port()
    # The slot holders must still hold their slots while the refusals are
    # checked (seconds on a loaded machine), then the test waits them out.
    w = World(t, "cap", extra_env={"AURORA_MAX_PENDING_HANDSHAKES": "3",
                                   "AURORA_HANDSHAKE_TIMEOUT": "12",
                                   "AURORA_OPS_PORT": str(ops)})
    tok = w.create_token()
    hello = client_hello()
    silent = raw(w.port)
    truncated = raw(w.port)
    truncated.sendall(hello[:len(hello) // 2])
    no_reader = raw(w.port)
    no_reader.sendall(hello)
    # the server accepts in order: these three hold the three slots now, so
    # every later connection is refused at accept until they go
    for i in range(2):
        s = raw(w.port)
        data, closed = read_until_eof(s, 10)
        s.close()
        check(closed and data == b"", "raw connection %d beyond the cap closed at once with no byte "
              "(closed=%s, %d bytes)" % (i + 4, closed, len(data)))
    refused_before_tls(w.port)
    eq(ops_health(ops), 200, "/health on the operations port while the main port refuses")
    # each refusal is logged, in a summary at most every 10 s counted from
    # the server's first admission tick (server/conn_admission.c): the first
    # line may come some 10 s after the refusals, later on a loaded machine
    wait_until(lambda: "connection admission: refused" in w.server.log_text(), 60, 0.1,
               "the refusals in the server log")
    # the slot holders are dropped at the handshake timeout; the one that
    # never reads got the server's handshake messages first
    for name, s in (("silent", silent), ("truncated hello", truncated),
                    ("never reads", no_reader)):
        data, closed = read_until_eof(s, 60)
        check(closed, "%s: dropped at the handshake timeout" % name)
        if name == "never reads":
            check(data[:1] == b"\x16", "the client that never reads was sent a ServerHello")
        else:
            eq(data, b"", "%s: nothing sent before the drop" % name)
        s.close()
    eq(w.get("/health").status, 404, "the main port serves again (its /health is on the ops port)")
    a = Agent(w, tok["token"], "agent-after-storm")
    a.wait_ready(30)
    w.wait_connection(tok["cluster_id"], timeout=20)
    r = w.kubectl(tok["cluster_id"], args=["version", "--client"])
    eq(r.status, 200, "a command through the agent that connected after the slots freed (%r)" % r)


@test(timeout=120)
def slots_released_at_once_on_bad_input(t):
    ops = free_port()
    w = World(t, "one", extra_env={"AURORA_MAX_PENDING_HANDSHAKES": "1",
                                   "AURORA_HANDSHAKE_TIMEOUT": "120",
                                   "AURORA_OPS_PORT": str(ops)})
    hello = client_hello()
    cases = [("garbage instead of a ClientHello", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4, True),
             ("a record header announcing a huge ClientHello", b"\x16\x03\x01\xff\xff" + b"\0" * 64,
              False),
             ("a truncated ClientHello, then the client leaves", hello[:40], False),
             ("a whole ClientHello, then the client leaves", hello, False)]
    for name, data, server_closes in cases:
        s = raw(w.port)
        s.sendall(data)
        if server_closes:
            got, closed = read_until_eof(s, 30)
            check(closed, "%s: the server closes the connection" % name)
            check(not got.startswith(b"\x16\x03"), "%s: no TLS handshake answer" % name)
        s.close()
        # with one slot and a two-minute timeout, only an immediate release
        # lets the next TLS client in; the server notices the close on its own
        def served():
            try:
                st, _, _ = tls_get_health(w)
                return st == 404  # /health is on the ops port
            except (ssl.SSLError, OSError):
                return False
        wait_until(served, 30, 0.1, "a TLS client served after: %s" % name)
        eq(ops_health(ops), 200, "still serving after: %s" % name)


@test(timeout=120)
def accept_rate_refuses_the_excess_before_tls(t):
    """AURORA_ACCEPT_RATE=1 (a burst of one): of 20 connections opened one
    after the other, at most one per second that passes (plus the burst) is
    admitted; the rest are closed at accept with no byte.  Then a TLS client
    is served again: the limit is a rate, not a block.  The ops port is not
    limited."""
    ops = free_port()
    w = World(t, "rate", extra_env={"AURORA_ACCEPT_RATE": "1", "AURORA_OPS_PORT": str(ops)})
    t0 = time.monotonic()
    socks = [raw(w.port) for _ in range(20)]
    elapsed = time.monotonic() - t0
    refused = admitted = 0
    for s in socks:
        s.sendall(client_hello())
        data, closed = first_byte_or_eof(s)
        if closed and data == b"":
            refused += 1
        else:
            check(data[:1] == b"\x16", "an admitted connection gets a ServerHello", data[:8])
            admitted += 1
        s.close()
    check(admitted <= 2 + int(elapsed), "no more admitted than the rate allows in %.1f s: %d"
          % (elapsed, admitted))
    eq(admitted + refused, 20, "every connection admitted or refused")
    eq(ops_health(ops), 200, "/health on the operations port is not rate limited")

    def served():
        try:
            return tls_get_health(w)[0] == 404  # /health is on the ops port
        except (ssl.SSLError, OSError):
            return False
    wait_until(served, 30, 0.2, "a TLS client served once the bucket refills")
    if refused:  # (20 connections taking over 18 s on a stalled machine: all admitted, rightly)
        # (logged at most every 10 s from the first tick: up to some 10 s late)
        wait_until(lambda: re.search(r"\+ [1-9][0-9]* \(over the accept rate\)",
                                     w.server.log_text()),
                   60, 0.1, "the rate refusals in the server log")


@test(timeout=180)
def tls_session_resumed_across_restart(t):
    w = World(t, "resume")
    keyfile = os.path.join(w.data, "tls-ticket.key")
    check(os.path.exists(keyfile), "the ticket secret file was created")
    eq(os.stat(keyfile).st_mode & 0o777, 0o600, "the ticket secret file mode")
    st, sess, reused = tls_get_health(w)
    eq(st, 200, "/health on the main port")
    check(not reused, "the first handshake is a full one")
    check(sess is not None and sess.has_ticket, "the server gave a session ticket")
    st, _, reused = tls_get_health(w, sess)
    check(reused, "the same server resumes the session")

    tok = w.create_token()
    a = Agent(w, tok["token"], "agent-resume")
    a.wait_ready(30)
    w.wait_connection(tok["cluster_id"], timeout=20)

    w.kill9()
    w.restart()
    st, _, reused = tls_get_health(w, sess)
    eq(st, 200, "/health after the restart")
    check(reused, "a restarted server resumes a ticket issued before the kill")
    # the agent's reconnection resumes its session too
    wait_until(lambda: "TLS session resumed" in a.log(), 60, 0.1,
               "the agent's reconnection with a resumed TLS session")
    w.wait_connection(tok["cluster_id"], timeout=60)
    r = w.kubectl(tok["cluster_id"], args=["version", "--client"])
    eq(r.status, 200, "a command after the resumed reconnection (%r)" % r)

    # a new secret (rotated by the operator): old tickets give full handshakes
    w.kill9()
    with open(keyfile, "w") as fh:
        fh.write(os.urandom(32).hex() + "\n")
    w.restart()
    st, sess2, reused = tls_get_health(w, sess)
    eq(st, 200, "/health with the new key file")
    check(not reused, "a ticket under the old secret is not resumed")
    st, _, reused = tls_get_health(w, sess2)
    check(reused, "the new secret's tickets are")


@test(timeout=60)
def bad_ticket_key_file_refused_at_start(t):
    w = World(t, "badkey", start=False)
    os.makedirs(w.data, exist_ok=True)
    keyfile = os.path.join(w.data, "tls-ticket.key")
    for what, content in (("not hex", "not hex\n"), ("too short", "00ff\n"),
                          ("too long", "ab" * 40 + "\n")):
        with open(keyfile, "w") as fh:
            fh.write(content)
        sandir = os.path.join(w.dir, "san", "refuse-" + rand_tag(4))
        r = subprocess.run([SERVER_BIN], env=w.env(sandir), cwd=w.dir, capture_output=True,
                           timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        eq(r.returncode, 1, "exit status with a ticket key file that is %s (%s)" % (what, err))
        contains(err, "must hold 64 hex digits", "names the problem (%s)" % what)
        eq(sanitizer_reports(sandir), [], "sanitizer clean")
    os.unlink(keyfile)
    w.start()  # a missing file is created
    w.bootstrap()
    eq(os.stat(keyfile).st_mode & 0o777, 0o600, "the new ticket secret file mode")


if __name__ == "__main__":
    main()
