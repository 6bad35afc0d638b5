#!/usr/bin/env python3
"""Tunnel integration tests: token → agent connects → kubectl through the tunnel
(JSON and SSE, concurrency, 50 MiB binary stream with bounded server memory,
output cap, timeout with process-group kill, exit codes) → revoke → disconnect;
server kill -9 and restart with automatic agent reconnection.

Real peers: build/asan/aurora-server, build/asan/aurora-agent, /usr/bin/kubectl
against tests/fixtures/kube_api.py."""

import base64
import hashlib
import http.client
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (TOKEN_RE, RssSampler, check, cluster_id_for, contains, eq, https_request,
                     kube_api, main, procs_matching, rand_tag, sample, scrape, suite_world, test,
                     tls_context, wait_until)

MIB = 1024 * 1024
SHARED = {}


def shared():
    """The suite server plus one long-lived v2 agent (owned by the suite)."""
    w = suite_world()
    if "tok" not in SHARED:
        tok = w.create_token("it-shared", notes="shared agent")
        a = w.start_agent(tok["token"], name="shared-agent", owner=w.t)
        w.wait_connection(tok["cluster_id"])
        SHARED.update(tok=tok, agent=a)
    return w, SHARED["tok"]["cluster_id"]


def ok_result(r, what):
    eq(r.status, 200, "%s: HTTP status (%r)" % (what, r))
    check(isinstance(r.json, dict), "%s: body is not a JSON object" % what, r)
    for k in ("success", "output", "error", "return_code", "truncated", "duration_ms", "error_code"):
        check(k in r.json, "%s: result lacks %r" % (what, k), r.json)
    return r.json


def result_bytes(res):
    """The output bytes of a JSON result (output_base64 when not UTF-8)."""
    if res.get("output_base64") is not None:
        return base64.b64decode(res["output_base64"])
    return res["output"].encode("utf-8")


# ---------------------------------------------------------------------------
@test
def health_and_certificate(t):
    w, _ = shared()
    r = w.get("/health", auth=False)
    eq(r.status, 200, "GET /health status")
    eq(r.json, {"status": "ok"}, "GET /health body")
    # the generated certificate must be valid for both loopback names
    for name in ("127.0.0.1", "localhost"):
        r = https_request(w.port, tls_context(w.ca), "GET", "/health", sni=name)
        eq(r.status, 200, "GET /health verifying the certificate as %s" % name)


@test
def token_shape_and_listing(t):
    w = suite_world()
    d = w.create_token("it-shape", notes="shape test", expires_days=30)
    for k in ("token", "token_id", "cluster_id", "cluster_name", "preview", "expires_at"):
        check(k in d, "token create response lacks %r" % k, d)
    check(TOKEN_RE.match(d["token"]), "token does not look like aurora_kubectl_ + 64 url-safe chars",
          d["token"])
    eq(d["cluster_id"], cluster_id_for(d["token"]), "cluster_id (cluster- + sha256(token)[:16])")
    eq(d["cluster_name"], "it-shape", "cluster_name")
    check(d["preview"] and d["preview"] != d["token"] and len(d["preview"]) < len(d["token"]),
          "preview must be a shortened form of the token", d["preview"])
    check(d["expires_at"], "expires_at must be set when expires_days is given", d)
    r = w.get("/api/kubectl/tokens")
    eq(r.status, 200, "GET /api/kubectl/tokens status")
    check(d["token"] not in r.body.decode(), "the token list must never contain a token")
    mine = [x for x in r.json["tokens"] if x.get("id") == d["token_id"]]
    eq(len(mine), 1, "the new token is listed once")
    x = mine[0]
    for k in ("id", "cluster_id", "cluster_name", "notes", "preview", "created_at", "expires_at",
              "revoked_at", "status"):
        check(k in x, "token list entry lacks %r" % k, x)
    eq(x["cluster_id"], d["cluster_id"], "listed cluster_id")
    eq(x["notes"], "shape test", "listed notes")
    eq(x["revoked_at"], None, "revoked_at of a fresh token")
    eq(x["status"], "active", "status of a fresh token")
    # cleanup: revoke so it does not clutter the shared server
    eq(w.revoke_token(d["token_id"]).status, 200, "revoke")


@test
def agent_connects_and_is_listed(t):
    w, cid = shared()
    c = w.wait_connection(cid)
    for k in ("cluster_id", "cluster_name", "agent_version", "protocol", "connected_at",
              "last_heartbeat", "status"):
        check(k in c, "connection entry lacks %r" % k, c)
    eq(c["cluster_name"], "it-shared", "cluster_name of the connection")
    check(isinstance(c["agent_version"], str) and c["agent_version"], "agent_version must be set", c)
    check(c["protocol"] in (2, "2", "v2", "aurora-tunnel.v2"),
          "the C agent should have negotiated the v2 protocol", c)
    status, body = SHARED["agent"].health("/health")
    eq(status, 200, "agent /health")


