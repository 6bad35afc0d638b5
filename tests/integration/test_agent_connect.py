#!/usr/bin/env python3
"""test_agent_connect.py — the agent's connection attempts against a server
that does not answer (docs/security.md, the agent's tunnel liveness).

A server that accepts the TCP connection (a hung process behind an ingress or
a load balancer, an overloaded one) and never answers the WebSocket upgrade
made libwebsockets give the attempt up after its own timeout with
LWS_CALLBACK_CLOSED_CLIENT_HTTP, a callback the agent did not handle: the
attempt was never counted as failed, no reconnect was scheduled and the
agent stayed disconnected for good (its /ready 503 until a restart), still
holding a pointer to the freed connection, which a SIGTERM then used.

The server here is a few lines of Python on a loopback port (plain ws://):
it holds the first connection open without a word, then answers the next
one's upgrade; the agent is the real build/asan/aurora-agent.  A second
test has it answer the upgrade with a redirect to another host, which the
agent followed with its token until a review found it."""

import base64
import hashlib
import os
import secrets
import socket
import ssl
import subprocess
import threading

from harness import AGENT_BIN, _base_env, _san_env, check, contains, main, test, wait_until

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HeadServer:
    """Listens on host (loopback) and reads each connection's request head,
    recorded in `requests`; what then is answered is answer()'s."""

    def __init__(self, host="127.0.0.1", tls=None):
        self.tls = tls  # an ssl.SSLContext: the connections speak TLS
        self.handshakes_failed = 0
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                n = len(self.conns)
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        head = b""
        if self.tls:
            try:
                c = self.tls.wrap_socket(c, server_side=True)
            except OSError:  # the client refused the certificate, or hung up
                with self.lock:
                    self.handshakes_failed += 1
                return
            with self.lock:
                self.conns.append(c)
        try:
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    return
                head += d
            with self.lock:
                self.requests.append(head)
            self.answer(c, n, head)
        except OSError:
            return

    def answer(self, c, n, head):
        """Connection number n (from 1) sent head; nothing answered here."""

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()


class MuteThenAnswering(HeadServer):
    """The first `mute` connections are held open and never answered; the
    ones after get a 101 (no subprotocol: the legacy dialect) and nothing
    more."""

    def __init__(self, mute=1):
        self.mute = mute
        self.upgraded = 0
        super().__init__()

    def answer(self, c, n, head):
        if n <= self.mute:
            return  # held open, never answered
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        with self.lock:
            self.upgraded += 1

    def count(self):
        with self.lock:
            return len(self.conns)


class Redirecting(HeadServer):
    """Every request is answered, with `location`, by a 302 to it; without,
    never answered."""

    def __init__(self, host, location=None):
        self.location = location
        super().__init__(host)

    def answer(self, c, n, head):
        if self.location:
            c.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + self.location.encode() +
                      b"\r\nContent-Length: 0\r\n\r\n")

    def count(self):
        with self.lock:
            return len(self.requests)


def start_agent(t, port, token=None, url=None, extra=None, name="agent"):
    d = os.path.join(t.tmp, name)
    env = _base_env(os.path.join(d, "home"))
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": url or "ws://127.0.0.1:%d/kubectl-agent" % port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": token or "aurora_kubectl_" + secrets.token_hex(32),
        "AURORA_HEALTH_PORT": "0",
        "AURORA_RECONNECT_INTERVAL": "1",
        "AURORA_RECONNECT_MAX": "2",
        "AURORA_CLOUD_EXEC": "disabled",
    })
    env.update(extra or {})
    env.update(_san_env(os.path.join(d, "san")))
    return t.spawn(name, [AGENT_BIN], env, os.path.join(d, "agent.log"),
                   os.path.join(d, "san"), cwd=d)


