#!/usr/bin/env python3
"""Drop-in compatibility with the existing Aurora deployment (issue 9).

The existing web frontend (Arvo-AI/aurora client/, Next.js) calls the kubectl
token and connection routes from its server-side API routes for users and
organizations its own auth created (UUIDs this server has never seen), with
X-User-ID, X-Org-ID (when the session has one) and X-Internal-Secret.  Its
backend's kubectl tool calls /internal/kubectl/execute with only the secret.

Two clients replay those requests against the real server:
  - tests/fixtures/frontend_routes.js: the Next.js routes as written there
    (auth-helper.ts headers, JSON.stringify bodies, encodeURIComponent query),
    run by Node's own fetch; it also reports what Node's `new Date(s)` makes of
    each time string, which is what the browser pages do with them;
  - Python requests of the same shape (header names and casing as in the
    TypeScript, compact JSON as JSON.stringify writes it, encodeURIComponent
    query encoding) for what needs finer control (bad input, other tenants).

The assertions are on the fields and JSON types the TypeScript reads
(auth/page.tsx, manage/page.tsx, status/route.ts).

The suite server runs with this server's defaults for token creation (5 per
minute, 20 per hour per user): the harness raises the per-minute limit for
other programs, so the suite world drops that variable again.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

from harness import (FIXTURES, NODE, TOKEN_RE, check, cluster_id_for, contains, eq,
                     https_request, main, rand_tag, suite_world, test, wait_until,
                     within_one_window)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MSG_CREATED = "Token created successfully. Save this token - it will only be shown once!"
MSG_REVOKED = "Token revoked successfully"
AGENT_VERSION = "legacy-python-1.0.0"
PER_MINUTE_VAR = "AURORA_TOKEN_RATE_LIMIT_PER_MINUTE"

STATE = {}


# ---------------------------------------------------------------------------
# the world: the suite server with the default token limits, and the frontend
# ---------------------------------------------------------------------------
def world():
    """The suite server, with this server's own defaults for token creation."""
    w = suite_world(start=False)
    if w.server is None:
        harness_env = w.env

        def env(sandir):
            e = harness_env(sandir)
            e.pop(PER_MINUTE_VAR, None)  # the harness raises it for other programs
            return e

        w.env = env
        w.start()
        w.bootstrap()
    return w


