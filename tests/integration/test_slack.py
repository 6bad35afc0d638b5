#!/usr/bin/env python3
"""test_slack.py — the Slack connector end to end: OAuth v2 install (login URL,
callback, Slack's refusals such as bad_redirect_uri passed on with the guide's
fix, state misuse), the incidents channel (conversations.list with cursor
pages, conversations.info/join), the Events API endpoint (signatures made by
tests/fixtures/slack_sign.mjs with Node's crypto, independently of the server:
valid, wrong, missing, stale, future; retries; url_verification; malformed,
oversized; unknown workspace adopted when it connects) and incident notifications through the chat kit
(announcement, resolution and replies in the incident's thread, Slack's 429
with Retry-After, a bot removed from its channel).

Peer: tests/fixtures/slack_api.mjs stands in for Slack's Web API (method by
method, api.slack.com/methods); Slack's token method answers HTTP 200
{"ok": false} for refusals, which no standard OAuth mock does.
"""
import base64
import hashlib
import json
import os
import sqlite3
import sys
import subprocess
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, NODE, T, World, _SUITE, HttpFixture, check, contains, eq,  # noqa: E402
                     https_request, main, post_many, rand_tag, test, wait_until)

SIGNING = "8f742231b10e8888abcd99yyyzzz85a5-" + rand_tag(6)
CLIENT_SECRET = "slack-secret-" + rand_tag(8)
_env = {}


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx = HttpFixture(st, "slack", "slack_api.mjs")
        w = World(st, "suite-server", start=False)
        w.extra_env.update({
            "SLACK_CLIENT_ID": "slack-client", "SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "SLACK_SIGNING_SECRET": SIGNING,
            "SLACK_REDIRECT_URI": "https://127.0.0.1:%d/slack/callback" % w.port,
            "SLACK_AUTHORIZE_URL": fx.base + "/oauth/v2/authorize",
            "SLACK_TOKEN_URL": fx.base + "/oauth.v2.access",
            "SLACK_API_BASE_URL": fx.base,
            "FRONTEND_URL": "https://aurora.example",
            "AURORA_CHAT_POLL_S": "1",
            # no test here waits for a provider timeout: ample, for a loaded machine
            "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        })
        w.start()
        w.bootstrap()
        _env["fx"] = fx
        _SUITE["world"] = w
    w = _SUITE["world"]
    fx = _env["fx"]
    fx.config(client_id="slack-client", client_secret=CLIENT_SECRET,
              redirect_uri=w.extra_env["SLACK_REDIRECT_URI"])
    return w, fx


def team():
    return "T" + rand_tag(8).upper()


def login_url(w, key):
    r = w.frontend_get("/slack/login", key=key)
    eq(r.status, 302, "GET /slack/login (%r)" % r)
    return r.headers["location"]


def callback(w, state, code):
    q = urllib.parse.urlencode({"code": code, "state": state})
    return https_request(w.port, w.ctx, "GET", "/slack/callback?" + q)


def connect(w, fx, key, team_id, channel="C0INCIDENT"):
    fx.config(team_id=team_id, team_name="Acme " + team_id)
    u = urllib.parse.urlsplit(login_url(w, key))
    state = urllib.parse.parse_qs(u.query)["state"][0]
    code = fx.ctl("/_fixture/code", {})["code"]
    r = callback(w, state, code)
    eq(r.status, 302, "callback (%r)" % r)
    contains(r.headers["location"], "provider=slack&status=connected", "browser sent on")
    if channel:
        r = w.post("/slack/channel", {"channel_id": channel}, key=key)
        eq((r.status, r.get("channel_id")), (200, channel), "channel chosen (%r)" % r)


def sign(body, ts=None, secret=SIGNING):
    """Slack's headers for body, signed by tests/fixtures/slack_sign.mjs (Node's crypto)."""
    ts = str(int(time.time()) if ts is None else ts)
    out = subprocess.run([NODE, os.path.join(FIXTURES, "slack_sign.mjs")], check=True, capture_output=True,
                         input=json.dumps({"secret": secret, "timestamp": ts,
                                           "body": base64.b64encode(body).decode()}).encode())
    sig = json.loads(out.stdout)["signature"]
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig, "Content-Type": "application/json"}


def post_event(w, body, headers):
    return https_request(w.port, w.ctx, "POST", "/slack/events", body, headers)


def mention(team_id, text="<@U0AURORABOT> why is checkout slow?", thread=None, event_id=None):
    ev = {"type": "app_mention", "user": "U0ALICE", "text": text, "ts": "1700000000.000100",
          "channel": "C0INCIDENT", "event_ts": "1700000000.000100"}
    if thread:
        ev["thread_ts"] = thread
    return json.dumps({"token": "legacy", "team_id": team_id, "api_app_id": "A0AURORA",
                       "event": ev, "type": "event_callback",
                       "event_id": event_id or "Ev" + rand_tag(10).upper(),
                       "event_time": int(time.time())}).encode()


def events(w, key):
    r = w.get("/api/slack/events", key=key)
    eq(r.status, 200, "GET /api/slack/events (%r)" % r)
    return r.json["events"]


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "server still serving")


