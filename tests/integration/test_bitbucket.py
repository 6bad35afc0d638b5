#!/usr/bin/env python3
"""test_bitbucket.py — the Bitbucket connector end to end: the OAuth consumer
(login URL with the guide's {NEXT_PUBLIC_BACKEND_URL}/bitbucket/callback,
callback through oauth2-mock-server with HTTP Basic client authentication,
Bitbucket's ?error=, state misuse, not configured), token refresh (on expiry
of the cached token and on a 401, refused refresh → "credentials expired"),
repositories and pull requests over Bitbucket's `next` pages with max /
truncated, a hostile `next` on another host never followed, bad input on
every route, disconnect.

Peer: tests/fixtures/bitbucket_api.mjs — oauth2-mock-server as Bitbucket's
OAuth 2.0 server, and Bitbucket Cloud REST API 2.0 routes.
"""
import os
import sys
import threading
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (T, World, _SUITE, HttpFixture, check, contains, eq, https_request,  # noqa: E402
                     main, rand_tag, test)

SECRET = "bb-secret-" + rand_tag(8)
_env = {}


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx = HttpFixture(st, "bitbucket", "bitbucket_api.mjs")
        w = World(st, "suite-server", start=False)
        w.extra_env.update({
            "BB_OAUTH_CLIENT_ID": "bb-key", "BB_OAUTH_CLIENT_SECRET": SECRET,
            "NEXT_PUBLIC_BACKEND_URL": "https://127.0.0.1:%d" % w.port,
            "BITBUCKET_AUTHORIZE_URL": fx.base + "/site/oauth2/authorize",
            "BITBUCKET_TOKEN_URL": fx.base + "/site/oauth2/access_token",
            "BITBUCKET_API_BASE_URL": fx.base + "/2.0",
            # no test here waits for a provider timeout: ample, for a loaded
            # machine (the side-by-side refreshes need both at Bitbucket within it)
            "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        })
        w.start()
        w.bootstrap()
        _env["fx"] = fx
        _SUITE["world"] = w
    w = _SUITE["world"]
    _env["fx"].config(client_id="bb-key", client_secret=SECRET, expires_in=7200, hostile_next=False,
                      scopes="account repository pullrequest")
    return w, _env["fx"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def authorize(url):
    try:
        r = urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        r = e
    with r:
        eq(r.status, 302, "Bitbucket authorize")
        return r.headers["Location"]


def callback(w, cb_url):
    u = urllib.parse.urlsplit(cb_url)
    eq(u.netloc, "127.0.0.1:%d" % w.port, "Bitbucket sends the browser to Aurora")
    eq(u.path, "/bitbucket/callback", "the guide's callback path")
    return https_request(w.port, w.ctx, "GET", u.path + "?" + u.query)


def login(w, key):
    r = w.frontend_get("/bitbucket/login", key=key)
    eq(r.status, 302, "login (%r)" % r)
    return r.headers["location"]


def connect(w, key):
    r = callback(w, authorize(login(w, key)))
    eq(r.status, 302, "callback (%r)" % r)
    contains(r.headers["location"], "provider=bitbucket&status=connected", "browser sent on")


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test
def test_not_configured(t):
    w = World(t, "bare")
    r = w.frontend_get("/bitbucket/login", key=w.api_key)
    eq(r.status, 503, "login without the consumer (%r)" % r)
    contains(r.get("error"), "BB_OAUTH_CLIENT_ID and BB_OAUTH_CLIENT_SECRET", "what to set")
    st = w.get("/bitbucket/status", key=w.api_key).json
    eq((st["connected"], st["oauth_configured"], st["callback_url"]),
       (False, False, "http://localhost:5080/bitbucket/callback"), "status names the callback URL")


@test
def test_login_and_callback(t):
    w, fx = world()
    _, _, key = w.new_org()
    u = urllib.parse.urlsplit(login(w, key))
    q = urllib.parse.parse_qs(u.query)
    eq((u.path, q["client_id"], q["response_type"], q["redirect_uri"]),
       ("/site/oauth2/authorize", ["bb-key"], ["code"], ["https://127.0.0.1:%d/bitbucket/callback" % w.port]),
       "authorization URL")
    check(q.get("state") and len(q["state"][0]) >= 32, "a state", q)
    connect(w, key)
    check(fx.stats()["last_basic"], "the consumer authenticated with HTTP Basic")
    st = w.get("/api/connectors/status", key=key).json["connectors"]["bitbucket"]
    eq((st["connected"], st["account"], st["display_name"]), (True, "jdoe", "Jane Doe"), "status (%r)" % st)
    check("bbat-" not in str(st) and "bbrt-" not in str(st), "no token in the status", st)


@test
def test_callback_refusals(t):
    w, fx = world()
    _, _, key = w.new_org()
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(login(w, key)).query)["state"][0]
    r = https_request(w.port, w.ctx, "GET", "/bitbucket/callback?error=access_denied&error_description=denied&state=" + state)
    eq((r.status, r.get("error_code")), (400, "BITBUCKET_AUTHORIZATION_FAILED"), "user refused (%r)" % r)
    r = https_request(w.port, w.ctx, "GET", "/bitbucket/callback?code=x&state=" + state)
    eq((r.status, r.get("error_code")), (400, "OAUTH_STATE_INVALID"), "state used twice (%r)" % r)
    r = https_request(w.port, w.ctx, "GET", "/bitbucket/callback?code=x&state=" + "z" * 40)
    eq((r.status, r.get("error_code")), (400, "OAUTH_STATE_INVALID"), "forged state (%r)" % r)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(login(w, key)).query)["state"][0]
    r = https_request(w.port, w.ctx, "GET", "/bitbucket/callback?code=not-issued&state=" + state)
    eq((r.status, r.get("error_code")), (400, "BITBUCKET_GRANT_INVALID"), "a code Bitbucket never issued (%r)" % r)
    contains(r.get("error"), "reconnect via the Connectors page", "the user's to redo")
    check("BB_OAUTH_CLIENT" not in r.get("error"), "no client settings hint for a refused grant", r.get("error"))
    fx.config(client_secret="changed")
    cb = authorize(login(w, key))
    r = callback(w, cb)
    eq((r.status, r.get("error_code")), (400, "BITBUCKET_OAUTH_CLIENT_INVALID"), "consumer secret refused (%r)" % r)
    eq(w.get("/api/connectors/status", key=key).json["connectors"]["bitbucket"]["connected"], False,
       "nothing connected")
    serving(w)


@test
def test_repositories_and_pull_requests(t):
    w, fx = world()
    _, _, key = w.new_org()
    connect(w, key)
    r = w.get("/bitbucket/workspaces", key=key)
    eq((r.status, [x["slug"] for x in r.json["workspaces"]]), (200, ["acme"]), "workspaces (%r)" % r)
    r = w.get("/bitbucket/repositories?workspace=acme", key=key)
    eq((r.status, [x["slug"] for x in r.json["repositories"]], r.json["truncated"]),
       (200, ["svc-1", "svc-2", "svc-3", "svc-4", "svc-5"], False), "every page (%r)" % r)
    eq(r.json["repositories"][0]["html_url"], "https://bitbucket.org/acme/svc-1", "html link")
    r = w.get("/bitbucket/repositories?workspace=acme&max=3", key=key)
    eq(([x["slug"] for x in r.json["repositories"]], r.json["truncated"]), (["svc-1", "svc-2", "svc-3"], True),
       "max and truncated")
    r = w.get("/bitbucket/repositories/acme/svc-1/pullrequests?state=OPEN", key=key)
    eq(([p["id"] for p in r.json["pullrequests"]], r.json["pullrequests"][0]["source_branch"]),
       ([1, 2, 3], "fix-1"), "open pull requests over pages")
    r = w.get("/bitbucket/repositories/acme/svc-1/pullrequests/2", key=key)
    eq((r.status, r.json["title"], r.json["destination_branch"], r.json["comment_count"]), (200, "Fix 2", "main", 2),
       "one pull request")
    eq(w.get("/bitbucket/repositories/acme/svc-1/pullrequests/99", key=key).status, 404, "unknown PR")
    eq(w.get("/bitbucket/repositories?workspace=other", key=key).status, 404, "unknown workspace")


@test
def test_guides_permissions_suffice(t):
    """The guide's consumer has Repositories (Read) and Pull requests (Read) only:
    no Account permission, so Bitbucket refuses GET /user (and /workspaces) with
    403.  The connection is still made; repositories and pull requests work; the
    workspace list says which permission it needs."""
    w, fx = world()
    _, _, key = w.new_org()
    fx.config(scopes="pullrequest repository")
    connect(w, key)
    st = w.get("/api/connectors/status", key=key).json["connectors"]["bitbucket"]
    eq((st["connected"], st.get("scope")), (True, "pullrequest repository"), "connected (%r)" % st)
    r = w.get("/bitbucket/repositories?workspace=acme", key=key)
    eq((r.status, len(r.json.get("repositories", []))), (200, 5), "repositories (%r)" % r)
    r = w.get("/bitbucket/repositories/acme/svc-1/pullrequests?state=OPEN", key=key)
    eq((r.status, [p["id"] for p in r.json.get("pullrequests", [])]), (200, [1, 2, 3]), "pull requests (%r)" % r)
    r = w.get("/bitbucket/workspaces", key=key)
    eq((r.status, r.get("error_code")), (403, "BITBUCKET_SCOPE_MISSING"), "workspaces (%r)" % r)
    contains(r.get("error"), "Account (Read)", "names the consumer permission")
    contains(r.get("error"), "/bitbucket/repositories?workspace=", "and what works without it")


@test
def test_hostile_next_not_followed(t):
    w, fx = world()
    _, _, key = w.new_org()
    connect(w, key)
    fx.config(hostile_next=True)
    n0 = len(fx.stats()["api"])
    r = w.get("/bitbucket/repositories?workspace=acme", key=key)
    eq((r.status, r.get("error_code")), (502, "BITBUCKET_ERROR"), "hostile next (%r)" % r)
    contains(r.get("error"), "outside BITBUCKET_API_BASE_URL", "says why")
    eq(len(fx.stats()["api"]), n0 + 1, "only the first page was fetched")


@test
def test_refresh(t):
    w, fx = world()
    _, _, key = w.new_org()
    connect(w, key)
    refreshes = fx.stats()["token"].get("refresh_token", 0)
    # The access token stops working before its time: one refresh, then the call.
    fx.ctl("/_fixture/expire_access", {})
    r = w.get("/bitbucket/workspaces", key=key)
    eq(r.status, 200, "after a 401: refreshed and retried (%r)" % r)
    eq(fx.stats()["token"].get("refresh_token", 0), refreshes + 1, "one refresh")
    # A token that expires at once is refreshed before use.
    _, _, key2 = w.new_org()
    fx.config(expires_in=1)
    connect(w, key2)
    before = fx.stats()["token"].get("refresh_token", 0)
    eq(w.get("/bitbucket/workspaces", key=key2).status, 200, "short-lived token")
    check(fx.stats()["token"].get("refresh_token", 0) >= before + 1, "refreshed before use")
    fx.config(expires_in=7200)
    # The grant revoked at Bitbucket: the guide-style message, reconnect.
    fx.ctl("/_fixture/expire_access", {})
    fx.ctl("/_fixture/revoke_refresh", {})
    r = w.get("/bitbucket/workspaces", key=key)
    eq((r.status, r.get("error_code")), (401, "BITBUCKET_CREDENTIALS_EXPIRED"), "refused refresh (%r)" % r)
    contains(r.get("error"), "reconnect via the Connectors page", "how to recover")


@test
def test_refreshes_of_two_users_run_side_by_side(t):
    """Two users' refreshes are independent: one user's refresh at Bitbucket
    (slow, or hung until the timeout) must not hold up another's, as one
    lock over every refresh of the server did."""
    w, fx = world()
    keys = []
    for _ in range(2):
        _, _, key = w.new_org()
        connect(w, key)
        keys.append(key)
    fx.ctl("/_fixture/expire_access", {})
    # both refreshes are held at Bitbucket until both have arrived (or, when
    # the server sends them one after the other, until the hold runs out)
    # held until both are at Bitbucket at once: refreshes made one at a time
    # never fill the hold, and the server's provider timeout fails the first
    fx.ctl("/_fixture/hold", {"n": 2})
    results = [None] * 2

    def one(i):
        results[i] = w.get("/bitbucket/workspaces", key=keys[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        fx.ctl("/_fixture/release")
    for i, r in enumerate(results):
        eq(r.status, 200, "user %d after the refresh (%r)" % (i, r))
    eq(fx.stats()["token_max_in_flight"], 2, "both users' refreshes at Bitbucket at once")


@test
def test_bad_input_and_disconnect(t):
    w, fx = world()
    _, _, key = w.new_org()
    for path in ("/bitbucket/workspaces", "/bitbucket/repositories?workspace=acme",
                 "/bitbucket/repositories/acme/svc-1/pullrequests"):
        eq(w.get(path, key=key).status, 404, "%s before connecting" % path)
    connect(w, key)
    n0 = len(fx.stats()["api"])
    for path, what in (("/bitbucket/repositories", "no workspace"),
                       ("/bitbucket/repositories?workspace=a%2Fb", "slash in workspace"),
                       ("/bitbucket/repositories?workspace=..", "dot-dot"),
                       ("/bitbucket/repositories?workspace=" + "a" * 200, "too long"),
                       ("/bitbucket/repositories?workspace=acme&max=0", "max 0"),
                       ("/bitbucket/repositories?workspace=acme&max=1001", "max too big"),
                       ("/bitbucket/repositories?workspace=acme&max=x", "max not a number"),
                       ("/bitbucket/repositories/acme/svc-1/pullrequests?state=open", "lowercase state"),
                       ("/bitbucket/repositories/acme/svc-1/pullrequests?state=ALL", "unknown state"),
                       ("/bitbucket/repositories/acme/svc%3F1/pullrequests", "bad slug"),
                       ("/bitbucket/repositories/acme/svc-1/pullrequests/1x", "bad id"),
                       ("/bitbucket/repositories/acme/svc-1/pullrequests/1234567890123", "id too long")):
        r = w.get(path, key=key)
        eq(r.status, 400, "%s (%r)" % (what, r))
    eq(len(fx.stats()["api"]), n0, "no bad request reached Bitbucket")
    r = w.request("DELETE", "/api/connectors/bitbucket", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    eq(w.get("/bitbucket/workspaces", key=key).status, 404, "gone after disconnect")
    serving(w)


@test
def test_disconnect_and_reconnect_through_another_replica(t):
    """A connection removed or replaced through another replica (same store
    and secrets) must not live on in this replica's token cache.  The access
    token was cached under the org and user alone and taken from the cache
    before the connection row was read: after a disconnect on the other
    replica this one went on reading the user's repositories with the old
    grant for up to the token's two hours, and after a reconnect it used
    the old grant for the new connection (found in review)."""
    w, fx = world()
    _, _, key = w.new_org()
    connect(w, key)
    eq(w.get("/bitbucket/workspaces", key=key).status, 200, "a read caches the access token")
    r2 = w.replica(t, start=False)
    r2.extra_env["NEXT_PUBLIC_BACKEND_URL"] = "https://127.0.0.1:%d" % r2.port
    r2.start()
    r = r2.request("DELETE", "/api/connectors/bitbucket", key=key)
    eq(r.status, 200, "disconnect on the other replica (%r)" % r)
    n0 = len(fx.stats()["api"])
    r = w.get("/bitbucket/workspaces", key=key)
    eq(r.status, 404, "this replica after the other's disconnect (%r)" % r)
    eq(len(fx.stats()["api"]), n0, "nothing sent to Bitbucket for a removed connection")
    # a new grant through the other replica: this one uses it, not a cached token of the old
    eq(w.get("/bitbucket/workspaces", key=key).status, 404, "still not connected")
    connect(w, key)
    eq(w.get("/bitbucket/workspaces", key=key).status, 200, "a read caches the first grant's token")
    old = fx.stats()["api"][-1].get("token")
    r = r2.frontend_get("/bitbucket/login", key=key)
    eq(r.status, 302, "login on the other replica (%r)" % r)
    c = callback(r2, authorize(r.headers["location"]))
    eq(c.status, 302, "reconnect on the other replica (%r)" % c)
    eq(w.get("/bitbucket/workspaces", key=key).status, 200, "a read after the reconnect")
    new = fx.stats()["api"][-1].get("token")
    check(old and new and new != old, "this replica reads with the new grant's token", (old, new))
    serving(w)


if __name__ == "__main__":
    main()
