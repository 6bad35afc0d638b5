#!/usr/bin/env python3
"""Plain HTTP on the TLS port.  The connector guide has users register OAuth
redirect URIs such as http://localhost:5080/callback (the server's defaults
too) while the server speaks TLS on that port: the provider's redirect used to
end in a connection reset.  A browser's plain GET is now sent to the same path
and query over https (307); anything else sent in plain text is refused
(400 HTTPS_REQUIRED, closed, nothing done), a WebSocket upgrade above all;
hostile plain input leaves the server serving over TLS.  Raw sockets, exact
bytes: the answers are read as a browser would get them."""

import re
import socket
import ssl
import time
import urllib.parse

from harness import check, eq, main, parse_responses, suite_user, suite_world, test, wait_until

STATE = {}


def world():
    w = suite_world()
    STATE["uid"], STATE["key"] = suite_user()
    return w


def plain(w, data, timeout=15):
    """Sends data over plain TCP to the TLS port; (status, headers, body, closed):
    the first answer, and whether the server then closed the connection."""
    s = socket.create_connection(("127.0.0.1", w.port), timeout)
    try:
        s.sendall(data)
        buf, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break  # the server kept the connection open: closed stays False
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            buf += chunk
        if not buf:
            return None, {}, b"", closed
        status, hdrs, body = parse_responses(buf)[0]
        return status, hdrs, body, closed
    finally:
        s.close()


def request(method, target, host, extra=()):
    lines = ["%s %s HTTP/1.1" % (method, target)] + (["Host: %s" % host] if host else [])
    return ("\r\n".join(lines + list(extra)) + "\r\n\r\n").encode("latin-1")


def still_serving(w, what):
    eq(w.get("/health", auth=False).status, 200, "after %s: /health over TLS" % what)
    eq(w.get("/api/kubectl/connections", key=STATE["key"]).status, 200,
       "after %s: an API call over TLS" % what)


@test
def plain_get_is_sent_to_the_same_url_over_https(t):
    """What the guide's http:// redirect URI gets: 307 to https with the path and
    the query (escapes included) kept, then the connection closed; the route
    answers at that URL over TLS."""
    w = world()
    host = "127.0.0.1:%d" % w.port
    target = "/callback?code=4%2F0Ab%26x%3D1&state=s%20t%2Bu&scope=a+b"
    status, hdrs, _body, closed = plain(w, request("GET", target, host))
    eq(status, 307, "plain GET: redirected (%r)" % hdrs)
    loc = hdrs.get("location", "")
    check(loc.startswith("https://%s/callback?" % host), "Location is the same URL over https", loc)
    # the arguments as the route will read them: decoded, the same as sent
    want = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query, keep_blank_values=True)
    got = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query, keep_blank_values=True)
    eq(got, want, "the query arguments kept")
    check(closed, "the plain connection is closed after the answer")

    status, hdrs, _body, _closed = plain(w, request("GET", "/health", host))
    eq((status, hdrs.get("location")), (307, "https://%s/health" % host), "plain /health")
    r = w.get(urllib.parse.urlsplit(hdrs["location"]).path, auth=False)
    eq(r.status, 200, "the Location answers over TLS")

    status, hdrs, body, _closed = plain(w, request("HEAD", "/", host))
    eq((status, hdrs.get("location")), (307, "https://%s/" % host), "plain HEAD /")
    eq(body, b"", "no body to a HEAD")

    # a name the browser reached the server by is what it is sent back to
    status, hdrs, _body, _closed = plain(w, request("GET", "/x/%C3%A9?a=%E2%82%AC", "localhost:5080"))
    eq((status, hdrs.get("location")), (307, "https://localhost:5080/x/%C3%A9?a=%E2%82%AC"),
       "UTF-8 path and query re-encoded")
    still_serving(w, "plain GETs")


@test
def plain_api_calls_and_webhooks_are_refused(t):
    """A POST over plain HTTP (an API key, a webhook body on the wire) is answered
    400 HTTPS_REQUIRED naming the https URL, the connection closed, and nothing is
    done: no token is created."""
    w = world()
    host = "127.0.0.1:%d" % w.port
    before = len(w.get("/api/kubectl/tokens", key=STATE["key"]).json["tokens"])
    body = b'{"cluster_name": "plain-http"}'
    status, hdrs, resp, closed = plain(w, request(
        "POST", "/api/kubectl/tokens", host,
        ["Authorization: Bearer %s" % STATE["key"], "Content-Type: application/json",
         "Content-Length: %d" % len(body)]) + body)
    eq(status, 400, "plain POST refused (%r)" % resp[:300])
    check(b'"HTTPS_REQUIRED"' in resp and b"https://%s/api/kubectl/tokens" % host.encode() in resp,
          "the answer names HTTPS_REQUIRED and the https URL", resp[:300])
    check("location" not in hdrs, "no redirect for a POST (the client must choose to resend)")
    check(closed, "the connection is closed")
    tokens = w.get("/api/kubectl/tokens", key=STATE["key"]).json["tokens"]
    eq(len(tokens), before, "no token created by the plain request")
    check(not any(x.get("cluster_name") == "plain-http" for x in tokens), "no token named plain-http")
    for method in ("PUT", "DELETE", "PATCH"):
        status, _h, resp, _c = plain(w, request(method, "/api/kubectl/tokens/x", host,
                                                ["Authorization: Bearer %s" % STATE["key"]]))
        eq(status, 400, "plain %s refused (%r)" % (method, resp[:200]))
    still_serving(w, "plain API calls")