@test
def exec_version_client(t):
    w, cid = shared()
    res = ok_result(w.kubectl(cid, args=["version", "--client"]), "version --client")
    eq(res["success"], True, "success")
    eq(res["return_code"], 0, "return_code")
    contains(res["output"], "Client Version: v1.32", "output")
    eq(res["truncated"], False, "truncated")
    eq(res["error_code"], None, "error_code")
    check(isinstance(res["duration_ms"], (int, float)) and res["duration_ms"] >= 0, "duration_ms", res)
    check(res.get("output_base64") is None, "output_base64 must be absent for UTF-8 output", res)


@test
def exec_get_pods_table(t):
    w, cid = shared()
    res = ok_result(w.kubectl(cid, command="get pods -n default"), "get pods -n default")
    eq(res["return_code"], 0, "return_code (error: %s)" % res.get("error"))
    lines = res["output"].splitlines()
    check(re.match(r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s*$", lines[0]),
          "first line must be the table header", res["output"])
    contains(res["output"], "nginx-7c5ddbdf54-x8f2k", "output")
    eq(len(lines), 4, "header + 3 pods")
    # a leading "kubectl" in command is accepted and dropped
    res = ok_result(w.kubectl(cid, command="kubectl get pods -n prod -o wide"), "kubectl get pods -o wide")
    eq(res["return_code"], 0, "return_code")
    contains(res["output"], "CrashLoopBackOff", "output")
    contains(res["output"], "NOMINATED NODE", "wide output")


@test
def exec_nonzero_exit_and_stderr(t):
    w, cid = shared()
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/status?code=500"]), "failing kubectl")
    eq(res["success"], False, "success")
    eq(res["return_code"], 1, "return_code")
    contains(res["error"], "fixture error 500", "error (kubectl's stderr)")
    res = ok_result(w.kubectl(cid, args=["get", "pods", "-n", "nothing-here"]), "empty namespace")
    eq(res["return_code"], 0, "return_code")
    contains(res["output"] + res["error"], "No resources found in nothing-here namespace.", "message")


@test
def exec_via_internal_api(t):
    w, cid = shared()
    r = w.internal({"user_id": w.user_id, "cluster_id": cid, "command": "get pods -n default",
                    "timeout": 30})
    eq(r.status, 200, "POST /internal/kubectl/execute status (%r)" % r)
    eq(r.get("success"), True, "success")
    eq(r.get("return_code"), 0, "return_code")
    contains(r.get("output"), "redis-6b8d9f7c4d-q9w7z", "output")
    # X-Org-ID is optional but accepted
    r = w.internal({"user_id": w.user_id, "cluster_id": cid,
                    "command": "get --raw /fixture/echo?text=internal-ok", "timeout": 30},
                   headers={"X-Org-ID": w.org_id})
    eq(r.status, 200, "internal execute with X-Org-ID (%r)" % r)
    eq(r.get("output"), "internal-ok", "output")
    # the internal-secret form of /api/* auth
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=via-secret"],
                  auth=False, headers={"X-Internal-Secret": w.secret,
                                     "X-User-ID": w.user_id, "X-Org-ID": w.org_id})
    eq(r.status, 200, "/api with X-Internal-Secret + X-User-ID + X-Org-ID (%r)" % r)
    eq(r.get("output"), "via-secret", "output")


@test(timeout=90)
def fifty_concurrent_commands(t):
    w, cid = shared()
    texts = ["c%02d-%s" % (i, rand_tag(6)) for i in range(50)]
    barrier = threading.Barrier(50, timeout=20)

    def one(text):
        barrier.wait()
        return w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=%s" % text], http_timeout=80)

    t0 = time.monotonic()
    with ThreadPoolExecutor(50) as ex:
        results = list(ex.map(one, texts))
    elapsed = time.monotonic() - t0
    bad = []
    for text, r in zip(texts, results):
        if r.status != 200 or r.get("output") != text or r.get("return_code") != 0:
            bad.append((text, r))
    check(not bad, "%d of 50 concurrent commands did not return exactly their own text" % len(bad),
          *bad[:5])
    t.note("50 concurrent commands in %.1fs" % elapsed)


