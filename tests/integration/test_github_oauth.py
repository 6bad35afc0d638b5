#!/usr/bin/env python3
"""test_github_oauth.py — the GitHub connector's OAuth fallback (connector guide:
GitHub, "Path B — OAuth fallback", Troubleshooting) and its repository poller.

Peer: tests/fixtures/github_oauth.mjs, a small Node server standing in for
GitHub's OAuth App endpoints and REST API as GitHub documents them (no GitHub
is installable; oauth2-mock-server does not behave like GitHub's token
endpoint, which answers form-encoded unless asked for JSON and reports a
refused code as HTTP 200 {"error": "bad_verification_code"}).  It is mounted
like GitHub Enterprise Server: GH_BASE_URL=http://127.0.0.1:<port> (web:
/login/oauth/*) and GH_API_BASE_URL=<that>/api/v3 (REST).  It issues codes
and tokens itself, checks the client credentials, single-use codes and
redirect URIs, answers conditional GETs with 304 and counts them, and can
answer with X-RateLimit-Remaining: 0.

Every other host is a trap: the server's http(s)_proxy points at a listener
that records any connection, so a call that leaves GH_API_BASE_URL is seen.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SERVER_BIN, T, _SUITE, HostTrap, HttpFixture, SilentPeer, check,  # noqa: E402
                     contains, eq, https_request, main, rand_tag, sample, sanitizer_reports, scrape, test,
                     wait_until)

CLIENT_ID = "Ov23liAuroraTest"
CLIENT_SECRET = "gh-oauth-secret-" + rand_tag(10)
FRONTEND = "https://aurora.example.test"
DEFAULT_REDIRECT = "http://localhost:5080/github/callback"
MSG_UNCONFIGURED = "Failed to initiate GitHub OAuth"
_env = {}


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


class Fixture(HttpFixture):
    """tests/fixtures/github_oauth.mjs: GitHub's OAuth and REST endpoints as documented."""

    def __init__(self, t, name="github-oauth"):
        super().__init__(t, name, "github_oauth.mjs")
        self.opener = urllib.request.build_opener(NoRedirect)

    def authorize(self, url):
        """The user approves at GitHub: the Location GitHub sends the browser to."""
        try:
            self.opener.open(url, timeout=10)
        except urllib.error.HTTPError as e:
            if e.code == 302:
                return e.headers["Location"]
            raise
        raise AssertionError("authorize did not redirect")


