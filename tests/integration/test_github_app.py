#!/usr/bin/env python3
"""test_github_app.py — the GitHub connector's App path (connector guide:
Communication Tools > GitHub, Path A, GitHub Enterprise Server).

Peer: tests/fixtures/github_api.mjs, which stands in for GitHub's REST API as
documented (no GitHub is installable), mounted under /api/v3 like GitHub
Enterprise Server: the server runs with GH_BASE_URL=http://127.0.0.1:<port> and
GH_API_BASE_URL=http://127.0.0.1:<port>/api/v3.  The fixture verifies every
App JWT independently with `jose` (RS256, iss, backdated iat, exp - iat <= 600)
and refuses a bad one with 401.  The App key pairs are generated here with
openssl and stored with `aurora-server secrets put`, as the guide's Step 3.

Every other host is a trap: the server's http(s)_proxy points at a listener
that records any connection, so a call that leaves GH_API_BASE_URL is seen.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, ROOT, SERVER_BIN, T, _SUITE, HostTrap, HttpFixture, check, contains, eq,  # noqa: E402
                     https_request, main, rand_tag, sanitizer_reports, test, wait_until)

APP_ID = "424242"
CLIENT_ID = "Iv23liAuroraTest01"
SLUG = "aurora-acme-test"
FRONTEND = "https://aurora.example.test"
MSG_STATE_MISSING = "GitHub App install URL is missing the required state parameter"
MSG_DESERIALIZE = "Could not deserialize key data"
PERMS = {"actions": "write", "checks": "read", "contents": "write", "issues": "write",
         "metadata": "read", "pull_requests": "write", "members": "read"}
EVENTS = ["check_run", "check_suite", "deployment", "deployment_status", "issues", "pull_request",
          "workflow_run"]
_env = {}


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------
Trap = HostTrap  # test_github_webhooks.py uses gha.Trap


def keypair(t, name):
    """(private PEM as PKCS#1 'BEGIN RSA PRIVATE KEY', as GitHub hands it out; public SPKI PEM)."""
    d = os.path.join(t.tmp, "keys")
    os.makedirs(d, exist_ok=True)
    priv, pub = os.path.join(d, name + ".pem"), os.path.join(d, name + ".pub")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", priv, "2048"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", priv, "-pubout", "-out", pub], check=True, capture_output=True)
    with open(priv) as f, open(pub) as g:
        return f.read(), g.read()


class Fixture(HttpFixture):
    """tests/fixtures/github_api.mjs: GitHub's REST API as documented, under /api/v3."""

    def __init__(self, t):
        super().__init__(t, "github-api", "github_api.mjs")


def installation(iid, login="octo-org", type_="Organization", suspended_at=None):
    return {"id": iid, "app_id": int(APP_ID), "app_slug": SLUG, "target_type": type_,
            "account": {"login": login, "id": iid * 10, "type": type_},
            "repository_selection": "selected", "permissions": PERMS, "events": EVENTS,
            "suspended_at": suspended_at, "created_at": "2026-01-01T00:00:00Z"}


def make_world(t, name, fx, trap, extra=None, start=True):
    w = t.world(name, start=False)
    proxy = "http://127.0.0.1:%d" % trap.port
    w.extra_env.update({
        "GITHUB_APP_ID": APP_ID, "GITHUB_APP_CLIENT_ID": CLIENT_ID, "NEXT_PUBLIC_GITHUB_APP_SLUG": SLUG,
        "GITHUB_APP_SETUP_URL": "https://api.aurora.example.test/github/app/install/callback",
        "GH_BASE_URL": fx.base, "GH_API_BASE_URL": fx.base + "/api/v3/",
        "GITHUB_APP_KEY_REFRESH_S": "1", "FRONTEND_URL": FRONTEND,
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        "http_proxy": proxy, "https_proxy": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy,
    })
    w.extra_env.update(extra or {})
    if start:
        w.start()
        w.bootstrap()
    return w


def secret_put(w, path, data):
    f = os.path.join(w.dir, "secret-" + rand_tag(4))
    with open(f, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    sandir = os.path.join(w.dir, "san", "secrets-put-" + rand_tag(3))
    r = subprocess.run([SERVER_BIN, "secrets", "put", path, "--file", f], env=w.env(sandir), cwd=w.dir,
                       capture_output=True, timeout=30)
    os.unlink(f)
    check(r.returncode == 0 and not sanitizer_reports(sandir), "secrets put %s" % path, r.stdout, r.stderr)


def world():
    """The suite's server, GitHub fixture and trap; the App key stored."""
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx, trap = Fixture(st), Trap()
        priv, pub = keypair(st, "app")
        w = make_world(st, "suite-server", fx, trap, {
            "GITHUB_MAX_REPO_PAGES": "3",
            # test_repositories_token_cached_across_concurrent_calls has eight
            # listings of one organization meet at GitHub: all on threads at
            # once, not four and four parked behind them (worker.h's share)
            "AURORA_OUTBOUND_PER_ORG": "8",
            # GCP's OAuth login, for a state of another provider
            "CLIENT_ID": "gcp-client.apps.googleusercontent.com", "CLIENT_SECRET": "gcp-" + rand_tag(8)},
            start=False)
        os.makedirs(w.data, exist_ok=True)
        w.start()
        w.bootstrap()
        secret_put(w, "aurora/system/github-app/private-key", priv)
        fx.config(public_key=pub, issuers=[CLIENT_ID],
                  installations={str(i): installation(i) for i in (101, 102, 103, 104, 105, 106)})
        _env.update(fx=fx, trap=trap, priv=priv, pub=pub)
        _SUITE["world"] = w
    return _SUITE["world"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def gh_status(w, key=None):
    r = w.get("/github/status", key=key)
    eq(r.status, 200, "GET /github/status (%r)" % r)
    return r.json


def fresh_state(w, key=None):
    """A state as the frontend gets it (its GitHub page reads /github/status)."""
    r = w.frontend_get("/github/status", key=key)
    eq(r.status, 200, "GET /github/status as the frontend (%r)" % r)
    st = r.json
    app = [a for a in st["actions"] if a["action"] == "app_install"]
    check(app and app[0].get("install_url"), "status offers the App install URL", st)
    u = urllib.parse.urlsplit(app[0]["install_url"])
    return dict(urllib.parse.parse_qsl(u.query))["state"], app[0]["install_url"]


def callback(w, qs, key=None):
    h = {"Authorization": "Bearer %s" % key} if key else {}
    return https_request(w.port, w.ctx, "GET", "/github/app/install/callback?" + qs, headers=h)


def install(w, iid, key=None):
    state, _ = fresh_state(w, key)
    return callback(w, "installation_id=%d&setup_action=install&state=%s" % (iid, state))


def connectors_status(w, key=None):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]["github"]


def repos(w, iid, key=None):
    return w.get("/api/github/installations/%d/repositories" % iid, key=key)


def no_foreign_hosts():
    eq(_env["trap"].hits(), [], "connections to hosts other than GH_API_BASE_URL")


# ---------------------------------------------------------------------------
@test
def test_status_actions_per_auth_mode(t):
    w = world()
    st = gh_status(w)
    eq(st["auth_mode"], "app", "default GITHUB_AUTH_MODE")
    eq([a["action"] for a in st["actions"]], ["app_install"], "app mode offers the App install only")
    a = st["actions"][0]
    eq((a["recommended"], a["available"]), (True, True), "App action")
    check(a["install_url"].startswith("%s/apps/%s/installations/new?state=" % (_env["fx"].base, SLUG)),
          "install URL under GH_BASE_URL", a)
    eq(len(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(a["install_url"]).query))["state"]), 43, "state")
    eq((st["app"]["configured"], st["app"]["private_key"]), (True, "ok"), "app block")
    eq(st["app"]["setup_url"], "https://api.aurora.example.test/github/app/install/callback", "setup URL shown")
    r = w.frontend_get("/github/app/install")
    eq(r.status, 302, "GET /github/app/install (%r)" % r)
    check(r.headers["location"].startswith(_env["fx"].base + "/apps/%s/installations/new?state=" % SLUG),
          "install redirect", r.headers)
    eq(w.get("/github/status", auth=False).status, 401, "status needs credentials")

    fx, trap = _env["fx"], _env["trap"]
    wh = make_world(t, "hybrid", fx, trap, {"GITHUB_AUTH_MODE": "hybrid"})
    st = gh_status(wh)
    eq([a["action"] for a in st["actions"]], ["app_install", "oauth"], "hybrid offers both")
    eq([a["recommended"] for a in st["actions"]], [True, False], "hybrid recommends the App")
    eq(st["actions"][1]["available"], False, "OAuth without GH_OAUTH_CLIENT_ID/SECRET")
    contains(st["actions"][1]["error"], "Failed to initiate GitHub OAuth", "OAuth action error")
    wo = make_world(t, "oauth", fx, trap, {"GITHUB_AUTH_MODE": "oauth", "GH_OAUTH_CLIENT_ID": "Ov23li",
                                           "GH_OAUTH_CLIENT_SECRET": "s3cret-" + rand_tag(6)})
    st = gh_status(wo)
    eq([(a["action"], a["available"], a["recommended"]) for a in st["actions"]], [("oauth", True, True)],
       "oauth mode offers OAuth only")
    r = wo.frontend_get("/github/app/install")
    eq((r.status, r.error_code), (404, "GITHUB_APP_DISABLED"), "no App install in oauth mode (%r)" % r)
    wb = make_world(t, "badmode", fx, trap, {"GITHUB_AUTH_MODE": "both"})
    r = wb.get("/github/status")
    eq((r.status, r.error_code), (500, "GITHUB_AUTH_MODE_INVALID"), "unknown mode (%r)" % r)
    wu = make_world(t, "badurl", fx, trap, {"GH_API_BASE_URL": "ftp://ghes.example.test/api/v3"})
    st = gh_status(wu)
    eq(st["app"]["configured"], False, "a non-http GH_API_BASE_URL leaves the App unconfigured")
    contains(st["app"]["error"], "GH_API_BASE_URL", "error names the setting")
    eq(connectors_status(wb)["auth_mode"], "invalid", "connectors status names the bad mode")
    eq(wb.get("/health", auth=False).status, 200, "server serving")