@test
def a_local_tls_tunnel_is_served(t):
    """The guide's local development setup: `ngrok http 5080` (or cloudflared)
    ends TLS at its edge and sends each request on in plain text over loopback,
    with the browser's Host and X-Forwarded-Proto: https.  A redirect to
    https://<that host>/… went back through the tunnel forever (and a webhook
    POST got 400): such a request is served.  Without the header, or with
    X-Forwarded-Proto: http, it is still redirected."""
    w = world()
    tunnel = "abc123.ngrok-free.app"
    # (Connection: close: plain() reads until the server hangs up)
    xfp = ["X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.7", "Connection: close"]
    status, hdrs, body, _closed = plain(w, request("GET", "/health", tunnel, xfp))
    eq(status, 200, "GET through the tunnel served, not sent to https://%s (%r %r)"
       % (tunnel, hdrs.get("location"), body[:200]))
    # the OAuth redirect URI the guide registers with OVH, Slack, GitHub: the route answers
    # (a made-up state: its own 400), it is not a redirect to the tunnel's own URL
    status, hdrs, body, _closed = plain(w, request("GET", "/slack/callback?state=x", tunnel, xfp))
    eq((status, b'"OAUTH_STATE_INVALID"' in body), (400, True),
       "the callback route answers (its own state check, not a redirect: %r %r)" % (hdrs.get("location"), body[:200]))
    # an API call with its key through the tunnel
    body = b'{"cluster_name": "through-tunnel"}'
    status, _h, resp, _c = plain(w, request(
        "POST", "/api/kubectl/tokens", tunnel,
        xfp + ["Authorization: Bearer %s" % STATE["key"], "Content-Type: application/json",
               "Content-Length: %d" % len(body)]) + body)
    eq(status, 201, "POST through the tunnel served (%r)" % resp[:300])
    tokens = w.get("/api/kubectl/tokens", key=STATE["key"]).json["tokens"]
    check(any(x.get("cluster_name") == "through-tunnel" for x in tokens), "the token was made")
    # a webhook's route answers (no secret here: the route's own refusal, not HTTPS_REQUIRED)
    status, _h, resp, _c = plain(w, request("POST", "/github/webhook", tunnel,
                                            xfp + ["Content-Type: application/json",
                                                   "X-GitHub-Event: ping", "X-GitHub-Delivery: d1",
                                                   "Content-Length: 2"]) + b"{}")
    eq((status, b'"WEBHOOK_SECRET_NOT_CONFIGURED"' in resp), (401, True),
       "the webhook route answers (%r)" % resp[:200])
    # no header, or a tunnel that says it took plain HTTP: redirected as before
    for extra in ([], ["X-Forwarded-Proto: http"], ["X-Forwarded-Proto: httpsx"]):
        status, hdrs, _b, _c = plain(w, request("GET", "/health", tunnel, extra))
        eq((status, hdrs.get("location")), (307, "https://%s/health" % tunnel), "plain with %r" % extra)
    # and no WebSocket through it: agents and their tokens use TLS end to end
    tok = w.create_token(key=STATE["key"])
    status, _h, _b, closed = plain(w, request(
        "GET", "/kubectl-agent", tunnel,
        xfp[:2] + ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version: 13", "Authorization: Bearer %s" % tok["token"],
               "X-Cluster-ID: %s" % tok["cluster_id"]]))
    check(status != 101 and closed, "no plain WebSocket, tunnel or not (%r)" % status)
    still_serving(w, "requests through a local tunnel")


@test
def plain_websocket_upgrade_is_refused(t):
    """ws:// to the TLS port with a valid agent token: no 101, the agent never
    connects (tokens travel only over TLS)."""
    w = world()
    tok = w.create_token(key=STATE["key"])
    host = "127.0.0.1:%d" % w.port
    for path in ("/kubectl-agent", "/"):
        status, _h, _b, closed = plain(w, request(
            "GET", path, host,
            ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", "Authorization: Bearer %s" % tok["token"],
             "X-Cluster-ID: %s" % tok["cluster_id"]]))
        check(status != 101, "plain WebSocket upgrade on %s must not be accepted (%r)" % (path, status))
        check(closed, "the connection is closed")
    c = w.connection(tok["cluster_id"], key=STATE["key"])
    check(c is None or c.get("status") != "active", "the agent is not connected", c)
    still_serving(w, "plain WebSocket upgrades")


