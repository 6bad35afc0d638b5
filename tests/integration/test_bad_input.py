#!/usr/bin/env python3
"""Hostile-input tests.  Every case is followed by a check that the server still
serves: /health, the API, and a command through another (healthy) agent.

WebSocket cases use tests/fixtures/legacy_agent.js as a raw client (independent
`ws` implementation); HTTP cases use http.client over TLS."""

import base64
import json
import os
import secrets
import socket
import ssl
import time

from harness import (check, contains, eq, https_request, main, parse_responses, rand_tag,
                     suite_world, test, wait_until)

STATE = {}


def world():
    """Suite server + one healthy v2 agent (the 'other agent' that must keep working)."""
    w = suite_world()
    if "tok" not in STATE:
        # token creation is rate limited per user: each purpose gets a fresh user
        STATE["uid"], STATE["key"] = w.new_user()
        tok = w.create_token("it-healthy", key=STATE["key"])
        a = w.start_agent(tok["token"], name="healthy-agent", owner=w.t)
        w.wait_connection(tok["cluster_id"])
        STATE.update(tok=tok, agent=a)
    return w


def fresh_token(w, name=None, **extra):
    """A token owned by a fresh user of the default org (so no rate limit is hit)."""
    uid, key = w.new_user()
    return w.create_token(name or "it-%s" % rand_tag(3), key=key, **extra)


def still_serving(w, what):
    r = w.get("/health", auth=False)
    eq(r.status, 200, "after %s: /health" % what)
    r = w.get("/api/kubectl/connections")
    eq(r.status, 200, "after %s: GET connections" % what)
    text = "alive-" + rand_tag(4)
    r = w.kubectl(STATE["tok"]["cluster_id"], args=["get", "--raw", "/fixture/echo?text=%s" % text],
                  timeout=30)
    eq((r.status, r.get("output")), (200, text), "after %s: command through the healthy agent (%r)"
       % (what, r))
    check(STATE["agent"].proc.alive(), "after %s: the healthy agent must still run" % what)


def is_error_body(r, code):
    check(isinstance(r.json, dict), "error body must be JSON", r)
    check(isinstance(r.get("error"), str) and r.get("error"), "error body needs an `error` message", r)
    eq(r.get("error_code"), code, "error_code (%r)" % r)


def expect_ws_refused(w, args, reason, token=None, what=""):
    a = w.legacy_agent(token, args)
    c = a.wait_close(30)
    eq((c.get("code"), c.get("reason")), (1008, reason), "%s: close code/reason" % what)
    check(not a.has_event("connected"), "%s: must not receive `connected`" % what)
    still_serving(w, what)


# ---------------------------------------------------------------------------
# WebSocket handshake
# ---------------------------------------------------------------------------
@test
def ws_missing_authorization(t):
    w = world()
    tok = fresh_token(w)
    expect_ws_refused(w, ["--no-auth", "--cluster-id", tok["cluster_id"]], "Invalid token",
                      what="no Authorization header")


@test
def ws_malformed_tokens(t):
    w = world()
    for auth in ("Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz",
                 "Bearer aurora_kubectl_" + "!" * 64, "Bearer aurora_kubectl_short",
                 "Bearer " + "aurora_kubectl_" + "A" * 5000):
        expect_ws_refused(w, ["--auth", auth, "--cluster-id", "cluster-0123456789abcdef"],
                          "Invalid token", what="Authorization %r" % auth[:40])


@test
def ws_unknown_token(t):
    w = world()
    tok = "aurora_kubectl_" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()
    expect_ws_refused(w, [], "Invalid token", token=tok, what="well-formed unknown token")


@test
def ws_revoked_token(t):
    w = world()
    tok = fresh_token(w)
    eq(w.revoke_token(tok["token_id"]).status, 200, "revoke")
    expect_ws_refused(w, [], "Token revoked", token=tok["token"], what="revoked token")


@test
def ws_expired_token(t):
    w = world()
    tok = fresh_token(w, expires_days=1)
    w.admin("expire-token", "--id", tok["token_id"])
    expect_ws_refused(w, [], "Token expired", token=tok["token"], what="expired token")
    x = [x for x in w.get("/api/kubectl/tokens").json.get("tokens", []) if x["id"] == tok["token_id"]]
    # the token belongs to another user of the same org; the list is per org or per user
    if x:
        eq(x[0].get("status"), "expired", "listed status of an expired token")


@test
def ws_cluster_id_mismatch(t):
    w = world()
    tok = fresh_token(w)
    expect_ws_refused(w, ["--cluster-id", "cluster-0000000000000000"], "Invalid token",
                      token=tok["token"], what="X-Cluster-ID not matching the token")
    # another token's (valid) cluster id does not work either
    expect_ws_refused(w, ["--cluster-id", STATE["tok"]["cluster_id"]], "Invalid token",
                      token=tok["token"], what="X-Cluster-ID of another cluster")
    # the token itself was not burnt by the failed attempts
    a = w.legacy_agent(tok["token"])
    c = a.wait_event("connected", 30)
    eq(c.get("cluster_id"), tok["cluster_id"], "connected with the right id")


# ---------------------------------------------------------------------------
# frames on an authenticated connection
# ---------------------------------------------------------------------------
def connected_legacy(w, args=()):
    tok = fresh_token(w)
    a = w.legacy_agent(tok["token"], list(args))
    a.wait_event("connected", 30)
    w.wait_connection(tok["cluster_id"])
    return tok, a


def legacy_still_works(w, tok, a, what):
    check(not a.has_event("close"), "%s: the server must not close the tunnel" % what,
          [e for e in a.events if e.get("event") == "close"])
    text = "ok-" + rand_tag(4)
    # path form: no '?' (see test_legacy.legacy_exec_args_as_one_string for why)
    r = w.kubectl(tok["cluster_id"], args=["get", "--raw", "/fixture/echo/%s" % text], http_timeout=30)
    eq((r.status, r.get("output")), (200, text), "%s: the same tunnel still runs commands (%r)" % (what, r))
    check(not a.has_event("close"), "%s: the server closed the tunnel" % what,
          [e for e in a.events if e.get("event") == "close"])
    still_serving(w, what)


