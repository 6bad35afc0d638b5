#!/usr/bin/env python3
"""The web console's server side (issue 15) against the real server:

- sign-in with a real API key (and with the trusted backend's headers) gives
  an HttpOnly, SameSite=Strict, Secure cookie; the cookie then authenticates
  GET /api/me and writes, the writes only with the session's X-CSRF-Token and
  this server's Origin (403 CSRF_FAILED otherwise, nothing written); bearer
  requests are unaffected;
- sign-out kills the cookie (a replay is 401); idle and absolute expiry with
  small settings, waited for by polling; a revoked API key ends its sessions
  at once; another organization's session reaches none of this one's data;
- bad input: malformed, oversized and duplicate cookies, forged session ids,
  bad sign-in bodies, and a brute force that ends in 429;
- the pages: CSP and the other headers, ETag, unknown files 404, path
  traversal under /console/ refused, the page routes answer index.html, the
  existing routes (/login, /callback, /health, the API) unaffected;
- the same life of a session on PostgreSQL."""

import calendar
import json
import os
import re
import secrets
import sqlite3
import time

from harness import (ROOT, Postgres, check, contains, eq, https_request, main, suite_world, test,
                     wait_until, within_one_window)

SESSION = "/api/console/session"
COOKIE_RE = re.compile(r"^__Host-aurora_session=([A-Za-z0-9_-]{43}); Path=/; Max-Age=(\d+); HttpOnly; "
                       r"SameSite=Strict; Secure$")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
INDEX = open(os.path.join(ROOT, "server", "console", "assets", "index.html"), "rb").read()
APP_JS = open(os.path.join(ROOT, "server", "console", "assets", "app.js"), "rb").read()


def sw():
    """The shared server; sign-ins fail on purpose across tests, so its
    failed sign-in limit is out of the way (brute_force tests the default's
    mechanism on a server of its own)."""
    return suite_world(extra_env={"AURORA_CONSOLE_SIGNIN_LIMIT": "100000"})


def epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def raw(w, method, path, body=None, headers=None):
    """A request with exactly these headers (no Authorization)."""
    return https_request(w.port, w.ctx, method, path, body, headers or {})


class Session:
    """A signed-in browser: its cookie and CSRF token."""

    def __init__(self, w, key=None, headers=None, body=None):
        self.w = w
        if body is None and headers is None:
            body = {"api_key": key or w.api_key}
        r = raw(w, "POST", SESSION, body, headers)
        eq(r.status, 201, "sign-in: %r" % r)
        self.resp = r
        m = COOKIE_RE.match(r.headers.get("set-cookie", ""))
        check(m, "sign-in: Set-Cookie with every flag", r.headers)
        self.sid, self.max_age = m.group(1), int(m.group(2))
        self.csrf = r.get("csrf_token")
        check(re.match(r"^[A-Za-z0-9_-]{43}$", self.csrf or ""), "a 43-character CSRF token", r.json)
        check(self.csrf != self.sid, "the CSRF token is not the session id")
        eq(r.headers.get("cache-control"), "no-store", "the body holding the token is not cached")

    @property
    def origin(self):
        return "https://127.0.0.1:%d" % self.w.port

    def req(self, method, path, body=None, csrf=True, origin=True, extra=None):
        h = {"Cookie": "__Host-aurora_session=%s" % self.sid}
        if csrf:
            h["X-CSRF-Token"] = self.csrf if csrf is True else csrf
        if origin:
            h["Origin"] = self.origin if origin is True else origin
        h.update(extra or {})
        return raw(self.w, method, path, body, h)

    def me(self):
        return self.req("GET", "/api/me", csrf=False, origin=False)


def token_names(w, key=None):
    r = w.get("/api/kubectl/tokens", key=key)
    eq(r.status, 200, "token list")
    return sorted(t["cluster_name"] for t in r.json["tokens"])


# ---- sign-in, cookie, CSRF, sign-out -----------------------------------------------------------

@test
def sign_in_cookie_flags_and_use(t):
    w = sw()
    s = Session(w)
    eq(s.max_age, 28800, "Max-Age is AURORA_CONSOLE_SESSION_TTL (default 8 h)")
    b = s.resp.json
    eq((b["user_id"], b["org_id"], b["auth"]), (w.user_id, w.org_id, "api_key"), "who signed in")
    created = time.time()
    check(abs(epoch(b["expires_at"]) - (created + 28800)) < 30, "expires_at: 8 h from now", b)
    check(abs(epoch(b["idle_expires_at"]) - (created + 1800)) < 30, "idle: 30 min from now", b)
    me = s.me()
    eq(me.status, 200, "GET /api/me with the cookie: %r" % me)
    eq((me.get("auth"), me.get("org_id"), me.get("user_id")),
       ("console_session", w.org_id, w.user_id), "the cookie speaks for the key's user and org")
    eq(me.get("key_id"), b["key_id"], "the key the session was exchanged for")
    g = s.req("GET", SESSION, csrf=False, origin=False)
    eq(g.status, 200, "GET session: %r" % g)
    eq(g.get("csrf_token"), s.csrf, "a reload gets the same CSRF token back")
    # the cookie must not be sent back in an answer body or as a header
    check(s.sid.encode() not in g.body + me.body, "the session id is never echoed")