@test
def test_install_callback_happy_path(t):
    w = world()
    fx = _env["fx"]
    before = fx.stats()["jwt_ok"]
    c = install(w, 101)
    eq(c.status, 302, "callback (%r)" % c)
    eq(c.headers["location"], FRONTEND + "/connectors?provider=github&status=connected", "redirect")
    eq((c.get("installation_id"), c.get("account")), (101, "octo-org"), "callback body")
    check(fx.stats()["jwt_ok"] > before, "the installation was fetched with a JWT the fixture verified")
    r = w.get("/api/github/installations")
    eq(r.status, 200, "list installations (%r)" % r)
    got = [i for i in r.json["installations"] if i["installation_id"] == 101]
    eq(len(got), 1, "installation 101 listed")
    i = got[0]
    eq((i["account_login"], i["account_type"], i["repository_selection"]), ("octo-org", "Organization", "selected"),
       "account")
    eq(i["permissions"], PERMS, "permissions")
    eq(i["events"], EVENTS, "events")
    eq((i["suspended"], i["pending"], i["installed_by"]), (False, False, w.user_id), "state and installer")
    eq(i["manage_url"], "%s/organizations/octo-org/settings/installations/101" % fx.base, "manage URL under GH_BASE_URL")
    st = connectors_status(w)
    eq((st["connected"], st["app_configured"], st["installations"] >= 1), (True, True, True), "connectors status")
    contains(w.server.log_text(), "installation_id 101", "log names the new installation_id")
    # an update of the same installation by the same org refreshes it
    fx.config(installations={**{str(k): installation(k) for k in (101, 102, 103, 104, 105, 106)},
                             "101": {**installation(101), "permissions": {**PERMS, "checks": "write"}}})
    state, _ = fresh_state(w)
    c = callback(w, "installation_id=101&setup_action=update&state=" + state)
    eq(c.status, 302, "update callback (%r)" % c)
    i = [x for x in w.get("/api/github/installations").json["installations"] if x["installation_id"] == 101][0]
    eq(i["permissions"]["checks"], "write", "permissions refreshed")
    # the guide's Manage link of a personal account's installation: {GH_BASE_URL}/settings/installations/<id>
    fx.config(installations={**{str(k): installation(k) for k in (101, 102, 103, 104, 105, 106)},
                             "171": installation(171, login="octo-user", type_="User")})
    eq(install(w, 171).status, 302, "a personal account's installation bound")
    i = [x for x in w.get("/api/github/installations").json["installations"] if x["installation_id"] == 171][0]
    eq((i["account_type"], i["manage_url"]), ("User", "%s/settings/installations/171" % fx.base),
       "a user's installation is managed under /settings/installations")
    no_foreign_hosts()


@test
def test_callback_missing_state_message(t):
    w = world()
    for qs in ("installation_id=101&setup_action=install", "installation_id=101&setup_action=install&state=", ""):
        c = callback(w, qs)
        eq((c.status, c.error_code), (400, "GITHUB_APP_STATE_MISSING"), "no state: %r (%r)" % (qs, c))
        eq(c.get("error"), MSG_STATE_MISSING, "the guide's message, exactly")


@test
def test_callback_refuses_replayed_expired_foreign_states(t):
    w = world()
    org, user, key = w.new_org()
    for qs, what in (("state=short", "malformed"), ("state=" + "B" * 43, "unknown")):
        c = callback(w, "installation_id=102&setup_action=install&" + qs)
        eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "%s state (%r)" % (what, c))
    state, _ = fresh_state(w, key)
    qs = "installation_id=102&setup_action=install&state=" + state
    eq(callback(w, qs).status, 302, "first use")
    c = callback(w, qs)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "replayed state (%r)" % c)
    contains(c.get("error"), "already used", "error")
    state, _ = fresh_state(w, key)
    w.testctl("expire-oauth-state", "--state", state)
    c = callback(w, "installation_id=103&setup_action=install&state=" + state)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "expired state (%r)" % c)
    contains(c.get("error"), "expired", "error")
    # a state of another user, presented by an authenticated caller
    _, key_b = w.new_user(org_id=org)
    state, _ = fresh_state(w, key)
    c = callback(w, "installation_id=103&setup_action=install&state=" + state, key=key_b)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "another user's state (%r)" % c)
    contains(c.get("error"), "another user", "error")
    # a state issued for another provider (GCP's login)
    g = w.frontend_get("/gcp/login", key=key)
    eq(g.status, 302, "GET /gcp/login (%r)" % g)
    gstate = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(g.headers["location"]).query))["state"]
    c = callback(w, "installation_id=103&setup_action=install&state=" + gstate)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "GCP state at the GitHub callback (%r)" % c)
    contains(c.get("error"), "another provider", "error")
    # the installation is bound to the org whose state was used: org B cannot take it over
    c = install(w, 102)  # the suite's org, 102 belongs to org `org` now
    eq((c.status, c.error_code), (409, "GITHUB_INSTALLATION_CLAIMED"), "installation of another org (%r)" % c)
    mine = [i["installation_id"] for i in w.get("/api/github/installations", key=key).json["installations"]]
    eq(mine, [102], "org B's installations")
    theirs = [i["installation_id"] for i in w.get("/api/github/installations").json["installations"]]
    check(102 not in theirs, "the suite org does not see org B's installation", theirs)
    r = repos(w, 102)
    eq((r.status, r.error_code), (404, "GITHUB_INSTALLATION_NOT_FOUND"), "repos of another org's installation (%r)" % r)


