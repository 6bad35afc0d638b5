#!/usr/bin/env python3
"""test_google_chat.py — the Google Chat connector (connector guide: Communication >
Google Chat): the setup sign-in (user OAuth) that creates the incidents space, the
service account identity, the events endpoint and its bearer-token verification.

Peer: tests/fixtures/google_chat_api.mjs stands in for Google — its OAuth 2.0 server
(oauth2-mock-server), the JWT-bearer token endpoint of the service account key it
makes (the assertion checked with jose against the key's public half), the
certificates Google publishes for the tokens Chat sends ({kid: X.509 PEM} made with
the openssl CLI, and the same keys as a JWKS), and the Chat API (spaces.create,
spaces.members.create, spaces.messages.create).

Every event token is signed in Node with jose (the fixture's /_fixture/sign), never by
the server's code; "alg none" is jose's UnsecuredJWT, HS256 is keyed with the
published certificate, "rogue" is a key Google never published.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SERVER_BIN, T, World, _SUITE, HttpFixture, check, contains, eq, https_request,  # noqa: E402
                     main, post_many, rand_tag, sanitizer_reports, test, wait_until)

PUBLIC_URL = "https://aurora.test"
AUDIENCE = PUBLIC_URL + "/google-chat/events"
FRONTEND = "https://app.aurora.test"
CLIENT_SECRET = "gchat-secret-" + rand_tag(8)
CHAT_ISS = "chat@system.gserviceaccount.com"
_env = {}


# ---------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------
def fixture_env(g, w, sa_key=True):
    env = {
        "GOOGLE_CHAT_CLIENT_ID": "gchat-client", "GOOGLE_CHAT_CLIENT_SECRET": CLIENT_SECRET,
        "GOOGLE_CHAT_REDIRECT_URI": "https://127.0.0.1:%d/google-chat/callback" % w.port,
        "GOOGLE_CHAT_AUTH_URL": g.base + "/o/oauth2/v2/auth",
        "GOOGLE_CHAT_TOKEN_URL": g.base + "/token",
        "GOOGLE_CHAT_REVOKE_URL": g.base + "/revoke",
        "GOOGLE_CHAT_API_BASE_URL": g.base,
        "GOOGLE_CHAT_CERTS_URL": g.base + "/certs/x509",
        "GOOGLE_CHAT_OIDC_CERTS_URL": g.base + "/certs/jwks",
        "GOOGLE_CHAT_CERTS_REFETCH_S": "2",
        "AURORA_PUBLIC_URL": PUBLIC_URL,
        "FRONTEND_URL": FRONTEND,
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
    }
    if sa_key:
        env["GOOGLE_CHAT_SERVICE_ACCOUNT_KEY"] = json.dumps(g.ctl("/_fixture/sa_key"), separators=(",", ":"))
    return env


def configure(g, env, **extra):
    g.config(client_id="gchat-client", client_secret=CLIENT_SECRET, redirect_uris=[env["GOOGLE_CHAT_REDIRECT_URI"]],
             **extra)


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        g = HttpFixture(st, "google", "google_chat_api.mjs")
        w = World(st, "suite-server", start=False)
        env = fixture_env(g, w)
        w.extra_env.update(env)
        w.start()
        w.bootstrap()
        configure(g, env)
        _env["g"] = g
        _SUITE["world"] = w
    return _SUITE["world"]


def status(w, key):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "GET /api/connectors/status (%r)" % r)
    return r.json["connectors"]["google_chat"]


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "server still serving")


def rows(w, where="1=1", args=()):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'google_chat' AND " + where,
                           args).fetchone()[0]
    finally:
        con.close()


def events(w, key):
    r = w.get("/api/google_chat/events?limit=100", key=key)
    eq(r.status, 200, "GET /api/google_chat/events (%r)" % r)
    return r.json["events"]


# ---------------------------------------------------------------------------
# OAuth helpers
# ---------------------------------------------------------------------------
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def authorize(url):
    """The user consents at Google (the fixture): where it sends the browser."""
    try:
        r = urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as e:
        r = e
    with r:
        eq(r.status, 302, "Google authorize (%s)" % url)
        return r.headers["Location"]


def callback(w, cb_url):
    u = urllib.parse.urlsplit(cb_url)
    eq(u.netloc, "127.0.0.1:%d" % w.port, "Google redirects the browser to Aurora")
    return https_request(w.port, w.ctx, "GET", u.path + "?" + u.query)


def connect(w, key):
    """The setup sign-in end to end; the callback's answer."""
    r = w.frontend_get("/google-chat/login", key=key)
    eq(r.status, 302, "login (%r)" % r)
    c = callback(w, authorize(r.headers["location"]))
    eq(c.status, 302, "callback (%r)" % c)
    return c


def connected_org(w):
    return connected_org_g(w, _env["g"])


def connected_org_g(w, g):
    org, user, key = w.new_org()
    g.config(workspace="ws-" + org)  # each organization is its own Google Workspace
    c = connect(w, key)
    space = c.get("space_name")
    check(space and space.startswith("spaces/"), "space created", c)
    return org, user, key, space


# ---------------------------------------------------------------------------
# events helpers
# ---------------------------------------------------------------------------
def token(g, aud=AUDIENCE, iss=CHAT_ISS, exp_in=300, iat_off=0, **kw):
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "iat": now + iat_off, "exp": now + exp_in}
    claims.update(kw.pop("claims", {}))
    body = {"claims": claims}
    body.update(kw)
    return g.ctl("/_fixture/sign", body)["token"]


