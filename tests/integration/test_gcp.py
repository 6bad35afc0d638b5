#!/usr/bin/env python3
"""GCP connector (connector guide, Cloud Providers > GCP) and cloud_exec, end to end.

Peers, none of them this project's code:
  tests/fixtures/gcp_fixture.py   Google's token endpoint (verifies the RS256 JWT
                                  assertion with the key's public key) and Cloud
                                  Resource Manager v1 projects.list (3 pages)
  tests/fixtures/oauth_google.js  `oauth2-mock-server` (npm) playing Google's OAuth
  tests/fixtures/verify_jwt.js    `jose` (npm) verifies the server's JWT independently
  tests/fixtures/v2_agent.js      a `ws` agent speaking aurora-tunnel.v2 that records
                                  the exec frames it receives
  tests/fixtures/legacy_agent.js  the deployed agent's dialect (cannot run cloud_exec)
Service account keys are made with the openssl CLI."""

import atexit
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from harness import (V2Agent, _SUITE, BesideHung, FIXTURES, NODE, T, World, check, contains, eq,
                     main, rand_tag, test, wait_until)

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLIENT_ID = "1234-aurora-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-" + rand_tag(8)
# The provider timeout of the hung-provider test's own server, which waits
# it out (1.5 s was not much for the fixture's answers on a loaded machine).
TIMEOUT_MS = 5000
# The suite server's: no other test waits for one, and a fixture call a
# loaded machine delays past 5 s (a 10,000-project listing, an RS256 check
# in Python) would be a 504 in an unrelated test.
SUITE_TIMEOUT_MS = 30000
SHARED = {}
_TMP = tempfile.mkdtemp(prefix="aurora-gcp-")
_PROCS = []


def _cleanup():
    for p in _PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(_TMP, ignore_errors=True)


atexit.register(_cleanup)


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------
def fixture():
    """(port) of the shared gcp_fixture.py."""
    if "fx_port" not in SHARED:
        p = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "gcp_fixture.py")],
                             stdout=subprocess.PIPE, stderr=open(os.path.join(_TMP, "gcp_fixture.log"), "wb"))
        _PROCS.append(p)
        line = p.stdout.readline()
        check(line.strip().isdigit(), "gcp_fixture did not print its port", line)
        SHARED["fx_port"] = int(line)
    return SHARED["fx_port"]