@test
def frame_not_json(t):
    w = world()
    tok, a = connected_legacy(w)
    for text in ("this is not json{", "{\"type\":", "\x00\x01", "", "   ", "{" * 10000):
        a.op(op="send", text=text)
    acks = lambda: len([e for e in list(a.events) if e.get("event") == "heartbeat_ack"])  # noqa: E731
    n = acks()
    a.op(op="heartbeat")
    wait_until(lambda: acks() > n, 15, 0.05, "heartbeat_ack after the garbage frames")
    legacy_still_works(w, tok, a, "non-JSON text frames")


@test
def frame_json_not_object_and_bad_types(t):
    w = world()
    tok, a = connected_legacy(w)
    for msg in ("[1,2,3]", "42", "\"register\"", "null", "true", "{\"type\":5}", "{\"type\":null}",
                "{\"no_type\":1}", "{\"type\":\"register\",\"cluster_id\":7,\"agent_version\":[]}",
                "{\"type\":\"command_response\",\"command_id\":{}}"):
        a.op(op="send", text=msg)
    legacy_still_works(w, tok, a, "JSON frames that are not valid messages")


@test
def frame_unknown_type(t):
    w = world()
    tok, a = connected_legacy(w)
    a.op(op="send_json", msg={"type": "frobnicate", "payload": {"x": 1}})
    a.op(op="send_json", msg={"type": "exec", "id": 7, "argv": ["rm", "-rf", "/"]})  # S→A only
    a.op(op="send_json", msg={"type": "KUBECTL_COMMAND"})
    legacy_still_works(w, tok, a, "unknown message types")


@test
def frame_response_for_unknown_command(t):
    w = world()
    tok, a = connected_legacy(w)
    a.op(op="send_json", msg={"type": "command_response", "command_id": "nope-%s" % rand_tag(4),
                              "success": True, "output": "forged", "error": "", "return_code": 0})
    a.op(op="send_json", msg={"type": "command_response", "success": True, "output": "x",
                              "return_code": 0})
    legacy_still_works(w, tok, a, "command_response for an unknown command_id")


@test
def frame_short_binary(t):
    w = world()
    tok, a = connected_legacy(w)
    p = os.path.join(t.tmp, "short.bin")
    with open(p, "wb") as f:
        f.write(b"\x01\x00")
    a.op(op="send_file", path=p, binary=True)
    a.op(op="send_big", size=100, binary=True)
    legacy_still_works(w, tok, a, "short/unexpected binary frames")


@test(timeout=90)
def frame_oversized_legacy(t):
    w = world()
    tok, a = connected_legacy(w)
    a.op(op="send_big", size=40 * 1024 * 1024, binary=False)
    c = a.wait_close(30)
    eq(c.get("code"), 1009, "close code for a 40 MiB text frame (close: %r)" % c)
    still_serving(w, "a 40 MiB frame")


@test(timeout=90)
def frame_oversized_v2_control(t):
    w = world()
    tok = fresh_token(w)
    a = w.legacy_agent(tok["token"], ["--subprotocol", "aurora-tunnel.v2", "--no-register"])
    up = a.wait_event("upgrade", 30)
    eq(up.get("protocol"), "aurora-tunnel.v2", "the server must select the offered v2 subprotocol")
    a.wait_event("connected", 30)
    a.op(op="send_big", size=40 * 1024 * 1024, binary=False)
    c = a.wait_close(30)
    eq(c.get("code"), 1009, "close code for a 40 MiB v2 control frame (close: %r)" % c)
    still_serving(w, "a 40 MiB v2 frame")