def event(kind, space, text="hello", thread=None, user="users/1234567"):
    e = {"type": kind, "eventTime": "2026-12-03T04:00:00.%06dZ" % (int(time.time() * 1e6) % 1000000),
         "space": {"name": space, "type": "ROOM", "spaceType": "SPACE", "displayName": "Aurora Incidents"},
         "user": {"name": user, "displayName": "Ada", "email": "ada@example.test", "type": "HUMAN"},
         "common": {"hostApp": "CHAT"}}
    if kind == "MESSAGE":
        e["message"] = {"name": space + "/messages/" + rand_tag(8), "text": "@Aurora " + text,
                        "argumentText": " " + text, "sender": e["user"],
                        "thread": {"name": thread or space + "/threads/" + rand_tag(8)},
                        "space": e["space"], "createTime": "2026-12-03T04:00:00Z"}
    if kind == "CARD_CLICKED":
        e["action"] = {"actionMethodName": "ack"}
        e["common"]["invokedFunction"] = "ack"
    return e


def post_event(w, body, tok, content_type="application/json", headers=None):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    h = {"Content-Type": content_type}
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
    if headers:
        h.update(headers)
    return w.request("POST", "/google-chat/events", body, headers=h, auth=False)


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------
@test
def test_not_configured(t):
    w = t.world()  # no Google Chat settings at all
    for method in ("GET", "POST"):
        r = w.request(method, "/google-chat/login", body={} if method == "POST" else None)
        eq((r.status, r.error_code), (503, "GOOGLE_CHAT_NOT_CONFIGURED"), "%s login (%r)" % (method, r))
        contains(r.get("error"), "Google Chat OAuth credentials not configured", "the guide's message")
        contains(r.get("error"), "GOOGLE_CHAT_CLIENT_ID and GOOGLE_CHAT_CLIENT_SECRET", "the fix")
    st = status(w, w.api_key)
    eq((st.get("connected"), st.get("oauth_configured"), st.get("identity")), (False, False, "user"), "status")
    eq((st.get("warning"), st.get("hint")),
       ("Messages appear as your name", "Set GOOGLE_CHAT_SERVICE_ACCOUNT_KEY to enable the Chat app identity"),
       "status names the missing service account")
    eq(st.get("redirect_uri"), "http://localhost:5080/google-chat/callback", "default redirect URI shown")
    # events without a configured audience: refused, nothing stored
    r = post_event(w, event("MESSAGE", "spaces/AAAAx"), "a.b.c")
    eq((r.status, r.error_code), (503, "GOOGLE_CHAT_AUDIENCE_NOT_CONFIGURED"), "no audience (%r)" % r)
    eq(rows(w), 0, "nothing stored")
    r = https_request(w.port, w.ctx, "GET", "/google-chat/callback?code=a&state=" + "A" * 43)
    eq(r.status, 400, "callback with a forged state (%r)" % r)


@test
def test_startup_refuses_bad_service_account_key(t):
    g = HttpFixture(t, "google-sa", "google_chat_api.mjs")
    key = g.ctl("/_fixture/sa_key")
    pretty = json.dumps(key, indent=2)  # the downloaded file, pasted as is
    w = t.world(start=False)
    for what, value in (("multi-line", pretty), ("first line only", "{"), ("not JSON", "aurora-chat-bot.json"),
                        ("not a service account", json.dumps({"type": "authorized_user"})),
                        ("key unusable", json.dumps(dict(key, private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                                         "-----END PRIVATE KEY-----\n")))):
        sandir = os.path.join(w.dir, "san", "refuse-" + rand_tag(4))
        env = w.env(sandir)
        env["GOOGLE_CHAT_SERVICE_ACCOUNT_KEY"] = value
        r = subprocess.run([SERVER_BIN], env=env, cwd=w.dir, capture_output=True, timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        eq(r.returncode, 2, "exit status with a %s key (%s)" % (what, err))
        contains(err, "GOOGLE_CHAT_SERVICE_ACCOUNT_KEY", "names the setting (%s)" % what)
        contains(err, "cat your-key-file.json | jq -c .", "names the fix (%s)" % what)
        check("PRIVATE KEY" not in err and "BEGIN" not in err, "the key is not echoed", err)
        eq(sanitizer_reports(sandir), [], "sanitizer clean")
    # the same key on one line starts
    w.extra_env["GOOGLE_CHAT_SERVICE_ACCOUNT_KEY"] = json.dumps(key, separators=(",", ":"))
    w.start()
    serving(w)


# ---------------------------------------------------------------------------
# OAuth setup
# ---------------------------------------------------------------------------
@test
def test_oauth_creates_space_and_adds_app(t):
    w = world()
    g = _env["g"]
    org, user, key = w.new_org()
    g.config(workspace="ws-" + org)
    r = w.frontend_get("/google-chat/login", key=key)
    eq(r.status, 302, "login (%r)" % r)
    loc = r.headers["location"]
    check(loc.startswith(g.base + "/o/oauth2/v2/auth?"), "Google's authorization endpoint", loc)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
    eq((q.get("client_id"), q.get("response_type"), q.get("access_type"), q.get("prompt"),
        q.get("code_challenge_method"), q.get("redirect_uri")),
       ("gchat-client", "code", "offline", "consent", "S256", w.extra_env["GOOGLE_CHAT_REDIRECT_URI"]),
       "authorization parameters")
    for s in ("chat.spaces.create", "chat.memberships.app", "openid"):
        contains(q.get("scope"), s, "scope asks for %s" % s)
    r = w.post("/google-chat/login", {}, key=key)
    eq(r.status, 200, "POST login answers JSON (%r)" % r)
    check(r.get("authorization_url", "").startswith(g.base), "authorization_url", r)
    n_spaces = len(g.stats()["spaces_create"])
    c = callback(w, authorize(loc))
    eq(c.status, 302, "callback (%r)" % c)
    contains(c.headers.get("location"), "/connectors?provider=google_chat&status=connected", "back to the frontend")
    eq((c.get("connected"), c.get("account")), (True, "admin@example.test"), "callback body")
    space = c.get("space_name")
    st = g.stats()
    eq(len(st["spaces_create"]), n_spaces + 1, "one spaces.create")
    sc = st["spaces_create"][-1]
    eq((sc["auth"], sc["body"]["spaceType"], sc["body"]["displayName"]), ("user", "SPACE", "Aurora Incidents"),
       "spaces.create with the user's token")
    eq(sc["requestId"], "aurora-%s-%s" % (org, user), "requestId makes the creation idempotent")
    mem = [m for m in st["members"] if m["space"] == space]
    eq([(m["auth"], m["body"]["member"]) for m in mem], [("user", {"name": "users/app", "type": "BOT"})],
       "the Chat app added to the space")
    eq((st["last_token"]["grant_type"], st["last_token"]["has_verifier"], st["last_token"]["has_secret"]),
       ("authorization_code", True, True), "code exchange with PKCE and the client secret")
    s = status(w, key)
    eq((s.get("connected"), s.get("space_name"), s.get("app_member"), s.get("identity"), s.get("email")),
       (True, space, True, "app", "admin@example.test"), "status")
    check("warning" not in s, "no 'as your name' warning with the service account", s)
    eq((s.get("events_url"), s.get("authentication_audience")), (AUDIENCE, AUDIENCE), "URLs to configure")
    r = w.get("/google-chat/status", key=key)
    eq((r.status, r.get("space_name")), (200, space), "GET /google-chat/status (%r)" % r)
    # the state is single use
    r = callback(w, authorize(loc))
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "state replayed (%r)" % r)
    # signing in again keeps the space (used once to create it)
    c2 = connect(w, key)
    eq(c2.get("space_name"), space, "same space after a reconnect")
    eq(len(g.stats()["spaces_create"]), n_spaces + 1, "no second spaces.create")
    # disconnect revokes the grant at Google
    revoked = g.stats()["revoked"]
    r = w.delete("/api/connectors/google_chat", key=key)
    eq((r.status, r.get("deleted")), (200, True), "disconnect (%r)" % r)
    eq(g.stats()["revoked"], revoked + 1, "refresh token revoked")
    eq(status(w, key).get("connected"), False, "status after disconnect")
    check(CLIENT_SECRET not in w.server.log_text(), "client secret never logged")
    # another organization in the same Workspace: the name is taken, Google says so
    _, _, key2 = w.new_org()
    r = w.frontend_get("/google-chat/login", key=key2)
    c = callback(w, authorize(r.headers["location"]))
    eq((c.status, c.error_code), (409, "GOOGLE_CHAT_SPACE_EXISTS"), "display name taken (%r)" % c)
    contains(c.get("error"), "GOOGLE_CHAT_SPACE_DISPLAY_NAME", "the fix")
    eq(status(w, key2).get("connected"), False, "nothing connected")


