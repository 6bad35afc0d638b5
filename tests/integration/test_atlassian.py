#!/usr/bin/env python3
"""test_atlassian.py — the Atlassian connection (connector guide: Atlassian
(Confluence + Jira)): Cloud OAuth 2.0 (3LO) for one or both products, Data
Center PAT connect, rotating refresh tokens, the Jira permission tier, status
and disconnect.  The product APIs (confluence.c, jira.c) are tested by
test_confluence_jira.py.

Peer: tests/fixtures/atlassian_api.mjs stands in for Atlassian — its 3LO
authorization server (oauth2-mock-server on auth.atlassian.com's /authorize and
/oauth/token, with rotating single-use refresh tokens as "OAuth 2.0 (3LO) apps"
describes them), api.atlassian.com's /oauth/token/accessible-resources, and the
Data Center identity endpoints (Confluence /rest/api/user/current, Jira
/rest/api/2/myself) that validate a PAT.
"""
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, SERVER_BIN, T, World, _SUITE, HttpFixture, check, contains, eq,  # noqa: E402
                     https_request, main, rand_tag, refusing_port, sanitizer_reports, suite_shared, test,
                     wait_until)

CLIENT_SECRET = "atl-client-secret-" + rand_tag(8)
CONF_PAT = "NjM2ODQ" + rand_tag(24)
JIRA_PAT = "MzE0MTU" + rand_tag(24)
ACME = "1324a887-45db-1bf4-1e99-ef0ff456d421"
OTHER = "7a1d3c55-0000-4e2f-9c1b-000000000001"
_env = {}


# ---------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------
def fixture_env(fx, w):
    return {
        "ATLASSIAN_CLIENT_ID": "atl-client", "ATLASSIAN_CLIENT_SECRET": CLIENT_SECRET,
        "ATLASSIAN_REDIRECT_URI": "https://127.0.0.1:%d/atlassian/callback" % w.port,
        "ATLASSIAN_AUTH_URL": fx.base + "/authorize",
        "ATLASSIAN_TOKEN_URL": fx.base + "/oauth/token",
        "ATLASSIAN_API_BASE_URL": fx.base,
        "NEXT_PUBLIC_ENABLE_CONFLUENCE": "true", "NEXT_PUBLIC_ENABLE_JIRA": "true",
        "ATLASSIAN_DC_ALLOW_LOOPBACK": "true",
        # 4 s under the stalled Data Center answer, which the timeout test
        # waits for (patient_world's server has 60 s)
        "AURORA_PROVIDER_TIMEOUT_MS": "10000",
    }


def reset(fx, w, **kw):
    cfg = dict(client_id="atl-client", client_secret=CLIENT_SECRET,
               redirect_uris=[w.extra_env.get("ATLASSIAN_REDIRECT_URI")], mode="both", expires_in=3600,
               token_delay_ms=0, dc_delay_ms=0, authorize_error=None, token_error=None,
               pats={CONF_PAT: {"product": "confluence", "user": {"username": "jdoe", "displayName": "Jane Doe"}},
                     JIRA_PAT: {"product": "jira", "user": {"name": "jdoe", "displayName": "Jane Doe",
                                                            "emailAddress": "jdoe@example.test"}}})
    cfg.update(kw)
    fx.config(**cfg)
    fx.ctl("/_fixture/clear", {})


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx = HttpFixture(st, "atlassian", "atlassian_api.mjs")
        w = World(st, "suite-server", start=False)
        w.extra_env.update(fixture_env(fx, w))
        w.start()
        w.bootstrap()
        _env["fx"] = fx
        _SUITE["world"] = w
    w = _SUITE["world"]
    reset(_env["fx"], w)
    return w, _env["fx"]


def patient_world():
    """A second server for the program, with its own fixture, for the tests
    that keep a refresh waiting at Atlassian while they do things of their
    own (send other requests, run `aurora-server secrets put`): the
    refresh's call has 60 s, not the suite server's 10 s, which a loaded
    machine ran out of meanwhile (a 504 instead of the refresh tested).
    (world, fixture), the fixture reset."""
    def make(st):
        fx = HttpFixture(st, "atlassian-patient", "atlassian_api.mjs")
        w = World(st, "patient-server", start=False)
        w.extra_env.update(fixture_env(fx, w))
        w.extra_env["AURORA_PROVIDER_TIMEOUT_MS"] = "60000"
        # test_concurrent_refresh_rotates_once has six refreshes of one
        # organization meet at the server's refresh lock: all six on threads
        # at once, not four and two parked behind them (worker.h's share)
        w.extra_env["AURORA_OUTBOUND_PER_ORG"] = "8"
        w.start()
        w.bootstrap()
        return w, fx
    w, fx = suite_shared("patient", make)
    reset(fx, w)
    return w, fx


def status(w, key):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]


def atl_status(w, key):
    r = w.get("/atlassian/status", key=key)
    eq(r.status, 200, "GET /atlassian/status (%r)" % r)
    return r.json


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "server still serving")


def put(w, path, body, key):
    return w.request("PUT", path, body, key=key)


# ---------------------------------------------------------------------------
# OAuth helpers
# ---------------------------------------------------------------------------
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def authorize(url):
    """The user approves at Atlassian (the fixture): where it sends the browser."""
    try:
        r = urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        r = e
    with r:
        eq(r.status, 302, "Atlassian authorize (%s)" % url)
        return r.headers["Location"]


def callback(w, cb_url, key=None):
    u = urllib.parse.urlsplit(cb_url)
    eq(u.netloc, "127.0.0.1:%d" % w.port, "Atlassian redirects the browser to Aurora")
    headers = {"Authorization": "Bearer " + key} if key else None
    return https_request(w.port, w.ctx, "GET", u.path + "?" + u.query, headers=headers)