class Frontend:
    """tests/fixtures/frontend_routes.js: the existing frontend's Next.js kubectl
    routes, one op per stdin line, one JSON answer per stdout line."""

    def __init__(self, w):
        d = os.path.join(w.t.tmp, "frontend-%s" % rand_tag(3))
        os.makedirs(d, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
               and not k.startswith(("AURORA_", "NODE_"))}
        env.update({"BACKEND_URL": "https://127.0.0.1:%d" % w.port,
                    "INTERNAL_API_SECRET": w.secret,
                    "NODE_EXTRA_CA_CERTS": w.ca,
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        self.proc = w.t.spawn("frontend", [NODE, os.path.join(FIXTURES, "frontend_routes.js")], env,
                              os.path.join(d, "frontend.log"), os.path.join(d, "san"), cwd=d,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.answers = {}
        self.cv = threading.Condition()
        self.next_id = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.p.stdout:
            try:
                a = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                self.answers[a.get("id")] = a
                self.cv.notify_all()

    def call(self, op, timeout=30, **kw):
        with self.lock:
            self.next_id += 1
            i = self.next_id
            self.proc.p.stdin.write((json.dumps(dict(kw, id=i, op=op)) + "\n").encode())
            self.proc.p.stdin.flush()
        deadline = time.monotonic() + timeout
        with self.cv:
            while i not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0 or not self.proc.alive():
                    raise AssertionError("frontend fixture: no answer to %s within %ds; log:\n%s"
                                         % (op, timeout, self.proc.log_tail()))
                self.cv.wait(min(left, 0.5))
            a = self.answers.pop(i)
        check("fatal" not in a, "frontend fixture failed on %s" % op, a)
        return a

    # the routes -----------------------------------------------------------
    def create_token(self, session, cluster_name, notes="", **kw):
        return self.call("tokens_post", session=session, clusterName=cluster_name,
                         clusterMetadata=notes, **kw)

    def list_tokens(self, session, **kw):
        return self.call("tokens_get", session=session, **kw)

    def connections(self, session, **kw):
        return self.call("connections_get", session=session, **kw)

    def status(self, session, token, **kw):
        return self.call("status_get", session=session, token=token, **kw)

    def delete(self, session, cluster_id, **kw):
        return self.call("connection_delete", session=session, clusterId=cluster_id, **kw)

    def dates(self, values):
        """[(value, epoch seconds or None)] as Node's new Date(value) reads them."""
        a = self.call("dates", values=list(values))
        return [(d["value"], None if d["ms"] is None else d["ms"] / 1000.0) for d in a["dates"]]


def frontend():
    w = world()
    if "fe" not in STATE:
        STATE["fe"] = Frontend(w)
    return w, STATE["fe"]


# ---------------------------------------------------------------------------
# the frontend's requests from Python, same shape
# ---------------------------------------------------------------------------
def new_session(user_id=None, org_id=None):
    """An Auth.js session of the existing frontend: UUIDs this server never saw."""
    return {"userId": user_id or str(uuid.uuid4()),
            "orgId": str(uuid.uuid4()) if org_id is None else org_id}


def auth_headers(w, session, secret=None):
    """client/src/lib/auth-helper.ts getAuthenticatedUser()'s headers, in its order."""
    h = {"X-User-ID": session["userId"]}
    if session.get("orgId") and session["orgId"].strip() != "":
        h["X-Org-ID"] = session["orgId"]
    h["X-Internal-Secret"] = w.secret if secret is None else secret
    return h


def js_stringify(obj):
    """JSON.stringify: no spaces, non-ASCII as is (UTF-8 on the wire)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_uri_component(s):
    return urllib.parse.quote(s, safe="-_.!~*'()")


def fe_request(w, method, path, session, body=None, secret=None, headers=None):
    h = auth_headers(w, session, secret)
    if body is not None:
        h["Content-Type"] = "application/json"
        if not isinstance(body, bytes):
            body = js_stringify(body)
    h.update(headers or {})
    return https_request(w.port, w.ctx, method, path, body, h)


def fe_create(w, session, cluster_name, notes="", expect=201, **extra):
    body = {"cluster_name": cluster_name, "notes": notes}
    body.update(extra)
    r = fe_request(w, "POST", "/api/kubectl/tokens", session, body)
    eq(r.status, expect, "POST /api/kubectl/tokens status (%r)" % r)
    return r.json


def fe_connections(w, session, token=None):
    path = "/api/kubectl/connections"
    if token is not None:
        path += "?token=" + encode_uri_component(token)
    r = fe_request(w, "GET", path, session)
    eq(r.status, 200, "GET %s (%r)" % (path, r))
    check(isinstance(r.get("connections"), list), "connections must be a list", r)
    return r.json["connections"]


def fe_connection(w, session, cluster_id):
    for c in fe_connections(w, session):
        if c.get("cluster_id") == cluster_id:
            return c
    return None


def fe_tokens(w, session):
    r = fe_request(w, "GET", "/api/kubectl/tokens", session)
    eq(r.status, 200, "GET /api/kubectl/tokens (%r)" % r)
    check(isinstance(r.get("tokens"), list), "tokens must be a list", r)
    return r.json["tokens"]


def wait_status(w, session, cluster_id, status, timeout=15):
    """The session's connection for cluster_id once its status is `status`."""
    def ok():
        c = fe_connection(w, session, cluster_id)
        return c if c and c.get("status") == status else None
    return wait_until(ok, timeout, 0.1, "connection %s to be %s" % (cluster_id, status))


def me(w, session, **kw):
    return fe_request(w, "GET", "/api/me", session, **kw)


def connect_agent(w, session, token, cluster_id):
    """A legacy agent (the deployed Python agent's dialect) for token; waits until
    the frontend's session sees its connection active."""
    a = w.legacy_agent(token, ["--heartbeat", "1", "--agent-version", AGENT_VERSION])
    a.wait_event("connected", 30)  # Node's start, TLS and the register, on a loaded machine
    wait_status(w, session, cluster_id, "active")
    return a


def is_error(r, status, code, what):
    eq(r.status, status, "%s: status (%r)" % (what, r))
    check(isinstance(r.json, dict) and isinstance(r.get("error"), str) and r.get("error"),
          "%s: the error body needs an `error` message" % what, r)
    eq(r.error_code, code, "%s: error_code" % what)


def check_time(v, what):
    check(isinstance(v, str) and RFC3339_UTC.match(v),
          "%s must be an RFC 3339 UTC string YYYY-MM-DDTHH:MM:SSZ" % what, v)


def check_dates_near(fe, named, around=None, slack=60):
    """Each (what, value): an RFC 3339 UTC string that Node's new Date() (as the
    browser pages use it) parses to within `slack` seconds of `around` (now)."""
    for what, v in named:
        check_time(v, what)
    got = fe.dates([v for _, v in named])
    at = time.time() if around is None else around
    for (what, v), (_, secs) in zip(named, got):
        check(secs is not None, "new Date(%r) (%s) is Invalid Date in Node" % (v, what))
        check(abs(secs - at) <= slack, "new Date(%s) is %.0fs from the expected time" % (what, secs - at),
              v, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)))


def still_serving(w, what):
    eq(w.get("/health", auth=False).status, 200, "after %s: /health" % what)
    s = new_session()
    r = me(w, s)
    eq(r.status, 200, "after %s: a new frontend org is still served (%r)" % (what, r))


# ---------------------------------------------------------------------------
# identity named by the trusted backend
# ---------------------------------------------------------------------------
@test
def first_request_of_unknown_org_creates_a_token(t):
    """The issue's failure: the first POST /api/kubectl/tokens of an org this
    server has never seen answered 503.  Now it is served, and the org and the
    user are provisioned as created by the backend."""
    w, fe = frontend()
    s = new_session()
    t0 = time.time()
    a = fe.create_token(s, "prod-eu", "first request")
    eq(a["backend"]["status"], 201, "backend status of the first request (%s)" % a["backend"].get("text"))
    eq(a["route"]["status"], 200, "what the Next.js route gives the browser")
    eq(a["route"]["body"].get("cluster_name"), "prod-eu", "cluster_name")
    r = me(w, s)
    eq(r.status, 200, "GET /api/me (%r)" % r)
    eq(r.get("user_id"), s["userId"], "user_id")
    eq(r.get("org_id"), s["orgId"], "org_id")
    eq(r.get("auth"), "internal_secret", "auth")
    org, mem = r.get("org"), r.get("membership")
    check(isinstance(org, dict) and isinstance(mem, dict), "org and membership objects", r)
    eq(org.get("id"), s["orgId"], "org.id")
    check(isinstance(org.get("name"), str), "org.name is a string", r)
    eq(org.get("created_by"), "backend", "org.created_by")
    eq(mem.get("created_by"), "backend", "membership.created_by")
    check_dates_near(fe, [("org.created_at", org.get("created_at")),
                          ("membership.created_at", mem.get("created_at"))], t0)
    # the next request finds them: nothing provisioned twice
    r2 = me(w, s)
    eq((r2.status, r2.get("org"), r2.get("membership")), (200, org, mem), "GET /api/me again")


@test
def every_route_serves_a_new_org_first(t):
    """Whichever route a new org's first request hits, it is served (never 5xx)."""
    w, fe = frontend()
    for op in ("tokens_get", "connections_get", "status_get", "connection_delete"):
        s = new_session()
        kw = {"token": "aurora_kubectl_" + "x" * 64} if op == "status_get" else {}
        if op == "connection_delete":
            kw = {"clusterId": "cluster-0123456789abcdef"}
        a = fe.call(op, session=s, **kw)
        st = a["backend"]["status"]
        check(st < 500, "%s as a new org's first request: %d" % (op, st), a["backend"].get("text"))
        if op == "connection_delete":
            eq(st, 404, "DELETE of a cluster the new org does not have")
        else:
            eq(st, 200, "%s status" % op)
        r = me(w, s)
        eq((r.status, (r.get("org") or {}).get("created_by")), (200, "backend"),
           "org provisioned by %s (%r)" % (op, r))
    s = new_session()
    a = fe.connections(s)
    eq(a["route"]["body"].get("connections"), [], "a new org has no connections")
    a = fe.list_tokens(s)
    eq(a["route"]["body"].get("tokens"), [], "a new org has no tokens")


@test
def user_without_org_header(t):
    """No X-Org-ID (a session without orgId): the org the user joined last; a user
    the server does not know → 400 ORG_REQUIRED, and nothing is provisioned."""
    w, fe = frontend()
    uid = str(uuid.uuid4())
    org_a, org_b = str(uuid.uuid4()), str(uuid.uuid4())
    eq(me(w, new_session(uid, org_a)).status, 200, "joins org A")
    eq(me(w, new_session(uid, org_b)).status, 200, "joins org B")
    for blank in ("", "   "):
        s = new_session(uid, blank)
        r = me(w, s)
        eq((r.status, r.get("org_id")), (200, org_b), "no X-Org-ID (orgId %r) → the org joined last" % blank)
        a = fe.create_token(s, "no-org-header")
        eq(a["backend"]["status"], 201, "frontend POST without X-Org-ID (%s)" % a["backend"].get("text"))
        check("X-Org-ID" not in a["backend"]["headers"], "auth-helper omits a blank orgId", a["backend"])
    names_b = [x["cluster_name"] for x in fe_tokens(w, new_session(uid, org_b))]
    names_a = [x["cluster_name"] for x in fe_tokens(w, new_session(uid, org_a))]
    eq(names_b.count("no-org-header"), 2, "the tokens landed in org B")
    eq(names_a.count("no-org-header"), 0, "nothing landed in org A")
    # an unknown user without an org
    stranger = new_session(str(uuid.uuid4()), "")
    for method, path, body in (("GET", "/api/me", None), ("GET", "/api/kubectl/tokens", None),
                               ("GET", "/api/kubectl/connections", None),
                               ("POST", "/api/kubectl/tokens", {"cluster_name": "x", "notes": ""}),
                               ("DELETE", "/api/kubectl/connections/cluster-0123456789abcdef", None)):
        r = fe_request(w, method, path, stranger, body)
        is_error(r, 400, "ORG_REQUIRED", "%s %s by an unknown user without X-Org-ID" % (method, path))
    a = fe.create_token(stranger, "x")
    eq((a["backend"]["status"], a["route"]["status"]), (400, 500), "the frontend's view of ORG_REQUIRED")
    # still unknown afterwards: nothing was provisioned by the refused requests
    is_error(me(w, stranger), 400, "ORG_REQUIRED", "the refused user is still unknown")


@test
def concurrent_first_requests_of_a_new_org(t):
    """The manage page's first load fires its fetches at once: concurrent first
    requests of one new org (one user, then many users) all succeed, and the org
    and each membership exist once."""
    w = world()
    s = new_session()
    reqs = [("GET", "/api/kubectl/connections"), ("GET", "/api/kubectl/tokens"), ("GET", "/api/me"),
            ("GET", "/api/kubectl/connections?token=" + encode_uri_component("aurora_kubectl_" + "z" * 64))] * 4
    with ThreadPoolExecutor(len(reqs)) as ex:
        rs = list(ex.map(lambda mp: fe_request(w, mp[0], mp[1], s), reqs))
    bad = [(mp, r) for mp, r in zip(reqs, rs) if r.status != 200]
    check(not bad, "%d of %d concurrent first requests failed" % (len(bad), len(reqs)), *bad[:3])
    created = {json.dumps((r.get("org"), r.get("membership")), sort_keys=True) for r in rs if r.get("org")}
    eq(len(created), 1, "every answer saw the same org and membership rows")
    users = [new_session(org_id=s["orgId"]) for _ in range(12)] + [new_session(s["userId"]) for _ in range(12)]
    with ThreadPoolExecutor(len(users)) as ex:
        rs = list(ex.map(lambda u: me(w, u), users))
    bad = [(u, r) for u, r in zip(users, rs) if r.status != 200 or r.get("org_id") != u["orgId"]]
    check(not bad, "%d of %d concurrent new members failed" % (len(bad), len(users)), *bad[:3])


@test
def identity_header_validation(t):
    """Ids: 1-64 characters of [A-Za-z0-9._@-]; anything else is 400 BAD_REQUEST."""
    w = world()
    ok_ids = ["a", "x" * 64, "usr_abc-DEF.1@example.com", str(uuid.uuid4()).upper()]
    for i in ok_ids:
        r = me(w, new_session(i, str(uuid.uuid4())))
        eq((r.status, r.get("user_id")), (200, i), "X-User-ID %r (%r)" % (i, r))
        r = me(w, new_session(str(uuid.uuid4()), i))
        eq((r.status, r.get("org_id")), (200, i), "X-Org-ID %r (%r)" % (i, r))
    bad_ids = ["x" * 65, "a b", "a/b", "a:b", "a%2Fb", "a+b", "<script>", "a,b", "a;b", "a\\b",
               "caf\u00e9".encode("utf-8").decode("latin-1"), "a\tb", '"a"', "a#b"]
    for i in bad_ids:
        for which in ("userId", "orgId"):
            s = new_session()
            s[which] = i
            r = me(w, s)
            is_error(r, 400, "BAD_REQUEST", "%s %r" % (which, i))
            r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "bad-id", "notes": ""})
            is_error(r, 400, "BAD_REQUEST", "POST tokens with %s %r" % (which, i))
    # an empty X-User-ID is no user: refused, never served as someone
    r = https_request(w.port, w.ctx, "GET", "/api/me", None,
                      {"X-User-ID": "", "X-Org-ID": str(uuid.uuid4()), "X-Internal-Secret": w.secret})
    check(400 <= r.status < 500, "an empty X-User-ID must be refused with a 4xx", r)
    still_serving(w, "malformed identity headers")