@test
def test_callback_bad_installation_id(t):
    w = world()
    bad = ["abc", "-1", "+1", "0", "007", "1e5", "12a", "0x10", "12345678901234567", "99999999999999999999999",
           "1%2000", "%201", "1%3B2", "1.0", ""]
    for v in bad:
        state, _ = fresh_state(w)
        c = callback(w, "installation_id=%s&setup_action=install&state=%s" % (v, state))
        eq((c.status, c.error_code), (400, "GITHUB_BAD_INSTALLATION_ID"), "installation_id=%r (%r)" % (v, c))
    state, _ = fresh_state(w)
    c = callback(w, "setup_action=install&state=" + state)
    eq((c.status, c.error_code), (400, "GITHUB_BAD_INSTALLATION_ID"), "no installation_id (%r)" % c)
    state, _ = fresh_state(w)
    c = callback(w, "installation_id=101&setup_action=delete&state=" + state)
    eq((c.status, c.error_code), (400, "BAD_REQUEST"), "unknown setup_action (%r)" % c)
    # well-formed but unknown to GitHub
    c = install(w, 999999)
    eq((c.status, c.error_code), (400, "GITHUB_INSTALLATION_NOT_FOUND"), "unknown installation (%r)" % c)
    # setup_action=request: awaiting an org owner, nothing stored
    state, _ = fresh_state(w)
    c = callback(w, "setup_action=request&state=" + state)
    eq((c.status, c.headers.get("location")), (302, FRONTEND + "/connectors?provider=github&status=requested"),
       "install requested (%r)" % c)
    r = w.get("/api/github/installations/abc/repositories")
    eq((r.status, r.error_code), (400, "GITHUB_BAD_INSTALLATION_ID"), "repos of a bad id (%r)" % r)
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def test_repositories_token_cached_across_concurrent_calls(t):
    w = world()
    fx = _env["fx"]
    eq(install(w, 104).status, 302, "install 104")
    # The fixture releases the first pages only once all 8 listings are at
    # GitHub together (an event: serialized listings would time out instead).
    # The mint's latency makes the listings likely to overlap it; "1 mint"
    # holds whether they do (shared in-flight mint) or not (cached token).
    fx.config(mint_delay_ms=400, page_barrier=8, repos=250)
    fx.ctl("/_fixture/reset")
    with ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda _: repos(w, 104), range(8)))
    for r in rs:
        eq(r.status, 200, "concurrent listing (%r)" % r)
        eq((len(r.json["repositories"]), r.json["total_count"], r.json["pages"], r.json["truncated"]),
           (250, 250, 3, False), "all pages followed")
    s = fx.stats()
    eq(s["mints"], {"104": 1}, "8 concurrent listings -> 1 mint")
    eq(s["max_pages_in_flight"], 8, "the 8 listings were at GitHub together")
    r0 = rs[0].json["repositories"][0]
    eq(r0["html_url"], "%s/octo-org/repo-0" % fx.base, "repository URL built from GH_BASE_URL")
    eq((r0["full_name"], r0["default_branch"], r0["private"]), ("octo-org/repo-0", "main", True), "repository")
    eq(repos(w, 104).status, 200, "one more listing")
    eq(fx.stats()["mints"], {"104": 1}, "still 1 mint: the token is cached")
    # page cap (GITHUB_MAX_REPO_PAGES=3)
    fx.config(mint_delay_ms=0, page_barrier=0, repos=450)
    r = repos(w, 104)
    eq((r.status, len(r.json["repositories"]), r.json["pages"], r.json["truncated"]), (200, 300, 3, True),
       "page cap (%r)" % r)
    # a next link outside GH_API_BASE_URL is not followed (the token would go with it)
    fx.ctl("/_fixture/reset")
    fx.config(repos=250, link_base="http://127.0.0.2:9/api/v3")
    r = repos(w, 104)
    eq((r.status, len(r.json["repositories"]), r.json["pages"]), (200, 100, 1), "foreign next link (%r)" % r)
    contains(r.json.get("warning", ""), "outside GH_API_BASE_URL", "warning")
    eq(fx.stats()["repo_pages"], 1, "one page fetched")
    fx.config(repos=3, link_base=None)
    no_foreign_hosts()


