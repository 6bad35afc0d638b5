#!/usr/bin/env python3
"""Request targets (path and query) a reader could take two ways, sent as exact
bytes over TLS.  libwebsockets 4.1.6 decodes the target before the server sees
it; what it lets through, the server refuses with 400 BAD_REQUEST when another
reader (a proxy, the provider that built a callback URL) could read it
differently.  Every case ends with the server still serving, on the same
connection when the answer allows it."""

import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time

from harness import (SERVER_BIN, _base_env, check, contains, eq, main, parse_head, suite_user,
                     suite_world, test, wait_until)

STATE = {}


def world():
    w = suite_world()
    STATE["uid"], STATE["key"] = suite_user()
    return w


class Conn:
    """One TLS connection; requests written as exact bytes, answers read by
    Content-Length (the server never streams these)."""

    def __init__(self, w, timeout=15):
        sock = socket.create_connection(("127.0.0.1", w.port), timeout)
        self.s = w.ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        self.buf = b""
        self.closed = False
        self.timeout = timeout

    def _fill(self, deadline):
        if self.closed:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.closed = True

    def response(self):
        """(status, headers, body) of the next answer, or None when the server
        closed the connection (or said nothing) first."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status, hdrs = parse_head(head)
        n = int(hdrs.get("content-length", "0"))
        self.buf = rest
        while len(self.buf) < n:
            if not self._fill(deadline):
                break
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def wait_closed(self):
        deadline = time.monotonic() + self.timeout
        while not self.closed and self._fill(deadline):
            pass
        return self.closed

    def close(self):
        self.s.close()


def get_head(target, key=None, extra=()):
    lines = ["GET %s HTTP/1.1" % target, "Host: 127.0.0.1"]
    if key:
        lines.append("Authorization: Bearer %s" % key)
    return ("\r\n".join(lines + list(extra)) + "\r\n\r\n").encode("latin-1")


def json_of(body):
    try:
        return json.loads(body.decode())
    except ValueError:
        return None


def serves_on(c, what):
    """A normal request on connection c is answered normally."""
    c.send(get_head("/api/kubectl/connections", STATE["key"]))
    r = c.response()
    check(r is not None, "%s: no answer to a normal request on the same connection" % what)
    eq(r[0], 200, "%s: a normal request on the same connection (%r)" % (what, r))


def still_serving(w, what):
    r = w.get("/health", auth=False)
    eq(r.status, 200, "after %s: /health" % what)
    r = w.get("/api/kubectl/connections", key=STATE["key"])
    eq(r.status, 200, "after %s: GET /api/kubectl/connections" % what)


def expect_bad_request(w, target, what, key=None, closes=False):
    """target is refused 400 BAD_REQUEST (JSON), and the connection keeps serving
    (or, when `closes`, is closed after the answer)."""
    c = Conn(w)
    try:
        c.send(get_head(target, key or STATE["key"]))
        r = c.response()
        check(r is not None, "%s: no answer (%r)" % (what, target))
        status, hdrs, body = r
        eq(status, 400, "%s: status for %r (%r)" % (what, target, body[:300]))
        eq(hdrs.get("content-type"), "application/json", "%s: content type" % what)
        j = json_of(body)
        check(isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"],
              "%s: the error body must be JSON with an `error` message" % what, body)
        eq(j.get("error_code"), "BAD_REQUEST", "%s: error_code (%r)" % (what, j))
        if closes:
            eq(hdrs.get("connection", "").lower(), "close", "%s: Connection: close" % what)
            check(c.wait_closed(), "%s: the connection must be closed after the answer" % what)
        else:
            serves_on(c, what)
    finally:
        c.close()
    return j


def expect_served(w, target, what, want=200):
    c = Conn(w)
    try:
        c.send(get_head(target, STATE["key"]))
        r = c.response()
        check(r is not None, "%s: no answer" % what)
        eq(r[0], want, "%s: status for %r (%r)" % (what, target, r[2][:300]))
        serves_on(c, what)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# ';' and '&': lws 4.1.6 splits on both and keeps no trace of which it was
# ---------------------------------------------------------------------------
@test
def query_semicolon_is_refused_not_split(t):
    w = world()
    # "installation_id=1;2" would read as installation_id=1 (and a stray "2")
    for target in ("/api/kubectl/connections?installation_id=1;2",
                   "/api/connectors/github/setup?installation_id=1;2&state=x",
                   "/api/kubectl/connections?x=1;y"):
        j = expect_bad_request(w, target, "unencoded ';' in the query")
        check("%3B" in j["error"], "the error must say how to send a ';'", j)
    # a ';' that separates two whole arguments is read as '&' (no other reading
    # is left to lws), unless it repeats a name
    expect_bad_request(w, "/api/kubectl/connections?state=a;state=b", "'state' twice via ';'")
    # encoded, ';' is data: the request goes through
    expect_served(w, "/api/kubectl/connections?x=1%3B2", "an encoded ';' (%3B)")
    still_serving(w, "';' in queries")


@test
def query_repeated_or_valueless_arguments(t):
    w = world()
    for target, what in (("/api/kubectl/connections?a=1&a=2", "a name twice"),
                         ("/api/kubectl/connections?a=1&b=2&a=1", "a name twice, same value"),
                         ("/api/kubectl/connections?flag", "an argument without '='"),
                         ("/api/kubectl/connections?a=1&flag", "a second argument without '='"),
                         ("/api/kubectl/connections?=1", "an empty name")):
        expect_bad_request(w, target, what)
    # empty arguments are nothing, and a name that prefixes another is another name
    for target in ("/api/kubectl/connections?", "/api/kubectl/connections?a=1&&b=2&",
                   "/api/kubectl/connections?a=1&ab=2&b=", "/api/kubectl/connections?a=x%3Dy=z"):
        expect_served(w, target, "query %r" % target)
    still_serving(w, "repeated query arguments")


@test
def query_control_characters_refused(t):
    w = world()
    for enc in ("%09", "%01", "%1B", "%7F"):
        expect_bad_request(w, "/api/kubectl/connections?state=a%sb" % enc,
                           "control character %s in a query value" % enc)
    expect_bad_request(w, "/api/kubectl/connections?st%09ate=ab", "control character in a name")
    # a decoded CR or LF ends the request line for lws (the rest is read as a header
    # line, and the request as HTTP/1.0): refused, and the connection closed
    for enc in ("%0A", "%0D", "%0D%0A"):
        expect_bad_request(w, "/api/kubectl/connections?state=a%sb" % enc,
                           "%s in a query value" % enc, closes=True)
    # lws ends the request line at a decoded LF and reads the rest as a header line:
    # a header hidden from any proxy in front (which sees one URL)
    for target in ("/api/kubectl/connections?a=%0AX-Org-ID:org_other",
                   "/api/kubectl/connections?a=%0D%0AAuthorization:Bearer%20x",
                   "/api/kubectl/connections/x%0Ay"):
        expect_bad_request(w, target, "a header line hidden in the target", closes=True)
    # on a public route too (no auth)
    expect_bad_request(w, "/gcp/login?a=%09", "control character on /gcp/login")
    still_serving(w, "control characters in queries")


@test
def path_semicolon_ampersand_and_control_characters(t):
    w = world()
    # lws would hand over "/api/kubectl/connections" and drop ";x" / "&x"
    for target in ("/api/kubectl/connections;x", "/api/kubectl/connections&x",
                   "/api/kubectl/connections/abc;def", "/api/kubectl/connections;"):
        j = expect_bad_request(w, target, "unencoded ';'/'&' in the path")
        check("%3B" in j["error"], "the error must say how to send a ';'", j)
    for target in ("/api/kubectl/connections/a%09b", "/api/kubectl/connections/a%7F",
                   "/api/kubectl/connections/a%1Fb"):
        expect_bad_request(w, target, "control character in the path")
    expect_bad_request(w, "/api/kubectl/connections%0A", "LF in the path", closes=True)
    # a "%00" just after a '/' gets past lws and would cut the path short
    for target in ("/api/kubectl/connections/%00abc", "/api/kubectl/connections/.%00abc",
                   "/api/kubectl/%00/connections"):
        expect_bad_request(w, target, "%00 after a '/' in the path")
    # encoded, they are data: the router sees the whole segment (no GET route there)
    c = Conn(w)
    try:
        c.send(get_head("/api/kubectl/connections/abc%3Bdef", STATE["key"]))
        r = c.response()
        check(r is not None, "no answer for an encoded ';' in the path")
        j = json_of(r[2]) or {}
        eq((r[0], j.get("error_code")), (405, "METHOD_NOT_ALLOWED"),
           "an encoded ';' in the path reaches the router (%r)" % (r,))
        check("/api/kubectl/connections/abc;def" in j.get("error", ""),
              "the router must see the path with its ';'", j)
        serves_on(c, "an encoded ';' in the path")
    finally:
        c.close()
    still_serving(w, "';' in paths")


@test
def bad_query_with_body_closes_after_answer(t):
    """A refused target on a request with a body: 400, and the connection is closed
    (the body was not read, what follows cannot be trusted to be a request)."""
    w = world()
    body = json.dumps({"cluster_name": "never-created"}).encode()
    head = ("POST /api/kubectl/tokens?a=1;2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (STATE["key"], len(body))).encode()
    c = Conn(w)
    try:
        c.send(head + body)
        r = c.response()
        check(r is not None, "no answer")
        eq(r[0], 400, "status (%r)" % (r,))
        eq((json_of(r[2]) or {}).get("error_code"), "BAD_REQUEST", "error_code")
        eq(r[1].get("connection", "").lower(), "close", "Connection: close")
        check(c.wait_closed(), "the connection must be closed after the answer")
    finally:
        c.close()
    r = w.get("/api/kubectl/tokens", key=STATE["key"])
    eq(r.status, 200, "list tokens")
    names = [x.get("cluster_name") for x in r.json.get("tokens", [])]
    check("never-created" not in names, "the refused request ran", names)
    still_serving(w, "a refused target with a body")


# ---------------------------------------------------------------------------
# What lws 4.1.6 refuses before the server sees the request (docs/security.md):
# these pin down that it stays a refusal and never takes the server down.
# ---------------------------------------------------------------------------
@test
def nul_in_target_closes_without_answer(t):
    """lws fails the parse on a decoded NUL ("%00") and closes the connection: no
    answer can be given (no callback runs before), nothing reaches a route."""
    w = world()
    for target in ("/api/connectors/status?x=%00", "/gcp/login?a=%00",
                   "/api/kubectl/connections?token=a%00b", "/api/kubectl/connections/a%00"):
        c = Conn(w)
        try:
            c.send(get_head(target, STATE["key"]))
            r = c.response()
            eq(r, None, "%r: lws closes without an answer" % target)
            check(c.closed, "%r: the connection must be closed" % target)
        finally:
            c.close()
        still_serving(w, "%%00 in %r" % target)


@test
def malformed_percent_encoding_refused_by_lws(t):
    """lws answers a '%' not followed by two hex digits with its own 403 page and
    closes the connection; the request never reaches a route."""
    w = world()
    for target in ("/api/kubectl/connections?token=%ZZ", "/api/kubectl/connections?token=%",
                   "/api/kubectl/connections?token=%4", "/api/kubectl/connections?token=%4G",
                   "/api/kubectl/connections/%ZZ", "/api/kubectl/connections/%",
                   "/gcp/login?a=%G0"):
        c = Conn(w)
        try:
            c.send(get_head(target, STATE["key"]))
            r = c.response()
            check(r is not None, "%r: no answer" % target)
            eq(r[0], 403, "%r: status (%r)" % (target, r))
            check(c.wait_closed(), "%r: lws closes the connection after its 403" % target)
        finally:
            c.close()
        still_serving(w, "malformed %%-encoding in %r" % target)


@test(timeout=90)
def idle_keepalive_lasts_past_a_clients_pool_then_closes(t):
    """An idle kept-alive connection stays open for AURORA_HTTP_KEEPALIVE_S
    (lws's own default was 5 s, the same as Node's HTTP agent: a client
    reusing a connection just as the server closed it got a reset, a proxy
    would answer 502), then the server closes it."""
    # 6.5 s more than the quiet spell below: the server's idle time starts
    # when it wrote the answer, the spell when the test read it, which on a
    # loaded machine may be a second or more later.
    keep = 12
    w = t.world("keepalive", extra_env={"AURORA_HTTP_KEEPALIVE_S": str(keep)})
    c = Conn(w, timeout=30)
    c.send(get_head("/health"))
    eq((c.response() or [None])[0], 200, "first request")
    # nothing from the server for 5.5 s: the connection is neither closed
    # nor answered (lws's old default closed it at 5 s)
    quiet_until = time.monotonic() + 5.5
    check(not c._fill(quiet_until) and not c.closed,
          "the server closed or wrote on an idle kept-alive connection before 5.5 s")
    # the clock starts before the request: the server's idle time starts
    # once it wrote the answer, which the test may read a second or more
    # later on a loaded machine (timed from the read, the idle time looked
    # that much shorter than the server's)
    idle_from = time.monotonic()
    c.send(get_head("/health"))
    eq((c.response() or [None])[0], 200, "a request on the connection after 5.5 s idle")
    check(c.wait_closed(), "the server never closed the idle connection")
    idle = time.monotonic() - idle_from
    # lws checks its timeouts once a second
    check(keep - 1.5 <= idle <= keep + 10, "closed after %.1f s idle (setting %d s)" % (idle, keep))
    t.note("idle connection closed after %.1f s (AURORA_HTTP_KEEPALIVE_S=%d)" % (idle, keep))
    c.close()
    eq(w.get("/health", auth=False).status, 200, "still serving")


def raw_head(w, target, key=None):
    """The header block of one GET's answer, as sent (repeats kept)."""
    c = Conn(w)
    try:
        c.send(get_head(target, key, ("Connection: close",)))
        deadline = time.monotonic() + c.timeout
        while b"\r\n\r\n" not in c.buf and c._fill(deadline):
            pass
        check(b"\r\n\r\n" in c.buf, "an answer to %s" % target, c.buf[:200])
        return [ln.decode("latin-1") for ln in c.buf.partition(b"\r\n\r\n")[0].split(b"\r\n")]
    finally:
        c.close()


