#!/usr/bin/env python3
"""test_agent_backlog.py — a server that stops reading cannot grow the agent's
memory (docs/security.md, the agent's outgoing queue).

Every answer the agent queues is caused by a message the server sent: a
refusal, a command's output, a legacy response.  A hostile (or wedged)
server that floods requests and never reads the answers once made the agent
hold them all: 734 MB after 20 s of refused execs, 2 GB after 15 s of legacy
commands printing 1 MiB each.  Now the agent's queue is bounded (agent/outq.h):
legacy responses wait for room as v2 output does, and while the queue is
backlogged the agent reads no more messages, so the server meets TCP's
backpressure.

The server here is tests/fixtures/deaf_server.js (npm `ws`, plain ws://),
which stops reading after `register` and floods; the agent is the real
build/asan/aurora-agent with a small ASan quarantine, so that VmRSS follows
what is live.  Each test checks the agent's peak VmRSS against a fixed
ceiling while the flood is held at the socket, then that it still serves:
on the same connection once the server reads again, or, for a server that
never does, on the next connection after the silence watchdog dropped it.

Peers: build/asan/aurora-agent; tests/fixtures/deaf_server.js (node + `ws`);
the real kubectl as the agent's kubectl, against tests/fixtures/kube_api.py:
the legacy flood's `logs pattern-1048576` prints 1 MiB (the fixture's pod
log), the probes' `get --raw /fixture/echo/probe` prints "probe"."""

import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request

from harness import (AGENT_BIN, FIXTURES, KUBECTL, NODE, NodePeer, RssSampler, _base_env,
                     _san_env, check, eq, free_port, kube_fixture, main, test, vm_rss_kib,
                     wait_until)

# ASan keeps freed memory in a quarantine: a small one keeps VmRSS close to
# what is live (test_big_output.py does the same).
SMALL_QUARANTINE = "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
# What the flood may add to the agent's VmRSS.  Bounded, the agent holds at
# most ~5 MiB of queue plus, for the legacy dialect, max_concurrent (16)
# responses of 1 MiB, each twice while it is encoded; ASan's redzones and
# quarantine come on top.  Unbounded, it grew by hundreds of MiB in seconds.
GROWTH_CEILING_MIB = 96
# Without the fix the agent reads everything: a v2 flood of this much would
# have made it hold ~2 GB of refusals; with it, it pauses after ~1,000.
V2_FLOOD_BYTES = 24 << 20
PROBE_ID = 1000000001
PROBE_ARGV = ["get", "--raw", "/fixture/echo/probe"]  # prints "probe"
LEGACY_COMMAND = "logs pattern-1048576"  # what deaf_server.js floods with: 1 MiB


class DeafServer(NodePeer):
    """deaf_server.js on its own port (no World: it is the server)."""

    def __init__(self, owner, dialect, extra=()):  # pylint: disable=super-init-not-called
        self.events = []
        self.cv = threading.Condition()
        d = os.path.join(owner.tmp, "deaf-" + dialect)
        os.makedirs(d, exist_ok=True)
        self.proc = owner.spawn("deaf-" + dialect,
                                [NODE, os.path.join(FIXTURES, "deaf_server.js"), "--dialect", dialect]
                                + list(extra),
                                dict(os.environ), os.path.join(d, "deaf.log"), os.path.join(d, "san"),
                                cwd=os.path.dirname(FIXTURES), stdout=subprocess.PIPE,
                                stdin=subprocess.PIPE)
        self.proc.tolerate_exit = True
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self.wait(lambda e: e.get("event") == "listening", 20, "listening")["port"]

    def cmd(self, **op):
        self.proc.p.stdin.write((json.dumps(op) + "\n").encode())
        self.proc.p.stdin.flush()

    def report(self):
        """A fresh report of the current connection (what it sent, what the
        kernel took, what it received)."""
        with self.cv:
            n = len(self.events)
        self.cmd(op="report")
        with self.cv:
            while True:
                for e in self.events[n:]:
                    if e.get("event") == "report":
                        return e
                if not self.cv.wait(20):
                    raise AssertionError("no report from the deaf server")


