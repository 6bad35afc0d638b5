#!/usr/bin/env python3
"""test_ovh.py — the OVH connector (connector guide: Cloud Providers > OVH Cloud).

Peers: two tests/fixtures/ovh_oauth.mjs (oauth2-mock-server from npm on OVH's
/auth/oauth2/{authorize,token} paths, plus /1.0/me), one playing the EU
region, one CA; US is left unconfigured.  Callbacks are HTTPS (OVH accepts
nothing else): the server's own TLS listener.  The hung-provider test has a
server and an EU fixture of its own (a short provider timeout it waits out).
"""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, NODE, SERVER_BIN, T, World, _SUITE, check, contains, eq,  # noqa: E402
                     BesideHung, https_request, main, rand_tag, sanitizer_reports, test,
                     wait_until)

# The provider timeout of the hang test's own server: long enough for the
# fixtures' answers on a loaded machine, and for the checks made beside a
# hung call, which the test then waits out.
PROVIDER_TIMEOUT_S = 6.0
# The server's own limit when AURORA_PROVIDER_TIMEOUT_MS is unset (OVH's
# timeout_ms, CONNECTOR_TIMEOUT_MS in server/connectors/connector.h).
SERVER_DEFAULT_PROVIDER_TIMEOUT_S = 15.0
# The hung call must be answered before this: halfway between the two, so a
# loaded machine has 4.5 s beyond the configured limit, and a server that used
# its default instead (15 s) fails by as much.
HANG_ANSWERED_BY_S = (PROVIDER_TIMEOUT_S + SERVER_DEFAULT_PROVIDER_TIMEOUT_S) / 2
assert min(SERVER_DEFAULT_PROVIDER_TIMEOUT_S - HANG_ANSWERED_BY_S, HANG_ANSWERED_BY_S - PROVIDER_TIMEOUT_S) >= 4
# The suite server's: no other test waits for one, and a fixture call a
# loaded machine delays past 6 s would be a 504 in an unrelated test.
SUITE_PROVIDER_TIMEOUT_S = 30.0

EU_SECRET = "eu-secret-" + rand_tag(10)
CA_SECRET = "ca-secret-" + rand_tag(10)
MSG_DISABLED = "OVH connector not enabled"
_peers = {}


def ctl(which, path, body=None):
    """which: "eu" or "ca" (the suite's fixtures), or a fixture's base URL."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(_peers.get(which, which) + path, data=data,
                                 method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def _spawn(t, name):
    d = os.path.join(t.tmp, name)
    os.makedirs(d, exist_ok=True)
    p = t.spawn(name, [NODE, os.path.join(FIXTURES, "ovh_oauth.mjs")], dict(os.environ),
                os.path.join(d, name + ".log"), os.path.join(d, "san"), stdout=subprocess.PIPE)
    line = p.p.stdout.readline().decode()
    check(line.startswith("PORT "), "%s did not start" % name, line, p.log_tail())
    p.killed = True  # stopped with SIGTERM by the harness; not ours to judge
    return "http://127.0.0.1:%d" % int(line.split()[1])


def eu_env(w, eu):
    """The EU region's settings of server `w`, with the fixture at `eu`."""
    return {"OVH_EU_CLIENT_ID": "eu-client", "OVH_EU_CLIENT_SECRET": EU_SECRET,
            "OVH_EU_REDIRECT_URI": "https://127.0.0.1:%d/ovh_api/ovh/oauth2/callback" % w.port,
            "OVH_EU_AUTH_BASE": eu + "/auth", "OVH_EU_API_BASE": eu + "/1.0"}


