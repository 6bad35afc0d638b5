#!/usr/bin/env python3
"""test_intake_crash.py — nothing acknowledged is lost, nothing processed twice
(issue 11): kill -9 of the server while 1,000 signed webhook deliveries stream
in at concurrency 16.

The deliveries are PagerDuty Generic Webhooks v3 events (the documented shape,
"Webhooks v3 Overview"), signed here with Python's hmac ("v1=<hex HMAC-SHA256
of the raw body>", "Verifying Signatures"), independently of the server's
code.  700 are incident.triggered for distinct PagerDuty incidents (each a new
incident and one RCA job), 300 are incident.acknowledged / incident.resolved
follow-ups of earlier ones (attached, never a new incident).  The server is
killed with SIGKILL once 400 deliveries got their 2xx, while the other
senders are mid-request; then restarted.  After the recovery sweep:

  - every delivery that got a 2xx is stored exactly once;
  - every stored delivery is processed, and its alerts recorded exactly once;
  - every incident has exactly one RCA job, and there are no jobs without one;
  - no incident was opened by a follow-up.

tests/fixtures/pagerduty_api.mjs stands in for PagerDuty's REST API (the token
check at connect)."""
import hashlib
import hmac
import json
import os
import queue
import sqlite3
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HttpFixture, check, eq, main, rand_tag, test, wait_until  # noqa: E402

USER_KEY = "u+" + rand_tag(18)
TOTAL = 1000
TRIGGERS = 700
CONCURRENCY = 16
KILL_AFTER = 400


def v3(event_type, inc_id, n):
    return {"event": {
        "id": str(uuid.uuid4()), "event_type": event_type, "resource_type": "incident",
        "occurred_at": "2026-12-02T10:05:00.123Z",
        "agent": {"id": "PUSER01", "type": "user_reference", "summary": "On Call"},
        "client": {"name": "PagerDuty"},
        "data": {"id": inc_id, "type": "incident", "number": n, "title": "Crash test %d" % n,
                 "status": event_type.split(".")[1], "urgency": "high",
                 "created_at": "2026-12-02T10:00:00Z",
                 "html_url": "https://acme.pagerduty.com/incidents/" + inc_id,
                 "service": {"id": "PSVC%04d" % n, "summary": "service-%d" % n,
                             "type": "service_reference"},
                 "priority": {"id": "PPRIO1", "summary": "P2", "type": "priority_reference"}}}}


def db(w, sql, args=()):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@test(timeout=420)
def test_kill9_while_1000_signed_deliveries_stream_in(t):
    pd = HttpFixture(t, "pd", "pagerduty_api.mjs")
    w = t.world(start=False)
    w.extra_env.update({
        "PAGERDUTY_API_BASE_URL": pd.base,
        "PAGERDUTY_WEBHOOK_RATE_LIMIT_PER_MINUTE": "100000",
        # the claims the killed process held are taken again after this
        "AURORA_WEBHOOK_CLAIM_LEASE_S": "5",
    })
    w.start()
    w.bootstrap()
    pd.config(user_keys={USER_KEY: {"id": "PUSER01", "email": "oncall@example.test", "name": "On Call"}})
    org, user, key = w.new_org()
    r = w.post("/pagerduty/connect", {"api_token": USER_KEY}, key=key)
    eq(r.status, 200, "connect (%r)" % r)
    secret = "whsec-" + rand_tag(24)
    eq(w.post("/pagerduty/webhook-secret", {"secret": secret}, key=key).status, 200, "signing secret set")

    bodies = []
    for n in range(TRIGGERS):
        bodies.append(v3("incident.triggered", "PCR%05d" % n, n))
    for k in range(TOTAL - TRIGGERS):
        n = (k * 7) % TRIGGERS
        bodies.append(v3("incident.acknowledged" if k % 2 else "incident.resolved", "PCR%05d" % n, n))
    raw = [json.dumps(b).encode() for b in bodies]
    ids = [b["event"]["id"] for b in bodies]

    work = queue.Queue()
    for i in range(TOTAL):
        work.put(i)
    acked, lock = set(), threading.Lock()
    enough = threading.Event()
    other = []

    def sender():
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            sig = "v1=" + hmac.new(secret.encode(), raw[i], hashlib.sha256).hexdigest()
            try:
                r = w.request("POST", "/pagerduty/webhook/%s" % user, raw[i], auth=False, timeout=30,
                              headers={"Content-Type": "application/json", "X-PagerDuty-Signature": sig})
                status = r.status
            except Exception:  # noqa: BLE001 — the server was killed under this request
                status = 0
            with lock:
                if status == 200:
                    acked.add(i)
                    if len(acked) >= KILL_AFTER:
                        enough.set()
                elif status:
                    other.append((i, status))

    threads = [threading.Thread(target=sender) for _ in range(CONCURRENCY)]
    for th in threads:
        th.start()
    check(enough.wait(240), "400 deliveries acknowledged before the kill")
    w.kill9()
    # the senders still running now fail (connection refused): not acknowledged
    for th in threads:
        th.join(120)
    check(not any(th.is_alive() for th in threads), "every sender finished")
    eq(other, [], "no delivery answered anything but 200 before the kill")
    t.note("%d of %d deliveries acknowledged before the kill" % (len(acked), TOTAL))
    check(len(acked) < TOTAL, "the kill happened mid-stream (%d acknowledged)" % len(acked))

    w.restart()

    def settled():
        open_rows = db(w, "SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'pagerduty'"
                          " AND status NOT IN ('processed', 'ignored')")[0][0]
        return open_rows == 0
    wait_until(settled, 120, 0.2, "every stored delivery processed after the restart")

    stored = dict(db(w, "SELECT delivery_id, COUNT(*) FROM webhook_deliveries WHERE connector = 'pagerduty'"
                        " GROUP BY delivery_id"))
    lost = [ids[i] for i in acked if stored.get(ids[i]) != 1]
    eq(lost, [], "every acknowledged delivery stored exactly once")
    check(all(c == 1 for c in stored.values()), "no delivery stored twice")
    eq(db(w, "SELECT COUNT(*) FROM webhook_deliveries WHERE connector = 'pagerduty' AND status <> 'processed'")[0][0],
       0, "every stored delivery processed")
    # one alert per stored delivery, none twice
    eq(db(w, "SELECT COUNT(*) FROM incident_alerts WHERE org_id = ? AND source = 'pagerduty'", (org,))[0][0],
       len(stored), "one alert recorded per stored delivery")
    eq(db(w, "SELECT COUNT(*) FROM (SELECT delivery_id, idx FROM incident_alerts WHERE org_id = ?"
             " GROUP BY delivery_id, idx HAVING COUNT(*) > 1) d", (org,))[0][0], 0, "no alert recorded twice")
    # incidents: one per triggered PagerDuty incident stored, each with exactly one RCA job
    triggered = {bodies[i]["event"]["data"]["id"] for i in range(TRIGGERS) if ids[i] in stored}
    incs = db(w, "SELECT id, fingerprint FROM incidents WHERE org_id = ?", (org,))
    eq(sorted(f for _, f in incs), sorted(triggered), "one incident per stored trigger, none from follow-ups")
    jobs = dict(db(w, "SELECT incident_id, COUNT(*) FROM rca_jobs WHERE org_id = ? GROUP BY incident_id", (org,)))
    eq(sorted(jobs.items()), sorted((i, 1) for i, _ in incs), "exactly one RCA job per incident")
    eq(w.get("/health", auth=False).status, 200, "server serving after recovery")


if __name__ == "__main__":
    main()