@test
def writes_need_the_csrf_token_and_our_origin(t):
    w = sw()
    s = Session(w)
    other = Session(w)
    before = token_names(w)
    body = {"cluster_name": "csrf-%s" % secrets.token_hex(3)}
    for what, kw in (("no X-CSRF-Token", dict(csrf=False)),
                     ("an empty X-CSRF-Token", dict(csrf="")),
                     ("a forged X-CSRF-Token", dict(csrf=secrets.token_urlsafe(32))),
                     ("another session's token", dict(csrf=other.csrf)),
                     ("the session id as token", dict(csrf=s.sid)),
                     ("another site's Origin", dict(origin="https://evil.example")),
                     ("an opaque Origin", dict(origin="null")),
                     ("our host on another port", dict(origin="https://127.0.0.1:%d" % (w.port + 1))),
                     ("our host over http", dict(origin="http://127.0.0.1:%d" % w.port)),
                     ("a look-alike Origin", dict(origin="https://127.0.0.1:%d.evil.example" % w.port))):
        r = s.req("POST", "/api/kubectl/tokens", body, **kw)
        eq((r.status, r.error_code), (403, "CSRF_FAILED"), "write with %s: %r" % (what, r))
    eq(token_names(w), before, "no refused write created anything")
    r = s.req("POST", "/api/kubectl/tokens", body)
    eq(r.status, 201, "write with token and Origin: %r" % r)
    r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": body["cluster_name"] + "-b"},
              origin=False)
    eq(r.status, 201, "write with the token and no Origin (the token decides): %r" % r)
    eq(token_names(w), sorted(before + [body["cluster_name"], body["cluster_name"] + "-b"]),
       "both writes landed")
    # DELETE is a write too
    tid = r.get("token_id")
    r = s.req("DELETE", "/api/kubectl/tokens/%s" % tid, csrf=False)
    eq((r.status, r.error_code), (403, "CSRF_FAILED"), "DELETE without the token")
    # Bearer requests are unaffected, a cookie beside them or not
    r = w.post("/api/kubectl/tokens", {"cluster_name": "bearer-" + secrets.token_hex(3)},
               headers={"Cookie": "__Host-aurora_session=%s" % s.sid, "Origin": "https://evil.example"})
    eq(r.status, 201, "a bearer write needs no CSRF token: %r" % r)
    # The Authorization header wins: a bad key is 401 even with a good cookie
    r = s.req("GET", "/api/me", csrf=False, origin=False,
              extra={"Authorization": "Bearer aurora_key_" + "x" * 43})
    eq(r.status, 401, "a wrong bearer key beside a good cookie")


@test
def sign_out_kills_the_cookie(t):
    w = sw()
    s = Session(w)
    eq(s.me().status, 200, "signed in")
    r = s.req("DELETE", SESSION, csrf=False)
    eq((r.status, r.error_code), (403, "CSRF_FAILED"), "sign-out of a live session is a write")
    eq(s.me().status, 200, "still signed in after the refused sign-out")
    r = s.req("DELETE", SESSION)
    eq(r.status, 204, "sign-out: %r" % r)
    eq(r.headers.get("set-cookie"),
       "__Host-aurora_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure", "cookie cleared")
    me = s.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "the cookie is dead: %r" % me)
    r = s.req("GET", SESSION, csrf=False)
    eq((r.status, r.error_code), (401, "NO_SESSION"), "GET session after sign-out")
    r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": "after-signout"})
    eq(r.status, 401, "a replayed cookie with its CSRF token after sign-out: %r" % r)
    eq(s.req("DELETE", SESSION).status, 204, "signing out again only clears the cookie")
    eq(raw(w, "DELETE", SESSION).status, 204, "sign-out without a cookie")


@test
def sign_in_refused_from_another_site(t):
    """Login CSRF: a page of another site must not sign the victim's browser
    into the attacker's account (whose console would then record what the
    victim types)."""
    w = sw()
    own = "https://127.0.0.1:%d" % w.port
    body = {"api_key": w.api_key}
    for what, hdrs in [
        ("a foreign Origin", {"Origin": "https://evil.example"}),
        ("Origin null (sandboxed frame)", {"Origin": "null"}),
        ("our Origin on another port", {"Origin": "https://127.0.0.1:%d" % (w.port + 1)}),
        ("Sec-Fetch-Site cross-site", {"Sec-Fetch-Site": "cross-site", "Origin": own}),
        ("Sec-Fetch-Site same-site", {"Sec-Fetch-Site": "same-site"}),
    ]:
        r = raw(w, "POST", SESSION, body, hdrs)
        eq((r.status, r.error_code), (403, "CSRF_FAILED"), "sign-in with %s: %r" % (what, r))
        check("set-cookie" not in r.headers, "no cookie for %s" % what)
        r = raw(w, "POST", SESSION, None, dict(hdrs, **{"X-Internal-Secret": w.secret,
                                                          "X-User-ID": "u1", "X-Org-ID": "o1"}))
        eq((r.status, r.error_code), (403, "CSRF_FAILED"), "backend sign-in with %s" % what)
    for what, hdrs in [("our Origin, same-origin", {"Origin": own, "Sec-Fetch-Site": "same-origin"}),
                       ("typed by the user", {"Sec-Fetch-Site": "none"}),
                       ("no browser headers (a script)", {})]:
        r = raw(w, "POST", SESSION, body, hdrs)
        eq(r.status, 201, "sign-in with %s: %r" % (what, r))