@test
def plain_requests_with_hostile_hosts_or_bytes(t):
    """A Host that could send the browser elsewhere, none at all, junk that is no
    request, an oversized request line, half a request then silence: each is
    refused or dropped, and the server keeps serving over TLS."""
    w = world()
    for host in ("evil.example/x", "a@b", "x y", "\\\\evil", "h?x", "h#x", ":80", "a" * 300):
        status, hdrs, body, closed = plain(w, request("GET", "/callback?code=1", host))
        eq(status, 400, "Host %r refused (%r)" % (host[:40], body[:200]))
        check("location" not in hdrs and b"HTTPS_REQUIRED" in body, "no Location for Host %r" % host[:40], body[:200])
    status, _h, body, _c = plain(w, b"GET /callback HTTP/1.0\r\n\r\n")
    eq(status, 400, "no Host (HTTP/1.0) refused (%r)" % body[:200])
    status, _h, _b, closed = plain(w, b"x" * 65536 + b"\r\n\r\n")
    check(status in (None, 400, 403) and closed, "printable junk: refused or dropped (%r)" % status)
    status, _h, _b, closed = plain(w, request("GET", "/" + "a" * 20000, "127.0.0.1"))
    check(status in (None, 400, 414, 431) and closed, "oversized request line (%r)" % status)
    s = socket.create_connection(("127.0.0.1", w.port), 10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end of headers: the server's timeout
    still_serving(w, "half a plain request")
    s.close()
    still_serving(w, "hostile plain requests")


@test
def plain_h2c_upgrade_reaches_no_route(t):
    """Upgrade: h2c on a plain connection: lws would switch to HTTP/2 (101) and
    serve the upgrade's own request as stream 1, on a stream whose wsi claims
    TLS (lws sets it from the vhost): a GET route with an API key answered in
    plain text.  Refused: no 101, nothing served, the connection closed."""
    w = world()
    host = "127.0.0.1:%d" % w.port
    s = socket.create_connection(("127.0.0.1", w.port), 30)
    buf, closed, preface_sent = b"", False, False
    try:
        s.sendall(request("GET", "/api/kubectl/connections", host,
                          ["Authorization: Bearer %s" % STATE["key"],
                           "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                           "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]))
        # read until the server hangs up; a 101 is answered as an h2c client
        # does (the preface and an empty SETTINGS), so a switch would show
        # what it serves.  A server that keeps the connection open times the
        # read out (30 s) and fails below.
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            buf += chunk
            if b" 101 " in buf and not preface_sent:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                preface_sent = True
    finally:
        s.close()
    check(closed, "the plain h2c upgrade's connection is closed", buf[:300])
    check(b" 101 " not in buf, "no switch to HTTP/2 in plain text", buf[:300])
    check(b"connections" not in buf and b":status" not in buf and b"200" not in buf,
          "the route was not served over plain h2c", buf[:600])
    still_serving(w, "a plain h2c upgrade")


@test(timeout=120)
def connect_requests_are_closed_not_held(t):
    """lws turns a CONNECT into a raw socket that nothing here serves: it is closed
    at once, in plain text and over TLS, instead of holding the connection until
    the handshake timeout (300 s here, so a held one outlasts the wait below)."""
    w = t.world(extra_env={"AURORA_HANDSHAKE_TIMEOUT": "300"})
    req = b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"
    status, _h, _b, closed = plain(w, req, timeout=60)
    check(closed and status in (None, 400, 403), "a plain CONNECT is closed (%r, closed %r)" % (status, closed))
    s = w.ctx.wrap_socket(socket.create_connection(("127.0.0.1", w.port), 60), server_hostname="127.0.0.1")
    try:
        s.sendall(req)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    check(not got.startswith(b"HTTP/1.1 200"), "a CONNECT over TLS is not tunnelled", got[:200])
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test(timeout=90)
def a_local_tunnel_with_trusted_proxies(t):
    """`make run` + `ngrok http 5080` with AURORA_TRUSTED_PROXIES=127.0.0.1: the
    log names the browser's address from X-Forwarded-For, while what a request
    may do is still judged by the socket peer: the tunnel's request is served
    in plain text because the peer is loopback, whatever client it names."""
    w = t.world(extra_env={"AURORA_TRUSTED_PROXIES": "127.0.0.1"})
    tunnel = "abc123.ngrok-free.app"
    status, hdrs, body, _closed = plain(w, request(
        "GET", "/api/me", tunnel, ["X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.7",
                                   "Authorization: Bearer %s" % w.api_key, "Connection: close"]))
    eq(status, 200, "served through the tunnel, not redirected (%r %r)"
       % (hdrs.get("location"), body[:200]))
    wait_until(lambda: re.search(r" request method=GET route=/api/me .*peer=\S*127\.0\.0\.1 "
                                 r"client=203\.0\.113\.7", w.server.log_text()), 15, 0.05,
               "the access log line naming the tunnel's client")


if __name__ == "__main__":
    main()