def login(w, key, products="confluence,jira"):
    r = w.frontend_get("/atlassian/login?products=" + products, key=key)
    eq(r.status, 302, "login %s (%r)" % (products, r))
    return r.headers["location"]


def oauth_connect(w, key, products="confluence,jira"):
    c = callback(w, authorize(login(w, key, products)))
    eq(c.status, 302, "callback for %s (%r)" % (products, c))
    return c


def dc_connect(w, key, product, base, pat, **extra):
    body = {"product": product, "base_url": base, "pat": pat}
    body.update(extra)
    return w.post("/atlassian/connect", body, key=key)


def nothing_connected(w, key, what):
    st = status(w, key)
    eq((st["confluence"]["connected"], st["jira"]["connected"], st["atlassian"]["connected"]),
       (False, False, False), "nothing connected after %s" % what)


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------
@test
def test_missing_config_and_disabled_product(t):
    fx = HttpFixture(t, "atl-off", "atlassian_api.mjs")
    w = t.world(start=False)
    env = fixture_env(fx, w)
    for k in ("ATLASSIAN_CLIENT_ID", "ATLASSIAN_CLIENT_SECRET", "ATLASSIAN_DC_ALLOW_LOOPBACK"):
        del env[k]
    env["NEXT_PUBLIC_ENABLE_JIRA"] = "false"
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    reset(fx, w)
    for method in ("GET", "POST"):
        r = w.request(method, "/atlassian/login?products=confluence", body={} if method == "POST" else None)
        eq((r.status, r.error_code), (503, "ATLASSIAN_OAUTH_NOT_CONFIGURED"), "%s login unconfigured (%r)" % (method, r))
        contains(r.get("error"), "Atlassian OAuth configuration missing", "the guide's message")
        contains(r.get("error"), "ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET", "the guide's fix")
    # a disabled product cannot be connected, by OAuth or PAT
    r = w.frontend_get("/atlassian/login?products=jira")
    eq((r.status, r.error_code), (404, "JIRA_DISABLED"), "Jira disabled (%r)" % r)
    contains(r.get("error"), "NEXT_PUBLIC_ENABLE_JIRA=true", "names the flag")
    r = w.frontend_get("/atlassian/login?products=confluence,jira")
    eq((r.status, r.error_code), (404, "JIRA_DISABLED"), "both with Jira disabled (%r)" % r)
    r = dc_connect(w, w.api_key, "jira", fx.base, JIRA_PAT, allow_http=True)
    eq((r.status, r.error_code), (404, "JIRA_DISABLED"), "Jira PAT when disabled (%r)" % r)
    # loopback base URLs are refused unless ATLASSIAN_DC_ALLOW_LOOPBACK
    for base in (fx.base, fx.base.replace("127.0.0.1", "localhost"), "http://[::1]:1"):
        r = dc_connect(w, w.api_key, "confluence", base, CONF_PAT, allow_http=True)
        eq((r.status, r.error_code), (400, "ATLASSIAN_INVALID_URL"), "loopback %s refused (%r)" % (base, r))
        contains(r.get("error"), "ATLASSIAN_DC_ALLOW_LOOPBACK", "says which setting")
    eq(len(fx.stats()["dc"]), 0, "nothing sent to a refused base URL")
    st = status(w, w.api_key)
    eq((st["jira"]["enabled"], st["confluence"]["enabled"], st["atlassian"]["oauth_configured"]),
       (False, True, False), "status shows what is enabled")
    eq(fx.stats()["authorize"], [], "Atlassian never reached")
    nothing_connected(w, w.api_key, "refusals")


