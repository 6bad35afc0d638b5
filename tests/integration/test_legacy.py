#!/usr/bin/env python3
"""Legacy-dialect tests: tests/fixtures/legacy_agent.js (the deployed Python agent's
message set, written with the independent `ws` client, no subprotocol) must be
served by the new server: connected → register → heartbeat/heartbeat_ack →
kubectl_command/command_response round trips → revoke closes with 1008
"Token revoked"."""

import json
import re
import time

from harness import (check, contains, eq, kube_api, main, rand_tag, release_held, suite_world,
                     test, wait_until)

STATE = {}


# An agent that never answers ends at its command's timeout + this grace
# (default 15 s); no command here relies on the agent's own timeout.
GRACE_S = 3


def legacy_world():
    return suite_world(extra_env={"AURORA_EXEC_DEADLINE_GRACE_S": str(GRACE_S)})


def legacy():
    """The suite server plus one connected legacy agent (owned by the suite)."""
    w = legacy_world()
    if "agent" not in STATE:
        tok = w.create_token("it-legacy")
        a = w.legacy_agent(tok["token"], ["--heartbeat", "1", "--agent-version", "legacy-python-1.0.0"],
                           name="legacy-shared", owner=w.t)
        a.wait_event("connected", 30)
        w.wait_connection(tok["cluster_id"])
        STATE.update(tok=tok, agent=a)
    return w, STATE["tok"], STATE["agent"]


@test
def legacy_connects_without_subprotocol(t):
    w, tok, a = legacy()
    up = a.wait_event("upgrade", 5)
    eq(up.get("status"), 101, "upgrade status")
    eq(up.get("protocol"), None, "no subprotocol is selected for a legacy agent")
    c = a.wait_event("connected", 5)
    eq(c.get("cluster_id"), tok["cluster_id"], "connected.cluster_id")
    eq(c.get("cluster_name"), "it-legacy", "connected.cluster_name")
    check(c.get("protocol") in (None, 1), "a legacy agent must not be told protocol 2", c)
    conn = w.wait_connection(tok["cluster_id"])
    eq(conn.get("agent_version"), "legacy-python-1.0.0", "agent_version from register")
    check(conn.get("protocol") in (1, "1", "legacy", "v1"), "protocol of a legacy connection", conn)


@test
def legacy_register_before_connected(t):
    """The Python agent sends register as soon as its socket opens, without
    waiting for `connected` (the token is still being checked then), and its
    websockets client offers permessage-deflate: the cluster must show up
    connected, with that agent_version, and take commands."""
    w = legacy_world()
    tok = w.create_token("it-legacy-early")
    a = w.legacy_agent(tok["token"], ["--register-on-open", "--offer-deflate",
                                      "--agent-version", "py-early-1"])
    a.wait_event("connected", 30)
    first = next(e for e in list(a.events) if e.get("event") in ("register", "connected"))
    eq(first.get("event"), "register", "register went out before `connected` arrived")
    up = a.wait_event("upgrade", 5)
    check(up.get("status") == 101, "upgrade with permessage-deflate offered", up)
    conn = w.wait_connection(tok["cluster_id"])
    wait_until(lambda: w.connection(tok["cluster_id"]).get("agent_version") == "py-early-1", 10,
               0.05, "agent_version from the early register")
    eq(conn.get("cluster_name"), "it-legacy-early", "cluster_name")
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/echo/early")
    eq(r.get("output"), "early", "a command after an early register (%r)" % r)