@test
def test_oauth_denied_and_forged_callbacks(t):
    w = world()
    _, _, key = w.new_org()
    r = w.post("/google-chat/login", {}, key=key)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.get("authorization_url")).query))["state"]
    r = https_request(w.port, w.ctx, "GET", "/google-chat/callback?" + urllib.parse.urlencode(
        {"error": "access_denied", "state": state}))
    eq((r.status, r.error_code), (400, "GOOGLE_CHAT_AUTHORIZATION_FAILED"), "user denied (%r)" % r)
    for qs in ("code=abc&state=" + "A" * 43, "code=abc", "state=" + state, ""):
        r = https_request(w.port, w.ctx, "GET", "/google-chat/callback?" + qs)
        eq(r.status, 400, "forged callback %r (%r)" % (qs, r))
    eq(status(w, key).get("connected"), False, "nothing connected")
    serving(w)


@test
def test_oauth_without_every_chat_scope_is_refused(t):
    """Google lets the user untick scopes on the consent screen and still
    grants the rest.  Without chat.spaces.create or chat.memberships.app the
    setup failed later with a bare 502; without chat.messages.create the
    connection was stored and every message sent as the user failed.  Now the
    callback names what is missing and stores nothing; granting all connects."""
    w = world()
    g = _env["g"]
    org, _, key = w.new_org()
    g.config(workspace="ws-" + org)  # each organization is its own Google Workspace
    for gone in (["https://www.googleapis.com/auth/chat.messages.create"],
                 ["https://www.googleapis.com/auth/chat.spaces.create",
                  "https://www.googleapis.com/auth/chat.memberships.app"]):
        g.config(untick=gone)
        try:
            r = w.frontend_get("/google-chat/login", key=key)
            eq(r.status, 302, "login (%r)" % r)
            c = callback(w, authorize(r.headers["location"]))
        finally:
            g.config(untick=[])
        eq((c.status, c.error_code), (400, "GOOGLE_CHAT_SCOPE_NOT_GRANTED"), "unticked %s (%r)" % (gone, c))
        for s in gone:
            contains(c.get("error"), s, "the message names what is missing")
        eq(status(w, key).get("connected"), False, "nothing connected")
    eq(connect(w, key).status, 302, "every scope granted: connected")
    eq(status(w, key).get("connected"), True, "connected")


def refused_setup(w, g, key, **fixture_cfg):
    """A setup sign-in that ends refused after Google issued tokens: the
    callback's answer, how long it took, and the tokens issued."""
    n = len(g.stats()["issued"])
    g.config(**fixture_cfg)
    try:
        r = w.frontend_get("/google-chat/login", key=key)
        eq(r.status, 302, "login (%r)" % r)
        loc = authorize(r.headers["location"])
        t0 = time.monotonic()
        c = callback(w, loc)
        took = time.monotonic() - t0
    finally:
        g.config(untick=[])
    issued = g.stats()["issued"]
    eq(len(issued), n + 1, "Google issued tokens")
    return c, took, issued[-1]


