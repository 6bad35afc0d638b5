#!/usr/bin/env python3
"""webhook_bench.py — alert intake numbers for `make bench` (issue 11).

For each store engine (SQLite file, PostgreSQL started here on a unix socket
with fsync and synchronous commit ON, like a production database), one
release aurora-server (build/rel) is started and measured:

  1. deliveries per second and p50/p99 latency per source, at concurrency C
     (16) over N (1000) deliveries each, every one a distinct alert that the
     server persists (committed before the 2xx) and then turns into an
     incident; side by side with GET /health on the same server and the same
     client (the floor: TLS + HTTP + one request, no store write);
  2. correlation cost: the time from a delivery's 2xx until its incident is
     visible, and the intake rate, with 0 and with 10,000 open incidents in
     the organization (the correlator's lookups are indexed: the ratio should
     stay near 1).

Signed sources are signed here with Python's hmac (independently of the
server's code).  Every request goes to 127.0.0.1.  Python 3 stdlib only.
Exit status 1 if any request failed."""

import argparse
import hashlib
import hmac
import json
import os
import queue
import statistics
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AURORA_BUILD_DIR", os.path.join(ROOT, "build", "rel"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402

ERRORS = []


def log(msg):
    print("webhook-bench: %s" % msg, file=sys.stderr, flush=True)


class Client:
    """One keep-alive TLS connection per thread."""

    def __init__(self, world):
        self.world = world
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = harness.HTTPSConn(self.world.port, self.world.ctx, timeout=60)
            self.local.c = c
        return c

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                data = r.read()
                return r.status, data
            except (OSError, harness.http.client.HTTPException):
                c.close()
                self.local.c = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def run_load(client, make_request, count, concurrency):
    """count requests from make_request(i) -> (method, path, body, headers),
    concurrency threads; returns (per-second, p50 ms, p99 ms, failures)."""
    q = queue.Queue()
    for i in range(count):
        q.put(i)
    lat = []
    fails = []
    lock = threading.Lock()

    def worker():
        while True:
            try:
                i = q.get_nowait()
            except queue.Empty:
                return
            method, path, body, headers = make_request(i)
            t0 = time.perf_counter()
            try:
                status, data = client.request(method, path, body, headers)
            except Exception as e:  # noqa: BLE001
                status, data = 0, repr(e).encode()
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if status // 100 != 2:
                    fails.append((status, data[:200]))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    return count / wall, p50, p99, fails


# ---------------------------------------------------------------------------
# sources: each returns make_request(i) after connecting a user for it
# ---------------------------------------------------------------------------
def source_health(ctx):
    return lambda i: ("GET", "/health", None, {})


def source_internal(ctx):
    """POST /internal/incidents/alerts: one normalized alert, ingested in the
    request (no webhook row): the correlator's own cost plus the HTTP floor."""
    w = ctx["w"]
    org = ctx["org"]
    tag = uuid.uuid4().hex[:8]

    def make(i):
        body = json.dumps({"source": "bench", "delivery_id": "bench-%s-%d" % (tag, i),
                           "fingerprint": "fp-%s-%d" % (tag, i), "state": "firing",
                           "title": "Bench alert %d" % i, "service": "svc-%s-%d" % (tag, i),
                           "severity": "high"}).encode()
        return ("POST", "/internal/incidents/alerts", body,
                {"Content-Type": "application/json", "X-Internal-Secret": w.secret, "X-Org-ID": org})
    return make


def source_pagerduty(ctx):
    """PagerDuty v3 incident.triggered, signed (v1= HMAC-SHA256)."""
    w, t = ctx["w"], ctx["t"]
    user_key = "u+" + uuid.uuid4().hex[:18]
    pd = ctx["fixtures"]["pagerduty"]
    pd.config(user_keys={user_key: {"id": "PUSER01", "email": "oncall@example.test", "name": "On Call"}})
    org, user, key = w.new_org()
    r = w.post("/pagerduty/connect", {"api_token": user_key}, key=key)
    harness.eq(r.status, 200, "pagerduty connect (%r)" % r)
    secret = "whsec-" + uuid.uuid4().hex
    harness.eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key).status, 200, "secret")
    tag = uuid.uuid4().hex[:8]

    def make(i):
        body = json.dumps({"event": {
            "id": str(uuid.uuid4()), "event_type": "incident.triggered", "resource_type": "incident",
            "occurred_at": "2026-12-02T10:05:00.123Z",
            "data": {"id": "P%s%06d" % (tag, i), "type": "incident", "title": "Bench %d" % i,
                     "status": "triggered", "urgency": "high",
                     "html_url": "https://acme.pagerduty.com/incidents/P%d" % i,
                     "service": {"id": "PSVC", "summary": "svc-%s-%d" % (tag, i),
                                 "type": "service_reference"}}}}).encode()
        sig = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return ("POST", "/pagerduty/webhook/%s" % user, body,
                {"Content-Type": "application/json", "X-PagerDuty-Signature": sig})
    return make