@test
def same_user_in_two_orgs_is_isolated(t):
    """One user id in two orgs: each org sees only its own tokens and connections;
    a token or cluster of one is unknown in the other."""
    w, fe = frontend()
    uid = str(uuid.uuid4())
    sa, sb = new_session(uid), new_session(uid)
    ta = fe.create_token(sa, "iso-a")["route"]["body"]
    tb = fe.create_token(sb, "iso-b")["route"]["body"]
    check(TOKEN_RE.match(ta.get("token") or "") and TOKEN_RE.match(tb.get("token") or ""),
          "both tokens created", ta, tb)
    cid_a = cluster_id_for(ta["token"])
    agent = connect_agent(w, sa, ta["token"], cid_a)
    eq([x["cluster_name"] for x in fe.list_tokens(sa)["route"]["body"]["tokens"]], ["iso-a"], "org A's tokens")
    eq([x["cluster_name"] for x in fe.list_tokens(sb)["route"]["body"]["tokens"]], ["iso-b"], "org B's tokens")
    eq([c["cluster_id"] for c in fe_connections(w, sa)], [cid_a], "org A's connections")
    eq(fe_connections(w, sb), [], "org B sees no connection")
    eq(fe_connections(w, sb, ta["token"]), [], "org B filtering on org A's token")
    eq(fe.status(sb, ta["token"])["route"]["body"], {"connected": False},
       "the status route of org B for org A's token")
    a = fe.delete(sb, cid_a)
    eq((a["backend"]["status"], a["route"]["status"]), (404, 404), "org B deleting org A's cluster")
    # org A's cluster was not touched by org B's attempt
    eq((fe_connection(w, sa, cid_a) or {}).get("status"), "active", "org A's cluster still active")
    check(agent.proc.alive() and not agent.has_event("close"), "org A's agent still connected")
    r = w.internal({"user_id": uid, "cluster_id": cid_a, "command": "get --raw /fixture/echo/iso",
                    "timeout": 30}, headers={"X-Org-ID": sb["orgId"]})
    eq(r.status, 404, "internal execute naming org B for org A's cluster (%r)" % r)
    r = fe_request(w, "POST", "/api/clusters/%s/kubectl" % cid_a, sb, {"command": "get pods"})
    eq(r.status, 404, "kubectl on org A's cluster as org B (%r)" % r)