def header_values(lines, name):
    return [ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() == name]


@test
def api_answers_are_not_sniffed_or_cached(t):
    """Every API answer (an error too) says nosniff and no-store, once; the
    console's own caching of its assets is left as it sets it."""
    w = world()
    for target, key in (("/api/me", STATE["key"]), ("/api/kubectl/tokens", STATE["key"]),
                        ("/api/no-such-route", STATE["key"]), ("/api/me", None)):
        lines = raw_head(w, target, key)
        eq(header_values(lines, "x-content-type-options"), ["nosniff"], "%s: nosniff once" % target)
        eq(header_values(lines, "cache-control"), ["no-store"], "%s: no-store once" % target)
    lines = raw_head(w, "/console/app.js")
    check(lines[0].split()[1] == "200", "console asset served", lines[0])
    eq(header_values(lines, "x-content-type-options"), ["nosniff"], "console: nosniff once")
    eq(header_values(lines, "cache-control"), ["no-cache"], "console: its own revalidation kept")


@test
def favicon_is_the_consoles_icon(t):
    """Browsers fetch /favicon.ico by themselves on pages without an icon link
    (the JSON answer of an OAuth callback): it is the console's icon, with
    the console's headers, not a 404."""
    w = world()
    lines = raw_head(w, "/favicon.ico")
    eq(lines[0].split()[1], "200", "/favicon.ico served")
    eq(header_values(lines, "content-type"), ["image/svg+xml"], "the icon's type")
    eq(header_values(lines, "x-content-type-options"), ["nosniff"], "nosniff once")
    icon = w.get("/favicon.ico", auth=False)
    same = w.get("/console/favicon.svg", auth=False)
    eq(icon.status, 200, "GET /favicon.ico")
    check(icon.body and icon.body == same.body, "the same bytes as /console/favicon.svg")
    eq(w.get("/favicon.png", auth=False).status, 404, "no other name at the root")

