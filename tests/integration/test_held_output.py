#!/usr/bin/env python3
"""test_held_output.py — what the server holds for a caller that does not read.

A command's output reaches its caller either as one JSON answer or as a
Server-Sent Event stream.  Either way the server holds bytes until the
caller's socket takes them, and a caller can simply stop reading:

- a legacy agent (no flow control) sends a command's whole output in one
  message; streamed, it is held raw and encoded into the stream only as the
  caller takes it (never all of it at once: JSON escapes make up to 6 bytes
  of one), and what is held is charged to the output budgets
  (AURORA_EXEC_ORG_OUTPUT_BUDGET / AURORA_EXEC_OUTPUT_BUDGET): past them the
  stream ends with an `error` event, 429 ORG_OUTPUT_BUDGET_EXCEEDED;
- a JSON answer (escaped, plus output_base64: several times the output) is
  charged at its size until the caller has it, not only while it is captured;
  while unread answers fill the budget, new output is refused;
- a caller that takes nothing of an answer for AURORA_HTTP_SEND_TIMEOUT_S is
  disconnected, and everything held for it is given back; a stream with
  nothing to send (a quiet command) is never timed.

The callers here never read: raw TLS sockets with a 4 KiB receive buffer.
Every wait is for an event (an agent's heartbeat_ack after its answer, an
audit row, the usage route), never a sleep, except where time must pass for
nothing to happen (the quiet stream).

Peers: build/asan/aurora-server; tests/fixtures/legacy_agent.js (answers sent
from a file, exactly); tests/fixtures/v2_scripted_agent.js (emits exact bytes,
ends when told)."""

import base64
import json
import os
import socket
import sqlite3
import threading
import time

from harness import (NodePeer, RssSampler, check, contains, eq, main, parse_sse_stream,
                     rand_tag, scripted_bytes, suite_world, test, vm_rss_kib, wait_until)

KIB = 1024
MIB = 1024 * 1024
# How long a caller that takes nothing keeps its connection (and its held
# output).  The tests start three more commands after the first caller stops
# reading and expect them refused while it still holds the budget: 3 s was
# too short for that on a loaded machine.
SEND_TIMEOUT_S = 8

LIMITS = {
    "AURORA_EXEC_OUTPUT_BUDGET": str(8 * MIB),
    "AURORA_EXEC_ORG_OUTPUT_BUDGET": str(6 * MIB),
    "AURORA_EXEC_MAX_OUTPUT_JSON": str(6 * MIB),
    "AURORA_EXEC_DEFAULT_MAX_OUTPUT": str(6 * MIB),
    "AURORA_HTTP_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
    "AURORA_EXEC_DEADLINE_GRACE_S": "3",
}
# ASan keeps freed memory in a quarantine: a small one makes VmRSS follow what is live.
SMALL_QUARANTINE = "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"


def world():
    return suite_world(extra_env=LIMITS, asan_extra=SMALL_QUARANTINE)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
gen = scripted_bytes  # what the scripted agent emits for `emit n seed`


class ScriptedAgent(NodePeer):
    def __init__(self, w, token, t):
        super().__init__(w, token, t, "v2_scripted_agent.js", "scripted-agent",
                         ["--max-concurrent", "64"], stdin=True)

    def exec_of(self, seed, timeout=20):
        return self.wait(lambda e: e.get("event") == "exec" and seed in (e.get("argv") or []),
                         timeout, "the exec of %s" % seed)

    def end(self, seed, rc=0):
        self.proc.p.stdin.write((json.dumps({"op": "end", "id": self.exec_of(seed)["id"],
                                             "rc": rc}) + "\n").encode())
        self.proc.p.stdin.flush()