def fx(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", fixture(), timeout=10)
    c.request(method, path, json.dumps(body) if body is not None else None,
              {"Content-Type": "application/json"} if body is not None else {})
    r = c.getresponse()
    data = json.loads(r.read() or b"{}")
    c.close()
    return data


def fx_mode(**kw):
    fx("POST", "/_control", kw)


def fx_state():
    return fx("GET", "/_control/state")


class OAuthMock:
    """tests/fixtures/oauth_google.js; events are JSON lines."""

    def __init__(self, redirect_uri):
        self.events = []
        self.cv = threading.Condition()
        self.p = subprocess.Popen([NODE, os.path.join(FIXTURES, "oauth_google.js"),
                                   "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                                   "--redirect-uri", redirect_uri],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(os.path.join(_TMP, "oauth_google.log"), "ab"),
                                  cwd=os.path.dirname(FIXTURES))
        _PROCS.append(self.p)
        first = json.loads(self.p.stdout.readline())
        self.issuer = first["issuer"].rstrip("/")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()

    def wait_event(self, pred, what, after=0, timeout=10):
        """The first event past index `after` matching pred; the mock reports it
        before it answers, but a thread reads the reports, so they can lag."""
        return wait_until(lambda: next((e for e in list(self.events)[after:] if pred(e)), None),
                          timeout, 0.02, "the OAuth mock to report %s" % what)

    def op(self, **o):
        n = len([e for e in self.events if e.get("event") == "ack"])
        self.p.stdin.write((json.dumps(o) + "\n").encode())
        self.p.stdin.flush()
        wait_until(lambda: len([e for e in self.events if e.get("event") == "ack"]) > n, 15, 0.02,
                   "oauth mock ack")


def make_key(email=None, project_id="proj-alpha"):
    """A service account key file (dict) with a fresh RSA key, and its public PEM."""
    d = tempfile.mkdtemp(dir=_TMP)
    priv, pub = os.path.join(d, "k.pem"), os.path.join(d, "pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", priv], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                   capture_output=True)
    email = email or "aurora-%s@%s.iam.gserviceaccount.com" % (rand_tag(3), project_id)
    key = {
        "type": "service_account", "project_id": project_id, "private_key_id": rand_tag(20),
        "private_key": open(priv).read(), "client_email": email, "client_id": "1" + rand_tag(10),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": GOOGLE_TOKEN_URI,
    }
    pub_pem = open(pub).read()
    fx_mode(pubkeys={email: pub_pem}, expected_aud=GOOGLE_TOKEN_URI)
    return key, pub_pem, pub


def world():
    """The shared server (the suite world), configured for the fixtures, and the OAuth mock."""
    port = fixture()
    if "world" in SHARED:
        return SHARED["world"], SHARED["oauth"]
    # The redirect URI names the server's own port, known only once it is chosen:
    # make the world without starting it, then start it.
    if _SUITE["t"] is None:
        _SUITE["t"] = T(_SUITE["root"], "suite")
    w = World(_SUITE["t"], "suite-server", start=False)
    redirect = "https://127.0.0.1:%d/callback" % w.port
    oauth = OAuthMock(redirect)
    w.extra_env.update({
        "GCP_TOKEN_URI_OVERRIDE": "http://127.0.0.1:%d/token" % port,
        "GCP_CRM_URL": "http://127.0.0.1:%d" % port,
        "AURORA_PROVIDER_TIMEOUT_MS": str(SUITE_TIMEOUT_MS),
        "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET,
        "GCP_REDIRECT_URI": redirect,
        "GCP_AUTH_URL": oauth.issuer + "/authorize",
        "GCP_TOKEN_URL": oauth.issuer + "/token",
        "GCP_REVOKE_URL": oauth.issuer + "/revoke",
    })
    w.start()
    w.bootstrap()
    _SUITE["world"] = w
    SHARED.update(world=w, oauth=oauth, redirect=redirect)
    return w, oauth


def connect_sa(w, key, body=None, user_key=None):
    return w.post("/gcp/service-account", body if body is not None else key, key=user_key)


def fresh_user(w):
    """A new user of the bootstrap org: (user_id, api key)."""
    return w.new_user()


# ---------------------------------------------------------------------------
# service account keys
# ---------------------------------------------------------------------------
@test
def malformed_keys_are_refused(t):
    w, _ = world()
    _, k = fresh_user(w)
    key, _, _ = make_key()
    text = json.dumps(key)
    bad_pem = dict(key, private_key="-----BEGIN PRIVATE KEY-----\nAAAAnotakey\n-----END PRIVATE KEY-----\n")
    cases = {
        "truncated JSON": text[: len(text) // 2],
        "bad PEM": bad_pem,
        "no client_email": {x: v for x, v in key.items() if x != "client_email"},
        "no private_key": {x: v for x, v in key.items() if x != "private_key"},
        "wrong type": dict(key, type="authorized_user"),
        "not an object": [1, 2],
        "empty": "",
        "wrapped truncated": {"key": text[:-10]},
        # the key upload parses its own body: the NUL rule of every JSON body holds here too
        "NUL in client_email": text.replace(key["client_email"], key["client_email"] + "\\u0000x"),
    }
    for what, body in cases.items():
        r = w.post("/gcp/service-account", body, key=k)
        eq(r.status, 400, "%s: status (%r)" % (what, r))
        contains(r.get("error"), "Service account key is malformed", what)
        check(key["private_key"][40:80] not in r.body.decode(), "%s: the key is echoed" % what)
    # nothing was connected
    s = w.get("/api/connectors/status", key=k)
    eq(s.json["connectors"]["gcp"]["connected"], False, "gcp connected after bad keys")


@test
def token_uri_must_be_an_allowed_google_host(t):
    """An uploaded key must not make the server POST to arbitrary URLs (SSRF)."""
    # A separate server without the test override: only Google's hosts are allowed.
    port = fixture()
    w = t.world("strict", extra_env={"GCP_CRM_URL": "http://127.0.0.1:%d" % port,
                                     "AURORA_PROVIDER_TIMEOUT_MS": str(TIMEOUT_MS)})
    key, _, _ = make_key()
    before = fx_state()["token_requests"]
    for uri in ("http://127.0.0.1:%d/token" % port, "https://169.254.169.254/token",
                "https://oauth2.googleapis.com.evil.example/token", "file:///etc/passwd",
                "http://oauth2.googleapis.com/token"):
        r = w.post("/gcp/service-account", dict(key, token_uri=uri))
        eq(r.status, 400, "token_uri %s (%r)" % (uri, r))
        contains(r.get("error"), "Service account key is malformed", "token_uri %s" % uri)
        contains(r.get("error"), "token_uri", "token_uri %s" % uri)
    eq(fx_state()["token_requests"], before, "the fixture was never called")


@test
def token_uri_host_is_checked_as_curl_parses_it(t):
    """The allow-list check and the fetch parse token_uri alike (curl's URL API):
    userinfo, backslash tricks, other ports and a trailing dot are refused even
    when the host the check would have picked is allowed.  Loopback is the
    allowed host here, so nothing leaves the machine on the old code either."""
    port = fixture()
    w = t.world("strict-loopback", extra_env={"GCP_CRM_URL": "http://127.0.0.1:%d" % port,
                                              "GCP_ALLOWED_TOKEN_HOSTS": "127.0.0.1",
                                              "AURORA_PROVIDER_TIMEOUT_MS": str(TIMEOUT_MS)})
    key, _, _ = make_key()
    for uri in ("https://evil.example\\@127.0.0.1/token", "https://u:p@127.0.0.1/token",
                "https://127.0.0.1@127.0.0.1/token", "https://127.0.0.1:%d/token" % port,
                "https://127.0.0.1./token", "https://[127.0.0.1]/token"):
        r = w.post("/gcp/service-account", dict(key, token_uri=uri))
        eq((r.status, r.error_code), (400, "GCP_KEY_MALFORMED"), "token_uri %s (%r)" % (uri, r))
        contains(r.get("error"), "token_uri", "token_uri %s" % uri)
    # an allowed host in a form curl decodes is the host itself: let through to
    # the (closed) https port of loopback, i.e. a transport error, not a refusal
    r = w.post("/gcp/service-account", dict(key, token_uri="https://%31%32%37.0.0.1/token"))
    eq((r.status, r.error_code), (502, "GCP_CREDENTIAL_REFRESH_FAILED"), "percent-encoded loopback (%r)" % r)
    eq(w.get("/health").status, 200, "server still serving")


@test
def good_key_lists_every_page_and_jwt_verifies_with_jose(t):
    w, _ = world()
    uid, k = fresh_user(w)
    key, pub_pem, pub_path = make_key()
    r = connect_sa(w, key, user_key=k)
    eq(r.status, 200, "connect (%r)" % r)
    ids = [p["id"] for p in r.json["projects"]]
    eq(ids, ["proj-alpha", "proj-beta", "proj-gamma", "proj-delta"], "projects of all 3 pages")
    check(all(p["enabled"] is True for p in r.json["projects"]), "all enabled", r.json)
    eq(r.json["default_project"], "proj-alpha", "default project = key.project_id")
    eq(r.json["root"], None, "no root yet")
    eq(r.json["account"], key["client_email"], "account")
    st = fx_state()
    eq(st["failures"], [], "fixture assertion checks")
    # The JWT as the fixture received it, verified by jose.
    jwt_path = os.path.join(t.tmp, "assertion.jwt")
    with open(jwt_path, "w") as f:
        f.write(st["assertions"][-1])
    out = subprocess.run([NODE, os.path.join(FIXTURES, "verify_jwt.js"), "--jwt", jwt_path,
                          "--pubkey", pub_path, "--iss", key["client_email"], "--aud", GOOGLE_TOKEN_URI],
                         capture_output=True, cwd=os.path.dirname(FIXTURES), timeout=30)
    v = json.loads(out.stdout.decode() or "{}")
    check(v.get("ok"), "jose rejects the server's JWT", v, out.stderr)
    eq(v["header"]["alg"], "RS256", "alg")
    eq(v["header"].get("kid"), key["private_key_id"], "kid")
    eq(v["payload"]["scope"], "https://www.googleapis.com/auth/cloud-platform", "scope")
    eq(v["payload"]["exp"] - v["payload"]["iat"], 3600, "exp = iat + 3600")
    # status shows it, never a secret
    s = w.get("/api/connectors/status", key=k)
    g = s.json["connectors"]["gcp"]
    eq((g["connected"], g["account"], g["projects"]), (True, key["client_email"], 4), "status")
    check("aws" in s.json["connectors"], "every connector is listed", s.json)
    check(key["private_key"][30:90] not in s.body.decode(), "status leaks the key")
    # the {"key": {...}} form works too (re-upload keeps the same account)
    r = connect_sa(w, key, body={"key": key}, user_key=k)
    eq(r.status, 200, "wrapped key (%r)" % r)
    SHARED["sa_user"] = (uid, k, key)


@test
def refresh_failure_and_no_projects(t):
    w, _ = world()
    _, k = fresh_user(w)
    key, _, _ = make_key()
    try:
        fx_mode(token_mode="401")
        r = connect_sa(w, key, user_key=k)
        eq(r.status, 400, "token 401 (%r)" % r)
        contains(r.get("error"), "Credential refresh failed", "token 401")
        fx_mode(token_mode="ok", projects_mode="empty")
        r = connect_sa(w, key, user_key=k)
        eq(r.status, 400, "no projects (%r)" % r)
        contains(r.get("error"), "No accessible projects", "no projects")
        fx_mode(projects_mode="403")
        r = connect_sa(w, key, user_key=k)
        eq(r.status, 400, "projects 403 (%r)" % r)
        contains(r.get("error"), "No accessible projects", "projects 403")
        # the API switched off is the guide's "API not enabled", not a missing role
        fx_mode(projects_mode="disabled")
        r = connect_sa(w, key, user_key=k)
        eq((r.status, r.error_code), (400, "GCP_API_NOT_ENABLED"), "API disabled (%r)" % r)
        contains(r.get("error"), "API not enabled", "API disabled")
        # a hostile or broken answer: 30000 projects, a 300000-character name,
        # within the client's 4 MiB: the connection keeps a bounded list
        fx_mode(projects_mode="huge")
        r = connect_sa(w, key, user_key=k)
        eq(r.status, 200, "huge project list (%r)" % r)
        ps = r.json["projects"]
        eq(len(ps), 10000, "projects kept")
        eq((ps[0]["id"], ps[0]["name"]), ("proj-h00000", "proj-h00000"), "an oversized name is not kept")
        check(len(r.body) < 2 << 20, "the answer is bounded", len(r.body))
        eq(w.delete("/api/connectors/gcp", key=k).status, 200, "disconnect")
    finally:
        fx_mode(token_mode="ok", projects_mode="ok")
    s = w.get("/api/connectors/status", key=k)
    eq(s.json["connectors"]["gcp"]["connected"], False, "nothing connected after failures")


@test
def hung_provider_gives_a_clear_error_and_blocks_nothing_else(t):
    # a server of its own, with the provider timeout this test waits for
    port = fixture()
    w = t.world("hung", extra_env={"GCP_TOKEN_URI_OVERRIDE": "http://127.0.0.1:%d/token" % port,
                                   "GCP_CRM_URL": "http://127.0.0.1:%d" % port,
                                   "AURORA_PROVIDER_TIMEOUT_MS": str(TIMEOUT_MS)})
    _, k = fresh_user(w)
    key, _, _ = make_key()
    # Hung far longer than the timeout, so that only the timeout can end it.
    fx_mode(token_mode="sleep", sleep_s=TIMEOUT_MS / 1000.0 + 30)
    res = {}

    def slow():
        t0 = time.monotonic()
        res["r"] = connect_sa(w, key, user_key=k)
        res["dt"] = time.monotonic() - t0

    th = threading.Thread(target=slow)
    before = fx_state()["token_requests"]
    try:
        th.start()
        wait_until(lambda: fx_state()["token_requests"] > before, 10, 0.02,
                   "the token request to reach the hung provider")
        # Answered beside the hung call (BesideHung), asked until eight were
        # judged or the hung call ended.
        beside = BesideHung(th, TIMEOUT_MS / 1000.0)
        while beside.judged < 8 and th.is_alive():
            r = beside.request("GET /api/kubectl/tokens",
                               lambda: w.get("/api/kubectl/tokens", key=k))
            eq(r.status, 200, "tokens while the provider hangs")
            time.sleep(0.05)
        beside.done()
        th.join(30)
    finally:
        fx_mode(token_mode="ok")
    r = res["r"]
    eq(r.status, 504, "hung token endpoint (%r)" % r)
    contains(r.get("error"), "Credential refresh failed", "hung provider")
    contains(r.get("error"), "did not answer", "hung provider")
    check(res["dt"] < TIMEOUT_MS / 1000.0 + 15, "the call took %.1fs" % res["dt"])
    t.note("provider timeout after %.2fs; other API calls at most %.0f ms"
           % (res["dt"], beside.worst * 1000))


# ---------------------------------------------------------------------------
# project management
# ---------------------------------------------------------------------------
def sa_user(w):
    if "sa_user" not in SHARED:
        uid, k = fresh_user(w)
        key, _, _ = make_key()
        r = connect_sa(w, key, user_key=k)
        eq(r.status, 200, "connect (%r)" % r)
        SHARED["sa_user"] = (uid, k, key)
    return SHARED["sa_user"]


@test
def project_enable_disable_root(t):
    w, _ = world()
    _, k = fresh_user(w)
    key, _, _ = make_key()
    eq(connect_sa(w, key, user_key=k).status, 200, "connect")
    r = w.post("/gcp/projects/proj-beta/disable", key=k)
    eq(r.status, 200, "disable (%r)" % r)
    eq({p["id"]: p["enabled"] for p in r.json["projects"]}["proj-beta"], False, "beta disabled")
    r = w.post("/gcp/projects/proj-beta/root", key=k)
    eq((r.status, r.error_code), (409, "GCP_PROJECT_DISABLED"), "root on a disabled project (%r)" % r)
    r = w.post("/gcp/projects/proj-gamma/root", key=k)
    eq((r.status, r.json.get("root")), (200, "proj-gamma"), "pin root (%r)" % r)
    r = w.post("/gcp/projects/proj-nope/enable", key=k)
    eq((r.status, r.error_code), (404, "PROJECT_NOT_FOUND"), "unknown project")
    r = w.get("/gcp/projects", key=k)
    eq(r.json["root"], "proj-gamma", "root persists")
    # disabling the root unpins it
    r = w.post("/gcp/projects/proj-gamma/disable", key=k)
    eq(r.json["root"], None, "disabling the root unpins it")
    r = w.post("/gcp/projects/proj-beta/enable", key=k)
    eq({p["id"]: p["enabled"] for p in r.json["projects"]}["proj-beta"], True, "beta enabled again")
    # re-uploading the key keeps the choices
    r = connect_sa(w, key, user_key=k)
    eq({p["id"]: p["enabled"] for p in r.json["projects"]}["proj-gamma"], False, "kept across re-upload")
    # another org sees nothing of it
    _, _, other = w.new_org()
    eq(w.get("/gcp/projects", key=other).error_code, "MISSING_CONNECTOR", "other org")
    # disconnect deletes row and secret
    r = w.delete("/api/connectors/gcp", key=k)
    eq((r.status, r.json.get("deleted")), (200, True), "delete (%r)" % r)
    eq(w.get("/gcp/projects", key=k).status, 404, "projects after delete")
    eq(w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]["connected"], False,
       "status after delete")


# ---------------------------------------------------------------------------
# OAuth (oauth2-mock-server playing Google)
# ---------------------------------------------------------------------------
def https_get(w, url, key=None, headers=None):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    return w.request("GET", path, key=key, auth=key is not None, headers=headers)


def start_login(w, k):
    r = w.frontend_get("/login", key=k)
    eq(r.status, 302, "/login (%r)" % r)
    loc = r.headers.get("location")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    return loc, q


def follow_authorize(loc):
    """The mock's /authorize auto-approves and 302s back to the redirect URI."""
    u = urllib.parse.urlsplit(loc)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("GET", u.path + "?" + u.query)
    r = c.getresponse()
    r.read()
    c.close()
    eq(r.status, 302, "mock authorize")
    return r.getheader("Location")


@test
def oauth_flow_end_to_end(t):
    w, oauth = world()
    uid, k = fresh_user(w)
    n_ev = len(oauth.events)
    loc, q = start_login(w, k)
    check(loc.startswith(oauth.issuer + "/authorize?"), "redirects to GCP_AUTH_URL", loc)
    eq(q["client_id"], [CLIENT_ID], "client_id")
    eq(q["redirect_uri"], [SHARED["redirect"]], "redirect_uri")
    eq(q["access_type"], ["offline"], "access_type")
    eq(q["response_type"], ["code"], "response_type")
    contains(q["scope"][0], "https://www.googleapis.com/auth/cloud-platform", "scope")
    eq(len(q["state"][0]), 43, "state is base64url of 32 bytes")
    back = follow_authorize(loc)
    check(back.startswith(SHARED["redirect"] + "?"), "mock redirects back", back)
    r = https_get(w, back)
    eq(r.status, 302, "/callback (%r)" % r)
    contains(r.headers.get("location"), "status=connected", "callback redirects to the frontend")
    s = w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]
    eq((s["connected"], s["auth"], s["account"]), (True, "oauth", "operator@example.com"), "status")
    oauth.wait_event(lambda e: e.get("event") == "token" and e.get("status") == 200, "issuing tokens", n_ev)
    tok_ev = [e for e in oauth.events if e.get("event") == "token" and e.get("status") == 200]
    eq(tok_ev[-1]["client_id"], CLIENT_ID, "client_id at the token endpoint")
    SHARED.setdefault("oauth_secrets", []).extend([tok_ev[-1]["refresh_token"], tok_ev[-1]["access_token"]])
    # replay the same callback: the state was used
    r = https_get(w, back)
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "replayed state (%r)" % r)
    contains(r.get("error"), "already used", "replayed state")
    SHARED["oauth_user"] = (uid, k)