@test
def api_key_cannot_claim_another_org_or_user(t):
    """An API key speaks for its own user and org: headers naming others → 403."""
    w = world()
    other_org, other_user = str(uuid.uuid4()), str(uuid.uuid4())
    before = len(w.get("/api/kubectl/tokens").get("tokens") or [])
    for hdrs, code in (({"X-Org-ID": other_org}, "ORG_MISMATCH"),
                       ({"X-User-ID": other_user}, "USER_MISMATCH"),
                       ({"X-Org-ID": other_org, "X-User-ID": w.user_id}, "ORG_MISMATCH"),
                       ({"X-Org-ID": w.org_id, "X-User-ID": other_user}, "USER_MISMATCH")):
        for method, path, body in (("GET", "/api/me", None), ("GET", "/api/kubectl/tokens", None),
                                   ("POST", "/api/kubectl/tokens", {"cluster_name": "claim"})):
            r = w.request(method, path, body, headers=hdrs)
            is_error(r, 403, code, "%s %s with the admin key and %s" % (method, path, hdrs))
    eq(len(w.get("/api/kubectl/tokens").get("tokens") or []), before, "no token created by a refused claim")
    # the key's own values are fine
    r = w.get("/api/me", headers={"X-Org-ID": w.org_id, "X-User-ID": w.user_id})
    eq(r.status, 200, "the key's own org and user in headers (%r)" % r)
    eq((r.get("auth"), r.get("org_id"), r.get("user_id")), ("api_key", w.org_id, w.user_id), "who")
    eq((r.get("org") or {}).get("created_by"), "admin", "the bootstrap org was created by the admin CLI")
    # nothing was provisioned for the claimed org: the backend naming it finds it new
    r = me(w, new_session(str(uuid.uuid4()), other_org))
    eq(r.status, 200, "the backend naming the claimed org (%r)" % r)
    eq(r.get("org", {}).get("created_by"), "backend", "the claimed org")


@test
def backend_user_in_an_admin_org(t):
    """A backend-named user in an org the admin CLI made: provisioned as a member
    (created_by backend) of that org, its tokens seen by the org's API-key users."""
    w, fe = frontend()
    s = new_session(str(uuid.uuid4()), w.org_id)
    r = me(w, s)
    eq(r.status, 200, "GET /api/me (%r)" % r)
    eq((r.get("org") or {}).get("created_by"), "admin", "the org keeps its creator")
    eq((r.get("membership") or {}).get("created_by"), "backend", "the new member")
    body = fe.create_token(s, "shared-" + rand_tag(3))["route"]["body"]
    listed = {x["id"]: x for x in w.get("/api/kubectl/tokens").get("tokens")}
    check(body.get("token_id") in listed, "the API-key user sees the backend user's token", body)
    eq(listed[body["token_id"]].get("created_by"), s["userId"], "created_by")