@test
def legacy_agent_keeps_its_token_from_the_existing_service(t):
    """An agent already deployed holds a token the existing service issued
    (aurora_kubectl_ + secrets.token_urlsafe(48)); it must keep working here
    unchanged: the operator imports the token (stdin, never argv), and the
    agent connects as cluster-<sha256(token)[:16]> and takes commands."""
    import base64
    import hashlib
    import os
    w = legacy_world()
    old = "aurora_kubectl_" + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    cid = "cluster-" + hashlib.sha256(old.encode()).hexdigest()[:16]
    a = w.legacy_agent(old)
    c = a.wait_close(30)
    eq((c.get("code"), c.get("reason")), (1008, "Invalid token"), "before the import")
    base = ["import-agent-token", "--org", w.org_id, "--user", w.user_id,
            "--cluster-name", "it-legacy-imported"]
    d = w.admin(*base, stdin=(old + "\n").encode())
    eq(d.get("cluster_id"), cid, "cluster id of the imported token")
    eq(d.get("imported"), True, "imported")
    check("token" not in d and old not in json.dumps(d), "the token is not printed back", d)
    a = w.legacy_agent(old, ["--register-on-open", "--agent-version", "python-agent-1.0.3"])
    conn = a.wait_event("connected", 30)
    eq((conn.get("cluster_id"), conn.get("cluster_name")), (cid, "it-legacy-imported"), "connected")
    w.wait_connection(cid)
    r = w.kubectl(cid, command="get --raw /fixture/echo/imported")
    eq(r.get("output"), "imported", "a command on the imported token's agent (%r)" % r)
    # the same token twice, a malformed one, none at all: refused, nothing recorded
    # (a new well-formed token followed by more than a token's room of data:
    # refused whole, not read in part)
    fresh = "aurora_kubectl_" + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    for bad in (old, old[:-1], old + "A", "aurora_kubectl_" + "+" * 64, "",
                fresh + " " * 100 + old):
        d = w.admin(*base, stdin=bad.encode(), expect_ok=False)
        check(d.get("_rc") == 1, "import of %r must fail" % bad[:20], d)
        check(old not in d.get("_stderr", ""), "the token is not echoed in the error", d)
    eq(sum(1 for x in w.connections() if x.get("cluster_id") == cid), 1, "one cluster")