@test(timeout=90)
def an_unanswered_handshake_is_retried(t):
    """The first attempt's upgrade is never answered: libwebsockets gives it
    up (5 s in 4.1), the agent logs it and tries again with its backoff, and
    the next attempt connects.  The agent then stops cleanly on SIGTERM
    (the harness checks the exit status and that ASan reported nothing)."""
    srv = MuteThenAnswering(mute=1)
    t.defer(srv.close)
    agent = start_agent(t, srv.port)
    wait_until(lambda: len(srv.requests) >= 1, 30, 0.05, "the agent's first upgrade request")
    contains(srv.requests[0].decode("latin-1").lower(), "upgrade: websocket",
             "the first request is the WebSocket upgrade")
    # before the fix: no second attempt, ever
    wait_until(lambda: srv.count() >= 2, 45, 0.1,
               "the agent to try again after its unanswered attempt")
    contains(agent.log_text(), "did not answer the WebSocket handshake",
             "the agent says why the attempt failed")
    wait_until(lambda: "WebSocket established" in agent.log_text(), 30, 0.1,
               "the next attempt to connect")
    # (the server thread counts its 101 after sending it: the agent may log first)
    wait_until(lambda: srv.upgraded >= 1, 10, 0.05, "the server to count its 101")
    check(agent.alive(), "the agent is running")


@test(timeout=90)
def a_redirected_handshake_is_not_followed(t):
    """Whatever stands in front of the tunnel endpoint (an ingress rule, a
    single sign-on gate, a compromised server) answers the upgrade with a
    302 to another host: libwebsockets followed it and sent that host the
    handshake again, the agent's token in Authorization (found in review).
    The redirect is now a failed attempt, retried at the configured URL;
    the other host hears nothing."""
    elsewhere = Redirecting("127.0.0.2")
    t.defer(elsewhere.close)
    front = Redirecting("127.0.0.1", "ws://127.0.0.2:%d/kubectl-agent" % elsewhere.port)
    t.defer(front.close)
    token = "aurora_kubectl_" + secrets.token_hex(32)
    agent = start_agent(t, front.port, token)
    # two attempts at the configured URL: the first one's redirect is done with
    # (followed before the fix: the other host got the token at once)
    wait_until(lambda: front.count() >= 2, 45, 0.05, "a second attempt at the configured URL")
    with elsewhere.lock:
        seen = list(elsewhere.requests)
    check(not seen, "the redirect target got the agent's request%s" %
          (" with its token" if any(token.encode() in r for r in seen) else ""), seen[:1])
    contains(agent.log_text(), "ws upgrade response not 101", "the agent says the attempt failed")
    check(token not in agent.log_text(), "the token in the agent's log")
    check(agent.alive(), "the agent is running")


def host_header(head):
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "host":
            return value.strip()
    return None


def tls_server(t, name, san, host="::1"):
    """A TLS HeadServer on host (::1) whose self-signed certificate (also the
    agent's AURORA_CA_FILE: trusted) names `san` only; the SNI each client
    sent is recorded in `sni` (None: no SNI)."""
    d = os.path.join(t.tmp, name)
    os.makedirs(d, exist_ok=True)
    key, crt = os.path.join(d, "server.key"), os.path.join(d, "server.crt")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=aurora-test", "-addext",
                        "subjectAltName=%s" % san], capture_output=True)
    check(r.returncode == 0, "openssl req failed", r.stderr.decode())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    sni = []
    ctx.sni_callback = lambda sock, server_name, c: sni.append(server_name)
    srv = HeadServer(host, tls=ctx)
    srv.sni = sni
    srv.ca = crt
    t.defer(srv.close)
    return srv


@test(timeout=60)
def an_ipv6_literal_host_header_has_brackets_and_port(t):
    """wss://[::1]:8443/…: RFC 3986/9110 want Host: [::1]:8443.  The agent
    sent the bare address, "::1", without brackets and without the port (it
    left the port out whenever the host held a ':'): an ingress or a proxy
    routing on Host got a name it cannot parse."""
    srv = HeadServer("::1")
    t.defer(srv.close)
    start_agent(t, srv.port, url="ws://[::1]:%d/kubectl-agent" % srv.port)
    wait_until(lambda: len(srv.requests) >= 1, 30, 0.05, "the agent's upgrade request")
    got = host_header(srv.requests[0])
    check(got == "[::1]:%d" % srv.port, "Host header of an IPv6-literal URL", got)