# ---------------------------------------------------------------------------
# Cloud OAuth
# ---------------------------------------------------------------------------
@test
def test_oauth_confluence_jira_and_both(t):
    w, fx = world()
    for products, want in (("confluence", {"confluence"}), ("jira", {"jira"}),
                           ("confluence,jira", {"confluence", "jira"})):
        org, user, key = w.new_org()
        loc = login(w, key, products)
        check(loc.startswith(fx.base + "/authorize?"), "authorization endpoint", loc)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
        eq((q.get("client_id"), q.get("response_type"), q.get("audience"), q.get("prompt"), q.get("redirect_uri")),
           ("atl-client", "code", "api.atlassian.com", "consent", w.extra_env["ATLASSIAN_REDIRECT_URI"]),
           "3LO authorization parameters")
        scopes = set(q["scope"].split())
        want_scopes = {"offline_access"}
        if "confluence" in want:
            want_scopes |= {"read:page:confluence", "read:space:confluence", "read:user:confluence",
                            "search:confluence"}
        if "jira" in want:
            want_scopes |= {"read:jira-work", "write:jira-work", "read:jira-user"}
        eq(scopes, want_scopes, "scopes for %s" % products)
        check("code_challenge" not in q and len(q.get("state", "")) == 43, "state, no PKCE (3LO has none)", q)
        c = callback(w, authorize(loc))
        eq(c.status, 302, "callback (%r)" % c)
        contains(c.headers.get("location"), "/connectors?provider=atlassian&status=connected", "back to the frontend")
        eq((c.get("connected"), c.get("mode"), c.get("site_url"), set(c.get("products"))),
           (True, "cloud", "https://acme.atlassian.net", want), "callback body")
        check(CLIENT_SECRET not in c.body.decode(), "no secret in the callback answer")
        last = fx.stats()["last_token"]
        eq((last["grant_type"], last["has_secret"], last["redirect_uri"]),
           ("authorization_code", True, w.extra_env["ATLASSIAN_REDIRECT_URI"]), "code exchange")
        st = status(w, key)
        for p in ("confluence", "jira"):
            if p in want:
                eq((st[p]["connected"], st[p]["mode"], st[p]["site_url"], st[p]["cloud_id"]),
                   (True, "cloud", "https://acme.atlassian.net", ACME), "%s row" % p)
                check(all(p in s for s in st[p]["scopes"]) and st[p]["scopes"], "%s scopes" % p, st[p])
            else:
                eq(st[p]["connected"], False, "%s not connected" % p)
        if "jira" in want:
            eq(st["jira"]["tier"], "read_only", "Jira tier defaults to Read Only")
        eq((st["atlassian"]["connected"], set(st["atlassian"]["products"]), st["atlassian"]["site_url"]),
           (True, want, "https://acme.atlassian.net"), "the grant row")
        a = atl_status(w, key)
        eq((a["connected"], a["cloud"]["connected"], a["confluence"]["connected"], a["jira"]["connected"]),
           (True, True, "confluence" in want, "jira" in want), "GET /atlassian/status")
        # the state is single use
        r = callback(w, authorize(loc))
        eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "state replayed (%r)" % r)
    # POST login answers JSON, products in the body
    _, _, key = w.new_org()
    r = w.post("/atlassian/login", {"products": ["jira"]}, key=key)
    eq((r.status, r.get("products")), (200, ["jira"]), "POST login (%r)" % r)
    r = w.post("/atlassian/login", {}, key=key)
    eq((r.status, r.get("products")), (200, ["confluence", "jira"]), "POST login, every enabled product (%r)" % r)
    r = w.frontend_get("/atlassian/login", key=key)
    eq(r.status, 302, "GET login, every enabled product (%r)" % r)
    eq(set(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["location"]).query))["scope"].split()),
       {"read:page:confluence", "read:space:confluence", "read:user:confluence", "search:confluence",
        "read:jira-work", "write:jira-work", "read:jira-user", "offline_access"}, "both products' scopes")
    check(r.get("authorization_url", "").startswith(fx.base + "/authorize?"), "authorization_url", r)
    check(CLIENT_SECRET not in w.server.log_text(), "client secret never logged")