@test
def import_reads_one_token_from_a_pipe_not_a_nul_or_a_terminal(t):
    """stdin must hold one token and nothing else: a NUL after it (a file of
    NUL-separated values, a binary file) made the rest invisible and the token
    was imported as if alone.  And a terminal on stdin echoed the token as it
    was typed or pasted and then waited for an end of file nobody knew to
    send: refused at once, saying to redirect it."""
    import base64
    import os
    import pty
    import subprocess
    from harness import SERVER_BIN, sanitizer_reports
    w = legacy_world()
    base = ["import-agent-token", "--org", w.org_id, "--user", w.user_id,
            "--cluster-name", "it-legacy-nul"]
    tok = "aurora_kubectl_" + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    for bad in (tok.encode() + b"\0junk\n", tok.encode() + b"\0\n", b"\0" + tok.encode()):
        d = w.admin(*base, stdin=bad, expect_ok=False)
        check(d.get("_rc") == 1, "import of %r must fail" % bad[-8:], d)
        check(tok not in d.get("_stderr", ""), "the token is not echoed in the error", d)
    # the refusals recorded nothing: the token alone is imported now (a second
    # import of a known token is refused)
    eq(w.admin(*base, stdin=(tok + "\r\n").encode()).get("imported"), True, "the token alone")
    # a terminal: refused without reading it
    sandir = os.path.join(w.dir, "san", "import-tty")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([SERVER_BIN, "admin"] + base, env=w.env(sandir), cwd=w.dir,
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError("import-agent-token with a terminal on stdin still waits for it")
    finally:
        os.close(slave)
        os.close(master)
    check(not sanitizer_reports(sandir), "sanitizer report")
    eq(p.returncode, 1, "refused (%r)" % err)
    contains(err.decode(), "terminal", "says why")
    eq(out, b"", "nothing printed")


@test
def legacy_heartbeat_ack(t):
    w, tok, a = legacy()
    n0 = sum(1 for e in list(a.events) if e.get("event") == "heartbeat_ack")
    a.op(op="heartbeat")
    wait_until(lambda: sum(1 for e in list(a.events) if e.get("event") == "heartbeat_ack") > n0,
               15.0, 0.05, "heartbeat_ack")
    c = w.connection(tok["cluster_id"])
    eq(c.get("status"), "active", "status after heartbeats")
    check(c.get("last_heartbeat"), "last_heartbeat must be set after heartbeats", c)


@test
def legacy_keepalive_ping_answered(t):
    """The Python agent's websockets client pings every 20 s and drops the
    connection when no pong comes within 10 s: each ping gets its pong, with
    its payload, also while a command runs on the agent."""
    w, tok, a = legacy()
    data = "ka-" + rand_tag(6)
    a.op(op="ping", data=data)
    a.wait_event(lambda e: e.get("event") == "pong" and e.get("data") == data, 10, "the pong")
    box = {}
    import threading
    th = threading.Thread(target=lambda: box.update(r=w.kubectl(
        tok["cluster_id"], command="get --raw /fixture/sleep/2/" + rand_tag(4), timeout=30)))
    th.start()
    a.wait_event(lambda e: e.get("event") == "command" and "/fixture/sleep/" in e.get("command", ""),
                 10, "the command to reach the agent")
    data = "ka-" + rand_tag(6)
    a.op(op="ping", data=data)
    a.wait_event(lambda e: e.get("event") == "pong" and e.get("data") == data, 10,
                 "the pong while a command runs")
    th.join(30)
    eq(box["r"].status, 200, "the command (%r)" % box["r"])


@test
def legacy_exec_command_string(t):
    w, tok, a = legacy()
    r = w.kubectl(tok["cluster_id"], command="get pods -n default")
    eq(r.status, 200, "status (%r)" % r)
    eq(r.get("return_code"), 0, "return_code (error: %s)" % r.get("error"))
    eq(r.get("success"), True, "success")
    check(re.match(r"^NAME\s+READY\s+STATUS", r.get("output") or ""), "table header", r)
    contains(r.get("output"), "nginx-7c5ddbdf54-x8f2k", "output")
    # the server sent the legacy kubectl_command message, with the arguments as one string
    ev = a.wait_event(lambda e: e.get("event") == "command" and e.get("command") == "get pods -n default",
                      3, "kubectl_command 'get pods -n default'")
    check(ev.get("command_id"), "command_id must be set", ev)
    check(isinstance(ev.get("timeout"), (int, float)) and ev["timeout"] > 0, "timeout must be positive", ev)


@test
def legacy_quoted_program_word_is_sent_as_audited(t):
    # "'kubectl' get pods" tokenizes to [kubectl, get, pods] and is audited as "get pods";
    # the legacy agent must get those words, not the text with the quoted program word.
    w, tok, a = legacy()
    r = w.kubectl(tok["cluster_id"], command="'kubectl' get pods -n default -o name")
    eq(r.status, 200, "status (%r)" % r)
    eq(r.get("return_code"), 0, "return_code (error: %s)" % r.get("error"))
    ev = a.wait_event(lambda e: e.get("event") == "command" and "-o name" in (e.get("command") or ""),
                      3, "kubectl_command for the quoted program word")
    eq(ev.get("command"), "get pods -n default -o name", "legacy command text")


@test
def legacy_exec_internal_and_failure(t):
    w, tok, a = legacy()
    r = w.internal({"user_id": w.user_id, "cluster_id": tok["cluster_id"],
                    "command": "get pods -n prod", "timeout": 30})
    eq(r.status, 200, "internal execute (%r)" % r)
    contains(r.get("output"), "api-5d9f8b7c6-m7n8p", "output")
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/status/503")
    eq(r.status, 200, "failing command status (%r)" % r)
    eq(r.get("return_code"), 1, "return_code of a failing command")
    eq(r.get("success"), False, "success")
    contains(r.get("error"), "fixture error 503", "error")


@test
def legacy_backend_tool_only_for_members_of_the_cluster_org(t):
    """The existing backend's kubectl tool sends {user_id, cluster_id, command,
    timeout} with only X-Internal-Secret; cluster_id comes from a model's tool
    call, so a user of another org (or one never seen) must not reach the
    cluster — refused exactly like a missing cluster."""
    w, tok, a = legacy()
    call = {"cluster_id": tok["cluster_id"], "command": "get pods -n prod", "timeout": 30}
    missing = w.internal(dict(call, user_id="u-" + rand_tag(6), cluster_id="cluster-0000000000000000"))
    eq(missing.status, 404, "a missing cluster (%r)" % missing)
    other_org = "org-other-" + rand_tag(4)
    outsider = "u-outsider-" + rand_tag(4)
    # the outsider is known, in another org (the frontend named them there)
    r = w.get("/api/me", headers={"X-Internal-Secret": w.secret, "X-User-ID": outsider,
                                  "X-Org-ID": other_org}, key=False)
    eq(r.status, 200, "outsider provisioned in another org (%r)" % r)
    for who in (outsider, "u-never-seen-" + rand_tag(4)):
        r = w.internal(dict(call, user_id=who))
        eq(r.status, 404, "the tool for %s (%r)" % (who, r))
        eq(r.body.replace(tok["cluster_id"].encode(), b"X"),
           missing.body.replace(b"cluster-0000000000000000", b"X"),
           "refused like a missing cluster")
    # a bad user_id is a 400, not truncated or ignored
    for bad in ("a b", "x" * 65, "\u00e9", 5, ["u"]):
        r = w.internal(dict(call, user_id=bad))
        eq(r.status, 400, "user_id %r (%r)" % (str(bad)[:10], r))
    # an operator may record the member ahead of the first page the user opens
    newcomer = "u-newcomer-" + rand_tag(4)
    r = w.internal(dict(call, user_id=newcomer))
    eq(r.status, 404, "not a member yet (%r)" % r)
    doc = w.admin("add-member", "--org", w.org_id, "--user", newcomer)
    eq(doc.get("member_created"), True, "admin add-member created the membership")
    r = w.internal(dict(call, user_id=newcomer))
    eq(r.status, 200, "member now (%r)" % r)
    contains(r.get("output"), "api-5d9f8b7c6-m7n8p", "output")
    # naming the org in X-Org-ID (the backend vouches for both) provisions the member
    named = "u-named-" + rand_tag(4)
    r = w.internal(dict(call, user_id=named), headers={"X-Org-ID": w.org_id})
    eq(r.status, 200, "with X-Org-ID (%r)" % r)


@test
def legacy_agent_on_any_path(t):
    """The existing chart's default endpoint has no path (ws://host:port): the
    legacy dialect is accepted on any path; this server's own dialect only on
    /kubectl-agent."""
    w = legacy_world()
    tok = w.create_token("it-legacy-root-path")
    for path in ("/", "/ws"):
        a = w.legacy_agent(tok["token"], ["--url", "wss://127.0.0.1:%d%s" % (w.port, path)])
        c = a.wait_event("connected", 30)
        eq(c.get("cluster_id"), tok["cluster_id"], "legacy agent connected on %s" % path)
        a.op(op="close")
        a.wait_close()
    # a bad token on another path is refused like on the endpoint
    a = w.legacy_agent("aurora_kubectl_" + "A" * 64, ["--url", "wss://127.0.0.1:%d/" % w.port])
    ev = a.wait_event(lambda e: e.get("event") in ("close", "connected"), 30, "close of a bad token")
    eq(ev.get("event"), "close", "a bad token is closed")
    # the v2 subprotocol on another path is refused at the upgrade
    a = w.legacy_agent(tok["token"], ["--subprotocol", "aurora-tunnel.v2", "--no-register",
                                      "--url", "wss://127.0.0.1:%d/" % w.port])
    ev = a.wait_event(lambda e: e.get("event") in ("upgrade", "error", "close", "unexpected-response"),
                      30, "the v2 upgrade on / to fail")
    check(ev.get("event") != "upgrade" or ev.get("status") != 101, "v2 on / must not upgrade", ev)


@test
def legacy_exec_command_string_verbatim(t):
    """A `command` that a whitespace split handles must reach the old agent unchanged."""
    w, tok, a = legacy()
    text = "legacy-" + rand_tag(5)
    cmd = "get --raw /fixture/echo?text=%s" % text
    r = w.kubectl(tok["cluster_id"], command=cmd)
    eq(r.status, 200, "status (%r)" % r)
    ev = a.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 3,
                      "kubectl_command carrying the text")
    eq(ev.get("command"), cmd, "kubectl_command.command as sent to the legacy agent")
    eq(r.get("output"), text, "output")