def internal(w, method, path, org, body=None):
    return https_request(w.port, w.ctx, method, path, body,
                         {"X-Internal-Secret": w.secret, "X-Org-ID": org})


def alert(w, org, fp, state="firing"):
    # The service is the fingerprint's: alerts of one service would join one incident.
    a = {"source": "grafana", "delivery_id": "sl-%s" % rand_tag(10), "index": 0,
         "fingerprint": fp, "state": state, "title": "Checkout <latency> & errors",
         "service": "svc-" + fp, "severity": "critical", "occurred_at": "2026-11-02T10:00:00Z"}
    r = internal(w, "POST", "/internal/incidents/alerts", org, a)
    check(r.status in (200, 201), "alert intake (%r)" % r)
    return r.json


def posts(fx, channel="C0INCIDENT"):
    return [p for p in fx.stats()["posts"] if p["channel"] == channel]


# ---------------------------------------------------------------------------
@test
def test_not_configured(t):
    w = World(t, "bare")
    r = w.frontend_get("/slack/login", key=w.api_key)
    eq(r.status, 503, "login without client id/secret (%r)" % r)
    contains(r.get("error"), "Slack OAuth credentials not configured", "the guide's message")
    contains(r.get("error"), "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET", "what to set")
    r = https_request(w.port, w.ctx, "POST", "/slack/events", b"{}", sign(b"{}"))
    eq(r.status, 401, "events without a signing secret (%r)" % r)
    contains(r.get("error"), "SLACK_SIGNING_SECRET", "names the setting")


@test
def test_login_url(t):
    w, fx = world()
    _, _, key = w.new_org()
    u = urllib.parse.urlsplit(login_url(w, key))
    q = urllib.parse.parse_qs(u.query)
    eq(u.path, "/oauth/v2/authorize", "Slack's v2 authorization page")
    eq(q["client_id"], ["slack-client"], "client_id")
    eq(q["scope"], ["chat:write,channels:read,channels:history,channels:join,app_mentions:read,users:read"],
       "the guide's bot scopes")
    eq(q["redirect_uri"], [w.extra_env["SLACK_REDIRECT_URI"]], "redirect_uri")
    check(len(q["state"][0]) >= 32, "a state", q)
    r = w.post("/slack/login", {}, key=key)
    eq(r.status, 200, "POST /slack/login (%r)" % r)
    contains(r.get("authorization_url"), "/oauth/v2/authorize?", "JSON form")
    eq(w.get("/slack/login", auth=False).status, 401, "login needs the caller's API key")


