#!/usr/bin/env python3
"""test_pagerduty.py — the PagerDuty connector (connector guide: Observability
Tools > PagerDuty): OAuth (Option A), API token (Option B), the read API and the
Generic Webhooks v3 intake.

Peer: tests/fixtures/pagerduty_api.mjs stands in for PagerDuty — its OAuth 2.0
server (oauth2-mock-server from npm on identity.pagerduty.com's /oauth/authorize,
/oauth/token, /oauth/revoke, as PagerDuty's "Obtaining a User OAuth Token via
Code Grant / via PKCE" docs describe them) and its REST API v2 (/users/me,
/abilities, /incidents, /incidents/{id}/alerts, /services with offset/limit/more
pagination, "Authorization: Token token=…").

Webhook payloads follow PagerDuty's "Webhooks v3 Overview" (event.id,
event.event_type, event.occurred_at, event.data = an incident); their
X-PagerDuty-Signature ("v1=<hex HMAC-SHA256 of the raw body>", comma-separated
during a rotation, per "Verifying Signatures") is computed here with Python's
hmac, independently of the server's code.
"""
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SERVER_BIN, T, World, _SUITE, HttpFixture, Postgres, check, contains, eq,  # noqa: E402
                     https_request, main, rand_tag, sanitizer_reports, test, wait_until,
                     within_one_window)

CLIENT_SECRET = "pd-client-secret-" + rand_tag(8)
USER_KEY = "u+" + rand_tag(18)
ACCOUNT_KEY = "y_" + rand_tag(18)
_env = {}


# ---------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------
def incident(n, status="triggered", service="PSVC001"):
    return {"id": "Q%06d" % n, "type": "incident", "incident_number": n, "title": "Incident %d" % n,
            "status": status, "urgency": "high", "created_at": "2026-12-01T10:00:00Z",
            "html_url": "https://acme.pagerduty.com/incidents/Q%06d" % n,
            "service": {"id": service, "summary": "Checkout API", "type": "service_reference"},
            "priority": {"id": "PPRIO1", "summary": "P1", "type": "priority_reference"}}


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        pd = HttpFixture(st, "pagerduty", "pagerduty_api.mjs")
        w = World(st, "suite-server", start=False)
        env = fixture_env(pd, w)
        env["NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH"] = "true"
        w.extra_env.update(env)
        w.start()
        w.bootstrap()
        configure(pd, env)
        _env["pd"] = pd
        _SUITE["world"] = w
    return _SUITE["world"]


def fixture_env(pd, w):
    return {
        "PAGERDUTY_CLIENT_ID": "pd-client", "PAGERDUTY_CLIENT_SECRET": CLIENT_SECRET,
        "PAGERDUTY_REDIRECT_URI": "https://127.0.0.1:%d/pagerduty/oauth/callback" % w.port,
        "PAGERDUTY_OAUTH_AUTHORIZE_URL": pd.base + "/oauth/authorize",
        "PAGERDUTY_OAUTH_TOKEN_URL": pd.base + "/oauth/token",
        "PAGERDUTY_OAUTH_REVOKE_URL": pd.base + "/oauth/revoke",
        "PAGERDUTY_API_BASE_URL": pd.base,
        "PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE": "100000",
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
    }


def configure(pd, env):
    pd.config(client_id="pd-client", client_secret=CLIENT_SECRET,
              redirect_uris=[env["PAGERDUTY_REDIRECT_URI"]],
              user_keys={USER_KEY: {"id": "PUSER01", "email": "oncall@example.test", "name": "On Call"}},
              account_keys=[ACCOUNT_KEY],
              incidents=[incident(i, "triggered" if i % 3 else "resolved") for i in range(1, 251)],
              services=[{"id": "PSVC%03d" % i, "name": "Service %d" % i, "status": "active",
                         "html_url": "https://acme.pagerduty.com/services/PSVC%03d" % i} for i in range(1, 8)],
              alerts={"Q000001": [{"id": "A1", "summary": "CPU high on web-1", "status": "triggered",
                                   "severity": "critical", "created_at": "2026-12-01T10:00:00Z",
                                   "body": {"details": {"host": "web-1", "cpu": 99}}}]})


def token_connect(w, key, token=USER_KEY, **extra):
    body = {"api_token": token}
    body.update(extra)
    return w.post("/pagerduty/connect", body, key=key)


def connected_user(w, org=None):
    """A new user (own org unless given) connected with the user API key."""
    if org is None:
        org, user, key = w.new_org()
    else:
        user, key = w.new_user(org_id=org)
    r = token_connect(w, key)
    eq(r.status, 200, "token connect (%r)" % r)
    return org, user, key


def status(w, key):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]["pagerduty"]


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "server still serving")


# ---------------------------------------------------------------------------
# webhook helpers (payloads in PagerDuty's documented v3 shape)
# ---------------------------------------------------------------------------
def v3(event_type, inc_id, title="Checkout latency above 2s", service="Checkout API", priority="P1",
       urgency="high", event_id=None, status=None):
    data = {"id": inc_id, "type": "incident", "self": "https://api.pagerduty.com/incidents/" + inc_id,
            "html_url": "https://acme.pagerduty.com/incidents/" + inc_id, "number": 7,
            "status": status or event_type.split(".")[1], "incident_key": "k-" + inc_id,
            "created_at": "2026-12-02T10:00:00Z", "title": title,
            "service": {"id": "PSVC001", "summary": service, "type": "service_reference",
                        "html_url": "https://acme.pagerduty.com/services/PSVC001"},
            "assignees": [{"id": "PUSER01", "summary": "On Call", "type": "user_reference"}],
            "escalation_policy": {"id": "PEP1", "summary": "Default", "type": "escalation_policy_reference"},
            "teams": [], "urgency": urgency, "conference_bridge": None, "resolve_reason": None}
    if priority:
        data["priority"] = {"id": "PPRIO1", "summary": priority, "type": "priority_reference"}
    return {"event": {"id": event_id or str(uuid.uuid4()), "event_type": event_type, "resource_type": "incident",
                      "occurred_at": "2026-12-02T10:05:00.123Z",
                      "agent": {"id": "PUSER01", "type": "user_reference", "summary": "On Call"},
                      "client": {"name": "PagerDuty"}, "data": data}}


def sig(secret, body):
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(w, user, body, signature=None, query="", content_type="application/json", headers=None):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    h = {"Content-Type": content_type}
    if signature is not None:
        h["X-PagerDuty-Signature"] = signature
    if headers:
        h.update(headers)
    return w.request("POST", "/pagerduty/webhook/%s%s" % (user, query), body, headers=h, auth=False)


