#!/usr/bin/env python3
"""test_incidents.py — the incident core over HTTP: the internal alert intake
(POST /internal/incidents/alerts), the incident API (list with filters and
cursor, get with alerts, resolve, close; org scoping), the RCA outbox routes
(claim / ack / nack) and the operator command `aurora-server rca`.

Alerts come in through the internal route, which runs the same
incident_ingest() as the monitoring connectors; the correlation rules
themselves are covered row by row in tests/unit/test_incidents.c.
"""
import json
import os
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SERVER_BIN, check, contains, eq, https_request, main, rand_tag,  # noqa: E402
                     sanitizer_reports, suite_world, test, wait_until)


def intake(w, org, alert, secret=None, headers=None, raw_body=None):
    h = {"X-Internal-Secret": w.secret if secret is None else secret}
    if org is not None:
        h["X-Org-ID"] = org
    if headers:
        h.update(headers)
    return https_request(w.port, w.ctx, "POST", "/internal/incidents/alerts",
                         raw_body if raw_body is not None else alert, h)


def internal(w, method, path, body=None, secret=None):
    h = {"X-Internal-Secret": w.secret if secret is None else secret}
    return https_request(w.port, w.ctx, method, path, body, h)


def alert(fp, state="firing", **kw):
    a = {"source": "grafana", "delivery_id": "it-%s" % rand_tag(10), "index": 0,
         "fingerprint": fp, "state": state, "title": "HighCPU on %s" % fp,
         "service": "checkout", "severity": "critical",
         "message": "CPU above 90%\nfor 5 minutes", "occurred_at": "2026-11-02T10:00:00Z",
         "url": "https://grafana.example/alerting/x/view"}
    a.update(kw)
    return a


def ingest(w, org, a, want=None):
    r = intake(w, org, a)
    check(r.status in (200, 201), "intake status (%r)" % r)
    if want:
        eq(r.get("result"), want, "intake result (%r)" % r)
    return r.json


def incidents(w, key, query=""):
    r = w.get("/api/incidents" + query, key=key)
    eq(r.status, 200, "GET /api/incidents%s (%r)" % (query, r))
    return r.json


@test
def test_intake_then_api(t):
    w = suite_world()
    org, _, key = w.new_org()
    fp = "fp-" + rand_tag()
    a = ingest(w, org, alert(fp), "created")
    check(a["incident_id"].startswith("inc_") and a["alert_id"].startswith("alr_"), "ids", a)
    # The same delivery again: nothing changes.
    first = alert(fp, delivery_id="dup-" + rand_tag())
    ingest(w, org, first, "attached")
    r = intake(w, org, first)
    eq((r.status, r.get("result"), r.get("incident_id")), (200, "duplicate", a["incident_id"]),
       "duplicate delivery (%r)" % r)
    lst = incidents(w, key)
    eq([i["id"] for i in lst["incidents"]], [a["incident_id"]], "listed incidents")
    inc = lst["incidents"][0]
    eq((inc["status"], inc["source"], inc["severity"], inc["service"], inc["alert_count"]),
       ("open", "grafana", "critical", "checkout", 2), "incident fields")
    eq(inc["started_at"], "2026-11-02T10:00:00Z", "started_at (RFC 3339)")
    contains(inc["summary"], "critical grafana alert: HighCPU on %s" % fp, "summary")
    r = w.get("/api/incidents/%s" % a["incident_id"], key=key)
    eq(r.status, 200, "GET incident (%r)" % r)
    eq([x["position"] for x in r.json["alerts"]], [1, 2], "alerts in order")
    eq(r.json["alerts"][0]["message"], "CPU above 90%\nfor 5 minutes", "alert message")
    eq(r.json["alerts_truncated"], False, "alerts_truncated")
    # The resolution attaches and resolves.
    ingest(w, org, alert(fp, "resolved", occurred_at="2026-11-02T10:10:00Z"), "attached")
    r = w.get("/api/incidents/%s" % a["incident_id"], key=key)
    eq((r.json["status"], r.json["resolved_at"]), ("resolved", "2026-11-02T10:10:00Z"),
       "resolved by its alert")
    # A resolution that matches nothing: recorded, no incident.
    u = ingest(w, org, alert("fp-none-" + rand_tag(), "resolved"), "unmatched")
    eq(u["incident_id"], None, "unmatched incident_id")
    eq(len(incidents(w, key)["incidents"]), 1, "still one incident")