@test
def test_oauth_multiple_sites_and_scope_checks(t):
    w, fx = world()
    # two sites: the first has Jira scopes only, so both products land on the second
    reset(fx, w, mode="multi")
    _, _, key = w.new_org()
    c = oauth_connect(w, key, "confluence,jira")
    eq(c.get("site_url"), "https://acme.atlassian.net", "the site covering both products")
    _, _, key = w.new_org()
    c = oauth_connect(w, key, "jira")
    eq(c.get("site_url"), "https://other.atlassian.net", "the first site covering Jira")
    eq(status(w, key)["jira"]["cloud_id"], OTHER, "its cloudId")
    # no Jira scopes on the app
    reset(fx, w, mode="nojira")
    _, _, key = w.new_org()
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (400, "JIRA_INSUFFICIENT_SCOPES"), "no Jira scopes (%r)" % r)
    contains(r.get("error"), "Insufficient Jira scopes", "the guide's message")
    contains(r.get("error"), "read:jira-work, write:jira-work, and read:jira-user", "the guide's fix")
    nothing_connected(w, key, "insufficient Jira scopes")
    r = callback(w, authorize(login(w, key, "confluence,jira")))
    eq((r.status, r.error_code), (400, "JIRA_INSUFFICIENT_SCOPES"), "both asked, Jira short (%r)" % r)
    nothing_connected(w, key, "a partial grant")
    # Confluence classic scopes only
    reset(fx, w, mode="classic")
    r = callback(w, authorize(login(w, key, "confluence")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_SCOPES_NOT_ADDED"), "classic scopes (%r)" % r)
    contains(r.get("error"), "Scopes not added to the app", "the guide's message")
    contains(r.get("error"), "Add granular Confluence scopes (not classic) in the Permissions tab", "the guide's fix")
    nothing_connected(w, key, "classic scopes")
    # no site at all
    reset(fx, w, mode="none")
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_NO_SITE"), "no site (%r)" % r)
    nothing_connected(w, key, "no site")
    # accessible-resources down
    reset(fx, w)
    fx.ctl("/_fixture/fail", {"target": "resources", "status": 503, "count": 10})
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (502, "ATLASSIAN_ERROR"), "accessible-resources failing (%r)" % r)
    nothing_connected(w, key, "a failed site lookup")
    serving(w)


@test
def test_oauth_refusals_by_atlassian(t):
    w, fx = world()
    _, _, key = w.new_org()
    # a non-owner while the app is not shared: Atlassian sends error=access_denied back
    reset(fx, w, authorize_error={"error": "access_denied", "error_description": "You don't have access to this app"})
    codes = fx.stats()["token"].get("authorization_code", 0)
    r = callback(w, authorize(login(w, key, "confluence")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_ACCESS_DENIED"), "access_denied (%r)" % r)
    contains(r.get("error"), "You don't have access to this app", "the guide's message")
    contains(r.get("error"), "Enable Sharing in the Distribution tab", "the guide's fix")
    eq(fx.stats()["token"].get("authorization_code", 0), codes, "no code exchange")
    # scopes refused at the token endpoint
    reset(fx, w, token_error={"status": 403, "error": "unauthorized_client",
                              "error_description": "scope does not match"})
    r = callback(w, authorize(login(w, key, "confluence")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_SCOPES_NOT_ADDED"), "unauthorized_client (%r)" % r)
    contains(r.get("error"), "Scopes not added to the app", "the guide's message")
    reset(fx, w, token_error={"status": 403, "error": "access_denied", "error_description": "denied"})
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_ACCESS_DENIED"), "access_denied at the token endpoint (%r)" % r)
    # a wrong client secret is not worded as either
    reset(fx, w, client_secret="another")
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (400, "ATLASSIAN_OAUTH_CLIENT_INVALID"), "bad client (%r)" % r)
    contains(r.get("error"), "ATLASSIAN_CLIENT_SECRET", "names the setting")
    # token endpoint down
    reset(fx, w)
    fx.ctl("/_fixture/fail", {"target": "token", "status": 502, "count": 3})
    r = callback(w, authorize(login(w, key, "jira")))
    eq((r.status, r.error_code), (502, "ATLASSIAN_ERROR"), "token endpoint failing (%r)" % r)
    nothing_connected(w, key, "refusals")
    serving(w)


@test
def test_refresh_rotation_and_expiry(t):
    w, fx = world()
    _, _, key = w.new_org()
    oauth_connect(w, key, "confluence,jira")
    base = fx.stats()
    r0 = base["token"].get("refresh_token", 0)
    # each forced refresh rotates; the second works only if the first's new
    # refresh token was stored (the fixture refuses a used one)
    for i, p in enumerate(("confluence", "jira")):
        r = w.post("/atlassian/refresh", {"product": p}, key=key)
        eq((r.status, r.get("refreshed"), r.get("rotated"), r.get("product")), (200, True, True, p),
           "refresh %d (%r)" % (i, r))
        check(r.get("access_token_expires_at", "").endswith("Z"), "expiry in RFC 3339", r)
        # atl_credentials' answer: where the product's REST API is, through the gateway
        eq((r.get("api_base"), r.get("site_url")), ("%s/ex/%s/%s" % (fx.base, p, ACME), "https://acme.atlassian.net"),
           "the product's API base")
        check("access_token\"" not in r.body.decode() and "atl-rt-" not in r.body.decode(), "no token shown", r)
    st = fx.stats()
    eq((st["token"]["refresh_token"], st["refused_refresh"]), (r0 + 2, base["refused_refresh"]),
       "two rotations, none refused")
    # the first refresh token, used once already, is dead at Atlassian
    old = st["issued_refresh"][-3]
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": old,
                                   "client_id": "atl-client", "client_secret": CLIENT_SECRET}).encode()
    try:
        urllib.request.urlopen(urllib.request.Request(fx.base + "/oauth/token", data=form), timeout=10)
        raise AssertionError("the fixture took a rotated-out refresh token")
    except urllib.error.HTTPError as e:
        eq(e.code, 403, "old refresh token refused after rotation")
    eq(fx.stats()["live_refresh"] >= 1, True, "the current one still lives")
    # this server's client credentials refused: not the user's grant expiring
    reset(fx, w, client_secret="rotated-at-atlassian")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.error_code), (400, "ATLASSIAN_OAUTH_CLIENT_INVALID"), "client refused (%r)" % r)
    contains(r.get("error"), "ATLASSIAN_CLIENT_SECRET", "names the setting")
    reset(fx, w)
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.get("rotated")), (200, True), "the grant survived a client refusal (%r)" % r)
    # Atlassian refuses the refresh (grant revoked, 90 days unused): per product
    fx.ctl("/_fixture/revoke_refresh", {})
    for p, code, name in (("jira", "JIRA_CREDENTIALS_EXPIRED", "Jira"),
                          ("confluence", "CONFLUENCE_CREDENTIALS_EXPIRED", "Confluence")):
        r = w.post("/atlassian/refresh", {"product": p}, key=key)
        eq((r.status, r.error_code), (401, code), "%s refresh refused (%r)" % (p, r))
        contains(r.get("error"), "%s credentials expired" % name, "the guide's message")
        contains(r.get("error"), "Reconnect via the Connectors page", "the guide's fix")
    # reconnecting brings it back
    oauth_connect(w, key, "confluence,jira")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq(r.status, 200, "refresh after reconnect (%r)" % r)
    # a Data Center product has nothing to refresh
    _, _, key2 = w.new_org()
    eq(dc_connect(w, key2, "jira", fx.base, JIRA_PAT, allow_http=True).status, 200, "DC Jira")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key2)
    eq((r.status, r.error_code), (400, "ATLASSIAN_NOT_OAUTH"), "DC refresh (%r)" % r)
    r = w.post("/atlassian/refresh", {"product": "confluence"}, key=key2)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "not connected (%r)" % r)
    contains(r.get("error"), "Confluence is not connected", "message")
    log = w.server.log_text()
    check("atl-rt-" not in log and CLIENT_SECRET not in log, "no refresh token or secret logged")


@test
def test_concurrent_refresh_rotates_once(t):
    w, fx = patient_world()
    _, _, key = w.new_org()
    oauth_connect(w, key, "confluence,jira")
    st0 = fx.stats()
    before, refused = st0["token"].get("refresh_token", 0), st0["refused_refresh"]
    # Atlassian answers slowly: every request below arrives while the first
    # refresh is under way, and must use its result rather than rotate again
    # (a second rotation would present the refresh token the first retired).
    # All six must reach the server's lock within the delay, their TLS
    # handshakes and all on a loaded machine: 10 s (6 s was short), on the
    # server whose timeout leaves the slow answer room.
    reset(fx, w, token_delay_ms=10000)
    results = [None] * 6

    def one(i):
        results[i] = w.post("/atlassian/refresh", {"product": "jira" if i % 2 else "confluence"}, key=key)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for i, r in enumerate(results):
        eq((r.status, r.get("refreshed")), (200, True), "concurrent refresh %d (%r)" % (i, r))
    eq(sum(1 for r in results if r.get("rotated")), 1, "one rotation among the concurrent refreshes")
    st = fx.stats()
    eq((st["token"]["refresh_token"], st["refused_refresh"]), (before + 1, refused), "one refresh grant at Atlassian")
    reset(fx, w)
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.get("rotated")), (200, True), "the stored token is the rotated one (%r)" % r)