def make_world(t, name, fx, trap, extra=None):
    w = t.world(name, start=False)
    proxy = "http://127.0.0.1:%d" % trap.port
    w.extra_env.update({
        "GITHUB_AUTH_MODE": "oauth", "GH_OAUTH_CLIENT_ID": CLIENT_ID, "GH_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "GH_BASE_URL": fx.base, "GH_API_BASE_URL": fx.base + "/api/v3",
        "GITHUB_POLL_INTERVAL_S": "1", "FRONTEND_URL": FRONTEND,
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        "http_proxy": proxy, "https_proxy": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy,
    })
    w.extra_env.update(extra or {})
    w.start()
    w.bootstrap()
    return w


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx, trap = Fixture(st), HostTrap()
        fx.config(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        _env.update(fx=fx, trap=trap)
        _SUITE["world"] = make_world(st, "suite-server", fx, trap)
    return _SUITE["world"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def login_url(w, key=None):
    r = w.frontend_get("/github/login", key=key)
    eq(r.status, 302, "GET /github/login (%r)" % r)
    return r.headers["location"]


def state_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("state")


def callback(w, qs, key=None):
    h = {"Authorization": "Bearer %s" % key} if key else {}
    return https_request(w.port, w.ctx, "GET", "/github/callback?" + qs, headers=h)


def approved(fx, w, key=None):
    """Login at Aurora, approval at GitHub: the query GitHub sends back."""
    back = fx.authorize(login_url(w, key))
    check(back.startswith(DEFAULT_REDIRECT + "?"), "GitHub sends the browser to the redirect URI", back)
    return urllib.parse.urlsplit(back).query


def connect(w, login, key=None):
    fx = _env["fx"]
    fx.config(login=login)
    c = callback(w, approved(fx, w, key))
    eq(c.status, 302, "callback (%r)" % c)
    eq(c.headers["location"], FRONTEND + "/connectors?provider=github&status=connected", "redirect")
    return c


def gh_status(w, key=None):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "connectors status (%r)" % r)
    return r.json["connectors"]["github"]


def requests_of(fx, login, path_prefix="/api/v3/user/repos"):
    return [r for r in fx.stats()["requests"] if r["login"] == login and r["path"].startswith(path_prefix)]


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


def secret_paths(w, user_id):
    sandir = os.path.join(w.dir, "san", "secrets-list-" + rand_tag(3))
    r = subprocess.run([SERVER_BIN, "secrets", "list", "aurora/orgs/"], env=w.env(sandir), cwd=w.dir,
                       capture_output=True, timeout=30)
    check(r.returncode == 0 and not sanitizer_reports(sandir), "secrets list", r.stdout, r.stderr)
    return [p for p in json.loads(r.stdout)["paths"] if "/users/%s/github/" % user_id in p]


def no_foreign_hosts():
    eq(_env["trap"].hits(), [], "connections to hosts other than the fixture")


# ---------------------------------------------------------------------------
@test
def test_login_connect_ghes(t):
    w = world()
    fx = _env["fx"]
    url = login_url(w)
    u = urllib.parse.urlsplit(url)
    eq("%s://%s%s" % (u.scheme, u.netloc, u.path), fx.base + "/login/oauth/authorize", "authorize URL under GH_BASE_URL")
    q = dict(urllib.parse.parse_qsl(u.query))
    eq((q["client_id"], q["redirect_uri"], q["scope"]), (CLIENT_ID, DEFAULT_REDIRECT, "repo read:org workflow"),
       "authorize parameters (the guide's default callback URL)")
    eq(len(q["state"]), 43, "state")
    r = w.post("/github/login", {})
    eq(r.status, 200, "POST /github/login (%r)" % r)
    check(r.get("oauth_url", "").startswith(fx.base + "/login/oauth/authorize?"), "oauth_url as the frontend expects", r)
    eq(w.get("/github/login", auth=False).status, 401, "login needs credentials")

    connect(w, "octo-main")
    token = fx.stats()["last_token"]
    st = gh_status(w)
    eq((st["connected"], st["oauth_connected"], st["oauth_login"]), (True, True, "octo-main"), "status")
    paths = secret_paths(w, w.user_id)
    eq(len(paths), 1, "one secret for the connection")
    check(paths[0].endswith("/users/%s/github/access-token" % w.user_id) and "/orgs/%s/" % w.org_id in paths[0],
          "token stored at aurora/orgs/<org>/users/<user>/github/access-token", paths)
    # the exchange asked for JSON: GitHub answers form-encoded otherwise
    ex = [x for x in fx.stats()["requests"] if x["path"] == "/login/oauth/access_token"]
    eq(ex[-1]["status"], 200, "exchange answered")
    contains(ex[-1]["accept"] or "", "application/json", "the exchange asks for JSON")
    wait_until(lambda: w.get("/api/github/repos").get("polled"), 15, what="first poll")
    no_secrets_anywhere(w, token, CLIENT_SECRET)
    no_foreign_hosts()


@test
def test_failed_to_initiate_when_client_unset(t):
    fx, trap = _env.get("fx") or world() and _env["fx"], _env["trap"]
    for mode in ("oauth", "hybrid"):
        wu = make_world(t, "unset-" + mode, fx, trap, {"GITHUB_AUTH_MODE": mode, "GH_OAUTH_CLIENT_ID": "",
                                                       "GH_OAUTH_CLIENT_SECRET": ""})
        for method in ("GET", "POST"):
            r = wu.request(method, "/github/login", {} if method == "POST" else None)
            eq((r.status, r.error_code), (503, "GITHUB_NOT_CONFIGURED"), "%s %s /github/login (%r)" % (mode, method, r))
            contains(r.get("error"), MSG_UNCONFIGURED, "the guide's message")
        eq(wu.get("/health", auth=False).status, 200, "server serving")
        contains(wu.server.log_text(), "GH_OAUTH_CLIENT_ID", "logged")
    wa = make_world(t, "appmode", fx, trap, {"GITHUB_AUTH_MODE": "app"})
    r = wa.frontend_get("/github/login")
    eq((r.status, r.error_code), (404, "GITHUB_OAUTH_DISABLED"), "app mode: no OAuth (%r)" % r)
    r = callback(wa, "code=x&state=" + "A" * 43)
    eq((r.status, r.error_code), (404, "GITHUB_OAUTH_DISABLED"), "app mode: no OAuth callback (%r)" % r)


@test
def test_state_replay_expired_foreign_refused(t):
    w = world()
    fx = _env["fx"]
    fx.config(login="octo-state")
    qs = approved(fx, w)
    eq(callback(w, qs).status, 302, "first use")
    c = callback(w, qs)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "replayed state (%r)" % c)
    contains(c.get("error"), "already used", "error")
    # expired
    url = login_url(w)
    w.testctl("expire-oauth-state", "--state", state_of(url))
    back = fx.authorize(url)
    c = callback(w, urllib.parse.urlsplit(back).query)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "expired state (%r)" % c)
    contains(c.get("error"), "expired", "error")
    # another user's state, presented by an authenticated caller
    _, key_b = w.new_user()
    qs = approved(fx, w)
    c = callback(w, qs, key=key_b)
    eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "another user's state (%r)" % c)
    contains(c.get("error"), "another user", "error")
    # malformed, unknown, missing
    for q, what in (("code=x&state=short", "malformed"), ("code=x&state=" + "B" * 43, "unknown"),
                    ("code=x", "missing")):
        c = callback(w, q)
        eq((c.status, c.error_code), (400, "OAUTH_STATE_INVALID"), "%s state (%r)" % (what, c))
    eq(gh_status(w, key_b)["oauth_connected"], False, "nothing connected for user B")