@test
def signing_in_again_ends_the_previous_session(t):
    w = sw()
    old = Session(w)
    eq(old.me().status, 200, "the first session works")
    r = raw(w, "POST", SESSION, {"api_key": w.api_key},
            {"Cookie": "__Host-aurora_session=%s" % old.sid})
    eq(r.status, 201, "sign-in again with the old cookie: %r" % r)
    new_sid = COOKIE_RE.match(r.headers.get("set-cookie", "")).group(1)
    check(new_sid != old.sid, "a fresh session id (no fixation)")
    me = old.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "the old session is gone: %r" % me)
    r = raw(w, "GET", "/api/me", headers={"Cookie": "__Host-aurora_session=%s" % new_sid})
    eq(r.status, 200, "the new one works")
    # Another tab of that browser still holds the old session's CSRF token
    # and now sends the new cookie: its writes are refused (fail closed,
    # nothing written) until it reads the session again (a reload, or its
    # periodic session check), which gives it the new token (docs/console.md)
    tab = Session.__new__(Session)
    tab.w, tab.sid, tab.csrf = w, new_sid, old.csrf
    before = token_names(w)
    r = tab.req("POST", "/api/kubectl/tokens", {"cluster_name": "stale-" + secrets.token_hex(3)})
    eq((r.status, r.error_code), (403, "CSRF_FAILED"), "a write with the old tab's token: %r" % r)
    eq(token_names(w), before, "nothing written")
    g = tab.req("GET", SESSION, csrf=False, origin=False)
    eq(g.status, 200, "the tab reads the session again")
    check(g.get("csrf_token") != old.csrf, "and gets the new session's token")
    tab.csrf = g.get("csrf_token")
    r = tab.req("POST", "/api/kubectl/tokens", {"cluster_name": "fresh-" + secrets.token_hex(3)})
    eq(r.status, 201, "then its writes go through: %r" % r)


@test
def backend_headers_sign_in(t):
    w = sw()
    org, user = "org-console-%s" % secrets.token_hex(3), "user-console-%s" % secrets.token_hex(3)
    s = Session(w, headers={"X-Internal-Secret": w.secret, "X-User-ID": user, "X-Org-ID": org})
    eq((s.resp.get("auth"), s.resp.get("org_id"), s.resp.get("user_id")),
       ("internal_secret", org, user), "a backend session")
    me = s.me()
    eq((me.status, me.get("org_id"), me.get("user_id"), me.get("auth")),
       (200, org, user, "console_session"), "the cookie speaks for the named user")
    # a backend session is not the internal secret: internal routes refuse it
    r = s.req("POST", "/internal/kubectl/execute", {"cluster_id": "x", "command": "get pods"})
    eq(r.status, 401, "an internal route with a console cookie: %r" % r)
    for hdrs in ({"X-Internal-Secret": "wrong", "X-User-ID": user},
                 {"X-Internal-Secret": w.secret}):
        r = raw(w, "POST", SESSION, None, hdrs)
        eq(r.status, 401, "backend sign-in with %s: %r" % (sorted(hdrs), r))
        check("set-cookie" not in r.headers, "no cookie for a failed sign-in")
    r = raw(w, "POST", SESSION, None, {"X-Internal-Secret": w.secret, "X-User-ID": "bad id!"})
    eq(r.status, 400, "a malformed X-User-ID")


# ---- expiry and revocation ----------------------------------------------------------------------

@test(timeout=90)
def idle_timeout_ends_an_unused_session(t):
    # 10 s: no gap between two uses comes near it, also on a loaded machine
    w = t.world(extra_env={"AURORA_CONSOLE_SESSION_IDLE": "10"})
    # used every 0.2 s, it outlives its first idle deadline
    s = Session(w)
    first = epoch(s.resp.get("idle_expires_at"))
    last = None
    while time.time() < first + 2:
        r = s.req("GET", SESSION, csrf=False, origin=False)
        eq(r.status, 200, "a session in use stays alive: %r" % r)
        last = epoch(r.get("idle_expires_at"))
        time.sleep(0.2)  # the pace of a page's requests, not a wait for an event
    check(last > first, "use moved the idle deadline (%s -> %s)" % (first, last))
    # left alone, it ends at the deadline the server last reported: by the
    # server's clock, time(2), which reads the kernel's coarse clock and may
    # trail time.time() by a tick (a run asked at 25.005 s saw 24 there)
    wait_until(lambda: time.time() >= last + 0.1, 30, 0.05, "the idle deadline")
    me = s.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "idle session refused: %r" % me)
    eq(s.req("GET", SESSION, csrf=False).status, 401, "and GET session says so")