def start_agent(t, peer, dialect, extra_env=None):
    token = "aurora_kubectl_" + secrets.token_hex(32)
    d = os.path.join(t.tmp, "agent-" + dialect)
    env = _base_env(os.path.join(d, "home"))
    health_port = free_port()
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % peer.port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": token,
        "AURORA_HEALTH_PORT": str(health_port),
        "AURORA_KUBECTL_PATH": KUBECTL,
        "KUBECONFIG": kube_fixture()[0],
        "AURORA_LOG_LEVEL": "info",
    })
    env.update(extra_env or {})
    env.update(_san_env(os.path.join(d, "san")))
    env["ASAN_OPTIONS"] += ":" + SMALL_QUARANTINE
    p = t.spawn("agent-" + dialect, [AGENT_BIN], env, os.path.join(d, "agent.log"),
                os.path.join(d, "san"), cwd=d)
    p.health_port = health_port
    return p


def reading(agent):
    """The agent's own account on /metrics: (reading_paused, reading_pauses_total)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % agent.health_port, timeout=10) as r:
        text = r.read().decode()
    got = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("aurora_agent_reading_paused", "aurora_agent_reading_pauses_total"):
            got[name] = int(value)
    return got.get("aurora_agent_reading_paused"), got.get("aurora_agent_reading_pauses_total")


PAUSED = "no more requests are read until they drain"


def flood_until_paused(t, peer, agent, rss, give_up):
    """Waits for the agent to stop reading (its log says so), or for give_up()
    (the flood went through: the agent kept reading) — then checks which."""
    wait_until(lambda: PAUSED in agent.log_text() or give_up(), 90, 0.1,
               "the agent to stop reading the flood")
    rep = peer.report()
    t.note("%d requests sent, %.1f MiB of them taken by the kernel"
           % (rep["execs"], rep["written"] / 1048576.0))
    check_rss(t, rss, "flood")
    check(PAUSED in agent.log_text(), "the agent stops reading a server that does not read "
          "(%.1f MiB of requests went through)" % (rep["written"] / 1048576.0), rep)
    return rep


def check_rss(t, rss, what):
    t.note("%s: agent VmRSS baseline %.1f MiB, peak %.1f MiB"
           % (what, rss.baseline / 1024.0, rss.peak / 1024.0))
    check(rss.growth_mib < GROWTH_CEILING_MIB,
          "%s: the agent's VmRSS grew by %.0f MiB (ceiling %d MiB)"
          % (what, rss.growth_mib, GROWTH_CEILING_MIB))


def refusal_lines(agent):
    return sum(1 for line in agent.log_text().splitlines() if "refused" in line)


def refusal_line_bound(t0):
    """The agent logs at most 10 refusal lines a second (agent/tunnel.c:
    refusal_logged); counted from before the flood, plus the window it
    started in."""
    return 10 * (int(time.monotonic() - t0) + 2)


@test(timeout=240)
def v2_flood_from_a_deaf_server_is_held_at_the_socket(t):
    """Exec requests refused by policy, the answers never read: the agent
    stops reading at its control lane's cap, the flood stops in TCP, memory
    stays flat; once the server reads again every exec has its exec_end and
    the same connection runs commands."""
    peer = DeafServer(t, "v2")
    agent = start_agent(t, peer, "v2")
    peer.wait(lambda e: e.get("event") == "register", 30, "register")
    t0 = time.monotonic()
    with RssSampler(agent.pid) as rss:
        flood_until_paused(t, peer, agent, rss,
                           lambda: peer.report()["written"] >= V2_FLOOD_BYTES)
        # the flood goes on until every buffer between them is full: the
        # server's writes are held by TCP, not by the agent's memory
        wait_until(lambda: peer.report()["buffered"] >= 1 << 20, 60, 0.1,
                   "the server's flood to be held back by TCP")
        check_rss(t, rss, "flood held")
        # Reading pauses and resumes while the kernel's buffers still take the
        # answers; once they are full it stays paused.
        wait_until(lambda: reading(agent)[0] == 1, 60, 0.1,
                   "/metrics: aurora_agent_reading_paused while the server does not read")
        pauses = reading(agent)[1]
        check(pauses >= 1, "/metrics: the pause counted (%r)" % pauses)

        peer.cmd(op="stop")
        peer.cmd(op="read")
        peer.cmd(op="send", msg={"type": "exec", "id": PROBE_ID, "argv": PROBE_ARGV})
        ans = peer.wait(lambda e: e.get("event") == "answer", 180, "the probe's exec_end")["msg"]
    eq(ans.get("return_code"), 0, "the probe ran (%r)" % ans)
    eq(ans.get("bytes_out"), len("probe"), "the probe's output")
    rep = peer.report()
    eq(rep["n"], 1, "served on the same connection")
    eq(rep["exec_ends"], rep["execs"] + 1, "an exec_end for every exec sent (and the probe)")
    check_rss(t, rss, "flood held, then drained")
    wait_until(lambda: reading(agent)[0] == 0, 60, 0.1,
               "/metrics: reading again once the server read the backlog")
    check(reading(agent)[1] >= pauses, "/metrics: the counter never goes back")
    # the refusals are logged at a bounded rate, not one line each
    lines = refusal_lines(agent)
    check(lines <= refusal_line_bound(t0),
          "%d refusal lines logged for %d refusals" % (lines, rep["execs"]))
    check(rep["execs"] > refusal_line_bound(t0), "the flood outnumbers the lines allowed")
    check(agent.alive(), "the agent is running")


@test(timeout=180)
def a_deaf_server_that_never_drains_is_dropped_as_silent(t):
    """The same flood, never read: the paused connection is dropped by the
    silence watchdog (3 heartbeat intervals with nothing read or taken), the
    agent reconnects and serves the next connection."""
    peer = DeafServer(t, "v2")
    agent = start_agent(t, peer, "v2-silent", {"AURORA_HEARTBEAT_INTERVAL": "2"})
    peer.wait(lambda e: e.get("event") == "register", 30, "register")
    with RssSampler(agent.pid) as rss:
        flood_until_paused(t, peer, agent, rss,
                           lambda: peer.report()["written"] >= V2_FLOOD_BYTES)
        wait_until(lambda: "nothing heard from the server for 6s" in agent.log_text(), 60, 0.1,
                   "the agent to drop the paused connection")
        peer.wait(lambda e: e.get("event") == "register" and e.get("n") == 2, 30,
                  "the agent to register on a new connection")
        check_rss(t, rss, "flood held until the connection was dropped")
    peer.cmd(op="send", msg={"type": "exec", "id": PROBE_ID, "argv": PROBE_ARGV})
    ans = peer.wait(lambda e: e.get("event") == "answer", 60, "the probe's exec_end")
    paused, pauses = reading(agent)
    eq(paused, 0, "/metrics: the new connection reads (its probe was answered)")
    check(pauses >= 1, "/metrics: the dropped connection's pause counted (%r)" % pauses)
    eq(ans.get("n"), 2, "answered on the new connection")
    eq(ans["msg"].get("return_code"), 0, "the probe ran (%r)" % ans)
    check(agent.alive(), "the agent is running")


@test(timeout=240)
def legacy_flood_from_a_deaf_server_is_held_at_the_socket(t):
    """kubectl_command after kubectl_command, each printing 1 MiB, the
    responses never read: at most max_concurrent responses wait in the agent,
    the rest are refused busy, reading pauses, memory stays bounded; once
    the server reads again every command has exactly one response and a new
    one runs."""
    peer = DeafServer(t, "legacy")
    agent = start_agent(t, peer, "legacy")
    peer.wait(lambda e: e.get("event") == "register", 30, "register")
    t0 = time.monotonic()
    with RssSampler(agent.pid) as rss:
        def grown():
            cur = vm_rss_kib(agent.pid) or 0
            return (cur - rss.baseline) / 1024.0 >= 2 * GROWTH_CEILING_MIB
        rep = flood_until_paused(t, peer, agent, rss, grown)
        # the flood goes on, into the socket the agent no longer reads
        sent = rep["execs"]
        wait_until(lambda: peer.report()["execs"] >= sent + 1000, 60, 0.1,
                   "1000 more commands to be sent")
        check_rss(t, rss, "flood held")

        peer.cmd(op="stop")
        peer.cmd(op="read")
        total = peer.report()["execs"]
        wait_until(lambda: peer.report()["responses"] >= total, 180, 0.2,
                   "a response to each of the %d commands" % total)
        peer.cmd(op="send", msg={"type": "kubectl_command", "command_id": "probe-1",
                                 "command": LEGACY_COMMAND, "timeout": 60})
        ans = peer.wait(lambda e: e.get("event") == "answer", 60, "the probe's response")["msg"]
    eq((ans.get("success"), ans.get("return_code")), (True, 0), "the probe ran (%r)" % ans)
    eq(ans.get("output_len"), 1 << 20, "the probe's whole output")
    rep = peer.report()
    eq(rep["n"], 1, "served on the same connection")
    eq(rep["responses"], total + 1, "exactly one response per command")
    check_rss(t, rss, "flood held, then drained")
    lines = refusal_lines(agent)
    check(lines <= refusal_line_bound(t0), "%d refusal lines logged for %d commands" % (lines, total))
    check(agent.alive(), "the agent is running")


if __name__ == "__main__":
    main()