@test
def test_missing_code_message(t):
    w = world()
    fx = _env["fx"]
    back = fx.authorize(login_url(w))
    state = state_of(back)
    c = callback(w, "state=" + state)
    eq((c.status, c.get("error")), (400, "No authorization code provided"), "the guide's message (%r)" % c)
    c = callback(w, "state=%s&code=abc" % state)
    eq(c.error_code, "OAUTH_STATE_INVALID", "the state was consumed (%r)" % c)
    # GitHub's ?error= (the user denied)
    url = login_url(w)
    c = callback(w, "error=access_denied&error_description=The+user+has+denied&state=" + state_of(url))
    eq((c.status, c.error_code), (400, "GITHUB_OAUTH_FAILED"), "denied (%r)" % c)


@test
def test_bad_credentials(t):
    w = world()
    fx = _env["fx"]
    # a code GitHub did not issue: HTTP 200 {"error": "bad_verification_code"}
    url = login_url(w)
    c = callback(w, "code=deadbeef&state=" + state_of(url))
    eq((c.status, c.error_code), (400, "GITHUB_BAD_CREDENTIALS"), "bad code (%r)" % c)
    contains(c.get("error"), "Bad credentials", "message")
    contains(c.get("error"), "bad_verification_code", "GitHub's reason")
    # the client secret GitHub no longer accepts
    wb = make_world(t, "badsecret", fx, _env["trap"], {"GH_OAUTH_CLIENT_SECRET": "rotated-" + rand_tag(6)})
    c = callback(wb, approved(fx, wb))
    eq((c.status, c.error_code), (400, "GITHUB_BAD_CREDENTIALS"), "wrong secret (%r)" % c)
    contains(c.get("error"), "Bad credentials", "message")
    contains(c.get("error"), "GH_OAUTH_CLIENT_SECRET", "says what to fix")
    # the token refused by the API: 401 "Bad credentials"
    fx.config(answer_401=True)
    try:
        c = callback(w, approved(fx, w))
    finally:
        fx.config(answer_401=False)
    eq((c.status, c.error_code), (400, "GITHUB_BAD_CREDENTIALS"), "401 from /user (%r)" % c)
    contains(c.get("error"), "Bad credentials", "message")
    # hostile callback input
    for q in ("code=%s&state=%s" % ("A" * 3000, "C" * 43), "code=%01%02&state=%ff", "state=" + "D" * 1500,
              "code=x&state=%s&state=%s" % ("E" * 43, "F" * 43)):
        c = callback(w, q)
        check(400 <= c.status < 500, "bad callback input is a 4xx (%r)" % c)
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test(timeout=90)
def test_poller_repos_prs_runs_and_304(t):
    w = world()
    fx = _env["fx"]
    org, user, key = w.new_org()
    connect(w, "octo-poll", key=key)
    wait_until(lambda: w.get("/api/github/repos", key=key).get("polled"), 15, what="first poll")
    r = w.get("/api/github/repos", key=key)
    eq(r.status, 200, "repos (%r)" % r)
    eq([x["full_name"] for x in r.json["repositories"]], ["octo-org/repo-0", "octo-org/repo-1", "octo-org/repo-2"],
       "repositories")
    eq(r.json["repositories"][0]["html_url"], fx.base + "/octo-org/repo-0", "URLs built from GH_BASE_URL")
    eq(r.json["login"], "octo-poll", "login")
    p = w.get("/api/github/pulls", key=key)
    eq(p.status, 200, "pulls (%r)" % p)
    eq(sorted(x["repository"] for x in p.json["pull_requests"]),
       ["octo-org/repo-0", "octo-org/repo-1", "octo-org/repo-2"], "open PRs of each repository")
    eq(p.json["pull_requests"][0]["html_url"].startswith(fx.base + "/octo-org/"), True, "PR URL")
    runs = w.get("/api/github/workflow-runs", key=key)
    eq((runs.status, len(runs.json["workflow_runs"])), (200, 3), "workflow runs (%r)" % runs)
    eq(runs.json["workflow_runs"][0]["conclusion"], "success", "run")
    # the next cycle asks conditionally and GitHub answers 304
    wait_until(lambda: any(x["status"] == 304 and x["inm"] for x in requests_of(fx, "octo-poll")), 15,
               what="a 304 to a conditional /user/repos")
    wait_until(lambda: any(x["status"] == 304 for x in requests_of(fx, "octo-poll", "/api/v3/repos/")), 15,
               what="304s on pulls and runs")
    r2 = w.get("/api/github/repos", key=key)
    eq(len(r2.json["repositories"]), 3, "a 304 keeps the cached repositories")
    wait_until(lambda: w.get("/api/github/repos", key=key).json.get("last_cycle", {}).get("not_modified", 0) >= 7,
               15, what="a cycle answered entirely by 304s")
    # only the caller's connection
    check(w.get("/api/github/repos").json["login"] != "octo-poll", "another user's view is their own")
    _, key_c = w.new_user(org_id=org)
    r = w.get("/api/github/repos", key=key_c)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "not connected (%r)" % r)
    no_foreign_hosts()