@test
def test_refresh_after_another_replica_rotated(t):
    """Another replica refreshes the same grant while this one's refresh is on
    its way: Atlassian refuses the token this one sent (the other retired it),
    but the stored token is the other replica's new one and still good, so
    the connection is not reported expired."""
    # this one's refresh waits at Atlassian through what the other replica
    # does here, an ASan `secrets put` among it: the server with 60 s
    w, fx = patient_world()
    org, user, key = w.new_org()
    oauth_connect(w, key, "jira")
    reset(fx, w)
    rt1 = fx.stats()["issued_refresh"][-1]
    fx.ctl("/_fixture/hold", {})
    result = [None]

    def one():
        result[0] = w.post("/atlassian/refresh", {"product": "jira"}, key=key)

    th = threading.Thread(target=one)
    th.start()
    try:
        wait_until(lambda: fx.stats()["held"] >= 1, 30, what="this replica's refresh at Atlassian")
        # the other replica: refresh with the same token, store the new one
        form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": rt1,
                                       "client_id": "atl-client", "client_secret": CLIENT_SECRET}).encode()
        with urllib.request.urlopen(urllib.request.Request(fx.base + "/oauth/token", data=form),
                                    timeout=30) as r:
            rt2 = json.loads(r.read())["refresh_token"]
        sandir = os.path.join(w.dir, "san", "secrets-put-" + rand_tag(6))
        path = "aurora/orgs/%s/users/%s/atlassian/refresh-token" % (org, user)
        p = subprocess.run([SERVER_BIN, "secrets", "put", "--stdin", path], input=rt2.encode(),
                           env=w.env(sandir), cwd=w.dir, capture_output=True, timeout=60)
        eq(p.returncode, 0, "secrets put: %s" % p.stderr.decode("utf-8", "replace"))
        check(not sanitizer_reports(sandir), "secrets put: sanitizer report")
    finally:
        fx.ctl("/_fixture/release", {})
        th.join(60)
    r = result[0]
    eq((r.status, r.get("refreshed")), (200, True), "refresh after the other replica's (%r)" % r)
    eq(fx.stats()["refused_refresh"] >= 1, True, "Atlassian refused the retired token once")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.get("refreshed")), (200, True), "the stored token is the live one (%r)" % r)
    check(rt1 not in w.server.log_text() and rt2 not in w.server.log_text(), "no refresh token logged")


def vault(t):
    """tests/fixtures/vault_fixture.py standing in for HashiCorp Vault: the
    server's environment and the fixture's base URL."""
    tok = "hvs." + rand_tag(20)
    p = t.spawn("vault", [sys.executable, os.path.join(FIXTURES, "vault_fixture.py"), "--token", tok,
                          "--mounts", "aurora"], dict(os.environ),
                os.path.join(t.tmp, "vault.log"), os.path.join(t.tmp, "vault-san"), stdout=subprocess.PIPE)
    line = p.p.stdout.readline().decode()
    check(line.startswith("PORT "), "vault fixture did not start", line)
    p.killed = True
    base = "http://127.0.0.1:%d" % int(line.split()[1])
    return {"SECRETS_BACKEND": "vault", "VAULT_ADDR": base, "VAULT_TOKEN": tok}, base


def vault_ctl(base, path, body=None):
    req = urllib.request.Request(base + path, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


@test
def test_rotated_refresh_token_kept_when_the_backend_refuses_it(t):
    """Atlassian rotates the refresh token at each refresh and retires the
    old one: when the secrets backend refuses the new one for a moment
    (Vault sealed, a denied write), it was dropped, the next refresh
    presented the retired one and the user had to reconnect."""
    fx = HttpFixture(t, "atl-vault", "atlassian_api.mjs")
    env, vbase = vault(t)
    w = t.world(start=False)
    w.extra_env.update(fixture_env(fx, w))
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    reset(fx, w)
    org, user, key = w.new_org()
    oauth_connect(w, key, "confluence,jira")
    raw = "/_fixture/raw?mount=aurora&path=orgs/%s/users/%s/atlassian/refresh-token" % (org, user)
    stored = vault_ctl(vbase, raw)
    # the write of the rotated token is refused once (no retry: a denial)
    vault_ctl(vbase, "/_fixture/fail", {"status": 403, "count": 1, "match": "/atlassian/refresh-token",
                                        "method": "POST"})
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.get("rotated")), (200, True), "refresh, its new token not stored (%r)" % r)
    eq(vault_ctl(vbase, raw), stored, "Vault still holds the retired token")
    refused = fx.stats()["refused_refresh"]
    for i in range(2):
        r = w.post("/atlassian/refresh", {"product": "confluence"}, key=key)
        eq((r.status, r.get("rotated")), (200, True), "refresh %d after the refused write (%r)" % (i, r))
    eq(fx.stats()["refused_refresh"], refused, "the retired token never presented")
    check(vault_ctl(vbase, raw) != stored, "the live token stored once Vault took it")
    serving(w)


