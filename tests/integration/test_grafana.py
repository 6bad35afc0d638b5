#!/usr/bin/env python3
"""test_grafana.py — the Grafana connector (connector guide: Observability Tools >
Grafana) on the real server: POST /grafana/alerts/webhook/{user_id}, connect on the
first (test) delivery, disconnect / reconnect, GET /grafana/status, and the guide's
table "How Aurora Processes Grafana Webhooks", one test per row.

Inputs, independent of the server's code: every payload is built here in Grafana's
documented webhook contact point format (Grafana docs, "Configure webhook
notifications": receiver, status, orgId, alerts[] of {status, labels, annotations,
startsAt, endsAt, generatorURL, fingerprint, silenceURL, dashboardURL, panelURL,
values, valueString}, groupLabels, commonLabels, commonAnnotations, externalURL,
version "1", groupKey, truncatedAlerts, title, state, message), with Go's time format
(fractional seconds, "Z" or an offset) and 16-hex fingerprints as Grafana sends them.
The test notification is the one Grafana's "Test" button sends (alertname TestAlert,
instance Grafana, summary "Notification test").

Incidents, their alerts and the RCA outbox are checked in the tables, read-only
(SQLite file, or psql for the PostgreSQL run: incidents, incident_alerts, rca_jobs and
the view grafana_alerts the guide names) and through the incident core's routes
(GET /api/incidents, GET /api/incidents/{id}, GET /internal/rca/jobs), which must agree.
"""
import datetime
import json
import os
import secrets
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, eq, https_request, main, rand_tag, suite_world, test,  # noqa: E402
                     wait_until, within_one_window)

SUITE_ENV = {"GRAFANA_WEBHOOK_MAX_BODY": "65536", "GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE": "1000"}


def world():
    return suite_world(extra_env=SUITE_ENV)


# ---------------------------------------------------------------------------
# Grafana's payloads
# ---------------------------------------------------------------------------
def gotime(t, offset_minutes=0):
    """Go's RFC 3339 with nanoseconds, in the given offset (Grafana's startsAt)."""
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    d = datetime.datetime.fromtimestamp(t, tz)
    s = d.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789"
    return s + ("Z" if offset_minutes == 0 else d.strftime("%z")[:3] + ":" + d.strftime("%z")[3:])


def fingerprint():
    """16 hex digits like Grafana's, never all digits (psql reads cells back untyped)."""
    return secrets.choice("abcdef") + secrets.token_hex(8)[1:]


def alert(status, name, fp, service=None, severity="critical", starts=None, ends=None,
          extra_labels=None, description=None):
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    starts = starts if starts is not None else now - 60
    labels = {"alertname": name, "grafana_folder": "Production"}
    if service:
        labels["service"] = service
    if severity:
        labels["severity"] = severity
    labels.update(extra_labels or {})
    a = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "%s on %s" % (name, service or "?"),
                        "description": description or "%s is out of bounds" % name},
        "startsAt": gotime(starts),
        "endsAt": gotime(ends) if ends else "0001-01-01T00:00:00Z",
        "generatorURL": "https://grafana.example.test/alerting/grafana/%s/view" % fp,
        "silenceURL": "https://grafana.example.test/alerting/silence/new?alertmanager=grafana",
        "dashboardURL": "",
        "panelURL": "",
        "values": {"B": 97.5, "C": 1},
        "valueString": "[ var='B' labels={service=%s} value=97.5 ], [ var='C' value=1 ]" % service,
    }
    if fp is not None:
        a["fingerprint"] = fp
    return a


def payload(alerts, receiver="aurora"):
    firing = [a for a in alerts if a["status"] == "firing"]
    status = "firing" if firing else "resolved"
    common = dict(alerts[0]["labels"]) if len(alerts) == 1 else {"grafana_folder": "Production"}
    return {
        "receiver": receiver,
        "status": status,
        "orgId": 1,
        "alerts": alerts,
        "groupLabels": {"grafana_folder": "Production"},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "https://grafana.example.test/",
        "version": "1",
        "groupKey": "{}/{}:{grafana_folder=\"Production\"}",
        "truncatedAlerts": 0,
        "title": "[%s:%d] (Production)" % (status.upper(), len(firing) or len(alerts)),
        "state": "alerting" if firing else "ok",
        "message": "**%s**\n\n%d alerts" % (status.capitalize(), len(alerts)),
    }