class Legacy:
    """legacy_agent.js that answers nothing by itself: the test sends each
    command_response from a file, then a heartbeat whose ack says the server
    has processed the answer (one connection, read in order)."""

    def __init__(self, t, w):
        tok = w.create_token("legacy-%s" % rand_tag(3))
        self.cid = tok["cluster_id"]
        self.t = t
        self.a = w.legacy_agent(tok["token"], ["--ignore-commands", "--heartbeat", "0"])
        self.a.wait_event("connected", 20)
        w.wait_connection(self.cid)
        self.seen = set()

    def next_command(self, timeout=20):
        e = self.a.wait_event(lambda e: e.get("event") == "ignored" and
                              e.get("command_id") not in self.seen, timeout, "a kubectl_command")
        self.seen.add(e["command_id"])
        return e["command_id"]

    def _acks(self):
        return sum(1 for e in list(self.a.events) if e.get("event") == "heartbeat_ack")

    def op(self, **op):
        self.a.proc.p.stdin.write((json.dumps(op) + "\n").encode())
        self.a.proc.p.stdin.flush()

    def answer(self, command_id, output, error=None):
        path = os.path.join(self.t.tmp, "resp-%s.json" % command_id)
        resp = {"type": "command_response", "command_id": command_id, "success": True,
                "return_code": 0, "output": output}
        if error is not None:
            resp["error"] = error
        with open(path, "w") as f:
            json.dump(resp, f)
        n0 = self._acks()
        self.op(op="send_file", path=path)
        self.op(op="heartbeat")
        wait_until(lambda: self._acks() > n0, 60, 0.02, "the server to process the answer")


def server_usage(w):
    r = w.get("/api/exec/usage", auth=False, headers={
        "X-Internal-Secret": w.secret, "X-Org-ID": w.org_id, "X-User-ID": w.user_id})
    eq(r.status, 200, "GET /api/exec/usage as the trusted backend (%r)" % r)
    return r.json


def held_bytes(w):
    return server_usage(w)["buffered_output"]["bytes"]


def wait_idle(w, what, timeout=30):
    def idle():
        u = server_usage(w)
        s = u["server"]
        return u if (s["buffered_output_bytes"] == 0 and s["commands"] == 0
                     and u["buffered_output"]["bytes"] == 0) else None
    return wait_until(idle, timeout, 0.05, "everything held given back after %s" % what)


class Sleeper:
    """A caller that sends one request and never reads: a raw TLS socket with
    a 4 KiB receive buffer, so that the server's writes back up at once."""

    def __init__(self, w, cid, body, sse):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", w.port))
        self.s = w.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        data = json.dumps(body)
        self.s.sendall(("POST /api/clusters/%s/kubectl HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                        "%sContent-Length: %d\r\n\r\n%s"
                        % (cid, w.api_key, "Accept: text/event-stream\r\n" if sse else "",
                           len(data), data)).encode())

    def drain_to_close(self, timeout=30):
        """Reads what the server sent until it closes the connection; the bytes."""
        self.s.settimeout(timeout)
        got = bytearray()
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                got += d
        except (ConnectionResetError, BrokenPipeError, OSError) as e:
            if isinstance(e, socket.timeout):
                raise AssertionError("the server kept the connection of a caller that never "
                                     "read open for %ds (got %d bytes)" % (timeout, len(got)))
        finally:
            self.s.close()
        return bytes(got)


    def read_answer(self, timeout=30):
        """Reads one complete fixed-length answer (the caller reads at last)."""
        self.s.settimeout(timeout)
        got = b""
        while b"\r\n\r\n" not in got:
            d = self.s.recv(65536)
            check(d, "the connection closed before the answer's headers", got)
            got += d
        head, _, body = got.partition(b"\r\n\r\n")
        clen = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")]
        check(clen, "a Content-Length", head)
        while len(body) < clen[0]:
            d = self.s.recv(65536)
            check(d, "the connection closed inside the answer", head)
            body += d
        self.s.close()
        return head, body


def audit_outcomes(w, needle):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True,
                          timeout=10)
    try:
        return [r[0] for r in con.execute("SELECT outcome FROM audit_log WHERE argv_json LIKE ?",
                                          ("%" + needle + "%",)).fetchall()]
    finally:
        con.close()


def final_outcomes(w, needle, n=1):
    def done():
        rs = audit_outcomes(w, needle)
        return rs if len(rs) == n and "started" not in rs else None
    return wait_until(done, 20, 0.05, "%d final audit row(s) of %s" % (n, needle))


class Stream:
    def __init__(self):
        self.out = bytearray()
        self.events = 0
        self.result = None
        self.errors = []

    def on_event(self, ev, data):
        d = json.loads(data)
        if ev == "output":
            self.out += base64.b64decode(d["base64"]) if "base64" in d else d["text"].encode()
            self.events += 1
        elif ev == "result":
            self.result = d
        elif ev == "error":
            self.errors.append(d)
        return False