@test
def test_malformed_github_answers_are_refused(t):
    w = world()
    fx = _env["fx"]
    fx.ctl("/_fixture/reset")

    def ids():
        return sorted(i["installation_id"] for i in w.get("/api/github/installations").json["installations"])
    before = ids()
    good = installation(107)
    fx.config(installations={**{str(k): installation(k) for k in (101, 102, 103, 104, 105, 106)}, "107": good})
    bad_installations = [
        ("not JSON", 200, "<html>oops</html>"),
        ("truncated", 200, json.dumps(good)[:40]),
        ("another id", 200, json.dumps({**good, "id": 108})),
        ("bad login", 200, json.dumps({**good, "account": {"login": "evil<script>", "type": "Organization"}})),
        ("no account", 200, json.dumps({k: v for k, v in good.items() if k != "account"})),
        ("bad permission", 200, json.dumps({**good, "permissions": {"contents": "superuser"}})),
        ("bad permission name", 200, json.dumps({**good, "permissions": {"a b": "read"}})),
        ("too many events", 200, json.dumps({**good, "events": ["e%d" % i for i in range(200)]})),
        ("bad suspended_at", 200, json.dumps({**good, "suspended_at": "yesterday"})),
        ("bad selection", 200, json.dumps({**good, "repository_selection": "some"})),
        ("server error", 500, json.dumps({"message": "Server Error"})),
    ]
    for what, status, body in bad_installations:
        fx.ctl("/_fixture/override", {"match": "/app/installations/107", "method": "GET", "status": status, "body": body})
        c = install(w, 107)
        eq((c.status, c.error_code), (502, "GITHUB_ERROR"), "installation answer: %s (%r)" % (what, c))
    fx.ctl("/_fixture/override", {"match": "/app/installations/107", "method": "GET", "status": 200,
                                  "body": "x" * 1024, "repeat": 5 * 1024})
    c = install(w, 107)
    eq((c.status, c.error_code), (502, "GITHUB_UNREACHABLE"), "5 MiB answer (%r)" % c)
    eq(ids(), before, "nothing stored")
    eq(install(w, 107).status, 302, "a good answer afterwards")

    exp = "2099-01-01T00:00:00Z"
    bad_tokens = [
        ("not JSON", 201, "{"),
        ("no token", 201, json.dumps({"expires_at": exp})),
        ("no expires_at", 201, json.dumps({"token": "ghs_x"})),
        ("bad expires_at", 201, json.dumps({"token": "ghs_x", "expires_at": "in an hour"})),
        ("token with a space", 201, json.dumps({"token": "ghs_x y", "expires_at": exp})),
        ("token with a newline", 201, json.dumps({"token": "ghs_x\r\nX-Evil: 1", "expires_at": exp})),
        ("oversized token", 201, json.dumps({"token": "g" * 2000, "expires_at": exp})),
        ("server error", 502, json.dumps({"message": "Bad Gateway"})),
    ]
    for what, status, body in bad_tokens:
        fx.ctl("/_fixture/override", {"match": "/access_tokens", "status": status, "body": body})
        r = repos(w, 107)
        eq((r.status, r.error_code), (502, "GITHUB_ERROR"), "token answer: %s (%r)" % (what, r))
    eq(fx.stats()["repo_pages"], 0, "no listing with a bad token")
    bad_pages = [
        ("not JSON", 200, "]"),
        ("repositories not a list", 200, json.dumps({"total_count": 1, "repositories": {"a": 1}})),
        ("bad full_name", 200, json.dumps({"total_count": 1, "repositories": [{"id": 1, "full_name": "../../etc"}]})),
        ("no id", 200, json.dumps({"total_count": 1, "repositories": [{"full_name": "a/b"}]})),
        ("server error", 503, "{}"),
    ]
    for what, status, body in bad_pages:
        fx.ctl("/_fixture/override", {"match": "/installation/repositories", "status": status, "body": body})
        r = repos(w, 107)
        eq((r.status, r.error_code), (502, "GITHUB_ERROR"), "repository page: %s (%r)" % (what, r))
    r = repos(w, 107)
    eq(r.status, 200, "a good listing afterwards (%r)" % r)
    eq(fx.stats()["mints"].get("107"), 1, "bad token answers were not cached; one good mint")
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def test_token_reminted_when_it_expires_within_five_minutes(t):
    w = world()
    fx = _env["fx"]
    eq(install(w, 105).status, 302, "install 105")
    fx.ctl("/_fixture/reset")
    fx.config(token_ttl=240)  # GitHub hands out 1 h; this one is inside the 5 min margin
    for i in range(3):
        eq(repos(w, 105).status, 200, "listing %d" % i)
    eq(fx.stats()["mints"], {"105": 3}, "a token expiring within 5 min is minted again on each use")
    fx.config(token_ttl=3600)
    for i in range(3):
        eq(repos(w, 105).status, 200, "listing %d" % i)
    s = fx.stats()
    eq(s["mints"], {"105": 4}, "a 1 h token is minted once more, then cached")
    # the token lives in memory only: not in the log, the database or the secrets store
    tok = s["last_token"]
    check(tok and tok.startswith("ghs_"), "fixture token", s)
    check(tok not in w.server.log_text(), "installation token in the server log")
    for root, _, files in os.walk(w.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                check(tok.encode() not in fh.read(), "%s holds the installation token" % f)


@test
def test_failed_mint_is_not_cached_and_suspended_refused(t):
    w = world()
    fx = _env["fx"]
    eq(install(w, 106).status, 302, "install 106")
    fx.ctl("/_fixture/reset")
    fx.config(issuers=["someone-else"])  # every App JWT refused
    r = repos(w, 106)
    eq((r.status, r.error_code), (502, "GITHUB_DENIED"), "JWT refused (%r)" % r)
    contains(r.get("error"), "GITHUB_APP_CLIENT_ID", "error says what to check")
    check("iss" in (fx.stats()["last_reject"] or ""), "the fixture refused the issuer", fx.stats())
    fx.config(issuers=[CLIENT_ID])
    r = repos(w, 106)
    eq(r.status, 200, "the failure was not cached (%r)" % r)
    eq(fx.stats()["mints"], {"106": 1}, "one mint once the JWT is accepted")
    # GitHub suspends the installation: the mint answers 403
    insts = {str(k): installation(k) for k in (101, 102, 103, 104, 105, 106)}
    insts["103"] = installation(103, suspended_at="2026-02-01T10:00:00Z")
    fx.config(installations=insts)
    c = install(w, 103)
    eq(c.status, 302, "install of a suspended installation is recorded (%r)" % c)
    i = [x for x in w.get("/api/github/installations").json["installations"] if x["installation_id"] == 103][0]
    eq((i["suspended"], i["suspended_at"]), (True, "2026-02-01T10:00:00Z"),
       "suspended state recorded (RFC 3339 UTC, the API's one time format)")
    r = repos(w, 103)
    eq((r.status, r.error_code), (409, "GITHUB_INSTALLATION_SUSPENDED"), "suspended (%r)" % r)


@test
def test_key_rotation_picked_up_without_restart(t):
    fx, trap = Fixture(t), Trap()
    priv1, pub1 = keypair(t, "k1")
    priv2, pub2 = keypair(t, "k2")
    w = make_world(t, "rot", fx, trap)
    secret_put(w, "aurora/system/github-app/private-key", priv1)
    insts = {str(i): installation(i) for i in (201, 202, 203)}
    fx.config(public_key=pub1, issuers=[CLIENT_ID], installations=insts)
    eq(install(w, 201).status, 302, "install with key 1")
    # the operator rotates: a new key on GitHub and in the secrets backend
    fx.config(public_key=pub2)
    secret_put(w, "aurora/system/github-app/private-key", priv2)
    wait_until(lambda: "changed; now using the new one" in w.server.log_text() or gh_status(w) and False,
               15, what="the server to re-read the rotated key")
    c = install(w, 202)
    eq(c.status, 302, "install signed with key 2 (%r)" % c)
    eq(fx.stats()["last_reject"], None, "no JWT refused")
    eq(trap.hits(), [], "no other host contacted")


@test
def test_pem_without_newlines_reports_unconfigured(t):
    fx, trap = Fixture(t), Trap()
    priv, pub = keypair(t, "k")
    w = make_world(t, "badpem", fx, trap)
    fx.config(public_key=pub, issuers=[CLIENT_ID], installations={"301": installation(301)})
    st = gh_status(w)
    eq((st["app"]["configured"], st["app"]["private_key"]), (False, "missing"), "no key stored yet")
    # the guide's failure: the PEM passed as a shell string, newlines gone
    flat = " ".join(priv.split())
    secret_put(w, "aurora/system/github-app/private-key", flat)
    wait_until(lambda: gh_status(w)["app"]["private_key"] == "invalid", 15, what="the bad key to be read")
    st = gh_status(w)
    eq((st["app"]["configured"], st["actions"][0]["available"]), (False, False), "App unconfigured")
    contains(st["app"]["error"], MSG_DESERIALIZE, "status names the problem")
    cs = connectors_status(w)
    eq((cs["app_configured"], cs["private_key"], cs["connected"]), (False, "invalid", False), "connectors status")
    for _ in range(3):
        r = w.frontend_get("/github/app/install")
        eq((r.status, r.error_code), (503, "GITHUB_APP_NOT_CONFIGURED"), "install while unconfigured (%r)" % r)
    state_r = w.get("/github/status")
    eq(state_r.status, 200, "status still answers")
    eq(w.server.log_text().count(MSG_DESERIALIZE), 1, "logged once for this value, not per request")
    # another bad value is logged once more
    secret_put(w, "aurora/system/github-app/private-key", flat.replace("KEY-----", "KEY----- "))
    wait_until(lambda: gh_status(w) and w.server.log_text().count(MSG_DESERIALIZE) == 2, 15,
               what="the second bad value to be logged")
    eq(w.get("/health", auth=False).status, 200, "server serving")
    # fixed: stored verbatim, the App works again
    secret_put(w, "aurora/system/github-app/private-key", priv)
    wait_until(lambda: gh_status(w)["app"]["configured"], 15, what="the fixed key to be read")
    eq(install(w, 301).status, 302, "install with the fixed key")
    check(priv.split("\n")[1] not in w.server.log_text(), "no key material in the log")
    eq(trap.hits(), [], "no other host contacted")


@test
def test_secrets_backend_down_reports_unavailable(t):
    fx, trap = Fixture(t), Trap()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    t.defer(dead.close)
    w = make_world(t, "vaultdown", fx, trap, {
        "SECRETS_BACKEND": "vault", "VAULT_ADDR": "https://127.0.0.1:%d" % dead.getsockname()[1],
        "VAULT_TOKEN": "hvs." + rand_tag(20)})
    st = gh_status(w)
    eq((st["app"]["configured"], st["app"]["private_key"]), (False, "unavailable"), "key unreadable")
    contains(st["app"]["error"], "secrets backend", "error names the backend")
    r = w.frontend_get("/github/app/install")
    eq((r.status, r.error_code), (503, "GITHUB_APP_NOT_CONFIGURED"), "install (%r)" % r)
    eq(connectors_status(w)["private_key"], "unavailable", "connectors status")
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def test_webhook_secret_from_env_or_secrets_backend(t):
    w = world()
    app = gh_status(w)["app"]
    eq((app["webhook_secret"], app["webhook_secret_source"]),
       ("missing", "aurora/system/github-app/webhook-secret"), "nothing stored yet")
    secret_put(w, "aurora/system/github-app/webhook-secret", "whsec-" + rand_tag(16))
    wait_until(lambda: gh_status(w)["app"]["webhook_secret"] == "ok", 15, what="the stored secret to be read")
    eq(connectors_status(w)["app_configured"], True, "App still configured")
    we = make_world(t, "hookenv", _env["fx"], _env["trap"], {"GITHUB_APP_WEBHOOK_SECRET": "env-" + rand_tag(16)})
    app = gh_status(we)["app"]
    eq((app["webhook_secret"], app["webhook_secret_source"]), ("ok", "GITHUB_APP_WEBHOOK_SECRET"), "from the env")


HOOK_PATH = "aurora/system/github-app/webhook-secret"


@test
def test_status_names_every_webhook_secret_that_verifies(t):
    """With GITHUB_APP_WEBHOOK_SECRET set, the backend's copy verifies deliveries
    too (test_github_webhooks.py), but the status named only the setting: a
    stale backend copy that still verifies went unseen.  app.webhook_secret_sources
    lists every secret that verifies, app.webhook_secrets_differ says when the
    setting and the backend's differ; names only, never a value."""
    world()  # the fixture and trap
    env_secret = "whsec-env-" + rand_tag(16)
    w = make_world(t, "hooksources", _env["fx"], _env["trap"], {"GITHUB_APP_WEBHOOK_SECRET": env_secret})
    app = gh_status(w)["app"]
    eq((app["webhook_secret_source"], app.get("webhook_secret_sources"), app.get("webhook_secrets_differ")),
       ("GITHUB_APP_WEBHOOK_SECRET", ["GITHUB_APP_WEBHOOK_SECRET"], False), "the setting alone")
    stale = "whsec-stale-" + rand_tag(16)
    secret_put(w, HOOK_PATH, stale)
    both = ["GITHUB_APP_WEBHOOK_SECRET", HOOK_PATH]
    wait_until(lambda: gh_status(w)["app"].get("webhook_secret_sources") == both, 15,
               what="the stale backend copy to be named as verifying")
    r = w.get("/github/status")
    eq((r.json["app"]["webhook_secret_source"], r.json["app"]["webhook_secrets_differ"]),
       ("GITHUB_APP_WEBHOOK_SECRET", True), "the setting still named first; the two differ")
    check(env_secret.encode() not in r.body and stale.encode() not in r.body, "no secret in the status")
    # the backend's rewritten to the setting's value: both verify, no longer differ
    secret_put(w, HOOK_PATH, env_secret)
    wait_until(lambda: gh_status(w)["app"]["webhook_secrets_differ"] is False, 15,
               what="the backend's copy to be re-read")
    eq(gh_status(w)["app"]["webhook_secret_sources"], both, "the same value in both places")
    # no setting: the backend's and the previous one being rotated out
    prev = "whsec-prev-" + rand_tag(16)
    wp = make_world(t, "hookprev", _env["fx"], _env["trap"], {"GITHUB_APP_WEBHOOK_SECRET_PREVIOUS": prev})
    app = gh_status(wp)["app"]
    eq((app["webhook_secret"], app["webhook_secret_source"], app["webhook_secret_sources"],
        app["webhook_secrets_differ"]),
       ("missing", HOOK_PATH, ["GITHUB_APP_WEBHOOK_SECRET_PREVIOUS"], False), "only the previous one verifies")
    secret_put(wp, HOOK_PATH, "whsec-cur-" + rand_tag(16))
    wait_until(lambda: gh_status(wp)["app"]["webhook_secret_sources"] == [HOOK_PATH, "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS"],
               15, what="the backend's secret to be named")
    check(prev.encode() not in w.get("/github/status").body, "no secret in the status")


@test
def test_only_gh_api_base_url_is_contacted(t):
    # positive control: with the default GH_API_BASE_URL the trap sees api.github.com
    fx, trap = Fixture(t), Trap()
    priv, pub = keypair(t, "k")
    w = make_world(t, "defaults", fx, trap, {"GH_BASE_URL": "", "GH_API_BASE_URL": ""})
    secret_put(w, "aurora/system/github-app/private-key", priv)
    st = gh_status(w)
    check(st["actions"][0]["install_url"].startswith("https://github.com/apps/%s/installations/new?state=" % SLUG),
          "default install URL", st)
    eq((st["github_url"], st["api_url"]), ("https://github.com", "https://api.github.com"), "defaults")
    c = install(w, 401)
    eq(c.status, 502, "api.github.com through the trap fails (%r)" % c)
    check(any("api.github.com" in h for h in trap.hits()), "the trap caught the default host", trap.hits())
    # and the suite's server, pointed at the fixture, never reached the trap
    world()
    no_foreign_hosts()
    # no GitHub host is named in the connector outside the two defaults
    for f in ("github.c", "github_app.c", "github_app.h"):
        with open(os.path.join(ROOT, "server", "connectors", f)) as fh:
            src = fh.read()
        for m in re.finditer(r"[a-z.]*github\.com[^\s\"]*", src):
            line = src[src.rfind("\n", 0, m.start()) + 1:src.find("\n", m.end())]
            check(m.group(0) in ("github.com", "api.github.com") and
                  ("base_setting" in line or "GH_" in line or "*" in line),
                  "%s names %s outside the defaults: %s" % (f, m.group(0), line.strip()))


# ---------------------------------------------------------------------------
# who installed it: the App's user authorization (github_installer.c)
# ---------------------------------------------------------------------------
APP_CALLBACK = "https://api.aurora.example.test/github/callback"  # derived from the Setup URL


def gh_user(login, iids, owner=True, uid=7001):
    """The GitHub user the fixture signs in: can see installations iids and (owner)
    is an admin of the organization each one is installed on."""
    return {"login": login, "id": uid, "installations": list(iids),
            "memberships": {"octo-%d" % i: "admin" for i in iids if 500 <= i < 600} if owner else {}}


def installer_world(t, name, extra=None, secret_in_backend=True):
    """A server with the App's client secret, so an installation it does not
    hold yet is checked on GitHub (the fixture's web flow) before it is bound."""
    fx, trap = Fixture(t), Trap()
    priv, pub = keypair(t, "k")
    secret = "app-secret-" + rand_tag(16)
    env = dict(extra or {})
    if not secret_in_backend:
        env["GITHUB_APP_CLIENT_SECRET"] = secret
    w = make_world(t, name, fx, trap, env)
    w.app_secret = secret
    secret_put(w, "aurora/system/github-app/private-key", priv)
    if secret_in_backend:
        secret_put(w, "aurora/system/github-app/client-secret", secret)
    fx.config(public_key=pub, issuers=[CLIENT_ID],
              installations={**{str(i): installation(i, login="octo-%d" % i) for i in range(501, 509)},
                             "509": installation(509, login="octo-admin", type_="User")},
              app={"client_id": CLIENT_ID, "client_secret": secret, "callback_urls": [APP_CALLBACK]},
              user=gh_user("octo-admin", [501]))
    return w, fx, trap, priv


def authorize_url(fx, c):
    """The server's answer to the install callback: 302 to the App's user authorization."""
    eq(c.status, 302, "install callback asks GitHub who installed (%r)" % c)
    loc = c.headers["location"]
    check(loc.startswith(fx.base + "/login/oauth/authorize?"), "redirect to GH_BASE_URL's authorize page", loc)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    eq((q.get("client_id"), q.get("redirect_uri"), len(q.get("state", ""))), (CLIENT_ID, APP_CALLBACK, 43),
       "the App's client id, its Callback URL, a fresh state")
    return loc, q["state"]


def github_sends_back(loc):
    """GitHub's side: the signed-in user authorizes (fixture) and the browser is sent
    to the App's Callback URL; returns that URL's query."""
    u = urllib.parse.urlsplit(loc)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path + "?" + u.query)
        r = conn.getresponse()
        r.read()
        eq(r.status, 302, "GitHub's authorize page redirects back")
        back = r.getheader("location")
    finally:
        conn.close()
    check(back.startswith(APP_CALLBACK + "?"), "back to the App's Callback URL", back)
    return urllib.parse.urlsplit(back).query