def test_notification():
    """What Grafana's contact point "Test" button sends."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    return {
        "receiver": "test", "status": "firing", "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "TestAlert", "instance": "Grafana"},
            "annotations": {"summary": "Notification test",
                            "__value_string__": "[ metric='foo' labels={instance=bar} value=10 ]"},
            "startsAt": gotime(now), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "57c6d9296de2ad39", "silenceURL": "",
            "dashboardURL": "", "panelURL": "", "values": None,
            "valueString": "[ metric='foo' labels={instance=bar} value=10 ]",
        }],
        "groupLabels": {"alertname": "TestAlert", "instance": "Grafana"},
        "commonLabels": {"alertname": "TestAlert", "instance": "Grafana"},
        "commonAnnotations": {"summary": "Notification test"},
        "externalURL": "https://grafana.example.test/", "version": "1",
        "groupKey": "test-57c6d9296de2ad39-%d" % now, "truncatedAlerts": 0,
        "title": "[FIRING:1] TestAlert Grafana ", "state": "alerting",
        "message": "**Firing**\n\nValue: [no value]\nLabels:\n - alertname = TestAlert\n",
    }


# ---------------------------------------------------------------------------
# server helpers
# ---------------------------------------------------------------------------
class Tenant:
    """A backend-named organization and user (provisioned on first use)."""

    def __init__(self, w, org=None, user=None):
        self.w = w
        self.org = org or "org-gf-%s" % rand_tag(6)
        self.user = user or "user-gf-%s" % rand_tag(6)
        r = self.api("GET", "/grafana/status")
        eq(r.status, 200, "GET /grafana/status provisions %s/%s" % (self.org, self.user))

    def headers(self):
        return {"X-Internal-Secret": self.w.secret, "X-User-ID": self.user, "X-Org-ID": self.org}

    def api(self, method, path, body=None):
        return https_request(self.w.port, self.w.ctx, method, path, body, self.headers())

    def status(self):
        r = self.api("GET", "/grafana/status")
        eq(r.status, 200, "GET /grafana/status")
        return r.json

    def send(self, body, query="", content_type="application/json", raw=None):
        data = raw if raw is not None else json.dumps(body).encode()
        return https_request(self.w.port, self.w.ctx, "POST",
                             "/grafana/alerts/webhook/%s%s" % (self.user, query), data,
                             {"Content-Type": content_type})

    def deliver(self, body, query=""):
        """Sends, expects 200, waits until the delivery is processed; returns its id."""
        r = self.send(body, query)
        eq(r.status, 200, "webhook delivery answered")
        did = r.get("id")
        check(did and did.startswith("whd_"), "delivery id in the answer", r)
        self.wait_processed(did)
        return did

    def wait_processed(self, did, want=("processed",)):
        def done():
            r = self.api("GET", "/api/grafana/events/%s" % did)
            return r.status == 200 and r.get("status") in want and r
        r = wait_until(done, 20, what="delivery %s processed" % did)
        return r.json

    def db(self):
        return sqlite3.connect("file:%s?mode=ro" % os.path.join(self.w.data, "aurora.db"),
                               uri=True, timeout=10)

    def query(self, sql, *args):
        con = self.db()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def incidents(self):
        return self.query("SELECT id, status, fingerprint, service, severity, started_at,"
                          " resolved_at, title FROM incidents WHERE org_id = ?"
                          " ORDER BY started_at, started_seq", self.org)

    def alerts(self, incident_id=None):
        if incident_id:
            # The incident's own order: the position correlation attached each alert
            # at (deliveries of one second are processed in parallel, so received_at
            # does not tell it), what GET /api/incidents/{id} lists.
            return self.query("SELECT fingerprint, state, incident_id, idx FROM incident_alerts"
                              " WHERE org_id = ? AND incident_id = ? AND source = 'grafana'"
                              " ORDER BY incident_pos", self.org, incident_id)
        return self.query("SELECT fingerprint, status, incident_id, idx FROM grafana_alerts"
                          " WHERE org_id = ? ORDER BY received_at, idx", self.org)

    def check_one_rca_job_each(self):
        """Every new incident has exactly one RCA job (source_type 'grafana')."""
        rows = self.query("SELECT i.id, COUNT(j.id), MIN(j.source_type) FROM incidents i"
                          " LEFT JOIN rca_jobs j ON j.incident_id = i.id WHERE i.org_id = ?"
                          " GROUP BY i.id", self.org)
        for inc, n, source in rows:
            eq(n, 1, "RCA jobs of incident %s" % inc)
            eq(source, "grafana", "RCA job source_type of %s" % inc)
        jobs = self.query("SELECT COUNT(*) FROM rca_jobs WHERE org_id = ?", self.org)[0][0]
        eq(jobs, len(rows), "RCA jobs of the organization = its incidents")
        self.check_api_agrees()

    def check_api_agrees(self):
        """The incident core's routes (docs/api.md, Incidents; docs/rca-outbox.md) say
        what the tables say: GET /api/incidents, GET /api/incidents/{id} with its alerts,
        and one RCA job per incident in GET /internal/rca/jobs."""
        r = self.api("GET", "/api/incidents?source=grafana&limit=200")
        eq(r.status, 200, "GET /api/incidents")
        listed = {i["id"]: i["status"] for i in r.json["incidents"]}
        eq(listed, {i[0]: i[1] for i in self.incidents()}, "GET /api/incidents = the table")
        for inc_id in listed:
            one = self.api("GET", "/api/incidents/%s" % inc_id)
            eq(one.status, 200, "GET /api/incidents/%s" % inc_id)
            eq([a["fingerprint"] for a in one.json["alerts"]],
               [a[0] for a in self.alerts(inc_id)], "alerts of %s through the API" % inc_id)
        jobs, after = [], None
        while True:
            q = "/internal/rca/jobs?limit=1000" + ("&after=%s" % after if after else "")
            r = https_request(self.w.port, self.w.ctx, "GET", q, None,
                              {"X-Internal-Secret": self.w.secret})
            eq(r.status, 200, "GET /internal/rca/jobs")
            jobs += r.json["jobs"]
            after = r.json.get("next_after")
            if not after or not r.json["jobs"]:
                break
        mine = [j for j in jobs if j.get("incident_id") in listed]
        eq(sorted(j["incident_id"] for j in mine), sorted(listed),
           "exactly one RCA job per incident in the outbox routes")
        check(all(j.get("source_type") == "grafana" for j in mine), "source_type grafana", mine)

    def deliveries(self):
        return self.status()["deliveries"]


def still_serving(w, tenant):
    """A good delivery after bad input is accepted and processed."""
    fp = fingerprint()
    tenant.deliver(payload([alert("firing", "AfterBadInput", fp, service="svc-%s" % rand_tag(4))]))


def now():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp())


# ---------------------------------------------------------------------------
# the guide's table, one test per row
# ---------------------------------------------------------------------------
def _row_single_alert_fires_then_resolves(g):
    """Matched by fingerprint, resolution grouped with the original incident."""
    fp = fingerprint()
    start = now() - 600
    g.deliver(payload([alert("firing", "HighLatency", fp, service="checkout", starts=start)]))
    inc = g.incidents()
    eq(len(inc), 1, "one incident after the firing alert")
    eq(inc[0][1], "open", "incident open")
    eq(inc[0][2], fp, "incident fingerprint")
    eq(inc[0][3], "checkout", "service from labels.service")
    eq(inc[0][4], "critical", "severity from labels.severity")
    eq(inc[0][5], start, "started_at = startsAt")
    eq(inc[0][7], "HighLatency", "title = labels.alertname")
    end = now() - 30
    g.deliver(payload([alert("resolved", "HighLatency", fp, service="checkout", starts=start,
                             ends=end)]))
    inc2 = g.incidents()
    eq(len(inc2), 1, "the resolution opened no incident")
    eq(inc2[0][0], inc[0][0], "same incident")
    eq(inc2[0][1], "resolved", "incident resolved")
    eq(inc2[0][6], end, "resolved_at = the resolution's endsAt")
    eq([(a[0], a[1]) for a in g.alerts(inc[0][0])], [(fp, "firing"), (fp, "resolved")],
       "both alerts grouped with the incident, in order")
    g.check_one_rca_job_each()


@test
def row_single_alert_fires_then_resolves(t):
    _row_single_alert_fires_then_resolves(Tenant(world()))


def _row_multiple_alerts_in_one_webhook(g):
    """Each fingerprint processed independently: correlated alerts attach to an existing
    incident, uncorrelated ones create a new incident and RCA."""
    fa, fb, fc = fingerprint(), fingerprint(), fingerprint()
    did = g.deliver(payload([alert("firing", "CPUHigh", fa, service="payments"),
                             alert("firing", "MemoryHigh", fb, service="payments"),
                             alert("firing", "DiskFull", fc, service="search-db")]))
    inc = g.incidents()
    eq(len(inc), 2, "two incidents: payments (two alerts correlated) and search-db")
    by_service = {i[3]: i[0] for i in inc}
    eq(sorted(by_service), ["payments", "search-db"], "services")
    eq([a[0] for a in g.alerts(by_service["payments"])], [fa, fb],
       "the second payments alert attached to the first one's incident")
    eq([a[0] for a in g.alerts(by_service["search-db"])], [fc], "search-db on its own")
    rows = g.query("SELECT idx, fingerprint FROM grafana_alerts WHERE delivery_id = ?"
                   " ORDER BY idx", did)
    eq(rows, [(0, fa), (1, fb), (2, fc)], "one alert row per element of alerts[], in order")
    g.check_one_rca_job_each()


@test
def row_multiple_alerts_in_one_webhook(t):
    _row_multiple_alerts_in_one_webhook(Tenant(world()))


def _row_partial_resolution(g):
    """Some firing, some resolved: each alert handled by its own status."""
    fa, fb = fingerprint(), fingerprint()
    start = now() - 900
    g.deliver(payload([alert("firing", "ErrorRate", fa, service="api", starts=start),
                       alert("firing", "QueueDepth", fb, service="worker", starts=start)]))
    eq(len(g.incidents()), 2, "two incidents")
    g.deliver(payload([alert("resolved", "ErrorRate", fa, service="api", starts=start,
                             ends=now() - 5),
                       alert("firing", "QueueDepth", fb, service="worker", starts=start)]))
    inc = {i[2]: i for i in g.incidents()}
    eq(len(inc), 2, "no new incident")
    eq(inc[fa][1], "resolved", "the resolved alert's incident is resolved")
    eq(inc[fb][1], "open", "the still-firing alert's incident stays open")
    eq([a[1] for a in g.alerts(inc[fb][0])], ["firing", "firing"],
       "the repeated firing alert attached to its open incident")
    g.check_one_rca_job_each()


@test
def row_partial_resolution(t):
    _row_partial_resolution(Tenant(world()))


def _row_same_alert_refires_weeks_later(g):
    """New incident; the resolution matches the newest by started_at DESC."""
    fp = fingerprint()
    weeks_ago = now() - 21 * 86400
    g.deliver(payload([alert("firing", "CertExpiry", fp, service="edge", starts=weeks_ago)]))
    g.deliver(payload([alert("resolved", "CertExpiry", fp, service="edge", starts=weeks_ago,
                             ends=weeks_ago + 3600)]))
    old = g.incidents()
    eq([(i[1], i[5]) for i in old], [("resolved", weeks_ago)], "the first occurrence, resolved")
    again = now() - 120
    g.deliver(payload([alert("firing", "CertExpiry", fp, service="edge", starts=again)]))
    inc = g.incidents()
    eq(len(inc), 2, "the re-fire weeks later opened a new incident")
    eq(inc[1][5], again, "the new incident started at the new startsAt")
    eq(inc[1][1], "open", "new incident open")
    g.deliver(payload([alert("resolved", "CertExpiry", fp, service="edge", starts=again,
                             ends=now() - 1)]))
    inc = g.incidents()
    eq(len(g.alerts(inc[1][0])), 2, "the resolution went to the newest incident")
    eq(len(g.alerts(inc[0][0])), 2, "the old incident got nothing new")
    eq(inc[1][1], "resolved", "newest incident resolved")
    g.check_one_rca_job_each()


@test
def row_same_alert_refires_weeks_later(t):
    _row_same_alert_refires_weeks_later(Tenant(world()))


def _row_resolution_with_no_matching_incident(g):
    """Logged and skipped; the alert is still persisted in grafana_alerts."""
    w = g.w
    fp = fingerprint()
    did = g.deliver(payload([alert("resolved", "GhostAlert", fp, service="nowhere",
                                   starts=now() - 300, ends=now() - 10)]))
    eq(g.incidents(), [], "no incident opened by a resolution")
    rows = g.query("SELECT fingerprint, status, incident_id, payload FROM grafana_alerts"
                   " WHERE delivery_id = ?", did)
    eq(len(rows), 1, "the resolution is stored in grafana_alerts")
    eq(rows[0][:3], (fp, "resolved", None), "stored unmatched (incident_id NULL)")
    eq(json.loads(rows[0][3])["fingerprint"], fp, "the alert's raw JSON kept")
    check("matched no incident" in w.server.log_text(), "the skip is logged")
    eq(g.query("SELECT COUNT(*) FROM rca_jobs WHERE org_id = ?", g.org)[0][0], 0, "no RCA job")
    g.check_api_agrees()  # no incident through the API either


@test
def row_resolution_with_no_matching_incident(t):
    _row_resolution_with_no_matching_incident(Tenant(world()))


def _row_labels_change_mid_incident(g):
    """The fingerprint changes with the labels, so the resolution does not match."""
    before, after = fingerprint(), fingerprint()
    start = now() - 400
    g.deliver(payload([alert("firing", "PodRestarts", before, service="orders", starts=start,
                             extra_labels={"pod": "orders-1"})]))
    g.deliver(payload([alert("resolved", "PodRestarts", after, service="orders", starts=start,
                             ends=now() - 3, extra_labels={"pod": "orders-2"})]))
    inc = g.incidents()
    eq(len(inc), 1, "one incident")
    eq(inc[0][1], "open", "still open: the resolution with new labels did not match")
    eq([(a[0], a[2]) for a in g.alerts() if a[1] == "resolved"], [(after, None)],
       "the resolution is stored unmatched")
    g.check_one_rca_job_each()


@test
def row_labels_change_mid_incident(t):
    _row_labels_change_mid_incident(Tenant(world()))


def _fingerprint_from_labels_when_missing(g):
    """An alert without a fingerprint gets one from its sorted labels: fire and resolve
    with the labels in another order still match."""
    a = alert("firing", "NoFingerprint", None, service="legacy")
    g.deliver(payload([a]))
    r = alert("resolved", "NoFingerprint", None, service="legacy", ends=now())
    r["labels"] = dict(reversed(list(r["labels"].items())))
    g.deliver(payload([r]))
    inc = g.incidents()
    eq(len(inc), 1, "one incident")
    eq(inc[0][1], "resolved", "matched through the computed fingerprint")
    check(inc[0][2].startswith("labels:"), "computed fingerprint is marked", inc[0][2])


@test
def fingerprint_from_labels_when_missing(t):
    _fingerprint_from_labels_when_missing(Tenant(world()))


# ---------------------------------------------------------------------------
# connect, disconnect, reconnect, status
# ---------------------------------------------------------------------------
@test
def first_test_delivery_connects(t):
    w = world()
    g = Tenant(w)
    s = g.status()
    eq((s["connected"], s["status"], s["deliveries"]), (False, "not_connected", 0), "before")
    eq(s["webhook_path"], "/grafana/alerts/webhook/%s" % g.user, "webhook path")
    check(s["webhook_url"].endswith("/grafana/alerts/webhook/%s" % g.user) and
          s["webhook_url"].startswith("https://"), "webhook URL to paste", s)
    r = g.send(test_notification())
    eq(r.status, 200, "the test notification is accepted")
    s = g.status()
    eq((s["connected"], s["status"], s["deliveries"]), (True, "active", 1), "connected after")
    check(s["connected_at"] and s["last_delivery_at"], "times shown", s)
    g.wait_processed(r.get("id"), want=("ignored",))
    eq(g.incidents(), [], "a test notification opens no incident")
    c = g.api("GET", "/api/connectors/status")
    gf = c.json["connectors"]["grafana"]
    eq((gf["connected"], gf["status"], gf["webhook_path"]),
       (True, "active", "/grafana/alerts/webhook/%s" % g.user), "GET /api/connectors/status")


def check_disconnected(g, how):
    before = g.deliveries()
    r = g.send(payload([alert("firing", "WhileDisconnected", fingerprint(), service="x")]))
    eq(r.status, 403, "delivery while disconnected (%s)" % how)
    eq(r.error_code, "GRAFANA_DISCONNECTED", "error code")
    check("disconnected" in r.get("error", ""), "message says disconnected", r)
    eq(g.deliveries(), before, "nothing stored while disconnected")
    eq(g.incidents(), [], "no incident while disconnected")


@test
def disconnect_then_reconnect_same_url(t):
    w = world()
    g = Tenant(w)
    g.send(test_notification())
    r = g.api("POST", "/grafana/disconnect")
    eq(r.status, 200, "POST /grafana/disconnect")
    eq((r.get("connected"), r.get("status")), (False, "disabled"), "deactivated")
    check(r.get("disconnected_at"), "disconnected_at shown", r)
    check_disconnected(g, "POST /grafana/disconnect")
    r = g.api("POST", "/grafana/reconnect")
    eq((r.status, r.get("status")), (200, "active"), "POST /grafana/reconnect")
    g.deliver(payload([alert("firing", "AfterReconnect", fingerprint(), service="y")]))
    eq(len(g.incidents()), 1, "the same URL works again after Reconnect")

    # The generic disconnect deactivates too: the row (and its organization) is kept.
    r = g.api("DELETE", "/api/connectors/grafana")
    eq(r.status, 200, "DELETE /api/connectors/grafana")
    s = g.status()
    eq((s["connected"], s["status"]), (False, "disabled"), "row kept, disabled")
    check(s["connected_at"], "connection history kept", s)
    n = len(g.incidents())
    before = g.deliveries()
    r = g.send(payload([alert("firing", "AfterDelete", fingerprint(), service="z")]))
    eq((r.status, r.error_code), (403, "GRAFANA_DISCONNECTED"), "refused after DELETE")
    eq((g.deliveries(), len(g.incidents())), (before, n), "nothing stored")
    eq(g.api("POST", "/grafana/reconnect").status, 200, "reconnect")
    g.deliver(payload([alert("firing", "AfterDeleteReconnect", fingerprint(), service="z")]))
    eq(len(g.incidents()), n + 1, "works again")


@test
def disconnect_when_never_connected(t):
    w = world()
    g = Tenant(w)
    r = g.api("POST", "/grafana/disconnect")
    eq((r.status, r.error_code), (404, "NOT_CONNECTED"), "nothing to disconnect")
    r = g.api("DELETE", "/api/connectors/grafana")
    eq(r.status, 200, "generic DELETE of nothing")
    eq(g.status()["status"], "not_connected", "no row made up by the DELETE")
    g.deliver(payload([alert("firing", "FirstAfterAll", fingerprint(), service="q")]))
    eq(g.status()["status"], "active", "first delivery still connects")


# ---------------------------------------------------------------------------
# tenants
# ---------------------------------------------------------------------------
@test
def unknown_user_and_bad_user_id(t):
    w = world()
    body = json.dumps(payload([alert("firing", "X", fingerprint(), service="s")])).encode()
    r = https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/nobody-%s" % rand_tag(6),
                      body, {"Content-Type": "application/json"})
    eq((r.status, r.error_code), (404, "USER_NOT_FOUND"), "unknown user")
    r = https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/bad%21id", body,
                      {"Content-Type": "application/json"})
    eq((r.status, r.error_code), (400, "INVALID_USER_ID"), "user id with a bad character")
    still_serving(w, Tenant(w))


@test
def user_id_refused_before_any_work(t):
    """{user_id} is checked first, from the path alone: a malformed id is a 400
    INVALID_USER_ID and an unknown one a 404 USER_NOT_FOUND, before the size cap, the
    secrets backend, the signature and the body are looked at (an oversized non-JSON
    body with a signature header gets the same answer), and nothing is stored: no
    connector row, no delivery.  The unknown id's 404 is the very answer a real user
    gets through an organization they are not in."""
    w = world()
    junk = b"\x00not json" + b"x" * 70000  # over GRAFANA_WEBHOOK_MAX_BODY (65536 here)
    hdrs = {"Content-Type": "application/json", "X-Grafana-Alerting-Signature": "00" * 32,
            "X-Grafana-Alerting-Timestamp": "1"}

    def post(path_id, query=""):
        return https_request(w.port, w.ctx, "POST",
                             "/grafana/alerts/webhook/%s%s" % (path_id, query), junk, hdrs)
    # ("%00" never gets here: the HTTP library closes the connection, docs/security.md)
    for bad in ("bad%21id", "a" * 65, "%C3%A9t%C3%A9", "a%20b", "a%3Fb", "a%3Bb"):
        r = post(bad)
        eq((r.status, r.error_code), (400, "INVALID_USER_ID"), "malformed user id %r" % bad)
        check("user id" in (r.get("error") or ""), "a clear message", r.json)
    # an encoded '/' separates, ".." climbs (the decoded path is normalized): no such route
    for bad in ("a%2Fb", "%2e%2e%2fx", "%2e%2e"):
        r = post(bad)
        eq((r.status, r.error_code), (404, "NOT_FOUND"), "no route for %r" % bad)
    ghost = "nobody-%s" % rand_tag(6)
    r = post(ghost)
    eq((r.status, r.error_code), (404, "USER_NOT_FOUND"), "unknown user")
    unknown = r.json
    a, other = Tenant(w), Tenant(w)
    r = post(a.user, "?org_id=%s" % other.org)
    eq((r.status, r.json), (404, unknown), "a member through another organization: the same 404")
    r = post(ghost, "?org_id=%s" % other.org)
    eq((r.status, r.json), (404, unknown), "an unknown user through a real organization")
    eq(a.query("SELECT COUNT(*) FROM connectors WHERE user_id IN (?, ?)", ghost, a.user),
       [(0,)], "no connector row made")
    eq(a.query("SELECT COUNT(*) FROM webhook_deliveries WHERE tenant_key IN (?, ?)", ghost,
               a.user), [(0,)], "no delivery stored")


@test
def other_orgs_user_wrong_signature_tells_nothing_more(t):
    """Someone of another organization (or anyone) names a user who set a signing
    secret, with a wrong or no signature: 401, the same answer whatever that user's
    organization and connection state, naming neither.  A disconnected user's 403
    GRAFANA_DISCONNECTED was answered before the signature check, so a forged request
    learned that state (found in review); it is now told only to a delivery the
    signature verifies.  (That the user id exists is what the guide implies: its URL
    is the credential when no secret is set.)"""
    w = world()
    victim, mine = Tenant(w), Tenant(w)
    secret = "gf-" + secrets.token_urlsafe(24)
    for g in (victim, mine):
        eq(g.api("POST", "/grafana/signing-secret", {"secret": secret + g.user}).status, 200,
           "secret set")
    eq(victim.api("POST", "/grafana/disconnect").status, 200, "the victim disconnects")
    body = json.dumps(payload([alert("firing", "Probe", fingerprint(), service="p")])).encode()

    def post(g, sig):
        h = {"Content-Type": "application/json"}
        if sig is not None:
            h["X-Grafana-Alerting-Signature"] = sig
        return https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/%s" % g.user,
                             body, h)
    for sig, code in ((grafana_sign("not-the-secret-of-anyone", body), "INVALID_SIGNATURE"),
                      (None, "MISSING_SIGNATURE")):
        got = post(victim, sig)
        eq((got.status, got.error_code), (401, code), "victim, %s" % code)
        ref = post(mine, sig)
        eq((got.status, got.json, got.headers.get("retry-after")),
           (ref.status, ref.json, ref.headers.get("retry-after")),
           "the same answer as for a connected user of another organization")
        text = json.dumps(got.json)
        check(victim.org not in text and "disconnect" not in text.lower(),
              "names neither the organization nor the connection state", got.json)
    r = post(victim, grafana_sign(secret + victim.user, body))
    eq((r.status, r.error_code), (403, "GRAFANA_DISCONNECTED"),
       "the signature's holder is told the connection is disconnected")
    eq((victim.deliveries(), mine.deliveries()), (0, 0), "nothing stored")


@test
def user_in_several_orgs_and_other_org(t):
    w = world()
    a = Tenant(w)
    b = Tenant(w, user=a.user)  # the same user id, member of a second organization
    s = a.status()
    eq(s["webhook_path"], "/grafana/alerts/webhook/%s?org_id=%s" % (a.user, a.org),
       "the URL to paste names the organization when the user is in several")
    body = payload([alert("firing", "Ambiguous", fingerprint(), service="s")])
    r = a.send(body)
    eq((r.status, r.error_code), (409, "AMBIGUOUS_TENANT"), "several orgs, no ?org_id=")
    fp = fingerprint()
    b.deliver(payload([alert("firing", "ForB", fp, service="s")]), query="?org_id=%s" % b.org)
    eq([i[2] for i in b.incidents()], [fp], "stored in the organization the URL names")
    eq(a.incidents(), [], "nothing in the other organization")
    eq((a.status()["connected"], b.status()["connected"]), (False, True),
       "connected in that organization only")
    # An organization the user is not a member of.
    other = Tenant(w)
    r = a.send(body, query="?org_id=%s" % other.org)
    eq((r.status, r.error_code), (404, "USER_NOT_FOUND"), "org the user is not in")
    eq(other.deliveries(), 0, "nothing stored there")
    # Another organization's member cannot read b's deliveries.
    r = other.api("GET", "/api/grafana/events")
    eq((r.status, r.get("events")), (200, []), "other org sees no deliveries")
    # Once connected in b, the row pins b: no ?org_id= needed any more.
    b.deliver(payload([alert("firing", "Pinned", fingerprint(), service="t")]))
    eq(len(b.incidents()), 2, "pinned to b: the delivery without ?org_id= went there")


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@test
def bad_input_refused_nothing_stored(t):
    w = world()
    g = Tenant(w)
    g.send(test_notification())
    base = g.deliveries()
    good = payload([alert("firing", "Good", fingerprint(), service="bad-input")])
    raw = json.dumps(good).encode()
    legacy = {"title": "[Alerting] Panel title alert", "ruleId": 1, "ruleName": "Panel",
              "state": "alerting", "evalMatches": [{"value": 100, "metric": "High"}],
              "orgId": 1, "dashboardId": 1, "panelId": 1, "tags": {}, "ruleUrl": "http://x/"}
    cases = [
        ("malformed JSON", b"{\"receiver\": \"aurora\", \"alerts\": [", "application/json", 400),
        ("truncated body", raw[: len(raw) // 2], "application/json", 400),
        ("not JSON at all", b"hello grafana", "application/json", 400),
        ("a JSON array", b"[1,2,3]", "application/json", 400),
        ("legacy Grafana alert format", json.dumps(legacy).encode(), "application/json", 400),
        ("empty alerts[]", json.dumps(dict(good, alerts=[])).encode(), "application/json", 400),
        ("alert status unknown", json.dumps(dict(good, alerts=[dict(good["alerts"][0],
                                                                     status="pending")])).encode(),
         "application/json", 400),
        ("labels not strings", json.dumps(dict(good, alerts=[dict(good["alerts"][0],
                                                                   labels={"a": 1})])).encode(),
         "application/json", 400),
        ("bad startsAt", json.dumps(dict(good, alerts=[dict(good["alerts"][0],
                                                             startsAt="yesterday")])).encode(),
         "application/json", 400),
        ("fingerprint with a control character",
         json.dumps(dict(good, alerts=[dict(good["alerts"][0], fingerprint="ab\ncd")])).encode(),
         "application/json", 400),
        ("oversized (over GRAFANA_WEBHOOK_MAX_BODY)",
         json.dumps(dict(good, message="x" * 70000)).encode(), "application/json", 413),
        ("wrong content type", raw, "text/plain", 415),
        ("form encoded", b"receiver=aurora", "application/x-www-form-urlencoded", 415),
    ]
    for what, data, ctype, want in cases:
        r = g.send(None, raw=data, content_type=ctype)
        eq(r.status, want, what)
        check(r.get("error"), "%s: a clear message" % what, r)
    eq(g.deliveries(), base, "nothing stored by refused requests")
    eq(g.incidents(), [], "no incident from refused requests")

    # Replay / duplicate delivery: the same body is one delivery.
    r1 = g.send(good)
    eq((r1.status, r1.get("duplicate")), (200, False), "first delivery")
    g.wait_processed(r1.get("id"))
    r2 = g.send(good)
    eq((r2.status, r2.get("duplicate"), r2.get("id")), (200, True, r1.get("id")),
       "the replayed body is a duplicate of the first")
    eq(g.deliveries(), base + 1, "stored once")
    eq(len(g.alerts()), 1, "its alert recorded once")
    eq(len(g.incidents()), 1, "one incident")
    g.check_one_rca_job_each()
    still_serving(w, g)


@test
def rate_limit_per_user(t):
    w = t.world("ratelimited", extra_env={"GRAFANA_WEBHOOK_RATE_LIMIT_PER_MINUTE": "3",
                                          "AURORA_PUBLIC_URL": "https://aurora.example.test/"})
    g = Tenant(w)
    other = Tenant(w)
    # (this server also has a public URL: the URL to paste is built on it)
    c = g.api("GET", "/api/connectors/status").json["connectors"]["grafana"]
    eq(c["webhook_url"], "https://aurora.example.test/grafana/alerts/webhook/%s" % g.user,
       "webhook URL from AURORA_PUBLIC_URL")

    def fresh():
        return payload([alert("firing", "Burst", fingerprint(), service="burst")])
    # Three within a minute are accepted, and the next ones of that minute
    # refused; a run straddling a window's end starts over (a fresh user).
    tenants = [g]

    def burst():
        g = tenants.pop() if tenants else Tenant(w)
        codes = [g.send(fresh()).status for _ in range(4)]
        eq(codes, [200, 200, 200, 429], "the fourth delivery of the minute is refused")
        stored = g.deliveries()
        r = g.send(fresh())
        eq(r.status, 429, "still limited")
        retry = int(r.headers.get("retry-after", "0"))
        check(1 <= retry <= 60, "Retry-After in seconds", r.headers)
        eq(r.error_code, "RATE_LIMITED", "error code")
        eq(g.deliveries(), stored, "nothing stored when limited")
    within_one_window(60, burst)
    eq(other.send(fresh()).status, 200, "another user is not limited")


class PgTenant(Tenant):
    """The same reads on PostgreSQL, through psql (NULL read back as None)."""

    def __init__(self, w, pg):
        self.pg = pg
        super().__init__(w)

    def query(self, sql, *args):
        import subprocess
        lit = []
        for a in args:
            lit.append("'%s'" % str(a).replace("'", "''"))
        q = sql.replace("?", "%s") % tuple(lit)
        r = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-X", "-q", "-At", "-F", "\t",
                            "-P", "null=\\N", "-h", self.pg.dir, "-p", "5432", "-U", "aurora",
                            "-d", "postgres", "-c", q], capture_output=True, timeout=30)
        check(r.returncode == 0, "psql: %s" % q, r.stderr.decode("utf-8", "replace"))

        def cell(v):
            if v == "\\N":
                return None
            try:
                return int(v)
            except ValueError:
                return v
        lines = [ln for ln in r.stdout.decode("utf-8").split("\n") if ln != ""]
        return [tuple(cell(v) for v in ln.split("\t")) for ln in lines]


@test(timeout=240)
def table_rows_on_postgresql(t):
    from harness import Postgres
    pg = Postgres()
    t.defer(pg.destroy)
    w = t.world("pg", extra_env={"DATABASE_URL": pg.url})
    for row in (_row_single_alert_fires_then_resolves, _row_multiple_alerts_in_one_webhook,
                _row_partial_resolution, _row_same_alert_refires_weeks_later,
                _row_resolution_with_no_matching_incident, _row_labels_change_mid_incident,
                _fingerprint_from_labels_when_missing):
        row(PgTenant(w, pg))
    g = PgTenant(w, pg)
    g.deliver(payload([alert("firing", "StatusOnPg", fingerprint(), service="pg")]))
    s = g.status()
    eq((s["connected"], s["deliveries"]), (True, 1), "status counts deliveries on PostgreSQL")


@test
def put_method_and_truncated_alerts(t):
    """Grafana's contact point may use PUT; truncatedAlerts > 0 is logged."""
    w = world()
    g = Tenant(w)
    body = payload([alert("firing", "ViaPut", fingerprint(), service="put")])
    body["truncatedAlerts"] = 7
    r = https_request(w.port, w.ctx, "PUT", "/grafana/alerts/webhook/%s" % g.user,
                      json.dumps(body).encode(), {"Content-Type": "application/json"})
    eq(r.status, 200, "PUT delivery")
    g.wait_processed(r.get("id"))
    eq(len(g.incidents()), 1, "processed like a POST")
    wait_until(lambda: "Grafana left out 7 alerts" in w.server.log_text(), 10,
               what="the truncation is logged")