@test
def oauth_state_failures(t):
    w, oauth = world()
    uid, k = fresh_user(w)
    # missing, malformed, unknown
    r = w.request("GET", "/callback?code=abc", auth=False)
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "missing state")
    contains(r.get("error"), "missing", "missing state")
    r = w.request("GET", "/callback?code=abc&state=short", auth=False)
    contains(r.get("error"), "malformed", "malformed state")
    r = w.request("GET", "/callback?code=abc&state=" + "A" * 43, auth=False)
    eq(r.status, 400, "unknown state")
    contains(r.get("error"), "unknown", "unknown state")
    # expired
    loc, q = start_login(w, k)
    w.testctl("expire-oauth-state", "--state", q["state"][0])
    back = follow_authorize(loc)
    r = https_get(w, back)
    eq(r.status, 400, "expired state (%r)" % r)
    contains(r.get("error"), "expired", "expired state")
    # issued to another user: the callback carries that user's credentials
    _, k2 = fresh_user(w)
    loc, q = start_login(w, k)
    back = follow_authorize(loc)
    r = https_get(w, back, key=k2)
    eq(r.status, 400, "state of another user (%r)" % r)
    contains(r.get("error"), "another user", "state of another user")
    # …and it is burnt: the rightful user cannot reuse it either
    r = https_get(w, back, key=k)
    contains(r.get("error"), "already used", "burnt state")
    # two callbacks at once with one state: exactly one gets past the state check
    loc, q = start_login(w, k)
    back = follow_authorize(loc)
    results = []
    ths = [threading.Thread(target=lambda: results.append(https_get(w, back))) for _ in range(2)]
    [x.start() for x in ths]
    [x.join(20) for x in ths]
    codes = sorted(r.status for r in results)
    eq(codes, [302, 400], "concurrent callbacks with one state (%r)" % results)
    s = w.get("/api/connectors/status", key=k2).json["connectors"]["gcp"]
    eq(s["connected"], False, "the other user got nothing")