@test(timeout=120)
def test_poller_waits_for_rate_limit_reset(t):
    w = world()
    fx = _env["fx"]
    org, user, key = w.new_org()
    connect(w, "octo-limited", key=key)
    wait_until(lambda: w.get("/api/github/repos", key=key).get("polled"), 15, what="first poll")
    # The reset 19-20 s ahead: the checks below (the stats wait, the server
    # recording the limit, the POST answered 429) must all run while the
    # limit holds, also on a loaded machine (9-10 s was short).
    fx.config(ratelimit_next=20, ratelimit_for="octo-limited")
    wait_until(lambda: fx.stats()["ratelimit_login"] == "octo-limited", 15,
               what="an answer with X-RateLimit-Remaining: 0")
    s = fx.stats()
    who, reset, t0 = s["ratelimit_login"], s["ratelimit_reset"], s["ratelimit_t"]
    wait_until(lambda: w.get("/api/github/repos", key=key).get("rate_limited_until"), 10,
               what="rate limit recorded")
    r = w.post("/api/github/poll", {}, key=key)
    eq((r.status, r.error_code), (429, "GITHUB_RATE_LIMITED"), "poll now while rate limited (%r)" % r)
    check(int(r.headers.get("retry-after", "0")) >= 1, "Retry-After", r.headers)
    eq(len(w.get("/api/github/repos", key=key).json["repositories"]), 3, "cached state kept while limited")
    # the next request of that token waits for the reset (interval is 1 s)
    wait_until(lambda: [x for x in requests_of(fx, who) if x["t"] > t0], 45, what="the poll after the reset")
    nxt = min(x["t"] for x in requests_of(fx, who) if x["t"] > t0)
    check(nxt >= reset * 1000 - 1000, "no request before the rate limit reset (%d ms early)" % (reset * 1000 - nxt))
    # soon after it (interval 1 s), with room for a loaded machine
    check(nxt <= reset * 1000 + 15000, "polling resumed after the reset (%d ms late)" % (nxt - reset * 1000))
    check(nxt - t0 >= 2500, "waited %d ms after Remaining: 0 (interval 1 s)" % (nxt - t0))