@test(timeout=240)
def alerts_per_minute_bound_big_deliveries(t):
    """A delivery may hold up to 1000 alerts, each a store transaction and possibly a new
    incident with its RCA job (about 7 s of one of the 4 store workers on the test
    machine): counted per delivery, the 120 deliveries a minute of one URL opened
    120,000 incidents and RCA jobs and kept every store worker busy.  The alerts are
    counted too (GRAFANA_WEBHOOK_ALERTS_PER_MINUTE, default 2000): the third full-size
    delivery of a minute is refused 429 with Retry-After, nothing stored, and another
    user's budget is untouched."""
    w = t.world("flood", extra_env={"GRAFANA_WEBHOOK_MAX_BODY": "1048576"})

    def big(tag):
        return {"receiver": "aurora", "status": "firing", "version": "1",
                "alerts": [{"status": "firing", "fingerprint": "%s%05d" % (tag, i),
                            "labels": {"alertname": "Flood", "service": "svc-%s-%d" % (tag, i)}}
                           for i in range(1000)]}

    def run():
        g, other = Tenant(w), Tenant(w)
        for n in range(2):
            r = g.send(big("a%d%s" % (n, rand_tag(4))))
            eq(r.status, 200, "full-size delivery %d within the budget" % (n + 1))
        before = g.deliveries()
        r = g.send(big("b" + rand_tag(4)))
        eq((r.status, r.error_code), (429, "RATE_LIMITED"), "the third one is over the budget")
        check(0 < int(r.headers.get("retry-after", "0")) <= 60, "Retry-After", r.headers)
        check("alerts" in (r.get("error") or ""), "the answer says alerts are counted", r.json)
        r = g.send(payload([alert("firing", "Small", fingerprint(), service="small")]))
        eq(r.status, 429, "even a one-alert delivery waits for the next minute")
        eq(g.deliveries(), before, "nothing stored by the refused deliveries")
        r = other.send(big("c" + rand_tag(4)))
        eq(r.status, 200, "another organization has a budget of its own")
    within_one_window(60, run)