# ---------------------------------------------------------------------------
# POST /api/kubectl/tokens
# ---------------------------------------------------------------------------
@test
def create_token_fields_and_types(t):
    """auth/page.tsx reads data.token; the route passes the whole body on.  The
    existing service's fields, with its types, plus this server's own."""
    w, fe = frontend()
    s = new_session()
    name = "  Prod EU \u2638 caf\u00e9  "
    t0 = time.time()
    a = fe.create_token(s, name, "  owner: platform-team  ")
    b = a["backend"]
    eq(b["status"], 201, "status (%s)" % b.get("text"))
    # the request was the frontend's: compact JSON.stringify body, its header names
    eq(b["body"], js_stringify({"cluster_name": name.strip(), "notes": "owner: platform-team"}).decode(),
       "body as sent")
    eq(sorted(b["headers"]), ["Content-Type", "X-Internal-Secret", "X-Org-ID", "X-User-ID"], "headers sent")
    d = a["route"]["body"]
    eq(d.get("success"), True, "success")
    check(isinstance(d.get("token"), str) and TOKEN_RE.match(d["token"]), "token", d)
    eq(d.get("cluster_name"), name.strip(), "cluster_name (trimmed by the page, kept by the server)")
    eq(d.get("message"), MSG_CREATED, "message")
    check("expires_at" in d and d["expires_at"] is None, "expires_at is null without expires_days", d)
    for k in ("token_id", "cluster_id", "preview", "token_preview", "note"):
        check(isinstance(d.get(k), str) and d[k], "%s must be a non-empty string" % k, d)
    eq(d["cluster_id"], cluster_id_for(d["token"]), "cluster_id")
    check(d["token"] not in (d["preview"] + d["token_preview"]), "a preview is not the token", d)
    check_dates_near(fe, [("created_at", d.get("created_at"))], t0)
    # the same request from Python: same answer shape
    d2 = fe_create(w, s, "python-side", "")
    check(TOKEN_RE.match(d2.get("token") or "") and d2.get("success") is True, "Python-side create", d2)
    check_time(d2.get("created_at"), "created_at")


@test
def cluster_name_defaults_to_unnamed_cluster(t):
    w, fe = frontend()
    s = new_session()
    # the page itself refuses a blank name, but its route forwards any body: the
    # page's own shape with a name that trims to ""
    for raw in ("", "   "):
        d = fe.create_token(s, raw)["route"]["body"]
        eq(d.get("cluster_name"), "Unnamed Cluster", "cluster_name %r from the page" % raw)
    s2 = new_session()
    for body in ({}, {"cluster_name": None}, {"cluster_name": " \t "}, {"notes": "n"}):
        r = fe_request(w, "POST", "/api/kubectl/tokens", s2, body)
        eq(r.status, 201, "body %r (%r)" % (body, r))
        eq(r.get("cluster_name"), "Unnamed Cluster", "cluster_name for body %r" % body)
    listed = [x["cluster_name"] for x in fe_tokens(w, s2)]
    eq(listed, ["Unnamed Cluster"] * 4, "the list shows the default names")


@test
def cluster_name_limit_counts_characters(t):
    """The frontend has no length limit on the name and sends it as UTF-8; the
    server's limit (and its message) is 100 characters: a 100-character name in
    a non-Latin script is accepted, 101 characters are not."""
    w = world()
    s = new_session()
    for name in ("\u00e9" * 100, "\u30af\u30e9\u30b9\u30bf" * 25, "\u2638" * 100):
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": name, "notes": ""})
        eq(r.status, 201, "a %d-character, %d-byte name (%r)" % (len(name), len(name.encode()), r))
        eq(r.get("cluster_name"), name, "cluster_name kept as sent")
    r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "\u00e9" * 101, "notes": ""})
    is_error(r, 400, "BAD_REQUEST", "a 101-character name")


@test
def expires_days_sets_expires_at(t):
    w, fe = frontend()
    s = new_session()
    t0 = time.time()
    d = fe_create(w, s, "expiring", "", expires_days=30)
    check_dates_near(fe, [("expires_at", d.get("expires_at"))], t0 + 30 * 86400)
    listed = fe_tokens(w, s)
    eq([x.get("expires_at") for x in listed], [d["expires_at"]], "GET tokens shows the same expires_at")
    for bad in (0, -1, 3651, 1.5, "30", True, [30]):
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "e", "expires_days": bad})
        is_error(r, 400, "BAD_REQUEST", "expires_days %r" % (bad,))
    eq(len(fe_tokens(w, s)), 1, "no token created by a refused request")


# ---------------------------------------------------------------------------
# rate limits: the existing service's 5 per minute and 20 per hour per user
# ---------------------------------------------------------------------------
def retry_after(r, window):
    """Retry-After of a fixed-window limit: whole seconds until the window ends
    (the server and this test read the same clock; 10 s of slack for the
    time the answer took to reach the test on a loaded machine)."""
    v = r.headers.get("retry-after")
    check(v is not None and v.isdigit() and 0 < int(v) <= window,
          "Retry-After must be whole seconds in 1..%d" % window, r.headers)
    left = window - int(time.time()) % window
    check(abs(int(v) - left) <= 10 or abs(int(v) - left) >= window - 10,
          "Retry-After %s must be the seconds left in the window (%d)" % (v, left))
    return int(v)


@test
def token_rate_limit_5_per_minute(t):
    w, fe = frontend()

    def run():
        s = new_session()
        for i in range(5):
            a = fe.create_token(s, "rl-%d" % i)
            eq(a["backend"]["status"], 201, "token %d of 5 (%s)" % (i + 1, a["backend"].get("text")))
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "rl-6", "notes": ""})
        is_error(r, 429, "RATE_LIMITED", "the 6th token within a minute")
        t.note("Retry-After %d on the per-minute limit" % retry_after(r, 60))
        a = fe.create_token(s, "rl-7")
        eq((a["backend"]["status"], a["route"]["status"]), (429, 500), "the frontend's view of the limit")
        # per user: another user of the same org is not limited by the first's count
        other = new_session(org_id=s["orgId"])
        a = fe.create_token(other, "rl-other")
        eq(a["backend"]["status"], 201, "another user of the same org (%s)" % a["backend"].get("text"))
        # ... but the same user is, whichever org it names
        r = fe_request(w, "POST", "/api/kubectl/tokens", new_session(s["userId"]),
                       {"cluster_name": "rl-elsewhere", "notes": ""})
        is_error(r, 429, "RATE_LIMITED", "the limited user naming another org")
        eq(len(fe_tokens(w, s)), 6, "5 + the other user's token in the org, nothing more")
    within_one_window(60, run)