@test
def frame_v2_bad_frames(t):
    """Malformed v2 traffic (short/unknown-id data frames, exec_end for no request,
    S→A-only messages) is dropped; the tunnel stays up."""
    w = world()
    tok = fresh_token(w)
    a = w.legacy_agent(tok["token"], ["--subprotocol", "aurora-tunnel.v2", "--no-register"])
    c = a.wait_event("connected", 30)
    eq(c.get("protocol"), 2, "connected.protocol for a v2 agent")
    a.op(op="send_json", msg={"type": "register", "cluster_id": tok["cluster_id"],
                              "agent_version": "raw-v2-client", "protocol": 2, "max_concurrent": 4})
    w.wait_connection(tok["cluster_id"])
    frames = {
        "short.bin": b"\x01\x00\x00",                               # shorter than the header
        "id0.bin": b"\x01\x00\x00\x00\x00payload",                    # request id 0
        "unknown.bin": b"\x01\x00\x00\x30\x39" + b"x" * 100,           # id 12345: no such request
        "badchan.bin": b"\x07\x00\x00\x00\x01" + b"y" * 10,            # channel 7
    }
    for name, data in frames.items():
        p = os.path.join(t.tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        a.op(op="send_file", path=p, binary=True)
    for msg in ({"type": "exec_end", "id": 4242, "return_code": 0, "error": "", "error_code": None,
                 "truncated": False, "duration_ms": 1, "bytes_out": 0},
                {"type": "exec_end", "id": -1}, {"type": "exec_end", "id": "x"},
                {"type": "credit", "id": 1, "bytes": 1 << 40}, {"type": "cancel", "id": 1},
                {"type": "exec", "id": 1, "kind": "kubectl", "argv": ["version"]}):
        a.op(op="send_json", msg=msg)
    acks = lambda: len([e for e in list(a.events) if e.get("event") == "heartbeat_ack"])  # noqa: E731
    n = acks()
    a.op(op="heartbeat")
    wait_until(lambda: acks() > n, 15, 0.05, "heartbeat_ack after the bad v2 frames")
    check(not a.has_event("close"), "the server must not close the v2 tunnel for malformed frames",
          [e for e in a.events if e.get("event") == "close"])
    eq(w.connection(tok["cluster_id"]).get("status"), "active", "connection status")
    still_serving(w, "malformed v2 frames")
    check(not a.has_event("close"), "the v2 tunnel was closed")
    # a data frame beyond the 32 KiB payload limit is an oversized frame: 1009
    p = os.path.join(t.tmp, "toolong.bin")
    with open(p, "wb") as f:
        f.write(b"\x01\x00\x00\x00\x01" + b"z" * (64 * 1024))
    a.op(op="send_file", path=p, binary=True)
    c = a.wait_close(30)
    eq(c.get("code"), 1009, "close code for a 64 KiB data frame (%r)" % c)
    still_serving(w, "an oversized v2 data frame")


# ---------------------------------------------------------------------------
# HTTP API
# ---------------------------------------------------------------------------
@test
def http_body_too_large(t):
    w = world()
    cid = STATE["tok"]["cluster_id"]
    big = json.dumps({"args": ["get", "--raw", "/fixture/echo?text=" + "a" * (1024 * 1024 + 100)]})
    r = w.post("/api/clusters/%s/kubectl" % cid, big)
    eq(r.status, 413, "POST with a body > 1 MiB (%r)" % r)
    is_error_body(r, "BODY_TOO_LARGE")
    r = w.post("/api/kubectl/tokens", "x" * (3 * 1024 * 1024))
    eq(r.status, 413, "POST tokens with a 3 MiB body (%r)" % r)
    still_serving(w, "an oversized body")


@test
def http_malformed_json(t):
    w = world()
    cid = STATE["tok"]["cluster_id"]
    cases = ['{"args": ["version"', "not json", "[]", "42", "", '{"args": "version --client"}',
             '{"args": [1, 2]}', '{"args": []}', '{}', '{"command": ""}', '{"command": 5}',
             '{"command": "get pods \\"unterminated"}', '{"args": ["version"], "timeout": "soon"}',
             '{"args": ["version"], "timeout": -1}', '{"args": ["version"], "max_output": -5}']
    for body in cases:
        r = w.post("/api/clusters/%s/kubectl" % cid, body)
        eq(r.status, 400, "kubectl body %r (%r)" % (body, r))
        is_error_body(r, "BAD_REQUEST")
    # raw bytes that are not UTF-8 inside JSON strings: they would reach the
    # agent in a text frame its WebSocket layer may refuse
    for body in (b'{"args": ["get", "pods", "\xff\xfe"]}', b'{"command": "get pods \xc3("}',
                 b'{"args": ["get", "\xed\xa0\x80"]}'):
        r = w.post("/api/clusters/%s/kubectl" % cid, body,
                   headers={"Content-Type": "application/json"})
        eq(r.status, 400, "kubectl body %r (%r)" % (body, r))
        is_error_body(r, "BAD_REQUEST")
        contains(r.get("error", ""), "not valid UTF-8", "the error names the problem")
    r = w.post("/api/clusters/%s/kubectl" % cid, {"args": ["version", "--client", "caf\u00e9"]})
    check(r.status != 400, "valid UTF-8 (an escaped \u00e9) is an argument like any other (%r)" % r)
    # (no cluster_name, or a blank one, is "Unnamed Cluster" as in the existing service)
    for body in ("{", '{"cluster_name": 7}', '{"cluster_name": ["x"]}', '{"cluster_name": "x" , "notes": 5}',
                 '{"cluster_name": "' + "x" * 101 + '"}',
                 '{"cluster_name": "x", "expires_days": "never"}'):
        r = w.post("/api/kubectl/tokens", body)
        eq(r.status, 400, "token body %r (%r)" % (body, r))
        is_error_body(r, "BAD_REQUEST")
    r = w.internal("{broken")
    eq(r.status, 400, "internal execute with a broken body (%r)" % r)
    still_serving(w, "malformed JSON bodies")


@test
def http_unknown_cluster(t):
    w = world()
    r = w.kubectl("cluster-0000000000000000", args=["version", "--client"])
    eq(r.status, 404, "unknown cluster (%r)" % r)
    is_error_body(r, "CLUSTER_NOT_FOUND")
    r = w.kubectl("../../etc/passwd", args=["version", "--client"])
    check(r.status in (400, 404), "path-ish cluster id must be refused (%r)" % r)
    r = w.delete("/api/kubectl/tokens/tok_doesnotexist")
    eq(r.status, 404, "revoke an unknown token (%r)" % r)
    still_serving(w, "unknown clusters")


@test
def http_other_orgs_cluster(t):
    w = world()
    org_b, user_b, key_b = w.new_org("org-b-" + rand_tag(3))
    cid_a = STATE["tok"]["cluster_id"]
    ra = w.kubectl(cid_a, args=["version", "--client"], key=key_b)
    rn = w.kubectl("cluster-0000000000000000", args=["version", "--client"], key=key_b)
    eq(ra.status, 404, "another org's cluster (%r)" % ra)
    is_error_body(ra, "CLUSTER_NOT_FOUND")
    norm_a = ra.body.decode("utf-8", "replace").replace(cid_a, "<id>")
    norm_n = rn.body.decode("utf-8", "replace").replace("cluster-0000000000000000", "<id>")
    eq(norm_a, norm_n, "another org's cluster must get the same body as a nonexistent one "
                       "(cluster id aside)")
    # org B sees none of org A's clusters or tokens and cannot revoke them
    cb = w.connections(key=key_b)
    check(all(c.get("cluster_id") != cid_a for c in cb), "org B must not list org A's connection", cb)
    r = w.get("/api/kubectl/tokens", key=key_b)
    eq(r.status, 200, "org B token list")
    check(all(x.get("cluster_id") != cid_a for x in r.json["tokens"]), "org B lists org A's token", r)
    r = w.revoke_token(STATE["tok"]["token_id"], key=key_b)
    eq(r.status, 404, "org B revoking org A's token (%r)" % r)
    r = w.delete("/api/kubectl/connections/%s" % cid_a, key=key_b)
    eq(r.status, 404, "org B deleting org A's connection (%r)" % r)
    # internal API with org B's ids
    r = w.internal({"user_id": user_b, "cluster_id": cid_a, "command": "version --client", "timeout": 10},
                   headers={"X-Org-ID": org_b})
    eq(r.status, 404, "internal execute for another org's cluster (%r)" % r)
    still_serving(w, "cross-org access")


@test
def http_missing_or_invalid_api_key(t):
    w = world()
    cid = STATE["tok"]["cluster_id"]
    paths = [("GET", "/api/kubectl/tokens", None), ("GET", "/api/kubectl/connections", None),
             ("POST", "/api/kubectl/tokens", {"cluster_name": "x"}),
             ("POST", "/api/clusters/%s/kubectl" % cid, {"args": ["version", "--client"]}),
             ("DELETE", "/api/kubectl/tokens/%s" % STATE["tok"]["token_id"], None)]
    variants = [None, "Bearer", "Bearer ", "Bearer aurora_key_" + "x" * 43, "Basic Zm9vOmJhcg==",
                "Bearer " + STATE["tok"]["token"]]  # an agent token is not an API key
    for method, path, body in paths:
        for auth in variants:
            h = {} if auth is None else {"Authorization": auth}
            r = https_request(w.port, w.ctx, method, path, body, h)
            eq(r.status, 401, "%s %s with Authorization %r (%r)" % (method, path, auth and auth[:30], r))
            is_error_body(r, "UNAUTHORIZED")
    # the revoke above must not have happened
    still_serving(w, "unauthenticated requests")


@test
def http_wrong_internal_secret(t):
    w = world()
    cid = STATE["tok"]["cluster_id"]
    body = {"user_id": w.user_id, "cluster_id": cid, "command": "version --client", "timeout": 10}
    for secret in ("", "wrong", w.secret[:-1], w.secret + "x", w.secret.upper()):
        r = w.internal(body, secret=secret)
        eq(r.status, 401, "internal execute with secret %r (%r)" % (secret[:8], r))
        is_error_body(r, "UNAUTHORIZED")
    r = https_request(w.port, w.ctx, "POST", "/internal/kubectl/execute", body, {})
    eq(r.status, 401, "internal execute without the header (%r)" % r)
    r = https_request(w.port, w.ctx, "GET", "/api/kubectl/connections", None,
                      {"X-Internal-Secret": "wrong", "X-User-ID": w.user_id, "X-Org-ID": w.org_id})
    eq(r.status, 401, "/api with a wrong X-Internal-Secret (%r)" % r)
    is_error_body(r, "UNAUTHORIZED")
    still_serving(w, "wrong internal secrets")


@test
def shell_metacharacters_stay_literal(t):
    w = world()
    cid = STATE["tok"]["cluster_id"]
    pw = "/tmp/PWNED_%s" % rand_tag(6)
    # The brief's form, `?text=a;touch ...`, cannot carry ';' through kubectl: Go's
    # url.Query() silently drops query pairs that contain ';' (kubectl would send
    # /fixture/echo with no text).  The fixture's path form keeps every character.
    cases = [
        ('get --raw "/fixture/echo/a;touch %s"' % pw, "a;touch %s" % pw),
        ("get --raw '/fixture/echo/$(touch %s)'" % pw, "$(touch %s)" % pw),
        ('get --raw "/fixture/echo/`touch %s`"' % pw, "`touch %s`" % pw),
        ('get --raw "/fixture/echo/x|touch %s&&touch %s>%s"' % (pw, pw, pw),
         "x|touch %s&&touch %s>%s" % (pw, pw, pw)),
    ]
    for command, want in cases:
        r = w.kubectl(cid, command=command)
        eq(r.status, 200, "command %r (%r)" % (command, r))
        eq(r.get("output"), want, "output of %r (kubectl's stderr: %r)" % (command, r.get("error")))
        check(not os.path.exists(pw), "%s exists: something ran a shell for %r" % (pw, command))
    # unquoted metacharacters are separate literal arguments, not shell syntax
    r = w.kubectl(cid, command="get --raw /fixture/echo?text=a ; touch %s" % pw)
    eq(r.status, 200, "unquoted ';' (%r)" % r)
    check(r.get("return_code") != 0, "kubectl must reject the extra literal arguments", r)
    r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo/a;touch %s" % pw])
    eq(r.get("output"), "a;touch %s" % pw, "args form")
    r = w.internal({"user_id": w.user_id, "cluster_id": cid, "timeout": 10,
                    "command": 'get --raw "/fixture/echo/b;touch %s"' % pw})
    eq(r.get("output"), "b;touch %s" % pw, "internal execute (%r)" % r)
    check(not os.path.exists(pw), "%s exists" % pw)
    still_serving(w, "shell metacharacters")


@test(timeout=120)
def token_creation_rate_limited(t):
    w = world()
    uid, key = w.new_user()
    got = None
    for i in range(200):
        r = w.post("/api/kubectl/tokens", {"cluster_name": "rl-%d" % i}, key=key)
        if r.status == 429:
            got = (i, r)
            break
        eq(r.status, 201, "token %d (%r)" % (i, r))
    check(got is not None, "no 429 after 200 token creations by one user")
    is_error_body(got[1], "RATE_LIMITED")
    t.note("rate limited after %d tokens" % got[0])
    # another user of the same org is not affected
    uid2, key2 = w.new_user()
    r = w.post("/api/kubectl/tokens", {"cluster_name": "rl-other"}, key=key2)
    eq(r.status, 201, "another user's token (%r)" % r)
    still_serving(w, "rate limiting")


# ---------------------------------------------------------------------------
# HTTP framing: request smuggling (raw bytes over TLS)
# ---------------------------------------------------------------------------
def raw_exchange(w, data, timeout=15):
    """Sends raw bytes on a fresh TLS connection and reads until the server closes
    it or `timeout` passes.  Returns (bytes received, closed by the server)."""
    sock = socket.create_connection(("127.0.0.1", w.port), timeout)
    s = w.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    got, closed = b"", False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server may answer and close before reading everything
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return got, closed


def smuggled_request(key, marker):
    """A request that leaves a trace: it creates a token named `marker`."""
    body = json.dumps({"cluster_name": marker})
    return ("POST /api/kubectl/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n%s" % (key, len(body), body)).encode()


def expect_refused_framing(w, what, head, body, code, key):
    """Sends `head` (request line + headers, without the blank line) and `body`, with
    a second request behind it.  The server must answer exactly one 400 with `code`
    (or one of a tuple of codes), close the connection, never run the second request,
    and still serve."""
    marker = "smuggled-%s" % rand_tag(6)
    data = head.encode() + b"\r\n\r\n" + body + smuggled_request(key, marker)
    got, closed = raw_exchange(w, data)
    resps = parse_responses(got)
    check(resps, "%s: no response at all" % what)
    status, hdrs, rbody = resps[0]
    eq(status, 400, "%s: status (%r)" % (what, got[:300]))
    try:
        j = json.loads(rbody.decode())
    except ValueError:
        j = None
    check(isinstance(j, dict) and j.get("error"), "%s: error body must be JSON with `error`" % what,
          rbody)
    codes = code if isinstance(code, tuple) else (code,)
    check(j.get("error_code") in codes, "%s: error_code must be one of %r" % (what, codes), j)
    eq(hdrs.get("connection", "").lower(), "close", "%s: the answer must say Connection: close" % what)
    check(closed, "%s: the server must close the connection after the 400" % what)
    eq(len(resps), 1, "%s: exactly one response (the second request must not run): %r"
       % (what, [r[0] for r in resps]))
    r = w.get("/api/kubectl/tokens", key=key)
    eq(r.status, 200, "%s: list tokens" % what)
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check(marker not in names, "%s: the smuggled request was executed" % what, names)
    r = w.get("/health", auth=False)
    eq(r.status, 200, "after %s: /health" % what)


def post_head(key, *headers, method="POST", path="/api/kubectl/tokens"):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1",
             "Authorization: Bearer %s" % key, "Content-Type: application/json"]
    return "\r\n".join(lines + list(headers))