@test
def test_auth_and_org_scoping(t):
    w = suite_world()
    org_a, _, key_a = w.new_org()
    org_b, _, key_b = w.new_org()
    a = ingest(w, org_a, alert("fp-" + rand_tag()), "created")
    iid = a["incident_id"]
    for method, path in (("GET", "/api/incidents"), ("GET", "/api/incidents/%s" % iid),
                         ("POST", "/api/incidents/%s/resolve" % iid),
                         ("POST", "/api/incidents/%s/close" % iid)):
        r = w.request(method, path, auth=False)
        eq(r.status, 401, "%s %s without credentials (%r)" % (method, path, r))
        r = w.request(method, path, key="aur_" + "0" * 40)
        eq(r.status, 401, "%s %s with a wrong key (%r)" % (method, path, r))
    # Org B sees nothing of org A's incident.
    eq(incidents(w, key_b)["incidents"], [], "org B's list")
    for method, path in (("GET", "/api/incidents/%s" % iid),
                         ("POST", "/api/incidents/%s/resolve" % iid),
                         ("POST", "/api/incidents/%s/close" % iid)):
        r = w.request(method, path, key=key_b)
        eq((r.status, r.error_code), (404, "NOT_FOUND"), "%s %s from org B (%r)" % (method, path, r))
    r = w.get("/api/incidents/%s" % iid, key=key_a)
    eq((r.status, r.json["status"]), (200, "open"), "untouched by org B")
    # Another org's key cannot pick the org with X-Org-ID.
    r = w.get("/api/incidents", key=key_b, headers={"X-Org-ID": org_a})
    eq(r.status, 403, "X-Org-ID of another org with a key (%r)" % r)
    # The intake and the outbox: internal secret only.
    r = intake(w, org_a, alert("fp-x"), secret="wrong-" + rand_tag())
    eq(r.status, 401, "intake with a wrong secret (%r)" % r)
    r = w.post("/internal/incidents/alerts", alert("fp-x"), key=key_a)
    eq(r.status, 401, "intake with an API key (%r)" % r)
    r = intake(w, None, alert("fp-x"))
    eq((r.status, r.error_code), (400, "ORG_REQUIRED"), "intake without X-Org-ID (%r)" % r)
    for path in ("/internal/rca/jobs/claim", "/internal/rca/jobs/rca_x/ack",
                 "/internal/rca/jobs/rca_x/nack"):
        r = w.post(path, {}, key=key_a)
        eq(r.status, 401, "%s with an API key (%r)" % (path, r))
        r = internal(w, "POST", path, {}, secret="nope")
        eq(r.status, 401, "%s with a wrong secret (%r)" % (path, r))
    r = w.get("/internal/rca/jobs", key=key_a)
    eq(r.status, 401, "job list with an API key (%r)" % r)