@test
def test_oauth_end_to_end(t):
    w, fx = world()
    org, _, key = w.new_org()
    tid = team()
    connect(w, fx, key, tid, channel=None)
    st = w.get("/api/connectors/status", key=key).json["connectors"]["slack"]
    eq((st["connected"], st["team_id"], st["bot_user_id"], st["channel_chosen"]),
       (True, tid, "U0AURORABOT", False), "status after install (%r)" % st)
    check("xoxb" not in json.dumps(st), "no token in the status", st)
    eq(st.get("redirect_uri"), w.extra_env["SLACK_REDIRECT_URI"], "the redirect URI to register (SLACK_REDIRECT_URI)")
    s = w.get("/slack/status", key=key).json
    eq((s["events_path"], s["signing_secret_configured"]), ("/slack/events", True), "slack status")


@test
def test_oauth_refusals_passed_on(t):
    w, fx = world()
    _, _, key = w.new_org()
    fx.config(redirect_uri="https://elsewhere.example/slack/callback")
    u = urllib.parse.urlsplit(login_url(w, key))
    state = urllib.parse.parse_qs(u.query)["state"][0]
    r = callback(w, state, fx.ctl("/_fixture/code", {})["code"])
    eq((r.status, r.get("error_code")), (400, "SLACK_REDIRECT_MISMATCH"), "bad_redirect_uri (%r)" % r)
    contains(r.get("error"), "bad_redirect_uri", "Slack's word")
    contains(r.get("error"), "Redirect URL must match exactly in Slack App settings", "the guide's fix")
    fx.config(redirect_uri=w.extra_env["SLACK_REDIRECT_URI"])
    # The state was consumed by the failed attempt; a bogus one is refused.
    r = callback(w, state, fx.ctl("/_fixture/code", {})["code"])
    eq((r.status, r.get("error_code")), (400, "OAUTH_STATE_INVALID"), "state used twice (%r)" % r)
    r = callback(w, "x" * 40, "whatever")
    eq((r.status, r.get("error_code")), (400, "OAUTH_STATE_INVALID"), "unknown state (%r)" % r)
    u = urllib.parse.urlsplit(login_url(w, key))
    state = urllib.parse.parse_qs(u.query)["state"][0]
    r = callback(w, state, "not-a-code")
    eq((r.status, r.get("error_code")), (400, "SLACK_GRANT_INVALID"), "invalid_code (%r)" % r)
    u = urllib.parse.urlsplit(login_url(w, key))
    state = urllib.parse.parse_qs(u.query)["state"][0]
    r = https_request(w.port, w.ctx, "GET", "/slack/callback?error=access_denied&state=" + state)
    eq((r.status, r.get("error_code")), (400, "SLACK_AUTHORIZATION_FAILED"), "user said no (%r)" % r)
    st = w.get("/api/connectors/status", key=key).json["connectors"]["slack"]
    eq(st["connected"], False, "nothing connected by refusals")
    serving(w)


@test
def test_channels(t):
    w, fx = world()
    _, _, key = w.new_org()
    eq(w.get("/slack/channels", key=key).status, 404, "channels before connecting")
    fx.config(channels=[{"id": "C0INCIDENT", "name": "incidents"}, {"id": "C0GENERAL", "name": "general"},
                        {"id": "C0OLD", "name": "old", "is_archived": True},
                        {"id": "C0THREE", "name": "three"}, {"id": "C0FOUR", "name": "four"},
                        {"id": "C0FIVE", "name": "five"}])
    connect(w, fx, key, team(), channel=None)
    r = w.get("/slack/channels", key=key)
    eq(r.status, 200, "channels (%r)" % r)
    eq([c["id"] for c in r.json["channels"]], ["C0INCIDENT", "C0GENERAL", "C0THREE", "C0FOUR", "C0FIVE"],
       "every page, archived left out")
    cursors = [c["query"].get("cursor") for c in fx.stats()["calls"] if c["method"] == "conversations.list"]
    check(len([c for c in cursors[-3:] if c]) == 2, "three pages, two with a cursor", cursors)
    for body, status, what in (({"channel_id": "nope"}, 400, "malformed id"), ({}, 400, "missing"),
                               ({"channel_id": 5}, 400, "not a string"),
                               ({"channel_id": "C0MISSING"}, 404, "unknown channel"),
                               ({"channel_id": "C0OLD"}, 409, "archived channel")):
        r = w.post("/slack/channel", body, key=key)
        eq(r.status, status, "%s (%r)" % (what, r))
    r = w.post("/slack/channel", {"channel_id": "C0GENERAL"}, key=key)
    eq((r.status, r.get("channel_name"), r.get("joined")), (200, "general", True), "chosen and joined")
    st = w.get("/api/connectors/status", key=key).json["connectors"]["slack"]
    eq((st["channel_id"], st["channel_chosen"]), ("C0GENERAL", True), "kept in the connection")
    fx.config(channels=[{"id": "C0INCIDENT", "name": "incidents"}, {"id": "C0GENERAL", "name": "general"},
                        {"id": "C0OLD", "name": "old", "is_archived": True}])