@test(timeout=120)
def http_smuggling_content_length_and_transfer_encoding(t):
    w = world()
    uid, key = w.new_user()
    first = json.dumps({"cluster_name": "first-" + rand_tag(4)}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(first), first)
    # CL.TE: a front end that trusts Content-Length and one that trusts chunked disagree
    expect_refused_framing(w, "Content-Length + Transfer-Encoding: chunked",
                           post_head(key, "Content-Length: %d" % len(chunked),
                                     "Transfer-Encoding: chunked"),
                           chunked, "UNSUPPORTED_TRANSFER_ENCODING", key)
    expect_refused_framing(w, "Transfer-Encoding before Content-Length",
                           post_head(key, "Transfer-Encoding: chunked", "Content-Length: 5"),
                           b"0\r\n\r\n", "UNSUPPORTED_TRANSFER_ENCODING", key)
    # chunked alone: lws 4.1 would hand the raw chunks over as the body (POST), or
    # read them as the next request (GET)
    expect_refused_framing(w, "POST Transfer-Encoding: chunked",
                           post_head(key, "Transfer-Encoding: chunked"), chunked,
                           "UNSUPPORTED_TRANSFER_ENCODING", key)
    expect_refused_framing(w, "GET Transfer-Encoding: chunked",
                           post_head(key, "Transfer-Encoding: chunked", method="GET",
                                     path="/api/kubectl/connections"),
                           b"0\r\n\r\n", "UNSUPPORTED_TRANSFER_ENCODING", key)
    for te in ("gzip, chunked", "identity", "chunked, identity", "xchunked", "Chunked", ""):
        expect_refused_framing(w, "Transfer-Encoding %r" % te,
                               post_head(key, "Content-Length: %d" % len(first),
                                         "Transfer-Encoding: %s" % te),
                               first, "UNSUPPORTED_TRANSFER_ENCODING", key)
    expect_refused_framing(w, "two Transfer-Encoding headers",
                           post_head(key, "Transfer-Encoding: chunked", "Transfer-Encoding: identity"),
                           chunked, "DUPLICATE_HEADER", key)
    still_serving(w, "Transfer-Encoding smuggling attempts")