# ---------------------------------------------------------------------------
# Data Center
# ---------------------------------------------------------------------------
@test
def test_pat_connect(t):
    w, fx = world()
    org, user, key = w.new_org()
    # plain http without the opt-in: refused before anything is sent
    n0 = len(fx.stats()["dc"])
    r = dc_connect(w, key, "confluence", fx.base, CONF_PAT)
    eq((r.status, r.error_code), (400, "ATLASSIAN_HTTPS_REQUIRED"), "http without allow_http (%r)" % r)
    contains(r.get("error"), "allow_http", "says how to opt in")
    eq(len(fx.stats()["dc"]), n0, "nothing sent")
    nothing_connected(w, key, "http refused")
    # with it: validated with the PAT as Bearer, stored
    r = dc_connect(w, key, "confluence", fx.base + "/confluence/", CONF_PAT, allow_http=True)
    eq((r.status, r.get("connected"), r.get("mode")), (200, True, "data_center"), "Confluence PAT (%r)" % r)
    eq((r.json["products"][0]["site_url"], r.json["products"][0]["account"], r.json["products"][0]["allow_http"]),
       (fx.base + "/confluence", "Jane Doe", True), "connect answer")
    check(CONF_PAT not in r.body.decode(), "PAT not echoed")
    last = fx.stats()["dc"][-1]
    eq((last["path"], last["auth"]), ("/confluence/rest/api/user/current", "Bearer"), "validated at user/current")
    r = dc_connect(w, key, "jira", fx.base, JIRA_PAT, allow_http=True)
    eq(r.status, 200, "Jira PAT (%r)" % r)
    eq(fx.stats()["dc"][-1]["path"], "/rest/api/2/myself", "validated at myself")
    st = status(w, key)
    eq((st["confluence"]["mode"], st["confluence"]["base_url"], st["confluence"]["allow_http"],
        st["confluence"]["display_name"], st["jira"]["mode"], st["jira"]["tier"], st["atlassian"]["connected"]),
       ("data_center", fx.base + "/confluence", True, "Jane Doe", "data_center", "read_only", False), "status")
    # both products in one body; one bad PAT: neither stored
    _, _, key2 = w.new_org()
    r = w.post("/atlassian/connect", {"products": [
        {"product": "confluence", "base_url": fx.base, "pat": CONF_PAT, "allow_http": True},
        {"product": "jira", "base_url": fx.base, "pat": "bad" + rand_tag(20), "allow_http": True}]}, key=key2)
    eq((r.status, r.error_code), (400, "JIRA_PAT_INVALID"), "one bad PAT (%r)" % r)
    contains(r.get("error"), "Failed to validate Jira PAT", "the guide's message")
    contains(r.get("error"), "Verify PAT is valid and not expired", "the guide's fix")
    nothing_connected(w, key2, "a refused PAT")
    r = w.post("/atlassian/connect", {"products": [
        {"product": "confluence", "base_url": fx.base, "pat": CONF_PAT, "allow_http": True},
        {"product": "jira", "base_url": fx.base, "pat": JIRA_PAT, "allow_http": True}]}, key=key2)
    eq((r.status, sorted(p["product"] for p in r.json["products"])), (200, ["confluence", "jira"]),
       "both at once (%r)" % r)
    # a PAT of the other product, a bad one
    _, _, key3 = w.new_org()
    for product, pat, code, msg in (("confluence", JIRA_PAT, "CONFLUENCE_PAT_INVALID", "Failed to validate Confluence PAT"),
                                    ("confluence", "x" + rand_tag(30), "CONFLUENCE_PAT_INVALID", "Failed to validate Confluence PAT"),
                                    ("jira", CONF_PAT, "JIRA_PAT_INVALID", "Failed to validate Jira PAT")):
        r = dc_connect(w, key3, product, fx.base, pat, allow_http=True)
        eq((r.status, r.error_code), (400, code), "%s refused (%r)" % (product, r))
        contains(r.get("error"), msg, "the guide's message")
    # a server that is not Jira at that URL
    r = dc_connect(w, key3, "jira", fx.base + "/not-atlassian", JIRA_PAT, allow_http=True)
    eq((r.status, r.error_code), (400, "ATLASSIAN_NOT_FOUND"), "no Jira REST API there (%r)" % r)
    # unreachable, too slow, failing: distinct answers
    # bound and never listening for the test's length: a port merely closed
    # again could be taken by another program's server meanwhile
    closed = refusing_port(t)
    r = dc_connect(w, key3, "jira", "http://127.0.0.1:%d" % closed, JIRA_PAT, allow_http=True)
    eq((r.status, r.error_code), (502, "ATLASSIAN_UNREACHABLE"), "unreachable (%r)" % r)
    reset(fx, w, dc_delay_ms=14000)
    r = dc_connect(w, key3, "jira", fx.base, JIRA_PAT, allow_http=True)
    eq((r.status, r.error_code), (504, "ATLASSIAN_TIMEOUT"), "timeout (%r)" % r)
    reset(fx, w)
    fx.ctl("/_fixture/fail", {"target": "dc", "status": 500, "count": 5})
    r = dc_connect(w, key3, "jira", fx.base, JIRA_PAT, allow_http=True)
    eq((r.status, r.error_code), (502, "ATLASSIAN_ERROR"), "server error (%r)" % r)
    reset(fx, w)
    # addresses no Atlassian server has
    for base in ("http://169.254.169.254", "http://0.0.0.0:8080", "https://[fe80::1]", "http://224.0.0.1",
                 "http://[::ffff:169.254.169.254]", "http://[fd00:ec2::254]", "https://168.63.129.16",
                 "http://100.100.100.200"):
        r = dc_connect(w, key3, "confluence", base, CONF_PAT, allow_http=True)
        eq((r.status, r.error_code), (400, "ATLASSIAN_INVALID_URL"), "%s refused (%r)" % (base, r))
    nothing_connected(w, key3, "refused connects")
    log = w.server.log_text()
    check(CONF_PAT not in log and JIRA_PAT not in log, "PATs never logged")
    serving(w)