@test
def oauth_redirect_uri_mismatch(t):
    w, oauth = world()
    _, k = fresh_user(w)
    oauth.op(op="register", redirect_uri="http://localhost:5080/callback")
    try:
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc))
    finally:
        oauth.op(op="register", redirect_uri=SHARED["redirect"])
    eq((r.status, r.error_code), (400, "REDIRECT_URI_MISMATCH"), "mismatch (%r)" % r)
    contains(r.get("error"), "Redirect URI mismatch", "mismatch")
    contains(r.get("error"), SHARED["redirect"], "names the URI to register")


@test
def oauth_without_the_cloud_platform_scope_is_refused(t):
    """Google lets the user untick scopes on the consent screen: a grant without
    cloud-platform was stored as connected, and every command then failed 403."""
    w, oauth = world()
    _, k = fresh_user(w)
    n_ev = len(oauth.events)
    oauth.op(op="untick", scopes=["https://www.googleapis.com/auth/cloud-platform"])
    try:
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc))
    finally:
        oauth.op(op="untick", scopes=[])
    eq((r.status, r.error_code), (400, "GCP_SCOPE_NOT_GRANTED"), "scope unticked (%r)" % r)
    contains(r.get("error"), "Cloud Platform", "tells the user what to grant")
    contains(r.get("error"), "https://www.googleapis.com/auth/cloud-platform", "names the scope")
    tok = oauth.wait_event(lambda e: e.get("event") == "token" and e.get("status") == 200,
                           "the code exchange", n_ev)
    s = w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]
    eq(s["connected"], False, "nothing stored")
    check(tok["refresh_token"].encode() not in r.body, "refresh token not in the answer")
    # secrets_never_leak looks for it in the logs and the database
    SHARED.setdefault("oauth_secrets", []).extend([tok["refresh_token"], tok["access_token"]])


def refused_callback(w, oauth, k, n_ev, **ops):
    """A sign-in that ends refused while the mock is set by ops (restored
    after): the callback's answer and the token answer Google gave."""
    for op, v in ops.items():
        oauth.op(op=op, **v)
    try:
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc))
    finally:
        oauth.op(op="untick", scopes=[])
        oauth.op(op="omit_refresh", on=False)
        oauth.op(op="revoke_status", status=200)
    issued = oauth.wait_event(lambda e: e.get("event") == "token" and e.get("status") == 200
                              and e.get("grant_type") == "authorization_code", "the code exchange", n_ev)
    SHARED.setdefault("oauth_secrets", []).extend(
        x for x in (issued.get("refresh_token"), issued.get("access_token")) if x)
    return r, issued


@test
def oauth_refused_grant_is_revoked_at_google(t):
    """A callback that refuses the connection after the code exchange (a scope
    unticked, no refresh token) dropped the tokens here while the grant stayed
    live at Google: the user saw "refused" and Aurora still held access.  The
    grant is now revoked at GCP_REVOKE_URL with the token Google issued; a
    revocation that fails is logged and the user's answer stays the same.  A
    refused reconnect of the account already connected keeps the grant: at
    Google it is the connection's own, which a revocation would end."""
    w, oauth = world()
    uid, k = fresh_user(w)
    cloud = ["https://www.googleapis.com/auth/cloud-platform"]
    n_ev = len(oauth.events)
    r, issued = refused_callback(w, oauth, k, n_ev, untick={"scopes": cloud})
    eq((r.status, r.error_code), (400, "GCP_SCOPE_NOT_GRANTED"), "scope unticked (%r)" % r)
    rev = oauth.wait_event(lambda e: e.get("event") == "revoke", "the refused grant's revocation", n_ev)
    eq((rev["token"], rev["token_type_hint"]), (issued["refresh_token"], "refresh_token"),
       "the refresh token Google issued is revoked")
    # no refresh token: the access token is what names the grant
    n_ev = len(oauth.events)
    r, issued = refused_callback(w, oauth, k, n_ev, omit_refresh={"on": True})
    eq((r.status, r.error_code), (502, "OAUTH_EXCHANGE_FAILED"), "no refresh token (%r)" % r)
    check(issued.get("refresh_token") is None, "the mock left the refresh token out", issued)
    rev = oauth.wait_event(lambda e: e.get("event") == "revoke", "the access token's revocation", n_ev)
    eq((rev["token"], rev["token_type_hint"]), (issued["access_token"], "access_token"),
       "the access token Google issued is revoked")
    # the revocation endpoint fails: logged, the answer unchanged
    n_ev = len(oauth.events)
    r, issued = refused_callback(w, oauth, k, n_ev, untick={"scopes": cloud},
                                 revoke_status={"status": 503})
    eq((r.status, r.error_code), (400, "GCP_SCOPE_NOT_GRANTED"), "revocation failing (%r)" % r)
    rev = oauth.wait_event(lambda e: e.get("event") == "revoke", "the failed revocation", n_ev)
    eq((rev["token"], rev["status"]), (issued["refresh_token"], 503), "revocation attempted")
    wait_until(lambda: "could not revoke the refused grant" in w.server.log_text(), 10, 0.05,
               "the failed revocation logged")
    eq(w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]["connected"], False,
       "nothing connected")
    # connected, then a refused reconnect of the same Google account: no revocation
    n_ev = len(oauth.events)
    loc, _ = start_login(w, k)
    eq(https_get(w, follow_authorize(loc)).status, 302, "connect")
    first = oauth.wait_event(lambda e: e.get("event") == "token" and e.get("status") == 200
                             and e.get("grant_type") == "authorization_code", "the code exchange", n_ev)
    SHARED["oauth_secrets"].extend([first["refresh_token"], first["access_token"]])
    n_ev = len(oauth.events)
    r, _ = refused_callback(w, oauth, k, n_ev, untick={"scopes": cloud})
    eq((r.status, r.error_code), (400, "GCP_SCOPE_NOT_GRANTED"), "refused reconnect (%r)" % r)
    eq(w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]["connected"], True,
       "the connection in place stays")
    eq(w.delete("/api/connectors/gcp", key=k).status, 200, "disconnect")
    rev = oauth.wait_event(lambda e: e.get("event") == "revoke", "a revocation", n_ev)
    eq(rev["token"], first["refresh_token"],
       "the first revocation after the refused reconnect is the disconnect's")


def console_cookie(w, k):
    """Signs a browser in to the console with key k: its Cookie header."""
    r = w.request("POST", "/api/console/session", {"api_key": k}, auth=False)
    eq(r.status, 201, "console sign-in (%r)" % r)
    sid = re.match(r"__Host-aurora_session=([A-Za-z0-9_-]{43});", r.headers.get("set-cookie", ""))
    check(sid, "console session cookie", r.headers)
    return "__Host-aurora_session=" + sid.group(1)


BINDING_RE = re.compile(r"^(__Host-aurora_oauth_[0-9a-f]{16})=([A-Za-z0-9_-]{43}); Path=/; Max-Age=600;"
                        r" HttpOnly; SameSite=Lax; Secure$")


def console_login(w, session):
    """The console's popup: GET /login with the session cookie only.  The
    provider's URL and the flow's binding cookie ("name=nonce")."""
    r = w.request("GET", "/login", auth=False, headers={"Cookie": session})
    eq(r.status, 302, "/login from the console (%r)" % r)
    m = BINDING_RE.match(r.headers.get("set-cookie", ""))
    check(m, "the login answer ties the flow to this browser", r.headers)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)["state"][0]
    check(m.group(1)[20:] == hashlib.sha256(state.encode()).hexdigest()[:16],
          "the cookie is named after the state's hash", m.group(1))
    check(m.group(2) != state, "the nonce is not the state")
    return r.headers["location"], "%s=%s" % (m.group(1), m.group(2))


def gcp_connected(w, k):
    return w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]["connected"]