def legacy_stream(w, lg, name, output):
    """One SSE caller who reads, answered with `output` by the legacy agent;
    the number of output bytes it received."""
    st = Stream()
    th = threading.Thread(target=lambda: w.kubectl_sse(
        lg.cid, {"args": ["get", name], "max_output": 8 * MIB}, st.on_event), daemon=True)
    th.start()
    lg.answer(lg.next_command(), output)
    th.join(60)
    return len(st.out)


# ---------------------------------------------------------------------------
# SSE and a legacy agent
# ---------------------------------------------------------------------------
@test(timeout=120)
def legacy_output_streams_exactly_as_the_caller_reads(t):
    """Held raw, fed to the stream in pieces: byte-exact, UTF-8 kept whole
    across pieces, and nothing left held afterwards."""
    w = world()
    lg = Legacy(t, w)
    # "a" then 2-byte characters: every 32 KiB piece boundary cuts one in two
    text = "a" + "\u00e9\x01\"\\" * (512 * KIB // 5)
    st = Stream()
    done = {}

    def run():
        done["status"] = w.kubectl_sse(lg.cid, {"args": ["get", "pods"], "max_output": 4 * MIB},
                                       st.on_event)[0]
    th = threading.Thread(target=run, daemon=True)
    th.start()
    lg.answer(lg.next_command(), text)
    th.join(60)
    check(not th.is_alive(), "the stream ended")
    eq(done.get("status"), 200, "SSE status")
    check(not st.errors, "no error event", st.errors)
    check(st.result is not None, "a result event ends the stream")
    eq(bytes(st.out), text.encode("utf-8"), "the output, byte for byte")
    check(st.events > 1, "a legacy answer goes out in several events (%d)" % st.events)
    eq(st.result.get("bytes"), len(text.encode("utf-8")), "result.bytes")
    wait_idle(w, "a legacy stream read to its end")


@test(timeout=120)
def legacy_error_text_is_bounded(t):
    """A legacy agent's `error` is its command's whole stderr, up to
    AURORA_LEGACY_MAX_FRAME, and no max_output or budget counted it: 512 KiB
    of 0x01 became a 3 MiB result event, more than a stream may hold, so the
    stream was closed and the caller never got its result (and the event sat
    uncounted until then).  It is cut to 256 KiB at a character boundary,
    marked truncated, in both modes."""
    w = world()
    lg = Legacy(t, w)
    err = "\u00e9" + "\x01" * (512 * KIB)
    st = Stream()
    done = {}

    def run():
        done["status"] = w.kubectl_sse(lg.cid, {"args": ["get", "sse-err"]}, st.on_event)[0]
    th = threading.Thread(target=run, daemon=True)
    th.start()
    lg.answer(lg.next_command(), "out", error=err)
    th.join(60)
    check(not th.is_alive(), "the stream ended")
    eq(done.get("status"), 200, "SSE status")
    check(not st.errors, "no error event", st.errors)
    check(st.result is not None, "a result event ends the stream (got %d output bytes)"
          % len(st.out))
    e = st.result.get("error", "")
    check(0 < len(e.encode("utf-8")) <= 256 * KIB, "the error cut to 256 KiB (%d bytes)"
          % len(e.encode("utf-8")))
    check(err.startswith(e), "the error's head, whole characters")
    eq(st.result.get("truncated"), True, "result.truncated")
    eq(st.result.get("error_code"), "OUTPUT_LIMIT", "result.error_code")
    eq(bytes(st.out), b"out", "the output")
    # JSON mode, cut inside the 2-byte character: the cut keeps it whole or drops it
    err2 = "a" + "\u00e9" * (256 * KIB)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault(
        "r", w.kubectl(lg.cid, ["get", "json-err"])), daemon=True)
    th.start()
    lg.answer(lg.next_command(), "out", error=err2)
    th.join(60)
    r = res.get("r")
    check(r is not None and r.status == 200, "the JSON answer", r)
    e = r.json["error"]
    check(0 < len(e.encode("utf-8")) <= 256 * KIB and err2.startswith(e),
          "the error cut to 256 KiB of whole characters (%d bytes)" % len(e.encode("utf-8")))
    eq(r.json["truncated"], True, "truncated")
    eq(r.json["output"], "out", "output")
    wait_idle(w, "two answers with long errors")