def confirmed(w, fx, iid, key=None):
    """The whole check as a browser goes through it: install (the frontend's flow for the
    user of key), GitHub's authorize page, back to the App's Callback URL; its answer."""
    return app_callback(w, github_sends_back(authorize_url(fx, install(w, iid, key))[0]))


def app_callback(w, qs, key=None):
    h = {"Authorization": "Bearer %s" % key} if key else {}
    return https_request(w.port, w.ctx, "GET", "/github/callback?" + qs, headers=h)


def installed(w, iid, key=None):
    return iid in [i["installation_id"] for i in w.get("/api/github/installations", key=key).json["installations"]]


@test
def installer_is_checked_on_github_with_the_client_secret(t):
    w, fx, trap, priv = installer_world(t, "installer")
    app = gh_status(w)["app"]
    eq((app["installer_check"], app["client_secret_source"]), ("on", "aurora/system/github-app/client-secret"),
       "status: the check is on, secret from the backend")
    loc, _ = authorize_url(fx, install(w, 501))
    check(not installed(w, 501), "nothing bound before GitHub confirms")
    back = github_sends_back(loc)
    c = app_callback(w, back)
    eq((c.status, c.headers.get("location")), (302, FRONTEND + "/connectors?provider=github&status=connected"),
       "connected once GitHub confirmed (%r)" % c)
    eq((c.get("installation_id"), c.get("account")), (501, "octo-501"), "callback body")
    i = [x for x in w.get("/api/github/installations").json["installations"] if x["installation_id"] == 501]
    eq((len(i), i[0]["installed_by"] if i else None), (1, w.user_id), "bound to the user's org")
    st = fx.stats()
    eq((st["exchanges"], st["user_pages"]), ([{"ok": True}], 1), "one code exchange (client secret checked by "
                                                                   "the fixture), one listing")
    contains(w.server.log_text(), "GitHub confirmed that octo-admin (user %s) owns octo-501, where installation "
                                  "501 is installed" % w.user_id, "log")
    eq((st["membership_lookups"], st["revocations"]), (1, 1), "the owner check, then the user's token revoked")
    # the user's token was used once and kept nowhere
    tok = st["last_user_token"]
    check(tok not in w.server.log_text(), "user token not logged")
    for root, _, files in os.walk(w.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                check(tok.encode() not in fh.read(), "user token not stored (%s)" % f)
    # the callback URL is single use
    r = app_callback(w, back)
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "replayed callback (%r)" % r)
    contains(r.get("error"), "already used", "error")
    # an org updating an installation it holds is not sent to GitHub again
    state, _ = fresh_state(w)
    c = callback(w, "installation_id=501&setup_action=update&state=" + state)
    eq((c.status, c.headers.get("location")), (302, FRONTEND + "/connectors?provider=github&status=connected"),
       "update of a held installation (%r)" % c)
    eq(fx.stats()["authorizations"], 1, "no second sign-in")
    # the secret from the environment works the same
    we, fxe, _, _ = installer_world(t, "installer-env", secret_in_backend=False)
    eq(gh_status(we)["app"]["client_secret_source"], "GITHUB_APP_CLIENT_SECRET", "from the env")
    c = confirmed(we, fxe, 501)
    eq(c.status, 302, "connected with the env secret (%r)" % c)
    check(installed(we, 501), "bound")
    eq(trap.hits(), [], "no other host contacted")