@test(timeout=180)
def stream_50mib_binary_sse_bounded_memory(t):
    # Its own server: ASan keeps freed memory in a quarantine (256 MiB by default), so
    # a server that frees every chunk it forwards would still "grow" by up to 256 MiB.
    # A small quarantine keeps use-after-free detection and makes VmRSS meaningful.
    w = t.world("stream", asan_extra="quarantine_size_mb=4:thread_local_quarantine_size_kb=64")
    # the agent's own cap on one command's output (AURORA_MAX_OUTPUT, 10 MiB by default)
    # must let 50 MiB through
    tok = w.create_token("it-stream")
    w.start_agent(tok["token"], extra_env={"AURORA_MAX_OUTPUT": str(256 * MIB)})
    cid = tok["cluster_id"]
    w.wait_connection(cid)
    # warm up (first-use allocations: TLS session, SQLite pages, kubectl discovery)
    ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=1000000&seed=warm"]), "warm-up")
    n, seed = 50 * MIB, "s" + rand_tag(4)
    want = kube_api.expected_sha256(n, seed)
    h = hashlib.sha256()
    st = {"bytes": 0, "stderr": b"", "result": None, "after_result": 0, "text": 0, "b64": 0,
          "errors": []}

    def on_event(ev, data):
        if st["result"] is not None:
            st["after_result"] += 1
        d = json.loads(data)
        if ev == "output":
            if "base64" in d:
                b = base64.b64decode(d["base64"])
                st["b64"] += 1
            else:
                b = d["text"].encode("utf-8")
                st["text"] += 1
            if d.get("stream") == "stdout":
                h.update(b)
                st["bytes"] += len(b)
            else:
                st["stderr"] += b
        elif ev == "result":
            st["result"] = d
        elif ev == "error":
            st["errors"].append(d)
        return False

    pid = w.server.pid
    t0 = time.monotonic()
    with RssSampler(pid) as rss:
        status, headers = w.kubectl_sse(cid, {"args": ["get", "--raw", "/fixture/bytes?n=%d&seed=%s" % (n, seed)],
                                              "max_output": 200 * MIB, "timeout": 150}, on_event)
    elapsed = time.monotonic() - t0
    eq(status, 200, "SSE status")
    check(not st["errors"], "SSE error events", st["errors"])
    check(st["result"] is not None, "no `result` event at the end of the stream")
    eq(st["after_result"], 0, "events after `result`")
    res = st["result"]
    eq(res.get("return_code"), 0, "return_code (stderr: %r)" % st["stderr"][:300])
    eq(res.get("success"), True, "success")
    eq(res.get("truncated"), False, "truncated")
    eq(st["bytes"], n, "stdout bytes received")
    eq(h.hexdigest(), want, "SHA-256 of the reassembled stdout")
    eq(res.get("bytes"), n, "result.bytes")
    check(st["b64"] > 0, "binary output must travel as base64 chunks", st)
    growth = rss.growth_mib
    t.note("50 MiB in %.1fs; server VmRSS %d→%d KiB (peak growth %.1f MiB); %d base64 / %d text chunks"
           % (elapsed, rss.baseline, rss.peak, growth, st["b64"], st["text"]))
    check(growth < 64, "server VmRSS grew by %.1f MiB while streaming 50 MiB (limit 64 MiB)" % growth)


@test(timeout=120)
def output_limit_json(t):
    w, cid = shared()
    # default cap, non-streaming: 50 MiB of output cannot fit
    n, seed = 50 * MIB, "cap" + rand_tag(3)
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=%d&seed=%s" % (n, seed)],
                              http_timeout=100), "50 MiB with the default cap")
    eq(res["truncated"], True, "truncated")
    eq(res["error_code"], "OUTPUT_LIMIT", "error_code")
    check(res.get("output_base64") is not None, "output is not UTF-8: output_base64 must be present",
          {k: v for k, v in res.items() if k not in ("output", "output_base64")})
    got = result_bytes(res)
    check(0 < len(got) < n, "truncated output length %d must be between 0 and %d" % (len(got), n))
    eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(kube_api.gen_bytes(len(got), seed)).hexdigest(),
       "the kept output must be the exact prefix of the stream")
    t.note("default cap kept %d bytes" % len(got))
    # explicit small cap: exactly max_output bytes are kept
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=5000&seed=%s" % seed],
                              max_output=1000), "max_output=1000")
    eq(res["truncated"], True, "truncated")
    eq(res["error_code"], "OUTPUT_LIMIT", "error_code")
    eq(result_bytes(res), kube_api.gen_bytes(5000, seed)[:1000], "first 1000 bytes")