@test
def test_refused_setup_revokes_the_grant(t):
    """A callback that refused the setup after the code exchange (a Chat scope
    unticked, the space's name taken in the Workspace) dropped the tokens here
    while they stayed valid at Google.  The grant is now revoked at
    GOOGLE_CHAT_REVOKE_URL with the refresh token Google issued; a revocation
    endpoint that fails or hangs delays the answer a few seconds at most and
    does not change it."""
    w = world()
    g = _env["g"]
    org, _, key = w.new_org()
    g.config(workspace="ws-" + org)
    n_rev = len(g.stats()["revocations"])
    c, _, issued = refused_setup(w, g, key,
                                 untick=["https://www.googleapis.com/auth/chat.messages.create"])
    eq((c.status, c.error_code), (400, "GOOGLE_CHAT_SCOPE_NOT_GRANTED"), "scope unticked (%r)" % c)
    revs = g.stats()["revocations"][n_rev:]
    eq(revs, [{"token": issued["refresh_token"], "token_type_hint": "refresh_token"}],
       "the refused grant's refresh token revoked")
    # the space's display name is taken in this Workspace: refused after the exchange
    org2, _, key2 = w.new_org()
    g.config(workspace="ws-" + org)  # org's Workspace, where the name is not taken yet
    eq(connect(w, key).status, 302, "org connects, its space made")
    n_rev = len(g.stats()["revocations"])
    c, _, issued = refused_setup(w, g, key2)
    eq((c.status, c.error_code), (409, "GOOGLE_CHAT_SPACE_EXISTS"), "name taken (%r)" % c)
    eq(g.stats()["revocations"][n_rev:],
       [{"token": issued["refresh_token"], "token_type_hint": "refresh_token"}],
       "the refused grant revoked")
    eq(status(w, key2).get("connected"), False, "nothing connected")
    # Google's revocation endpoint fails, then hangs past the provider timeout (30 s)
    _, _, key3 = w.new_org()
    g.config(workspace="ws-" + org)
    for fault, what in (({"status": 503}, "fails"), ({"hang_ms": 25000}, "hangs")):
        g.ctl("/_fixture/fail", dict(target="revoke", count=1, **fault))
        n_rev = len(g.stats()["revocations"])
        c, took, issued = refused_setup(w, g, key3)
        eq((c.status, c.error_code), (409, "GOOGLE_CHAT_SPACE_EXISTS"),
           "the answer while revocation %s (%r)" % (what, c))
        eq([x["token"] for x in g.stats()["revocations"][n_rev:]], [issued["refresh_token"]],
           "revocation tried while it %s" % what)
        check(took < 15, "revocation that %s held the answer %.1f s" % (what, took))
    g.ctl("/_fixture/clear")
    wait_until(lambda: w.server.log_text().count("could not revoke the refused grant") >= 2, 10, 0.05,
               "both failed revocations logged")
    serving(w)


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------
@test
def test_events_valid_answered_and_idempotent(t):
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    body = json.dumps(event("MESSAGE", space, "what broke?")).encode()
    tok = token(g)
    r = post_event(w, body, tok)
    eq(r.status, 200, "MESSAGE (%r)" % r)
    contains(r.get("text"), "recorded your message", "Chat's synchronous answer is a message")
    ev = events(w, key)
    eq([(e["event"], e["authenticated"], e["verified"]) for e in ev], [("MESSAGE", "google_jwt", False)],
       "stored in the space's organization")
    # Chat delivers the same event again: same answer, nothing more stored
    n = rows(w)
    for _ in range(2):
        r2 = post_event(w, body, tok)
        eq((r2.status, r2.get("text")), (200, r.get("text")), "redelivery (%r)" % r2)
    eq(rows(w), n, "a redelivery stores nothing")
    eq(len(events(w, key)), 1, "one event")
    r = w.get("/api/google_chat/events/" + ev[0]["id"], key=key)
    eq((r.status, r.json["payload"]["message"]["argumentText"]), (200, " what broke?"), "event with payload (%r)" % r)
    # the app added to the space: a greeting
    r = post_event(w, event("ADDED_TO_SPACE", space), token(g))
    eq(r.status, 200, "ADDED_TO_SPACE (%r)" % r)
    contains(r.get("text"), "Hi, I'm Aurora", "greeting")
    r = post_event(w, event("CARD_CLICKED", space), token(g))
    eq((r.status, (r.get("actionResponse") or {}).get("type")), (200, "NEW_MESSAGE"), "CARD_CLICKED (%r)" % r)
    # removed from the space: the connection shows it once processed
    r = post_event(w, event("REMOVED_FROM_SPACE", space), token(g))
    eq(r.status, 200, "REMOVED_FROM_SPACE (%r)" % r)
    wait_until(lambda: status(w, key).get("app_member") is False, 15, what="app_member false")
    wait_until(lambda: all(e["status"] in ("processed", "ignored") for e in events(w, key)), 15,
               what="events processed")
    eq(sorted(e["event"] for e in events(w, key)),
       ["ADDED_TO_SPACE", "CARD_CLICKED", "MESSAGE", "REMOVED_FROM_SPACE"], "every event stored")
    # another org sees none of them
    _, _, other = w.new_org()
    eq(events(w, other), [], "other org sees nothing")
    # Google's OIDC ID token (Authentication Audience = HTTP endpoint URL): checked
    # against the JWKS, email must be Chat's
    oidc = {"email": CHAT_ISS, "email_verified": True}
    r = post_event(w, event("MESSAGE", space, "oidc"), token(g, iss="https://accounts.google.com", claims=oidc))
    eq(r.status, 200, "OIDC ID token (%r)" % r)
    check(g.stats()["certs"]["jwks"] >= 1, "JWKS fetched", g.stats()["certs"])
    n = rows(w)
    for claims in ({"email": "someone@example.test", "email_verified": True}, {"email": CHAT_ISS},
                   {"email": CHAT_ISS, "email_verified": "true"}):
        r = post_event(w, event("MESSAGE", space, "oidc-bad"), token(g, iss="https://accounts.google.com",
                                                                        claims=claims))
        eq((r.status, r.error_code), (401, "INVALID_TOKEN"), "ID token %r (%r)" % (claims, r))
    eq(rows(w), n, "nothing stored")