def many(n, tag, service):
    """One delivery of n firing alerts of one service (distinct fingerprints)."""
    return {"receiver": "aurora", "status": "firing", "version": "1",
            "alerts": [{"status": "firing", "fingerprint": "%s%05d" % (tag, i),
                        "labels": {"alertname": "Many", "service": service}}
                       for i in range(n)]}


@test(timeout=240)
def alerts_budget_is_per_organization(t):
    """Incidents and RCA jobs are the organization's: the alert budget
    (GRAFANA_WEBHOOK_ALERTS_PER_MINUTE) is the organization's too.  Kept per user (the
    URL names a user), an organization of k members, or anyone holding k members'
    URLs, got k budgets (found in review)."""
    w = t.world("orgbudget", extra_env={"GRAFANA_WEBHOOK_MAX_BODY": "1048576",
                                        "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE": "1000"})

    def run():
        a = Tenant(w)
        b = Tenant(w, org=a.org)  # another member of the same organization
        stranger = Tenant(w)      # another organization
        eq(a.send(many(600, "a" + rand_tag(4), "one")).status, 200, "600 alerts through a's URL")
        before = b.deliveries()
        r = b.send(many(600, "b" + rand_tag(4), "one"))
        eq((r.status, r.error_code), (429, "RATE_LIMITED"),
           "600 more through another member's URL: over the organization's 1000")
        check("organization" in (r.get("error") or ""), "the answer names the organization",
              r.json)
        check(0 < int(r.headers.get("retry-after", "0")) <= 60, "Retry-After", r.headers)
        eq(b.deliveries(), before, "nothing stored")
        eq(b.send(many(400, "c" + rand_tag(4), "one")).status, 200,
           "what is left of the organization's budget is usable by any member")
        eq(stranger.send(many(600, "d" + rand_tag(4), "two")).status, 200,
           "another organization's budget is untouched")
    within_one_window(60, run)