@test
def legacy_exec_args_as_one_string(t):
    """args → the legacy one-string form: an argument without whitespace or quotes must
    not be shell-quoted, or an agent that splits on whitespace runs kubectl with the
    quote characters inside its arguments."""
    w, tok, a = legacy()
    text = "legacy-" + rand_tag(5)
    r = w.kubectl(tok["cluster_id"], args=["get", "--raw", "/fixture/echo?text=%s" % text])
    eq(r.status, 200, "status (%r)" % r)
    ev = a.wait_event(lambda e: e.get("event") == "command" and text in (e.get("command") or ""), 3,
                      "kubectl_command carrying the args as one string")
    eq(ev.get("command"), "get --raw /fixture/echo?text=%s" % text,
       "kubectl_command.command built from args")
    eq(r.get("output"), text, "output")


@test
def legacy_output_with_nul_bytes_is_answered(t):
    """kubectl output may hold NUL bytes (`kubectl exec … cat /proc/1/cmdline`);
    the Python agent's json.dumps sends them as \\u0000.  Its command_response
    keeps its meaning: the caller gets the output (each NUL as U+FFFD, as the C
    agent sends it in this dialect) at once, not a 504 after the deadline."""
    w, tok, a = legacy()
    t0 = time.monotonic()
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/echo?text=a%00b%00c", timeout=20,
                  http_timeout=60)
    elapsed = time.monotonic() - t0
    ev = a.wait_event(lambda e: e.get("event") == "response" and e.get("output_len") == 5, 3,
                      "the agent's answer with the NUL bytes")
    check(ev.get("success"), "the agent ran the command", ev)
    eq(r.status, 200, "status (%r)" % r)
    eq(r.get("return_code"), 0, "return_code")
    eq(r.get("output"), "a\ufffdb\ufffdc", "output, each NUL as U+FFFD")
    check(elapsed < 15, "answered when the agent answered, not at the deadline (%.1fs)" % elapsed)
    # the same text in any other field of any other message is still refused
    a.op(op="send", text='{"type":"command_response","command_id":"cmd-\\u0000","success":true}')
    a.op(op="send", text='{"type":"heartbeat","cluster_id":"x\\u0000"}')
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/echo/after")
    eq(r.get("output"), "after", "the tunnel still works (%r)" % r)


