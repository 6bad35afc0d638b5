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
import threading

from harness import AGENT_BIN, _base_env, _san_env, check, contains, main, test, wait_until

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HeadServer:
    """Listens on host (loopback) and reads each connection's request head,
    recorded in `requests`; what then is answered is answer()'s."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket()
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


def start_agent(t, port, token=None):
    d = os.path.join(t.tmp, "agent")
    env = _base_env(os.path.join(d, "home"))
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": token or "aurora_kubectl_" + secrets.token_hex(32),
        "AURORA_HEALTH_PORT": "0",
        "AURORA_RECONNECT_INTERVAL": "1",
        "AURORA_RECONNECT_MAX": "2",
        "AURORA_CLOUD_EXEC": "disabled",
    })
    env.update(_san_env(os.path.join(d, "san")))
    return t.spawn("agent", [AGENT_BIN], env, os.path.join(d, "agent.log"),
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


if __name__ == "__main__":
    main()