@test
def test_events_signed_and_stored(t):
    w, fx = world()
    _, _, key = w.new_org()
    tid = team()
    connect(w, fx, key, tid)
    body = mention(tid)
    r = post_event(w, body, sign(body))
    eq((r.status, r.get("duplicate")), (200, False), "signed mention stored (%r)" % r)
    first = r.get("id")
    # Slack retries when it did not see our 200 in time: same event_id, a new timestamp.
    h = sign(body)
    h["X-Slack-Retry-Num"] = "1"
    h["X-Slack-Retry-Reason"] = "http_timeout"
    r = post_event(w, body, h)
    eq((r.status, r.get("duplicate"), r.get("id")), (200, True, first), "retry is a duplicate (%r)" % r)
    wait_until(lambda: any(e["id"] == first and e["status"] == "processed" for e in events(w, key)),
               15, what="the mention processed")
    evs = [e for e in events(w, key) if e["id"] == first]
    eq((len(evs), evs[0]["event"], evs[0]["verified"]), (1, "app_mention", True), "listed once")
    r = w.get("/api/slack/events/" + first, key=key)
    eq(r.json["payload"]["event"]["text"], "<@U0AURORABOT> why is checkout slow?", "payload kept")
    # Slack's legacy verification token, in every Events API body, is not kept
    check("token" not in r.json["payload"] and b"legacy" not in r.body, "the verification token stored", r.json)
    # a bot's own message is stored and ignored
    bot = json.dumps({"team_id": tid, "type": "event_callback", "event_id": "Ev" + rand_tag(8).upper(),
                      "event": {"type": "message", "bot_id": "B0AURORA", "text": "hi", "channel": "C0INCIDENT",
                                "ts": "1.2"}}).encode()
    r = post_event(w, bot, sign(bot))
    eq(r.status, 200, "bot message accepted (%r)" % r)
    wait_until(lambda: any(e["id"] == r.json["id"] and e["status"] == "ignored" for e in events(w, key)),
               15, what="the bot message ignored")