@test
def test_events_behind_the_frontend_tunnel(t):
    """The guide's local development: ngrok points at the frontend, which
    rewrites /google-chat/events to this server, and the user sets FRONTEND_URL
    (not AURORA_PUBLIC_URL) to the ngrok URL.  Chat's Authentication Audience is
    then <ngrok URL>/google-chat/events: that is the URL the setup page shows and
    the audience the events endpoint accepts."""
    ngrok = "https://aurora-%s.ngrok-free.app" % rand_tag(6)
    g = HttpFixture(t, "google-tunnel", "google_chat_api.mjs")
    w = t.world(start=False)
    env = fixture_env(g, w)
    del env["AURORA_PUBLIC_URL"]
    env["FRONTEND_URL"] = ngrok
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    configure(g, env)
    org, user, key, space = connected_org_g(w, g)
    st = status(w, key)
    eq((st.get("events_url"), st.get("authentication_audience")),
       (ngrok + "/google-chat/events",) * 2, "the setup page shows the tunnel's events URL (%r)" % st)
    r = post_event(w, event("MESSAGE", space, "via the tunnel"), token(g, aud=ngrok + "/google-chat/events"))
    eq(r.status, 200, "event whose audience is the tunnel's URL (%r)" % r)
    eq([e["event"] for e in events(w, key)], ["MESSAGE"], "stored")
    n = rows(w)
    for aud in ("http://localhost:3000/google-chat/events", "https://elsewhere.test/google-chat/events",
                ngrok + "/google-chat/callback"):
        r = post_event(w, event("MESSAGE", space, "forged"), token(g, aud=aud))
        eq((r.status, r.error_code), (401, "INVALID_TOKEN"), "audience %s (%r)" % (aud, r))
        contains(r.get("error"), ngrok + "/google-chat/events", "names the URL to set")
    eq(rows(w), n, "nothing stored")
    eq(w.server.stop(), [], "clean stop")
    # FRONTEND_URL's default (http://localhost:3000) is no URL Chat can post to:
    # without AURORA_PUBLIC_URL the endpoint is still unconfigured
    del w.extra_env["FRONTEND_URL"]
    w.start()
    r = post_event(w, event("MESSAGE", space, "default"), token(g, aud="http://localhost:3000/google-chat/events"))
    eq((r.status, r.error_code), (503, "GOOGLE_CHAT_AUDIENCE_NOT_CONFIGURED"), "default FRONTEND_URL (%r)" % r)
    contains(r.get("error"), "FRONTEND_URL", "names the setting the guide uses")
    eq(rows(w), n, "nothing stored")
    # With both set (the chart's AURORA_PUBLIC_URL is the API host), the URL on
    # the frontend's host, which the guide's production line shows, works too.
    sw = world()
    sg = _env["g"]
    _, _, skey, sspace = connected_org(sw)
    r = post_event(sw, event("MESSAGE", sspace, "via the frontend"), token(sg, aud=FRONTEND + "/google-chat/events"))
    eq(r.status, 200, "audience on FRONTEND_URL's host (%r)" % r)
    eq(status(sw, skey).get("events_url"), AUDIENCE, "AURORA_PUBLIC_URL's is the one shown")


@test
def test_events_refused_tokens(t):
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    body = json.dumps(event("MESSAGE", space, "forged")).encode()
    n = rows(w)
    cases = [
        ("missing header", None),
        ("wrong audience", token(g, aud="https://elsewhere.test/google-chat/events")),
        ("project-number audience", token(g, aud="1234567890")),
        ("wrong issuer", token(g, iss="someone@example.iam.gserviceaccount.com")),
        ("expired", token(g, exp_in=-120)),
        ("issued in the future", token(g, iat_off=600, exp_in=900)),
        ("unknown kid", token(g, kid="no-such-kid-" + rand_tag(4))),
        ("no kid", token(g, kid=None)),
        ("alg none", token(g, alg="none")),
        ("HS256 keyed with the certificate", token(g, alg="HS256")),
        ("bad signature (unpublished key)", token(g, key="rogue")),
        ("malformed", "not-a-jwt"),
        ("two parts", "eyJhbGciOiJSUzI1NiJ9.e30"),
        ("garbage parts", "%%%.%%%.%%%"),
    ]
    good = token(g)
    h, p, s = good.split(".")
    cases.append(("payload swapped", h + "." + token(g, claims={"sub": "x"}).split(".")[1] + "." + s))
    cases.append(("signature truncated", h + "." + p + "." + s[:-8]))
    for what, tok in cases:
        r = post_event(w, body, tok)
        eq(r.status, 401, "%s (%r)" % (what, r))
        check(r.error_code in ("MISSING_TOKEN", "INVALID_TOKEN"), "error code (%s)" % what, r)
    r = post_event(w, body, None, headers={"Authorization": "Basic " + good})
    eq((r.status, r.error_code), (401, "MISSING_TOKEN"), "not a bearer token (%r)" % r)
    contains(r.get("error"), "Authentication Audience", "the guide's fix in the message")
    eq(rows(w), n, "nothing stored for refused requests")
    check(good not in w.server.log_text(), "tokens never logged")
    serving(w)