@test
def installer_of_another_account_cannot_claim_an_installation(t):
    w, fx, trap, priv = installer_world(t, "claim")
    org, user, key = w.new_org()
    # org B's user signs in to GitHub as an account without access to 502
    fx.config(user=gh_user("mallory", [999001]))
    c = confirmed(w, fx, 502, key)
    eq((c.status, c.error_code), (403, "GITHUB_INSTALLATION_NOT_YOURS"), "claim refused (%r)" % c)
    contains(c.get("error"), "the GitHub account mallory cannot access installation 502", "error")
    check(not installed(w, 502, key) and not installed(w, 502), "502 bound to no one")
    contains(w.server.log_text(), "installation 502 refused for org %s" % org, "log")
    # the org whose GitHub admin installed it binds it
    fx.config(user=gh_user("octo-admin", [502]))
    c = confirmed(w, fx, 502)
    eq(c.status, 302, "the installer's org connects it (%r)" % c)
    check(installed(w, 502), "bound to the installer's org")
    # a user of org B who can also see it on GitHub still cannot take it over
    c = confirmed(w, fx, 502, key)
    eq((c.status, c.error_code), (409, "GITHUB_INSTALLATION_CLAIMED"), "held by another org (%r)" % c)
    # the user cancels on GitHub: nothing bound, the state spent
    fx.config(deny=True, user=gh_user("octo-admin", [503]))
    back = github_sends_back(authorize_url(fx, install(w, 503))[0])
    c = app_callback(w, back)
    eq((c.status, c.error_code), (400, "GITHUB_OAUTH_FAILED"), "denied on GitHub (%r)" % c)
    contains(c.get("error"), "access_denied", "error")
    r = app_callback(w, back.replace("error=access_denied", "code=" + "a" * 20))
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "the state of a denied flow is spent (%r)" % r)
    check(not installed(w, 503), "503 not bound")
    fx.config(deny=False)
    # a rotated client secret on GitHub: the exchange is refused and says what to do
    fx.config(app={"client_id": CLIENT_ID, "client_secret": "rotated-" + rand_tag(8), "callback_urls": [APP_CALLBACK]})
    c = confirmed(w, fx, 503)
    eq((c.status, c.error_code), (400, "GITHUB_BAD_CREDENTIALS"), "refused client secret (%r)" % c)
    contains(c.get("error"), "GITHUB_APP_CLIENT_SECRET", "error names the setting")
    check(not installed(w, 503), "503 not bound")
    eq(w.get("/health", auth=False).status, 200, "server serving")
    eq(trap.hits(), [], "no other host contacted")