@test(timeout=60)
def legacy_concurrent_commands(t):
    from concurrent.futures import ThreadPoolExecutor
    w, tok, a = legacy()
    texts = ["l%02d-%s" % (i, rand_tag(4)) for i in range(10)]
    with ThreadPoolExecutor(10) as ex:
        rs = list(ex.map(lambda x: w.kubectl(tok["cluster_id"],
                                             command="get --raw /fixture/echo/%s" % x), texts))
    bad = [(x, r) for x, r in zip(texts, rs) if r.status != 200 or r.get("output") != x]
    check(not bad, "%d of 10 concurrent legacy commands got the wrong answer" % len(bad), *bad[:3])


@test(timeout=90)
def legacy_commands_go_one_at_a_time(t):
    """The Python agent runs one command at a time (agent.py's message_loop
    awaits each before it reads the next message), its timeout counting from
    when it starts it, and cannot be told to stop one.  The server keeps one
    command in flight per legacy connection and holds the others: one whose
    time runs out while it waits gets its 504 and never reaches the agent
    (nothing runs after its caller was told it failed), and one sent later
    carries the time it has left, not its whole timeout."""
    import threading
    w = legacy_world()
    tok = w.create_token("it-legacy-serial")
    cid = tok["cluster_id"]
    a = w.legacy_agent(tok["token"], name="legacy-serial")
    a.wait_event("connected", 30)
    w.wait_connection(cid)
    box = {}

    def run(key, command, timeout):
        box[key] = w.kubectl(cid, command=command, timeout=timeout, http_timeout=60)

    def start(key, command, timeout):
        th = threading.Thread(target=run, args=(key, command, timeout))
        th.start()
        return th

    # The first command runs until the short one has had its answer (the
    # kube API fixture holds it), not for a fixed time: a loaded machine
    # that was slow to ask the short one made it outlast a 6 s first.
    hold = rand_tag(8)
    t.defer(lambda: release_held(hold))  # ends it even if a check below fails
    first = "get --raw /fixture/hold/" + hold
    short, late = "short-" + rand_tag(4), "late-" + rand_tag(4)
    ths = [start("first", first, 40)]
    a.wait_event(lambda e: e.get("event") == "command" and e.get("command") == first, 30,
                 "the first command at the agent")
    # asked while the first runs: its 1 s + the grace end while it still does
    ths.append(start("short", "get --raw /fixture/echo/" + short, 1))
    ths.append(start("late", "get --raw /fixture/echo/" + late, 30))
    ths[1].join(30)
    check("short" in box, "the short command never ended")
    release_held(hold)
    for th in ths:
        th.join(60)
    eq(box["first"].status, 200, "the running command (%r)" % box["first"])
    eq(box["short"].status, 504, "the command whose time ran out while it waited (%r)" % box["short"])
    eq(box["short"].error_code, "TIMEOUT", "its error_code")
    eq(box["late"].get("output"), late, "the command that waited its turn (%r)" % box["late"])
    queued = [e for e in list(a.events) if e.get("event") == "queued"]
    check(not queued, "commands were sent to the agent while it ran another", *queued[:3])
    cmds = [e for e in list(a.events) if e.get("event") == "command"]
    check(not any(short in e.get("command", "") for e in cmds),
          "the command that timed out at the server reached the agent", *cmds)
    ev = next(e for e in cmds if late in e.get("command", ""))
    check(15 <= ev.get("timeout", 0) < 30,
          "the held command is sent with the time it has left (about 26 s of 30)", ev)


