#!/usr/bin/env python3
"""test_agent_legacy_server.py — the agent against a legacy-dialect server
(tests/fixtures/legacy_server.js, npm `ws`: no subprotocol, and the deployed
server's largest message, 10 MiB; a larger one closes the whole tunnel with
1009, every other command on it lost).

A legacy command's output goes back as one command_response.  The agent
once built it in several copies at once (the output, a sanitized copy, a
cJSON copy, the printed JSON, the frame), and JSON makes 6 bytes of each
control byte (\\u0001): 10 MiB of them were a 60 MiB message, ~150 MiB of
the agent's memory per command and a tunnel the server closed.  Now the
response is encoded straight into its frame, never over
AGENT_LEGACY_MAX_RESPONSE (10 MiB), and the cut is said in its error.

The agent is the real build/asan/aurora-agent with a small ASan quarantine,
so that its peak RSS (VmHWM) follows what was live.

Peers: build/asan/aurora-agent; tests/fixtures/legacy_server.js (node + `ws`);
the real kubectl as the agent's kubectl, against tests/fixtures/kube_api.py:
`logs ctl-N` prints the pod log of N bytes of 0x01, `get --raw
/fixture/hold/TAG` waits until the test asks /fixture/release/TAG, `get --raw
/fixture/echo/T` prints T."""

import json
import os
import secrets
import subprocess
import threading

from harness import (AGENT_BIN, FIXTURES, KUBECTL, NODE, NodePeer, _base_env, _san_env, check,
                     eq, free_port, kube_fixture, main, rand_tag, release_held, test)

MIB = 1024 * 1024
LEGACY_MAX = 10 * MIB
SMALL_QUARANTINE = "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
# What three 12 MiB outputs of control bytes may add to the agent's peak
# RSS.  Bounded, each command holds at most its 10 MiB of collected output
# and then a frame of at most 10 MiB: 60 MiB if all three meet.  Before, one
# such command alone held ~150 MiB while its response was built.
HWM_GROWTH_CEILING_MIB = 128


def vm_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