@test(timeout=90)
def an_ipv6_literal_server_certificate_must_name_the_address(t):
    """wss://[::1]:port/…: the server certificate must carry the IP address
    ::1 (libwebsockets takes the certificate check's name from the Host
    header, cut at its first ':': for "::1" an empty name, which switched
    the check off; for "[::1]:port" it would be "[").  A certificate the CA
    signed for another address is refused before any request is sent; one
    naming ::1 is accepted, and no SNI is sent (RFC 6066: no IP literals)."""
    wrong = tls_server(t, "wrong", "IP:127.0.0.1,DNS:aurora-test")
    agent = start_agent(t, wrong.port, url="wss://[::1]:%d/kubectl-agent" % wrong.port,
                        extra={"AURORA_CA_FILE": wrong.ca})
    wait_until(lambda: wrong.handshakes_failed >= 2 or wrong.requests, 45, 0.05,
               "two refused TLS handshakes")
    contains(agent.log_text(), "IP address mismatch", "the agent says why it refused the certificate")
    check(not wrong.requests, "the agent sent its upgrade (and token) to a server whose "
          "certificate does not name ::1", wrong.requests[:1])
    check(agent.alive(), "the agent is running")
    problems = agent.stop()
    check(not problems, "the first agent's exit", problems)

    right = tls_server(t, "right", "IP:::1")
    start_agent(t, right.port, url="wss://[::1]:%d/kubectl-agent" % right.port,
                extra={"AURORA_CA_FILE": right.ca}, name="agent2")
    wait_until(lambda: len(right.requests) >= 1, 30, 0.05,
               "the agent's upgrade over TLS to a certificate naming ::1")
    check(host_header(right.requests[0]) == "[::1]:%d" % right.port, "Host header over TLS",
          host_header(right.requests[0]))
    check(right.sni and all(s is None for s in right.sni), "SNI sent for an IP literal",
          right.sni)


@test(timeout=60)
def a_named_server_keeps_its_sni_and_name_check(t):
    """The IPv6-literal handling leaves a named server as it was: SNI and
    the certificate check carry the name, without the port; the Host header
    carries name and port."""
    srv = tls_server(t, "named", "DNS:localhost", host="127.0.0.1")
    start_agent(t, srv.port, url="wss://localhost:%d/kubectl-agent" % srv.port,
                extra={"AURORA_CA_FILE": srv.ca})
    wait_until(lambda: len(srv.requests) >= 1, 30, 0.05, "the agent's upgrade over TLS")
    check(host_header(srv.requests[0]) == "localhost:%d" % srv.port, "Host header",
          host_header(srv.requests[0]))
    check(srv.sni[:1] == ["localhost"], "SNI of a named server", srv.sni)


@test(timeout=60)
def an_ipv6_literal_is_bracketed_in_the_proxy_connect(t):
    """Through an egress proxy, libwebsockets writes the CONNECT line from
    the server's host as the agent gives it: "CONNECT ::1:8443", which no
    proxy can split into address and port; "[::1]:8443" is the authority
    RFC 9110 asks for.  The proxy here records the CONNECT and answers
    nothing."""
    px = HeadServer("127.0.0.1")
    t.defer(px.close)
    start_agent(t, px.port, url="wss://[::1]:8443/kubectl-agent",
                extra={"HTTPS_PROXY": "http://127.0.0.1:%d" % px.port,
                       "NO_PROXY": "", "no_proxy": ""})
    wait_until(lambda: len(px.requests) >= 1, 30, 0.05, "the agent's CONNECT")
    line = px.requests[0].decode("latin-1").split("\r\n")[0]
    check(line == "CONNECT [::1]:8443 HTTP/1.1", "the CONNECT line", line)


if __name__ == "__main__":
    main()