@test(timeout=180)
def legacy_output_for_a_caller_that_never_reads_is_bounded(t):
    """The review's case: each legacy answer is 4 MiB of 0x01 (24 MiB once
    JSON-escaped), the callers never read.  Before: all of it escaped into the
    callers' stream buffers, uncounted, for as long as they stayed connected."""
    w = world()
    lg = Legacy(t, w)
    n = 4 * MIB
    output = "\x01" * n
    # warm-up (first-use allocations, one legacy answer's transient copies)
    eq(legacy_stream(w, lg, "warm", output), n, "warm-up bytes")
    wait_idle(w, "the warm-up")

    base = vm_rss_kib(w.server.pid)
    sleepers, held = [], []
    with RssSampler(w.server.pid) as rss:
        for i in range(4):
            sl = Sleeper(w, lg.cid, {"args": ["get", "s%d" % i], "max_output": 8 * MIB,
                                     "timeout": 120}, sse=True)
            sleepers.append(sl)
            lg.answer(lg.next_command(), output)
            held.append(held_bytes(w))
        after = vm_rss_kib(w.server.pid)
    grow = (after - base) / 1024.0
    t.note("4 never-reading SSE callers of 4 MiB legacy answers: VmRSS +%.1f MiB (peak +%.1f); "
           "held per usage after each: %s" % (grow, rss.growth_mib, held))
    # what is held is counted: the first answer's raw bytes (less what its
    # socket took), then no more than the organization's budget
    check(held[0] >= n - MIB, "the held legacy answer is charged (%d bytes)" % held[0])
    check(max(held) <= 6 * MIB, "held output stays within the org budget: %s" % held)
    # Without the bound the callers' stream buffers alone held 4 x 24 MiB.
    # Bounded: the held raw answer (4 MiB), four streams of a few hundred KiB
    # and one answer's transient copies (its 24 MiB message, parsed).
    check(grow < 48, "server VmRSS grew %.1f MiB for 4 never-reading callers" % grow)

    # the callers are dropped once they have taken nothing for the send
    # timeout: everything held is given back, and the connections are closed
    wait_idle(w, "the never-reading callers' send timeout", timeout=SEND_TIMEOUT_S + 30)
    bodies = [sl.drain_to_close() for sl in sleepers]
    refused = [b for b in bodies if b"ORG_OUTPUT_BUDGET_EXCEEDED" in b]
    check(len(refused) >= 1, "a stream whose held output does not fit ends with an error event")
    contains(refused[0].decode("utf-8", "replace"), "\"http_status\":429",
             "the error event carries the status")
    contains(refused[0].decode("utf-8", "replace"), "AURORA_EXEC_ORG_OUTPUT_BUDGET",
             "the error names the setting")
    # and everything works again
    eq(legacy_stream(w, lg, "again", output), n, "a legacy stream after the callers were dropped")
    wait_idle(w, "the last stream")