@test(timeout=90)
def timer_refreshes_do_not_keep_a_session_alive(t):
    """The console's timer-driven refreshes (X-Aurora-Poll: 1), its check of
    GET /api/console/session among them, are served but are not use: an
    open tab that only polls reaches the idle timeout."""
    # 10 s: some 6 s of refreshes, then 3 s with none before the deadline
    w = t.world(extra_env={"AURORA_CONSOLE_SESSION_IDLE": "10"})
    s = Session(w)
    deadline = epoch(s.resp.get("idle_expires_at"))
    polls, last = 0, 0.0
    # the last refresh is sent 3 s before the deadline: a request the server
    # reads after it (a fresh TLS connection on a loaded machine can take a
    # second or more) is refused, rightly, and is not what is tested here
    while time.time() < deadline - 3:
        sent = time.time()
        r = s.req("GET", "/api/kubectl/connections", csrf=False, origin=False,
                  extra={"X-Aurora-Poll": "1"})
        eq(r.status, 200, "a timer's refresh is served: %r" % r)
        # the console's check of the session itself, at its end: not use either
        r = s.req("GET", SESSION, csrf=False, origin=False, extra={"X-Aurora-Poll": "1"})
        eq(r.status, 200, "the session check is served: %r" % r)
        eq(epoch(r.get("idle_expires_at")), deadline, "the check did not move the idle deadline")
        polls, last = polls + 1, sent
        time.sleep(0.2)  # the pace of a page's timer, not a wait for an event
    # What shows it is when the last one was sent, not how many there were
    # (five did not always fit on a loaded machine): as use, one sent 6 s or
    # less before the deadline would have moved it 4 s or more past the check.
    check(polls >= 2 and last >= deadline - 6,
          "refreshed %d times, the last %.1f s before the deadline" % (polls, deadline - last))
    # any other value is an ordinary request (on another session: it is use)
    other = Session(w)
    for value in ("0", "yes", "", "1" * 300):
        r = raw(w, "GET", "/api/me", headers={"Cookie": "__Host-aurora_session=%s" % other.sid,
                                              "X-Aurora-Poll": value})
        eq(r.status, 200, "X-Aurora-Poll: %r: %r" % (value[:10], r))
    wait_until(lambda: time.time() >= deadline + 0.1, 30, 0.05, "the first idle deadline")
    r = s.req("GET", "/api/kubectl/connections", csrf=False, origin=False,
              extra={"X-Aurora-Poll": "1"})
    eq((r.status, r.error_code), (401, "UNAUTHORIZED"), "idle despite the refreshes: %r" % r)


@test(timeout=90)
def refused_writes_do_not_keep_a_session_alive(t):
    """A write refused for a missing or wrong CSRF token (what another
    site's page can make the browser send) is not use: it pushed the idle
    timeout back, so such a page kept a forgotten session alive (found in
    review).  A refused sign-out neither."""
    # 20 s, not 10: at 10 the refused writes had two seconds between the
    # margins on either side of them, too few for ten fresh TLS requests on
    # a loaded machine (one read after the deadline is a 401)
    w = t.world(extra_env={"AURORA_CONSOLE_SESSION_IDLE": "20"})
    s = Session(w)
    # a write that passes is use, as before: shown on a second session that
    # runs alongside, so that the test waits for one deadline, not two
    s2 = Session(w)
    deadline = epoch(s.resp.get("idle_expires_at"))
    first = epoch(s2.resp.get("idle_expires_at"))
    wait_until(lambda: time.time() >= first - 13, 30, 0.05, "seven seconds into the sessions")
    r = s2.req("POST", "/api/kubectl/tokens", {"cluster_name": "used-" + secrets.token_hex(3)})
    eq(r.status, 201, "an accepted write: %r" % r)
    before = token_names(w)
    refused = 0
    # Sent from 12 s to 5 s before the deadline, each kind at least once: had
    # they counted as use, the deadline would have moved 8 s or more past the
    # check below.  None is sent later: one the server reads after the
    # deadline is refused as 401, rightly, and is not what is tested here.
    wait_until(lambda: time.time() >= deadline - 12, 30, 0.05, "twelve seconds before the deadline")
    while time.time() < deadline - 5 and refused < 6:
        kw = [dict(csrf=False), dict(csrf=secrets.token_urlsafe(32)),
              dict(origin="https://evil.example")][refused % 3]
        r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": "refused"}, **kw)
        eq((r.status, r.error_code), (403, "CSRF_FAILED"), "a refused write: %r" % r)
        r = s.req("DELETE", SESSION, csrf=False)
        eq((r.status, r.error_code), (403, "CSRF_FAILED"), "a refused sign-out: %r" % r)
        refused += 1
    check(refused >= 3, "every kind of refused write sent in the window (%d)" % refused)
    check(time.time() < deadline, "%d refused writes sent before the deadline" % refused)
    eq(token_names(w), before, "no refused write created anything")
    wait_until(lambda: time.time() >= max(deadline, first) + 0.1, 40, 0.05, "the idle deadline")
    me = s.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "idle despite the refused writes: %r" % me)
    eq(s2.me().status, 200, "the accepted write moved the deadline")


@test(timeout=90)
def absolute_ttl_ends_a_used_session(t):
    w = t.world(extra_env={"AURORA_CONSOLE_SESSION_TTL": "4"})
    s = Session(w)
    eq(s.max_age, 4, "Max-Age follows the setting")
    expires = epoch(s.resp.get("expires_at"))
    seen = []

    def dead():
        r = s.me()
        seen.append((time.time(), r.status))
        return r.status == 401

    wait_until(dead, 30, 0.2, "the session to end at its absolute expiry")
    for at, status in seen[:-1]:
        eq(status, 200, "alive before the end")
    check(seen[-1][0] >= expires, "ended no earlier than expires_at (%s < %s)" % (seen[-1][0], expires))
    check(seen[-1][0] < expires + 10, "and soon after it")


@test
def revoked_key_ends_its_sessions(t):
    w = sw()
    uid, key = w.new_user()
    s1, s2 = Session(w, key=key), Session(w, key=key)
    keep = Session(w)  # another key's session
    eq((s1.me().status, s2.me().status), (200, 200), "both sessions live")
    w.admin("revoke-key", "--id", s1.resp.get("key_id"))
    for s in (s1, s2):
        me = s.me()
        eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "revoked key's session: %r" % me)
        r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": "revoked"})
        eq(r.status, 401, "and its writes")
    eq(keep.me().status, 200, "another key's session lives on")
    r = raw(w, "POST", SESSION, {"api_key": key})
    eq(r.status, 401, "a revoked key cannot sign in")