def events(w, key):
    r = w.get("/api/pagerduty/events?limit=100", key=key)
    eq(r.status, 200, "GET /api/pagerduty/events (%r)" % r)
    return r.json["events"]


def rows(w):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'pagerduty'").fetchone()[0]
    finally:
        con.close()


def db(w, sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def incidents_of(w, org):
    """The org's incidents, oldest first (read from the store: the incident API is the core's)."""
    return [dict(zip(("id", "source", "fingerprint", "status", "severity", "title", "service", "alerts",
                      "resolved_at"), r))
            for r in db(w, "SELECT id, source, fingerprint, status, severity, title, service, alert_count,"
                           " resolved_at FROM incidents WHERE org_id = ? ORDER BY started_seq", (org,))]


def alert_states(w, incident_id):
    return [r[0] for r in db(w, "SELECT state FROM incident_alerts WHERE incident_id = ? ORDER BY incident_pos",
                             (incident_id,))]


def rca_jobs(w, incident_id):
    return [r[0] for r in db(w, "SELECT source_type FROM rca_jobs WHERE incident_id = ?", (incident_id,))]


def processed(w, key, n):
    """Waits until the newest n deliveries of the caller's org are finished."""
    wait_until(lambda: all(e["status"] in ("processed", "ignored") for e in events(w, key)[:n]) and
               len(events(w, key)) >= n, 15, what="%d deliveries processed" % n)


# ---------------------------------------------------------------------------
# OAuth
# ---------------------------------------------------------------------------
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def authorize(url):
    """The user approves at PagerDuty (the fixture): the Location it sends the browser to."""
    try:
        r = urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        r = e
    with r:
        eq(r.status, 302, "PagerDuty authorize (%s)" % url)
        return r.headers["Location"]


def callback(w, cb_url):
    u = urllib.parse.urlsplit(cb_url)
    eq(u.netloc, "127.0.0.1:%d" % w.port, "PagerDuty redirects the browser to Aurora")
    return https_request(w.port, w.ctx, "GET", u.path + "?" + u.query)


@test
def test_oauth_disabled_unless_flag(t):
    pd = HttpFixture(t, "pd-off", "pagerduty_api.mjs")
    w = t.world(start=False)
    env = fixture_env(pd, w)
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    for method, path in (("GET", "/pagerduty/oauth/login"), ("POST", "/pagerduty/oauth/login"),
                         ("GET", "/pagerduty/oauth/callback?code=a&state=b"), ("POST", "/pagerduty/oauth/refresh")):
        r = w.request(method, path, body={} if method == "POST" else None)
        eq((r.status, r.error_code), (404, "PAGERDUTY_OAUTH_DISABLED"), "%s %s when off (%r)" % (method, path, r))
        contains(r.get("error"), "NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH=true", "error names the flag")
    st = status(w, w.api_key)
    eq((st.get("oauth_enabled"), st.get("connected")), (False, False), "status when off")
    # Option B does not depend on the flag
    configure(pd, env)
    r = token_connect(w, w.api_key)
    eq((r.status, r.get("connected")), (200, True), "API token connect with OAuth off (%r)" % r)
    eq(pd.stats()["authorize"], [], "PagerDuty's authorization endpoint never reached")


@test
def test_oauth_redirect_url_defaults_to_the_guides(t):
    """The guide registers http://localhost:5080/pagerduty/oauth/callback and sets
    only the flag and the client's id and secret: that is the redirect URI the
    server sends and the one the console shows to register."""
    pd = HttpFixture(t, "pd-default", "pagerduty_api.mjs")
    w = t.world(start=False)
    env = fixture_env(pd, w)
    del env["PAGERDUTY_REDIRECT_URI"]
    env["NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH"] = "true"
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    want = "http://localhost:5080/pagerduty/oauth/callback"
    eq(status(w, w.api_key).get("redirect_uri"), want, "the Redirect URL the console shows")
    r = w.post("/pagerduty/oauth/login", {}, key=w.api_key)
    eq(r.status, 200, "login (%r)" % r)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("authorization_url")).query))
    eq(q.get("redirect_uri"), want, "the redirect URI sent to PagerDuty")


@test
def test_oauth_round_trip_refresh_and_revoke(t):
    w = world()
    pd = _env["pd"]
    org, user, key = w.new_org()
    r = w.frontend_get("/pagerduty/oauth/login", key=key)
    eq(r.status, 302, "login (%r)" % r)
    loc = r.headers["location"]
    check(loc.startswith(pd.base + "/oauth/authorize?"), "authorization endpoint", loc)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    eq((q.get("client_id"), q.get("response_type"), q.get("scope"), q.get("code_challenge_method"),
        q.get("redirect_uri")),
       ("pd-client", "code", "read", "S256", w.extra_env["PAGERDUTY_REDIRECT_URI"]), "authorization parameters")
    check(len(q.get("code_challenge", "")) == 43 and len(q.get("state", "")) == 43, "PKCE challenge and state", q)
    c = callback(w, authorize(loc))
    eq(c.status, 302, "callback (%r)" % c)
    contains(c.headers.get("location"), "/connectors?provider=pagerduty&status=connected", "back to the frontend")
    eq((c.get("connected"), c.get("account"), c.get("auth")), (True, "oauth@example.test", "oauth"), "callback body")
    last = pd.stats()["last_token"]
    eq((last["grant_type"], last["has_secret"], last["has_verifier"], last["redirect_uri"]),
       ("authorization_code", True, True, w.extra_env["PAGERDUTY_REDIRECT_URI"]), "code exchange with PKCE")
    check(CLIENT_SECRET not in c.body.decode(), "no secret in the callback answer")
    st = status(w, key)
    eq((st.get("connected"), st.get("auth"), st.get("email"), st.get("oauth_enabled")),
       (True, "oauth", "oauth@example.test", True), "status")
    # the state is single use: the same authorization again (a fresh code) is refused
    r = callback(w, authorize(loc))
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "state replayed (%r)" % r)
    # the read API with the OAuth access token (Bearer)
    r = w.get("/pagerduty/services", key=key)
    eq((r.status, len(r.get("services", []))), (200, 7), "services over OAuth (%r)" % r)
    eq(pd.stats()["api"][-1]["auth"], "Bearer", "OAuth token sent as Bearer")
    # PagerDuty stops taking the cached access token: that call fails, the
    # next one refreshes
    pd.ctl("/_fixture/expire_access", {})
    r = w.get("/pagerduty/services", key=key)
    eq((r.status, r.error_code), (502, "PAGERDUTY_DENIED"), "access token refused (%r)" % r)
    refreshes = pd.stats()["token"].get("refresh_token", 0)
    r = w.get("/pagerduty/services", key=key)
    eq(r.status, 200, "refreshed and served (%r)" % r)
    eq(pd.stats()["token"].get("refresh_token", 0), refreshes + 1, "one refresh grant")
    # refresh twice: PagerDuty rotates the refresh token, so the second only
    # works if the rotated one was stored
    before = pd.stats()["token"].get("refresh_token", 0)
    for i in (1, 2):
        r = w.post("/pagerduty/oauth/refresh", key=key)
        eq((r.status, r.get("refreshed")), (200, True), "refresh %d (%r)" % (i, r))
        check("access_token\"" not in r.body.decode() and "pdus+" not in r.body.decode(), "no token in the answer", r)
    eq(pd.stats()["token"]["refresh_token"], before + 2, "refresh grants at PagerDuty")
    # disconnect revokes the grant at PagerDuty, then the row and secrets go
    revoked = pd.stats()["revoked"]
    r = w.delete("/api/connectors/pagerduty", key=key)
    eq((r.status, r.get("deleted")), (200, True), "disconnect (%r)" % r)
    eq(pd.stats()["revoked"], revoked + 1, "refresh token revoked at PagerDuty")
    eq(status(w, key).get("connected"), False, "status after disconnect")
    r = w.post("/pagerduty/oauth/refresh", key=key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "refresh after disconnect (%r)" % r)
    check(CLIENT_SECRET not in w.server.log_text(), "client secret never logged")