@test(timeout=60)
def legacy_no_heartbeat_ack_while_a_command_runs(t):
    """The Python agent reads no message while it runs a command, and its
    websockets client (14 and later) stops reading the socket once more than
    16 frames wait unread (max_queue): its keepalive ping (every 20 s) then
    gets no pong and it drops the connection 10 s later, losing the command.
    A heartbeat_ack every 60 s would do that to any command running over
    16 minutes: the server sends none while a command runs (the agent drops
    them unread anyway), and acks heartbeats again once it answered."""
    w = legacy_world()
    tok = w.create_token("it-legacy-quiet")
    a = w.legacy_agent(tok["token"], ["--heartbeat", "1"], name="legacy-quiet")
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    tag = rand_tag(4)
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/sleep/4/" + tag, timeout=20)
    eq(r.status, 200, "the command (%r)" % r)
    a.wait_event("response", 5)
    evs = list(a.events)
    start = next(i for i, e in enumerate(evs) if e.get("event") == "command")
    end = next(i for i, e in enumerate(evs) if e.get("event") == "response")
    sent = [e for e in evs[start:end] if e.get("event") == "sent"]
    acks = [e for e in evs[start:end] if e.get("event") == "heartbeat_ack"]
    check(len(sent) >= 2, "the agent sent heartbeats while the command ran", evs[start:end])
    check(not acks, "%d heartbeat_ack(s) sent to the agent while it ran a command" % len(acks))
    n = len(evs)
    wait_until(lambda: any(e.get("event") == "heartbeat_ack" for e in list(a.events)[n:]), 10,
               0.05, "a heartbeat_ack once the command answered")