@test
def test_older_rows_token_removed_by_admin(t):
    """Deliveries stored before the verification token was removed keep it, and the
    event read API hands it out; `admin redact-webhooks` rewrites them as new ones
    are stored (beside the running server), and a second pass changes nothing.  The
    old row is made by writing what an older server stored (the signed body, token
    and all) into a real delivery's row with sqlite3."""
    w, fx = world()
    _, _, key = w.new_org()
    tid = team()
    connect(w, fx, key, tid)
    legacy = "legacy-" + rand_tag(12)
    body = mention(tid).replace(b'"token": "legacy"', ('"token": "%s"' % legacy).encode())
    r = post_event(w, body, sign(body))
    eq(r.status, 200, "signed mention stored (%r)" % r)
    eid = r.get("id")
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=30)
    try:
        with con:
            n = con.execute("UPDATE webhook_deliveries SET body = ? WHERE id = ?",
                            (body.decode(), eid)).rowcount
    finally:
        con.close()
    eq(n, 1, "the old-style row planted")
    r = w.get("/api/slack/events/" + eid, key=key)
    eq(r.json["payload"].get("token"), legacy, "before the pass the read API shows the token")
    got = w.admin("redact-webhooks")
    eq((got["redacted"], got["connectors"]["slack"]["redacted"]), (1, 1), "one row rewritten: %r" % got)
    check(got["connectors"]["slack"]["rows"] >= 1 and got["rows"] >= got["connectors"]["slack"]["rows"],
          "rows counted", got)
    eq(sorted(got["connectors"]), ["google_chat", "sentry", "slack"],
       "every connector whose bodies carry a credential is passed over")
    r = w.get("/api/slack/events/" + eid, key=key)
    eq(r.status, 200, "the delivery still reads (%r)" % r)
    check(legacy not in r.body.decode() and "token" not in r.json["payload"], "token gone from the API", r.json)
    eq(r.json["payload"]["event"]["text"], "<@U0AURORABOT> why is checkout slow?", "the rest kept")
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        stored, digest = con.execute("SELECT body, body_sha256 FROM webhook_deliveries WHERE id = ?",
                                     (eid,)).fetchone()
        leaked = con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE body LIKE ?",
                             ("%" + legacy + "%",)).fetchone()[0]
    finally:
        con.close()
    eq(leaked, 0, "no row holds the token")
    eq(digest, hashlib.sha256(stored.encode()).hexdigest(), "body_sha256 follows the new body")
    # nor do the files: the old bytes are zeroed (secure_delete) and the WAL that
    # held the old page versions is checkpointed and truncated; a reader of the
    # server's may keep it, and the command says so: run again, as the operator would
    if not got["wal_truncated"]:
        w.redact_until_wal_truncated("redact-webhooks")
    eq(w.data_files_holding(legacy.encode()), [], "database files still holding the token")
    got = w.admin("redact-webhooks")
    eq(got["redacted"], 0, "a second pass changes nothing: %r" % got)
    again = mention(tid)
    r = post_event(w, again, sign(again))
    eq(r.status, 200, "the server still takes deliveries (%r)" % r)


@test
def test_events_refused(t):
    w, fx = world()
    _, _, key = w.new_org()
    tid = team()
    connect(w, fx, key, tid, channel=None)
    before = len(events(w, key))
    body = mention(tid)
    now = int(time.time())
    cases = [
        ({"Content-Type": "application/json"}, 401, "MISSING_SIGNATURE", "unsigned"),
        (dict(sign(body), **{"X-Slack-Signature": "v0=" + "0" * 64}), 401, "INVALID_SIGNATURE", "wrong MAC"),
        (sign(body, secret="another-secret"), 401, "INVALID_SIGNATURE", "another app's secret"),
        (sign(body + b" "), 401, "INVALID_SIGNATURE", "body changed after signing"),
        ({k: v for k, v in sign(body).items() if k != "X-Slack-Request-Timestamp"}, 401, None,
         "no timestamp"),
        # well past the 300 s window either way: the test itself may take seconds on a loaded machine
        (sign(body, ts=now - 400), 401, "STALE_TIMESTAMP", "older than 5 minutes"),
        (sign(body, ts=now + 400), 401, "STALE_TIMESTAMP", "from the future"),
        (sign(body, ts="abc"), 401, None, "timestamp not a number"),
    ]
    for headers, status, code, what in cases:
        r = post_event(w, body, headers)
        eq(r.status, status, "%s (%r)" % (what, r))
        if code:
            eq(r.get("error_code"), code, "%s code" % what)
    # Signed but malformed: truncated JSON, not an object, not Slack's shape.
    for bad, what in ((body[:-5], "truncated"), (b"[1,2]", "an array"), (b'{"no":"type"}', "no type"),
                      (b'{"type":"event_callback","team_id":"T1"}', "no event")):
        r = post_event(w, bad, sign(bad))
        eq(r.status, 400, "%s (%r)" % (what, r))
    big = b'{"type":"event_callback","pad":"' + b"a" * (1024 * 1024) + b'"}'
    r = post_event(w, big, sign(big))
    eq(r.status, 413, "oversized (%r)" % r)
    eq(len(events(w, key)), before, "nothing stored by refused requests")
    serving(w)