@test
def test_oauth_concurrent_refreshes_spend_the_token_once(t):
    """PagerDuty rotates refresh tokens: a refresh retires the token it
    presents.  Two requests that both need a refresh at once must not both
    present the stored token (the second would be refused with invalid_grant
    and the user told to reconnect a connection that is fine)."""
    w = world()
    pd = _env["pd"]
    _, _, key = w.new_org()
    r = w.frontend_get("/pagerduty/oauth/login", key=key)
    eq(r.status, 302, "login (%r)" % r)
    eq(callback(w, authorize(r.headers["location"])).status, 302, "connected")
    before = pd.stats()["token"].get("refresh_token", 0)
    # The refreshes are held at PagerDuty until both have arrived (the server
    # sent both) or until the second is seen waiting at the server behind the
    # first (the log says so); only then does PagerDuty answer.
    pd.ctl("/_fixture/hold", {"n": 2})
    results = [None] * 2
    mark = len(w.server.log_text())

    def one(i):
        results[i] = w.post("/pagerduty/oauth/refresh", key=key)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    try:
        for th in threads:
            th.start()
        wait_until(lambda: pd.stats()["token_max_in_flight"] >= 2 or
                   "pagerduty: a token refresh waits for the token refresh under way"
                   in w.server.log_text()[mark:], 30, what="both refreshes under way")
    finally:
        pd.ctl("/_fixture/release")
    for th in threads:
        th.join(60)
    for i, r in enumerate(results):
        eq((r.status, r.get("refreshed")), (200, True), "concurrent refresh %d (%r)" % (i, r))
    st = pd.stats()
    eq(st["token_max_in_flight"], 1, "one refresh of the grant at a time")
    check(st["token"]["refresh_token"] - before in (1, 2), "refresh grants", st["token"])
    # the stored refresh token is the live one
    r = w.post("/pagerduty/oauth/refresh", key=key)
    eq((r.status, r.get("refreshed")), (200, True), "refresh afterwards (%r)" % r)
    check("pdus+" not in w.server.log_text(), "no token logged")


@test
def test_oauth_denied_and_forged_callbacks(t):
    w = world()
    _, _, key = w.new_org()
    r = w.post("/pagerduty/oauth/login", {}, key=key)
    eq(r.status, 200, "POST login (%r)" % r)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("authorization_url")).query))["state"]
    r = https_request(w.port, w.ctx, "GET", "/pagerduty/oauth/callback?" + urllib.parse.urlencode(
        {"error": "access_denied", "error_description": "The resource owner denied the request.", "state": state}))
    eq((r.status, r.error_code), (400, "PAGERDUTY_AUTHORIZATION_FAILED"), "user denied (%r)" % r)
    for qs in ("code=abc&state=" + "A" * 43, "code=abc", "state=" + state, ""):
        r = https_request(w.port, w.ctx, "GET", "/pagerduty/oauth/callback?" + qs)
        eq(r.status, 400, "forged callback %r (%r)" % (qs, r))
    eq(status(w, key).get("connected"), False, "nothing connected")
    serving(w)


# ---------------------------------------------------------------------------
# API token
# ---------------------------------------------------------------------------
@test
def test_token_connect_ok_and_bad(t):
    w = world()
    pd = _env["pd"]
    org, user, key = w.new_org()
    r = token_connect(w, key)
    eq((r.status, r.get("connected"), r.get("account"), r.get("token_type")),
       (200, True, "oncall@example.test", "user"), "user API key (%r)" % r)
    check(USER_KEY not in r.body.decode(), "key not echoed")
    api = pd.stats()["api"][-1]
    eq((api["path"], api["accept"], api["auth"]), ("/users/me", "application/vnd.pagerduty+json;version=2", "Token"),
       "validated with PagerDuty's headers")
    st = status(w, key)
    eq((st.get("connected"), st.get("auth"), st.get("email"), st.get("webhook_signed")),
       (True, "api_token", "oncall@example.test", False), "status")
    # "name" stays the connector's (the console titles its card with it); the
    # PagerDuty user's name has its own field
    eq((st.get("name"), st.get("user_name")), ("PagerDuty", "On Call"), "status names")
    eq(st.get("webhook_path"), "/pagerduty/webhook/%s" % user, "webhook path shown")
    r = w.get("/pagerduty/status", key=key)
    eq(r.status, 200, "GET /pagerduty/status (%r)" % r)
    eq(r.get("webhook_url"), "https://127.0.0.1:%d/pagerduty/webhook/%s" % (w.port, user), "webhook URL to paste")
    # an account-level key: /users/me answers 400, /abilities validates it
    _, _, key2 = w.new_org()
    r = token_connect(w, key2, token=ACCOUNT_KEY)
    eq((r.status, r.get("token_type")), (200, "account"), "account API key (%r)" % r)
    # refused keys: nothing stored
    _, _, key3 = w.new_org()
    r = token_connect(w, key3, token="y_" + rand_tag(18))
    eq((r.status, r.error_code), (400, "PAGERDUTY_INVALID_TOKEN"), "unknown key (%r)" % r)
    contains(r.get("error"), "Invalid PagerDuty API token", "the message")
    for bad in ({"api_token": ""}, {}, {"api_token": "has space " + rand_tag(8)}, {"api_token": "x" * 600},
                {"api_token": 12345}, {"api_token": USER_KEY, "webhook_secret": "short"},
                {"api_token": USER_KEY, "webhook_secret": 5}):
        r = w.post("/pagerduty/connect", bad, key=key3)
        eq(r.status, 400, "bad connect body %r (%r)" % (list(bad), r))
    r = w.request("POST", "/pagerduty/connect", b"{not json", key=key3)
    eq(r.status, 400, "not JSON (%r)" % r)
    eq(status(w, key3).get("connected"), False, "nothing connected after refusals")
    pd.ctl("/_fixture/fail", {"target": "api", "status": 503, "count": 8})
    r = token_connect(w, key3)
    eq((r.status, r.error_code), (502, "PAGERDUTY_ERROR"), "PagerDuty down (%r)" % r)
    pd.ctl("/_fixture/clear", {})
    log = w.server.log_text()
    check(USER_KEY not in log and ACCOUNT_KEY not in log, "keys never logged")