@test
def token_rate_limit_holds_under_concurrency(t):
    """Twelve token creations of one user at once (double clicks, retries, several
    tabs): still 5 per minute, not 5 plus however many raced the count."""
    w = world()

    def run():
        s = new_session()
        eq(me(w, s).status, 200, "the user exists")
        with ThreadPoolExecutor(12) as ex:
            rs = list(ex.map(lambda i: fe_request(w, "POST", "/api/kubectl/tokens", s,
                                                  {"cluster_name": "race-%d" % i, "notes": ""}),
                             range(12)))
        codes = sorted(r.status for r in rs)
        check(set(codes) <= {201, 429}, "only 201 or 429", codes)
        eq(len(fe_tokens(w, s)), codes.count(201), "tokens listed = 201 answers")
        eq(codes.count(201), 5, "tokens created by 12 concurrent requests under a 5-per-minute limit %s"
           % codes)
    within_one_window(60, run)


@test(timeout=120)
def token_rate_limit_20_per_hour(t):
    # per-minute raised (the harness's setting), the hourly limit left at its default
    w = t.world("hourly")

    def run():
        s = new_session()
        for i in range(20):
            eq(fe_request(w, "POST", "/api/kubectl/tokens", s,
                          {"cluster_name": "h-%d" % i, "notes": ""}).status, 201, "token %d of 20" % (i + 1))
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "h-21", "notes": ""})
        is_error(r, 429, "RATE_LIMITED", "the 21st token within an hour")
        t.note("Retry-After %d on the hourly limit" % retry_after(r, 3600))
        r = fe_request(w, "POST", "/api/kubectl/tokens", new_session(org_id=s["orgId"]),
                       {"cluster_name": "h-other", "notes": ""})
        eq(r.status, 201, "another user of the same org (%r)" % r)
    within_one_window(3600, run)


# ---------------------------------------------------------------------------
# the auth page: create, poll status with the token, the agent connects
# ---------------------------------------------------------------------------
@test(timeout=90)
def status_polling_with_token(t):
    w, fe = frontend()
    s = new_session()
    d = fe.create_token(s, "poll-me")["route"]["body"]
    tok, cid = d["token"], d["cluster_id"]
    a = fe.status(s, tok)
    eq(a["backend"]["url"].split("?", 1)[1], "token=" + encode_uri_component(tok), "query as sent")
    eq(a["backend"]["status"], 200, "status before the agent (%s)" % a["backend"].get("text"))
    eq(json.loads(a["backend"]["text"]).get("connections"), [], "?token= before the agent connects")
    eq(a["route"]["body"], {"connected": False}, "the page keeps polling")
    agent = w.legacy_agent(tok, ["--heartbeat", "1", "--agent-version", AGENT_VERSION])
    agent.wait_event("connected", 30)  # as in connect_agent
    def says_connected():
        x = fe.status(s, tok)
        return x if x["route"]["body"].get("connected") is True else None
    a = wait_until(says_connected, 15, 0.1, "the status route to say connected")
    conns = json.loads(a["backend"]["text"]).get("connections")
    eq([c.get("cluster_id") for c in conns], [cid], "?token= after the agent connected")
    # other values match nothing, like a token no agent has used
    other = fe_create(w, s, "never-connected")
    for what, value in (("another token of the org, not connected", other["token"]),
                        ("malformed", "not-a-token"),
                        ("prefix only", "aurora_kubectl_"),
                        ("well-formed, unknown", "aurora_kubectl_" + "A" * 64),
                        ("the token with one character changed",
                         tok[:-1] + ("A" if tok[-1] != "A" else "B")),
                        ("characters to encode", "a b&c=d/\u00e9?#%+"),
                        ("256 characters", "x" * 256)):
        eq(fe_connections(w, s, value), [], "?token= %s" % what)
        eq(fe.status(s, value)["route"]["body"], {"connected": False}, "status route, %s" % what)
    # another org's connected token matches nothing here
    s2 = new_session()
    d2 = fe.create_token(s2, "other-org")["route"]["body"]
    connect_agent(w, s2, d2["token"], d2["cluster_id"])
    eq(fe_connections(w, s, d2["token"]), [], "?token= of another org's connected cluster")
    eq(fe.status(s, d2["token"])["route"]["body"], {"connected": False}, "status route, another org's token")
    # empty ?token= filters nothing (the route itself never sends it)
    r = fe_request(w, "GET", "/api/kubectl/connections?token=", s)
    eq(r.status, 200, "empty ?token= (%r)" % r)
    eq([c.get("cluster_id") for c in r.get("connections")], [cid], "empty ?token= is unfiltered")
    # over 256 characters: refused, and the status route reads it as not connected
    r = fe_request(w, "GET", "/api/kubectl/connections?token=" + "x" * 257, s)
    is_error(r, 400, "BAD_REQUEST", "a 257-character ?token=")
    r = fe_request(w, "GET", "/api/kubectl/connections?token=" + "x" * 5000, s)
    check(400 <= r.status < 500, "a 5000-character ?token= must be a 4xx", r)
    a = fe.status(s, "y" * 300)
    eq((a["backend"]["status"], a["route"]["status"], a["route"]["body"]), (400, 200, {"connected": False}),
       "the status route on a too-long token")
    # malformed percent-encoding (never produced by encodeURIComponent): a 4xx
    for q in ("%ZZ", tok + "%", "%"):
        try:
            r = fe_request(w, "GET", "/api/kubectl/connections?token=" + q, s)
            check(400 <= r.status < 500, "?token=%s must be refused with a 4xx" % q[-8:], r)
        except (ConnectionError, OSError) as e:
            t.note("?token=...%s: connection closed without an answer (%r)" % (q[-8:], e))
    eq([c.get("cluster_id") for c in fe_connections(w, s, tok)], [cid], "the real token still matches")
    check(agent.proc.alive(), "the agent still runs")