@test
def test_list_filters_and_cursor(t):
    w = suite_world()
    org, _, key = w.new_org()
    ids = []
    for i in range(5):  # one service each: five incidents, one minute apart
        a = alert("fp-%d-%s" % (i, rand_tag()), service="svc%d" % i,
                  source="sentry" if i % 2 else "grafana",
                  occurred_at="2026-11-0%dT10:00:00Z" % (i + 1))
        ids.append(ingest(w, org, a, "created")["incident_id"])
    newest_first = list(reversed(ids))
    eq([x["id"] for x in incidents(w, key)["incidents"]], newest_first, "newest first")
    # Pages of two.
    seen, cursor = [], None
    for _ in range(4):
        q = "?limit=2" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
        page = incidents(w, key, q)
        seen += [x["id"] for x in page["incidents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    eq(seen, newest_first, "pages in order, none twice")
    # A page exactly as long as what is left has no next page.
    eq(incidents(w, key, "?limit=5")["next_cursor"], None, "no cursor after the last page")
    eq(incidents(w, key, "?limit=200")["next_cursor"], None, "limit 200 (the maximum)")
    eq([x["id"] for x in incidents(w, key, "?source=sentry")["incidents"]],
       [ids[3], ids[1]], "source filter")
    q = "?since=2026-11-02T00:00:00Z&until=2026-11-04T10:00:00Z"
    eq([x["id"] for x in incidents(w, key, q)["incidents"]], [ids[3], ids[2], ids[1]],
       "time window")
    # until the epoch is a bound like any other (it was taken as "no bound")
    eq(incidents(w, key, "?until=1970-01-01T00:00:00Z")["incidents"], [], "until 1970: none")
    r = w.post("/api/incidents/%s/resolve" % ids[0], key=key)
    eq((r.status, r.json["status"]), (200, "resolved"), "resolve (%r)" % r)
    eq([x["id"] for x in incidents(w, key, "?status=resolved")["incidents"]], [ids[0]],
       "status filter")
    eq(len(incidents(w, key, "?status=open")["incidents"]), 4, "open ones")


@test
def test_bad_queries(t):
    w = suite_world()
    _, _, key = w.new_org()
    bad = ["?status=firing", "?status=", "?source=Bad%20Source", "?source=", "?since=yesterday",
           "?until=2026-13-01T00:00:00Z", "?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z",
           "?limit=0", "?limit=201", "?limit=abc", "?limit=-1", "?limit=99999999999999999999",
           "?cursor=abc", "?cursor=1.x", "?cursor=" + "9" * 60, "?source=" + "a" * 300]
    for q in bad:
        r = w.get("/api/incidents" + q, key=key)
        eq((r.status, r.error_code), (400, "BAD_REQUEST"), "GET /api/incidents%s (%r)" % (q, r))
    r = w.get("/api/incidents/%s?alerts_limit=0" % ("inc_" + "0" * 24), key=key)
    eq(r.status, 400, "alerts_limit=0 (%r)" % r)
    for path in ("/api/incidents/inc_missing", "/api/incidents/" + "x" * 80):
        r = w.get(path, key=key)
        eq(r.status, 404, "GET %s (%r)" % (path, r))
    eq(incidents(w, key)["incidents"], [], "still serving")


@test
def test_bad_intake(t):
    w = suite_world()
    org, _, key = w.new_org()
    cases = [
        (dict(alert("fp"), extra=1), "unknown member extra"),
        ({k: v for k, v in alert("fp").items() if k != "fingerprint"}, "fingerprint is required"),
        ({k: v for k, v in alert("fp").items() if k != "delivery_id"}, "delivery_id is required"),
        ({k: v for k, v in alert("fp").items() if k != "title"}, "title is required"),
        (alert("fp", state="exploded"), "state must be"),
        (alert("fp", index=-1), "index must be"),
        (alert("fp", index=1.5), "index must be"),
        (alert("fp", source="Grafana!"), "source must be a connector id"),
        (alert("fp", fingerprint=123), "fingerprint must be a string"),
        (alert("fp" * 200), "fingerprint is too long"),
        (alert("fp", occurred_at="last tuesday"), "occurred_at must be"),
        (alert("fp", raw=[1, 2]), "raw must be an object"),
        (alert("fp", title="   "), "title is required"),
        (alert("fp\u0001x"), "fingerprint contains control characters"),
    ]
    for body, msg in cases:
        r = intake(w, org, body)
        eq((r.status, r.error_code), (400, "BAD_REQUEST"), "intake %s (%r)" % (msg, r))
        contains(r.get("error"), msg, "error message")
    for raw, what in ((b"{", "truncated JSON"), (b"[]", "array"), (b"null", "null"),
                      (b'{"a":"\\u0000"}', "NUL in a string")):
        r = intake(w, org, None, raw_body=raw, headers={"Content-Type": "application/json"})
        eq(r.status, 400, "intake %s (%r)" % (what, r))
    r = intake(w, org, None, raw_body=b"x" * (2 * 1024 * 1024),
               headers={"Content-Type": "application/json"})
    eq(r.status, 413, "oversized intake (%r)" % r)
    eq(incidents(w, key)["incidents"], [], "nothing stored")
    # Bounded text: a huge raw object is replaced by a marker, the alert is kept.
    big = alert("fp-big-" + rand_tag(), raw={"blob": "y" * (200 * 1024)})
    ingest(w, org, big, "created")
    check(len(incidents(w, key)["incidents"]) == 1, "the bounded alert is stored")


@test
def test_resolve_and_close(t):
    w = suite_world()
    org, _, key = w.new_org()
    iid = ingest(w, org, alert("fp-" + rand_tag()), "created")["incident_id"]
    base = "/api/incidents/%s" % iid
    r = w.post(base + "/resolve", key=key)
    eq((r.status, r.json["status"]), (200, "resolved"), "resolve (%r)" % r)
    check(r.json["resolved_at"], "resolved_at set", r)
    r = w.post(base + "/resolve", key=key)
    eq((r.status, r.json["status"]), (200, "resolved"), "resolve again (%r)" % r)
    r = w.post(base + "/close", key=key)
    eq((r.status, r.json["status"]), (200, "closed"), "close (%r)" % r)
    check(r.json["closed_at"], "closed_at set", r)
    r = w.post(base + "/close", key=key)
    eq((r.status, r.json["status"]), (200, "closed"), "close again (%r)" % r)
    r = w.post(base + "/resolve", key=key)
    eq((r.status, r.error_code), (409, "INCIDENT_CLOSED"), "resolve a closed incident (%r)" % r)


def claim(w, body=None):
    r = internal(w, "POST", "/internal/rca/jobs/claim", body if body is not None else {})
    eq(r.status, 200, "claim (%r)" % r)
    return r.json["jobs"]


@test(timeout=120)
def test_outbox_routes(t):
    # Its own server: the outbox is server-wide, and the retry delay is short.
    w = t.world("outbox", extra_env={"AURORA_RCA_BACKOFF_S": "1", "AURORA_RCA_MAX_ATTEMPTS": "2"})
    w.new_org()
    org, _, key = w.new_org()
    made = [ingest(w, org, alert("fp-%d" % i, service="s%d" % i), "created")["incident_id"]
            for i in range(3)]
    jobs = claim(w, {"max": 2, "lease_s": 60})
    eq(len(jobs), 2, "two claimed")
    for j in jobs:
        check(j["claim_token"].startswith("rcl_") and j["id"].startswith("rca_"), "job ids", j)
        eq((j["status"], j["attempts"], j["source_type"], j["org_id"]),
           ("claimed", 1, "grafana", org), "job fields")
        eq(j["payload"]["incident"]["id"], j["incident_id"], "payload names its incident")
        contains(j["payload"]["summary"], "grafana alert: HighCPU", "payload summary")
    eq(sorted(j["incident_id"] for j in jobs), sorted(made[:2]), "oldest first")
    rest = claim(w)
    eq([j["incident_id"] for j in rest], [made[2]], "the third only")
    eq(claim(w), [], "nothing left to claim")
    j0, j1 = jobs
    # Wrong tokens.
    for tok in (j1["claim_token"], "rcl_" + "0" * 64, "garbage"):
        r = internal(w, "POST", "/internal/rca/jobs/%s/ack" % j0["id"], {"claim_token": tok})
        eq((r.status, r.error_code), (409, "CLAIM_MISMATCH"), "ack with a wrong token (%r)" % r)
    r = internal(w, "POST", "/internal/rca/jobs/%s/ack" % j0["id"], {})
    eq(r.status, 400, "ack without a token (%r)" % r)
    r = internal(w, "POST", "/internal/rca/jobs/rca_nosuch/ack", {"claim_token": j0["claim_token"]})
    eq(r.status, 404, "ack of an unknown job (%r)" % r)
    r = internal(w, "POST", "/internal/rca/jobs/%s/ack" % j0["id"], {"claim_token": j0["claim_token"]})
    eq((r.status, r.get("status")), (200, "done"), "ack (%r)" % r)
    r = internal(w, "POST", "/internal/rca/jobs/%s/ack" % j0["id"], {"claim_token": j0["claim_token"]})
    eq((r.status, r.get("status")), (200, "done"), "ack again: idempotent (%r)" % r)
    # nack: back after the backoff (1 s), then dead at the second attempt.
    r = internal(w, "POST", "/internal/rca/jobs/%s/nack" % j1["id"],
                 {"claim_token": j1["claim_token"], "error": "model timed out"})
    eq((r.status, r.get("status")), (200, "pending"), "nack (%r)" % r)
    again = wait_until(lambda: claim(w, {"max": 1}) or None, 10, interval=0.2,
                       what="the nacked job to be due again")
    eq((again[0]["id"], again[0]["attempts"], again[0]["last_error"]),
       (j1["id"], 2, "model timed out"), "the same job, second attempt")
    r = internal(w, "POST", "/internal/rca/jobs/%s/nack" % j1["id"],
                 {"claim_token": again[0]["claim_token"], "error": "still failing"})
    eq((r.status, r.get("status"), r.get("next_attempt_at")), (200, "dead", None),
       "nack at the last attempt (%r)" % r)
    r = internal(w, "GET", "/internal/rca/jobs/%s" % j1["id"])
    eq((r.status, r.get("status")), (200, "dead"), "job is dead (%r)" % r)
    lst = internal(w, "GET", "/internal/rca/jobs?status=dead")
    eq([j["id"] for j in lst.json["jobs"]], [j1["id"]], "dead list")
    eq(lst.json["counts"], {"pending": 0, "claimed": 1, "done": 1, "dead": 1}, "counts")
    # Bad input.
    for body in ({"max": 0}, {"max": 101}, {"lease_s": 5}, {"lease_s": "60"}, {"max": 1.5}):
        r = internal(w, "POST", "/internal/rca/jobs/claim", body)
        eq(r.status, 400, "claim %r (%r)" % (body, r))
    r = internal(w, "POST", "/internal/rca/jobs/claim", b"{", )
    eq(r.status, 400, "claim with truncated JSON (%r)" % r)
    r = internal(w, "POST", "/internal/rca/jobs/%s/nack" % rest[0]["id"],
                 {"claim_token": rest[0]["claim_token"], "error": "x" * 2000})
    eq(r.status, 400, "nack with an oversized error (%r)" % r)
    for q in ("?status=bogus", "?limit=0", "?after=x"):
        r = internal(w, "GET", "/internal/rca/jobs" + q)
        eq(r.status, 400, "job list %s (%r)" % (q, r))
    # Restart: the claimed job is still there, claimed.
    w.kill9()
    w.restart()
    r = internal(w, "GET", "/internal/rca/jobs/%s" % rest[0]["id"])
    eq((r.status, r.get("status")), (200, "claimed"), "claimed job after kill -9 (%r)" % r)


def rca_cli(w, *args):
    w.generation += 1
    sandir = os.path.join(w.dir, "san", "rca-%d" % w.generation)
    r = subprocess.run([SERVER_BIN, "rca"] + list(args), env=w.env(sandir), cwd=w.dir,
                       capture_output=True, timeout=60)
    reports = sanitizer_reports(sandir)
    check(not reports, "rca %s: sanitizer report" % " ".join(args), reports)
    lines = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
    return r.returncode, lines, r.stderr.decode()


@test(timeout=120)
def test_rca_command(t):
    w = t.world("rca-cli")
    org, _, key = w.new_org()
    made = [ingest(w, org, alert("fp-%d" % i, service="c%d" % i), "created")["incident_id"]
            for i in range(3)]
    rc, lines, err = rca_cli(w, "counts")
    eq((rc, lines), (0, [{"pending": 3, "claimed": 0, "done": 0, "dead": 0}]), "rca counts: " + err)
    rc, lines, err = rca_cli(w, "watch", "--once")
    eq(rc, 0, "rca watch --once: " + err)
    eq([x["incident_id"] for x in lines], made, "watch prints every job, oldest first")
    check(all("claim_token" not in x for x in lines), "watch shows no claim token", lines)
    rc, lines, err = rca_cli(w, "list", "--status", "pending", "--limit", "2")
    eq((rc, [x["incident_id"] for x in lines]), (0, made[:2]), "rca list --limit 2: " + err)
    # The operator drains the outbox: claimed, printed, acknowledged.
    rc, lines, err = rca_cli(w, "watch", "--claim", "--once", "--max", "2")
    eq(rc, 0, "rca watch --claim --once: " + err)
    eq(sorted(x["incident_id"] for x in lines), sorted(made), "every job consumed")
    check(all(x["claim_token"].startswith("rcl_") for x in lines), "claim tokens shown", lines)
    rc, lines, err = rca_cli(w, "counts")
    eq(lines, [{"pending": 0, "claimed": 0, "done": 3, "dead": 0}], "all done")
    r = internal(w, "GET", "/internal/rca/jobs?status=done")
    eq(len(r.json["jobs"]), 3, "the server sees them done")
    for args in (("list", "--status", "bogus"), ("list", "--limit", "0"), ("watch", "--max", "0"),
                 ("watch", "--lease"), ("frobnicate",), ()):
        rc, _, err = rca_cli(w, *args)
        eq(rc, 2, "rca %s exit status (%s)" % (" ".join(args), err))


if __name__ == "__main__":
    main()