@test
def a_deleted_org_named_again_starts_without_sessions(t):
    """The backend provisions whatever organization and user it names: an
    organization deleted and named again with the same id (a user removed
    and named again) came back with the old backend console sessions alive
    until the next prune (found in review)."""
    w = sw()
    org, user = "org-reborn-%s" % secrets.token_hex(3), "user-reborn-%s" % secrets.token_hex(3)
    backend = {"X-Internal-Secret": w.secret, "X-User-ID": user, "X-Org-ID": org}
    s = Session(w, headers=backend)
    eq(s.me().status, 200, "a backend session")
    w.admin("delete-org", "--id", org)
    eq(s.me().status, 401, "ended with the organization")
    r = raw(w, "GET", "/api/me", headers=backend)
    eq((r.status, r.get("org_id")), (200, org), "the backend names the organization again: %r" % r)
    me = s.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "the old session stays ended: %r" % me)
    eq(s.req("GET", SESSION, csrf=False).status, 401, "GET session says so")
    # the same for a user removed from an organization and named again
    s = Session(w, headers=backend)
    eq(s.me().status, 200, "a new backend session")
    w.admin("remove-user", "--org", org, "--user", user)
    eq(raw(w, "GET", "/api/me", headers=backend).status, 200, "the user named again")
    me = s.me()
    eq((me.status, me.error_code), (401, "UNAUTHORIZED"), "the removed user's session stays ended")
    # an organization's deletion leaves other organizations' sessions be
    keep = Session(w)
    other = "org-gone-%s" % secrets.token_hex(3)
    Session(w, headers=dict(backend, **{"X-Org-ID": other}))
    w.admin("delete-org", "--id", other)
    eq(keep.me().status, 200, "another organization's session lives on")


@test
def another_tenants_session_reaches_nothing_here(t):
    w = sw()
    org_b, user_b, key_b = w.new_org()
    a, b = Session(w), Session(w, key=key_b)
    name = "tenant-a-%s" % secrets.token_hex(3)
    r = a.req("POST", "/api/kubectl/tokens", {"cluster_name": name})
    eq(r.status, 201, "org A's token")
    tid = r.get("token_id")
    eq(b.me().get("org_id"), org_b, "B's cookie speaks for org B")
    r = b.req("GET", "/api/me", csrf=False, origin=False, extra={"X-Org-ID": w.org_id})
    eq((r.status, r.error_code), (403, "ORG_MISMATCH"), "B's cookie naming org A: %r" % r)
    r = b.req("GET", "/api/kubectl/tokens", csrf=False)
    eq(r.status, 200, "B's list")
    check(all(x["cluster_name"] != name for x in r.json["tokens"]), "B does not see A's token")
    r = b.req("DELETE", "/api/kubectl/tokens/%s" % tid)
    eq(r.status, 404, "B cannot revoke A's token: %r" % r)
    r = b.req("DELETE", "/api/kubectl/tokens/%s" % tid, csrf=a.csrf)
    eq((r.status, r.error_code), (403, "CSRF_FAILED"), "nor with A's CSRF token")
    eq([x["status"] for x in w.get("/api/kubectl/tokens").json["tokens"] if x["id"] == tid],
       ["active"], "A's token untouched")


# ---- bad input ----------------------------------------------------------------------------------

@test
def bad_cookies(t):
    w = sw()
    s = Session(w)
    forged = secrets.token_urlsafe(32)
    cases = [
        ("duplicate", "__Host-aurora_session=%s; __Host-aurora_session=%s" % (s.sid, s.sid), 400),
        ("duplicate, one forged",
         "__Host-aurora_session=%s; __Host-aurora_session=%s" % (forged, s.sid), 400),
        # over HTTPS only the __Host- cookie counts: one without the prefix
        # could have been planted by a sibling host or a plain-HTTP page
        ("the unprefixed name", "aurora_session=%s" % s.sid, 401),
        ("too short", "__Host-aurora_session=%s" % s.sid[:-1], 400),
        ("too long", "__Host-aurora_session=%sA" % s.sid, 400),
        ("bad alphabet", "__Host-aurora_session=%s" % (s.sid[:-1] + "+"), 400),
        ("empty", "__Host-aurora_session=", 400),
        ("oversized", "__Host-aurora_session=" + "A" * 9000, 400),
        ("forged id", "__Host-aurora_session=%s" % forged, 401),
        ("the CSRF token as id", "__Host-aurora_session=%s" % s.csrf, 401),
        ("the hash of the id", "__Host-aurora_session=%s" % s.sid.lower(), 401),
        ("other cookies only", "theme=dark; sid=%s" % s.sid, 401),
        ("look-alike name", "Aurora_Session=%s" % s.sid, 401),
        ("look-alike prefix", "__host-aurora_session=%s" % s.sid, 401),
        ("many other cookies", "; ".join("c%d=%s" % (i, "v" * 40) for i in range(200)), 401),
    ]
    for what, cookie, want in cases:
        r = raw(w, "GET", "/api/me", headers={"Cookie": cookie})
        eq(r.status, want, "%s cookie on /api/me: %r" % (what, r))
        r = raw(w, "GET", SESSION, headers={"Cookie": cookie})
        eq(r.status, want, "%s cookie on GET session: %r" % (what, r))
    # our own session among other applications' cookies works
    r = raw(w, "GET", "/api/me",
            headers={"Cookie": "theme=dark; x=\"a,b\"; __Host-aurora_session=%s; lang=en" % s.sid})
    eq(r.status, 200, "the session among other cookies: %r" % r)
    eq(s.me().status, 200, "the real session untouched by the attempts")