@test(timeout=240)
def duplicate_delivery_spends_no_alert_budget(t):
    """Grafana retries a notification it got no answer for: the same bytes again, a
    duplicate the kit acknowledges (200, "duplicate": true) and stores nothing for.
    It spent the alert budget again, and once the budget was spent the retry of an
    already stored delivery got 429 instead of its acknowledgement (found in review)."""
    w = t.world("dupbudget", extra_env={"GRAFANA_WEBHOOK_MAX_BODY": "1048576",
                                        "GRAFANA_WEBHOOK_ALERTS_PER_MINUTE": "1000"})

    def run():
        g = Tenant(w)
        first = many(600, "a" + rand_tag(4), "one")
        r1 = g.send(first)
        eq((r1.status, r1.get("duplicate")), (200, False), "600 alerts")
        r = g.send(first)
        eq((r.status, r.get("duplicate"), r.get("id")), (200, True, r1.get("id")),
           "Grafana's retry of the same delivery: acknowledged as a duplicate")
        eq(g.send(many(400, "b" + rand_tag(4), "one")).status, 200,
           "the duplicate took nothing: 400 more fit in the 1000")
        r = g.send(many(1, "c" + rand_tag(4), "one"))
        eq((r.status, r.error_code), (429, "RATE_LIMITED"), "and then the budget is spent")
        r = g.send(first)
        eq((r.status, r.get("duplicate")), (200, True),
           "a retry is still acknowledged once the budget is spent")
        eq(g.deliveries(), 2, "stored once each")
    within_one_window(60, run)