@test(timeout=120)
def big_legacy_outputs_all_arrive_through_one_assembly_slot(t):
    """Legacy agents answer with the whole output in one message: with
    AURORA_AGENT_ASSEMBLY_BUDGET = AURORA_LEGACY_MAX_FRAME there is one
    assembly slot, and eight 3 MiB answers from four agents at once must all
    arrive, byte for byte, with real lws flow control pausing and resuming
    the connections that wait (no hang, nothing lost).  Whether a given run
    made one wait depends on timing; the turn-taking itself is asserted in
    test_server_tunnel.c: test_big_messages_take_turns."""
    from concurrent.futures import ThreadPoolExecutor
    size = 3 * 1024 * 1024
    w = t.world("server-assembly", extra_env={"AURORA_LEGACY_MAX_FRAME": str(4 << 20),
                                              "AURORA_AGENT_ASSEMBLY_BUDGET": str(4 << 20),
                                              "AURORA_EXEC_MAX_OUTPUT_JSON": str(8 << 20),
                                              "AURORA_EXEC_DEFAULT_MAX_OUTPUT": str(8 << 20)})
    cids = []
    for i in range(4):
        tok = w.create_token("big-%d" % i)
        a = w.legacy_agent(tok["token"], name="legacy-big-%d" % i)
        a.wait_event("connected", 20)
        w.wait_connection(tok["cluster_id"])
        cids.append(tok["cluster_id"])
    # the real kubectl: `size` bytes of log lines that each name the command
    jobs = [(cids[i % 4], "k%d-%s" % (i, rand_tag(4))) for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda j: w.kubectl(j[0], command="logs tagged-%s-%d" % (j[1], size),
                                             http_timeout=90), jobs))
    for (cid, tag), r in zip(jobs, rs):
        eq(r.status, 200, "command %s on %s (%r)" % (tag, cid, r.json if r.status != 200 else ""))
        out = r.get("output", "")
        eq(len(out), size, "output length of %s" % tag)
        check(out.encode() == kube_api.tagged_bytes(tag, size),
              "output of %s is its pod's log, byte for byte" % tag, out[:40])


@test(timeout=90)
def legacy_reconnect_after_a_blip_takes_the_commands(t):
    """A Python agent whose connection died without a word (a network blip,
    a NAT timeout) dials again; the dead session stays until the idle
    timeout (200 s).  The existing server kept one connection per cluster,
    the newest: commands must go to the new connection, none hang on the
    dead one until its deadline (504)."""
    import signal
    from concurrent.futures import ThreadPoolExecutor
    w = legacy_world()
    tok = w.create_token("it-legacy-blip")
    cid = tok["cluster_id"]
    old = w.legacy_agent(tok["token"], name="legacy-blip-old")
    old.wait_event("connected", 30)
    w.wait_connection(cid)
    eq(w.kubectl(cid, command="get --raw /fixture/echo/warm").get("output"), "warm", "before")
    old.proc.p.send_signal(signal.SIGSTOP)  # silent, its TCP connection still open
    try:
        new = w.legacy_agent(tok["token"], name="legacy-blip-new")
        new.wait_event("connected", 30)
        wait_until(lambda: (w.connection(cid) or {}).get("agents") == 2, 10, 0.05,
                   "both connections counted")
        texts = ["blip%02d-%s" % (i, rand_tag(4)) for i in range(6)]
        # 15 s, not 3: four at once queue on a legacy connection (one
        # command at a time), and one sent late gets what is left of its
        # timeout, which slow kubectl starts on a loaded machine used up.
        run = lambda x: w.kubectl(cid, command="get --raw /fixture/echo/%s" % x,  # noqa: E731
                                  timeout=15, http_timeout=60)
        rs = [run(x) for x in texts[:2]]
        with ThreadPoolExecutor(4) as ex:
            rs += list(ex.map(run, texts[2:]))
        bad = [(x, r.status, r.error_code) for x, r in zip(texts, rs)
               if r.status != 200 or r.get("output") != x]
        check(not bad, "%d of %d commands did not reach the new connection" % (len(bad), len(texts)),
              *bad[:3])
    finally:
        old.proc.p.send_signal(signal.SIGCONT)