def source_datadog(ctx):
    """Datadog's recommended webhook payload (docs/api.md; unsigned: the per-user
    URL is the credential), a new monitor group per delivery."""
    w = ctx["w"]
    dd = ctx["fixtures"]["datadog"]
    api, app = uuid.uuid4().hex, uuid.uuid4().hex + uuid.uuid4().hex[:8]
    dd.config(orgs=[{"api_key": api, "app_keys": [app]}])
    org, user, key = w.new_org()
    r = w.post("/datadog/connect", {"api_key": api, "app_key": app, "site": "US1"}, key=key)
    harness.eq(r.status, 200, "datadog connect (%r)" % r)
    tag = uuid.uuid4().hex[:8]

    def make(i):
        body = json.dumps({
            "id": "%s%08d" % (tag, i), "title": "[P2] [Triggered on {host:web-%d}] Bench %d" % (i, i),
            "body": "%%%\nbench\n%%%", "alert_transition": "Triggered", "alert_id": str(1000 + i),
            "aggreg_key": "%s-%d" % (tag, i), "priority": "normal", "alert_priority": "P2",
            "date": "1764680000000", "last_updated": "1764680000000", "event_type": "query_alert_monitor",
            "hostname": "web-%d" % i, "tags": "env:prod,service:svc-%s-%d" % (tag, i),
            "link": "https://app.datadoghq.com/event/event?id=%d" % i,
            "org": {"id": "1", "name": "Bench"}}).encode()
        return ("POST", "/datadog/webhook/%s" % user, body, {"Content-Type": "application/json"})
    return make


def source_grafana(ctx):
    """Grafana's webhook contact point payload (docs/api.md, Grafana; unsigned: the
    per-user URL is the credential, the first delivery connects), one new alert per
    delivery."""
    w = ctx["w"]
    org, user, key = w.new_org()
    tag = uuid.uuid4().hex[:8]

    def make(i):
        alert = {"status": "firing",
                 "labels": {"alertname": "Bench %d" % i, "service": "svc-%s-%d" % (tag, i),
                            "severity": "critical"},
                 "annotations": {"summary": "bench", "description": "bench alert %d" % i},
                 "startsAt": "2026-12-02T10:05:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "https://grafana.example.test/alerting/%d/view" % i,
                 "fingerprint": "%s%08x" % (tag, i), "silenceURL": "", "dashboardURL": "",
                 "panelURL": "", "values": {"B": 97.5}, "valueString": "[ var='B' value=97.5 ]"}
        body = json.dumps({"receiver": "aurora", "status": "firing", "orgId": 1, "alerts": [alert],
                           "groupLabels": {}, "commonLabels": alert["labels"],
                           "commonAnnotations": {}, "externalURL": "https://grafana.example.test/",
                           "version": "1", "groupKey": "{}:{}", "truncatedAlerts": 0,
                           "title": "[FIRING:1]", "state": "alerting", "message": ""}).encode()
        return ("POST", "/grafana/alerts/webhook/%s" % user, body,
                {"Content-Type": "application/json"})
    return make