# ---------------------------------------------------------------------------
# JSON answers
# ---------------------------------------------------------------------------
@test(timeout=180)
def json_answer_for_a_caller_that_never_reads_stays_charged(t):
    """The review's case: a finished answer is several times its output
    (escapes, output_base64) and used to be counted by nothing once built."""
    w = world()
    tok = w.create_token("scripted-%s" % rand_tag(3))
    a = ScriptedAgent(w, tok["token"], t)
    w.wait_connection(tok["cluster_id"])
    cid = tok["cluster_id"]
    n = 3 * MIB  # an answer of ~12 MiB: more than the kernel's socket buffers take

    warm = "warm-" + rand_tag(4)
    r = w.kubectl(cid, args=["emit", str(n), warm, "end"])
    eq(r.status, 200, "warm-up (%r)" % r)
    wait_idle(w, "the warm-up")

    base = vm_rss_kib(w.server.pid)
    sleepers, statuses = [], []
    for i in range(4):
        seed = "sleep%d-%s" % (i, rand_tag(4))
        sleepers.append(Sleeper(w, cid, {"args": ["emit", str(n), seed, "end"], "timeout": 120},
                                sse=False))
        statuses.append(final_outcomes(w, seed)[0])
        if i == 0:
            held = held_bytes(w)
            # charged at its size: more than the output it was built from
            check(held > n, "the unread answer is charged (%d bytes for %d of output)"
                  % (held, n))
    after = vm_rss_kib(w.server.pid)
    grow = (after - base) / 1024.0
    t.note("4 never-reading JSON callers of 3 MiB outputs: VmRSS +%.1f MiB; outcomes %s"
           % (grow, statuses))
    eq(statuses[0], "ok", "the first command")
    # while the unread answer fills the budget, more output is refused
    eq(statuses[1:], ["org_output_budget"] * 3, "the commands after it")
    check(grow < 40, "server VmRSS grew %.1f MiB for 4 never-reading callers" % grow)

    wait_idle(w, "the never-reading callers' send timeout", timeout=SEND_TIMEOUT_S + 30)
    # the held one was disconnected; the refused ones got a clear answer
    sleepers[0].drain_to_close()
    for sl in sleepers[1:]:
        head, body = sl.read_answer()
        contains(head.decode(), " 429 ", "a refused caller's status")
        eq(json.loads(body).get("error_code"), "ORG_OUTPUT_BUDGET_EXCEEDED",
           "a refused caller's error_code")
    # nothing stays charged: a command of the same size fits again
    seed = "again-" + rand_tag(4)
    r = w.kubectl(cid, args=["emit", str(n), seed, "end"])
    eq(r.status, 200, "the same command afterwards (%r)" % r)
    eq(base64.b64decode(r.json["output_base64"]), gen(n, seed), "its output")
    wait_idle(w, "a JSON answer read at once")


# ---------------------------------------------------------------------------
# the send timeout applies only while something waits for the caller
# ---------------------------------------------------------------------------
@test(timeout=90)
def a_quiet_stream_is_not_dropped(t):
    w = world()
    tok = w.create_token("scripted-%s" % rand_tag(3))
    a = ScriptedAgent(w, tok["token"], t)
    w.wait_connection(tok["cluster_id"])
    seed = "quiet-" + rand_tag(4)
    st = Stream()
    state = {"ended_at": None}

    def on_event(ev, data):
        st.on_event(ev, data)
        # the first output event (a character the 1000 bytes end inside of
        # may wait for the end), once
        if ev == "output" and not state.get("armed"):
            state["armed"] = True
            # The stream now stays silent.  For a send timeout to pass, twice,
            # without sleeping: a caller that never reads, started after this
            # stream's last write, is dropped by that timeout (its command is
            # cancelled at the agent); once two such callers have been dropped
            # one after the other, this stream has been quiet for longer than
            # two timeouts and must still be open.
            def later():
                try:
                    wait_two_timeouts()
                    state["ended_at"] = time.monotonic()
                except Exception as e:  # noqa: BLE001 — reported by the main thread
                    state["error"] = e
                finally:
                    a.end(seed)

            def wait_two_timeouts():
                for i in range(2):
                    ref = "sleeper%d-%s" % (i, rand_tag(4))
                    sleeper = Sleeper(w, tok["cluster_id"],
                                      {"args": ["emit", str(2 * MIB), ref, "hold"]}, sse=True)
                    state.setdefault("sleepers", []).append(sleeper)  # open until dropped
                    rid = a.exec_of(ref)["id"]
                    a.wait(lambda e: e.get("event") == "cancel" and e.get("id") == rid,
                           SEND_TIMEOUT_S + 60, "the never-reading caller %d to be dropped" % i)
            threading.Thread(target=later, daemon=True).start()
        return False
    # 120 s, not the default 60: the quiet time is two send timeouts one
    # after the other, plus the never-reading callers' start-ups
    status, _ = w.kubectl_sse(tok["cluster_id"],
                              {"args": ["emit", "1000", seed, "hold"], "timeout": 120}, on_event)
    eq(status, 200, "SSE status")
    for sleeper in state.get("sleepers", []):
        sleeper.s.close()
    if state.get("error"):
        raise state["error"]
    check(state["ended_at"] is not None, "the stream lasted until two never-reading callers "
          "had been dropped by the send timeout, and then the command ended")
    check(not st.errors, "no error event", st.errors)
    check(st.result is not None and st.result.get("return_code") == 0,
          "the result after the quiet time", st.result)
    eq(bytes(st.out), gen(1000, seed), "the output")


if __name__ == "__main__":
    main()