@test
def test_events_bad_bodies(t):
    w = world()
    g = _env["g"]
    _, _, key, space = connected_org(w)
    n = rows(w)
    big = event("MESSAGE", space, "x" * (300 * 1024))
    r = post_event(w, big, token(g))
    eq(r.status, 413, "oversized (%r)" % r)
    for what, body in (("not JSON", b"{not json"), ("truncated", json.dumps(event("MESSAGE", space)).encode()[:50]),
                       ("array", b"[]"), ("unknown type", event("WIDGET_UPDATED", space)),
                       ("no type", {"space": {"name": space}}), ("no space", {"type": "MESSAGE"}),
                       ("bad space name", event("MESSAGE", "spaces/../../x")), ("empty", b"")):
        r = post_event(w, body, token(g))
        eq(r.status, 400, "%s (%r)" % (what, r))
    r = post_event(w, event("MESSAGE", space), token(g), content_type="text/plain")
    eq(r.status, 415, "content type (%r)" % r)
    eq(rows(w), n, "nothing stored")
    serving(w)


@test
def test_events_of_unknown_space_adopted_on_setup(t):
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    eq(w.delete("/api/connectors/google_chat", key=key).status, 200, "disconnect")
    # the space is nobody's now: stored without an organization
    r = post_event(w, event("MESSAGE", space, "before setup"), token(g))
    eq(r.status, 200, "unknown space accepted (%r)" % r)
    contains(r.get("text"), "not connected to an Aurora organization", "answer says so")
    eq(rows(w, "org_id IS NULL AND body LIKE ?", ("%before setup%",)), 1, "stored unassigned")
    eq(events(w, key), [], "not shown to the org")
    # setting up again (same org and user: spaces.create's requestId returns the
    # same space) adopts it
    c = connect(w, key)
    eq(c.get("space_name"), space, "same space")
    wait_until(lambda: len(events(w, key)) == 1, 15, what="event adopted")
    eq(rows(w, "org_id IS NULL AND body LIKE ?", ("%before setup%",)), 0, "assigned")


@test(timeout=300)
def test_space_adopted_behind_unassignable_backlog(t):
    """Events of a space nobody will set up pile up without an organization
    (more than the 1,000 oldest unassigned rows adoption used to read).  A
    space set up after them still gets its earlier event."""
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    eq(w.delete("/api/connectors/google_chat", key=key).status, 200, "disconnect")
    tok = token(g)
    never = "spaces/NEVER" + rand_tag(8).upper()
    junk = [json.dumps(event("MESSAGE", never, "junk %d" % i)).encode() for i in range(1100)]
    statuses = post_many(w, "/google-chat/events", junk, lambda i: {
        "Content-Type": "application/json", "Authorization": "Bearer " + tok})
    eq({s: statuses.count(s) for s in set(statuses)}, {200: len(junk)}, "every event accepted")
    r = post_event(w, event("MESSAGE", space, "early, behind the backlog"), token(g))
    eq(r.status, 200, "the early event is kept (%r)" % r)
    eq(rows(w, "org_id IS NULL AND body LIKE ?", ("%behind the backlog%",)), 1, "stored unassigned")
    c = connect(w, key)
    eq(c.get("space_name"), space, "same space")
    wait_until(lambda: len(events(w, key)) == 1, 30, what="the early event adopted")
    eq(rows(w, "org_id IS NULL AND body LIKE ?", ("%behind the backlog%",)), 0, "assigned")
    eq(rows(w, "org_id IS NULL AND body LIKE ?", ("%" + never + "%",)), len(junk), "the backlog still waits")
    serving(w)


@test
def test_certificate_rotation_and_refetch_limit(t):
    w = world()
    g = _env["g"]
    _, _, key, space = connected_org(w)
    eq(post_event(w, event("MESSAGE", space), token(g)).status, 200, "current key")
    new_kid = g.ctl("/_fixture/rotate")["kid"]
    # Google rotated: the new kid is unknown until a refetch (at most every
    # GOOGLE_CHAT_CERTS_REFETCH_S=2 s), then accepted
    wait_until(lambda: post_event(w, event("MESSAGE", space), token(g, kid=new_kid)).status == 200, 15,
               what="token of the rotated key accepted")
    # a burst of forged kids does not make the server hammer Google
    before = g.stats()["certs"]["x509"]
    # The server spaces refetches 2 whole seconds of time(NULL) apart (two
    # may be just over 1 s apart): the bound is counted in those seconds.
    s0 = int(time.time())
    for i in range(20):
        eq(post_event(w, event("MESSAGE", space), token(g, kid="forged-%d" % i)).status, 401, "forged kid %d" % i)
    s1 = int(time.time())
    fetched = g.stats()["certs"]["x509"] - before
    check(fetched <= (s1 - s0) // 2 + 1, "refetches rate limited (%d in seconds %d..%d)"
          % (fetched, s0, s1))


# ---------------------------------------------------------------------------
# outbound: incident notifications through the chat kit (kit_chat.h)
# ---------------------------------------------------------------------------
def intake(w, org, fp, state="firing", title="Checkout latency above 2s", service="checkout"):
    a = {"source": "grafana", "delivery_id": "gc-%s" % rand_tag(10), "index": 0, "fingerprint": fp,
         "state": state, "title": title, "service": service, "severity": "critical",
         "message": "p99 above 2 s for 5 minutes", "occurred_at": "2026-12-03T04:00:00Z"}
    r = https_request(w.port, w.ctx, "POST", "/internal/incidents/alerts", a,
                      {"X-Internal-Secret": w.secret, "X-Org-ID": org})
    check(r.status in (200, 201), "intake (%r)" % r)
    return r.json


def messages(g, space):
    return [m for m in g.stats()["messages"] if m["space"] == space and not m.get("duplicate")]


def wait_messages(g, space, n, what):
    wait_until(lambda: len([m for m in messages(g, space) if m.get("thread")]) >= n, 30, what=what)
    return [m for m in messages(g, space) if m.get("thread")]