def eu_fixture_config(env, eu):
    """Registers the EU client, and the callback of the server with `env`, at the fixture `eu`."""
    ctl(eu, "/_fixture/config", {"client_id": "eu-client", "client_secret": EU_SECRET,
                                 "redirect_uris": [env["OVH_EU_REDIRECT_URI"]], "nichandle": "eu12345-ovh"})


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        _peers["eu"] = _spawn(st, "ovh-eu")
        _peers["ca"] = _spawn(st, "ovh-ca")
        w = World(st, "suite-server", start=False)
        env = {
            "NEXT_PUBLIC_ENABLE_OVH": "true",
            "OVH_CA_CLIENT_ID": "ca-client", "OVH_CA_CLIENT_SECRET": CA_SECRET,
            "OVH_CA_REDIRECT_URI": "https://127.0.0.1:%d/ovh/oauth2/callback" % w.port,
            "OVH_CA_AUTH_BASE": _peers["ca"] + "/auth/", "OVH_CA_API_BASE": _peers["ca"] + "/1.0",
            "AURORA_PROVIDER_TIMEOUT_MS": str(int(SUITE_PROVIDER_TIMEOUT_S * 1000)),
            "CLIENT_ID": "gcp-client.apps.googleusercontent.com", "CLIENT_SECRET": "gcp-secret",
        }
        env.update(eu_env(w, _peers["eu"]))
        w.extra_env.update(env)
        w.start()
        w.bootstrap()
        eu_fixture_config(env, "eu")
        ctl("ca", "/_fixture/config", {"client_id": "ca-client", "client_secret": CA_SECRET,
                                       "redirect_uris": [env["OVH_CA_REDIRECT_URI"]], "nichandle": "ca67890-ovh"})
        _SUITE["world"] = w
    return _SUITE["world"]


def hang_world(t):
    """A server of the test's own, with the short provider timeout the hang
    test waits out, and an EU fixture of its own with that server's callback
    registered (the hung request and the revoked refresh tokens stay there)."""
    eu = _spawn(t, "ovh-eu-hang")
    w = World(t, "server", start=False)
    env = {"NEXT_PUBLIC_ENABLE_OVH": "true",
           "AURORA_PROVIDER_TIMEOUT_MS": str(int(PROVIDER_TIMEOUT_S * 1000))}
    env.update(eu_env(w, eu))
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    eu_fixture_config(env, eu)
    return w, eu