# ---------------------------------------------------------------------------
# read API
# ---------------------------------------------------------------------------
@test
def test_read_api_incidents_services(t):
    w = world()
    pd = _env["pd"]
    _, _, key = connected_user(w)
    n0 = len(pd.stats()["api"])
    r = w.get("/pagerduty/incidents?max=250", key=key)
    eq((r.status, len(r.get("incidents", [])), r.get("truncated")), (200, 250, True), "250 incidents (%r)" % r)
    calls = pd.stats()["api"][n0:]
    offsets = [dict(urllib.parse.parse_qsl(c["query"].lstrip("?"))).get("offset") for c in calls]
    eq(offsets, ["0", "100", "200"], "offset pages of 100")
    first = r.json["incidents"][0]
    eq((first["id"], first["service"]["summary"], first["priority"]["summary"]), ("Q000001", "Checkout API", "P1"),
       "incident fields")
    r = w.get("/pagerduty/incidents?status=resolved&max=1000", key=key)
    eq((r.status, len(r.json["incidents"]), r.get("truncated")), (200, 83, False), "resolved only (%r)" % r)
    check(all(i["status"] == "resolved" for i in r.json["incidents"]), "filtered by PagerDuty", r)
    contains(urllib.parse.unquote(pd.stats()["api"][-1]["query"]), "statuses[]=resolved", "statuses[] sent")
    r = w.get("/pagerduty/incidents/Q000001", key=key)
    eq((r.status, r.json["incident"]["title"], len(r.json["alerts"])), (200, "Incident 1", 1), "one incident (%r)" % r)
    eq(r.json["alerts"][0]["details"], {"host": "web-1", "cpu": 99}, "alert details for the RCA")
    r = w.get("/pagerduty/incidents/Q999999", key=key)
    eq((r.status, r.error_code), (404, "PAGERDUTY_INCIDENT_NOT_FOUND"), "unknown incident (%r)" % r)
    r = w.get("/pagerduty/services?max=3", key=key)
    eq((r.status, len(r.json["services"])), (200, 3), "services (%r)" % r)
    for path in ("/pagerduty/incidents?max=0", "/pagerduty/incidents?max=1001", "/pagerduty/incidents?status=open",
                 "/pagerduty/incidents?since=2026-01-01%20x", "/pagerduty/incidents?since=" + "1" * 100,
                 "/pagerduty/incidents?status=" + "triggered," * 40, "/pagerduty/incidents?service_id=a%26b",
                 "/pagerduty/incidents/Q0.1", "/pagerduty/incidents/Q%3A1"):
        r = w.get(path, key=key)
        eq(r.status, 400, "%s refused (%r)" % (path, r))
    _, _, other = w.new_org()
    r = w.get("/pagerduty/incidents", key=other)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "not connected (%r)" % r)
    serving(w)


# ---------------------------------------------------------------------------
# webhooks
# ---------------------------------------------------------------------------
@test
def test_webhook_unsigned_then_signed_rotation(t):
    w = world()
    org, user, key = connected_user(w)
    r = deliver(w, user, v3("incident.triggered", "PINC001"))
    eq((r.status, r.get("duplicate")), (200, False), "unsigned accepted while no secret (%r)" % r)
    ev = events(w, key)
    eq([(e["event"], e["verified"]) for e in ev], [("incident.triggered", False)], "stored unverified")
    secret = "whsec-" + rand_tag(24)
    r = w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key)
    eq((r.status, r.get("webhook_signed")), (200, True), "secret set (%r)" % r)
    eq(status(w, key).get("webhook_signed"), True, "status says signed")
    n = rows(w)
    body = json.dumps(v3("incident.acknowledged", "PINC001")).encode()
    r = deliver(w, user, body)
    eq(r.status, 401, "unsigned refused once a secret is set (%r)" % r)
    r = deliver(w, user, body, sig("not-the-secret-" + rand_tag(4), body))
    eq(r.status, 401, "wrong secret (%r)" % r)
    flipped = bytearray(body)
    flipped[40] ^= 1
    r = deliver(w, user, bytes(flipped), sig(secret, body))
    eq(r.status, 401, "altered body (%r)" % r)
    r = deliver(w, user, body, "v0=" + sig(secret, body)[3:])
    eq(r.status, 401, "another version prefix (%r)" % r)
    eq(rows(w), n, "nothing stored for refused deliveries")
    # rotation: PagerDuty signs with the old and the new secret
    r = deliver(w, user, body, "%s,%s" % (sig("old-secret-" + rand_tag(4), body), sig(secret, body)))
    eq((r.status, r.get("duplicate")), (200, False), "one of two signatures valid (%r)" % r)
    body2 = json.dumps(v3("incident.resolved", "PINC001")).encode()
    r = deliver(w, user, body2, "%s, %s" % (sig(secret, body2), sig("next-" + rand_tag(4), body2)))
    eq(r.status, 200, "valid signature first, spaces after commas (%r)" % r)
    ev = events(w, key)
    eq(sorted((e["event"], e["verified"]) for e in ev),
       [("incident.acknowledged", True), ("incident.resolved", True), ("incident.triggered", False)], "stored")
    # the secret survives connecting again (a reconnect must not drop to unsigned)
    r = token_connect(w, key)
    eq(r.status, 200, "reconnect (%r)" % r)
    body3 = json.dumps(v3("incident.triggered", "PINC002")).encode()
    eq(deliver(w, user, body3).status, 401, "still signed after reconnect")
    eq(deliver(w, user, body3, sig(secret, body3)).status, 200, "signed after reconnect")
    # back to unsigned
    r = w.delete("/pagerduty/webhook-secret", key=key)
    eq((r.status, r.get("webhook_signed")), (200, False), "secret removed (%r)" % r)
    eq(deliver(w, user, v3("incident.triggered", "PINC003")).status, 200, "unsigned again")
    for bad in ({"secret": "short"}, {"secret": "has spaces in it"}, {}, {"secret": "x" * 300}):
        r = w.post("/pagerduty/webhook-secret", bad, key=key)
        eq((r.status, r.error_code), (400, "PAGERDUTY_INVALID_WEBHOOK_SECRET"), "bad secret %r (%r)" % (bad, r))
    check(secret not in w.server.log_text(), "the signing secret is never logged")