@test(timeout=120)
def http_smuggling_content_length(t):
    w = world()
    uid, key = w.new_user()
    first = json.dumps({"cluster_name": "first-" + rand_tag(4)}).encode()
    n = len(first)
    # duplicate or conflicting Content-Length (CL.CL)
    for a, b in ((n, n), (n, n + 50), (n + 50, n), (0, n)):
        expect_refused_framing(w, "Content-Length %d then %d" % (a, b),
                               post_head(key, "Content-Length: %d" % a, "Content-Length: %d" % b),
                               first, "DUPLICATE_HEADER", key)
    # not a plain decimal number
    for v in ("%dabc" % n, "+%d" % n, "-1", "0x%x" % n, "%d.0" % n, "%d, %d" % (n, n),
              "%d %d" % (n, n), "\t%d" % n, "%d\t" % n, "1e2", "", "99999999999999999999999",
              "18446744073709551617", "0" * 30 + str(n), "٣"):
        expect_refused_framing(w, "Content-Length %r" % v, post_head(key, "Content-Length: %s" % v),
                               first, "INVALID_CONTENT_LENGTH", key)
    # an obs-fold continuation line (lws reads it as a second Content-Length)
    expect_refused_framing(w, "Content-Length folded onto a second line",
                           post_head(key, "Content-Length:", " %d" % n), first,
                           ("INVALID_CONTENT_LENGTH", "DUPLICATE_HEADER"), key)
    still_serving(w, "Content-Length smuggling attempts")