def status(w, key=None):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]["ovh"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def authorize(url):
    """The user approves at OVH (the mock): returns the Location it sends the browser to."""
    try:
        r = urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        r = e
    with r:
        eq(r.status, 302, "OVH authorize (%s)" % url)
        return r.headers["Location"]


def callback(w, cb_url, key=None):
    u = urllib.parse.urlsplit(cb_url)
    eq(u.netloc, "127.0.0.1:%d" % w.port, "OVH redirects the browser to Aurora")
    h = {"Authorization": "Bearer %s" % key} if key else {}
    return https_request(w.port, w.ctx, "GET", u.path + "?" + u.query, headers=h)


def connect(w, key, region="eu", prefix="/ovh_api/ovh/oauth2"):
    r = w.frontend_get("%s/initiate?region=%s" % (prefix, region), key=key)
    eq(r.status, 302, "initiate %s (%r)" % (region, r))
    c = callback(w, authorize(r.headers["location"]))
    eq(c.status, 302, "callback (%r)" % c)
    return c


def secret_paths(w, user_id):
    sandir = os.path.join(w.dir, "san", "secrets-list-" + rand_tag(3))
    r = subprocess.run([SERVER_BIN, "secrets", "list", "aurora/orgs/"],
                       env=w.env(sandir), cwd=w.dir, capture_output=True, timeout=30)
    check(r.returncode == 0 and not sanitizer_reports(sandir), "secrets list", r.stdout, r.stderr)
    # org-scoped paths: aurora/orgs/<org>/users/<user>/<connector>/<field>
    return [p for p in json.loads(r.stdout)["paths"] if "/users/%s/ovh/" % user_id in p]


def no_secrets_anywhere(w, *secrets):
    log = w.server.log_text()
    for s in secrets:
        check(s not in log, "server log contains a secret")
    for root, _, files in os.walk(w.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            for s in secrets:
                check(s.encode() not in data, "%s holds a secret in clear" % f)


# ---------------------------------------------------------------------------
@test
def test_disabled_unless_next_public_enable_ovh(t):
    w = t.world(extra_env={"OVH_EU_CLIENT_ID": "x", "OVH_EU_CLIENT_SECRET": "y",
                           "OVH_EU_REDIRECT_URI": "https://example.test/ovh_api/ovh/oauth2/callback"})
    for method, path in (("GET", "/ovh_api/ovh/oauth2/initiate?region=eu"), ("POST", "/ovh_api/ovh/oauth2/initiate"),
                         ("GET", "/ovh/oauth2/initiate"), ("GET", "/ovh_api/ovh/oauth2/callback?code=a&state=b"),
                         ("GET", "/ovh/oauth2/callback"), ("POST", "/ovh_api/ovh/oauth2/refresh"),
                         ("POST", "/ovh/oauth2/refresh")):
        r = w.request(method, path, body={"region": "eu"} if method == "POST" else None)
        eq((r.status, r.error_code), (404, "OVH_NOT_ENABLED"), "%s %s when disabled (%r)" % (method, path, r))
        contains(r.get("error"), MSG_DISABLED, "error")
    st = status(w)
    eq((st.get("enabled"), st.get("connected")), (False, False), "status when disabled")


@test
def test_regions_configuration_errors(t):
    w = world()
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=us")
    eq((r.status, r.error_code), (400, "OVH_REGION_NOT_CONFIGURED"), "unconfigured region (%r)" % r)
    contains(r.get("error"), "OAuth2 credentials not configured for us", "error (the guide's message)")
    contains(r.get("error"), "OVH_US_CLIENT_ID", "error names the settings")
    r = w.post("/ovh_api/ovh/oauth2/initiate", {"region": "US"})
    contains(r.get("error"), "OAuth2 credentials not configured for us", "POST, upper-case region")
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=ap")
    eq((r.status, r.error_code), (400, "OVH_UNKNOWN_REGION"), "unknown region (%r)" % r)
    # query values are %-decoded exactly once: "e%2575" is the literal "e%75", not "eu"
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=e%2575")
    eq((r.status, r.error_code), (400, "OVH_UNKNOWN_REGION"), "double-encoded region (%r)" % r)
    contains(r.get("error"), "'e%75'", "the region as sent, decoded once")
    # a decoded '&' inside a value does not split it into another argument
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?x=%26region%3Deu&region=ap")
    eq((r.status, r.error_code), (400, "OVH_UNKNOWN_REGION"), "an encoded '&' stays data (%r)" % r)
    # a redirect_uri other than the configured one
    r = w.get("/ovh_api/ovh/oauth2/initiate?region=eu&redirect_uri=" +
              urllib.parse.quote("https://evil.example/ovh_api/ovh/oauth2/callback"))
    eq((r.status, r.error_code), (400, "OVH_INVALID_REDIRECT_URI"), "foreign redirect_uri (%r)" % r)
    contains(r.get("error"), "Invalid redirect_uri", "error")
    # http:// or missing callback URL: the guide's "Invalid redirect_uri"
    w2 = t.world(extra_env={"NEXT_PUBLIC_ENABLE_OVH": "true",
                            "OVH_EU_CLIENT_ID": "a", "OVH_EU_CLIENT_SECRET": "b",
                            "OVH_EU_REDIRECT_URI": "http://localhost:5080/ovh_api/ovh/oauth2/callback",
                            "OVH_CA_CLIENT_ID": "a", "OVH_CA_CLIENT_SECRET": "b"})
    for region in ("eu", "ca"):
        r = w2.frontend_get("/ovh_api/ovh/oauth2/initiate?region=" + region)
        eq((r.status, r.error_code), (400, "OVH_INVALID_REDIRECT_URI"), "%s: http / missing redirect (%r)" % (region, r))
        contains(r.get("error"), "Invalid redirect_uri", "error")
        contains(r.get("error"), "HTTPS", "error says why")


@test
def test_default_authorization_urls_per_region(t):
    env = {"NEXT_PUBLIC_ENABLE_OVH": "true"}
    for reg in ("EU", "CA", "US"):
        env.update({"OVH_%s_CLIENT_ID" % reg: "cid-" + reg.lower(), "OVH_%s_CLIENT_SECRET" % reg: "s",
                    "OVH_%s_REDIRECT_URI" % reg: "https://abc123.ngrok-free.app/ovh_api/ovh/oauth2/callback"})
    w = t.world(extra_env=env)
    want = {"eu": "https://www.ovh.com/auth/oauth2/authorize",
            "ca": "https://ca.ovh.com/auth/oauth2/authorize",
            "us": "https://us.ovhcloud.com/auth/oauth2/authorize"}
    for region, base in want.items():
        r = w.post("/ovh_api/ovh/oauth2/initiate", {"region": region})
        eq(r.status, 200, "POST initiate %s (%r)" % (region, r))
        u = urllib.parse.urlsplit(r.get("authorization_url"))
        q = dict(urllib.parse.parse_qsl(u.query))
        eq("%s://%s%s" % (u.scheme, u.netloc, u.path), base, "authorization endpoint for %s" % region)
        eq((q.get("client_id"), q.get("response_type"), q.get("redirect_uri"), q.get("scope")),
           ("cid-" + region, "code", "https://abc123.ngrok-free.app/ovh_api/ovh/oauth2/callback", "all"),
           "authorization parameters for %s" % region)
        check(len(q.get("state", "")) == 43, "state", q)
        eq(r.get("region"), region, "region")


@test
def test_eu_connect_and_refresh_rotation(t):
    w = world()
    org, user, key = w.new_org()
    before_ca = ctl("ca", "/_fixture/stats")["token"]
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=eu", key=key)
    eq(r.status, 302, "initiate (%r)" % r)
    loc = r.headers["location"]
    check(loc.startswith(_peers["eu"] + "/auth/oauth2/authorize?"), "EU authorization URL", loc)
    c = callback(w, authorize(loc))  # the browser: no credentials
    eq(c.status, 302, "callback (%r)" % c)
    contains(c.headers.get("location"), "/connectors?provider=ovh&status=connected", "back to the frontend")
    eq((c.get("connected"), c.get("region"), c.get("account")), (True, "eu", "eu12345-ovh"), "callback body")
    last = ctl("eu", "/_fixture/stats")["last_token"]
    eq((last["grant_type"], last["client_id"], last["redirect_uri"], last["has_secret"]),
       ("authorization_code", "eu-client", w.extra_env["OVH_EU_REDIRECT_URI"], True), "code exchange at EU")
    eq(ctl("ca", "/_fixture/stats")["token"], before_ca, "CA token endpoint untouched")
    st = status(w, key)
    eq((st.get("enabled"), st.get("connected"), st.get("account"), st.get("region")),
       (True, True, "eu12345-ovh", "eu"), "status")
    eq(st.get("redirect_uris"), {"eu": w.extra_env["OVH_EU_REDIRECT_URI"], "ca": w.extra_env["OVH_CA_REDIRECT_URI"]},
       "each configured region's callback to register (US has none)")
    eq(secret_paths(w, user), ["aurora/orgs/%s/users/%s/ovh/refresh-token" % (org, user)], "stored secrets")
    # refresh twice: OVH rotates refresh tokens, so the second only works if the
    # rotated one was stored
    for i in (1, 2):
        r = w.post("/ovh_api/ovh/oauth2/refresh", key=key)
        eq(r.status, 200, "refresh %d (%r)" % (i, r))
        eq((r.get("refreshed"), r.get("region"), r.get("expires_in")), (True, "eu", 3600), "refresh %d" % i)
        check("access_token" not in r.body.decode() and "refresh_token" not in r.body.decode(),
              "refresh answer carries a token", r)
    eq(ctl("eu", "/_fixture/stats")["token"].get("refresh_token", 0) >= 2, True, "refresh grants at EU")
    r = w.post("/ovh/oauth2/refresh", key=key)
    eq(r.status, 200, "refresh on the /ovh/oauth2 alias (%r)" % r)
    no_secrets_anywhere(w, EU_SECRET, CA_SECRET)
    # another user, another org: nothing
    _, key2 = w.new_user(org_id=org)
    eq(status(w, key2).get("connected"), False, "another user of the org")
    r = w.post("/ovh_api/ovh/oauth2/refresh", key=key2)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "refresh without a connection (%r)" % r)


@test
def test_disconnect_during_a_refresh_leaves_no_token(t):
    """A disconnect while a refresh is at OVH: OVH rotates the refresh token,
    and the new one must not be written back to the secrets backend after
    the disconnect deleted the connection's secrets (a live credential of a
    connection the user removed, kept with no row pointing at it)."""
    w = world()
    org, user, key = w.new_org()
    connect(w, key)
    eq(len(secret_paths(w, user)), 1, "the refresh token stored")
    held = ctl("eu", "/_fixture/stats")["held"]
    ctl("eu", "/_fixture/fail", {"target": "token", "hold": True})
    res = {}

    def refresh():
        res["refresh"] = w.post("/ovh_api/ovh/oauth2/refresh", key=key)

    def disconnect():
        res["delete"] = w.delete("/api/connectors/ovh", key=key)

    ta = threading.Thread(target=refresh)
    ta.start()
    tb = None
    try:
        wait_until(lambda: ctl("eu", "/_fixture/stats")["held"] > held, 30, what="the refresh held at OVH")
        mark = len(w.server.log_text())
        tb = threading.Thread(target=disconnect)
        tb.start()
        # the disconnect either waits for the refresh (says so) or is done
        wait_until(lambda: "delete" in res or
                   "the disconnect waits for the token refresh" in w.server.log_text()[mark:],
                   30, what="the disconnect to finish or wait for the refresh")
    finally:
        ctl("eu", "/_fixture/release", {})
        ta.join(60)
        if tb:
            tb.join(60)
    eq((res["delete"].status, res["delete"].get("deleted")), (200, True), "disconnect (%r)" % res["delete"])
    # The refresh ends its grant (OVH's answer, the rotated token stored)
    # before it saves the connection's new expiry; the waiting disconnect may
    # delete the row in between.  Both answers are right: 200 with the access
    # token, or 404 "not connected" when the disconnect came first (a full
    # run under load took that branch).  What matters is below: nothing left.
    rr = res["refresh"]
    check(rr.status == 200 and rr.json.get("refreshed") is True or
          (rr.status, rr.error_code) == (404, "MISSING_CONNECTOR"),
          "the refresh that was under way: 200 or 404 MISSING_CONNECTOR (%r)" % rr)
    eq(secret_paths(w, user), [], "no secret left after the disconnect")
    eq(status(w, key).get("connected"), False, "status after the disconnect")
    r = w.post("/ovh_api/ovh/oauth2/refresh", key=key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "refresh after the disconnect (%r)" % r)


@test
def test_ca_region_on_the_alias_routes(t):
    w = world()
    _, user, key = w.new_org()
    r = w.frontend_post("/ovh/oauth2/initiate", {"region": "ovh-ca"}, key=key)
    eq(r.status, 200, "POST /ovh/oauth2/initiate (%r)" % r)
    cb = authorize(r.get("authorization_url"))
    contains(cb, "/ovh/oauth2/callback?", "CA callback URL (the alias)")
    c = callback(w, cb)
    eq((c.status, c.get("region"), c.get("account")), (302, "ca", "ca67890-ovh"), "CA callback (%r)" % c)
    eq(ctl("ca", "/_fixture/stats")["last_token"]["client_id"], "ca-client", "code exchanged at CA")
    r = w.post("/ovh_api/ovh/oauth2/refresh", key=key)
    eq((r.status, r.get("region")), (200, "ca"), "refresh goes to CA (%r)" % r)


@test
def test_callback_rejects_bad_states(t):
    w = world()
    org, user, key = w.new_org()
    for qs, what in (("code=x", "missing"), ("code=x&state=short-state", "malformed"), ("code=x&state=" + "B" * 43, "unknown")):
        c = https_request(w.port, w.ctx, "GET", "/ovh_api/ovh/oauth2/callback?" + qs)
        eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "%s state (%r)" % (what, c))

    def fresh_cb():
        r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=eu", key=key)
        return authorize(r.headers["location"])
    cb = fresh_cb()
    eq(callback(w, cb).status, 302, "first use")
    c = callback(w, cb)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "reused state (%r)" % c)
    contains(c.get("error"), "already used", "error")
    cb = fresh_cb()
    w.testctl("expire-oauth-state", "--state", dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(cb).query))["state"])
    c = callback(w, cb)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "expired state (%r)" % c)
    contains(c.get("error"), "expired", "error")
    _, key_b = w.new_user(org_id=org)
    c = callback(w, fresh_cb(), key=key_b)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "another user's state (%r)" % c)
    contains(c.get("error"), "another user", "error")
    g = w.frontend_get("/gcp/login", key=key)
    eq(g.status, 302, "GET /gcp/login (%r)" % g)
    gstate = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(g.headers["location"]).query))["state"]
    c = https_request(w.port, w.ctx, "GET", "/ovh_api/ovh/oauth2/callback?code=x&state=" + gstate)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "GCP state at the OVH callback (%r)" % c)
    contains(c.get("error"), "another provider", "error")
    ctl("eu", "/_fixture/fail", {"deny": "access_denied"})
    c = callback(w, fresh_cb())
    eq((c.status, c.error_code), (400, "OVH_AUTHORIZATION_FAILED"), "user declined (%r)" % c)
    contains(c.get("error"), "access_denied", "error")