@test
def binary_output_json_base64(t):
    w, cid = shared()
    seed = "b" + rand_tag(3)
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/bytes?n=4096&seed=%s" % seed]),
                    "4 KiB binary")
    eq(res["return_code"], 0, "return_code")
    eq(res["truncated"], False, "truncated")
    check(res.get("output_base64") is not None, "output_base64 must be present for non-UTF-8 output",
          res)
    eq(base64.b64decode(res["output_base64"]), kube_api.gen_bytes(4096, seed), "decoded bytes")


@test
def sse_small_and_text(t):
    w, cid = shared()
    events = []
    status, headers = w.kubectl_sse(cid, {"args": ["get", "--raw", "/fixture/echo?text=sse-hello"]},
                                    lambda ev, d: events.append((ev, json.loads(d))) and False)
    eq(status, 200, "status")
    # command output is kept in no cache (the browser's included), said once
    eq(headers.get("cache-control"), "no-store", "the stream's cache-control")
    eq(headers.get("x-content-type-options"), "nosniff", "the stream's nosniff")
    check(events and events[-1][0] == "result", "last event must be `result`", events)
    out = "".join(d.get("text", "") for ev, d in events if ev == "output" and d.get("stream") == "stdout")
    eq(out, "sse-hello", "stdout text")
    eq(events[-1][1].get("return_code"), 0, "return_code")
    # unknown cluster: error event (or a plain 404) before anything starts
    events = []
    try:
        status, _ = w.kubectl_sse("cluster-0000000000000000", {"args": ["version", "--client"]},
                                  lambda ev, d: events.append((ev, json.loads(d))) and False)
        check(events and events[0][0] == "error", "expected an `error` event", events)
        eq(events[0][1].get("error_code"), "CLUSTER_NOT_FOUND", "error_code")
    except AssertionError as e:
        # a server may also refuse with the plain JSON 404 before switching to SSE
        contains(str(e), "404", "unknown cluster over SSE")
        contains(str(e), "CLUSTER_NOT_FOUND", "unknown cluster over SSE")


@test(timeout=60)
def timeout_kills_kubectl(t):
    w, cid = shared()
    tag = rand_tag(6)
    t0 = time.monotonic()
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/sleep?s=30&tag=%s" % tag], timeout=2)
    elapsed = time.monotonic() - t0
    res = ok_result(r, "sleep 30 with timeout 2")
    eq(res["return_code"], 124, "return_code")
    eq(res["error_code"], "TIMEOUT", "error_code")
    eq(res["success"], False, "success")
    check(1.5 <= elapsed <= 20.0, "answer after %.2fs, expected ~2s, not the 30 s sleep" % elapsed)
    left = []

    def gone():
        left[:] = [p for p in procs_matching("fixture/sleep") if tag in p[1]]
        return not left
    try:
        wait_until(gone, 15.0, 0.05, "the kubectl process to be gone")
    except AssertionError:
        raise AssertionError("kubectl still running after the timeout: %s" % left)
    # the tunnel is still usable afterwards
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=after-timeout"]), "after")
    eq(res["output"], "after-timeout", "output after a timeout")


@test(timeout=60)
def revoke_closes_tunnel(t):
    w = suite_world()
    tok = w.create_token("it-revoke")
    # AURORA_RECONNECT_MAX=1: a refused agent retries within a second (the default waits 30 s)
    agent = w.start_agent(tok["token"], extra_env={"AURORA_RECONNECT_MAX": "1"})
    cid = tok["cluster_id"]
    w.wait_connection(cid)
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=before-revoke"]), "before")
    eq(res["output"], "before-revoke", "output before revoke")
    agent.proc.tolerate_exit = True  # what an agent does with a revoked token is its own business
    retries = lambda: len(re.findall(r"retrying in|reconnecting in", agent.log()))  # noqa: E731
    n0 = retries()
    t0 = time.monotonic()
    r = w.revoke_token(tok["token_id"])
    eq(r.status, 200, "DELETE token status (%r)" % r)
    eq(r.get("revoked"), True, "revoked")
    eq(r.get("cluster_id"), cid, "cluster_id")
    eq(r.get("disconnected"), 1, "disconnected sessions")
    contains(r.get("uninstall_hint"), "helm uninstall", "uninstall_hint")

    def not_active():
        c = w.connection(cid)
        return c is None or c.get("status") != "active"
    wait_until(not_active, 15.0, 0.05, "connection to leave `active` after revoke")
    t.note("connection inactive %.2fs after revoke" % (time.monotonic() - t0))
    wait_until(lambda: re.search(r"token revoked", agent.log(), re.I), 15.0, 0.05,
               "the agent to log the close reason `Token revoked`")
    r = w.kubectl(cid, args=["version", "--client"])
    eq(r.status, 503, "exec after revoke (%r)" % r)
    eq(r.error_code, "AGENT_NOT_CONNECTED", "error_code")
    check(isinstance(r.get("error"), str) and r.get("error"), "error message", r)
    # listing shows it revoked; revoking again does not resurrect anything
    x = [x for x in w.get("/api/kubectl/tokens").json["tokens"] if x["id"] == tok["token_id"]][0]
    check(x["revoked_at"], "revoked_at must be set", x)
    eq(x["status"], "revoked", "status")
    # the close above, then at least one retry turned away
    wait_until(lambda: retries() >= n0 + 2 or not agent.proc.alive(), 10, 0.1,
               "the revoked agent to try again and be refused")
    check(not_active(), "the revoked agent must not get back in")