@test
def bad_sign_in_input(t):
    w = sw()
    cases = [
        ("a wrong key", {"api_key": "aurora_key_" + secrets.token_urlsafe(32)}, 401),
        ("an agent token as key", {"api_key": "aurora_kubectl_" + "A" * 64}, 401),
        ("no api_key", {}, 400),
        ("an empty key", {"api_key": ""}, 400),
        ("a key that is not a string", {"api_key": 12}, 400),
        ("an oversized key", {"api_key": "k" * 300}, 400),
        ("not JSON", "api_key=x", 400),
        ("truncated JSON", '{"api_key": "aurora_key_', 400),
        ("a JSON array", [w.api_key], 400),
        ("a NUL in the key", '{"api_key": "%s\\u0000x"}' % w.api_key, 400),
    ]
    for what, body, want in cases:
        r = raw(w, "POST", SESSION, body)
        eq(r.status, want, "sign-in with %s: %r" % (what, r))
        check("set-cookie" not in r.headers, "no cookie after %s" % what)
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
                  "application/jsonx", None):
        # what an HTML form of another site can send without a preflight
        r = raw(w, "POST", SESSION, json.dumps({"api_key": w.api_key}).encode(),
                {"Content-Type": ctype} if ctype else {})
        eq((r.status, r.error_code), (415, "UNSUPPORTED_MEDIA_TYPE"),
           "sign-in as %s: %r" % (ctype, r))
        check("set-cookie" not in r.headers, "no cookie after a %s sign-in" % ctype)
    r = raw(w, "POST", SESSION, json.dumps({"api_key": w.api_key}).encode(),
            {"Content-Type": "application/json; charset=utf-8"})
    eq(r.status, 201, "application/json with a charset: %r" % r)
    r = raw(w, "POST", SESSION, None, {"Content-Type": "application/json"})
    eq(r.status, 400, "sign-in without a body")
    r = raw(w, "POST", SESSION, b"x" * (2 << 20))
    eq(r.status, 413, "an oversized body")
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test(timeout=90)
def brute_force_is_rate_limited(t):
    w = t.world(extra_env={"AURORA_CONSOLE_SIGNIN_LIMIT": "5"})

    def run():
        # a successful sign-in does not count
        for _ in range(7):
            Session(w)
        statuses = []
        # at most 5 failures fit in one minute; 12 attempts cross at most one
        # minute boundary, so one of them must be refused.  Each claims another
        # client in X-Forwarded-For: from a peer not in AURORA_TRUSTED_PROXIES
        # (none here) the header is the client's own word, and buys nothing
        for _ in range(12):
            r = raw(w, "POST", SESSION, {"api_key": "aurora_key_" + secrets.token_urlsafe(32)},
                    {"X-Forwarded-For": random_v4()})
            statuses.append(r.status)
            if r.status == 429:
                break
        eq(statuses[-1], 429, "a brute force ends in 429: %s" % statuses)
        check(set(statuses[:-1]) == {401}, "401 until then: %s" % statuses)
        eq(r.error_code, "RATE_LIMITED", "code")
        retry = int(r.headers.get("retry-after", "0"))
        check(1 <= retry <= 60, "Retry-After within the minute: %r" % r.headers)
        # failures from a shared address (a NAT, an office) do not lock the
        # rightful user out: the right key signs in while the address is limited
        s = Session(w)
        eq(s.me().status, 200, "the right key signs in while the address is limited")
        r = raw(w, "POST", SESSION, {"api_key": "aurora_key_" + secrets.token_urlsafe(32)})
        eq((r.status, r.error_code), (429, "RATE_LIMITED"), "and the next wrong key is still refused")
        eq(w.get("/api/me").status, 200, "bearer requests are not limited")
        # nor the trusted backend's sign-ins: behind one ingress every client has its
        # address, and wrong keys from anyone made the backend's sign-ins 429
        b = raw(w, "POST", SESSION, None, {"X-Internal-Secret": w.secret,
                                           "X-User-ID": "user-rl-%s" % secrets.token_hex(3),
                                           "X-Org-ID": "org-rl-%s" % secrets.token_hex(3)})
        eq(b.status, 201, "the backend signs in while the address is limited for keys: %r" % b)
    # the window is per minute: "still refused" holds only inside one
    within_one_window(60, run)