# ---------------------------------------------------------------------------
# Jira tier
# ---------------------------------------------------------------------------
@test
def test_jira_tier(t):
    w, fx = world()
    _, _, key = w.new_org()
    r = w.get("/jira/permissions", key=key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "not connected (%r)" % r)
    r = put(w, "/jira/permissions", {"tier": "full_access"}, key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "PUT not connected (%r)" % r)
    oauth_connect(w, key, "jira")
    r = w.get("/jira/permissions", key=key)
    eq((r.status, r.get("tier")), (200, "read_only"), "default Read Only (%r)" % r)
    r = put(w, "/jira/permissions", {"tier": "full_access"}, key)
    eq((r.status, r.get("tier")), (200, "full_access"), "set Full Access (%r)" % r)
    eq(w.get("/jira/permissions", key=key).get("tier"), "full_access", "read back")
    eq(status(w, key)["jira"]["tier"], "full_access", "status shows the tier")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.get("tier")), (200, "full_access"), "atl_credentials carries the tier (%r)" % r)
    for bad in ({"tier": "admin"}, {"tier": 1}, {"tier": None}, {}, {"tier": "FULL_ACCESS"}):
        r = put(w, "/jira/permissions", bad, key)
        eq((r.status, r.error_code), (400, "JIRA_INVALID_TIER"), "bad tier %r (%r)" % (bad, r))
    r = put(w, "/jira/permissions", ["full_access"], key)
    eq(r.status, 400, "not an object (%r)" % r)
    r = w.request("PUT", "/jira/permissions", b'{"tier": "read_', key=key)
    eq(r.status, 400, "truncated JSON (%r)" % r)
    eq(w.get("/jira/permissions", key=key).get("tier"), "full_access", "unchanged by refusals")
    # reconnecting (Cloud or PAT) keeps the user's choice
    oauth_connect(w, key, "jira")
    eq(w.get("/jira/permissions", key=key).get("tier"), "full_access", "kept across a reconnect")
    eq(dc_connect(w, key, "jira", fx.base, JIRA_PAT, allow_http=True).status, 200, "switch to DC")
    eq(w.get("/jira/permissions", key=key).get("tier"), "full_access", "kept across a switch to DC")
    eq(put(w, "/jira/permissions", {"tier": "read_only"}, key).get("tier"), "read_only", "back to Read Only")
    # another user of the same org has their own
    org2, _, key2 = w.new_org()
    _, key3 = w.new_user(org_id=org2)
    oauth_connect(w, key2, "jira")
    put(w, "/jira/permissions", {"tier": "full_access"}, key2)
    r = w.get("/jira/permissions", key=key3)
    eq(r.status, 404, "another user's tier is not mine (%r)" % r)