# ---------------------------------------------------------------------------
# optional HMAC signature (Grafana's contact point > HMAC Signature)
# ---------------------------------------------------------------------------
def grafana_sign(secret, body):
    """Grafana's documented scheme without a timestamp header: hex HMAC-SHA256 of the
    body under the secret, in X-Grafana-Alerting-Signature (Python's hmac, not the
    server's code)."""
    import hashlib
    import hmac
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@test
def optional_signing_secret(t):
    w = world()
    g = Tenant(w)
    secret = "gf-" + secrets.token_urlsafe(24)
    for bad in ("short", "has space inside the secret", "x" * 513, None):
        r = g.api("POST", "/grafana/signing-secret", {"secret": bad})
        eq((r.status, r.error_code), (400, "INVALID_SECRET"), "secret refused: %s" % repr(bad)[:40])
    r = g.api("POST", "/grafana/signing-secret", {"secret": secret})
    eq(r.status, 200, "signing secret set")
    eq((r.get("signing_secret_configured"), r.get("connected")), (True, True), "status after")
    base = g.deliveries()

    def send_signed(body, sig):
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        if sig is not None:
            h["X-Grafana-Alerting-Signature"] = sig(data) if callable(sig) else sig
        return https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/%s" % g.user,
                             data, h)
    body = payload([alert("firing", "Signed", fingerprint(), service="signed")])
    r = send_signed(body, None)
    eq((r.status, r.error_code), (401, "MISSING_SIGNATURE"), "unsigned refused once configured")
    r = send_signed(body, lambda d: grafana_sign("another-secret-of-enough-length", d))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "wrong secret")
    r = send_signed(body, lambda d: grafana_sign(secret, d + b" "))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "signature of other bytes")
    eq(g.deliveries(), base, "nothing stored by refused deliveries")
    r = send_signed(body, lambda d: grafana_sign(secret, d).upper())
    eq(r.status, 200, "signed delivery accepted")
    ev = g.wait_processed(r.get("id"))
    eq(ev.get("verified"), True, "stored as verified")
    eq(len(g.incidents()), 1, "processed")
    check(secret not in w.server.log_text(), "the secret is not logged")
    con = g.db()
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    check(secret not in dump, "the secret is not in the database")
    # Back to unsigned.
    r = g.api("DELETE", "/grafana/signing-secret")
    eq((r.status, r.get("signing_secret_configured")), (200, False), "secret removed")
    r = send_signed(payload([alert("firing", "Unsigned", fingerprint(), service="u")]), None)
    eq(r.status, 200, "unsigned accepted again")
    # The generic DELETE deletes the secret with the connection; Reconnect: unsigned works.
    eq(g.api("POST", "/grafana/signing-secret", {"secret": secret}).status, 200, "set again")
    eq(g.api("DELETE", "/api/connectors/grafana").status, 200, "generic disconnect")
    s = g.status()
    eq((s["status"], s["signing_secret_configured"]), ("disabled", False), "secret gone")
    eq(g.api("POST", "/grafana/reconnect").status, 200, "reconnect")
    r = send_signed(payload([alert("firing", "AfterAll", fingerprint(), service="v")]), None)
    eq(r.status, 200, "the same URL works after Reconnect")