@test(timeout=90)
def test_pagination_cap_and_foreign_next_link(t):
    trap = _env.get("trap") or (world() and _env["trap"])
    fx = Fixture(t, "gh-pages")
    fx.config(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, repos=7, page_size=2, login="octo-pages")
    w = make_world(t, "pages", fx, trap, {"GITHUB_POLL_MAX_PAGES": "2", "GITHUB_POLL_REPOS": "1"})
    c = callback(w, urllib.parse.urlsplit(fx.authorize(login_url(w))).query)
    eq(c.status, 302, "callback (%r)" % c)
    wait_until(lambda: w.get("/api/github/repos").get("polled"), 15, what="first poll")
    r = w.get("/api/github/repos")
    eq((len(r.json["repositories"]), r.json["pages"], r.json["truncated"]), (4, 2, True), "page cap (%r)" % r)
    eq(len(w.get("/api/github/pulls").json["pull_requests"]), 1, "GITHUB_POLL_REPOS bounds the PR reads")
    pages = {x["path"] for x in fx.stats()["requests"] if x["path"].startswith("/api/v3/user/repos")}
    check(not any("page=3" in p for p in pages), "page 3 never fetched", pages)
    # a next link off GH_API_BASE_URL (the trap's host) is not followed
    fx2 = Fixture(t, "gh-hostile")
    fx2.config(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, repos=5, page_size=2, login="octo-hostile",
               link_base="http://127.0.0.1:%d/api/v3" % trap.port)
    w2 = make_world(t, "hostile", fx2, trap)
    c = callback(w2, urllib.parse.urlsplit(fx2.authorize(login_url(w2))).query)
    eq(c.status, 302, "callback (%r)" % c)
    wait_until(lambda: w2.get("/api/github/repos").get("polled"), 15, what="first poll")
    r = w2.get("/api/github/repos")
    eq(len(r.json["repositories"]), 2, "only the first page")
    contains(r.get("warning", ""), "outside GH_API_BASE_URL", "warning")
    no_foreign_hosts()


@test(timeout=90)
def test_poller_hostile_answers(t):
    w = world()
    fx = _env["fx"]
    org, user, key = w.new_org()
    connect(w, "octo-hostile", key=key)
    wait_until(lambda: w.get("/api/github/repos", key=key).get("polled"), 15, what="first poll")
    repos = lambda: w.get("/api/github/repos", key=key).json  # noqa: E731
    # not JSON: the cycle stops, the cached state stays, the error is shown
    fx.ctl("/_fixture/override", {"match": "/user/repos", "login": "octo-hostile", "body": "{not json", "count": 2})
    wait_until(lambda: "not JSON" in (repos().get("error") or ""), 15, what="error recorded")
    eq(len(repos()["repositories"]), 3, "cached repositories kept")
    # items GitHub would never send are dropped, one by one
    bad = [{"full_name": "../../etc"}, {"full_name": "a/b/c"}, {"full_name": 5}, "x", None,
           {"full_name": "ok-org/ok", "default_branch": "main; rm -rf", "pushed_at": "z" * 500},
           {"full_name": "o/" + "n" * 200}]
    fx.ctl("/_fixture/override", {"match": "/user/repos", "login": "octo-hostile", "body": json.dumps(bad), "count": 3})
    wait_until(lambda: [r["full_name"] for r in repos()["repositories"]] == ["ok-org/ok"], 15,
               what="only the well-formed repository")
    r = repos()["repositories"][0]
    check("default_branch" not in r and "pushed_at" not in r, "bad fields dropped", r)
    eq(r["html_url"], fx.base + "/ok-org/ok", "URL built, not taken")
    # back to normal once GitHub is
    wait_until(lambda: len(repos()["repositories"]) == 3 and not repos().get("error"), 15, what="recovered")
    # a revoked token: 401, the state kept, the user told to reconnect
    fx.ctl("/_fixture/override", {"match": "/user/repos", "login": "octo-hostile", "status": 401,
                                  "body": json.dumps({"message": "Bad credentials"}), "count": 3})
    wait_until(lambda: "connect again" in (repos().get("error") or ""), 15, what="401 recorded")
    eq(len(repos()["repositories"]), 3, "state kept after a 401")
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def test_disconnect_revokes_and_deletes(t):
    w = world()
    fx = _env["fx"]
    org, user, key = w.new_org()
    connect(w, "octo-bye", key=key)
    token = fx.stats()["last_token"]
    eq(len(secret_paths(w, user)), 1, "token stored")
    r = w.delete("/api/connectors/github", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    check("octo-bye" in fx.stats()["revoked"], "grant revoked at GitHub (Basic client credentials)", fx.stats()["revoked"])
    eq(secret_paths(w, user), [], "token deleted from the secrets backend")
    eq(gh_status(w, key)["oauth_connected"], False, "status")
    r = w.get("/api/github/repos", key=key)
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "no poll state left (%r)" % r)
    no_secrets_anywhere(w, token)
    no_foreign_hosts()


