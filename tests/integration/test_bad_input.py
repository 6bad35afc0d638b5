#!/usr/bin/env python3
"""Hostile-input tests.  Every case is followed by a check that the server still
serves: /health, the API, and a command through another (healthy) agent.

WebSocket cases use tests/fixtures/legacy_agent.js as a raw client (independent
`ws` implementation); HTTP cases use http.client over TLS."""

import base64
import json
import os
import secrets

from harness import (check, eq, https_request, main, rand_tag,
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
    c = a.wait_close(10)
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
    c = a.wait_event("connected", 10)
    eq(c.get("cluster_id"), tok["cluster_id"], "connected with the right id")


# ---------------------------------------------------------------------------
# frames on an authenticated connection
# ---------------------------------------------------------------------------
def connected_legacy(w, args=()):
    tok = fresh_token(w)
    a = w.legacy_agent(tok["token"], list(args))
    a.wait_event("connected", 10)
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
    wait_until(lambda: acks() > n, 5, 0.05, "heartbeat_ack after the garbage frames")
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
    up = a.wait_event("upgrade", 10)
    eq(up.get("protocol"), "aurora-tunnel.v2", "the server must select the offered v2 subprotocol")
    a.wait_event("connected", 10)
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
    c = a.wait_event("connected", 10)
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
    wait_until(lambda: acks() > n, 5, 0.05, "heartbeat_ack after the bad v2 frames")
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
    c = a.wait_close(10)
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
    for body in ("{", '{"cluster_name": 7}', '{"notes": "no name"}', '{"cluster_name": ""}',
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


if __name__ == "__main__":
    main()