@test
def oauth_from_the_console_is_tied_to_its_browser(t):
    """Login CSRF: a user starts a flow in the console and hands the
    provider's URL to a victim, whose browser finishes it without the flow's
    cookie.  Refused, the state spent, nothing stored; the browser that
    started a flow finishes it."""
    w, oauth = world()
    uid, k = fresh_user(w)
    session = console_cookie(w, k)
    _, victim_key = fresh_user(w)
    victim_session = console_cookie(w, victim_key)
    for who, cookie in (("the victim's own console session", victim_session), ("no cookie", None)):
        loc, binding = console_login(w, session)
        back = follow_authorize(loc)
        r = https_get(w, back, headers={"Cookie": cookie} if cookie else None)
        eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "%s (%r)" % (who, r))
        contains(r.get("error"), "another browser", who)
        contains(r.headers.get("set-cookie", ""), "Max-Age=0", "the flow's cookie is cleared")
    eq(gcp_connected(w, k), False, "nothing stored for the user who started it")
    eq(gcp_connected(w, victim_key), False, "nor for the victim")
    r = https_get(w, back, headers={"Cookie": session + "; " + binding})
    contains(r.get("error"), "already used", "the refused flow is spent, even for its own browser")
    # another flow's cookie does not finish this one; its value under this flow's name neither
    loc_a, binding_a = console_login(w, session)
    loc_b, binding_b = console_login(w, session)
    r = https_get(w, follow_authorize(loc_a), headers={"Cookie": binding_b})
    contains(r.get("error"), "another browser", "flow B's cookie on flow A's callback")
    loc_a, binding_a = console_login(w, session)
    forged = binding_a.split("=")[0] + "=" + binding_b.split("=")[1]
    r = https_get(w, follow_authorize(loc_a), headers={"Cookie": forged})
    contains(r.get("error"), "another browser", "flow B's nonce under flow A's name")
    # the browser that started it: connected, and flow B still works beside it
    loc, binding = console_login(w, session)
    r = https_get(w, follow_authorize(loc), headers={"Cookie": "theme=dark; %s; %s" % (session, binding)})
    eq(r.status, 302, "the starting browser's callback (%r)" % r)
    contains(r.headers.get("location"), "status=connected", "connected")
    check(r.headers.get("set-cookie", "").startswith(binding.split("=")[0] + "=; Path=/; Max-Age=0;"),
          "the flow's cookie is cleared", r.headers)
    eq(gcp_connected(w, k), True, "connected for the user who started it")
    r = https_get(w, follow_authorize(loc_b), headers={"Cookie": binding_b})
    eq(r.status, 302, "flow B, started before, still finishes in its browser (%r)" % r)


@test
def oauth_from_the_console_ends_with_its_session(t):
    """A flow started from a console session finishes only while that
    session lives: the provider's redirect carries no credentials, so a flow
    started before sign-out or before the key was revoked still stored the
    connector and its secret (found in review).  Refused, nothing stored;
    a flow started with the key, or by the frontend, is unchanged."""
    w, oauth = world()
    uid, k = fresh_user(w)
    r = w.request("POST", "/api/console/session", {"api_key": k}, auth=False)
    eq(r.status, 201, "console sign-in (%r)" % r)
    sid = re.match(r"__Host-aurora_session=([A-Za-z0-9_-]{43});", r.headers["set-cookie"]).group(1)
    session, csrf = "__Host-aurora_session=" + sid, r.get("csrf_token")
    loc, binding = console_login(w, session)
    back = follow_authorize(loc)
    # a second flow of the same browser, and one the frontend started: not the session's
    loc2, binding2 = console_login(w, session)
    back2 = follow_authorize(loc2)
    floc, _ = start_login(w, k)
    fback = follow_authorize(floc)
    r = w.request("DELETE", "/api/console/session", auth=False,
                  headers={"Cookie": session, "X-CSRF-Token": csrf})
    eq(r.status, 204, "sign-out (%r)" % r)
    r = https_get(w, back, headers={"Cookie": "%s; %s" % (session, binding)})
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "after sign-out (%r)" % r)
    contains(r.get("error"), "console session", "says why")
    r = https_get(w, back2, headers={"Cookie": binding2})
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "the other flow too (%r)" % r)
    eq(gcp_connected(w, k), False, "nothing stored")
    r = https_get(w, fback)
    eq(r.status, 302, "the frontend's flow is not the session's (%r)" % r)
    eq(gcp_connected(w, k), True, "connected by the frontend's flow")

    # revoked: the flows of that key's sessions end with it
    uid, k = fresh_user(w)
    r = w.request("POST", "/api/console/session", {"api_key": k}, auth=False)
    eq(r.status, 201, "console sign-in (%r)" % r)
    key_id = r.get("key_id")
    session = "__Host-aurora_session=" + re.match(
        r"__Host-aurora_session=([A-Za-z0-9_-]{43});", r.headers["set-cookie"]).group(1)
    loc, binding = console_login(w, session)
    back = follow_authorize(loc)
    w.admin("revoke-key", "--id", key_id)
    r = https_get(w, back, headers={"Cookie": binding})
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "after revocation (%r)" % r)
    contains(r.get("error"), "console session", "says why")
    k2 = w.admin("create-key", "--org", w.org_id, "--user", uid)["api_key"]
    eq(gcp_connected(w, k2), False, "nothing stored for the user")


@test
def oauth_started_with_an_api_key_needs_the_key_at_the_callback(t):
    """The bypass of the browser binding: a console user starts the flow with
    their API key instead of the cookie (no browser is tied to it) and hands
    the provider's URL to a victim.  Refused unless the callback carries that
    user's credentials."""
    w, oauth = world()
    uid, k = fresh_user(w)
    _, victim_key = fresh_user(w)
    victim_session = console_cookie(w, victim_key)
    r = w.get("/login", key=k)
    eq(r.status, 302, "/login with an API key (%r)" % r)
    check("set-cookie" not in r.headers, "no browser to tie it to", r.headers)
    r = https_get(w, follow_authorize(r.headers["location"]), headers={"Cookie": victim_session})
    eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "the victim's browser (%r)" % r)
    contains(r.get("error"), "started with an API key", "says why")
    eq(gcp_connected(w, k), False, "nothing stored for the user who started it")
    eq(gcp_connected(w, victim_key), False, "nor for the victim")
    r = w.get("/login", key=k)
    r = https_get(w, follow_authorize(r.headers["location"]), key=k)
    eq(r.status, 302, "the key's own callback (%r)" % r)
    eq(gcp_connected(w, k), True, "connected")
    serving = w.get("/health", auth=False)
    eq(serving.status, 200, "still serving")


@test
def oauth_unbound_callbacks_refused_when_required(t):
    """AURORA_OAUTH_REQUIRE_BOUND_CALLBACK=true: a flow started without a
    console session (API key, the frontend's server-side call) finishes only
    in a callback that carries its user's credentials."""
    w0, oauth = world()
    env = dict(w0.extra_env)
    w = t.world("bound", start=False)
    redirect = "https://127.0.0.1:%d/callback" % w.port
    env.update({"GCP_REDIRECT_URI": redirect, "AURORA_OAUTH_REQUIRE_BOUND_CALLBACK": "true"})
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    oauth.op(op="register", redirect_uri=redirect)
    try:
        uid, k = w.new_user()
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc))
        eq((r.status, r.error_code), (400, "OAUTH_STATE_INVALID"), "unbound, no credentials (%r)" % r)
        contains(r.get("error"), "AURORA_OAUTH_REQUIRE_BOUND_CALLBACK", "says which setting")
        eq(gcp_connected(w, k), False, "nothing stored")
        _, k2 = w.new_user()
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc), key=k2)
        contains(r.get("error"), "another user", "another user's credentials")
        loc, _ = start_login(w, k)
        r = https_get(w, follow_authorize(loc), key=k)
        eq(r.status, 302, "the user's own credentials with the callback (%r)" % r)
        eq(gcp_connected(w, k), True, "connected")
        loc, binding = console_login(w, console_cookie(w, k2))
        r = https_get(w, follow_authorize(loc), headers={"Cookie": binding})
        eq(r.status, 302, "a console flow in its browser (%r)" % r)
        eq(gcp_connected(w, k2), True, "connected from the console")
    finally:
        oauth.op(op="register", redirect_uri=SHARED["redirect"])