class LegacyServer(NodePeer):
    """legacy_server.js on its own port (no World: it is the server)."""

    def __init__(self, owner):  # pylint: disable=super-init-not-called
        self.events = []
        self.cv = threading.Condition()
        d = os.path.join(owner.tmp, "legacy-server")
        os.makedirs(d, exist_ok=True)
        self.proc = owner.spawn("legacy-server", [NODE, os.path.join(FIXTURES, "legacy_server.js")],
                                dict(os.environ), os.path.join(d, "server.log"),
                                os.path.join(d, "san"), cwd=os.path.dirname(FIXTURES),
                                stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        self.proc.tolerate_exit = True
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self.wait(lambda e: e.get("event") == "listening", 20, "listening")["port"]

    def send(self, msg):
        self.proc.p.stdin.write((json.dumps({"op": "send", "msg": msg}) + "\n").encode())
        self.proc.p.stdin.flush()

    def command(self, command_id, command, timeout=60):
        self.send({"type": "kubectl_command", "command_id": command_id, "command": command,
                   "timeout": timeout})

    def answer(self, command_id, timeout=60):
        """The answer to command_id; fails at once if the tunnel closes first."""
        e = self.wait(lambda e: (e.get("event") == "answer" and e.get("command_id") == command_id)
                      or e.get("event") in ("close", "ws_error"),
                      timeout, "the answer to %s" % command_id)
        check(e.get("event") == "answer", "the tunnel closed before %s was answered" % command_id,
              e)
        return e

    def has(self, pred):
        with self.cv:
            return any(pred(e) for e in self.events)


def start_agent(t, peer):
    d = os.path.join(t.tmp, "agent")
    env = _base_env(os.path.join(d, "home"))
    env.update({
        "NEXT_PUBLIC_WEBSOCKET_URL": "ws://127.0.0.1:%d/kubectl-agent" % peer.port,
        "AURORA_ALLOW_INSECURE_WS": "true",
        "AURORA_AGENT_TOKEN": "aurora_kubectl_" + secrets.token_hex(32),
        "AURORA_HEALTH_PORT": str(free_port()),
        "AURORA_KUBECTL_PATH": KUBECTL,
        "KUBECONFIG": kube_fixture()[0],
        "AURORA_LOG_LEVEL": "info",
    })
    env.update(_san_env(os.path.join(d, "san")))
    env["ASAN_OPTIONS"] += ":" + SMALL_QUARANTINE
    return t.spawn("agent", [AGENT_BIN], env, os.path.join(d, "agent.log"),
                   os.path.join(d, "san"), cwd=d)


@test(timeout=180)
def control_byte_output_fits_one_legacy_message(t):
    """Three commands print 12 MiB of control bytes each while another
    command waits: each answer is one message within the legacy server's
    limit, its output a prefix of what was printed and the cut said in its
    error; the tunnel stays up, the waiting command and a later one are
    answered on it, and the agent's peak RSS grew by a bounded amount."""
    peer = LegacyServer(t)
    agent = start_agent(t, peer)
    peer.wait(lambda e: e.get("event") == "register", 30, "register")
    eq(peer.wait(lambda e: e.get("event") == "connection", 1).get("protocol"), None,
       "the legacy dialect (no subprotocol)")
    base = vm_kib(agent.pid, "VmRSS")
    hold = "legacy-" + rand_tag(4)
    t.defer(lambda: release_held(hold))  # the shared fixture's request ends too
    # The agent ends a command at its "timeout": this one must outlive the
    # three 12 MiB commands, their JSON under ASan and the checks below,
    # however slow the machine (60 s was not always enough): up to the
    # test's own 180 s.  A hold waits 300 s at the fixture (its gate gave up at 120 s).
    peer.command("waiting", "get --raw /fixture/hold/%s" % hold, timeout=170)
    for i in range(3):
        peer.command("ctl-%d" % i, "logs ctl-%d" % (12 * MIB))
    peer.command("small", "get --raw /fixture/echo/small")
    small = peer.answer("small")
    eq((small.get("success"), small.get("output_head")), (True, "small"),
       "a small command beside them (%r)" % small)
    for i in range(3):
        a = peer.answer("ctl-%d" % i)
        t.note("ctl-%d: a %d-byte message, %d bytes of output, error %r"
               % (i, a["frame_bytes"], a["output_bytes"], a["error"]))
        check(a["frame_bytes"] <= LEGACY_MAX, "the message fits the legacy limit", a)
        eq(a.get("output_chars"), ["\x01"], "ctl-%d: the output is what was printed" % i)
        # 6 bytes of JSON per byte: as much as fits, not a token amount
        check(a["output_bytes"] > (LEGACY_MAX - 4096) // 6,
              "ctl-%d: as much output as the message holds" % i, a)
        eq((a.get("success"), a.get("return_code")), (True, 0), "ctl-%d: the command's result" % i)
        eq(a.get("error"), "output truncated: a response to a legacy server holds at most %d bytes"
           % LEGACY_MAX, "ctl-%d: the cut is said" % i)
    hwm = vm_kib(agent.pid, "VmHWM")
    t.note("agent VmRSS before %.1f MiB, VmHWM after %.1f MiB" % (base / 1024.0, hwm / 1024.0))
    check((hwm - base) / 1024.0 < HWM_GROWTH_CEILING_MIB,
          "the agent's peak RSS grew by %.0f MiB (ceiling %d MiB)"
          % ((hwm - base) / 1024.0, HWM_GROWTH_CEILING_MIB))
    check(not peer.has(lambda e: e.get("command_id") == "waiting"),
          "the waiting command is still held at the fixture")
    release_held(hold)
    w = peer.answer("waiting")
    eq((w.get("n"), w.get("output_head")), (1, "released %s" % hold),
       "the command in flight answered on the same connection")
    peer.command("after", "get --raw /fixture/echo/after")
    eq(peer.answer("after").get("output_head"), "after", "a command afterwards")
    check(not peer.has(lambda e: e.get("event") in ("close", "ws_error")),
          "the tunnel stayed up", [e for e in peer.events if e.get("event") != "answer"])
    check(agent.alive(), "the agent is running")


if __name__ == "__main__":
    main()