@test(timeout=90)
def silent_agent_dropped_counts_as_idle_timeout(t):
    """An agent silent for AURORA_AGENT_IDLE_TIMEOUT is dropped by the server:
    /metrics counts that close as reason="idle_timeout", not as the agent's own
    close (reason="agent_closed")."""
    w = t.world("server-idle", extra_env={"AURORA_AGENT_IDLE_TIMEOUT": "10"})
    tok = w.create_token("it-idle")
    a = w.legacy_agent(tok["token"], args=["--heartbeat", "0"])  # registers, then says nothing
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    c = a.wait_close(40)
    t.note("silent agent closed: %r" % c)

    def counted():
        m = scrape(w)
        return (sample(m, "aurora_agent_sessions_closed_total", dialect="legacy",
                       reason="idle_timeout") or 0) >= 1 and \
            sample(m, "aurora_agents_connected", dialect="legacy") == 0
    wait_until(counted, 15, 0.1, "the idle drop counted as idle_timeout")
    m = scrape(w)
    eq(sample(m, "aurora_agent_sessions_closed_total", dialect="legacy",
              reason="agent_closed"), None, "not counted as closed by the agent")


@test(timeout=60)
def delete_connection(t):
    w = suite_world()
    tok, agent = w.new_connected_agent(cluster_name="it-delconn")
    agent.proc.tolerate_exit = True
    r = w.delete("/api/kubectl/connections/%s" % tok["cluster_id"])
    eq(r.status, 200, "DELETE connection status (%r)" % r)
    eq(r.get("deleted"), True, "deleted")
    eq(r.get("cluster_id"), tok["cluster_id"], "cluster_id")
    eq(r.get("disconnected"), 1, "disconnected")
    contains(r.get("uninstall_hint"), "helm uninstall", "uninstall_hint")
    r = w.delete("/api/kubectl/connections/cluster-ffffffffffffffff")
    eq(r.status, 404, "DELETE unknown connection (%r)" % r)
    eq(r.error_code, "CLUSTER_NOT_FOUND", "error_code")


@test(timeout=90)
def server_kill9_restart_agent_reconnects(t):
    w = t.world("kill9")
    tok, agent = w.new_connected_agent(cluster_name="it-kill9")
    cid = tok["cluster_id"]
    res = ok_result(w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=before"]), "before kill")
    eq(res["output"], "before", "output")
    n0 = agent.log().count("reconnecting in")
    w.kill9()
    wait_until(lambda: agent.log().count("reconnecting in") > n0 or not agent.proc.alive(), 10, 0.05,
               "the agent to notice the server's death")
    check(agent.proc.alive(), "the agent must survive the server's death", agent.proc.log_tail())
    t0 = time.monotonic()
    w.restart()

    def works():
        try:
            r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=after"], http_timeout=20)
        except (OSError, http.client.HTTPException):
            return None  # (a slow answer on a loaded machine: ask again)
        return r if r.status == 200 and r.get("output") == "after" else None
    try:
        wait_until(works, 60.0, 0.2, "commands to work again through the reconnected agent")
    except AssertionError:
        c = w.connection(cid)
        raise AssertionError("agent did not reconnect within 60 s of the restart; connection: %r; "
                             "agent log:\n%s" % (c, agent.proc.log_tail(20)))
    t.note("agent back %.1fs after restart" % (time.monotonic() - t0))
    c = w.wait_connection(cid)
    eq(c["cluster_name"], "it-kill9", "cluster_name survives the restart")
    # the data survived: bootstrap again is a no-op, the API key still works
    d = w.admin("bootstrap")
    eq(d.get("api_key"), None, "second bootstrap must not mint a new key")
    eq(d.get("org_id"), w.org_id, "org_id")


if __name__ == "__main__":
    main()