# ---------------------------------------------------------------------------
# X-Forwarded-For: whom a request is from behind a proxy (AURORA_TRUSTED_PROXIES)
# ---------------------------------------------------------------------------
def access_fields(w, rid):
    """The fields of the text access-log line of the request sent with
    X-Request-ID rid."""
    def find():
        for ln in w.server.log_text().splitlines():
            if " request method=" in ln and ("request_id=%s " % rid) in ln + " ":
                return dict(re.findall(r"(\w+)=(\S+)", ln.split(" request ", 1)[1]))
        return None
    return wait_until(find, 15, 0.05, "the access log line of request %s" % rid)


def forwarded(w, key, *xff_lines, want=200):
    """GET /api/me with these X-Forwarded-For lines (each one header line, as
    written): the access log's fields for it."""
    rid = "xff-" + secrets.token_hex(8)
    c = Conn(w)
    try:
        c.send(get_head("/api/me", key, ("X-Request-ID: " + rid,) +
                        tuple("X-Forwarded-For: " + v for v in xff_lines)))
        r = c.response()
        check(r is not None, "an answer with X-Forwarded-For %r" % (xff_lines,))
        eq(r[0], want, "status with X-Forwarded-For %r (%r)" % (xff_lines, r[2][:200]))
    finally:
        c.close()
    return access_fields(w, rid)