@test
def oauth_without_client_id_is_a_clear_error(t):
    w = t.world("noclient")
    r = w.frontend_get("/login")
    eq((r.status, r.error_code), (503, "OAUTH_NOT_CONFIGURED"), "no CLIENT_ID (%r)" % r)
    contains(r.get("error"), "CLIENT_ID", "no CLIENT_ID")


# ---------------------------------------------------------------------------
# cloud_exec through the tunnel (v2 test agent)
# ---------------------------------------------------------------------------
def exec_env(w):
    """SA-connected user + a v2 agent on a cluster of the bootstrap org."""
    if "exec" not in SHARED:
        uid, k, key = sa_user(w)
        tok = w.create_token("it-gcp-v2", key=k)
        a = V2Agent(w, tok["token"], w.t)
        w.wait_connection(tok["cluster_id"], key=k)
        SHARED["exec"] = (uid, k, key, tok, a)
    return SHARED["exec"]


def cloud_exec(w, k, **body):
    return w.post("/api/cloud_exec", body, key=k)


@test
def cloud_exec_injects_project_and_token(t):
    w, _ = world()
    uid, k, key, tok, a = exec_env(w)
    cid = tok["cluster_id"]
    cmd = "gcloud compute instances list --filter='name~a;b|c' $(id) `uname` && echo x"
    n0 = len(a.execs())
    r = cloud_exec(w, k, provider="gcp", cluster_id=cid, command=cmd)
    eq(r.status, 200, "cloud_exec (%r)" % r)
    eq((r.get("success"), r.get("return_code")), (True, 0), "result")
    contains(r.get("output"), "ran gcloud", "output streamed back")
    ex = wait_until(lambda: a.execs()[n0:] and a.execs()[-1], 15, 0.02, "exec frame")
    eq((ex["kind"], ex["program"]), ("cloud_exec", "gcloud"), "kind/program")
    eq(ex["argv"], ["compute", "instances", "list", "--filter=name~a;b|c", "$(id)", "`uname`", "&&",
                    "echo", "x", "--project=proj-alpha"], "literal argv + default project")
    env = ex["env"]
    check(env["CLOUDSDK_AUTH_ACCESS_TOKEN"] in fx_state()["tokens"], "token minted by the fixture", env)
    eq(env["CLOUDSDK_CORE_PROJECT"], "proj-alpha", "CLOUDSDK_CORE_PROJECT")
    eq(env.get("CLOUDSDK_CORE_DISABLE_PROMPTS"), "1", "prompts disabled")
    SHARED.setdefault("exec_tokens", []).append(env["CLOUDSDK_AUTH_ACCESS_TOKEN"])
    # cached: a second command mints no new token
    before = fx_state()["token_requests"]
    r = cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["gcloud", "projects", "list"])
    eq(r.status, 200, "second cloud_exec")
    eq(fx_state()["token_requests"], before, "token reused from the cache")
    eq(a.wait_execs(n0 + 2)[-1]["argv"], ["projects", "list", "--project=proj-alpha"], "leading program stripped")
    # the audit row has the argv and no token
    db = os.path.join(w.data, "aurora.db")
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
    rows = wait_until(lambda: con.execute("SELECT kind, argv_json FROM audit_log WHERE kind='cloud_exec'").fetchall(),
                      5, 0.05, "audit rows")
    con.close()
    check(any('"$(id)"' in r[1] and r[1].startswith('["gcloud"') for r in rows), "audit argv", rows)
    check(not any(env["CLOUDSDK_AUTH_ACCESS_TOKEN"] in r[1] for r in rows), "token in the audit", rows)


@test
def cloud_exec_project_lookup_order_and_disabled(t):
    w, _ = world()
    uid, k, key, tok, a = exec_env(w)
    cid = tok["cluster_id"]

    def argv_of(**extra):
        n = len(a.execs())
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["compute", "zones", "list"], **extra)
        eq(r.status, 200, "cloud_exec %r (%r)" % (extra, r))
        return a.wait_execs(n + 1)[-1]

    try:
        eq(w.post("/gcp/projects/proj-gamma/root", key=k).status, 200, "pin root")
        ex = argv_of()
        eq(ex["argv"][-1], "--project=proj-gamma", "root wins over the key's project")
        eq(ex["env"]["CLOUDSDK_CORE_PROJECT"], "proj-gamma", "env project")
        ex = argv_of(project="proj-beta")
        eq(ex["argv"][-1], "--project=proj-beta", "per-call override wins over root")
        n = len(a.execs())
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid,
                       args=["compute", "zones", "list", "--project", "proj-delta"])
        eq(r.status, 200, "explicit --project")
        eq(a.wait_execs(n + 1)[-1]["argv"], ["compute", "zones", "list", "--project", "proj-delta"],
           "not injected twice")
        # disabled targets are refused
        eq(w.post("/gcp/projects/proj-beta/disable", key=k).status, 200, "disable beta")
        n = len(a.execs())
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["compute", "zones", "list"], project="proj-beta")
        eq((r.status, r.error_code), (403, "GCP_PROJECT_DISABLED"), "override to a disabled project (%r)" % r)
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid, command="compute zones list --project=proj-beta")
        eq((r.status, r.error_code), (403, "GCP_PROJECT_DISABLED"), "--project= a disabled project")
        # the key's default project disabled, no root: refused, with a hint to pin one
        eq(w.post("/gcp/projects/proj-gamma/disable", key=k).json["root"], None, "root unpinned")
        eq(w.post("/gcp/projects/proj-alpha/disable", key=k).status, 200, "disable default")
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["compute", "zones", "list"])
        eq((r.status, r.error_code), (403, "GCP_PROJECT_DISABLED"), "disabled default, no root (%r)" % r)
        contains(r.get("error"), "pin", "tells the user to pin a root")
        eq(len(a.execs()), n, "nothing reached the agent")
        eq(w.post("/gcp/projects/proj-delta/root", key=k).status, 200, "pin delta")
        eq(argv_of()["argv"][-1], "--project=proj-delta", "lands on the pinned root")
    finally:
        for p in ("proj-alpha", "proj-beta", "proj-gamma"):
            w.post("/gcp/projects/%s/enable" % p, key=k)
        r = w.get("/gcp/projects", key=k)
        if r.json.get("root"):
            # unpin by disabling/enabling the root
            w.post("/gcp/projects/%s/disable" % r.json["root"], key=k)
            w.post("/gcp/projects/%s/enable" % r.json["root"], key=k)