@test(timeout=60)
def test_provider_failures_and_server_keeps_serving(t):
    # a server of its own, with the provider timeout this test waits for
    w, eu = hang_world(t)
    _, user, key = w.new_org()
    # /me refuses the new token -> nothing stored
    r = w.frontend_get("/ovh_api/ovh/oauth2/initiate?region=eu", key=key)
    cb = authorize(r.headers["location"])
    # /me is a GET made through the connector kit (kit_call): a 5xx is retried,
    # up to 4 attempts, so the fault must outlast them to reach the caller
    ctl(eu, "/_fixture/fail", {"target": "me", "status": 500, "count": 4})
    c = callback(w, cb)
    eq((c.status, c.error_code), (502, "OVH_ERROR"), "/me answers 500 (%r)" % c)
    eq(status(w, key).get("connected"), False, "connected after a failed callback")
    eq(secret_paths(w, user), [], "nothing stored after a failed callback")
    # one 503 from /me is retried: the connect goes through
    ctl(eu, "/_fixture/fail", {"target": "me", "status": 503, "count": 1})
    connect(w, key)
    ctl(eu, "/_fixture/fail", {"target": "token", "status": 500})
    r = w.post("/ovh_api/ovh/oauth2/refresh", key=key)
    eq((r.status, r.error_code), (502, "OVH_ERROR"), "token endpoint 500 (%r)" % r)
    contains(r.get("error"), "OVH", "error names the provider")
    ctl(eu, "/_fixture/fail", {"target": "token", "hang": True})
    res = {}

    def hung():
        t0 = time.monotonic()
        res["r"] = w.post("/ovh_api/ovh/oauth2/refresh", key=key, timeout=30)
        res["dt"] = time.monotonic() - t0
    th = threading.Thread(target=hung)
    before = ctl(eu, "/_fixture/stats")["hung"]
    th.start()
    wait_until(lambda: ctl(eu, "/_fixture/stats")["hung"] > before, 10, 0.02,
               "the refresh to reach the hung OVH token endpoint")
    # Not blocked by the hung call: answered beside it (BesideHung).
    beside = BesideHung(th, PROVIDER_TIMEOUT_S)
    for path in ("/api/connectors/status", "/health", "/api/kubectl/tokens"):
        r = beside.request("GET " + path, lambda: w.get(path, key=key))
        eq(r.status, 200, "GET %s while OVH hangs" % path)
    beside.done()
    th.join(30)
    eq((res["r"].status, res["r"].error_code), (504, "OVH_TIMEOUT"), "OVH never answers (%r)" % res["r"])
    # after the configured limit, well before the server's own default
    check(PROVIDER_TIMEOUT_S - 0.5 <= res["dt"] < HANG_ANSWERED_BY_S,
          "timed out after AURORA_PROVIDER_TIMEOUT_MS=%d, not the %.0f s default (%.1fs)"
          % (PROVIDER_TIMEOUT_S * 1000, SERVER_DEFAULT_PROVIDER_TIMEOUT_S, res["dt"]))
    # the refresh token was revoked at OVH
    ctl(eu, "/_fixture/revoke_refresh_tokens", {})
    r = w.post("/ovh_api/ovh/oauth2/refresh", key=key)
    eq((r.status, r.error_code), (400, "OVH_GRANT_INVALID"), "revoked refresh token (%r)" % r)
    contains(r.get("error"), "invalid_grant", "error")
    contains(r.get("error"), "reconnect via the Connectors page", "what to do")
    no_secrets_anywhere(w, EU_SECRET)


@test
def test_no_cloud_exec_for_ovh(t):
    w = world()
    _, _, key = w.new_org()
    connect(w, key)
    tok = w.create_token("it-ovh", key=key)
    r = w.post("/api/cloud_exec", {"provider": "ovh", "cluster_id": tok["cluster_id"],
                                   "args": ["openstack", "server", "list"]}, key=key)
    eq((r.status, r.error_code), (400, "UNKNOWN_PROVIDER"), "cloud_exec for OVH (%r)" % r)


@test
def test_disconnect(t):
    w = world()
    _, user, key = w.new_org()
    connect(w, key)
    r = w.delete("/api/connectors/ovh", key=key)
    eq((r.status, r.get("deleted")), (200, True), "DELETE /api/connectors/ovh (%r)" % r)
    eq(status(w, key).get("connected"), False, "connected after disconnect")
    eq(secret_paths(w, user), [], "secrets after disconnect")


if __name__ == "__main__":
    main()