# ---------------------------------------------------------------------------
# the manage page: connections, token list, disconnect
# ---------------------------------------------------------------------------
@test(timeout=90)
def manage_page_connections_and_tokens(t):
    w, fe = frontend()
    s = new_session()
    d = fe.create_token(s, "managed")["route"]["body"]
    tok, cid = d["token"], d["cluster_id"]
    lst = fe.list_tokens(s)["route"]["body"]["tokens"]
    eq(len(lst), 1, "one token listed")
    e = lst[0]
    check(isinstance(e.get("token_preview"), str) and e["token_preview"], "token_preview string", e)
    check("last_connected_at" in e and e["last_connected_at"] is None,
          "last_connected_at is null before an agent connected", e)
    check("expires_at" in e and e["expires_at"] is None, "expires_at null", e)
    eq(e.get("status"), "active", "token status")
    check_time(e.get("created_at"), "created_at")
    check(tok not in fe.list_tokens(s)["backend"]["text"], "the token itself is never listed")
    t_connect = time.time()
    agent = connect_agent(w, s, tok, cid)
    a = fe.connections(s)
    eq(a["backend"]["status"], 200, "GET connections (%s)" % a["backend"].get("text"))
    conns = a["route"]["body"]["connections"]
    eq(len(conns), 1, "one connection")
    c = conns[0]
    eq(c.get("cluster_id"), cid, "cluster_id")
    eq(c.get("cluster_name"), "managed", "cluster_name")
    eq(c.get("agent_version"), AGENT_VERSION, "agent_version")
    eq(c.get("status"), "active", "status while the agent is connected")
    eq(c.get("connected"), True, "connected")
    check_dates_near(fe, [("connected_at", c.get("connected_at")), ("last_heartbeat", c.get("last_heartbeat"))],
                     t_connect)
    # the token's last_connected_at is its own commit, after the connection row's
    # (store.c, conn_up_write): the active connection does not mean it is there yet
    e = wait_until(lambda: (lambda x: x if x.get("last_connected_at") else None)(
        fe.list_tokens(s)["route"]["body"]["tokens"][0]), 10, 0.1, "the token's last_connected_at")
    check_dates_near(fe, [("last_connected_at", e.get("last_connected_at"))], t_connect)
    # the agent goes away: the cluster stays listed, "stale", no longer connected
    agent.op(op="close", code=1000)
    agent.wait_close(30)
    c = wait_status(w, s, cid, "stale")
    eq(c.get("connected"), False, "connected after the agent left")
    a = fe.connections(s)
    c = a["route"]["body"]["connections"][0]
    check_time(c.get("last_heartbeat"), "last_heartbeat after disconnect")
    check_time(c.get("connected_at"), "connected_at after disconnect")


@test(timeout=90)
def disconnect_revokes_and_closes_the_tunnel(t):
    w, fe = frontend()
    s = new_session()
    d = fe.create_token(s, "to-disconnect")["route"]["body"]
    tok, cid = d["token"], d["cluster_id"]
    agent = connect_agent(w, s, tok, cid)
    # unknown clusters and other orgs' are 404, and change nothing
    for who, target in ((new_session(), cid), (new_session(s["userId"]), cid), (s, "cluster-0000000000000000"),
                        (s, "no-such-cluster")):
        a = fe.delete(who, target)
        eq((a["backend"]["status"], a["route"]["status"]), (404, 404), "DELETE %s by %s" % (target, who))
        eq(a["route"]["body"], {"error": "Failed to disconnect cluster"}, "the frontend's error body")
    check(agent.proc.alive() and not agent.has_event("close"), "the agent survives others' DELETEs")
    eq((fe_connection(w, s, cid) or {}).get("status"), "active", "still active")
    # the owner disconnects it
    a = fe.delete(s, cid)
    eq(a["backend"]["status"], 200, "DELETE (%s)" % a["backend"].get("text"))
    body = a["route"]["body"]
    eq(body.get("cluster_name"), "to-disconnect", "cluster_name")
    eq(body.get("message"), MSG_REVOKED, "message")
    check(isinstance(body.get("delete_command"), str) and body["delete_command"].strip(),
          "delete_command must be a non-empty string (the page shows it)", body)
    c = agent.wait_close(30)
    eq((c.get("code"), c.get("reason")), (1008, "Token revoked"), "the live tunnel is closed")
    eq(fe_connections(w, s), [], "the cluster is gone from the list")
    eq(fe.status(s, tok)["route"]["body"], {"connected": False}, "status route after the disconnect")
    eq([x.get("status") for x in fe_tokens(w, s)], ["revoked"], "the token is revoked")
    again = w.legacy_agent(tok)
    c = again.wait_close(30)
    eq((c.get("code"), c.get("reason")), (1008, "Token revoked"), "the token can no longer connect")
    check(not again.has_event("connected"), "a revoked token must not get `connected`")
    # again (a second tab): idempotent, or not found; nothing comes back to life
    a = fe.delete(s, cid)
    check(a["backend"]["status"] in (200, 404), "DELETE of the same cluster again", a["backend"])
    eq(fe_connections(w, s), [], "still no cluster listed")
    eq([x.get("status") for x in fe_tokens(w, s)], ["revoked"], "the token stays revoked")


# ---------------------------------------------------------------------------
# the backend's kubectl tool
# ---------------------------------------------------------------------------
def backend_tool_execute(w, user_id, cluster_id, command, timeout, secret=None):
    """kubectl_onprem_tool.py: requests.post(json={user_id, cluster_id, command,
    timeout}, headers={'X-Internal-Secret': ...}) — requests' own headers and
    json.dumps' default separators."""
    body = json.dumps({"user_id": user_id, "cluster_id": cluster_id, "command": command,
                       "timeout": timeout}).encode()
    return https_request(w.port, w.ctx, "POST", "/internal/kubectl/execute", body, {
        "User-Agent": "python-requests/2.32.3", "Accept-Encoding": "gzip, deflate", "Accept": "*/*",
        "Connection": "keep-alive", "X-Internal-Secret": w.secret if secret is None else secret,
        "Content-Type": "application/json"}, timeout=timeout + 30)