@test
def cloud_exec_checks_every_project_selector_in_argv(t):
    """Issue 8, item 3: a disabled project was reachable by repeating --project
    (gcloud keeps the last), by a positional id, --billing-project, a project
    number or a projects/<id> resource name.  Each is refused before anything
    reaches the agent; ordinary commands still run."""
    w, _ = world()
    uid, k, key, tok, a = exec_env(w)
    cid = tok["cluster_id"]

    def run(args, **extra):
        return cloud_exec(w, k, provider="gcp", cluster_id=cid, args=args, **extra)

    eq(w.post("/gcp/projects/proj-beta/disable", key=k).status, 200, "disable beta")
    try:
        n = len(a.execs())
        refused = [
            (["compute", "zones", "list", "--project=proj-alpha", "--project=proj-beta"], 400, "CLOUD_ARG_AMBIGUOUS"),
            (["--project", "proj-alpha", "compute", "zones", "list", "--project", "proj-beta"], 400,
             "CLOUD_ARG_AMBIGUOUS"),
            (["projects", "describe", "proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            (["projects", "get-iam-policy", "proj-beta", "--format", "json"], 403, "GCP_PROJECT_DISABLED"),
            (["alpha", "projects", "describe", "--", "proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            (["--project=proj-alpha", "projects", "add-iam-policy-binding", "proj-beta",
              "--member=user:x@example.com", "--role=roles/owner"], 403, "GCP_PROJECT_DISABLED"),
            (["billing", "projects", "unlink", "proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            # the positional shares args.project with --project: gcloud 528 enables proj-beta
            (["--project=proj-alpha", "compute", "shared-vpc", "enable", "proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            (["compute", "shared-vpc", "associated-projects", "add", "proj-gamma", "--host-project=proj-beta"], 403,
             "GCP_PROJECT_DISABLED"),
            (["compute", "instances", "create", "vm", "--image-project=proj-beta", "--image=i"], 403,
             "GCP_PROJECT_DISABLED"),
            (["compute", "disks", "create", "d", "--kms-project", "100000000002", "--kms-key=k"], 403,
             "GCP_PROJECT_DISABLED"),
            (["compute", "zones", "list", "--billing-project=proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            (["compute", "zones", "list", "--billing-project", "proj-beta"], 403, "GCP_PROJECT_DISABLED"),
            (["compute", "zones", "list", "--project=100000000002"], 403, "GCP_PROJECT_DISABLED"),
            (["projects", "describe", "100000000002"], 403, "GCP_PROJECT_DISABLED"),
            (["pubsub", "topics", "publish", "projects/proj-beta/topics/t", "--message", "m"], 403,
             "GCP_PROJECT_DISABLED"),
            (["asset", "search-all-resources", "--scope=projects/100000000002"], 403, "GCP_PROJECT_DISABLED"),
            (["compute", "instances", "delete",
              "https://www.googleapis.com/compute/v1/projects%2Fproj-beta/zones/z/instances/i"], 403,
             "GCP_PROJECT_DISABLED"),
            (["iam", "service-accounts", "keys", "list",
              "--iam-account=robot@proj-beta.iam.gserviceaccount.com"], 403, "GCP_PROJECT_DISABLED"),
            (["compute", "zones", "list", "--project=proj-unknown"], 403, "GCP_PROJECT_NOT_CONNECTED"),
            (["projects", "describe", "proj-unknown"], 403, "GCP_PROJECT_NOT_CONNECTED"),
            (["compute", "zones", "list", "--flags-file=/tmp/flags.yaml"], 403, "CLOUD_ARG_REFUSED"),
            (["compute", "zones", "list", "--impersonate-service-account", "x@p.iam.gserviceaccount.com"], 403,
             "CLOUD_ARG_REFUSED"),
            (["compute", "zones", "list", "--account=other@example.com"], 403, "CLOUD_ARG_REFUSED"),
            (["compute", "zones", "list", "--access-token-file=/var/run/secrets/token"], 403, "CLOUD_ARG_REFUSED"),
            (["auth", "activate-service-account", "--key-file=k.json"], 403, "CLOUD_ARG_REFUSED"),
            # the token sent to a host the command names (gcloud 528 --log-http)
            (["compute", "zones", "list", "--universe-domain=evil.example"], 403, "CLOUD_ARG_REFUSED"),
            (["ai", "endpoints", "list", "--region=evil.example/x"], 403, "CLOUD_ARG_REFUSED"),
            (["ai", "endpoints", "describe", "projects/proj-alpha/locations/evil.example?/endpoints/e"], 403,
             "CLOUD_ARG_REFUSED"),
            (["compute", "zones", "list", "--project"], 400, "BAD_REQUEST"),
            # a local ssh client whose options run a local command with the token
            (["compute", "ssh", "vm", "--ssh-flag=-oProxyCommand=sh -c id"], 403, "CLOUD_ARG_REFUSED"),
            (["beta", "compute", "ssh", "vm", "--", "-oProxyCommand=sh -c id"], 403, "CLOUD_ARG_REFUSED"),
            (["compute", "tpus", "tpu-vm", "scp", "f", "t:f"], 403, "CLOUD_ARG_REFUSED"),
        ]
        for args, status, code in refused:
            r = run(args)
            eq((r.status, r.error_code), (status, code), "%s (%r)" % (" ".join(args), r))
        r = run(["compute", "zones", "list"], project="proj-unknown")
        eq((r.status, r.error_code), (403, "GCP_PROJECT_NOT_CONNECTED"), "request project not connected (%r)" % r)
        eq(len(a.execs()), n, "nothing reached the agent")
        # the refusals are audited
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=5)
        wait_until(lambda: any("proj-beta/topics" in x[0] for x in con.execute(
            "SELECT argv_json FROM audit_log WHERE kind='cloud_exec' AND outcome='refused'").fetchall()),
            5, 0.05, "the refused command in the audit log")
        con.close()

        # ordinary commands, and references to projects outside the connection, still run
        ok = [
            (["projects", "describe", "proj-alpha"], ["projects", "describe", "proj-alpha", "--project=proj-alpha"]),
            (["projects", "describe", "100000000003"], None),
            (["compute", "zones", "list", "--project", "proj-gamma"], None),
            (["compute", "zones", "list", "--billing-project=proj-gamma", "--project=proj-gamma"], None),
            (["compute", "images", "describe", "projects/debian-cloud/global/images/debian-12"], None),
            (["compute", "instances", "create", "vm", "--image-project=debian-cloud", "--format=json"], None),
            (["projects", "list", "--filter=lifecycleState:ACTIVE"], None),
            (["ai", "endpoints", "list", "--region=us-central1"], None),
            (["dataproc", "jobs", "submit", "pyspark", "job.py", "--cluster=c", "--",
              "--project=proj-beta"], None),
        ]
        for args, want in ok:
            r = run(args)
            eq(r.status, 200, "%s (%r)" % (" ".join(args), r))
            ex = wait_until(lambda: len(a.execs()) > n and a.execs()[-1], 15, 0.02, "exec frame")
            n = len(a.execs())
            if want:
                eq(ex["argv"], want, "argv")
        eq(a.execs()[-1]["argv"], ["dataproc", "jobs", "submit", "pyspark", "job.py", "--cluster=c",
                                   "--project=proj-alpha", "--", "--project=proj-beta"],
           "--project injected before the job's --")
        eq(w.get("/health").status, 200, "server still serving")
    finally:
        w.post("/gcp/projects/proj-beta/enable", key=k)


@test
def cloud_exec_errors(t):
    w, _ = world()
    uid, k, key, tok, a = exec_env(w)
    cid = tok["cluster_id"]
    r = cloud_exec(w, k, provider="nosuch", cluster_id=cid, command="x")
    eq((r.status, r.error_code), (400, "UNKNOWN_PROVIDER"), "unknown provider (%r)" % r)
    contains(r.get("error"), "unknown provider", "unknown provider")
    r = cloud_exec(w, k, provider="aws", cluster_id=cid, command="aws s3 ls")
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "aws not connected (%r)" % r)
    eq(r.get("error"), "aws is not connected", "message")
    _, k2 = fresh_user(w)
    r = cloud_exec(w, k2, provider="gcp", cluster_id=cid, command="projects list")
    eq((r.status, r.error_code), (404, "MISSING_CONNECTOR"), "gcp not connected for this user")
    r = cloud_exec(w, k, provider="gcp", cluster_id="cluster-00000000deadbeef", command="projects list")
    eq((r.status, r.error_code), (404, "CLUSTER_NOT_FOUND"), "unknown cluster")
    _, _, other = w.new_org()
    r = cloud_exec(w, other, provider="gcp", cluster_id=cid, command="projects list")
    eq(r.status, 404, "another org's cluster")
    r = cloud_exec(w, k, provider="gcp", cluster_id=cid, command="gcloud")
    eq(r.status, 400, "no arguments")
    r = cloud_exec(w, k, provider="gcp", cluster_id=cid, command="'unterminated")
    eq(r.status, 400, "bad quoting")
    # a legacy agent cannot run cloud_exec
    lt = w.create_token("it-gcp-legacy", key=k)
    la = w.legacy_agent(lt["token"], name="legacy-gcp")
    la.wait_event("connected", 30)
    w.wait_connection(lt["cluster_id"], key=k)
    r = cloud_exec(w, k, provider="gcp", cluster_id=lt["cluster_id"], command="projects list")
    eq((r.status, r.error_code), (409, "AGENT_UNSUPPORTED"), "legacy agent (%r)" % r)
    check(not la.has_event("command"), "the legacy agent received nothing")


@test
def cloud_exec_with_oauth_connection(t):
    """An OAuth connection mints access tokens with the refresh token (refresh grant)."""
    w, oauth = world()
    uid, k = fresh_user(w)
    loc, _ = start_login(w, k)
    eq(https_get(w, follow_authorize(loc)).status, 302, "connect")
    _, _, _, tok, a = exec_env(w)  # a cluster of the same org
    r = cloud_exec(w, k, provider="gcp", cluster_id=tok["cluster_id"], command="projects list")
    # the mock's tokens open no Cloud Resource Manager: no project known, none pinned
    eq((r.status, r.error_code), (400, "GCP_NO_PROJECT"), "no project (%r)" % r)
    n = len(a.execs())
    r = cloud_exec(w, k, provider="gcp", cluster_id=tok["cluster_id"], command="projects list",
                   project="proj-oauth")
    eq(r.status, 200, "with a project (%r)" % r)
    ex = a.wait_execs(n + 1)[-1]
    minted = ex["env"]["CLOUDSDK_AUTH_ACCESS_TOKEN"]
    grant = oauth.wait_event(lambda e: e.get("event") == "token" and e.get("grant_type") == "refresh_token"
                             and e.get("access_token") == minted, "the refresh grant of the exec's token")
    eq(grant["status"], 200, "refresh grant at the mock")
    eq(ex["argv"][-1], "--project=proj-oauth", "project")
    SHARED.setdefault("oauth_secrets", []).append(grant["access_token"])
    # no project list to check --project against: a mismatch with the
    # request's project echoes it printable and bounded (found in review)
    weird = "\x1b]0;owned\x07" + "\u00e9" * 200
    r = cloud_exec(w, k, provider="gcp", cluster_id=tok["cluster_id"], project="proj-oauth",
                   args=["projects", "list", "--project=" + weird])
    eq((r.status, r.error_code), (400, "BAD_REQUEST"), "project mismatch (%r)" % r)
    err = r.get("error")
    contains(err, "--project=?]0;owned?", "the value, printable")
    check(not any(ord(c) < 0x20 or ord(c) > 0x7e for c in err), "only printable ASCII", err)
    check(len(err) < 200, "bounded", err)


@test
def a_token_of_the_replaced_key_is_not_cached_for_the_new_one(t):
    """A command in flight while the user uploads another key (a different
    service account) must not leave its token, minted with the old key, in the
    cache for the new connection.  The cache was keyed on the row's
    updated_at in whole seconds: a key replaced within the second of the
    previous upload kept serving the old account's token (found in review).
    The race needs both uploads in one second; the test makes it so by giving
    B's row A's updated_at (what the row holds when B comes within that
    second), rather than waiting for the clock to line up."""
    w, _ = world()
    _, _, _, tok, a = exec_env(w)
    cid = tok["cluster_id"]
    uid, k = fresh_user(w)
    key_a, _, _ = make_key()
    key_b, _, _ = make_key()
    db = os.path.join(w.data, "aurora.db")

    def version():
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            return con.execute("SELECT updated_at FROM connectors WHERE connector='gcp' AND user_id=?",
                               (uid,)).fetchone()[0]
        finally:
            con.close()

    def iss(assertion):
        p = assertion.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["iss"]

    try:
        # A's connect token lives 5 s, within the cache's margin: not cached,
        # so the command below mints one with A's key
        fx_mode(expires_in=5, hold_iss=None, release=True)
        eq(connect_sa(w, key_a, user_key=k).status, 200, "connect A")
        va = version()
        held = fx_state()["held"]
        fx_mode(expires_in=3599, hold_iss=key_a["client_email"])
        n = len(a.execs())
        res = {}
        th = threading.Thread(target=lambda: res.update(
            r=cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["projects", "list"])))
        th.start()
        wait_until(lambda: fx_state()["held"] > held, 15, 0.005, "the command's token request held")
        eq(connect_sa(w, key_b, user_key=k).status, 200, "connect B while the command mints")
        # B's upload within A's second: the row's updated_at is A's again
        con = sqlite3.connect(db, timeout=10)
        try:
            con.execute("UPDATE connectors SET updated_at = ? WHERE connector='gcp' AND user_id=?",
                        (va, uid))
            con.commit()
        finally:
            con.close()
        fx_mode(hold_iss=None, release=True)
        th.join(30)
        eq(res["r"].status, 200, "the command in flight (%r)" % res.get("r"))
        tok_x = a.wait_execs(n + 1)[-1]["env"]["CLOUDSDK_AUTH_ACCESS_TOKEN"]
        r = cloud_exec(w, k, provider="gcp", cluster_id=cid, args=["projects", "list"])
        eq(r.status, 200, "a command after B's upload (%r)" % r)
        tok_y = a.wait_execs(n + 2)[-1]["env"]["CLOUDSDK_AUTH_ACCESS_TOKEN"]
        check(tok_y != tok_x, "the next command got the token minted with the replaced key A")
        eq(iss(fx_state()["assertions"][-1]), key_b["client_email"], "the last token minted with B")
    finally:
        fx_mode(expires_in=3599, hold_iss=None, release=True)


@test
def oauth_disconnect_revokes_the_grant(t):
    """DELETE /api/connectors/gcp revokes the OAuth grant at GCP_REVOKE_URL (the
    mock's RFC 7009 endpoint), then deletes the refresh token and the row."""
    w, oauth = world()
    uid, k = fresh_user(w)
    n_ev = len(oauth.events)
    loc, _ = start_login(w, k)
    eq(https_get(w, follow_authorize(loc)).status, 302, "connect")
    issued = oauth.wait_event(lambda e: e.get("event") == "token" and e.get("status") == 200
                              and e.get("grant_type") == "authorization_code", "the code exchange", n_ev)
    r = w.delete("/api/connectors/gcp", key=k)
    eq((r.status, r.get("deleted")), (200, True), "disconnect (%r)" % r)
    rev = oauth.wait_event(lambda e: e.get("event") == "revoke", "the revocation", n_ev)
    eq((rev["token"], rev["token_type_hint"]), (issued["refresh_token"], "refresh_token"),
       "the refresh token revoked")
    eq(w.get("/api/connectors/status", key=k).json["connectors"]["gcp"]["connected"], False,
       "disconnected")
    SHARED.setdefault("oauth_secrets", []).extend([issued["refresh_token"], issued["access_token"]])


@test
def cloud_exec_streams_like_kubectl(t):
    w, _ = world()
    uid, k, key, tok, a = exec_env(w)
    conn = http.client.HTTPSConnection("127.0.0.1", w.port, context=w.ctx, timeout=20)
    conn.request("POST", "/api/cloud_exec", json.dumps({"provider": "gcp", "cluster_id": tok["cluster_id"],
                                                        "command": "projects list"}),
                 {"Authorization": "Bearer " + k, "Content-Type": "application/json",
                  "Accept": "text/event-stream"})
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    eq(r.status, 200, "SSE status")
    contains(body, "event: output", "output event")
    contains(body, "event: result", "result event")


@test
def secrets_never_leak(t):
    """Keys, access and refresh tokens: not in logs, responses or the database."""
    w, _ = world()
    uid, k, key = sa_user(w)
    exec_env(w)
    secrets_ = [key["private_key"].splitlines()[3], key["private_key"].splitlines()[10]]
    secrets_ += SHARED.get("exec_tokens", []) + fx_state()["tokens"][-3:]
    secrets_ += SHARED.get("oauth_secrets", [])
    secrets_ += [CLIENT_SECRET]
    check(len(secrets_) >= 5, "collected secrets to look for", secrets_)
    blobs = {"server log": w.server.log_text().encode()}
    for name in ("aurora.db", "aurora.db-wal"):
        p = os.path.join(w.data, name)
        if os.path.exists(p):
            blobs[name] = open(p, "rb").read()
    for resp in (w.get("/api/connectors/status", key=k), w.get("/gcp/projects", key=k)):
        blobs["response %s" % resp.status] = resp.body
    for where, blob in blobs.items():
        for s in secrets_:
            check(s.encode() not in blob, "a secret (%s…) appears in %s" % (s[:12], where))
    # the database holds the reference only
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=5)
    refs = con.execute("SELECT org_id, secret_ref FROM connectors WHERE connector='gcp' AND user_id=?", (uid,)).fetchall()
    con.close()
    eq(len(refs), 1, "one connection row")
    eq(refs[0][1], "local:aurora/orgs/%s/users/%s/gcp/service-account-key" % (refs[0][0], uid),
       "secret_ref: the org-scoped path")


if __name__ == "__main__":
    main()