def secrets_put_outside(w, path, value):
    """Writes a secret with `aurora-server secrets put` (the operator's CLI,
    another process), as someone changing the backend behind Aurora's back."""
    sandir = os.path.join(w.dir, "san", "secrets-put-" + rand_tag(6))
    r = subprocess.run([SERVER_BIN, "secrets", "put", "--stdin", path], input=value,
                       env=w.env(sandir), cwd=w.dir, capture_output=True, timeout=60)
    eq(r.returncode, 0, "secrets put %s: %s" % (path, r.stderr.decode("utf-8", "replace")))
    reports = sanitizer_reports(sandir)
    check(not reports, "secrets put: sanitizer report", reports[:1])


@test
def test_stored_token_not_a_token_is_refused(t):
    """An API token changed in the secrets backend into something connect
    would refuse (longer than PD_TOKEN_MAX, or with a line break) is refused
    as corrupt before any call: it was cut to 512 bytes and sent."""
    w = world()
    pd = _env["pd"]
    org, user, key = connected_user(w)
    long_key = "y_" + "k" * 510  # 512: the longest key connect takes
    eq(token_connect(w, key, token=long_key).status, 400, "unknown to the fixture yet")
    pd.config(user_keys={USER_KEY: {"id": "PUSER01", "email": "oncall@example.test", "name": "On Call"},
                         long_key: {"id": "PUSER02", "email": "long@example.test", "name": "Long Key"}})
    try:
        path = "aurora/orgs/%s/users/%s/pagerduty/api-token" % (org, user)
        eq(w.get("/pagerduty/services?max=1", key=key).status, 200, "the stored key works")
        for bad, what in ((long_key + "zz", "514 bytes, 512 of them a valid key"),
                          (USER_KEY + "\r\nX-Injected: 1", "a line break")):
            secrets_put_outside(w, path, bad.encode())
            n0 = len(pd.stats()["api"])
            r = w.get("/pagerduty/services?max=1", key=key)
            eq((r.status, r.error_code), (500, "PAGERDUTY_CONNECTION_CORRUPT"), "%s (%r)" % (what, r))
            contains(r.get("error", ""), "connect again", "says how to mend it")
            eq(len(pd.stats()["api"]), n0, "%s: nothing sent to PagerDuty" % what)
        eq(token_connect(w, key).status, 200, "connect again")
        eq(w.get("/pagerduty/services?max=1", key=key).status, 200, "reads again")
    finally:
        configure(pd, fixture_env(pd, w))
    serving(w)


@test
def test_webhook_unusable_secret_refuses(t):
    """A signing secret made unusable outside Aurora (longer than the kit
    takes; the local backend refuses an empty one) must keep deliveries
    refused, never fall back to unsigned."""
    w = world()
    org, user, key = connected_user(w)
    secret = "whsec-" + rand_tag(24)
    eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key).status, 200, "secret set")
    path = "aurora/orgs/%s/users/%s/pagerduty/webhook-secret" % (org, user)
    n = rows(w)
    for bad, what in ((b"x" * 513, "513 bytes"), (b"y" * 4096, "4096 bytes")):
        secrets_put_outside(w, path, bad)
        body = json.dumps(v3("incident.triggered", "PUNUSABLE")).encode()
        for signature, how in ((None, "unsigned"), (sig(secret, body), "signed with the old secret"),
                               (sig(bad.decode(), body), "signed with the new value")):
            r = deliver(w, user, body, signature)
            eq((r.status, r.error_code), (503, "WEBHOOK_SECRET_UNAVAILABLE"),
               "%s secret, %s delivery (%r)" % (what, how, r))
            contains(r.get("error", ""), "POST /pagerduty/webhook-secret", "says how to mend it")
    eq(rows(w), n, "nothing stored while the secret is unusable")
    # set again through the API: signed deliveries flow again
    eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key).status, 200, "set again")
    body = json.dumps(v3("incident.triggered", "PUNUSABLE")).encode()
    eq(deliver(w, user, body).status, 401, "unsigned refused again")
    eq(deliver(w, user, body, sig(secret, body)).status, 200, "signed accepted again")
    check(secret not in w.server.log_text(), "the signing secret is never logged")


@test
def test_webhook_replay_is_idempotent(t):
    w = world()
    _, user, key = connected_user(w)
    body = json.dumps(v3("incident.triggered", "PINC100")).encode()
    r1 = deliver(w, user, body)
    eq((r1.status, r1.get("duplicate")), (200, False), "first (%r)" % r1)
    for _ in range(3):  # PagerDuty retries with the same event.id
        r = deliver(w, user, body)
        eq((r.status, r.get("duplicate"), r.get("id")), (200, True, r1.get("id")), "replay (%r)" % r)
    eq(len(events(w, key)), 1, "one event stored")