@test(timeout=60)
def legacy_revoke_closes_1008(t):
    w = legacy_world()
    tok = w.create_token("it-legacy-revoke")
    a = w.legacy_agent(tok["token"], ["--heartbeat", "1"])
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    r = w.kubectl(tok["cluster_id"], command="get --raw /fixture/echo/pre")
    eq(r.get("output"), "pre", "output before revoke (%r)" % r)
    t0 = time.monotonic()
    r = w.revoke_token(tok["token_id"])
    eq(r.status, 200, "revoke status (%r)" % r)
    eq(r.get("disconnected"), 1, "disconnected")
    c = a.wait_close(15.0)  # (nothing but the revocation would ever close it)
    eq(c.get("code"), 1008, "close code")
    eq(c.get("reason"), "Token revoked", "close reason")
    t.note("closed %.2fs after revoke" % (time.monotonic() - t0))
    r = w.kubectl(tok["cluster_id"], args=["version", "--client"])
    eq(r.status, 503, "exec after revoke (%r)" % r)
    eq(r.error_code, "AGENT_NOT_CONNECTED", "error_code")
    # reconnecting with the revoked token is refused with the same reason
    b = w.legacy_agent(tok["token"])
    c = b.wait_close(30)
    eq((c.get("code"), c.get("reason")), (1008, "Token revoked"), "close on reconnect")
    check(not b.has_event("connected"), "a revoked token must not get `connected`")


@test(timeout=60)
def legacy_agent_dropping_mid_command(t):
    """The agent's connection goes away while a command runs → 502 AGENT_DISCONNECTED."""
    w = legacy_world()
    tok = w.create_token("it-legacy-drop")
    a = w.legacy_agent(tok["token"])
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    import threading
    box = {}
    th = threading.Thread(target=lambda: box.update(r=w.kubectl(
        tok["cluster_id"], command="get --raw /fixture/sleep/20/" + rand_tag(4), timeout=30)))
    th.start()
    a.wait_event("command", 30)
    a.op(op="close", code=1001)
    th.join(15)
    check(not th.is_alive(), "the API call must end when the agent disconnects")
    r = box["r"]
    eq(r.status, 502, "status (%r)" % r)
    eq(r.error_code, "AGENT_DISCONNECTED", "error_code")


@test(timeout=90)
def legacy_agent_never_answers(t):
    """An agent that takes the command and never answers → 504 TIMEOUT, and the
    connection stays usable for the server's other work."""
    w = legacy_world()
    tok = w.create_token("it-legacy-hung")
    a = w.legacy_agent(tok["token"], ["--ignore-commands"])
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    t0 = time.monotonic()
    r = w.kubectl(tok["cluster_id"], command="get pods -n default", timeout=2, http_timeout=60)
    elapsed = time.monotonic() - t0
    a.wait_event("ignored", 1, "the command to have reached the agent")
    eq(r.status, 504, "status (%r)" % r)
    eq(r.error_code, "TIMEOUT", "error_code")
    check(elapsed >= 2 + GRACE_S - 0.5, "the server waits the grace past the timeout (took %.1fs)" % elapsed)
    check(elapsed < 2 + GRACE_S + 20, "the server must give up soon after the grace (took %.1fs)" % elapsed)
    contains(r.json.get("error", ""), "within %d s" % (2 + GRACE_S), "the message names the deadline")
    t.note("504 after %.1fs for a 2 s timeout and a %d s grace" % (elapsed, GRACE_S))
    eq(w.get("/health", auth=False).status, 200, "health afterwards")


if __name__ == "__main__":
    main()