@test
def test_url_verification(t):
    w, _ = world()
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()
    r = post_event(w, body, sign(body))
    eq((r.status, r.get("challenge")), (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
       "challenge echoed (%r)" % r)
    r = post_event(w, body, {"Content-Type": "application/json"})
    eq(r.status, 401, "an unsigned challenge is refused (%r)" % r)


@test
def test_unknown_workspace_adopted_when_it_connects(t):
    w, fx = world()
    _, _, key_a = w.new_org()
    _, _, key_b = w.new_org()
    tid = team()
    body = mention(tid, text="early")
    r = post_event(w, body, sign(body))
    eq(r.status, 200, "an event of a workspace nobody connected yet is kept (%r)" % r)
    first = r.json["id"]
    connect(w, fx, key_a, team(), channel=None)  # another workspace: not theirs
    check(all(e["id"] != first for e in events(w, key_a)), "not shown to another organization")
    connect(w, fx, key_b, tid, channel=None)
    wait_until(lambda: any(e["id"] == first for e in events(w, key_b)), 15,
               what="the early event assigned to the workspace's organization")
    check(all(e["id"] != first for e in events(w, key_a)), "still not shown to the other organization")


def sign_many(bodies, ts):
    """Slack's signatures of every body at timestamp ts, by one run of slack_sign.mjs."""
    out = subprocess.run([NODE, os.path.join(FIXTURES, "slack_sign.mjs")], check=True, capture_output=True,
                         input=json.dumps({"secret": SIGNING, "timestamp": ts,
                                           "bodies": [base64.b64encode(b).decode() for b in bodies]}).encode())
    return json.loads(out.stdout)["signatures"]


@test(timeout=300)
def test_new_workspace_adopted_behind_unassignable_backlog(t):
    """Events of a workspace nobody will connect pile up without an organization
    (more than the 1,000 oldest unassigned rows adoption used to read).  A
    workspace connected after them still gets its earlier event."""
    w, fx = world()
    _, _, key = w.new_org()
    never, tid = team(), team()
    ts = str(int(time.time()))
    junk = [mention(never, text="junk %d" % i) for i in range(1100)]
    sigs = sign_many(junk, ts)
    statuses = post_many(w, "/slack/events", junk, lambda i: {
        "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sigs[i], "Content-Type": "application/json"})
    eq({s: statuses.count(s) for s in set(statuses)}, {200: len(junk)}, "every event accepted")
    body = mention(tid, text="early, behind the backlog")
    r = post_event(w, body, sign(body))
    eq(r.status, 200, "the early event is kept (%r)" % r)
    early = r.json["id"]
    connect(w, fx, key, tid, channel=None)
    wait_until(lambda: any(e["id"] == early for e in events(w, key)), 30,
               what="the early event assigned to the newly connected workspace's organization")
    eq([e["id"] for e in events(w, key)], [early], "only its own event, none of the backlog")
    serving(w)


def chat_rows(w, org, status=None):
    q = "?status=" + status if status else ""
    r = internal(w, "GET", "/internal/chat/messages" + q, org)
    eq(r.status, 200, "chat outbox (%r)" % r)
    return r.json["messages"]


@test(timeout=120)
def test_incident_notifications_in_thread(t):
    w, fx = world()
    org, _, key = w.new_org()
    connect(w, fx, key, team())
    n0 = len(posts(fx))
    fp = "fp-" + rand_tag()
    inc = alert(w, org, fp)["incident_id"]
    wait_until(lambda: len(posts(fx)) == n0 + 1, 20, what="the incident announced in Slack")
    first = posts(fx)[-1]
    eq(first["thread_ts"], None, "the announcement starts the thread")
    contains(first["text"], "Checkout &lt;latency&gt; &amp; errors", "title, mrkdwn-escaped")
    contains(json.dumps(first["blocks"]), "https://aurora.example/incidents/" + inc, "View Investigation link")
    alert(w, org, fp, state="resolved")
    wait_until(lambda: len(posts(fx)) == n0 + 2, 20, what="the resolution posted")
    eq(posts(fx)[-1]["thread_ts"], first["ts"], "the resolution is a reply in the thread")
    contains(posts(fx)[-1]["text"], "Incident resolved", "says so")
    r = internal(w, "POST", "/internal/chat/messages", org, {"incident_id": inc, "text": "Root cause: a bad deploy"})
    eq((r.status, r.get("queued")), (202, 1), "reply queued (%r)" % r)
    wait_until(lambda: len(posts(fx)) == n0 + 3, 20, what="the reply posted")
    eq((posts(fx)[-1]["thread_ts"], posts(fx)[-1]["text"]), (first["ts"], "Root cause: a bad deploy"),
       "the reply in the thread")
    # A reply in a thread named by Slack ids (an @mention's thread).
    r = internal(w, "POST", "/internal/chat/messages", org,
                 {"connector": "slack", "channel": "C0INCIDENT", "thread": "1700000000.000100", "text": "On it"})
    eq(r.status, 202, "named-thread reply (%r)" % r)
    wait_until(lambda: len(posts(fx)) == n0 + 4, 20, what="the named-thread reply posted")
    eq(posts(fx)[-1]["thread_ts"], "1700000000.000100", "in the named thread")


@test(timeout=120)
def test_alert_fields_cannot_ping_or_link(t):
    """Title, service and summary come from webhooks anyone holding a webhook
    URL can send: in Slack none of them may become a mention (<!channel>,
    <!here>, <@U…>) or a disguised link (<https://evil|text>)."""
    w, fx = world()
    org, _, key = w.new_org()
    connect(w, fx, key, team())
    n0 = len(posts(fx))
    a = {"source": "grafana", "delivery_id": "sl-%s" % rand_tag(10), "index": 0,
         "fingerprint": "fp-" + rand_tag(), "state": "firing", "title": "<!channel> checkout down",
         "service": "<!here> <@U0BOSS> <https://evil.example|aurora.example>",
         "severity": "critical", "message": "<!everyone> see <https://evil.example|the runbook> or https://bare.evil.example/x #general",
         "occurred_at": "2026-11-02T10:00:00Z"}
    r = internal(w, "POST", "/internal/incidents/alerts", org, a)
    check(r.status in (200, 201), "alert intake (%r)" % r)
    wait_until(lambda: len(posts(fx)) == n0 + 1, 20, what="the incident announced in Slack")
    p = posts(fx)[-1]
    shown = json.dumps([p["text"], p["blocks"]], ensure_ascii=False)
    for bad in ("<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<https://evil.example|"):
        check(bad not in shown, "%s is not Slack markup in the post" % bad, shown)
    contains(p["text"], "&lt;!here&gt; &lt;@U0BOSS&gt;", "the service shown, escaped")
    # Escaping covers Slack's markup, not its auto-parsing: a text object
    # that is not verbatim has bare URLs (the summary's) made links and
    # channel names and some mentions resolved.  Every one from alert text.
    contains(shown, "https://bare.evil.example/x", "the bare URL is in the post")
    texts = [b["text"] for b in p["blocks"] if b.get("type") == "section"]
    check(texts and all(o.get("type") != "mrkdwn" or o.get("verbatim") is True for o in texts),
          "every mrkdwn text object is verbatim (no auto-links, no parsed mentions)", p["blocks"])


@test(timeout=120)
def test_rate_limit_and_rejoin(t):
    w, fx = world()
    org, _, key = w.new_org()
    connect(w, fx, key, team())
    n0 = len(posts(fx))
    fx.ctl("/_fixture/fail", {"method": "chat.postMessage", "status": 429, "retry_after": 1, "count": 1})
    alert(w, org, "fp-" + rand_tag())
    wait_until(lambda: len(posts(fx)) == n0 + 1, 30, what="posted after Slack's Retry-After")
    # The fixture records the post as it arrives; the outbox row turns "sent"
    # only once the server has read Slack's reply and committed it.
    wait_until(lambda: len(chat_rows(w, org, "sent")) == 1, 30, what="the outbox row marked sent")
    sent = chat_rows(w, org, "sent")
    eq((len(sent), sent[0]["attempts"]), (1, 2), "one retry (%r)" % sent)
    # The bot was removed from the channel: joined again, then posted.
    fx.ctl("/_fixture/kick", {"channel": "C0INCIDENT"})
    alert(w, org, "fp-" + rand_tag())
    wait_until(lambda: len(posts(fx)) == n0 + 2, 30, what="posted after joining again")
    joins = [c for c in fx.stats()["calls"] if c["method"] == "conversations.join"]
    check(len(joins) >= 2, "joined again", joins)
    # A channel that is gone: dropped with Slack's reason, not retried for ever.
    fx.ctl("/_fixture/fail", {"method": "chat.postMessage", "error": "channel_not_found", "count": 1})
    alert(w, org, "fp-" + rand_tag())
    wait_until(lambda: len(chat_rows(w, org, "dropped")) == 1, 30, what="dropped")
    contains(chat_rows(w, org, "dropped")[0]["last_error"], "channel_not_found", "the reason kept")


@test
def test_disconnect_revokes(t):
    w, fx = world()
    _, _, key = w.new_org()
    connect(w, fx, key, team(), channel=None)
    r = w.request("DELETE", "/api/connectors/slack", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    check(any(c["method"] == "auth.revoke" for c in fx.stats()["calls"]), "auth.revoke called")
    eq(w.get("/api/connectors/status", key=key).json["connectors"]["slack"]["connected"], False,
       "disconnected")
    eq(w.get("/slack/channels", key=key).status, 404, "no channels without a connection")


@test(timeout=120)
def test_disconnect_keeps_workspace_shared_with_another_org(t):
    """Slack has one bot user and one bot token per app and workspace: two
    organizations that installed Aurora in the same workspace share them, and
    auth.revoke deactivates that bot user.  One of them disconnecting must not
    revoke it (the other still posts); the last one does."""
    w, fx = world()
    org1, _, key1 = w.new_org()
    org2, _, key2 = w.new_org()
    tid = team()
    connect(w, fx, key1, tid)
    connect(w, fx, key2, tid)
    calls0 = len(fx.stats()["calls"])
    r = w.request("DELETE", "/api/connectors/slack", key=key1)
    eq(r.status, 200, "first organization disconnects (%r)" % r)
    revokes = [c for c in fx.stats()["calls"][calls0:] if c["method"] == "auth.revoke"]
    eq(revokes, [], "the workspace's bot token is not revoked while another organization uses it")
    eq(w.get("/api/connectors/status", key=key1).json["connectors"]["slack"]["connected"], False,
       "the first organization is disconnected")
    n0 = len(posts(fx))
    alert(w, org2, "fp-" + rand_tag())
    wait_until(lambda: len(posts(fx)) == n0 + 1 or chat_rows(w, org2, "dropped"), 30,
               what="the other organization's incident posted or dropped")
    eq(chat_rows(w, org2, "dropped"), [], "nothing dropped for the other organization")
    eq(len(posts(fx)), n0 + 1, "the other organization still posts")
    calls1 = len(fx.stats()["calls"])
    r = w.request("DELETE", "/api/connectors/slack", key=key2)
    eq(r.status, 200, "the last organization disconnects (%r)" % r)
    check(any(c["method"] == "auth.revoke" for c in fx.stats()["calls"][calls1:]),
          "the last connection of the workspace revokes the token")


if __name__ == "__main__":
    main()