@test
def test_incident_posted_as_app_and_resolved_in_thread(t):
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    inc = intake(w, org, "fp-" + rand_tag(6))["incident_id"]
    sent = wait_messages(g, space, 1, "incident message in the space")
    m = sent[0]
    eq((m["auth"], m["query"].get("messageReplyOption"), m["query"].get("requestId", "")[:4]),
       ("app", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD", "chm_"), "sent as the Chat app, idempotent requestId")
    card = m["body"]["cardsV2"][0]["card"]
    eq(card["header"]["title"], "Checkout latency above 2s", "card title")
    widgets = card["sections"][0]["widgets"]
    texts = {x["decoratedText"]["topLabel"]: x["decoratedText"]["text"] for x in widgets if "decoratedText" in x}
    eq((texts.get("Severity"), texts.get("Service")), ("critical", "checkout"), "severity and service")
    button = [x for x in widgets if "buttonList" in x][0]["buttonList"]["buttons"][0]
    eq((button["text"], button["onClick"]["openLink"]["url"]),
       ("View Investigation", FRONTEND + "/incidents/" + inc), "View Investigation opens the incident")
    check(m["body"]["thread"].get("threadKey"), "first message starts a thread by key", m["body"])
    thread = m["thread"]
    # resolved: a reply in that thread
    r = w.post("/api/incidents/%s/resolve" % inc, key=key)
    eq(r.status, 200, "resolve (%r)" % r)
    sent = wait_messages(g, space, 2, "resolution reply")
    reply = sent[1]
    eq((reply["body"]["thread"].get("name"), reply["thread"]), (thread, thread), "reply in the incident's thread")
    contains(reply["body"]["text"], "Resolved", "resolution text")
    # an @mention in that thread answers with a link to the incident
    r = post_event(w, event("MESSAGE", space, "status?", thread=thread), token(g))
    eq(r.status, 200, "mention in the thread (%r)" % r)
    link = r.json["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["buttonList"]["buttons"][0]
    eq(link["onClick"]["openLink"]["url"], FRONTEND + "/incidents/" + inc, "answer links the incident")


@test
def test_alert_fields_cannot_mention_or_link(t):
    """Title and service come from webhooks anyone holding a webhook URL can
    send, a reply's text from the investigation (which reads them): none may
    become a Chat mention (<users/all>, <users/…>) or a disguised link."""
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    inc = intake(w, org, "fp-" + rand_tag(6), title="<users/all> checkout & cart down [docs](https://evil.example)",
                 service="<users/123456> <https://evil.example|app.aurora.test>")["incident_id"]
    wait_messages(g, space, 1, "incident message in the space")
    r = https_request(w.port, w.ctx, "POST", "/internal/chat/messages",
                      {"incident_id": inc, "text": "Root cause: <users/all> see <https://evil.example|the runbook>"},
                      {"X-Internal-Secret": w.secret, "X-Org-ID": org})
    eq(r.status, 202, "reply queued (%r)" % r)
    sent = wait_messages(g, space, 2, "the reply in the thread")
    for m in sent:
        shown = json.dumps(m["body"], ensure_ascii=False)
        for bad in ("<users/", "<https://evil.example|"):
            check(bad not in shown, "%s is not Chat markup in the message" % bad, shown)
    contains(sent[0]["body"]["text"], "users/all", "the title still shown")
    contains(sent[1]["body"]["text"], "Root cause:", "the reply still shown")
    # An app created today reads text as Markdown ([label](url) is a link,
    # unescapable here): every message says its text is in Chat's syntax.
    eq([m["markup"] for m in sent], ["MARKUP_SYNTAX_CHAT"] * 2, "text read in Chat's markup syntax")
    # The card header is plain text (only widgets read HTML): nothing escaped
    # shows as &lt; or &amp;, and no markup can form there either.
    eq(sent[0]["body"]["cardsV2"][0]["card"]["header"]["title"],
       "\uff1cusers/all\uff1e checkout & cart down [docs](https://evil.example)", "card header title as text")


def outbox(w, org, incident_id=None):
    q = "/internal/chat/messages?limit=500" + ("&incident_id=" + incident_id if incident_id else "")
    r = https_request(w.port, w.ctx, "GET", q, None, {"X-Internal-Secret": w.secret, "X-Org-ID": org})
    eq(r.status, 200, "outbox listing (%r)" % r)
    return [m for m in r.json["messages"] if m["connector"] == "google_chat"]


@test(timeout=120)
def test_send_retries_and_drops(t):
    w = world()
    g = _env["g"]
    org, user, key, space = connected_org(w)
    # Chat answers 429 (Retry-After 1) then 503 twice: retried, delivered once
    g.ctl("/_fixture/fail", {"target": "messages", "status": 429, "count": 1, "retry_after": 1})
    g.ctl("/_fixture/fail", {"target": "messages", "status": 503, "count": 2})
    inc = intake(w, org, "fp-" + rand_tag(6))["incident_id"]
    sent = wait_messages(g, space, 1, "delivered after 429/503")
    eq(len(sent), 1, "one message in the space")
    wait_until(lambda: [m["status"] for m in outbox(w, org, inc)] == ["sent"], 30, what="row sent")
    row = outbox(w, org, inc)[0]
    check(row["attempts"] >= 2, "the outbox retried", row)
    eq((row["channel"], row["thread"]), (space, sent[0]["thread"]), "thread recorded")
    g.ctl("/_fixture/clear", {})
    # the app was removed from the space: Chat answers 404, the row is dropped
    g.ctl("/_fixture/remove_app", {"space": space})
    r = intake(w, org, "fp-" + rand_tag(6), title="Second incident", service="payments")
    eq(r["result"], "created", "a second incident (%r)" % r)
    inc2 = r["incident_id"]
    wait_until(lambda: [m["status"] for m in outbox(w, org, inc2)] == ["dropped"], 30, what="row dropped")
    row = outbox(w, org, inc2)[0]
    contains(row["last_error"], "HTTP 404", "the reason")
    contains(row["last_error"], "member of " + space, "what to check")
    eq(row["attempts"], 1, "not retried")
    serving(w)


@test(timeout=120)
def test_reply_cannot_reach_another_organizations_space(t):
    """The Chat app is a member of every organization's space: a reply that
    names another organization's space or thread is dropped, never posted."""
    w = world()
    g = _env["g"]
    org_a, _, _, space_a = connected_org(w)
    org_b, _, _, space_b = connected_org(w)
    for thread in (space_b + "/threads/x", space_a + "/threads/x"):
        body = {"connector": "google_chat", "channel": space_b, "thread": thread, "text": "leak"}
        r = https_request(w.port, w.ctx, "POST", "/internal/chat/messages", body,
                          {"X-Internal-Secret": w.secret, "X-Org-ID": org_a})
        eq(r.status, 202, "queued for org A (%r)" % r)
    # and A's own space with B's thread
    body = {"connector": "google_chat", "channel": space_a, "thread": space_b + "/threads/x", "text": "leak"}
    r = https_request(w.port, w.ctx, "POST", "/internal/chat/messages", body,
                      {"X-Internal-Secret": w.secret, "X-Org-ID": org_a})
    eq(r.status, 202, "queued (%r)" % r)
    wait_until(lambda: [m["status"] for m in outbox(w, org_a)].count("dropped") == 3, 30,
               what="all three dropped")
    for m in outbox(w, org_a):
        contains(m["last_error"], "not this organization's incidents space", "the reason")
    for sp in (space_a, space_b):
        check(all(x["body"].get("text") != "leak" for x in messages(g, sp)), "nothing posted in " + sp)


def user_world():
    """A server without the service account key (messages as the user, on
    their OAuth token) and its own Google, for the suite."""
    if "user_world" not in _env:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        g = HttpFixture(st, "google-user", "google_chat_api.mjs")
        w = World(st, "user-server", start=False)
        env = fixture_env(g, w, sa_key=False)
        env["AURORA_CHAT_POLL_S"] = "1"
        w.extra_env.update(env)
        w.start()
        w.bootstrap()
        configure(g, env)
        _env["user_world"] = (w, g)
    return _env["user_world"]


@test
def test_without_service_account_messages_as_user(t):
    w, g = user_world()
    org, user, key, space = connected_org_g(w, g)
    st = status(w, key)
    eq((st.get("identity"), st.get("warning"), st.get("hint")),
       ("user", "Messages appear as your name", "Set GOOGLE_CHAT_SERVICE_ACCOUNT_KEY to enable the Chat app identity"),
       "status says who messages appear as")
    eq(g.stats()["members"], [], "no app to add without the service account")
    inc = intake(w, org, "fp-" + rand_tag(6))["incident_id"]
    wait_until(lambda: [x for x in g.stats()["messages"] if x.get("thread")], 30, what="message as the user")
    m = [x for x in g.stats()["messages"] if x.get("thread")][0]
    eq((m["auth"], "cardsV2" in m["body"]), ("user", False), "user token, text only")
    eq(m["markup"], "MARKUP_SYNTAX_CHAT", "the text (and its <url|label> link) read in Chat's syntax")
    contains(m["body"]["text"], "<%s/incidents/%s|View Investigation>" % (FRONTEND, inc), "link in the text")


@test
def test_user_token_after_reconnect_through_another_replica(t):
    """A reconnect through another replica (same store and secrets) replaces
    the grant whose access token this replica's cache holds.  The cache was
    keyed on the org and user alone and only the replica that took the
    callback forgot it: this one went on posting with the replaced grant's
    token for up to its hour (found in review)."""
    w, g = user_world()
    org, user, key, space = connected_org_g(w, g)
    intake(w, org, "fp-" + rand_tag(6))
    first = wait_messages(g, space, 1, "a message with the first grant's token")[0]["token"]
    r2 = w.replica(t)
    r = r2.frontend_get("/google-chat/login", key=key)
    eq(r.status, 302, "login on the other replica (%r)" % r)
    u = urllib.parse.urlsplit(authorize(r.headers["location"]))
    c = https_request(r2.port, r2.ctx, "GET", u.path + "?" + u.query)
    eq((c.status, c.get("space_name")), (302, space), "reconnect through the other replica (%r)" % c)
    eq(r2.server.stop(), [], "clean stop of the other replica (this one sends what follows)")
    intake(w, org, "fp-" + rand_tag(6), title="Second incident", service="payments")
    m = wait_messages(g, space, 2, "the second message")[1]
    eq(m["auth"], "user", "sent as the user")
    check(m["token"] not in (None, first), "not the replaced grant's token", m)


@test(timeout=120)
def test_invalid_scope_reported(t):
    g = HttpFixture(t, "google-scope", "google_chat_api.mjs")
    w = t.world(start=False)
    env = fixture_env(g, w)
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    configure(g, env, scope_error=True)
    org, user, key, space = connected_org_g(w, g)
    inc = intake(w, org, "fp-" + rand_tag(6))["incident_id"]
    wait_until(lambda: any(m["last_error"] for m in outbox(w, org, inc)), 30, what="send attempted")
    row = outbox(w, org, inc)[0]
    eq(row["status"], "pending", "kept for a retry once the scope is fixed")
    contains(row["last_error"], "invalid_scope", "Google's code")
    contains(row["last_error"], "Ensure the service account has the chat.bot scope", "the guide's fix")
    a = g.stats()["sa_assertions"][-1]
    eq((a["scope"], a["aud"], a["lifetime"]), ("https://www.googleapis.com/auth/chat.bot", g.base + "/sa/token", 3600),
       "the assertion asked for chat.bot at the key's token_uri")
    eq(g.stats()["messages"], [], "nothing posted without a token")
    # fixed at Google: the next retry delivers
    g.config(scope_error=False)
    wait_until(lambda: [m["status"] for m in outbox(w, org, inc)] == ["sent"], 60, what="sent after the fix")

if __name__ == "__main__":
    main()