@test
def http_framing_valid_requests_still_work(t):
    """The strict framing refuses nothing a real client sends: a plain Content-Length
    (leading zeros and optional spaces included) and keep-alive requests behind it."""
    w = world()
    uid, key = w.new_user()
    a = json.dumps({"cluster_name": "keep-a-" + rand_tag(4)}).encode()
    b = json.dumps({"cluster_name": "keep-b-" + rand_tag(4)}).encode()
    sock = socket.create_connection(("127.0.0.1", w.port), 15)
    s = w.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        s.sendall(post_head(key, "Content-Length: %d" % len(a)).encode() + b"\r\n\r\n" + a)
        got = b""
        while not (parse_responses(got) and parse_responses(got)[0][0] and
                   len(parse_responses(got)[0][2]) >= int(parse_responses(got)[0][1].get(
                       "content-length", 0))):
            chunk = s.recv(65536)
            check(chunk, "the server closed a keep-alive connection after the first answer")
            got += chunk
        eq(parse_responses(got)[0][0], 201, "first request on the connection (%r)" % got[:300])
        # the second request on the same connection: a Content-Length with leading zeros
        # after several spaces is still a plain Content-Length
        s.sendall(post_head(key, "Content-Length:   0%d" % len(b), "Connection: close").encode()
                  + b"\r\n\r\n" + b)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    eq([r[0] for r in parse_responses(got)], [201], "second request (%r)" % got[:300])
    # POST without any Content-Length: answered, and the connection closed (lws
    # would otherwise read up to 100 MiB more as its body)
    got, closed = raw_exchange(w, post_head(key, method="POST",
                                            path="/api/kubectl/tokens").encode() + b"\r\n\r\n")
    resps = parse_responses(got)
    eq(resps[0][0] if resps else None, 400, "POST without a body (%r)" % got[:300])
    check(closed, "POST without Content-Length: connection closed after the answer")
    still_serving(w, "valid framing")


@test(timeout=90)
def http_pipelined_requests_do_not_wedge_the_server(t):
    """lws 4.1.6 loops forever on a request pipelined behind a request with a body (or
    with one of its own): the whole server stopped answering.  Such a connection is
    now closed; GETs pipelined behind GETs keep working."""
    w = world()
    uid, key = w.new_user()

    def req(method, name=None, last=False):
        h = ["Connection: close"] if last else []
        body = json.dumps({"cluster_name": name}).encode() if name else b""
        if method == "POST":
            h.append("Content-Length: %d" % len(body))
        path = "/api/kubectl/tokens" if method == "POST" else "/api/kubectl/connections"
        return post_head(key, *h, method=method, path=path).encode() + b"\r\n\r\n" + body

    sent = set()
    for first, second in (("GET", "POST"), ("POST", "GET"), ("POST", "POST")):
        what = "%s then a pipelined %s" % (first, second)
        na, nb = "pipe-a-" + rand_tag(4), "pipe-b-" + rand_tag(4)
        sent |= {na, nb}
        got, closed = raw_exchange(w, req(first, na) + req(second, nb, last=True), timeout=10)
        check(closed, "%s: the connection must be closed" % what)
        resps = parse_responses(got)
        if resps:  # the first request may be answered (lws then answers the second itself)
            check(resps[0][0] in (200, 201), "%s: the first answer (%r)" % (what, got[:300]))
        r = w.get("/health", auth=False, timeout=10)
        eq(r.status, 200, "after %s: /health" % what)
        names = [x.get("cluster_name") for x in w.get("/api/kubectl/tokens", key=key).json["tokens"]]
        check(all(n in sent or not n.startswith("pipe-") for n in names),
              "%s: a token with a name nobody sent" % what, names)
    got, closed = raw_exchange(w, req("GET") + req("GET", last=True))
    eq([r[0] for r in parse_responses(got)], [200, 200], "two pipelined GETs")
    still_serving(w, "pipelined requests")


@test
def http_duplicate_singular_headers(t):
    w = world()
    uid, key = w.new_user()
    body = json.dumps({"cluster_name": "dup-" + rand_tag(4)}).encode()
    cl = "Content-Length: %d" % len(body)
    lines = ["POST /api/kubectl/tokens HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", cl]
    cases = [
        ("two Authorization headers (same key)",
         lines + ["Authorization: Bearer %s" % key, "Authorization: Bearer %s" % key]),
        ("two Authorization headers (another key second)",
         lines + ["Authorization: Bearer %s" % key, "Authorization: Bearer %s" % w.api_key]),
        ("two Host headers", lines + ["Authorization: Bearer %s" % key, "Host: evil.example"]),
        ("two Content-Type headers", lines + ["Authorization: Bearer %s" % key,
                                              "Content-Type: text/plain"]),
    ]
    for what, hdrs in cases:
        expect_refused_framing(w, what, "\r\n".join(hdrs), body, "DUPLICATE_HEADER", key)
    still_serving(w, "duplicate headers")