def source_sentry(ctx):
    """Sentry's issue webhook (Internal Integration), signed: Sentry-Hook-Signature
    = hex HMAC-SHA256 of the body with the client secret; a new issue per delivery.
    tests/fixtures/sentry_api.mjs answers the connect (org acme-co, token
    sntrys_good)."""
    w = ctx["w"]
    org, user, key = w.new_org()
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    r = w.post("/sentry/connect", {"org_slug": "acme-co", "region": "us", "auth_token": "sntrys_good",
                                   "client_secret": secret}, key=key)
    harness.eq(r.status, 200, "sentry connect (%r)" % r)
    base = 700000000 + int(uuid.uuid4().hex[:6], 16) * 1000

    def make(i):
        body = json.dumps({
            "action": "created", "installation": {"uuid": str(uuid.uuid4())},
            "data": {"issue": {"id": str(base + i), "shortId": "BENCH-%d" % i,
                               "title": "Bench error %d" % i, "culprit": "app/bench.py in run",
                               "level": "error", "status": "unresolved",
                               "firstSeen": "2026-12-02T09:59:00.000000Z",
                               "lastSeen": "2026-12-02T10:00:00.000000Z",
                               "project": {"id": "2", "name": "bench-%d" % i, "slug": "bench-%d" % i},
                               "web_url": "https://sentry.io/organizations/acme-co/issues/%d/" % i}},
            "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}).encode()
        sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return ("POST", "/sentry/webhook/%s" % user, body,
                {"Content-Type": "application/json", "Sentry-Hook-Resource": "issue",
                 "Request-ID": str(uuid.uuid4()), "Sentry-Hook-Signature": sig})
    return make


SLACK_SIGNING = uuid.uuid4().hex


def source_slack(ctx):
    """Slack's Events API: an app_mention per delivery, signed as Slack signs
    (v0= hex HMAC-SHA256 of "v0:{timestamp}:{body}" with the signing secret,
    timestamp current); the workspace is not connected, so each event takes the
    whole intake path (signature, tenant lookup, commit) and is kept unassigned.
    Slack wants the 200 within 3 s: p99 is the number to watch."""
    team = "T" + uuid.uuid4().hex[:10].upper()

    def make(i):
        body = json.dumps({"token": "x", "team_id": team, "api_app_id": "A0BENCH", "type": "event_callback",
                           "event_id": "Ev%s" % uuid.uuid4().hex[:16].upper(), "event_time": int(time.time()),
                           "event": {"type": "app_mention", "user": "U0BENCH", "channel": "C0BENCH",
                                     "text": "<@U0AURORA> bench %d" % i, "ts": "1700000000.%06d" % i}}).encode()
        ts = str(int(time.time()))
        sig = hmac.new(SLACK_SIGNING.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        return ("POST", "/slack/events", body, {"Content-Type": "application/json",
                                                "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + sig})
    return make


SOURCES = [
    ("/health (floor)", source_health, None),
    ("pagerduty", source_pagerduty, "pagerduty_api.mjs"),
    ("datadog", source_datadog, "datadog_api.mjs"),
    ("grafana", source_grafana, None),
    ("sentry", source_sentry, "sentry_api.mjs"),
    ("slack events", source_slack, None),
    ("internal intake", source_internal, None),
]


def server_env(fixtures):
    env = {"AURORA_TOKEN_RATE_LIMIT_PER_MINUTE": "100000", "SLACK_SIGNING_SECRET": SLACK_SIGNING,
           "GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE": "1000000",
           "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE": "1000000"}
    for name, fx in fixtures.items():
        if name == "pagerduty":
            env["PAGERDUTY_API_BASE_URL"] = fx.base
            env["PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE"] = "1000000"
        if name == "sentry":
            env["SENTRY_US_BASE_URL"] = fx.base
            env["SENTRY_ALLOW_LOOPBACK"] = "true"
            env["SENTRY_WEBHOOK_RATE_PER_MINUTE"] = "1000000"
        if name == "datadog":
            env["AURORA_DATADOG_BASE_URL"] = fx.base
            env["AURORA_DATADOG_WEBHOOK_RATE_PER_MINUTE"] = "1000000"
    return env


def open_world(t, engine, fixtures):
    env = server_env(fixtures)
    pg = None
    if engine == "postgres":
        pg = harness.Postgres(durable=True)
        env["DATABASE_URL"] = pg.url
    w = harness.World(t, "server-" + engine, extra_env=env)
    return w, pg


def correlation(ctx, count, concurrency):
    """Synchronous intake latency for a new alert and an attaching one."""
    w, org = ctx["w"], ctx["org"]
    client = Client(w)
    tag = uuid.uuid4().hex[:8]

    def alert(i, fp, svc):
        body = json.dumps({"source": "bench", "delivery_id": "corr-%s-%d" % (tag, i),
                           "fingerprint": fp, "state": "firing", "title": "Corr %d" % i,
                           "service": svc, "severity": "high"}).encode()
        return ("POST", "/internal/incidents/alerts", body,
                {"Content-Type": "application/json", "X-Internal-Secret": w.secret, "X-Org-ID": org})
    new = run_load(client, lambda i: alert(i, "new-%s-%d" % (tag, i), "new-%s-%d" % (tag, i)),
                   count, concurrency)
    # attach: the same fingerprint as an open incident just created
    att = run_load(client, lambda i: alert(count + i, "new-%s-%d" % (tag, i), "new-%s-%d" % (tag, i)),
                   count, concurrency)
    return new, att


def seed_open_incidents(ctx, n, concurrency):
    w, org = ctx["w"], ctx["org"]
    client = Client(w)
    tag = uuid.uuid4().hex[:8]

    def make(i):
        body = json.dumps({"source": "seed", "delivery_id": "seed-%s-%d" % (tag, i),
                           "fingerprint": "seed-%s-%d" % (tag, i), "state": "firing",
                           "title": "Seed %d" % i, "service": "seed-%s-%d" % (tag, i)}).encode()
        return ("POST", "/internal/incidents/alerts", body,
                {"Content-Type": "application/json", "X-Internal-Secret": w.secret, "X-Org-ID": org})
    r = run_load(client, make, n, concurrency)
    if r[3]:
        ERRORS.append("seeding: %d failures, first %r" % (len(r[3]), r[3][0]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=int(os.environ.get("BENCH_WEBHOOKS", "1000")))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--engines", default=os.environ.get("BENCH_ENGINES", "sqlite,postgres"))
    ap.add_argument("--open-incidents", type=int,
                    default=int(os.environ.get("BENCH_OPEN_INCIDENTS", "10000")))
    args = ap.parse_args()
    root = harness.tempfile.mkdtemp(prefix="aurora-webhook-bench-")
    harness._SUITE["root"] = root
    rows = {}
    corr = {}
    t = harness.T(root, "bench")
    try:
        fixtures = {}
        for _, _, script in SOURCES:
            if script:
                fixtures[script.split("_")[0]] = harness.HttpFixture(t, script.split("_")[0], script)
        for engine in args.engines.split(","):
            log("%s: starting the server" % engine)
            w, pg = open_world(t, engine, fixtures)
            if pg:
                t.defer(pg.destroy)
            org, _, _ = w.new_org()
            ctx = {"w": w, "t": t, "org": org, "fixtures": fixtures}
            client = Client(w)
            for name, setup, _ in SOURCES:
                make = setup(ctx)
                run_load(client, make, min(50, args.count), args.concurrency)  # warm-up
                log("%s: %s x %d" % (engine, name, args.count))
                rps, p50, p99, fails = run_load(client, make, args.count, args.concurrency)
                if fails:
                    ERRORS.append("%s/%s: %d failures, first %r" % (engine, name, len(fails), fails[0]))
                rows.setdefault(name, {})[engine] = (rps, p50, p99)
            log("%s: correlation with 0 open incidents" % engine)
            c0 = correlation(ctx, 300, args.concurrency)
            log("%s: seeding %d open incidents" % (engine, args.open_incidents))
            seed_open_incidents(ctx, args.open_incidents, args.concurrency)
            log("%s: correlation with %d open incidents" % (engine, args.open_incidents))
            c1 = correlation(ctx, 300, args.concurrency)
            corr[engine] = (c0, c1)
    finally:
        problems = t.teardown()
        for p in problems:
            ERRORS.append(p)
        harness.shutil.rmtree(root, ignore_errors=True)

    engines = args.engines.split(",")
    print("\nWebhook intake: %d deliveries per source, concurrency %d, release build, 127.0.0.1"
          % (args.count, args.concurrency))
    print("(SQLite: WAL, synchronous=FULL; PostgreSQL: fsync and synchronous_commit on)")
    hdr = "%-18s" % "source" + "".join("| %-8s req/s  p50 ms  p99 ms  vs /health " % e for e in engines)
    print(hdr)
    print("-" * len(hdr))
    floor = rows.get("/health (floor)", {})
    for name, _, _ in SOURCES:
        line = "%-18s" % name
        for e in engines:
            rps, p50, p99 = rows[name][e]
            ratio = rps / floor[e][0] if floor.get(e) else 0
            line += "| %14.0f  %6.1f  %6.1f  %8.2fx  " % (rps, p50, p99, ratio)
        print(line)
    print("\nCorrelation (POST /internal/incidents/alerts: ingest in the request), 300 alerts,"
          " concurrency %d" % args.concurrency)
    print("%-10s %-34s %-34s %s" % ("engine", "0 open: new / attach (req/s, p50)",
                                     "%d open: new / attach (req/s, p50)" % args.open_incidents,
                                     "p50 ratio new, attach"))
    for e in engines:
        (n0, a0), (n1, a1) = corr[e]
        print("%-10s %6.0f/s %5.1fms / %6.0f/s %5.1fms   %6.0f/s %5.1fms / %6.0f/s %5.1fms   %.2fx, %.2fx"
              % (e, n0[0], n0[1], a0[0], a0[1], n1[0], n1[1], a1[0], a1[1],
                 n1[1] / n0[1], a1[1] / a0[1]))
    if ERRORS:
        print("\nERRORS:")
        for e in ERRORS:
            print("  " + str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