@test(timeout=90)
def store_failures_keep_no_signin_slot(t):
    """A backend sign-in takes its rate-limit slot before the secret is
    checked and gives it back when it succeeds; one that fails because the
    store does (503, here a trigger refusing the new organization's row) is
    no failed attempt of the caller's either: it gave its slot back too.
    Kept, three such 503s used up a limit of 2 and the backend's next
    sign-in was 429."""
    w = t.world(extra_env={"AURORA_CONSOLE_SIGNIN_LIMIT": "2"})
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    with con:
        con.execute("CREATE TRIGGER refuse_boom BEFORE INSERT ON orgs WHEN NEW.id LIKE 'org-boom-%'"
                    " BEGIN SELECT RAISE(ABORT, 'the store refuses'); END")
    con.close()

    def backend(org):
        return raw(w, "POST", SESSION, None, {"X-Internal-Secret": w.secret,
                                              "X-User-ID": "user-%s" % secrets.token_hex(3),
                                              "X-Org-ID": org})

    def run():
        for i in range(3):
            r = backend("org-boom-%s" % secrets.token_hex(3))
            eq((r.status, r.error_code), (503, "STORE_UNAVAILABLE"),
               "sign-in %d while the store fails: %r" % (i + 1, r))
            check("set-cookie" not in r.headers, "no cookie when the store failed")
        r = backend("org-fine-%s" % secrets.token_hex(3))
        eq(r.status, 201, "the backend signs in once the store works again: %r" % r)
        # wrong secrets still count: the limit of 2 is there
        for _ in range(2):
            eq(raw(w, "POST", SESSION, None, {"X-Internal-Secret": "wrong", "X-User-ID": "u"}).status,
               401, "a wrong secret")
        eq(backend("org-fine-%s" % secrets.token_hex(3)).status, 429, "past the limit")
    within_one_window(60, run)


def random_v4():
    """An address of the benchmarking range (198.18.0.0/15), fresh for each run."""
    return "198.18.%d.%d" % (secrets.randbelow(256), 1 + secrets.randbelow(254))


@test(timeout=120)
def forwarded_clients_have_their_own_signin_limit(t):
    """Behind a proxy on this host (ngrok, an ingress) every request's socket
    peer is 127.0.0.1: with it in AURORA_TRUSTED_PROXIES, each client its
    X-Forwarded-For names has its own failed sign-ins (the default 10 a
    minute), and a limited client does not make anyone else's sign-in 429."""
    w = t.world(extra_env={"AURORA_TRUSTED_PROXIES": "127.0.0.1/32"})

    def wrong_key(client):
        return raw(w, "POST", SESSION, {"api_key": "aurora_key_" + secrets.token_urlsafe(32)},
                   {"X-Forwarded-For": client})

    def run():
        a, b = random_v4(), random_v4()
        while b == a:
            b = random_v4()
        statuses = [wrong_key(a).status for _ in range(10)]
        eq(statuses, [401] * 10, "ten failed sign-ins from client A")
        r = wrong_key(a)
        eq((r.status, r.error_code), (429, "RATE_LIMITED"), "A's eleventh is refused")
        # the client the proxy appended, not what the client wrote left of it
        r = wrong_key("%s, %s" % (b, a))
        eq(r.status, 429, "A claiming to forward for B is still A")
        r = wrong_key(b)
        eq(r.status, 401, "B's wrong key is judged, not 429: %r" % r)
        r = raw(w, "POST", SESSION, {"api_key": w.api_key}, {"X-Forwarded-For": b})
        eq(r.status, 201, "B signs in while A is limited: %r" % r)
        # the proxy's own address is a bucket of its own too: requests that
        # name no client are not charged to A
        r = raw(w, "POST", SESSION, {"api_key": "aurora_key_" + secrets.token_urlsafe(32)})
        eq(r.status, 401, "a request without X-Forwarded-For is the proxy's, not A's")
        r = wrong_key(a)
        eq(r.status, 429, "A is still limited")
        # the log lines name the client, not the proxy
        log = w.server.log_text()
        contains(log, "console sign-in from %s refused: 10 failed attempts this minute" % a,
                 "the refusal names client A")
    within_one_window(60, run)


# ---- the pages ------------------------------------------------------------------------------------

def check_console_headers(r, what, landing=False):
    eq(r.headers.get("content-security-policy"), CSP, "%s: CSP" % what)
    eq(r.headers.get("x-content-type-options"), "nosniff", "%s: nosniff" % what)
    eq(r.headers.get("x-frame-options"), "DENY", "%s: framing" % what)
    eq(r.headers.get("referrer-policy"), "same-origin", "%s: referrer policy" % what)
    eq(r.headers.get("cross-origin-resource-policy"), "same-origin", "%s: CORP" % what)
    # a window that opened the console (another site's page) keeps no hold on it
    # (navigating it elsewhere later, counting its frames); popups the console
    # opens itself (OAuth) stay its own
    eq(r.headers.get("cross-origin-opener-policy"),
       None if landing else "same-origin-allow-popups", "%s: COOP" % what)