@test
def http_header_values_with_nul(t):
    """libwebsockets keeps a NUL inside a header value; as a C string
    "Bearer <key>\\0<anything>" was read as the key alone (201), where a proxy reads
    the whole line.  RFC 9110 5.5: such a request is refused, and the connection
    closed (what a proxy made of the rest is unknown)."""
    w = world()
    uid, key = w.new_user()
    body = json.dumps({"cluster_name": "nul-" + rand_tag(4)}).encode()
    cl = "Content-Length: %d" % len(body)
    lines = ["POST /api/kubectl/tokens HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: application/json", cl]
    cases = [
        ("NUL after the API key", lines + ["Authorization: Bearer %s\x00junk" % key]),
        ("NUL in a captured header (X-Request-ID)",
         lines + ["Authorization: Bearer %s" % key, "X-Request-ID: abc\x00def"]),
        ("NUL in a standard header (User-Agent)",
         lines + ["Authorization: Bearer %s" % key, "User-Agent: a\x00b"]),
    ]
    for what, hdrs in cases:
        expect_refused_framing(w, what, "\r\n".join(hdrs), body, "BAD_REQUEST", key)
    r = w.get("/api/kubectl/tokens", key=key)
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check(not any(n.startswith("nul-") for n in names), "a refused request made a token", names)
    still_serving(w, "header values with NUL")


@test
def http11_request_without_host(t):
    """RFC 9112 3.2: an HTTP/1.1 request without Host is answered 400.  A proxy
    routes by Host; one that passes such a request on (or fills in its own
    default) and a server that serves it can disagree on which site was asked
    for.  It was served.  HTTP/1.0 has no Host and is still served."""
    w = world()
    uid, key = w.new_user()
    body = json.dumps({"cluster_name": "nohost-" + rand_tag(4)}).encode()
    head = "\r\n".join(["POST /api/kubectl/tokens HTTP/1.1", "Authorization: Bearer %s" % key,
                         "Content-Type: application/json", "Content-Length: %d" % len(body)])
    expect_refused_framing(w, "HTTP/1.1 without Host", head, body, "BAD_REQUEST", key)
    got, _ = raw_exchange(w, b"GET /health HTTP/1.1\r\n\r\n")
    resps = parse_responses(got)
    check(resps and resps[0][0] == 400, "a GET without Host: 400", got[:300])
    check(b"must carry a Host header" in resps[0][2], "the answer says why", resps[0][2])
    got, _ = raw_exchange(w, b"GET /health HTTP/1.0\r\n\r\n")
    resps = parse_responses(got)
    check(resps and resps[0][0] == 200, "HTTP/1.0 without Host is served", got[:300])
    r = w.get("/api/kubectl/tokens", key=key)
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check(not any(n.startswith("nohost-") for n in names), "a refused request made a token", names)
    still_serving(w, "HTTP/1.1 without Host")


# ---------------------------------------------------------------------------
# identity headers: X-Cluster-ID, X-Org-ID
# ---------------------------------------------------------------------------
@test
def ws_cluster_id_missing_empty_or_too_long(t):
    w = world()
    tok = fresh_token(w)
    expect_ws_refused(w, ["--no-cluster-id"], "Invalid token", token=tok["token"],
                      what="no X-Cluster-ID header")
    expect_ws_refused(w, ["--cluster-id", " "], "Invalid token", token=tok["token"],
                      what="an empty X-Cluster-ID header")
    # 64 bytes and more used to be ignored, not compared: the token's id with a tail
    for extra in (64 - len(tok["cluster_id"]), 200):
        expect_ws_refused(w, ["--cluster-id", tok["cluster_id"] + "x" * extra], "Invalid token",
                          token=tok["token"], what="X-Cluster-ID of %d bytes" %
                          (len(tok["cluster_id"]) + extra))
    # the right header still connects
    a = w.legacy_agent(tok["token"])
    c = a.wait_event("connected", 30)
    eq(c.get("cluster_id"), tok["cluster_id"], "connected with the right id")


@test
def internal_unknown_org_is_provisioned(t):
    """The trusted backend names orgs its own auth created: the first request
    of one this server has not seen provisions it (never a 5xx), and it owns
    nothing yet: another org's cluster stays not found."""
    w = world()
    cid = STATE["tok"]["cluster_id"]
    org = "org-new-%s" % rand_tag(4)
    r = w.internal({"user_id": w.user_id, "cluster_id": cid, "command": "version --client",
                    "timeout": 10}, headers={"X-Org-ID": org})
    eq(r.status, 404, "internal execute in a new org for another org's cluster (%r)" % r)
    is_error_body(r, "CLUSTER_NOT_FOUND")
    hdrs = {"X-Internal-Secret": w.secret, "X-User-ID": w.user_id, "X-Org-ID": org}
    r = https_request(w.port, w.ctx, "GET", "/api/kubectl/connections", None, hdrs)
    eq(r.status, 200, "/api with the internal secret and a new X-Org-ID (%r)" % r)
    eq(r.json["connections"], [], "a new org has no connections")
    r = https_request(w.port, w.ctx, "GET", "/api/me", None, hdrs)
    eq(r.status, 200, "GET /api/me (%r)" % r)
    eq(r.json["org"]["created_by"], "backend", "the org was provisioned from the backend")
    # a malformed, empty or over-long one is a 400, not "absent", and provisions nothing
    for bad in ("", "a b", "x" * 65, "x" * 200, "a/b", "a%2fb", "\u00e9t\u00e9"):
        r = w.internal({"user_id": w.user_id, "cluster_id": cid, "command": "version --client",
                        "timeout": 10}, headers={"X-Org-ID": bad})
        eq(r.status, 400, "internal execute with X-Org-ID %r (%r)" % (bad[:20], r))
        is_error_body(r, "BAD_REQUEST")
    # 64 characters is the longest id accepted
    r = https_request(w.port, w.ctx, "GET", "/api/kubectl/tokens", None,
                      dict(hdrs, **{"X-Org-ID": "o" * 64}))
    eq(r.status, 200, "a 64-character X-Org-ID (%r)" % r)
    still_serving(w, "unknown organizations")