@test
def test_webhook_tenants(t):
    w = world()
    org, user, key = connected_user(w)
    body = v3("incident.triggered", "PINC200")
    r = deliver(w, "no-such-user-" + rand_tag(4), body)
    eq((r.status, r.error_code), (404, "USER_NOT_FOUND"), "unknown user (%r)" % r)
    contains(r.get("error"), "PagerDuty not connected", "message")
    # another user of the same org, not connected
    other, other_key = w.new_user(org_id=org)
    eq(deliver(w, other, body).status, 404, "user without a connection")
    # the user's id under another organization
    org2, _, _ = w.new_org()
    r = deliver(w, user, body, query="?org_id=" + org2)
    eq((r.status, r.error_code), (404, "USER_NOT_FOUND"), "another org (%r)" % r)
    r = deliver(w, "bad%20id", body)
    eq((r.status, r.error_code), (400, "INVALID_USER_ID"), "invalid user id (%r)" % r)
    r = deliver(w, user, body, query="?org_id=" + org)
    eq(r.status, 200, "explicit own org (%r)" % r)
    # the other user's deliveries land in the other user's own org only
    o2, u2, k2 = connected_user(w)
    eq(deliver(w, u2, v3("incident.triggered", "PINC201")).status, 200, "second tenant")
    eq([e["event"] for e in events(w, k2)], ["incident.triggered"], "second tenant sees its own")
    eq(len(events(w, key)), 1, "first tenant sees only its own")
    # disconnected: 404, nothing stored
    r = w.delete("/api/connectors/pagerduty", key=k2)
    eq(r.status, 200, "disconnect (%r)" % r)
    n = rows(w)
    eq(deliver(w, u2, v3("incident.triggered", "PINC202")).status, 404, "disconnected user")
    eq(rows(w), n, "nothing stored")
    serving(w)