@test
def pages_and_assets(t):
    w = sw()
    for path in ("/", "/connectors", "/clusters", "/clusters/cluster-0123456789abcdef", "/run",
                 "/audit", "/incidents", "/incidents/inc_0123", "/signin",
                 "/connectors?provider=gcp&status=success", "/connectors/?provider=gcp",
                 "/connectors?provider=&status=x",
                 "/connectors/", "/clusters/c-1/", "/clusters?provider=gcp"):
        r = raw(w, "GET", path)
        eq(r.status, 200, "GET %s" % path)
        eq(r.body, INDEX, "GET %s answers index.html" % path)
        eq(r.headers.get("content-type"), "text/html; charset=utf-8", "%s: type" % path)
        eq(r.headers.get("cache-control"), "no-cache", "%s: revalidated" % path)
        # where an OAuth popup lands: no COOP, or the popup, back from the
        # provider, would lose the console that opened it (its page then
        # moves itself to /connectors when no console page opened it)
        check_console_headers(r, path, landing=bool(re.match(r"^/connectors\?provider=[^&]", path)))
    r = raw(w, "GET", "/console/app.js")
    eq((r.status, r.body), (200, APP_JS), "app.js")
    eq(r.headers.get("content-type"), "text/javascript; charset=utf-8", "app.js type")
    check_console_headers(r, "app.js")
    etag = r.headers.get("etag")
    check(re.match(r'^"[0-9a-f]{32}"$', etag or ""), "a strong ETag: %r" % etag)
    r = raw(w, "GET", "/console/app.js", headers={"If-None-Match": etag})
    eq((r.status, r.body), (304, b""), "unchanged: 304")
    r = raw(w, "GET", "/console/app.js", headers={"If-None-Match": '"0000"'})
    eq(r.status, 200, "another tag: the file")
    eq(raw(w, "GET", "/console/index.html").body, INDEX, "index.html is an asset too")
    # HEAD: GET's status and headers, no body; the connection stays usable
    for path, body in (("/connectors", INDEX), ("/console/app.js", APP_JS)):
        g, hd = raw(w, "GET", path), raw(w, "HEAD", path)
        eq((hd.status, hd.body), (200, b""), "HEAD %s: 200 without a body" % path)
        for k in ("content-type", "content-length", "etag", "content-security-policy",
                  "cache-control"):
            eq(hd.headers.get(k), g.headers.get(k), "HEAD %s: %s as GET's" % (path, k))
        eq(int(hd.headers.get("content-length")), len(body), "HEAD %s: the body's length" % path)
    eq(raw(w, "HEAD", "/console/nope.js").status, 404, "HEAD of an unknown file")
    css = raw(w, "GET", "/console/app.css")
    eq((css.status, css.headers.get("content-type")), (200, "text/css; charset=utf-8"), "app.css")
    # the access log and the metrics name these requests "console", not "unmatched"
    wait_until(lambda: "route=console status=304" in w.server.log_text(), 10, 0.05,
               "the access log line of the 304")
    # the pages carry no inline script or style (the CSP forbids them)
    check(not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=", INDEX),
          "index.html has no inline script or style")


@test
def unknown_files_and_traversal_refused(t):
    w = sw()
    makefile = open(os.path.join(ROOT, "Makefile"), "rb").read()[:40]
    for path in ("/console/nope.js", "/console/", "/console", "/console/app.js/",
                 "/console/APP.JS", "/console/.hidden",
                 "/console/../Makefile", "/console/..%2fMakefile", "/console/%2e%2e/Makefile",
                 "/console/..%2f..%2f..%2fetc%2fpasswd", "/console/../../../../etc/passwd",
                 "/console//etc/passwd", "/console/assets/app.js", "/console/embed.sh",
                 "/console/%2e%2e%5cMakefile", "/console/..\\Makefile", "/console/%00app.js"):
        r = raw(w, "GET", path)
        check(r.status in (400, 404), "GET %s refused: %r" % (path, r))
        check(b"root:" not in r.body and makefile not in r.body, "%s leaks no file" % path)
        if r.status == 404 and path.startswith("/console/") and ".." not in path and "%2e" not in path:
            check_console_headers(r, path)
    # lws fails the parse on a NUL after a non-'/' and closes the connection
    # (test_http_edge.py): no answer at all, and certainly no file
    try:
        r = raw(w, "GET", "/console/app.js%00.html")
        check(r.status in (400, 404), "a NUL inside the name: %r" % r)
    except ConnectionError:
        pass
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test
def existing_routes_unaffected(t):
    w = sw()
    r = w.get("/health", auth=False)
    eq(r.status, 200, "/health")
    check(r.json is not None, "/health is still JSON")
    for path in ("/login", "/callback"):
        r = raw(w, "GET", path)
        check(r.body != INDEX, "%s is not the console page" % path)
        check("content-security-policy" not in r.headers or r.status != 200,
              "%s keeps its own answer" % path)
    r = raw(w, "GET", "/api/me")
    eq(r.status, 401, "the API without credentials")
    eq(r.headers.get("www-authenticate"), 'Bearer realm="aurora"', "the API's 401")
    for method in ("POST", "PUT", "DELETE"):
        r = raw(w, method, "/", {})
        check(r.status in (404, 405), "%s / is no page: %r" % (method, r))
    eq(raw(w, "GET", "/nope").status, 404, "an unknown path is still 404")
    r = raw(w, "GET", "/connectors/extra")
    eq(r.status, 404, "below a page is no page")


# ---- PostgreSQL -------------------------------------------------------------------------------

@test(timeout=120)
def session_life_on_postgres(t):
    pg = Postgres()
    t.defer(pg.destroy)
    w = t.world(extra_env={"DATABASE_URL": pg.url})
    uid, key = w.new_user()
    s = Session(w, key=key)
    eq(s.me().status, 200, "signed in on PostgreSQL")
    r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": "pg-console"})
    eq(r.status, 201, "a write with the token")
    r = s.req("POST", "/api/kubectl/tokens", {"cluster_name": "pg-console-2"}, csrf=False)
    eq(r.status, 403, "a write without")
    other = Session(w)
    eq(other.req("DELETE", SESSION).status, 204, "sign-out")
    eq(other.me().status, 401, "signed out")
    w.admin("revoke-key", "--id", s.resp.get("key_id"))
    eq(s.me().status, 401, "revoked key's session ended")


if __name__ == "__main__":
    main()