def grafana_sign_ts(secret, ts, body):
    """Grafana's scheme with the contact point's Timestamp Header set (grafana/alerting,
    http/hmac.go; docs "Configure webhook notifications", HMAC signature): hex
    HMAC-SHA256 of timestamp + ":" + body, the timestamp (Unix seconds) sent in that
    header.  Python's hmac, not the server's code."""
    import hashlib
    import hmac
    return hmac.new(secret.encode(), str(ts).encode() + b":" + body, hashlib.sha256).hexdigest()


@test
def signed_with_timestamp_header(t):
    """The contact point's HMAC Signature with Timestamp Header X-Grafana-Alerting-Timestamp:
    the signature covers the timestamp, which must be within 5 minutes of the server's
    clock, so a captured delivery cannot be replayed later; with require_timestamp a
    delivery signed over the body alone is refused too."""
    w = world()
    g = Tenant(w)
    secret = "gf-" + secrets.token_urlsafe(24)
    r = g.api("POST", "/grafana/signing-secret", {"secret": secret})
    eq((r.status, r.get("timestamp_header"), r.get("timestamp_required")),
       (200, "X-Grafana-Alerting-Timestamp", False), "secret set, timestamp optional")
    base = g.deliveries()

    def send(body, ts, sig):
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json", "X-Grafana-Alerting-Signature": sig(data)}
        if ts is not None:
            h["X-Grafana-Alerting-Timestamp"] = str(ts)
        return https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/%s" % g.user,
                             data, h)

    def fresh():
        return payload([alert("firing", "Stamped", fingerprint(), service="ts-%s" % rand_tag(4))])
    body = fresh()
    t0 = now()
    for ts, code, what in ((t0 - 600, "STALE_TIMESTAMP", "ten minutes old"),
                           (t0 + 600, "STALE_TIMESTAMP", "ten minutes ahead"),
                           ("17e8", "MISSING_TIMESTAMP", "not digits"),
                           ("", "MISSING_TIMESTAMP", "empty")):
        r = send(body, ts, lambda d, ts=ts: grafana_sign_ts(secret, ts, d))
        eq((r.status, r.error_code), (401, code), "timestamp %s" % what)
    r = send(body, t0, lambda d: grafana_sign(secret, d))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "timestamp not in the signature")
    r = send(body, t0 + 1, lambda d: grafana_sign_ts(secret, t0, d))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "timestamp changed after signing")
    r = send(body, t0, lambda d: grafana_sign_ts("another-secret-of-enough-length", t0, d))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "wrong secret")
    eq(g.deliveries(), base, "nothing stored by refused deliveries")

    r = send(body, t0, lambda d: grafana_sign_ts(secret, t0, d))
    eq(r.status, 200, "timestamped delivery accepted")
    ev = g.wait_processed(r.get("id"))
    eq(ev.get("verified"), True, "stored as verified")
    r = send(body, now(), lambda d: grafana_sign_ts(secret, now(), d))
    eq((r.status, r.get("duplicate")), (200, True), "the same body again is a duplicate")
    # Without the header Grafana signs the body alone: still accepted while optional.
    r = send(fresh(), None, lambda d: grafana_sign(secret, d))
    eq(r.status, 200, "body-only signature accepted while the timestamp is optional")

    # Required: a body-only signature (a capture from before) is refused.
    r = g.api("POST", "/grafana/signing-secret", {"secret": secret, "require_timestamp": True})
    eq((r.status, r.get("timestamp_required")), (200, True), "timestamp required")
    eq(g.status()["timestamp_required"], True, "status says so")
    n = g.deliveries()
    r = send(fresh(), None, lambda d: grafana_sign(secret, d))
    eq((r.status, r.error_code), (401, "MISSING_TIMESTAMP"), "body-only signature refused")
    eq(g.deliveries(), n, "nothing stored")
    r = send(fresh(), now(), lambda d: grafana_sign_ts(secret, now(), d))
    eq(r.status, 200, "timestamped delivery accepted when required")
    r = g.api("POST", "/grafana/signing-secret", {"secret": secret, "require_timestamp": "yes"})
    eq((r.status, r.error_code), (400, "INVALID_SECRET"), "require_timestamp must be a boolean")
    # Setting the secret again without the flag makes it optional again.
    r = g.api("POST", "/grafana/signing-secret", {"secret": secret})
    eq((r.status, r.get("timestamp_required")), (200, False), "optional again")
    r = g.api("DELETE", "/grafana/signing-secret")
    eq((r.status, r.get("timestamp_required")), (200, False), "no secret, nothing required")