@test
def forwarded_for_ignored_from_an_untrusted_peer(t):
    """With AURORA_TRUSTED_PROXIES unset (the default), X-Forwarded-For is the
    client's own word: the access log names the socket peer alone."""
    w = world()
    f = forwarded(w, STATE["key"], "203.0.113.9")
    check(f.get("peer", "").endswith("127.0.0.1"), "peer= is the socket peer", f)
    check("client" not in f, "no client= from an untrusted peer's header", f)
    f = forwarded(w, STATE["key"], "203.0.113.9", "198.51.100.1")
    check("client" not in f, "nor from several lines", f)


@test(timeout=90)
def forwarded_client_named_behind_a_trusted_proxy(t):
    """With 127.0.0.1/32 trusted, the access log keeps the socket peer in peer=
    and adds the client in client=: the right-most untrusted entry of
    X-Forwarded-For, its header lines read as one list in order."""
    w = t.world(extra_env={"AURORA_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1/32"})
    k = w.api_key
    f = forwarded(w, k, "198.51.100.1, 203.0.113.9")
    eq(f.get("client"), "203.0.113.9", "the entry the proxy appended, not the client's own (%r)" % f)
    check(f.get("peer", "").endswith("127.0.0.1"), "peer= stays the socket peer", f)
    eq(forwarded(w, k, "203.0.113.9, 10.1.2.3").get("client"), "203.0.113.9",
       "a trusted proxy's entry is skipped")
    eq(forwarded(w, k, "[2001:db8::1]:443").get("client"), "2001:db8::1", "an IPv6 client")
    # repeated lines: lws joins them in order (the first pair tells the order
    # from "the first line only", the second from "the last line only")
    eq(forwarded(w, k, "203.0.113.7", "203.0.113.8, 127.0.0.1").get("client"), "203.0.113.8",
       "two lines, the client on the second")
    eq(forwarded(w, k, "203.0.113.7", "127.0.0.1").get("client"), "203.0.113.7",
       "two lines, the client on the first")
    # nothing usable: the socket peer, and the request served as ever
    for lines in (("",), ("203.0.113.9, bogus",), ("unknown",), ("10.0.0.1, 127.0.0.1",),
                  ("203.0.113.9, " * 400 + "203.0.113.10",), ()):
        f = forwarded(w, k, *lines)
        check("client" not in f, "no client= for X-Forwarded-For %.60r" % (lines,), f)
    # the log lines that name a requester name the client
    rid = secrets.token_hex(4)
    r = w.request("GET", "/api/me", auth=False,
                  headers={"X-Internal-Secret": "wrong-" + rid, "X-User-ID": "u-" + rid,
                           "X-Org-ID": "o-" + rid, "X-Forwarded-For": "203.0.113.77"})
    eq(r.status, 401, "a wrong backend secret")
    wait_until(lambda: "wrong X-Internal-Secret from 203.0.113.77" in w.server.log_text(), 15,
               0.05, "the refusal logged with the client's address")


