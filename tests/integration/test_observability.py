#!/usr/bin/env python3
"""The server seen by its operator: /metrics (Prometheus text checked by the real
`promtool check metrics` from Debian's prometheus package), /ready with the state
store and the secrets backend, the access log (every request, failed ones
included, as JSON fields), request ids, 401 with WWW-Authenticate and 405 with
Allow.  Log lines are read only after the request they describe has been
answered, and waited for with a deadline (the line is written when the answer's
last byte is)."""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

from harness import check, contains, eq, main, sample, scrape, suite_world, test, wait_until

JSON_LOG = {"AURORA_LOG_FORMAT": "json"}


def world():
    return suite_world(extra_env=JSON_LOG)


def log_records(w):
    out = []
    for line in w.server.log_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_access(w, request_id, timeout=15):
    """The access log record of one request, by the id the test sent."""
    def find():
        for r in log_records(w):
            if r.get("msg") == "request" and r.get("request_id") == request_id:
                return r
        return None
    return wait_until(find, timeout, 0.05, "access log line for request %s" % request_id)


@test
def metrics_pass_promtool_and_need_no_auth(t):
    w = world()
    # Something in every family first: a request of each common status.
    w.get("/api/kubectl/connections")
    w.get("/no/such/route")
    text = scrape(w)
    check(shutil.which("promtool"), "promtool missing (scripts/install-deps.sh --test)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    eq(p.returncode, 0, "promtool check metrics exit status (%s)" % p.stdout.decode() + p.stderr.decode())
    for name in ("aurora_server_info", "process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "aurora_worker_queue_depth",
                 "aurora_http_requests_total", "aurora_http_request_duration_seconds_bucket",
                 "aurora_store_call_duration_seconds_bucket", "aurora_audit_ends_retried_total",
                 "aurora_audit_ends_dropped_total"):
        check(sample(text, name) is not None, "metric %s missing" % name, text[:3000])
    check(sample(text, "process_resident_memory_bytes") > 1e6, "RSS looks wrong")
    check(sample(text, "aurora_worker_queue_depth", pool="store") is not None, "store pool depth")


@test
def http_requests_counted_by_route_pattern_and_status(t):
    w = world()
    before = scrape(w)
    pat = "/api/clusters/{cluster_id}/kubectl"
    b404 = sample(before, "aurora_http_requests_total", method="POST", route=pat, status="404") or 0
    r = w.kubectl("cluster-does-not-exist-%s" % os.getpid(), ["get", "pods"])
    eq(r.status, 404, "kubectl on an unknown cluster")
    r = w.get("/definitely/unknown")
    eq(r.status, 404, "unknown route")
    after = scrape(w)
    eq(sample(after, "aurora_http_requests_total", method="POST", route=pat, status="404"),
       b404 + 1, "404 counted under the route pattern")
    check(sample(after, "aurora_http_requests_total", method="GET", route="unmatched",
                 status="404") >= 1, "unmatched requests counted under one label")
    # ids never become labels
    check("cluster-does-not-exist" not in after, "a path id leaked into a label")


@test
def access_log_has_every_request_as_fields(t):
    w = world()
    cases = [
        ("GET", "/api/kubectl/connections", None, {}, 200, "/api/kubectl/connections"),
        ("GET", "/api/kubectl/connections", None, {"Authorization": "Bearer nope"}, 401,
         "/api/kubectl/connections"),
        ("GET", "/nothing/here", None, {}, 404, "unmatched"),
        ("DELETE", "/api/kubectl/connections", None, {}, 405, "unmatched"),
    ]
    for i, (method, path, body, hdrs, want, route) in enumerate(cases):
        rid = "obs-%d-%s" % (i, os.getpid())
        h = {"X-Request-ID": rid}
        h.update(hdrs)
        auth = "Authorization" not in hdrs
        if not auth:
            h["Authorization"] = hdrs["Authorization"]
        r = w.request(method, path, body, headers=h, auth=auth)
        eq(r.status, want, "%s %s status" % (method, path))
        eq(r.headers.get("x-request-id"), rid, "request id returned")
        rec = wait_access(w, rid)
        eq(rec.get("status"), want, "logged status")
        eq(rec.get("method"), method, "logged method")
        eq(rec.get("route"), route, "logged route")
        check(isinstance(rec.get("duration_us"), int) and rec["duration_us"] >= 0, "duration", rec)
        check("127.0.0.1" in rec.get("peer", ""), "peer", rec)
        if want == 200:
            eq(rec.get("org"), w.org_id, "logged org")
        check(rid not in rec.get("msg", ""), "fields stay out of msg", rec)


@test
def oversized_body_is_logged_as_413(t):
    w = world()
    rid = "obs-413-%d" % os.getpid()
    big = b"{" + b" " * (2 << 20) + b"}"
    r = w.request("POST", "/api/kubectl/tokens", big, headers={"X-Request-ID": rid,
                                                                 "Content-Type": "application/json"})
    eq(r.status, 413, "oversized body")
    rec = wait_access(w, rid)
    eq(rec.get("status"), 413, "413 logged")
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test
def request_id_generated_when_missing_or_unsafe(t):
    w = world()
    r = w.get("/health", auth=False)
    rid = r.headers.get("x-request-id", "")
    check(re.fullmatch(r"[0-9a-f]{32}", rid), "generated request id", rid)
    r2 = w.get("/health", auth=False)
    check(r2.headers.get("x-request-id") != rid, "a fresh id per request")
    for bad in ("a b", "x" * 129, "id\"quote", "é"):
        try:
            r = w.get("/health", auth=False, headers={"X-Request-ID": bad})
        except Exception:  # http.client refuses some header values itself
            continue
        got = r.headers.get("x-request-id", "")
        check(re.fullmatch(r"[0-9a-f]{32}", got), "unsafe id %r replaced" % bad, got)
    ok = "A-z_0.9-" * 16
    eq(w.get("/health", auth=False, headers={"X-Request-ID": ok}).headers.get("x-request-id"), ok,
       "a 128-character id kept")


def strict_json_lines(raw, who):
    """Every line of a JSON log as an object: UTF-8, one JSON object per line."""
    out = []
    for i, line in enumerate(raw.split(b"\n")):
        if not line.strip():
            continue
        try:
            o = json.loads(line.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("%s log line %d is not strict JSON (%s): %r" % (who, i, e, line[:300]))
        check(isinstance(o, dict) and "ts" in o and "level" in o and "msg" in o,
              "%s log line %d is not a log record" % (who, i), line[:300])
        out.append(o)
    return out


@test(timeout=120)
def hostile_input_leaves_json_logs_strict_and_secret_free(t):
    """What clients, tenants and agents send (quotes, backslashes, raw bytes, line
    breaks, credentials in headers, queries and arguments) leaves every line of
    the server's and the agent's JSON logs one strict JSON object, names no
    credential, and the agent's /metrics passes promtool."""
    w = world()
    mark = "SEKRET%d" % os.getpid()
    tok = w.create_token('q"uo\\te \u2028 \u00e9 <b>')
    agent = w.start_agent(tok["token"], extra_env={"AURORA_LOG_FORMAT": "json"})
    w.wait_connection(tok["cluster_id"])
    cid = tok["cluster_id"]
    r = w.kubectl(cid, ["get", "pods", "--token=" + mark, "-n", 'a"b\nc\u00ff'])
    eq(r.status, 200, "refused flag answered (%r)" % r)
    eq(w.kubectl(cid, ["version", "--client"]).status, 200, "kubectl through the agent")
    hostile = [
        ("GET", "/api/%ff%fe%22x?token=" + mark, {"Authorization": "Bearer " + mark}),
        ("GET", "/api/x?a=%ff&a=" + mark, {}),
        ("GET", "/api/clusters/%22%0a/kubectl?api_key=" + mark, {}),
        ("GET", "/github/callback?code=%s&state=%s" % (mark, mark), {}),
        ("GET", "/slack/callback?code=%s&state=%s%%0a%%ff" % (mark, mark), {}),
        ("GET", "/api/me", {"X-Internal-Secret": mark + "\xff", "X-Org-ID": "o\xff\"",
                            "X-User-ID": "u"}),
        ("GET", "/api/me", {"X-Internal-Secret": w.secret, "X-Org-ID": 'o\xff"\\',
                            "X-User-ID": "u\xfe"}),
        ("GET", "/api/me", {"Authorization": "Bearer aur_" + mark, "X-Request-ID": 'a"b'}),
        ("GET", "/api/me", {"Authorization": "Basic " + mark, "Cookie": "session=" + mark}),
        ("POST", "/api/kubectl/tokens", {"X-Hub-Signature-256": "sha256=" + mark}),
    ]
    for method, path, hdrs in hostile:
        r = w.request(method, path, b'{"cluster_name":"\xff\xfe"}' if method == "POST" else None,
                      headers=dict(hdrs, **{"Content-Type": "application/json"}),
                      auth="Authorization" not in hdrs)
        check(400 <= r.status < 500, "%s %s refused (%r)" % (method, path, r))
    rid = "obs-last-%d" % os.getpid()
    w.get("/health", auth=False, headers={"X-Request-ID": rid + "x"})
    w.get("/api/kubectl/connections", headers={"X-Request-ID": rid})
    wait_access(w, rid)  # everything before it is written
    wait_until(lambda: "refused by the readonly policy" in agent.log() and " ended " in agent.log(),
               20, 0.05, "the agent's command lines")

    st, body = agent.health("/metrics")
    eq(st, 200, "agent /metrics")
    check(shutil.which("promtool"), "promtool missing (scripts/install-deps.sh --test)")
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       timeout=30)
    eq(p.returncode, 0, "promtool on the agent's /metrics (%s)" % (p.stdout + p.stderr).decode())
    check(re.search(rb'^aurora_agent_commands_total\{kind="kubectl",result="success"\} [1-9]',
                    body, re.M), "the agent counted its command", body[:2000])

    for who, path in (("server", w.server.logpath), ("agent", agent.proc.logpath)):
        with open(path, "rb") as f:
            raw = f.read()
        recs = strict_json_lines(raw, who)
        check(len(recs) > 3, "%s logged" % who, raw[-500:])
        check(mark.encode() not in raw and w.secret.encode() not in raw
              and tok["token"].encode() not in raw,
              "a credential in the %s log" % who,
              [l[:300] for l in raw.split(b"\n") if mark.encode() in l or w.secret.encode() in l])


def bad_upgrade(w, together=None):
    """A WebSocket upgrade whose Sec-WebSocket-Protocol lws cannot parse: lws
    refuses it and writes an error line of its own (no request, no access line).
    together: a threading.Barrier passed once the TLS handshake is done, so
    that the requests of several reach the server at once.  Whether the
    request was sent: a connection that waited at the barrier longer than the
    server's handshake timeout (10 s, a very loaded machine) was dropped, and
    logs nothing."""
    ctx = ssl.create_default_context(cafile=w.ca)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", w.port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            if together:
                together.wait()
            try:
                s.sendall(b"GET /kubectl-agent HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: \"x\r\n\r\n")
            except (OSError, ssl.SSLError):
                if not together:
                    raise
                return False
            try:
                while s.recv(4096):
                    pass
            except (OSError, ssl.SSLError):
                pass
            return True


@test(timeout=120)
def library_lines_from_clients_are_rate_limited(t):
    """lws writes an error line for some bad requests before any of ours sees
    them (no access line, no request id): anyone could write error lines as
    fast as they connect, and page whoever alerts on errors.  At most 10 such
    lines a second reach the log; the ones left out are counted on a later
    line."""
    w = world()
    needle = "malformatted protocol list"
    mark = len(w.server.log_text())
    before = w.server.log_text().count(needle)
    # All at once (their handshakes done first): one after the other, a
    # loaded machine's slow TLS handshakes to an ASan server brought them at
    # 10 a second or fewer, every line was logged and none left out.  40
    # lines within under 2 s span at most 3 windows of 10: 10 left out.
    n = 40
    together = threading.Barrier(n, timeout=60)
    errors, sent = [], []

    def one():
        try:
            if bad_upgrade(w, together):
                sent.append(1)
        except Exception as e:  # noqa: BLE001 (reported below)
            together.abort()
            errors.append(e)
    t0 = time.monotonic()
    ths = [threading.Thread(target=one) for _ in range(n)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    took = time.monotonic() - t0
    check(not errors, "the bad upgrades", *errors[:3])
    eq(w.get("/health", auth=False).status, 200, "still serving")
    got = w.server.log_text().count(needle) - before
    check(got >= 1, "lws's line logged at all")
    bound = 10 * (int(took) + 2)
    check(got <= bound and got < len(sent), "%d lws lines for %d bad upgrades in %.1f s (at most %d)"
          % (got, len(sent), took, bound))

    def counted():
        bad_upgrade(w)
        return re.search(r"lws: (\d+) more line\(s\) left out", w.server.log_text()[mark:])
    m = wait_until(counted, 20, 0.2, "the lines left out to be counted")
    check(int(m.group(1)) >= 1, "count of lines left out", m.group(0))


@test
def unauthorized_names_scheme_and_405_lists_methods(t):
    w = world()
    r = w.get("/api/kubectl/connections", auth=False)
    eq(r.status, 401, "no key")
    eq(r.headers.get("www-authenticate"), 'Bearer realm="aurora"', "WWW-Authenticate")
    r = w.request("PUT", "/api/kubectl/tokens", {})
    eq(r.status, 405, "PUT on tokens")
    allow = [m.strip() for m in r.headers.get("allow", "").split(",")]
    check("GET" in allow and "POST" in allow, "Allow lists the path's methods", allow)
    eq(r.error_code, "METHOD_NOT_ALLOWED", "405 error code")


@test
def agent_sessions_and_commands_in_metrics(t):
    w = world()
    before = scrape(w)
    v2 = sample(before, "aurora_agents_connected", dialect="v2") or 0
    opened = sample(before, "aurora_agent_sessions_opened_total", dialect="v2") or 0
    ok_before = sample(before, "aurora_commands_total", kind="kubectl", outcome="ok") or 0
    tok, agent = w.new_connected_agent()
    mid = scrape(w)
    eq(sample(mid, "aurora_agents_connected", dialect="v2"), v2 + 1, "agent counted connected")
    eq(sample(mid, "aurora_agent_sessions_opened_total", dialect="v2"), opened + 1, "session opened")
    r = w.kubectl(tok["cluster_id"], ["version", "--client"])
    eq(r.status, 200, "kubectl through the tunnel (%r)" % r)
    after = scrape(w)
    eq(sample(after, "aurora_commands_total", kind="kubectl", outcome="ok"), ok_before + 1,
       "command counted")
    check(sample(after, "aurora_command_duration_seconds_count", kind="kubectl") >= 1, "histogram")
    check(sample(after, "aurora_command_output_bytes_total", kind="kubectl") > 0, "bytes")
    rv = w.revoke_token(tok["token_id"])
    check(rv.status in (200, 204), "revoke (%r)" % rv)

    def closed():
        return sample(scrape(w), "aurora_agent_sessions_closed_total", dialect="v2",
                      reason="token_revoked")
    wait_until(closed, 20, 0.1, "session closed as token_revoked")
    eq(sample(scrape(w), "aurora_agents_connected", dialect="v2"), v2, "gauge back")
    agent.proc.kill9()


@test
def ready_reports_store_and_secrets(t):
    w = world()
    r = w.get("/ready", auth=False)
    eq(r.status, 200, "ready")
    eq(r.json.get("store"), "ok", "store ok")
    eq(r.json.get("secrets"), "ok", "secrets ok")


@test
def ready_fails_when_the_secrets_backend_is_down(t):
    # A Vault address where nothing listens: the backend opens (configuration
    # only) and every call fails fast with "unavailable".
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    w = t.world(extra_env={"SECRETS_BACKEND": "vault", "VAULT_ADDR": "http://127.0.0.1:%d" % port,
                           "VAULT_TOKEN": "test-token"})
    r = w.get("/ready", auth=False)
    eq(r.status, 503, "not ready (%r)" % r)
    eq(r.json.get("secrets"), "unavailable", "secrets state")
    eq(r.json.get("store"), "ok", "store state")
    eq(r.error_code, "SECRETS_UNAVAILABLE", "error code")
    eq(w.get("/health", auth=False).status, 200, "liveness unaffected")


@test(timeout=120)
def a_silent_secrets_backend_is_found_and_recovers(t):
    """A Vault that accepts connections and never answers (a listener nobody
    accepts on, standing in for a hung Vault): /ready finds it silent after
    AURORA_SECRETS_TIMEOUT_MS, not the 10 s default (curl's message gives the
    wait), and the log names it as the breaker opens (server/breaker.h: while
    it is silent one call at a time waits on it, the others fail at once and
    are counted in aurora_secrets_fast_failures_total; test_secrets_vault.c
    shows that, /ready coalesces its probes); once Vault answers, the next
    call closes the breaker and /ready is 200 again."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel completes connections; nobody answers yet
    port = silent.getsockname()[1]
    addr = "http://127.0.0.1:%d" % port
    w = t.world(extra_env={"SECRETS_BACKEND": "vault", "VAULT_ADDR": addr, "VAULT_TOKEN": "test-token",
                           "AURORA_SECRETS_TIMEOUT_MS": "500"})
    r = w.get("/ready", auth=False)
    eq((r.status, r.json.get("secrets")), (503, "unavailable"), "not ready (%r)" % r)
    wait_until(lambda: "secrets backend: Vault at %s does not answer" % addr in w.server.log_text(), 20,
               what="the log to name the silent backend")
    waited = [int(x) for x in re.findall(r"timed out after (\d+) milliseconds", w.server.log_text())]
    check(waited and max(waited) < 5000, "the wait is AURORA_SECRETS_TIMEOUT_MS's (%r)" % waited)
    fast = sample(scrape(w), "aurora_secrets_fast_failures_total")
    check(fast is not None and fast >= 0, "the refusals' counter is exported (%r)" % fast)
    check(w.server.alive(), "still serving")

    # Vault answers now: 404 for the probe path (a healthy "not found").
    stop = threading.Event()

    def answer():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = silent.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 13\r\nConnection: close\r\n\r\n{\"errors\":[]}")
    th = threading.Thread(target=answer)
    th.start()
    try:
        wait_until(lambda: w.get("/ready", auth=False).status == 200, 60, what="ready once Vault answers")
        wait_until(lambda: "secrets backend: Vault at %s answers again" % addr in w.server.log_text(), 20,
                   what="the log to say Vault is back")
    finally:
        stop.set()
        th.join(10)
        silent.close()


@test(timeout=90)
def ops_port_moves_probes_and_metrics_to_their_own_listener(t):
    import http.client
    from harness import free_port
    ops = free_port()
    w = t.world(extra_env={"AURORA_OPS_PORT": str(ops)})

    def plain(method, path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", ops, timeout=15)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()
    for path in ("/health", "/ready", "/metrics"):
        eq(plain("GET", path)[0], 200, "%s on the ops port" % path)
        eq(w.get(path, auth=False).status, 404, "%s gone from the main port" % path)
    contains(plain("GET", "/metrics")[1], "aurora_server_info", "metrics text")
    eq(plain("GET", "/api/kubectl/connections")[0], 404, "the API is not on the ops port")
    eq(w.get("/api/kubectl/connections").status, 200, "the API on the main port")
    try:
        st, _ = plain("GET", "/kubectl-agent", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                "Sec-WebSocket-Version": "13"})
    except (http.client.HTTPException, ConnectionError):
        st = 0  # the upgrade refused by closing the connection
    check(st != 101, "no WebSocket on the ops port (got %d)" % st)
    eq(plain("GET", "/health")[0], 200, "the ops listener still serves")
    tok, agent = w.new_connected_agent()
    eq(w.kubectl(tok["cluster_id"], ["version", "--client"]).status, 200, "agents still served")
    agent.proc.kill9()


def listening_on(port):
    """The local addresses of the TCP sockets listening on port (ss -ltn)."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True, text=True,
                         timeout=10).stdout
    return sorted(line.split()[3] for line in out.splitlines() if line.strip())


def connect_refused(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((addr, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


@test
def bind_address_is_honoured(t):
    """AURORA_BIND=127.0.0.1 listens on 127.0.0.1 alone (libwebsockets 4.1
    bound every interface when given an IPv4 literal): another loopback
    address, 127.0.0.2, finds nothing; 0.0.0.0 listens everywhere."""
    from harness import free_port
    ops = free_port()
    w = t.world(extra_env={"AURORA_OPS_PORT": str(ops), "AURORA_BIND": "127.0.0.1"})
    for port in (w.port, ops):
        eq(listening_on(port), ["[::ffff:127.0.0.1]:%d" % port], "port %d bound to 127.0.0.1" % port)
        check(connect_refused("127.0.0.2", port), "127.0.0.2:%d refused" % port)
    eq(w.get("/api/me").status, 200, "served on 127.0.0.1")
    ops2 = free_port()
    w2 = t.world("any", extra_env={"AURORA_OPS_PORT": str(ops2), "AURORA_BIND": "0.0.0.0",
                                   "AURORA_OPS_BIND": "127.0.0.1"})
    eq(listening_on(w2.port), ["*:%d" % w2.port], "0.0.0.0: every interface")
    check(not connect_refused("127.0.0.2", w2.port), "0.0.0.0 takes 127.0.0.2")
    eq(listening_on(ops2), ["[::ffff:127.0.0.1]:%d" % ops2], "AURORA_OPS_BIND=127.0.0.1 alone")


if __name__ == "__main__":
    main()