@test
def signature_in_grafanas_default_header(t):
    """The contact point's HMAC "Header" field shows X-Grafana-Alerting-Signature as a
    placeholder only: left empty, Grafana signs into X-Grafana-Alert-Signature
    (grafana/alerting http/hmac.go, defaultHeaderName).  Such a user's deliveries are
    verified, not refused forever as unsigned; a wrong signature there is still 401."""
    w = world()
    g = Tenant(w)
    secret = "gf-" + secrets.token_urlsafe(24)
    eq(g.api("POST", "/grafana/signing-secret", {"secret": secret}).status, 200, "secret set")

    def send(body, sig, ts=None):
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json", "X-Grafana-Alert-Signature": sig(data)}
        if ts is not None:
            h["X-Grafana-Alerting-Timestamp"] = str(ts)
        return https_request(w.port, w.ctx, "POST", "/grafana/alerts/webhook/%s" % g.user,
                             data, h)
    base = g.deliveries()
    body = payload([alert("firing", "DefaultHeader", fingerprint(), service="dh")])
    r = send(body, lambda d: grafana_sign("another-secret-of-enough-length", d))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "wrong secret in that header")
    eq(g.deliveries(), base, "nothing stored")
    r = send(body, lambda d: grafana_sign(secret, d))
    eq(r.status, 200, "signed in Grafana's default header: accepted")
    eq(g.wait_processed(r.get("id")).get("verified"), True, "stored as verified")
    ts = now()
    r = send(payload([alert("firing", "DefaultHeaderTs", fingerprint(), service="dh2")]),
             lambda d: grafana_sign_ts(secret, ts, d), ts)
    eq(r.status, 200, "with a timestamp too")


# ---------------------------------------------------------------------------
# crash recovery: nothing acknowledged is lost, nothing processed twice
# ---------------------------------------------------------------------------
def reset_to_received(w, where, args=()):
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    con.execute("UPDATE webhook_deliveries SET status = 'received', processed_at = 0,"
                " claimed_at = 0, next_attempt_at = 0 WHERE connector = 'grafana' AND " + where, args)
    con.commit()
    con.close()


@test(timeout=180)
def kill9_after_2xx_recovered_by_sweep(t):
    w = t.world("kill")
    g = Tenant(w)
    fps = [fingerprint() for _ in range(3)]
    r = g.send(payload([alert("firing", "Crash%d" % i, fp, service="crash-%d" % i)
                        for i, fp in enumerate(fps)]))
    eq(r.status, 200, "delivered")
    did = r.get("id")
    w.kill9()  # right after the 2xx
    eq(len(g.query("SELECT id FROM webhook_deliveries WHERE id = ?", did)), 1,
       "the delivery is in the database after kill -9")
    # Make it a crash before processing: undo whatever processing did, then restart.
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    con.execute("DELETE FROM rca_jobs WHERE org_id = ?", (g.org,))
    con.execute("DELETE FROM incident_alerts WHERE org_id = ?", (g.org,))
    con.execute("DELETE FROM incidents WHERE org_id = ?", (g.org,))
    con.commit()
    con.close()
    reset_to_received(w, "id = ?", (did,))
    w.restart()
    g.wait_processed(did)
    eq(sorted(i[2] for i in g.incidents()), sorted(fps), "the sweep opened the three incidents")
    g.check_one_rca_job_each()
    # the sweep logs its count once its batch is done, after the row turned processed
    wait_until(lambda: "grafana: recovery sweep processed 1" in w.server.log_text(), 10, 0.05,
               "the sweep to say so")
    # Processed again (a claim lost after its work was done): nothing doubles.
    w.kill9()
    reset_to_received(w, "id = ?", (did,))
    w.restart()
    g.wait_processed(did)
    eq(len(g.incidents()), 3, "still three incidents")
    eq(len(g.alerts()), 3, "still three alert rows")
    g.check_one_rca_job_each()


@test(timeout=240)
def burst_then_kill9_every_acknowledged_delivery_kept(t):
    import concurrent.futures
    w = t.world("burst")
    g = Tenant(w)
    bodies = [payload([alert("firing", "Burst%d" % i, fingerprint(), service="burst-%d" % (i % 7))])
              for i in range(120)]
    acked = []

    def one(b):
        try:
            r = g.send(b)
            return r.get("id") if r.status == 200 else None
        except Exception:  # noqa: BLE001 — the kill cuts requests in flight
            return None
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(one, b) for b in bodies]
        for n, f in enumerate(futs):
            if n == 60:
                w.kill9()  # mid-stream
            d = f.result()
            if d:
                acked.append(d)
    check(len(acked) >= 20, "some deliveries were acknowledged before the kill", len(acked))
    have = {row[0] for row in g.query("SELECT id FROM webhook_deliveries WHERE connector ="
                                      " 'grafana' AND org_id = ?", g.org)}
    eq([d for d in acked if d not in have], [], "every acknowledged delivery survived")
    # Claims of the dead process are retried once their lease (300 s) has passed.
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    # (a claim's next_attempt_at is its claim time: the sweep reads that)
    con.execute("UPDATE webhook_deliveries SET claimed_at = claimed_at - 301,"
                " next_attempt_at = next_attempt_at - 301 WHERE status = 'processing'")
    con.commit()
    con.close()
    w.restart()
    wait_until(lambda: g.query("SELECT COUNT(*) FROM webhook_deliveries WHERE org_id = ?"
                               " AND status != 'processed'", g.org)[0][0] == 0, 60,
               what="every stored delivery processed after the restart")
    eq(g.query("SELECT COUNT(*) FROM grafana_alerts WHERE org_id = ?", g.org)[0][0], len(have),
       "one alert row per stored delivery")
    g.check_one_rca_job_each()


if __name__ == "__main__":
    main()