@test
def installer_check_refuses_hostile_answers_and_crossed_states(t):
    w, fx, trap, priv = installer_world(t, "installer-bad")
    # 150 installations: 504 is on the second page
    fx.config(user={**gh_user("octo-admin", [504]), "installations": list(range(900000, 900150)) + [504]})
    before = fx.stats()["user_pages"]
    c = confirmed(w, fx, 504)
    eq(c.status, 302, "found on page 2 (%r)" % c)
    eq(fx.stats()["user_pages"] - before, 2, "two pages read")
    # a next-page link to another host is not followed with the user's token
    fx.config(link_base="http://elsewhere.invalid/api/v3",
              user={**gh_user("octo-admin", [505]), "installations": list(range(900000, 900100)) + [505]})
    c = confirmed(w, fx, 505)
    eq((c.status, c.error_code), (403, "GITHUB_INSTALLATION_NOT_YOURS"), "foreign next link (%r)" % c)
    fx.config(link_base=None, user=gh_user("octo-admin", [505]))
    # malformed listings
    for body, what, want in (
            ("{not json", "not JSON", (502, "GITHUB_ERROR")),
            ('{"installations": "x"}', "installations not a list", (502, "GITHUB_ERROR")),
            ('{"installations": [{"id": "505"}]}', "id as a string", (403, "GITHUB_INSTALLATION_NOT_YOURS")),
            ('{"installations": [{"id": 505.5}, {"id": 1e400}]}', "not an exact id", (403, "GITHUB_INSTALLATION_NOT_YOURS")),
            ('{"installations": [{"id": 505, "account": {"login": "a\\u0000b", "id": 1, "type": "Organization"}}]}',
             "an account name with a NUL (read up to it: 'a', whose owner this user is not)",
             (403, "GITHUB_INSTALLATION_NOT_YOURS")),
            ('{"installations": [{"id": 505, "account": {"login": "octo-505", "id": 1, "type": "Enterprise"}}]}',
             "an account of another kind", (502, "GITHUB_ERROR")),
            ('{"installations": [{"id": 505, "account": {"login": "..", "id": 5050, "type": "Organization"}}]}',
             "an account name that is a path segment", (502, "GITHUB_ERROR"))):
        loc, _ = authorize_url(fx, install(w, 505))
        fx.ctl("/_fixture/override", {"match": "/user/installations", "status": 200, "body": body})
        c = app_callback(w, github_sends_back(loc))
        eq((c.status, c.error_code), want, "%s: refused (%r)" % (what, c))
        check(not installed(w, 505), "%s: 505 not bound" % what)
    loc, _ = authorize_url(fx, install(w, 505))
    fx.ctl("/_fixture/override", {"match": "/user/installations", "status": 401, "body": '{"message":"Bad credentials"}'})
    c = app_callback(w, github_sends_back(loc))
    eq((c.status, c.error_code), (502, "GITHUB_DENIED"), "GitHub refuses the new token (%r)" % c)
    # crossed states: the check's state at the install callback, an install state at /github/callback
    _, s2 = authorize_url(fx, install(w, 506))
    c = callback(w, "installation_id=506&setup_action=install&state=" + s2)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "check state at the Setup URL (%r)" % c)
    contains(c.get("error"), "another provider", "error")
    state, _ = fresh_state(w)
    c = app_callback(w, "code=abc&state=" + state)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "install state at the Callback URL (%r)" % c)
    contains(c.get("error"), "another provider", "error")
    # no code, a made-up code, a malformed state
    loc, s3 = authorize_url(fx, install(w, 506))
    c = app_callback(w, "state=" + s3)
    eq((c.status, c.get("error")), (400, "No authorization code provided"), "no code (%r)" % c)
    _, s4 = authorize_url(fx, install(w, 506))
    c = app_callback(w, "code=made-up&state=" + s4)
    eq((c.status, c.error_code), (400, "GITHUB_BAD_CREDENTIALS"), "unknown code (%r)" % c)
    for qs in ("code=x&state=short", "code=x&state=" + "C" * 43, "code=x&state=" + "A" * 42 + "%2F"):
        c = app_callback(w, qs)
        eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "state %r (%r)" % (qs, c))
    check(not installed(w, 506), "506 not bound")
    eq(w.get("/health", auth=False).status, 200, "server serving")
    eq(trap.hits(), [], "no other host contacted")


@test
def installer_check_keeps_the_flows_binding(t):
    w, fx, trap, priv = installer_world(t, "installer-bind")
    org, user, key = w.new_org()
    fx.config(user=gh_user("octo-admin", [507]))
    # started with an API key: each callback must carry that user's credentials
    r = w.get("/github/app/install", key=key)
    eq(r.status, 302, "install started with an API key (%r)" % r)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["location"]).query))["state"]
    loc, _ = authorize_url(fx, callback(w, "installation_id=507&setup_action=install&state=" + state, key=key))
    back = github_sends_back(loc)
    c = app_callback(w, back)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "second leg without the key (%r)" % c)
    contains(c.get("error"), "API key", "error")
    check(not installed(w, 507, key), "not bound")
    loc, _ = authorize_url(fx, callback(w, "installation_id=507&setup_action=install&state=" +
                                        dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
                                            w.get("/github/app/install", key=key).headers["location"]).query))["state"],
                                        key=key))
    c = app_callback(w, github_sends_back(loc), key=key)
    eq(c.status, 302, "second leg with the user's key (%r)" % c)
    check(installed(w, 507, key), "bound to the key's org")
    # a flow the frontend started carries no browser binding (docs/security.md, residual 2): a
    # frontend user (org B) brings their own browser back with the victim's installation id and
    # sends the victim GitHub's authorize URL; with AURORA_OAUTH_REQUIRE_BOUND_CALLBACK the
    # victim's browser, which carries no credentials, is refused on both legs
    wr, fxr, trapr, _ = installer_world(t, "installer-required", {"AURORA_OAUTH_REQUIRE_BOUND_CALLBACK": "true"})
    org_b, _, key_b = wr.new_org()
    state, _ = fresh_state(wr, key_b)
    c = callback(wr, "installation_id=501&setup_action=install&state=" + state)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "first leg without credentials (%r)" % c)
    contains(c.get("error"), "AURORA_OAUTH_REQUIRE_BOUND_CALLBACK", "error names the setting")
    fwd = wr.as_frontend(key_b)  # the frontend forwarding the first leg with the user's identity
    state, _ = fresh_state(wr, key_b)
    c = https_request(wr.port, wr.ctx, "GET", "/github/app/install/callback?installation_id=501&setup_action="
                      "install&state=" + state, headers=fwd)
    loc, _ = authorize_url(fxr, c)
    c = app_callback(wr, github_sends_back(loc))  # the victim's browser: GitHub's redirect, no credentials
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "second leg in another browser (%r)" % c)
    check(not installed(wr, 501, key_b) and not installed(wr, 501), "501 bound to no one")
    eq(trapr.hits(), [], "no other host contacted")
    # without the secret anywhere: bound as the redirect says, with a warning naming the setting
    wn = make_world(t, "no-secret", fx, trap)
    secret_put(wn, "aurora/system/github-app/private-key", priv)
    eq(gh_status(wn)["app"]["installer_check"], "off", "status: the check is off")
    c = install(wn, 508)
    eq((c.status, c.headers.get("location")), (302, FRONTEND + "/connectors?provider=github&status=connected"),
       "bound without the check (%r)" % c)
    contains(wn.server.log_text(), "without checking on GitHub that user %s can access it "
                                   "(GITHUB_APP_CLIENT_SECRET is not set)" % wn.user_id, "warning")
    eq(trap.hits(), [], "no other host contacted")