# ---------------------------------------------------------------------------
# NUL inside JSON strings
# ---------------------------------------------------------------------------
def expect_nul_refused(w, path, body_text, what, key=None, headers=None, internal=False):
    if internal:
        r = w.internal(body_text, headers=headers)
    else:
        r = w.post(path, body_text, key=key, headers=headers)
    eq(r.status, 400, "%s (%r)" % (what, r))
    is_error_body(r, "BAD_REQUEST")
    contains(r.get("error"), "\\u0000", "%s: the error names the NUL" % what)


@test
def json_nul_refused(t):
    w = world()
    uid, key = w.new_user()
    cid = STATE["tok"]["cluster_id"]
    kpath = "/api/clusters/%s/kubectl" % cid
    # kubectl: args and command; before the fix "a\u0000b" ran as "a"
    expect_nul_refused(w, kpath, '{"args": ["get", "--raw", "/fixture/echo/a\\u0000b"]}',
                       "kubectl args with \\u0000", key=key)
    expect_nul_refused(w, kpath, '{"args": ["get\\u0000", "--raw", "/fixture/echo/a"]}',
                       "kubectl args: \\u0000 at the end of a word", key=key)
    expect_nul_refused(w, kpath, '{"command": "get --raw /fixture/echo/a\\u0000b"}',
                       "kubectl command with \\u0000", key=key)
    expect_nul_refused(w, kpath, '{"args": ["version"], "args\\u0000x": 1}',
                       "\\u0000 in a key", key=key)
    expect_nul_refused(w, None, '{"user_id": "%s", "cluster_id": "%s", "timeout": 10, '
                       '"command": "get --raw /fixture/echo/a\\u0000b"}' % (w.user_id, cid),
                       "internal execute command with \\u0000", internal=True)
    # cloud_exec
    expect_nul_refused(w, "/api/cloud_exec",
                       '{"provider": "aws", "args": ["sts", "get-caller-identity\\u0000", "x"]}',
                       "cloud_exec args with \\u0000", key=key)
    expect_nul_refused(w, "/api/cloud_exec",
                       '{"provider": "aws\\u0000gcp", "command": "sts get-caller-identity"}',
                       "cloud_exec provider with \\u0000", key=key)
    # token creation: name and notes
    expect_nul_refused(w, "/api/kubectl/tokens", '{"cluster_name": "abc\\u0000def"}',
                       "token cluster_name with \\u0000", key=key)
    expect_nul_refused(w, "/api/kubectl/tokens", '{"cluster_name": "n", "notes": "x\\u0000y"}',
                       "token notes with \\u0000", key=key)
    expect_nul_refused(w, "/api/kubectl/tokens", b'{"cluster_name": "raw\x00nul"}',
                       "token cluster_name with a raw NUL byte", key=key)
    r = w.get("/api/kubectl/tokens", key=key)
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check(not {"abc", "n", "raw"} & set(names), "a token was created with a cut name", names)
    # an escaped backslash followed by "u0000" is just text, and other escapes still work
    name = "lit\\u0000eral \u00e9"
    r = w.post("/api/kubectl/tokens", json.dumps({"cluster_name": name}), key=key)
    eq(r.status, 201, "a literal backslash-u0000 in a name (%r)" % r)
    eq(r.get("cluster_name"), name, "the name comes back intact")
    # nothing may follow the object
    for body in ('{"cluster_name": "x"} {"cluster_name": "y"}', '{"cluster_name": "x"}garbage'):
        r = w.post("/api/kubectl/tokens", body, key=key)
        eq(r.status, 400, "body %r (%r)" % (body, r))
        is_error_body(r, "BAD_REQUEST")
    still_serving(w, "NUL inside JSON strings")



@test
def json_repeated_member_refused(t):
    """A member named twice: cJSON reads the first, a proxy in Python or Go the
    last, so the command a policy proxy saw was not the one run."""
    w = world()
    uid, key = w.new_user()
    cid = STATE["tok"]["cluster_id"]
    kpath = "/api/clusters/%s/kubectl" % cid
    cases = (
        (kpath, '{"args": ["get", "--raw", "/fixture/echo/first"], '
                '"args": ["get", "--raw", "/fixture/echo/last"]}', "kubectl args twice"),
        (kpath, '{"command": "get --raw /fixture/echo/first", '
                '"command": "get --raw /fixture/echo/last"}', "kubectl command twice"),
        ("/api/cloud_exec", '{"provider": "aws", "provider": "gcp", "command": "sts get-caller-identity"}',
         "cloud_exec provider twice"),
        ("/api/kubectl/tokens", '{"cluster_name": "first", "notes": {"a": 1, "a": 2}}',
         "a token's nested object with a member twice"),
    )
    for path, body, what in cases:
        r = w.post(path, body, key=key)
        eq(r.status, 400, "%s (%r)" % (what, r))
        is_error_body(r, "BAD_REQUEST")
        contains(r.get("error"), "appears more than once", "%s: the error says why" % what)
    r = w.internal('{"user_id": "%s", "cluster_id": "%s", "timeout": 10, "command": "version --client", '
                   '"command": "get --raw /fixture/echo/x"}' % (w.user_id, cid))
    eq(r.status, 400, "internal execute with command twice (%r)" % r)
    r = w.get("/api/kubectl/tokens", key=key)
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check("first" not in names, "a token was created from a body with a repeated member", names)
    # the same names in different objects, or differing in case, are distinct members
    r = w.post(kpath, '{"args": ["get", "--raw", "/fixture/echo/ok"], "Args": 1}', key=key)
    check(r.status != 400 or "appears more than once" not in (r.get("error") or ""),
          "names differing in case are distinct (%r)" % r)
    still_serving(w, "repeated JSON members")

if __name__ == "__main__":
    main()
