#!/usr/bin/env python3
"""test_agent_frames.py — the WebSocket frames the real agent writes, as an
independent implementation reads them.

The agent frames and masks its own messages (agent/ws_frame.c) instead of
leaving it to libwebsockets.  Every other integration test talks to our own
server, which uses the same library: a mistake both sides share could pass
there.  Here the server end is tests/fixtures/ws_frame_peer.js on the npm `ws`
package (plain ws://, AURORA_ALLOW_INSECURE_WS; TLS is covered by every
other test): `ws` refuses unmasked client frames, and the fixture parses every
byte off the socket a second time, checking each frame against RFC 6455 5.2
(FIN, no RSV bits, MASK with a fresh key, the shortest length encoding).

Peers: build/asan/aurora-agent, node + `ws`, the real kubectl as the agent's
kubectl, against tests/fixtures/kube_api.py: `kubectl logs pattern-N` prints
the fixture's pod log, N bytes of one fixed line repeated (ws_frame_peer.js
builds the same bytes to compare).

oversized_message_stops_requests_behind_it: what the agent reads, rather
than writes.  tests/fixtures/ws_oversize_peer.js sends, in one socket write,
while a command runs, a text message over the agent's 1 MiB control limit and
two requests (exec and kubectl_command), then holds the connection open without
answering the agent's close.  The agent's kubectl is a script that records
each start in a file: nothing read after the oversized message may start,
the running command is stopped, nothing is answered on that
connection, and the next connection runs commands as usual.
oversized_message_then_junk_from_a_deaf_peer_is_dropped_as_silent: the same
peer with --deaf reads nothing once the agent's socket is full, so the close
cannot be written, and streams junk (pongs among it): the silence watchdog
must still drop it."""

import os
import secrets
import signal
import subprocess
import threading
import time

from harness import (AGENT_BIN, FIXTURES, KUBECTL, NODE, NodePeer, _base_env, _san_env, check,
                     eq, free_port, kube_fixture, main, test, wait_until)


class FramePeer(NodePeer):
    """ws_frame_peer.js (or script) on its own port (no World: it is the server)."""

    def __init__(self, owner, dialect, script="ws_frame_peer.js", args=()):  # pylint: disable=super-init-not-called
        self.events = []
        self.cv = threading.Condition()
        d = os.path.join(owner.tmp, "peer-" + dialect)
        os.makedirs(d, exist_ok=True)
        self.proc = owner.spawn("peer-" + dialect,
                                [NODE, os.path.join(FIXTURES, script), "--dialect", dialect] + list(args),
                                dict(os.environ), os.path.join(d, "peer.log"), os.path.join(d, "san"),
                                cwd=os.path.dirname(FIXTURES), stdout=subprocess.PIPE)
        self.proc.tolerate_exit = True
        threading.Thread(target=self._read, daemon=True).start()


def run_agent(t, dialect):
    peer = FramePeer(t, dialect)
    port = peer.wait(lambda e: e.get("event") == "listening", 20, "the peer listening")["port"]
    token = "aurora_kubectl_" + secrets.token_hex(32)
    d = os.path.join(t.tmp, "agent-" + dialect)
    env = _base_env(os.path.join(d, "home"))
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": token,
        "AURORA_HEALTH_PORT": str(free_port()),
        "AURORA_KUBECTL_PATH": KUBECTL,
        "KUBECONFIG": kube_fixture()[0],
        "AURORA_POLICY_MODE": "custom",
        "AURORA_POLICY_ALLOW": "logs",
        "AURORA_LOG_LEVEL": "info",
    })
    env.update(_san_env(os.path.join(d, "san")))
    t.spawn("agent-" + dialect, [AGENT_BIN], env, os.path.join(d, "agent.log"),
            os.path.join(d, "san"), cwd=d)
    peer.wait(lambda e: e.get("event") in ("done", "failed", "ws_error", "close"), 90,
              "the peer's commands to finish (or the peer to refuse a frame)")
    return peer


def frames_of(peer):
    bad = [e for e in peer.events if e.get("event") in ("failed", "ws_error", "close")]
    eq(bad, [], "no failure, `ws` error or close while the commands ran")
    f = next(e for e in peer.events if e.get("event") == "frames")
    eq(f["unmasked"], 0, "frames without a mask")
    eq(f["zero_key"], 0, "frames masked with an all-zero key")
    eq(f["repeated_key"], 0, "frames masked with the previous frame's key")
    eq(f["not_final"], 0, "fragmented frames (the agent never fragments)")
    eq(f["rsv"], 0, "frames with RSV bits")
    eq(f["non_minimal_length"], 0, "lengths not in their shortest encoding")
    return f