@test
def test_webhook_bad_input(t):
    w = world()
    _, user, key = connected_user(w)
    n = rows(w)
    good = json.dumps(v3("incident.triggered", "PINC300")).encode()
    cases = [
        ("oversized", json.dumps(v3("incident.triggered", "PINC301", title="x" * (300 * 1024))).encode(), {}, 413),
        ("truncated", good[:len(good) // 2], {}, 400),
        ("empty", b"", {}, 400),
        ("not an object", b"[1,2,3]", {}, 400),
        ("form encoded", good, {"content_type": "application/x-www-form-urlencoded"}, 415),
        ("text/plain", good, {"content_type": "text/plain"}, 415),
        ("not v3 (v2 messages[])", json.dumps({"messages": [{"event": "incident.trigger"}]}).encode(), {}, 400),
        ("no event.id", json.dumps({"event": {"event_type": "incident.triggered", "data": {}}}).encode(), {}, 400),
        ("no event.data", json.dumps({"event": {"id": "x1", "event_type": "incident.triggered"}}).encode(), {}, 400),
        ("triggered without an incident id",
         json.dumps({"event": {"id": "x2", "event_type": "incident.triggered", "data": {"title": "t"}}}).encode(), {}, 400),
        ("triggered without a title",
         json.dumps({"event": {"id": "x3", "event_type": "incident.triggered", "data": {"id": "P1"}}}).encode(), {}, 400),
        ("event id with spaces",
         json.dumps(v3("incident.triggered", "PINC302", event_id="a b")).encode(), {}, 400),
    ]
    for name, body, kw, want in cases:
        r = deliver(w, user, body, **kw)
        eq(r.status, want, "%s refused (%r)" % (name, r))
        if want == 400 and name not in ("truncated", "empty", "not an object", "event id with spaces"):
            eq(r.error_code, "PAGERDUTY_BAD_PAYLOAD", "%s: error code" % name)
    # a request cut on the wire: Content-Length promises more than is sent
    s = socket.create_connection(("127.0.0.1", w.port), 5)
    ss = w.ctx.wrap_socket(s, server_hostname="127.0.0.1")
    ss.sendall(b"POST /pagerduty/webhook/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % (user.encode(), len(good)) + good[:50])
    ss.close()
    eq(rows(w), n, "nothing stored for any refused delivery")
    serving(w)
    r = deliver(w, user, good)
    eq((r.status, r.get("duplicate")), (200, False), "a good delivery afterwards (%r)" % r)


@test
def test_webhook_other_event_types_stored(t):
    w = world()
    org, user, key = connected_user(w)
    ping = {"event": {"id": "01" + rand_tag(10).upper(), "event_type": "pagey.ping", "resource_type": "pagey",
                      "occurred_at": "2026-12-02T10:00:00Z", "agent": None, "client": None,
                      "data": {"message": "Hello from your friend Pagey!", "type": "ping"}}}
    note = {"event": {"id": str(uuid.uuid4()), "event_type": "incident.annotated", "resource_type": "incident",
                      "occurred_at": "2026-12-02T10:01:00Z",
                      "data": {"incident": {"id": "PINC400", "type": "incident_reference"}, "id": "PNOTE1",
                               "content": "Looking into it", "type": "incident_note"}}}
    for p in (ping, note):
        r = deliver(w, user, p)
        eq((r.status, r.get("duplicate")), (200, False), "%s accepted (%r)" % (p["event"]["event_type"], r))
    got = sorted(e["event"] for e in events(w, key))
    eq(got, ["incident.annotated", "pagey.ping"], "stored with their event types")
    wait_until(lambda: [e["status"] for e in events(w, key)] == ["ignored", "ignored"], 10,
               what="both ignored by processing")
    eq(incidents_of(w, org), [], "no incident from other event types")
    r = w.get("/api/pagerduty/events/%s" % events(w, key)[0]["id"], key=key)
    eq((r.status, r.json["payload"]["event"]["event_type"] in ("incident.annotated", "pagey.ping")), (200, True),
       "payload kept raw (%r)" % r)


@test
def test_webhook_rate_limit(t):
    pd = HttpFixture(t, "pd-rl", "pagerduty_api.mjs")
    w = t.world(start=False)
    env = fixture_env(pd, w)
    env["PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE"] = "3"
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    configure(pd, env)
    _, user2, _ = connected_user(w)

    def burst():  # a fresh user each run: its own count
        _, user, _ = connected_user(w)
        tag = rand_tag(4)
        codes = [deliver(w, user, v3("incident.triggered", "PRL%s%03d" % (tag, i))) for i in range(4)]
        eq([r.status for r in codes[:3]], [200, 200, 200], "three in the minute (%r)" % codes)
        eq(codes[3].status, 429, "fourth in the minute (%r)" % codes[3])
        eq(codes[3].error_code, "RATE_LIMITED", "error code")
        ra = int(codes[3].headers.get("retry-after", "0"))
        check(1 <= ra <= 60, "Retry-After", codes[3].headers)
    within_one_window(60, burst)
    eq(deliver(w, user2, v3("incident.triggered", "PRX001")).status, 200, "another user is not limited")
    # forged posts (wrong or no signature) do not spend a signing user's allowance
    _, user3, key3 = connected_user(w)
    secret = "whsec-rl-" + rand_tag(12)
    eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key3).status, 200, "secret set")
    forged = [deliver(w, user3, v3("incident.triggered", "PRF%03d" % i), "v1=" + "00" * 32).status
              for i in range(5)]
    eq(forged, [401] * 5, "forged deliveries refused")
    b = json.dumps(v3("incident.triggered", "PRF100")).encode()
    eq(deliver(w, user3, b, sig(secret, b)).status, 200, "a signed delivery after 5 forged ones is accepted")
    serving(w)


# ---------------------------------------------------------------------------
# incidents (the core's incident_ingest)
# ---------------------------------------------------------------------------
@test
def test_triggered_opens_incident_ack_and_resolve_attach(t):
    w = world()
    org, user, key = connected_user(w)
    trig = v3("incident.triggered", "PINC500", title="Checkout latency above 2s", service="Checkout API")
    r = deliver(w, user, trig)
    eq(r.status, 200, "triggered (%r)" % r)
    processed(w, key, 1)
    inc = incidents_of(w, org)
    eq(len(inc), 1, "one incident")
    i = inc[0]
    eq((i["source"], i["fingerprint"], i["status"], i["severity"], i["title"], i["service"]),
       ("pagerduty", "PINC500", "open", "critical", "Checkout latency above 2s", "Checkout API"),
       "incident from the triggered event (P1 -> critical)")
    eq(rca_jobs(w, i["id"]), ["pagerduty"], "exactly one RCA job")
    eq(deliver(w, user, trig).get("duplicate"), True, "PagerDuty's retry of the same event")
    eq(deliver(w, user, v3("incident.acknowledged", "PINC500")).status, 200, "acknowledged")
    processed(w, key, 2)
    eq(alert_states(w, i["id"]), ["firing", "acknowledged"], "acknowledgement attached")
    eq(len(incidents_of(w, org)), 1, "still one incident")
    eq(deliver(w, user, v3("incident.resolved", "PINC500")).status, 200, "resolved")
    processed(w, key, 3)
    inc = incidents_of(w, org)
    eq((len(inc), inc[0]["status"], inc[0]["resolved_at"] > 0), (1, "resolved", True), "resolved the incident")
    eq(alert_states(w, i["id"]), ["firing", "acknowledged", "resolved"], "resolution attached")
    eq(rca_jobs(w, i["id"]), ["pagerduty"], "still exactly one RCA job")
    # another PagerDuty incident on another service: a new incident; urgency
    # stands in for a non-standard priority
    r = deliver(w, user, v3("incident.triggered", "PINC501", service="Billing worker", priority="SEV-A",
                            urgency="low", title="Invoice queue backing up"))
    eq(r.status, 200, "second trigger (%r)" % r)
    processed(w, key, 4)
    inc = incidents_of(w, org)
    eq([(x["fingerprint"], x["status"], x["severity"]) for x in inc],
       [("PINC500", "resolved", "critical"), ("PINC501", "open", "low")], "two incidents")
    eq(rca_jobs(w, inc[1]["id"]), ["pagerduty"], "one RCA job for the new one")
    # a resolution for an incident never seen here: recorded, opens nothing
    eq(deliver(w, user, v3("incident.resolved", "PINC999")).status, 200, "unmatched resolution")
    processed(w, key, 5)
    eq(len(incidents_of(w, org)), 2, "a resolution never opens an incident")
    eq(db(w, "SELECT incident_id, state FROM incident_alerts WHERE org_id = ? AND fingerprint = 'PINC999'",
          (org,)), [(None, "resolved")], "recorded without an incident")
    # another tenant's alert with the same PagerDuty incident id stays in its org
    org2, user2, key2 = connected_user(w)
    eq(deliver(w, user2, v3("incident.acknowledged", "PINC501")).status, 200, "other org's ack")
    processed(w, key2, 1)
    eq(incidents_of(w, org2), [], "other org: nothing opened by an ack")
    eq(alert_states(w, inc[1]["id"]), ["firing"], "other org's ack not attached here")
    serving(w)


@test(timeout=180)
def test_concurrent_deliveries_and_kill9_recovery(t):
    pd = HttpFixture(t, "pd-kill", "pagerduty_api.mjs")
    w = t.world(start=False)
    env = fixture_env(pd, w)
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    configure(pd, env)
    org, user, key = connected_user(w)
    secret = "whsec-kill-" + rand_tag(16)
    eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key).status, 200, "secret set")
    # 16 PagerDuty incidents on 16 services, each trigger sent twice (PagerDuty's
    # retry: the same event.id), at concurrency 16
    bodies = []
    for i in range(16):
        b = json.dumps(v3("incident.triggered", "PCON%03d" % i, service="service-%s" % chr(65 + i),
                          title="Alert %d" % i)).encode()
        bodies += [b, b]
    results, lock = [], threading.Lock()

    def worker(chunk):
        for b in chunk:
            r = deliver(w, user, b, sig(secret, b))
            with lock:
                results.append((r.status, r.get("duplicate")))

    threads = [threading.Thread(target=worker, args=(bodies[i::16],)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    eq(sorted(results), [(200, False)] * 16 + [(200, True)] * 16, "16 stored, 16 duplicates")
    wait_until(lambda: len(incidents_of(w, org)) == 16 and
               all(e["status"] == "processed" for e in events(w, key)), 30, what="16 incidents")
    for i in incidents_of(w, org):
        eq((i["alerts"], rca_jobs(w, i["id"])), (1, ["pagerduty"]), "one alert, one RCA job: %s" % i["fingerprint"])
    # kill -9 right after a 2xx; whether or not it was processed, make the
    # delivery look unprocessed (a crash after incident_ingest, before the
    # delivery's status was written) and restart: processed again, nothing doubled
    b = json.dumps(v3("incident.triggered", "PKILL01", service="kill-svc")).encode()
    r = deliver(w, user, b, sig(secret, b))
    eq(r.status, 200, "delivered (%r)" % r)
    w.kill9()
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    n = con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'pagerduty' AND delivery_id = ?",
                    (json.loads(b)["event"]["id"],)).fetchone()[0]
    con.execute("UPDATE webhook_deliveries SET status = 'received', processed_at = 0, claimed_at = 0, "
                "next_attempt_at = 0 WHERE connector = 'pagerduty'")
    con.commit()
    con.close()
    eq(n, 1, "the acknowledged delivery is stored after kill -9")
    w.restart()
    wait_until(lambda: all(e["status"] == "processed" for e in events(w, key)) and
               len(incidents_of(w, org)) == 17, 30, what="the recovery sweep processes every delivery again")
    for i in incidents_of(w, org):
        eq((i["alerts"], rca_jobs(w, i["id"])), (1, ["pagerduty"]), "still one alert, one job: %s" % i["fingerprint"])
    # the sweep logs its count once its batch is done, after the rows turned processed
    wait_until(lambda: "recovery sweep processed" in w.server.log_text(), 10, 0.05,
               "the sweep to say so")
    serving(w)


@test
def test_webhook_user_in_two_orgs(t):
    """The trusted backend's identities: one user id acting in two organizations,
    connected in both.  The webhook URL shown carries ?org_id=; without it the
    delivery is ambiguous (409), nothing stored."""
    w = world()
    uid = "multi-" + rand_tag(6)
    orgs = ["org-a-" + rand_tag(4), "org-b-" + rand_tag(4)]

    def as_user(org):
        return {"X-Internal-Secret": w.secret, "X-User-ID": uid, "X-Org-ID": org}

    paths = {}
    for org in orgs:
        r = w.request("POST", "/pagerduty/connect", {"api_token": USER_KEY}, headers=as_user(org), auth=False)
        eq(r.status, 200, "connect in %s (%r)" % (org, r))
    for org in orgs:
        r = w.request("GET", "/pagerduty/status", headers=as_user(org), auth=False)
        eq(r.status, 200, "status in %s (%r)" % (org, r))
        paths[org] = r.get("webhook_path")
        eq(paths[org], "/pagerduty/webhook/%s?org_id=%s" % (uid, org), "webhook path names the org")
    n = rows(w)
    r = deliver(w, uid, v3("incident.triggered", "PMULTI1"))
    eq((r.status, r.error_code), (409, "AMBIGUOUS_TENANT"), "no org in the URL (%r)" % r)
    eq(rows(w), n, "nothing stored")
    r = deliver(w, uid, v3("incident.triggered", "PMULTI1"), query="?org_id=" + orgs[1])
    eq(r.status, 200, "with the org the status showed (%r)" % r)
    listed = {}
    for org in orgs:
        r = w.request("GET", "/api/pagerduty/events", headers=as_user(org), auth=False)
        eq(r.status, 200, "events in %s (%r)" % (org, r))
        listed[org] = len(r.json["events"])
    eq((listed[orgs[0]], listed[orgs[1]]), (0, 1), "stored in the URL's org only")


@test(timeout=240)
def test_postgres_concurrent_triggers_one_incident(t):
    """The same flow on PostgreSQL: 16 deliveries about one PagerDuty incident
    (a trigger and its re-triggers, distinct event ids) at concurrency 16 open
    one incident with one RCA job; acknowledge and resolve attach to it."""
    pg = Postgres()
    t.defer(pg.destroy)
    pd = HttpFixture(t, "pd-pg", "pagerduty_api.mjs")
    w = t.world(start=False)
    env = fixture_env(pd, w)
    env["DATABASE_URL"] = pg.url
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    configure(pd, env)
    org, user, key = connected_user(w)

    def psql(sql):
        r = subprocess.run([os.path.join(pg.bindir, "psql"), "-X", "-At", "-h", pg.dir, "-p", "5432",
                            "-U", "aurora", "-d", "postgres", "-c", sql], capture_output=True, timeout=30)
        check(r.returncode == 0, "psql", r.stderr)
        return [line.split("|") for line in r.stdout.decode().splitlines() if line]

    bodies = [json.dumps(v3("incident.triggered", "PPG0001", service="Payments API")).encode() for _ in range(16)]
    results, lock = [], threading.Lock()

    def send(b):
        r = deliver(w, user, b)
        with lock:
            results.append(r.status)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    eq(results, [200] * 16, "16 deliveries accepted")
    q = "SELECT id, status FROM incidents WHERE org_id = '%s'" % org
    wait_until(lambda: len(events(w, key)) == 16 and all(e["status"] == "processed" for e in events(w, key)),
               30, what="16 deliveries processed")
    inc = psql(q)
    eq(len(inc), 1, "one incident for one PagerDuty incident (%r)" % inc)
    iid = inc[0][0]
    eq(psql("SELECT source_type FROM rca_jobs WHERE incident_id = '%s'" % iid), [["pagerduty"]], "one RCA job")
    eq(psql("SELECT COUNT(*) FROM incident_alerts WHERE incident_id = '%s'" % iid), [["16"]], "16 alerts attached")
    for typ in ("incident.acknowledged", "incident.resolved"):
        eq(deliver(w, user, v3(typ, "PPG0001")).status, 200, typ)
    wait_until(lambda: psql(q) == [[iid, "resolved"]], 30, what="resolved on PostgreSQL")
    eq(psql("SELECT COUNT(*) FROM rca_jobs WHERE org_id = '%s'" % org), [["1"]], "still one RCA job")
    serving(w)


@test
def test_oauth_reconnect_through_another_replica(t):
    """A reconnect through another replica (same store and secrets) replaces
    the grant this replica's token cache holds an access token of.  The
    cache was keyed on the org and user alone: this replica went on calling
    PagerDuty with the replaced grant's token until it neared expiry, only
    the replica that took the callback forgot its cache (found in review)."""
    w = world()
    pd = _env["pd"]
    _, _, key = w.new_org()
    eq(callback(w, authorize(w.frontend_get("/pagerduty/oauth/login", key=key).headers["location"])).status,
       302, "connected")
    eq(w.get("/pagerduty/services", key=key).status, 200, "a read caches the first grant's token")
    first = pd.stats()["api"][-1]["token"]
    r2 = w.replica(t)
    r = r2.frontend_get("/pagerduty/oauth/login", key=key)
    eq(r.status, 302, "login on the other replica (%r)" % r)
    u = urllib.parse.urlsplit(authorize(r.headers["location"]))
    c = https_request(r2.port, r2.ctx, "GET", u.path + "?" + u.query)
    eq(c.status, 302, "reconnect through the other replica (%r)" % c)
    eq(r2.get("/pagerduty/services", key=key).status, 200, "the other replica reads")
    second = pd.stats()["api"][-1]["token"]
    check(first and second and first != second, "a new grant's token", (first, second))
    r = w.get("/pagerduty/services", key=key)
    eq(r.status, 200, "this replica after the reconnect (%r)" % r)
    check(pd.stats()["api"][-1]["token"] not in (None, first), "not the replaced grant's token",
          pd.stats()["api"][-1])


if __name__ == "__main__":
    main()
