#!/usr/bin/env python3
"""test_sentry.py — the Sentry connector (connector guide: Observability Tools > Sentry).

Peer: tests/fixtures/sentry_api.mjs stands in for Sentry's web API (docs.sentry.io/api/:
organization, projects with Link-cursor pages, issues, latest event, Discover), served
under / (US), /eu (EU) and /selfhosted; it checks the Bearer token of every call.
Webhook payloads follow Sentry's integration-platform docs (webhooks/issues/,
webhooks/errors/, webhooks/comments/); their Sentry-Hook-Signature is computed here with
Python's hmac (hex HMAC-SHA256 of the raw body under the client secret), independently of
the server's code.  Incidents are read from the store's own tables (incidents,
incident_alerts through the sentry_events view, rca_jobs).
"""
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, NODE, SERVER_BIN, T, Postgres, World, _SUITE, check, contains,  # noqa: E402
                     eq, https_request, main, rand_tag, sanitizer_reports, test, wait_until)

TOKEN = "sntrys_good"
ORG = "acme-co"
MSG_TOKEN = "Invalid Sentry auth token or insufficient permissions"
_peer = {}


def ctl(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(_peer["url"] + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def calls(prefix=None, path_part=""):
    return [c for c in ctl("/_fixture/stats")["calls"]
            if (prefix is None or c["prefix"] == prefix) and path_part in c["path"]]


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        d = os.path.join(st.tmp, "sentry-api")
        os.makedirs(d, exist_ok=True)
        p = st.spawn("sentry-api", [NODE, os.path.join(FIXTURES, "sentry_api.mjs")], dict(os.environ),
                     os.path.join(d, "sentry-api.log"), os.path.join(d, "san"), stdout=subprocess.PIPE)
        line = p.p.stdout.readline().decode()
        check(line.startswith("PORT "), "sentry fixture did not start", line, p.log_tail())
        p.killed = True
        _peer["url"] = "http://127.0.0.1:%d" % int(line.split()[1])
        w = World(st, "suite-server", start=False)
        w.extra_env.update({
            "SENTRY_US_BASE_URL": _peer["url"],
            "SENTRY_EU_BASE_URL": _peer["url"] + "/eu/",
            "SENTRY_ALLOW_LOOPBACK": "true",
            # no test here waits for a provider timeout: ample, for a loaded machine
            "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        })
        w.start()
        w.bootstrap()
        _SUITE["world"] = w
    return _SUITE["world"]


def user(w):
    """A user of its own organization: deliveries and incidents are per org."""
    org, uid, key = w.new_org()
    _orgs[uid] = org
    return uid, key


_orgs = {}


def connect(w, key, secret="c0ffee" * 8, **over):
    body = {"org_slug": ORG, "region": "us", "auth_token": TOKEN}
    if secret is not None:
        body["client_secret"] = secret
    body.update(over)
    return w.post("/sentry/connect", body, key=key)


def secret_paths(w, user_id):
    sandir = os.path.join(w.dir, "san", "secrets-list-" + rand_tag(3))
    r = subprocess.run([SERVER_BIN, "secrets", "list", "aurora/orgs/"],
                       env=w.env(sandir), cwd=w.dir, capture_output=True, timeout=30)
    check(r.returncode == 0 and not sanitizer_reports(sandir), "secrets list", r.stdout, r.stderr)
    return sorted(p for p in json.loads(r.stdout)["paths"] if "/users/%s/sentry/" % user_id in p)


def db(w, sql, *args):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def sign(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(w, uid, resource, payload, secret, sig=None, headers=None, raw=None, query=""):
    body = raw if raw is not None else json.dumps(payload).encode()
    h = {"Content-Type": "application/json", "Request-ID": str(uuid.uuid4()),
         "Sentry-Hook-Resource": resource, "Sentry-Hook-Timestamp": "1733150000"}
    if secret is not None:
        h["Sentry-Hook-Signature"] = sig if sig is not None else sign(secret, body)
    if headers:
        h.update(headers)
    h = {k: v for k, v in h.items() if v is not None}
    return w.request("POST", "/sentry/webhook/%s%s" % (uid, query), body, headers=h, auth=False)


def issue_payload(issue_id, action="created", last_seen="2026-12-02T10:00:00.000000Z", project="checkout"):
    return {
        "action": action,
        "installation": {"uuid": "eac5a0ae-60ec-418f-9318-46dc5e7e52ec"},
        "data": {"issue": {
            "id": str(issue_id), "shortId": "CHECKOUT-%s" % issue_id,
            "title": "ZeroDivisionError: division by zero", "culprit": "app/cart.py in total",
            "level": "fatal", "status": "unresolved" if action != "resolved" else "resolved",
            "firstSeen": "2026-12-02T09:59:00.000000Z", "lastSeen": last_seen,
            "metadata": {"type": "ZeroDivisionError", "value": "division by zero"},
            "project": {"id": "2", "name": project, "slug": project},
            "web_url": "https://sentry.io/organizations/acme-co/issues/%s/" % issue_id,
        }},
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    }


def error_payload(issue_id, event_id=None):
    return {
        "action": "created",
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {"error": {
            "event_id": event_id or uuid.uuid4().hex, "issue_id": str(issue_id), "project": 2,
            "title": "ZeroDivisionError: division by zero", "culprit": "app/cart.py in total",
            "level": "error", "datetime": "2026-12-02T10:01:00.000000Z",
            "web_url": "https://sentry.io/organizations/acme-co/issues/%s/events/x/" % issue_id,
            "exception": {"values": [{"type": "ZeroDivisionError", "value": "division by zero",
                                      "stacktrace": {"frames": [
                                          {"filename": "app/main.py", "function": "main", "lineno": 3},
                                          {"filename": "app/cart.py", "function": "total", "lineno": 27}]}}]},
        }},
    }


def incidents_of(w, org_id):
    return db(w, "SELECT id, status, title, service, severity, summary FROM incidents "
                 "WHERE org_id = ? AND source = 'sentry' ORDER BY started_seq", org_id)


def events_of(w, org_id, issue_id):
    return db(w, "SELECT dedup_key, state, incident_id, message FROM sentry_events "
                 "WHERE org_id = ? AND issue_id = ? ORDER BY received_at, id", org_id, str(issue_id))


def deliveries(w, key):
    r = w.get("/api/sentry/events?limit=100", key=key)
    eq(r.status, 200, "GET /api/sentry/events (%r)" % r)
    return r.json["events"]


def still_serving(w, uid, secret):
    r = deliver(w, uid, "comment", {"action": "created", "data": {"comment": "ok", "issue_id": 1,
                                                                   "comment_id": int(rand_tag(4), 16)}}, secret)
    eq(r.status, 200, "a good delivery after bad ones (%r)" % r)


# ---------------------------------------------------------------------------
@test
def test_connect_validates_and_lists_paged_projects(t):
    w = world()
    uid, key = user(w)
    ctl("/_fixture/reset", {})
    r = connect(w, key)
    eq(r.status, 200, "connect (%r)" % r)
    eq(r.get("connected"), True, "connected")
    eq(r.get("org_slug"), ORG, "org_slug")
    eq(r.get("region"), "us", "region")
    eq(r.get("org_name"), "Acme Co", "org name from Sentry")
    eq(r.get("project_count"), 250, "every project of the three pages")
    check("client_secret" not in r.body.decode() and TOKEN not in r.body.decode(), "no secret echoed", r)
    pages = calls("/", "/projects/")
    eq(len(pages), 3, "projects read in three Link-cursor pages")
    eq([dict(c["query"]).get("cursor") for c in pages], [None, "0:100:0", "0:200:0"], "cursors followed")
    check(all(c["auth_ok"] for c in calls("/")), "every call carried the Bearer token", calls("/"))
    eq(len(calls("/eu")), 0, "nothing to the EU host")
    s = w.get("/sentry/status", key=key)
    eq(s.status, 200, "status (%r)" % s)
    eq(s.get("connected"), True, "status connected")
    eq(s.get("webhook_secret_configured"), True, "secret configured")
    contains(s.get("webhook_url"), "/sentry/webhook/%s" % uid, "webhook URL to paste")
    st = w.get("/api/connectors/status", key=key).json["connectors"]["sentry"]
    eq(st.get("connected"), True, "GET /api/connectors/status")
    contains(st.get("webhook_url"), "/sentry/webhook/%s" % uid, "connectors status webhook URL")
    paths = secret_paths(w, uid)
    eq([p.rsplit("/", 1)[1] for p in paths], ["auth-token", "client-secret"], "both secrets stored")
    log = w.server.log_text()
    check(TOKEN not in log and "c0ffee" * 8 not in log, "no secret in the log")


@test
def test_connect_bad_token_and_unknown_org(t):
    w = world()
    uid, key = user(w)
    r = connect(w, key, auth_token="sntrys_wrong")
    eq(r.status, 400, "bad token (%r)" % r)
    eq(r.get("error"), MSG_TOKEN, "the guide's message")
    contains(r.get("hint"), "starts with sntrys_", "the guide's solution")
    r = connect(w, key, auth_token="sntrys_noscope")
    eq(r.status, 400, "token without org:read (%r)" % r)
    eq(r.get("error"), MSG_TOKEN, "the guide's message on 403")
    r = connect(w, key, org_slug="nope-org")
    eq(r.status, 404, "unknown org (%r)" % r)
    eq(r.get("error"), "Sentry organization 'nope-org' not found", "the guide's message")
    contains(r.get("hint"), "select EU", "EU guidance")
    eq(secret_paths(w, uid), [], "nothing stored")
    eq(w.get("/sentry/status", key=key).get("connected"), False, "not connected")
    for body, what in [({"org_slug": "Acme Co", "auth_token": TOKEN}, "display name as slug"),
                       ({"org_slug": ORG, "region": "ap", "auth_token": TOKEN}, "unknown region"),
                       ({"org_slug": ORG}, "no token"),
                       ({"org_slug": ORG, "auth_token": "sntrys_ x"}, "token with a space"),
                       ({"org_slug": ORG, "auth_token": TOKEN, "client_secret": "a" * 600}, "long secret"),
                       ({"org_slug": ORG, "auth_token": TOKEN, "base_url": "http://sentry.example.com"}, "plain http"),
                       ({"org_slug": ORG, "auth_token": TOKEN, "base_url": "https://u:p@sentry.example.com"}, "credentials in URL"),
                       ({"org_slug": ORG, "auth_token": TOKEN, "base_url": "https://s.example.com/?x=1"}, "query in URL")]:
        r = w.post("/sentry/connect", body, key=key)
        eq(r.status, 400, "%s (%r)" % (what, r))
    r = w.request("POST", "/sentry/connect", b'{"org_slug": "acme-co", "auth_tok', key=key,
                  headers={"Content-Type": "application/json"})
    eq(r.status, 400, "truncated JSON (%r)" % r)
    eq(secret_paths(w, uid), [], "still nothing stored")


@test
def test_connect_eu_region_and_self_hosted(t):
    w = world()
    uid, key = user(w)
    ctl("/_fixture/reset", {})
    r = connect(w, key, region="eu")
    eq(r.status, 200, "EU connect (%r)" % r)
    eq(r.get("region"), "eu", "region eu")
    eq(len(calls("/eu", "/organizations/acme-co/")), 4, "org + 3 project pages on the EU host")
    eq(len(calls("/")), 0, "nothing to the US host")
    ctl("/_fixture/reset", {})
    s = w.get("/sentry/issues?limit=5", key=key)
    eq(s.status, 200, "EU issue search (%r)" % s)
    eq(len(calls("/eu", "/issues/")), 1, "read API on the EU host")
    uid2, key2 = user(w)
    r = connect(w, key2, base_url=_peer["url"] + "/selfhosted")
    eq(r.status, 200, "self-hosted connect (%r)" % r)
    eq(r.get("base_url"), _peer["url"] + "/selfhosted", "base kept")
    ctl("/_fixture/reset", {})
    eq(w.get("/sentry/issues", key=key2).status, 200, "self-hosted search")
    eq(len(calls("/selfhosted", "/issues/")), 1, "read API on the self-hosted base")


@test
def test_read_api_search_latest_event_discover(t):
    w = world()
    uid, key = user(w)
    eq(connect(w, key).status, 200, "connect")
    ctl("/_fixture/reset", {})
    r = w.get("/sentry/issues?query=is:unresolved%20level:error&statsPeriod=24h&project=2,3"
              "&environment=production&limit=5", key=key)
    eq(r.status, 200, "issue search (%r)" % r)
    eq(r.get("count"), 5, "one page of 5")
    eq(r.json["issues"][0]["id"], "5000", "Sentry's issues")
    eq(r.get("next_cursor"), "0:5:0", "next cursor from the Link header")
    q = calls("/", "/issues/")[0]["query"]
    eq(sorted(map(tuple, q)), sorted([("query", "is:unresolved level:error"), ("statsPeriod", "24h"),
                                      ("project", "2"), ("project", "3"), ("environment", "production"),
                                      ("limit", "5")]), "parameters forwarded, one project per id")
    r = w.get("/sentry/issues?limit=5&cursor=0:5:0", key=key)
    eq(r.status, 200, "second page (%r)" % r)
    eq(r.get("count"), 2, "the last two")
    eq(r.get("next_cursor"), None, "no more pages")
    for bad in ["limit=0", "limit=101", "statsPeriod=forever", "project=abc", "project=2,,3",
                "project=" + ",".join(["1"] * 21), "cursor=%3Cx%3E",
                "query=" + "a" * 1100, "start=2026-12-01T00:00:00Z%0A"]:
        r = w.get("/sentry/issues?" + bad, key=key)
        eq(r.status, 400, "bad parameter %s (%r)" % (bad[:30], r))
    r = w.get("/sentry/issues?query=bad:syntax", key=key)
    eq(r.status, 400, "Sentry refuses the query (%r)" % r)
    contains(r.get("error"), "Error parsing search query", "Sentry's reason")

    r = w.get("/sentry/issues/5003", key=key)
    eq(r.status, 200, "issue + latest event (%r)" % r)
    eq(r.json["issue"]["id"], "5003", "issue")
    eq(r.json["latest_event"]["eventID"], "a1b2c3d4e5f6", "latest event")
    eq(r.get("stack_excerpt"), "TypeError: boom 5003\n  at handle (app/handlers.py:42)\n"
                               "  at main (app/main.py:10)", "stack excerpt")
    eq(len(calls("/", "/issues/5003/events/latest/")), 1, "latest event endpoint")
    r = w.get("/sentry/issues/7777", key=key)
    eq(r.status, 200, "issue without events (%r)" % r)
    eq(r.json["latest_event"], None, "no latest event")
    r = w.get("/sentry/issues/404", key=key)
    eq(r.status, 404, "unknown issue (%r)" % r)
    eq(r.get("error"), "Sentry issue '404' not found", "message")
    eq(w.get("/sentry/issues/12ab", key=key).status, 400, "non-numeric issue id")

    ctl("/_fixture/reset", {})
    r = w.post("/sentry/discover", {"fields": ["title", "count()"], "query": "event.type:error",
                                    "statsPeriod": "7d", "sort": "-count()", "limit": 10,
                                    "project": [2, "3"]}, key=key)
    eq(r.status, 200, "discover (%r)" % r)
    eq(r.json["data"], [{"title": "v-title", "count()": 3}], "Discover rows")
    eq(r.json["meta"]["fields"]["count()"], "integer", "meta")
    got = calls("/", "/events/")[0]["query"]
    eq([v for k, v in got if k == "field"], ["title", "count()"], "repeated field parameters")
    eq(dict(got).get("per_page"), "10", "page size")
    eq([v for k, v in got if k == "project"], ["2", "3"], "projects as repeated parameters")
    for body in [{}, {"fields": []}, {"fields": ["x"] * 21}, {"fields": [1]},
                 {"fields": ["title"], "limit": 1000}, {"fields": ["title"], "query": "\u0001"},
                 {"fields": ["title"], "project": [True]}, {"fields": ["title"], "project": []}]:
        eq(w.post("/sentry/discover", body, key=key).status, 400, "bad discover %r" % (body,))
    uid2, key2 = user(w)
    r = w.get("/sentry/issues", key=key2)
    eq(r.status, 404, "not connected (%r)" % r)


@test
def test_webhook_issue_opens_one_incident_dedup_and_attach(t):
    w = world()
    uid, key = user(w)
    secret = "5e" * 32
    eq(connect(w, key, secret=secret).status, 200, "connect")
    org = _orgs[uid]
    iid = 900000 + int(rand_tag(4), 16)
    r = deliver(w, uid, "issue", issue_payload(iid), secret)
    eq(r.status, 200, "signed issue.created (%r)" % r)
    eq(r.get("duplicate"), False, "new delivery")
    wait_until(lambda: len(events_of(w, org, iid)) == 1, 15, what="sentry_events row")
    incs = [i for i in incidents_of(w, org) if i[0] == events_of(w, org, iid)[0][2]]
    eq(len(incs), 1, "one incident")
    inc_id, status, title, service, severity, summary = incs[0]
    eq(status, "open", "incident open")
    eq(title, "ZeroDivisionError: division by zero", "title")
    eq(service, "checkout", "service = project")
    eq(severity, "critical", "fatal normalized")
    contains(summary, "ZeroDivisionError", "summary from the payload")
    jobs = db(w, "SELECT source_type FROM rca_jobs WHERE incident_id = ?", inc_id)
    eq(jobs, [("sentry",)], "exactly one RCA job, source_type sentry")
    ev = events_of(w, org, iid)[0]
    eq(ev[0], "%d:created:2026-12-02T10:00:00.000000Z" % iid, "dedup key issue:action")

    # The same issue + action again (another Request-ID, another actor): a duplicate.
    p = issue_payload(iid)
    p["actor"] = {"type": "user", "id": "7", "name": "someone"}
    r = deliver(w, uid, "issue", p, secret)
    eq(r.status, 200, "second issue.created (%r)" % r)
    wait_until(lambda: all(d["status"] in ("processed", "ignored") for d in deliveries(w, key)), 15,
               what="deliveries processed")
    eq(len(events_of(w, org, iid)), 1, "deduplicated by org + issue + action")
    # An error event of the same issue attaches to the same incident.
    r = deliver(w, uid, "error", error_payload(iid), secret)
    eq(r.status, 200, "error.created (%r)" % r)
    wait_until(lambda: len(events_of(w, org, iid)) == 2, 15, what="error attached")
    err = [e for e in events_of(w, org, iid) if ":error.created:" in e[0]]
    eq(len(err), 1, "the error event recorded")
    eq(err[0][2], inc_id, "attached to the open incident")
    eq(db(w, "SELECT service FROM sentry_events WHERE org_id = ? AND dedup_key = ?", org, err[0][0]),
       [("proj-2",)], "the error's project id named by the slug listed at connect")
    eq(err[0][3], "ZeroDivisionError: division by zero\n  at total (app/cart.py:27)\n  at main (app/main.py:3)",
       "message = first lines of the stack")
    eq(len([i for i in incidents_of(w, org) if i[0] == inc_id]), 1, "still one incident")
    # The same through the incident API.
    r = w.get("/api/incidents?source=sentry", key=key)
    eq(r.status, 200, "GET /api/incidents?source=sentry (%r)" % r)
    eq([(i["id"], i["source"], i["fingerprint"], i["alert_count"]) for i in r.json["incidents"]],
       [(inc_id, "sentry", str(iid), 2)], "one sentry incident with both alerts")
    r = w.get("/api/incidents/%s" % inc_id, key=key)
    eq(r.status, 200, "GET /api/incidents/{id} (%r)" % r)
    eq([(a["state"], a["source_alert_id"]) for a in r.json["alerts"]],
       [("firing", str(iid)), ("firing", str(iid))], "the issue and the error, in order")
    contains(r.json["alerts"][1]["message"], "at total (app/cart.py:27)", "stack excerpt in the alert")
    eq(len(db(w, "SELECT id FROM rca_jobs WHERE incident_id = ?", inc_id)), 1, "still one RCA job")
    # Resolved in Sentry: the incident resolves.
    r = deliver(w, uid, "issue", issue_payload(iid, "resolved"), secret)
    eq(r.status, 200, "issue.resolved (%r)" % r)
    wait_until(lambda: db(w, "SELECT status FROM incidents WHERE id = ?", inc_id) == [("resolved",)], 15,
               what="incident resolved")
    eq(w.get("/api/incidents/%s" % inc_id, key=key).get("status"), "resolved", "resolved through the API")
    # Stored only: comment and installation.
    for res, body in [("comment", {"action": "created", "data": {"comment": "looking", "issue_id": iid,
                                                                  "comment_id": 1, "project_slug": "checkout"}}),
                      ("installation", {"action": "created", "data": {"installation": {"uuid": "x"}}})]:
        r = deliver(w, uid, res, body, secret)
        eq(r.status, 200, "%s accepted (%r)" % (res, r))
    wait_until(lambda: sum(1 for d in deliveries(w, key) if d["status"] == "ignored") >= 2, 15,
               what="stored-only deliveries ignored")
    eq(len(events_of(w, org, iid)), 3, "comment/installation drive nothing")
    kinds = sorted(d["event"] for d in deliveries(w, key))
    eq(kinds, ["comment", "error", "installation", "issue", "issue", "issue"], "every delivery kept raw")


@test
def test_webhook_bad_input(t):
    w = world()
    uid, key = user(w)
    secret = "ab" * 32
    eq(connect(w, key, secret=secret).status, 200, "connect")
    iid = 800000 + int(rand_tag(4), 16)
    good = issue_payload(iid)
    body = json.dumps(good).encode()
    r = deliver(w, uid, "issue", good, secret, sig=sign("wrong-secret", body))
    eq(r.status, 401, "wrong signature (%r)" % r)
    eq(r.get("error"), "Invalid webhook signature", "message")
    r = deliver(w, uid, "issue", good, None)
    eq(r.status, 401, "missing signature (%r)" % r)
    flipped = body.replace(b"division", b"divisiox")
    r = deliver(w, uid, "issue", None, secret, sig=sign(secret, body), raw=flipped)
    eq(r.status, 401, "body changed after signing (%r)" % r)
    r = deliver(w, uid, "issue", None, secret, sig=sign(secret, body), raw=body[:-20])
    eq(r.status, 401, "truncated body, original signature (%r)" % r)
    r = deliver(w, uid, "issue", None, secret, raw=body[:-20])
    eq(r.status, 400, "truncated JSON, signed as sent (%r)" % r)
    r = deliver(w, uid, "issue", good, secret, headers={"Content-Type": "application/x-www-form-urlencoded"})
    eq(r.status, 415, "wrong content type (%r)" % r)
    r = deliver(w, uid, "nonsense", good, secret)
    eq(r.status, 400, "unknown resource (%r)" % r)
    r = deliver(w, uid, "issue", good, secret, headers={"Sentry-Hook-Resource": None})
    eq(r.status, 400, "no resource header (%r)" % r)
    r = deliver(w, uid, "issue", {"action": "created", "data": {"issue": {"title": "no id"}}}, secret)
    eq(r.status, 400, "issue without id (%r)" % r)
    big = issue_payload(iid)
    big["data"]["issue"]["metadata"]["value"] = "x" * (600 * 1024)
    r = deliver(w, uid, "issue", big, secret)
    eq(r.status, 413, "oversized (%r)" % r)
    r = deliver(w, "no-such-user-%s" % rand_tag(4), "issue", good, secret)
    eq(r.status, 404, "unknown user (%r)" % r)
    r = deliver(w, "bad%20user%21", "issue", good, secret)
    eq(r.status, 400, "malformed user id (%r)" % r)
    # Another user's URL: that user's secret does not verify this body.
    uid2, key2 = user(w)
    eq(connect(w, key2, secret="cd" * 32).status, 200, "connect user 2")
    r = deliver(w, uid2, "issue", good, secret)
    eq(r.status, 401, "signed for another user (%r)" % r)
    eq(deliveries(w, key), [], "nothing stored from bad requests")
    eq(events_of(w, _orgs[uid], iid), [], "no alert")
    # No client secret configured: the guide's message.
    uid3, key3 = user(w)
    eq(connect(w, key3, secret=None).status, 200, "connect without a client secret")
    eq(w.get("/sentry/status", key=key3).get("webhook_secret_configured"), False, "status says so")
    r = deliver(w, uid3, "issue", good, secret)
    eq(r.status, 401, "no secret configured (%r)" % r)
    eq(r.get("error"), "Webhook signing secret not configured", "the guide's message")
    # A captured delivery replayed under a fresh Request-ID: a duplicate.
    r1 = deliver(w, uid, "issue", good, secret)
    eq(r1.status, 200, "good delivery (%r)" % r1)
    r2 = deliver(w, uid, "issue", good, secret)
    eq(r2.status, 200, "replay (%r)" % r2)
    eq(r2.get("duplicate"), True, "replay is a duplicate")
    eq(len(deliveries(w, key)), 1, "stored once")
    still_serving(w, uid, secret)


@test
def test_disconnect_deletes_secrets_and_webhooks_404(t):
    w = world()
    uid, key = user(w)
    secret = "99" * 32
    eq(connect(w, key, secret=secret).status, 200, "connect")
    eq(len(secret_paths(w, uid)), 2, "two secrets")
    r = deliver(w, uid, "comment", {"action": "created", "data": {"comment": "x", "issue_id": 1}}, secret)
    eq(r.status, 200, "webhook before disconnect (%r)" % r)
    r = w.delete("/api/connectors/sentry", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    eq(secret_paths(w, uid), [], "both secrets deleted")
    r = deliver(w, uid, "issue", issue_payload(1), secret)
    eq(r.status, 404, "webhook after disconnect (%r)" % r)
    eq(w.get("/sentry/issues", key=key).status, 404, "read API after disconnect")
    # Reconnect, then the alias route.
    eq(connect(w, key, secret=secret).status, 200, "reconnect")
    eq(deliver(w, uid, "comment", {"action": "created", "data": {"comment": "y", "issue_id": 2}}, secret).status,
       200, "webhook after reconnect")
    r = w.post("/sentry/disconnect", {}, key=key)
    eq(r.status, 200, "POST /sentry/disconnect (%r)" % r)
    eq(secret_paths(w, uid), [], "secrets deleted again")
    eq(deliver(w, uid, "issue", issue_payload(2), secret).status, 404, "404 again")


@test
def test_loopback_base_refused_unless_allowed(t):
    world()  # the fixture
    w = t.world(extra_env={"SENTRY_US_BASE_URL": "https://sentry.invalid"})
    for base in [_peer["url"], "https://127.0.0.1:1", "https://0x7f000001", "https://localhost",
                 "https://[::1]:9"]:
        r = w.post("/sentry/connect", {"org_slug": ORG, "auth_token": TOKEN, "base_url": base})
        eq(r.status, 400, "loopback base %s (%r)" % (base, r))
        contains(r.get("error"), "SENTRY_ALLOW_LOOPBACK", "says how to allow it")
    eq(w.get("/health", auth=False).status, 200, "still serving")


@test
def test_base_reaching_this_host_by_other_spellings_or_names_refused(t):
    """The loopback rule holds for what curl connects to, not for the spelling: a name that
    resolves to loopback (curl resolves *.localhost itself), another case, the unspecified
    address (Linux connects it to this host), an IPv4-mapped form; link-local (the cloud
    metadata service) never, SENTRY_ALLOW_LOOPBACK or not."""
    world()  # the fixture
    w = t.world(extra_env={"SENTRY_US_BASE_URL": "https://sentry.invalid"})
    lst = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    lst.bind(("::", 0))
    lst.listen(16)
    lst.setblocking(False)
    port = lst.getsockname()[1]
    try:
        for base in ["https://LOCALHOST:%d" % port, "https://sentry.localhost:%d" % port,
                     "https://[::]:%d" % port, "https://0.0.0.0:%d" % port,
                     "https://[::ffff:7f00:1]:%d" % port, "https://169.254.169.254",
                     "https://[fe80::1]:%d" % port]:
            r = w.post("/sentry/connect", {"org_slug": ORG, "auth_token": TOKEN, "base_url": base})
            eq((r.status, r.error_code), (400, "SENTRY_INVALID_BASE_URL"), "base %s (%r)" % (base, r))
            try:
                conn, peer = lst.accept()  # a connect completed before the answer is queued here
                conn.close()
                check(False, "base %s: the server connected to this host (%r)" % (base, peer))
            except BlockingIOError:
                pass
    finally:
        lst.close()
    eq(w.get("/health", auth=False).status, 200, "still serving")
    allowing = world()  # SENTRY_ALLOW_LOOPBACK=true
    _, key = user(allowing)
    # the cloud metadata services outside link-local: AWS's and GCP's IPv6 ones,
    # Azure's wireserver, Alibaba's (and a mapped form)
    for base in ["https://169.254.169.254", "https://[::ffff:169.254.169.254]", "https://[fd00:ec2::254]",
                 "https://[fd20:ce::254]", "https://168.63.129.16", "https://100.100.100.200",
                 "https://[::ffff:168.63.129.16]"]:
        r = connect(allowing, key, base_url=base)
        eq((r.status, r.error_code), (400, "SENTRY_INVALID_BASE_URL"), "with loopback allowed: %s (%r)" % (base, r))


@test(timeout=120)
def test_kill9_after_2xx_nothing_lost_one_job_each(t):
    world()  # the fixture
    w = t.world(extra_env={"SENTRY_US_BASE_URL": _peer["url"], "SENTRY_ALLOW_LOOPBACK": "true"})
    secret = "77" * 32
    eq(connect(w, w.api_key, secret=secret).status, 200, "connect")
    base = 700000 + int(rand_tag(3), 16)
    ids = [base + i for i in range(20)]
    for i in ids:
        eq(deliver(w, w.user_id, "issue", issue_payload(i, project="svc-%d" % i), secret).status, 200,
           "delivery %d" % i)
    w.kill9()
    w.restart()

    # A delivery the killed process had claimed mid-processing waits for the
    # kit's claim lease (KIT_WH_CLAIM_LEASE_S, 300 s) before the sweep retries
    # it: counted apart, never lost (the row is there, claimed).
    def settled():
        rows = db(w, "SELECT status, COUNT(*) FROM webhook_deliveries WHERE connector = 'sentry' "
                     "GROUP BY status")
        return dict(rows).get("received", 0) == 0 and dict(rows).get("failed", 0) == 0
    wait_until(settled, 60, what="every received delivery processed after the restart (recovery sweep)")
    st = dict(db(w, "SELECT status, COUNT(*) FROM webhook_deliveries WHERE connector = 'sentry' GROUP BY status"))
    eq(sum(st.values()), len(ids), "each delivery stored once (%r)" % st)
    check(set(st) <= {"processed", "processing"}, "only processed or claimed by the dead process", st)
    # A "processing" row may still be the new process's sweep at work (its
    # alert, incident and job commit together, its "processed" mark after),
    # so the counts are read in one statement: one snapshot of the file.
    done, alerts, incidents, jobs, job_incidents = db(
        w, "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'sentry'"
           " AND status = 'processed'),"
           " (SELECT COUNT(*) FROM sentry_events WHERE org_id = ?1),"
           " (SELECT COUNT(*) FROM incidents WHERE org_id = ?1 AND source = 'sentry'),"
           " (SELECT COUNT(*) FROM rca_jobs WHERE org_id = ?1),"
           " (SELECT COUNT(DISTINCT incident_id) FROM rca_jobs WHERE org_id = ?1)", w.org_id)[0]
    t.note("processed %d, claimed (by the killed process or the sweep) %d" % (done, len(ids) - done))
    # A claimed delivery may have been ingested before the kill (its alert
    # committed, its "processed" mark not): between processed and all.
    check(done <= alerts <= len(ids), "one alert per ingested delivery", done, alerts)
    eq(incidents, alerts, "one incident per ingested issue")
    eq((jobs, job_incidents), (alerts, alerts), "exactly one RCA job per incident")


@test(timeout=150)
def test_per_user_rate_limit_counts_verified_deliveries_only(t):
    world()  # the fixture
    w = t.world(extra_env={"SENTRY_US_BASE_URL": _peer["url"], "SENTRY_WEBHOOK_RATE_PER_MINUTE": "3"})
    secret = "42" * 32
    for attempt in range(3):  # a try straddling a minute's end starts over with a fresh user
        org, uid, key = w.new_org()
        eq(connect(w, key, secret=secret).status, 200, "connect")
        minute = int(time.time()) // 60
        bad = [deliver(w, uid, "issue", issue_payload(1), secret, sig="00" * 32).status for _ in range(5)]
        got = [deliver(w, uid, "comment", {"action": "created",
                                           "data": {"comment": "c%d" % i, "issue_id": 1}}, secret)
               for i in range(4)]
        if int(time.time()) // 60 != minute:
            continue
        eq(bad, [401] * 5, "forged deliveries refused")
        eq([r.status for r in got], [200, 200, 200, 429], "the 4th verified delivery this minute")
        eq(got[3].error_code, "RATE_LIMITED", "code")
        check(0 < int(got[3].headers.get("retry-after", "0")) <= 60, "Retry-After", got[3].headers)
        eq(len(deliveries(w, key)), 3, "the refused one is not stored")
        eq(w.get("/health", auth=False).status, 200, "still serving")
        return
    raise AssertionError("three tries straddled a minute boundary")


@test(timeout=150)
def test_rate_limit_one_budget_with_or_without_org_id(t):
    """The budget is the resolved tenant's: a URL with ?org_id= and one without
    name the same user of the same organization, so they share one count (the
    key was the raw query value: two budgets, twice the limit)."""
    world()  # the fixture
    w = t.world(extra_env={"SENTRY_US_BASE_URL": _peer["url"], "SENTRY_WEBHOOK_RATE_PER_MINUTE": "3"})
    secret = "5d" * 32
    for attempt in range(3):  # a try straddling a minute's end starts over with a fresh user
        org, uid, key = w.new_org()
        eq(connect(w, key, secret=secret).status, 200, "connect")
        minute = int(time.time()) // 60
        got = [deliver(w, uid, "comment", {"action": "created",
                                           "data": {"comment": "c%d" % i, "issue_id": 1}}, secret,
                       query="?org_id=%s" % org if i % 2 else "").status
               for i in range(4)]
        if int(time.time()) // 60 != minute:
            continue
        eq(got, [200, 200, 200, 429], "the 4th verified delivery this minute, however the URL names the org")
        eq(len(deliveries(w, key)), 3, "the refused one is not stored")
        return
    raise AssertionError("three tries straddled a minute boundary")


@test(timeout=180)
def test_postgres_webhook_incident_dedup_and_rate_limit(t):
    """The same path on PostgreSQL: delivery, incident + one RCA job, dedup, attach, rate limit."""
    world()  # the fixture
    pg = Postgres()
    t.defer(pg.destroy)
    w = t.world(extra_env={"DATABASE_URL": pg.url, "SENTRY_US_BASE_URL": _peer["url"],
                           "SENTRY_WEBHOOK_RATE_PER_MINUTE": "4"})

    def psql(sql):
        r = subprocess.run([os.path.join(pg.bindir, "psql"), "-h", pg.dir, "-p", "5432", "-U", "aurora",
                            "-d", "postgres", "-Atc", sql], capture_output=True, timeout=30)
        check(r.returncode == 0, "psql", r.stderr)
        return [tuple(line.split("|")) for line in r.stdout.decode().splitlines() if line]

    secret = "3c" * 32
    eq(connect(w, w.api_key, secret=secret).status, 200, "connect")
    iid = 600000 + int(rand_tag(4), 16)
    minute = int(time.time()) // 60
    codes = [deliver(w, w.user_id, "issue", issue_payload(iid), secret).status]
    p = issue_payload(iid)
    p["actor"] = {"type": "user", "id": "9", "name": "again"}
    codes.append(deliver(w, w.user_id, "issue", p, secret).status)
    codes.append(deliver(w, w.user_id, "error", error_payload(iid), secret).status)
    eq(codes, [200, 200, 200], "deliveries")
    wait_until(lambda: psql("SELECT count(*) FROM webhook_deliveries WHERE connector = 'sentry' "
                            "AND status = 'processed'") == [("3",)], 30, what="three processed")
    ev = psql("SELECT dedup_key, incident_id FROM sentry_events WHERE issue_id = '%d' ORDER BY dedup_key" % iid)
    eq(len(ev), 2, "issue.created once (deduplicated) + the error (%r)" % ev)
    eq(ev[0][1], ev[1][1], "the error attached to the issue's incident")
    eq(psql("SELECT count(*), min(source_type) FROM rca_jobs WHERE incident_id = '%s'" % ev[0][1]),
       [("1", "sentry")], "exactly one RCA job")
    more = [deliver(w, w.user_id, "comment", {"action": "created", "data": {"comment": "c%d" % i, "issue_id": iid}},
                    secret).status for i in range(2)]
    if int(time.time()) // 60 == minute:
        eq(more, [200, 429], "the 5th verified delivery of the minute (limit 4)")
    else:
        # the window rolled over: the new minute has room for both
        eq(more, [200, 200], "a new minute's window (the 429 itself is judged by the SQLite test)")


if __name__ == "__main__":
    main()