@test(timeout=90)
def bad_trusted_proxies_refuse_to_start(t):
    """A typo in AURORA_TRUSTED_PROXIES would attribute every request to its
    proxy, or trust a host nobody meant: the server exits 2, the entry named."""
    for value, named in (("10.0.0.0/8,proxy.internal", '"proxy.internal"'),
                         ("10.0.0.1/8", "the network is 10.0.0.0/8"),
                         ("127.0.0.1/33", '"127.0.0.1/33"'),
                         ("2001:db8::/129", '"2001:db8::/129"')):
        d = os.path.join(t.tmp, "badproxies-%s" % secrets.token_hex(3))
        os.makedirs(d)
        env = _base_env(os.path.join(d, "home"))
        env.update({"AURORA_DATA_DIR": os.path.join(d, "data"), "AURORA_PORT": "0",
                    "AURORA_BIND": "127.0.0.1", "AURORA_TRUSTED_PROXIES": value,
                    "ASAN_OPTIONS": "detect_leaks=0"})
        r = subprocess.run([SERVER_BIN, "serve"], env=env, cwd=d, capture_output=True, timeout=30)
        err = r.stderr.decode("utf-8", "replace")
        eq(r.returncode, 2, "exit status with AURORA_TRUSTED_PROXIES=%s (stderr %r)"
           % (value, err[-300:]))
        contains(err, "AURORA_TRUSTED_PROXIES", "the error names the setting")
        contains(err, named, "the error names the entry")


if __name__ == "__main__":
    main()