@test
def installer_must_own_the_account(t):
    w, fx, trap, priv = installer_world(t, "installer-owner")
    # an organization member who can see the installation but is not an owner
    fx.config(user=gh_user("octo-dev", [508], owner=False))
    c = confirmed(w, fx, 508)
    eq((c.status, c.error_code), (403, "GITHUB_INSTALLATION_NOT_YOURS"), "a member, not an owner (%r)" % c)
    contains(c.get("error"), "octo-dev is not an owner of octo-508", "error")
    for mem, what in (("member", "role member"), ({"role": "admin", "state": "pending"}, "an invitation not accepted"),
                      ({"role": "admin", "org_id": 1}, "an organization of that name with another id")):
        fx.config(user={**gh_user("octo-dev", [508]), "memberships": {"octo-508": mem}})
        c = confirmed(w, fx, 508)
        eq((c.status, c.error_code), (403, "GITHUB_INSTALLATION_NOT_YOURS"), "%s (%r)" % (what, c))
    # an App without the guide's Members: read permission: the check cannot be made
    fx.config(user=gh_user("octo-admin", [508]), members_forbidden=True)
    c = confirmed(w, fx, 508)
    eq((c.status, c.error_code), (502, "GITHUB_DENIED"), "membership lookup refused (%r)" % c)
    contains(c.get("error"), "Members: read", "error says which permission")
    check(not installed(w, 508), "508 bound to no one")
    fx.config(members_forbidden=False)
    c = confirmed(w, fx, 508)
    eq(c.status, 302, "the organization's owner (%r)" % c)
    # an installation on a personal account: only that account itself
    for login, what in (("someone-else", "another user's account"), ("octo-admin", "the same login, another id")):
        fx.config(user=gh_user(login, [509], uid=7001))
        c = confirmed(w, fx, 509)
        eq((c.status, c.error_code), (403, "GITHUB_INSTALLATION_NOT_YOURS"), "%s (%r)" % (what, c))
    fx.config(user=gh_user("octo-admin", [509], uid=5090))
    c = confirmed(w, fx, 509)
    eq(c.status, 302, "the account's own user (%r)" % c)
    check(installed(w, 508) and installed(w, 509), "both bound")
    st = fx.stats()
    eq(st["revocations"], len(st["exchanges"]), "every user token revoked after its check")
    # GitHub refuses the revocation: the installation is bound anyway, and the log
    # names the failure without the client secret or the token
    fx.config(user=gh_user("octo-admin", [507]))
    fx.ctl("/_fixture/override", {"match": "/token", "method": "DELETE", "status": 500, "body": '{"message":"x"}'})
    c = confirmed(w, fx, 507)
    eq(c.status, 302, "bound although the revocation failed (%r)" % c)
    log = w.server.log_text()
    contains(log, "revoking the user token used to check installation 507 failed", "log")
    check(w.app_secret not in log and fx.stats()["last_user_token"] not in log,
          "neither the client secret nor the user token in the log")
    # a client secret without GITHUB_APP_CLIENT_ID (the JWT can use GITHUB_APP_ID): refused, not half-done
    fx.config(issuers=[CLIENT_ID, APP_ID])
    wn = make_world(t, "no-client-id", fx, trap, {"GITHUB_APP_CLIENT_ID": "",
                                                  "GITHUB_APP_CLIENT_SECRET": "s-" + rand_tag(8)})
    secret_put(wn, "aurora/system/github-app/private-key", priv)
    c = install(wn, 507)
    eq((c.status, c.error_code), (503, "GITHUB_APP_NOT_CONFIGURED"), "secret without client id (%r)" % c)
    contains(c.get("error"), "GITHUB_APP_CLIENT_ID", "error names the setting")
    eq(gh_status(wn)["app"]["installer_check"], "misconfigured", "status says so")
    eq(trap.hits(), [], "no other host contacted")


def vault(t):
    """tests/fixtures/vault_fixture.py, standing in for HashiCorp Vault's KV v2 API."""
    tok = "hvs." + rand_tag(20)
    p = t.spawn("vault", [sys.executable, os.path.join(FIXTURES, "vault_fixture.py"), "--token", tok,
                          "--mounts", "aurora,secret"], dict(os.environ),
                os.path.join(t.tmp, "vault.log"), os.path.join(t.tmp, "vault-san"), stdout=subprocess.PIPE)
    line = p.p.stdout.readline().decode()
    check(line.startswith("PORT "), "vault fixture did not start", line)
    p.killed = True
    base = "http://127.0.0.1:%d" % int(line.split()[1])

    def fail(status, count, match):
        req = urllib.request.Request(base + "/_fixture/fail", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"status": status, "count": count, "match": match}).encode())
        urllib.request.urlopen(req, timeout=10).read()
    return {"SECRETS_BACKEND": "vault", "VAULT_ADDR": base, "VAULT_TOKEN": tok}, fail


@test
def installer_check_when_the_secrets_backend_fails(t):
    fx, trap = Fixture(t), Trap()
    priv, pub = keypair(t, "k")
    fx.config(public_key=pub, issuers=[CLIENT_ID], installations={str(i): installation(i) for i in (601, 602, 603)})
    # the client secret was never read and the backend fails on it: refused, never bound unchecked
    env, fail = vault(t)
    w = make_world(t, "vault-down", fx, trap, env)
    secret_put(w, "aurora/system/github-app/private-key", priv)
    fail(503, 100000, "github-app/client-secret")
    c = install(w, 601)
    eq((c.status, c.error_code), (503, "GITHUB_APP_NOT_CONFIGURED"), "secret unreadable (%r)" % c)
    contains(c.get("error"), "cannot read the GitHub App's client secret", "error")
    check(not installed(w, 601), "601 not bound")
    eq(gh_status(w)["app"]["installer_check"], "unavailable", "status")
    # the guide's setup (no client secret anywhere), then a backend outage: a known
    # absence stays known, as a loaded private key stays loaded
    env2, fail2 = vault(t)
    w2 = make_world(t, "vault-blip", fx, trap, env2)
    secret_put(w2, "aurora/system/github-app/private-key", priv)
    eq(gh_status(w2)["app"]["installer_check"], "off", "no client secret stored")
    eq(install(w2, 602).status, 302, "bound before the outage")
    fail2(503, 100000, "/v1/aurora/")
    wait_until(lambda: gh_status(w2) and "cannot read the App client secret" in w2.server.log_text(), 30,
               what="the server to re-read the secrets during the outage")
    eq(gh_status(w2)["app"]["installer_check"], "off", "still off during the outage")
    c = install(w2, 603)
    eq(c.status, 302, "installs go on during the outage (%r)" % c)
    check(installed(w2, 603), "603 bound")
    eq(trap.hits(), [], "no other host contacted")


if __name__ == "__main__":
    main()