def outbound_parked(w):
    v = sample(scrape(w), "aurora_worker_jobs_parked", pool="outbound")
    check(v is not None, "the outbound pool's parked jobs in /metrics")
    return int(v)


@test(timeout=120)
def test_one_org_callbacks_hold_at_most_its_share_of_the_outbound_pool(t):
    """OAuth callbacks carry no API key (the browser comes back from the
    provider), so they were not counted in their organization's share of the
    outbound pool: one organization's users finishing flows against a
    provider whose token endpoint hangs (GH_BASE_URL is a setting) held every
    outbound thread, and every other organization's provider calls queued
    behind them.  Now a callback whose state is live counts under the state's
    organization before its code exchange: with 4 outbound workers (share 2),
    two of four callbacks wait at the token endpoint and two are parked,
    their states not consumed yet; another organization's login and callback
    run meanwhile, and a callback with an unknown state still fails at once.
    Once the endpoint closes, each parked callback runs and exchanges its own
    state's code (refused by the closed port, never "state already used")."""
    world()
    silent = SilentPeer()
    t.defer(silent.release)
    base = "http://127.0.0.1:%d" % silent.port
    w = make_world(t, "silent-token", _env["fx"], _env["trap"], {
        "GH_BASE_URL": base, "GH_API_BASE_URL": base + "/api/v3", "AURORA_OUTBOUND_WORKERS": "4"})
    _, _, key_a = w.new_org()
    _, _, key_b = w.new_org()
    states = [state_of(login_url(w, key_a)) for _ in range(4)]
    answers = {}

    def finish(name, state):
        answers[name] = callback(w, "code=code-%s&state=%s" % (name, state))

    def start(name, state):
        th = threading.Thread(target=finish, args=(name, state))
        th.start()
        return th

    held = [start("a%d" % i, s) for i, s in enumerate(states)]
    wait_until(lambda: silent.accepted() + outbound_parked(w) >= 4, 30,
               what="the four callbacks exchanging their code or parked")
    # another organization is served meanwhile (on the outbound pool too),
    # not after the provider's timeout (30 s here)
    try:
        r = w.request("GET", "/github/login", auth=False, headers=w.as_frontend(key_b), timeout=10)
    except socket.timeout:
        raise AssertionError("another organization's login waited behind the callbacks "
                             "(%d exchanges held, %d parked)" % (silent.accepted(), outbound_parked(w)))
    eq(r.status, 302, "another organization's login (%r)" % r)
    eq((silent.accepted(), outbound_parked(w)), (2, 2), "exchanges held, callbacks parked")
    other = start("b", state_of(r.headers["location"]))
    wait_until(lambda: silent.accepted() >= 3, 30,
               what="another organization's callback reaching the token endpoint meanwhile")
    # no place for a state that names no live flow: it fails at once
    r = callback(w, "code=x&state=" + "A" * 43)
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "unknown state (%r)" % r)
    eq(outbound_parked(w), 2, "still parked (the unknown state was not)")
    silent.release()
    for th in held + [other]:
        th.join(60)
    eq(sorted(answers), ["a0", "a1", "a2", "a3", "b"], "every callback answered")
    codes = sorted((k, a.status, a.error_code) for k, a in answers.items())
    check(all(a.status == 502 for a in answers.values()),
          "each exchange ended as the endpoint closed (the parked ones ran their own exchange)",
          codes)
    eq(outbound_parked(w), 0, "nothing parked at the end")
    r = callback(w, "code=x&state=" + states[0])
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "each state used once (%r)" % r)


if __name__ == "__main__":
    main()