@test(timeout=90)
def backend_tool_executes_on_a_frontend_cluster(t):
    w, fe = frontend()
    s = new_session()
    d = fe.create_token(s, "exec-target")["route"]["body"]
    t0 = time.time()
    w.start_agent(d["token"])  # this project's agent (build/asan/aurora-agent)
    c = wait_status(w, s, d["cluster_id"], "active")
    check(isinstance(c.get("agent_version"), str) and c["agent_version"], "agent_version string", c)
    check_dates_near(fe, [("connected_at", c.get("connected_at")), ("last_heartbeat", c.get("last_heartbeat"))],
                     t0)
    r = backend_tool_execute(w, s["userId"], d["cluster_id"], "get pods -n default", 30)
    eq(r.status, 200, "internal execute (%r)" % r)
    eq((r.get("success"), r.get("return_code")), (True, 0), "success, return_code (%r)" % r)
    contains(r.get("output"), "nginx-7c5ddbdf54-x8f2k", "output")
    text = "compat-" + rand_tag(4)
    r = backend_tool_execute(w, s["userId"], d["cluster_id"], "get --raw /fixture/echo?text=%s" % text, 20)
    eq((r.status, r.get("output")), (200, text), "a second command (%r)" % r)
    r = backend_tool_execute(w, s["userId"], "cluster-0000000000000000", "get pods", 10)
    check(400 <= r.status < 500 and isinstance(r.get("error"), str), "unknown cluster → 4xx with error", r)
    r = backend_tool_execute(w, s["userId"], d["cluster_id"], "get pods", 10, secret="x" * len(w.secret))
    is_error(r, 401, "UNAUTHORIZED", "a wrong secret")


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def raw_post_truncated(w, session, declared, sent):
    """POST /api/kubectl/tokens declaring `declared` body bytes, sending `sent`,
    then closing: the server can only drop the request."""
    sock = socket.create_connection(("127.0.0.1", w.port), 10)
    s = w.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    h = auth_headers(w, session)
    head = "POST /api/kubectl/tokens HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % w.port
    head += "".join("%s: %s\r\n" % kv for kv in h.items())
    head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % declared
    try:
        s.sendall(head.encode() + sent)
    except (OSError, ssl.SSLError):
        pass  # the server may refuse the declared length before reading on
    finally:
        s.close()


@test(timeout=90)
def bad_input_is_refused_clearly(t):
    w, fe = frontend()
    s = new_session()
    eq(me(w, s).status, 200, "the org exists")
    cases = [
        ("malformed JSON", b'{"cluster_name":"x",'),
        ("truncated JSON.stringify output", js_stringify({"cluster_name": "half", "notes": ""})[:18]),
        ("not an object", b'["cluster_name"]'),
        ("a string", b'"cluster_name"'),
        ("two objects", b'{"cluster_name":"a"}{"cluster_name":"b"}'),
        ("empty body", b""),
        ("cluster_name over 100 bytes", js_stringify({"cluster_name": "n" * 101, "notes": ""})),
        ("cluster_name a number", b'{"cluster_name":123,"notes":""}'),
        ("cluster_name true", b'{"cluster_name":true,"notes":""}'),
        ("cluster_name an object", b'{"cluster_name":{"a":1},"notes":""}'),
        ("cluster_name an array", b'{"cluster_name":["a"],"notes":""}'),
        ("cluster_name with a control character", b'{"cluster_name":"a\\u0007b","notes":""}'),
        ("cluster_name with NUL", b'{"cluster_name":"a\\u0000b","notes":""}'),
        ("cluster_name invalid UTF-8", b'{"cluster_name":"a\xff\xfeb","notes":""}'),
        ("notes over 500 bytes", js_stringify({"cluster_name": "n", "notes": "x" * 501})),
    ]
    for what, body in cases:
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, body)
        is_error(r, 400, "BAD_REQUEST", what)
    eq(fe_tokens(w, s), [], "no token created by refused requests")
    # the limit is 100: exactly 100 is fine (this counts 1 of the user's 5 per minute)
    d = fe_create(w, s, "n" * 100)
    eq(d.get("cluster_name"), "n" * 100, "a 100-character name")
    # the frontend with a wrong or missing INTERNAL_API_SECRET
    for secret in ("x" * len(w.secret), w.secret[:-1], w.secret + "x", "wrong"):
        r = fe_request(w, "POST", "/api/kubectl/tokens", s, {"cluster_name": "bad-secret", "notes": ""},
                       secret=secret)
        is_error(r, 401, "UNAUTHORIZED", "a wrong internal secret")
        a = fe.create_token(s, "bad-secret", secret=secret)
        eq((a["backend"]["status"], a["route"]["status"]), (401, 500), "the route with a wrong secret")
    a = fe.list_tokens(s, secret=None)
    eq(a["backend"]["status"], 401, "no X-Internal-Secret and no API key (%s)" % a["backend"].get("text"))
    # truncated bodies: the connection ends before the declared length
    for declared, sent in ((200, b'{"cluster_name":"trunc'), (50, b""), (10 ** 6, b"{" * 1000)):
        raw_post_truncated(w, s, declared, sent)
    # the bad internal-execute bodies
    for what, body in (("malformed", b'{"cluster_id":'), ("not an object", b"[]"),
                       ("no cluster_id", b'{"user_id":"u","command":"get pods","timeout":5}')):
        r = https_request(w.port, w.ctx, "POST", "/internal/kubectl/execute", body,
                          {"X-Internal-Secret": w.secret, "Content-Type": "application/json"})
        is_error(r, 400, "BAD_REQUEST", "internal execute, %s body" % what)
    eq([x["cluster_name"] for x in fe_tokens(w, s)], ["n" * 100], "nothing else was created")
    still_serving(w, "bad input")
    eq(fe.create_token(s, "after-bad-input")["backend"]["status"], 201, "the frontend still creates tokens")


if __name__ == "__main__":
    main()