def commands_run(t, dialect, spoken, event, sizes):
    """The peer's commands in one dialect: (peer, their reports)."""
    peer = run_agent(t, dialect)
    reg = peer.wait(lambda e: e.get("event") == "register", 1, "register")
    eq(reg["dialect"], spoken, "dialect the agent spoke")
    runs = [e for e in peer.events if e.get("event") == event]
    eq([r["size"] for r in runs], sizes, "commands run")
    return peer, runs


@test(timeout=120)
def v2_frames_read_by_ws(t):
    peer, runs = commands_run(t, "v2", "aurora-tunnel.v2", "exec", [0, 1, 120, 121, 40000, 200000])
    for r in runs:
        check(r["exact"] and r["bytes"] == r["size"], "output of %d bytes arrived byte-exact" % r["size"], r)
        eq(r["end"].get("return_code"), 0, "return code of logs %d" % r["size"])
        eq(r["end"].get("bytes_out"), r["size"], "bytes_out of logs %d" % r["size"])
    f = frames_of(peer)
    # 1 + 4 + 120 = 125 bytes: the longest 7-bit length; 126 the shortest 16-bit
    check(f["lengths"]["l7"] > 0 and f["lengths"]["l16"] > 0, "7-bit and 16-bit lengths seen", f)
    check(f["opcodes"].get("1", 0) > 0 and f["opcodes"].get("2", 0) > 0,
          "text and binary frames seen", f)
    check(f["count"] >= 12, "every message counted as a frame", f)


@test(timeout=120)
def legacy_frames_read_by_ws(t):
    peer, runs = commands_run(t, "legacy", "legacy", "legacy", [5, 300, 70000])
    for r in runs:
        check(r["exact"] and r["success"] is True and r["return_code"] == 0,
              "answer with %d bytes of output arrived exact" % r["size"], r)
    f = frames_of(peer)
    # 70,000 bytes of output in one text frame: the 64-bit length encoding
    check(f["lengths"]["l7"] + f["lengths"]["l16"] > 0 and f["lengths"]["l64"] > 0,
          "16-bit and 64-bit lengths seen", f)
    check(f["max_len"] > 70000, "the longest frame holds the 70,000-byte answer", f)


# The agent's kubectl for the oversized-message tests: each start goes to
# kubectl-calls.log beside the script; `get flood` writes as many bytes as
# flood-bytes beside it says and logs it; `get slow` and `get flood` then
# wait for a signal and log it (a command still running when the agent
# stops it).
STARTS_LOGGING_KUBECTL = """#!/bin/sh
log="${0%/*}/kubectl-calls.log"
printf 'start %s\\n' "$*" >> "$log"
if [ "$2" = flood ]; then
  head -c "$(cat "${0%/*}/flood-bytes")" /dev/zero
  printf 'printed %s\\n' "$*" >> "$log"
fi
if [ "$2" = slow ] || [ "$2" = flood ]; then
  echo running
  trap 'printf "term %s\\n" "$*" >> "$log"; exit 143' TERM
  sleep 120 & wait $!
  printf 'end %s\\n' "$*" >> "$log"
fi
echo ok
"""


def kubectl_starts(klog):
    """The lines STARTS_LOGGING_KUBECTL wrote so far."""
    if not os.path.exists(klog):
        return []
    with open(klog) as f:
        return f.read().splitlines()


def start_oversize_agent(t, peer, settings=None):
    """The agent against ws_oversize_peer.js, its kubectl STARTS_LOGGING_KUBECTL;
    (its directory, the kubectl's log)."""
    port = peer.wait(lambda e: e.get("event") == "listening", 20, "the peer listening")["port"]
    kpath = os.path.join(t.tmp, "kubectl")
    with open(kpath, "w") as f:
        f.write(STARTS_LOGGING_KUBECTL)
    os.chmod(kpath, 0o755)
    klog = os.path.join(t.tmp, "kubectl-calls.log")
    d = os.path.join(t.tmp, "agent-oversize")
    env = _base_env(os.path.join(d, "home"))
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": "aurora_kubectl_" + secrets.token_hex(32),
        "AURORA_HEALTH_PORT": str(free_port()),
        "AURORA_KUBECTL_PATH": kpath,
        "AURORA_POLICY_MODE": "custom",
        "AURORA_POLICY_ALLOW": "get",
        "AURORA_RECONNECT_INTERVAL": "1",
        "AURORA_LOG_LEVEL": "info",
    })
    env.update(settings or {})
    env.update(_san_env(os.path.join(d, "san")))
    t.spawn("agent-oversize", [AGENT_BIN], env, os.path.join(d, "agent.log"),
            os.path.join(d, "san"), cwd=d)
    return d, klog