# ---------------------------------------------------------------------------
# disconnect
# ---------------------------------------------------------------------------
@test
def test_disconnect(t):
    w, fx = world()
    _, _, key = w.new_org()
    oauth_connect(w, key, "confluence,jira")
    r = w.delete("/api/connectors/confluence", key=key)
    eq((r.status, r.get("deleted")), (200, True), "disconnect Confluence (%r)" % r)
    st = status(w, key)
    eq((st["confluence"]["connected"], st["jira"]["connected"], st["atlassian"]["connected"]),
       (False, True, True), "Jira keeps the grant")
    eq(w.post("/atlassian/refresh", {"product": "jira"}, key=key).status, 200, "Jira still works")
    r = w.delete("/api/connectors/jira", key=key)
    eq(r.status, 200, "disconnect Jira (%r)" % r)
    nothing_connected(w, key, "the last product went (the grant with it)")
    # everything at once
    oauth_connect(w, key, "confluence,jira")
    r = w.delete("/api/connectors/atlassian", key=key)
    eq(r.status, 200, "disconnect Atlassian (%r)" % r)
    nothing_connected(w, key, "DELETE /api/connectors/atlassian")
    r = w.post("/atlassian/refresh", {"product": "jira"}, key=key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "refresh after disconnect (%r)" % r)
    # Data Center Confluence + Cloud Jira: removing Jira drops the grant only
    eq(dc_connect(w, key, "confluence", fx.base, CONF_PAT, allow_http=True).status, 200, "DC Confluence")
    oauth_connect(w, key, "jira")
    w.delete("/api/connectors/jira", key=key)
    st = status(w, key)
    eq((st["confluence"]["connected"], st["confluence"]["mode"], st["jira"]["connected"], st["atlassian"]["connected"]),
       (True, "data_center", False, False), "DC Confluence stays, grant gone")
    # a Cloud product moved to Data Center releases the grant
    oauth_connect(w, key, "jira")
    eq(status(w, key)["atlassian"]["connected"], True, "grant back")
    eq(dc_connect(w, key, "jira", fx.base, JIRA_PAT, allow_http=True).status, 200, "Jira to DC")
    eq(status(w, key)["atlassian"]["connected"], False, "grant released when no product uses it")
    # connecting Confluence alone again: Jira stays when the new grant still
    # covers it on the same site (its old refresh token is gone either way)
    _, _, key3 = w.new_org()
    oauth_connect(w, key3, "confluence,jira")
    oauth_connect(w, key3, "confluence")
    st = status(w, key3)
    eq((st["confluence"]["connected"], st["jira"]["connected"], sorted(st["atlassian"]["products"])),
       (True, True, ["confluence", "jira"]), "Jira kept on the new grant")
    eq(w.post("/atlassian/refresh", {"product": "jira"}, key=key3).status, 200, "and it works")
    # connecting Confluence alone while Jira is on another site's grant
    _, _, key2 = w.new_org()
    reset(fx, w, mode="multi")
    oauth_connect(w, key2, "jira")
    eq(status(w, key2)["jira"]["cloud_id"], OTHER, "Jira on the other site")
    oauth_connect(w, key2, "confluence")
    st = status(w, key2)
    eq((st["confluence"]["cloud_id"], st["jira"]["connected"]), (ACME, False),
       "the old grant's product goes with its refresh token")


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@test
def test_bad_input_every_route(t):
    w, fx = world()
    org, user, key = w.new_org()
    big = {"product": "confluence", "base_url": fx.base, "pat": CONF_PAT, "pad": "x" * (1024 * 1024 + 10)}
    for method, path in (("POST", "/atlassian/connect"), ("POST", "/atlassian/refresh"),
                         ("POST", "/atlassian/login"), ("PUT", "/jira/permissions")):
        for body in (b"{not json", b'{"product": "jira"', b"[1,2", b"\xff\xfe"):
            r = w.request(method, path, body, key=key)
            eq(r.status, 400, "%s %s malformed %r (%r)" % (method, path, body[:10], r))
        r = w.request(method, path, json.dumps(big).encode(), key=key)
        eq(r.status, 413, "%s %s oversized (%r)" % (method, path, r))
    for bad in ({}, {"product": "bitbucket", "base_url": fx.base, "pat": CONF_PAT},
                {"product": 1, "base_url": fx.base, "pat": CONF_PAT},
                {"product": "jira", "base_url": 5, "pat": JIRA_PAT, "allow_http": True},
                {"product": "jira", "base_url": fx.base, "pat": JIRA_PAT, "allow_http": "yes"},
                {"product": "jira", "base_url": fx.base, "pat": ["x"], "allow_http": True},
                {"product": "jira", "base_url": fx.base, "pat": "short", "allow_http": True},
                {"product": "jira", "base_url": fx.base, "pat": "has space in it", "allow_http": True},
                {"product": "jira", "base_url": fx.base, "pat": "y" * 9000, "allow_http": True},
                {"product": "jira", "base_url": "", "pat": JIRA_PAT},
                {"product": "jira", "base_url": "ftp://jira.example", "pat": JIRA_PAT},
                {"product": "jira", "base_url": "https://user:pw@jira.example", "pat": JIRA_PAT},
                {"product": "jira", "base_url": "https://jira.example/?q=1", "pat": JIRA_PAT},
                {"product": "jira", "base_url": "https://jira.example/#x", "pat": JIRA_PAT},
                {"product": "jira", "base_url": "https://" + "a" * 500 + ".example", "pat": JIRA_PAT},
                {"products": []}, {"products": "jira"}, {"products": [1]},
                {"products": [{"product": "jira", "base_url": fx.base, "pat": JIRA_PAT, "allow_http": True}] * 2},
                {"products": [{"product": "jira", "base_url": fx.base, "pat": JIRA_PAT, "allow_http": True}] * 3}):
        r = w.post("/atlassian/connect", bad, key=key)
        check(r.status == 400, "bad connect body %s → 400" % json.dumps(bad)[:120], r)
    r = w.post("/atlassian/connect", [1], key=key)
    eq(r.status, 400, "connect body not an object (%r)" % r)
    for bad in ({}, {"product": "bitbucket"}, {"product": 3}, [], "jira"):
        r = w.post("/atlassian/refresh", bad, key=key)
        eq(r.status, 400, "bad refresh body %r (%r)" % (bad, r))
    for q in ("products=", "products=bitbucket", "products=confluence,,x", "products=" + "jira," * 30):
        r = w.frontend_get("/atlassian/login?" + q, key=key)
        eq(r.status, 400, "bad login query %s (%r)" % (q, r))
    for bad in ({"products": 5}, {"products": [1]}, {"products": ["jira", "x", "y"]}, {"products": []}, [1]):
        r = w.post("/atlassian/login", bad, key=key)
        eq(r.status, 400, "bad login body %r (%r)" % (bad, r))
    # a state is bound to the user who started: another user's or org's
    # credentials on the callback are refused, and the state is spent
    _, key_same_org = w.new_user(org_id=org)
    _, _, key_other_org = w.new_org()
    for other in (key_same_org, key_other_org):
        cb = authorize(login(w, key, "jira"))
        r = callback(w, cb, key=other)
        eq(r.status, 400, "callback with another user's credentials (%r)" % r)
        r = callback(w, cb)
        eq(r.status, 400, "the state is spent (%r)" % r)
    for qs in ("code=abc&state=" + "A" * 43, "code=abc", "state=x", "", "error=access_denied",
               "code=" + "c" * 5000 + "&state=" + "A" * 43):
        r = https_request(w.port, w.ctx, "GET", "/atlassian/callback?" + qs)
        check(400 <= r.status < 500, "forged callback %s → 4xx" % qs[:40], r)
    # no API key
    for method, path in (("GET", "/atlassian/login"), ("POST", "/atlassian/connect"), ("GET", "/atlassian/status"),
                         ("POST", "/atlassian/refresh"), ("GET", "/jira/permissions")):
        r = w.request(method, path, {} if method == "POST" else None, auth=False)
        eq(r.status, 401, "%s %s without a key (%r)" % (method, path, r))
    nothing_connected(w, key, "bad input")
    nothing_connected(w, key_same_org, "bad input")
    serving(w)


if __name__ == "__main__":
    main()