@test(timeout=120)
def oversized_message_stops_requests_behind_it(t):
    peer = FramePeer(t, "v2", "ws_oversize_peer.js")
    d, klog = start_oversize_agent(t, peer)
    peer.wait(lambda e: e.get("event") == "burst", 30, "the oversized message sent")
    peer.wait(lambda e: e.get("event") in ("done", "failed", "ws_error"), 60,
              "the second connection's command")
    eq([e for e in peer.events if e.get("event") in ("failed", "ws_error")], [], "peer errors")
    closes = [e for e in peer.events if e.get("event") == "agent_close" and e.get("conn") == 1]
    eq([c.get("code") for c in closes], [1009], "connection 1 closed by the agent with 1009")
    eq([e for e in peer.events if e.get("event") == "answer"], [],
       "nothing sent on connection 1 after the oversized message")
    run = next(e for e in peer.events if e.get("event") == "exec")
    eq(run["end"].get("return_code"), 0, "the second connection's command ran")
    eq(run["stdout"], "ok\n", "its output")
    eq(kubectl_starts(klog), ["start get slow", "term get slow", "start get second-connection"],
       "kubectl starts: none for the requests read after the oversized message, the "
       "running command stopped")
    # the agent's own account: a request that started at all is logged, even
    # one killed before its kubectl wrote a line
    with open(os.path.join(d, "agent.log"), errors="replace") as f:
        started = [line for line in f if " started pid=" in line]
    eq(len(started), 2, "commands the agent started (slow, then second-connection): %r" % started)


def tcp_wmem_max():
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def send_queue_to(port):
    """Bytes the established loopback connection to port holds unacknowledged
    on the connecting side (tx_queue in /proc/net/tcp), or 0."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2].endswith(":%04X" % port) and fields[3] == "01":
                return int(fields[4].split(":")[0], 16)
    return 0


@test(timeout=120)
def oversized_message_then_junk_from_a_deaf_peer_is_dropped_as_silent(t):
    # The peer stops reading while the agent's command writes to it 1 MB
    # more than a socket can hold (tcp_wmem's maximum; the rest waits in the
    # agent's queue, under its 4 MiB cap, so the agent still reads).  Once
    # the agent's socket holds at least half that maximum unsent, the peer
    # sends the oversized message, then text, binary and pong frames every
    # 50 ms.  The agent's 1009 close cannot be written, so only the silence
    # watchdog can end the connection: nothing read after the decision is
    # hearing from the server (a pong included), the silence counts from
    # the last request (exec id 1), and with heartbeats every second the
    # connection goes within 3 s and a tick; the agent reconnects and
    # serves.  (Linux may still grow the agent's send buffer while the peer
    # probes a zero window, about 1 run in 5: the close is then written and
    # the connection ends at once, which is noted.)
    peer = FramePeer(t, "v2", "ws_oversize_peer.js", ["--deaf"])
    full = tcp_wmem_max()
    with open(os.path.join(t.tmp, "flood-bytes"), "w") as f:
        f.write(str(full + 1000000))
    d, klog = start_oversize_agent(t, peer, {"AURORA_HEARTBEAT_INTERVAL": "1"})
    port = next(e for e in peer.events if e.get("event") == "listening")["port"]
    wait_until(lambda: "printed get flood" in kubectl_starts(klog), 30,
               what="the command's output written")
    wait_until(lambda: send_queue_to(port) >= full // 2, 30,
               what="the agent's socket full (tcp_wmem max %d)" % full)
    peer.proc.p.send_signal(signal.SIGUSR1)
    peer.wait(lambda e: e.get("event") == "burst", 30, "the oversized message sent")
    sent = time.monotonic()
    peer.wait(lambda e: e.get("event") == "gone" and e.get("conn") == 1, 30,
              "the agent to drop the connection that streams junk")
    took = time.monotonic() - sent
    check(took < 5, "dropped within the silence window (%.1fs)" % took)
    peer.wait(lambda e: e.get("event") in ("done", "failed", "ws_error"), 60,
              "the second connection's command")
    eq([e for e in peer.events if e.get("event") in ("failed", "ws_error")], [], "peer errors")
    run = next(e for e in peer.events if e.get("event") == "exec")
    eq(run["end"].get("return_code"), 0, "the second connection's command ran")
    eq(kubectl_starts(klog), ["start get flood", "printed get flood", "term get flood",
                              "start get second-connection"],
       "kubectl starts: none for what was read after the oversized message")
    with open(os.path.join(d, "agent.log"), errors="replace") as f:
        log = f.read()
    check("closing with 1009" in log, "the agent read the oversized message", log[-3000:])
    junk = next(e for e in peer.events if e.get("event") == "junk")
    if "nothing heard from the server for 3s; reconnecting" in log:
        check(junk["frames"] >= 10, "the peer was still writing when it was dropped", junk)
    else:
        check("connection closed; reconnecting" in log, "the connection ended", log[-3000:])
        t.note("the agent's socket took its close frame after all: the connection ended "
               "with it, not by the silence watchdog")
    check("wait for the server to read them" not in log,
          "the agent was still reading (not paused by its backlog)", log[-3000:])

if __name__ == "__main__":
    main()
