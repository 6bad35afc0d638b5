#!/usr/bin/env python3
"""test_netdata_splunk.py — the Netdata and Splunk connectors (connector guide:
Observability Tools > Netdata, > Splunk).

Peers:
- tests/fixtures/netdata_cloud.mjs stands in for Netdata Cloud's REST API
  (learn.netdata.cloud "Netdata APIs" / "API Tokens": Bearer tokens;
  GET /api/v2/spaces and /api/v2/spaces/{id}/rooms as Netdata's Terraform
  provider calls them); it checks the Bearer token itself.
- tests/fixtures/splunk_api.mjs stands in for a Splunk management port (REST
  API Reference: authentication/current-context, search/jobs/export with
  output_mode=json streamed one object per line, data/indexes); it checks the
  Bearer token itself and streams export results in odd chunk sizes with
  pauses, or without end, or stalls.
Both listen on loopback over plain http: the server runs with
SPLUNK_ALLOW_LOOPBACK=true (one test checks the default refuses loopback).
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import ssl
import urllib.request
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FIXTURES, NODE, SERVER_BIN, T, _SUITE, HttpFixture, SilentPeer, check,  # noqa: E402
                     contains, eq, main, rand_tag, sample, sanitizer_reports, scrape, test, wait_until)

ND_TOKEN = "ndc." + rand_tag(24)
SP_TOKEN = "eyJraWQiOiJzcGx1bmsiLCJhbGciOiJIUzUxMiJ9." + rand_tag(30)
SP_NOSEARCH = "nosearch-" + rand_tag(20)
SP_OTHER = "other-" + rand_tag(20)
MAX_RESULTS = 50
WH_RATE = 30  # NETDATA_WEBHOOK_RATE_LIMIT_MINUTE of the suite's server
MAX_BYTES = 65536
# Stalled searches end by this limit; the tests that hold two of them open
# make their other requests meanwhile, which on a loaded machine takes seconds.
SEARCH_TIMEOUT_MS = 8000
SPACES = [{"id": "6a1c6c1e-0000-4000-8000-000000000001", "name": "Production", "slug": "production",
           "description": "prod nodes"},
          {"id": "6a1c6c1e-0000-4000-8000-000000000002", "name": "Staging", "slug": "staging"}]
ROOMS = {SPACES[0]["id"]: [{"id": "r-0001", "name": "All nodes"}, {"id": "r-0002", "name": "Databases"}]}
NODES = {"r-0002": [{"nd": "8c1e0f7a-0000-4000-8000-00000000000a", "nm": "db-1", "state": "reachable"},
                    {"nd": "8c1e0f7a-0000-4000-8000-00000000000b", "nm": "db-2", "state": "stale"},
                    {"nd": "../x", "nm": "bad id, dropped"}]}
EVENTS = [{"_raw": "ERROR payment failed order=%d" % i, "host": "web-%d" % (i % 3),
           "sourcetype": "app:log", "_time": "2026-12-02T12:00:%02d.000+00:00" % i} for i in range(12)]
EVENTS.append({"_raw": "multi\nline \u00e9v\u00e9nement \"quoted\"", "host": "web-0"})
INDEXES = [{"name": "main", "totalEventCount": "1234", "currentDBSizeMB": 12},
           {"name": "security", "totalEventCount": 88, "currentDBSizeMB": "3"}]
SOURCETYPES = [{"sourcetype": "app:log", "totalCount": "1200", "lastTime": "1764676800"},
               {"sourcetype": "syslog", "totalCount": "34", "lastTime": "1764676000"}]
_fx = {}


def world():
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        _fx["nd"] = HttpFixture(st, "netdata", "netdata_cloud.mjs")
        _fx["sp"] = HttpFixture(st, "splunk", "splunk_api.mjs")
        w = World_(st)
        _fx["nd"].config(token=ND_TOKEN, spaces=SPACES, rooms=ROOMS, nodes=NODES)
        _fx["sp"].config(tokens={SP_TOKEN: {"username": "aurora-svc", "capabilities": ["search", "rest_properties_get"]},
                                 SP_NOSEARCH: {"username": "no-search", "capabilities": ["list_settings"]},
                                 SP_OTHER: {"username": "other-svc"}},
                         events=EVENTS, indexes=INDEXES, sourcetypes=SOURCETYPES)
        _SUITE["world"] = w
    return _SUITE["world"]


def World_(st, **env):
    from harness import World
    w = World(st, "suite-server", start=False)
    w.extra_env.update({
        "NETDATA_API_BASE_URL": _fx["nd"].base,
        "SPLUNK_ALLOW_LOOPBACK": "true",
        "SPLUNK_SEARCH_MAX_RESULTS": str(MAX_RESULTS),
        "SPLUNK_SEARCH_MAX_BYTES": str(MAX_BYTES),
        "SPLUNK_SEARCH_TIMEOUT_MS": str(SEARCH_TIMEOUT_MS),
        # no test here waits for a provider timeout: ample, for a loaded machine
        "AURORA_PROVIDER_TIMEOUT_MS": "30000",
        "NETDATA_WEBHOOK_RATE_LIMIT_MINUTE": str(WH_RATE),
        "SPLUNK_SEARCH_MAX_PER_ORG": "1",
        "SPLUNK_SEARCH_MAX_CONCURRENT": "2",
    })
    w.extra_env.update(env)
    w.start()
    w.bootstrap()
    return w


def sp_url():
    return _fx["sp"].base  # http://127.0.0.1:<port>: loopback, with its port


def secret_paths(w, user_id, conn):
    sandir = os.path.join(w.dir, "san", "secrets-list-" + rand_tag(3))
    r = subprocess.run([SERVER_BIN, "secrets", "list", "aurora/orgs/"],
                       env=w.env(sandir), cwd=w.dir, capture_output=True, timeout=30)
    check(r.returncode == 0 and not sanitizer_reports(sandir), "secrets list", r.stdout, r.stderr)
    return [p for p in json.loads(r.stdout)["paths"] if "/users/%s/%s/" % (user_id, conn) in p]


def no_secret_in_clear(w, *secrets):
    log = w.server.log_text()
    for s in secrets:
        check(s not in log, "server log contains a secret")
    for root, _, files in os.walk(w.data):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            for s in secrets:
                check(s.encode() not in data, "%s holds a secret in clear" % f)


def still_serving(w, key):
    r = w.get("/api/connectors/status", key=key)
    eq(r.status, 200, "server still serving (%r)" % r)


def new_user(w):
    return w.new_user()


def sp_connect(w, key, token=SP_TOKEN, url=None):
    return w.post("/splunk/connect", {"instance_url": url or sp_url(), "token": token}, key=key)


def connected_splunk_user(w):
    uid, key = new_user(w)
    r = sp_connect(w, key)
    eq(r.status, 200, "splunk connect (%r)" % r)
    return uid, key


def search(w, key, body):
    return w.post("/splunk/search", body, key=key, timeout=60)


def bound_unlistened_port():
    """A loopback port that refuses connections: bound, never listening."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# ---- Netdata ------------------------------------------------------------------------------
@test
def test_netdata_connect_lists_spaces_and_rooms(t):
    w = world()
    uid, key = new_user(w)
    r = w.post("/netdata/connect", {"api_token": ND_TOKEN}, key=key)
    eq(r.status, 200, "connect (%r)" % r)
    eq(r.json.get("connected"), True, "connected")
    eq(r.json.get("space_count"), 2, "space_count")
    eq([s["name"] for s in r.json["spaces"]], ["Production", "Staging"], "spaces")
    st = w.get("/netdata/status", key=key)
    eq(st.status, 200, "status")
    eq(st.json.get("connected"), True, "status connected")
    eq(st.json.get("account"), "Production", "account: the first space")
    all_st = w.get("/api/connectors/status", key=key).json["connectors"]["netdata"]
    eq(all_st.get("connected"), True, "connectors status")
    sp = w.get("/netdata/spaces", key=key)
    eq(sp.status, 200, "spaces (%r)" % sp)
    eq(sp.json["count"], 2, "spaces count")
    eq(sp.json["spaces"][0], SPACES[0], "space fields")
    rooms = w.get("/netdata/spaces/%s/rooms" % SPACES[0]["id"], key=key)
    eq(rooms.status, 200, "rooms (%r)" % rooms)
    eq([x["name"] for x in rooms.json["rooms"]], ["All nodes", "Databases"], "rooms")
    nodes = w.get("/netdata/spaces/%s/rooms/r-0002/nodes" % SPACES[0]["id"], key=key)
    eq(nodes.status, 200, "nodes (%r)" % nodes)
    eq(nodes.json["nodes"], [{"id": "8c1e0f7a-0000-4000-8000-00000000000a", "name": "db-1", "state": "reachable"},
                             {"id": "8c1e0f7a-0000-4000-8000-00000000000b", "name": "db-2", "state": "stale"}],
       "nodes, the malformed one dropped")
    b = _fx["nd"].stats()["bodies"][-1]
    eq((json.loads(b["body"]), b["content_type"]), ({"scope": {"nodes": []}}, "application/json"), "nodes query")
    eq(w.get("/netdata/spaces/%s/rooms/r-9999/nodes" % SPACES[0]["id"], key=key).status, 502, "unknown room")
    for bad in ("a.b", "x" * 80):
        eq(w.get("/netdata/spaces/%s/rooms/%s/nodes" % (SPACES[0]["id"], bad), key=key).status, 400,
           "bad room id %r" % bad)
    # every call to Netdata carried the token; the fixture checked it
    reqs = [q for q in _fx["nd"].stats()["requests"]]
    check(reqs and all(q["auth"] for q in reqs[-4:]), "Bearer token sent", reqs)
    paths = secret_paths(w, uid, "netdata")
    eq(len(paths), 1, "one secret (api-token) %r" % paths)
    check(paths[0].endswith("/netdata/api-token"), "secret path", paths)
    no_secret_in_clear(w, ND_TOKEN)


@test
def test_netdata_bad_token_authentication_failed(t):
    w = world()
    uid, key = new_user(w)
    r = w.post("/netdata/connect", {"api_token": "ndc.wrong-" + rand_tag(8)}, key=key)
    eq(r.status, 400, "bad token (%r)" % r)
    eq(r.error_code, "NETDATA_AUTH_FAILED", "code")
    contains(r.get("error"), "Authentication failed", "message")
    eq(w.get("/netdata/status", key=key).json.get("connected"), False, "nothing stored")
    eq(secret_paths(w, uid, "netdata"), [], "no secret stored")


@test
def test_netdata_bad_input_and_other_org(t):
    w = world()
    uid, key = new_user(w)
    nd_before = len(_fx["nd"].stats()["requests"])
    cases = [
        ("malformed JSON", "{\"api_token\": ", 400),
        ("not an object", "[1,2]", 400),
        ("missing api_token", {"token_typo": ND_TOKEN}, 400),
        ("empty api_token", {"api_token": ""}, 400),
        ("api_token with a space", {"api_token": "a b"}, 400),
        ("api_token not a string", {"api_token": 12345}, 400),
        ("api_token too long", {"api_token": "a" * 5000}, 400),
    ]
    for what, body, want in cases:
        r = w.post("/netdata/connect", body, key=key)
        eq(r.status, want, "%s (%r)" % (what, r))
    r = w.post("/netdata/connect", b"{\"api_token\":\"" + b"a" * (2 * 1024 * 1024) + b"\"}", key=key)
    eq(r.status, 413, "oversized body (%r)" % r)
    eq(len(_fx["nd"].stats()["requests"]), nd_before, "no bad input reached Netdata")
    # not connected
    eq(w.get("/netdata/spaces", key=key).status, 404, "spaces before connect")
    # a bad space id never reaches Netdata
    ouid, okey = new_user(w)
    eq(w.post("/netdata/connect", {"api_token": ND_TOKEN}, key=okey).status, 200, "connect")
    for bad in ("..", "a%2Fb", "x" * 80, "a.b"):
        r = w.get("/netdata/spaces/%s/rooms" % bad, key=okey)
        check(r.status in (400, 404), "bad space id %r (%r)" % (bad, r))
    r = w.get("/netdata/spaces/unknown-space/rooms", key=okey)
    eq(r.status, 502, "unknown space: Netdata's 404 (%r)" % r)
    # a malformed answer from Netdata is refused, not passed on
    _fx["nd"].config(raw="{not json")
    r = w.get("/netdata/spaces", key=okey)
    eq(r.status, 502, "malformed Netdata answer (%r)" % r)
    _fx["nd"].config(raw="{\"spaces\": 1}")
    eq(w.get("/netdata/spaces", key=okey).status, 502, "not a list")
    # another org sees nothing of it
    _, _, org2_key = w.new_org()
    eq(w.get("/netdata/status", key=org2_key).json.get("connected"), False, "other org: not connected")
    eq(w.get("/netdata/spaces", key=org2_key).status, 404, "other org: no spaces")
    still_serving(w, key)


@test
def test_netdata_disconnect_deletes_the_token(t):
    w = world()
    uid, key = new_user(w)
    eq(w.post("/netdata/connect", {"api_token": ND_TOKEN}, key=key).status, 200, "connect")
    eq(len(secret_paths(w, uid, "netdata")), 1, "secret stored")
    r = w.delete("/api/connectors/netdata", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    eq(secret_paths(w, uid, "netdata"), [], "secret deleted")
    eq(w.get("/netdata/status", key=key).json.get("connected"), False, "status after disconnect")
    eq(w.get("/netdata/spaces", key=key).status, 404, "spaces after disconnect")


# ---- Netdata: webhook notifications ---------------------------------------------------------
# Payloads as learn.netdata.cloud documents them (Centralized Cloud Notifications > Webhook);
# the challenge response is computed here with the documentation's recipe (hmac, base64).
WH_SECRET = "wh-" + rand_tag(24)


def nd_alert(severity, alert="10min_cpu_usage", chart="system.cpu", date="2026-12-02T12:00:00Z"):
    return {"message": "%s: %s on web-1" % (severity.capitalize(), alert), "alert": alert,
            "info": "average CPU utilization over the last 10 minutes", "chart": chart,
            "context": chart, "space": "Production", "Rooms": {"All nodes": "https://app.netdata.cloud/r"},
            "family": "cpu", "class": "Utilization", "severity": severity, "date": date, "duration": "1m",
            "additional_active_critical_alerts": 0, "additional_active_warning_alerts": 0,
            "alert_url": "https://app.netdata.cloud/alerts/" + alert}


def db(w):
    return sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)


def rows(w, sql, *args):
    con = db(w)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def deliveries(w, user_id):
    return rows(w, "SELECT id, status, verified FROM webhook_deliveries WHERE connector = 'netdata' "
                   "AND tenant_key = ? ORDER BY received_seq", user_id)


def wh_post(w, user_id, body, token=WH_SECRET, ctype="application/json", query=""):
    h = {"Content-Type": ctype}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return w.request("POST", "/netdata/webhook/%s%s" % (user_id, query), data, headers=h, auth=False)


def webhook_user(w, secret=WH_SECRET):
    org_id, uid, key = w.new_org()
    body = {"api_token": ND_TOKEN}
    if secret:
        body["webhook_secret"] = secret
    r = w.post("/netdata/connect", body, key=key)
    eq(r.status, 200, "connect (%r)" % r)
    return org_id, uid, key


@test
def test_netdata_webhook_challenge(t):
    w = world()
    org_id, uid, key = webhook_user(w)
    st = w.get("/netdata/status", key=key).json
    eq(st.get("webhook_path"), "/netdata/webhook/%s?org_id=%s" % (uid, org_id), "the URL to paste")
    eq(st.get("webhook_secret_configured"), True, "secret configured")
    r = w.post("/netdata/connect", {"api_token": ND_TOKEN, "webhook_secret": WH_SECRET}, key=key)
    eq(r.json.get("webhook_url"), "https://127.0.0.1:%d%s" % (w.port, st["webhook_path"]),
       "the full URL in the connect answer")
    # Netdata appends crc_token to the URL as pasted
    crc0 = "crc-" + rand_tag(8)
    r = w.request("GET", "%s&crc_token=%s" % (st["webhook_path"], crc0), auth=False)
    eq(r.status, 200, "challenge on the pasted URL (%r)" % r)
    crc = "crc-" + rand_tag(16)
    r = w.request("GET", "/netdata/webhook/%s?crc_token=%s" % (uid, crc), auth=False)
    eq(r.status, 200, "challenge (%r)" % r)
    want = "sha256=" + base64.b64encode(hmac.new(WH_SECRET.encode(), crc.encode(), hashlib.sha256).digest()).decode()
    eq(r.json, {"response_token": want}, "response_token as Netdata computes it")
    eq(w.request("GET", "/netdata/webhook/%s" % uid, auth=False).status, 400, "no crc_token")
    eq(w.request("GET", "/netdata/webhook/%s?crc_token=%s" % (uid, "a" * 300), auth=False).status, 400,
       "crc_token too long")
    eq(w.request("GET", "/netdata/webhook/nobody-%s?crc_token=x" % rand_tag(4), auth=False).status, 404,
       "unknown user")
    _, uid2, _ = webhook_user(w, secret=None)
    r = w.request("GET", "/netdata/webhook/%s?crc_token=x" % uid2, auth=False)
    eq(r.status, 409, "no secret configured (%r)" % r)
    contains(r.get("error"), "Webhook signing secret not configured", "message")
    for bad in ("short", "has space " + "x" * 20, "x" * 300):
        r = w.post("/netdata/connect", {"api_token": ND_TOKEN, "webhook_secret": bad}, key=key)
        eq(r.status, 400, "bad webhook_secret %r (%r)" % (bad[:10], r))


@test
def test_netdata_webhook_fire_then_clear_makes_one_incident(t):
    w = world()
    org_id, uid, key = webhook_user(w)
    r = wh_post(w, uid, nd_alert("critical"))
    eq(r.status, 200, "critical (%r)" % r)
    eq(r.json.get("duplicate"), False, "new delivery")
    wait_until(lambda: [d for d in deliveries(w, uid) if d[1] == "processed"], 10, what="processed")
    inc = rows(w, "SELECT id, source, status, severity, title FROM incidents WHERE org_id = ?", org_id)
    eq(len(inc), 1, "one incident %r" % inc)
    eq(inc[0][1:4], ("netdata", "open", "critical"), "incident fields")
    eq(inc[0][4], "Critical: 10min_cpu_usage on web-1", "title from Netdata's message")
    jobs = rows(w, "SELECT source_type FROM rca_jobs WHERE incident_id = ?", inc[0][0])
    eq(jobs, [("netdata",)], "exactly one RCA job")
    # the same notification again: a duplicate, nothing new
    r = wh_post(w, uid, nd_alert("critical"))
    eq((r.status, r.json.get("duplicate")), (200, True), "redelivery (%r)" % r)
    # the clear resolves it
    r = wh_post(w, uid, nd_alert("clear", date="2026-12-02T12:05:00Z"))
    eq(r.status, 200, "clear (%r)" % r)
    wait_until(lambda: rows(w, "SELECT status FROM incidents WHERE id = ?", inc[0][0]) == [("resolved",)],
               10, what="incident resolved")
    eq(rows(w, "SELECT state FROM incident_alerts WHERE incident_id = ? ORDER BY incident_pos", inc[0][0]),
       [("firing",), ("resolved",)], "both alerts attached")
    # the same through the incident API, as the user's organization sees it
    r = w.get("/api/incidents?source=netdata", key=key)
    eq(r.status, 200, "GET /api/incidents (%r)" % r)
    eq([i["id"] for i in r.json["incidents"]], [inc[0][0]], "the org's one netdata incident")
    r = w.get("/api/incidents/%s" % inc[0][0], key=key)
    eq(r.status, 200, "GET /api/incidents/{id} (%r)" % r)
    eq(r.json["status"], "resolved", "resolved")
    eq([(a["state"], a["source"], a["url"]) for a in r.json["alerts"]],
       [("firing", "netdata", "https://app.netdata.cloud/alerts/10min_cpu_usage"),
        ("resolved", "netdata", "https://app.netdata.cloud/alerts/10min_cpu_usage")], "its alerts")
    _, _, other_key = w.new_org()
    eq(w.get("/api/incidents/%s" % inc[0][0], key=other_key).status, 404, "another org's incident")
    eq(len(rows(w, "SELECT id FROM incidents WHERE org_id = ?", org_id)), 1, "still one incident")
    # a test notification is stored but opens nothing
    r = wh_post(w, uid, {"message": "Test", "title": "Test notification", "token": "abc"})
    eq(r.status, 200, "test notification (%r)" % r)
    wait_until(lambda: [d for d in deliveries(w, uid) if d[1] == "ignored"], 10, what="test ignored")
    eq(len(rows(w, "SELECT id FROM incidents WHERE org_id = ?", org_id)), 1, "no incident from a test")


@test
def test_netdata_webhook_refusals_store_nothing(t):
    w = world()
    org_id, uid, key = webhook_user(w)
    cases = [
        ("no bearer token", nd_alert("critical"), None, "application/json", 401),
        ("wrong bearer token", nd_alert("critical"), WH_SECRET + "x", "application/json", 401),
        ("not Netdata's shape", {"hello": "world"}, WH_SECRET, "application/json", 400),
        ("unknown severity", nd_alert("bogus"), WH_SECRET, "application/json", 400),
        ("malformed JSON", "{\"alert\": ", WH_SECRET, "application/json", 400),
        ("not an object", "[1,2]", WH_SECRET, "application/json", 400),
        ("wrong content type", json.dumps(nd_alert("critical")), WH_SECRET, "text/plain", 415),
        ("oversized", json.dumps(dict(nd_alert("critical"), info="x" * 300000)), WH_SECRET,
         "application/json", 413),
    ]
    for what, body, tok, ctype, want in cases:
        r = wh_post(w, uid, body, token=tok, ctype=ctype)
        eq(r.status, want, "%s (%r)" % (what, r))
    eq(deliveries(w, uid), [], "nothing stored")
    r = wh_post(w, "nobody-" + rand_tag(4), nd_alert("critical"))
    eq(r.status, 404, "unknown user (%r)" % r)
    r = wh_post(w, "bad%20id", nd_alert("critical"))
    check(r.status in (400, 404), "malformed user id (%r)" % r)
    # another org cannot be named for this user
    other_org, _, _ = w.new_org()
    r = wh_post(w, uid, nd_alert("critical"), query="?org_id=" + other_org)
    eq(r.status, 404, "another org (%r)" % r)
    eq(rows(w, "SELECT COUNT(*) FROM incidents WHERE org_id = ?", org_id), [(0,)], "no incident")
    # still serving: the good delivery goes through
    r = wh_post(w, uid, nd_alert("warning", alert="disk_space_usage", chart="disk_space._"))
    eq(r.status, 200, "good delivery after the refusals (%r)" % r)
    eq(len(deliveries(w, uid)), 1, "one stored")


@test
def test_netdata_webhook_per_user_rate_limit(t):
    w = world()
    _, uid2, _ = webhook_user(w)
    for _ in range(2):
        # the limit is per (user, minute): a run that crosses a minute boundary is
        # repeated with a fresh user (it cannot cross two in a row)
        org_id, uid, key = webhook_user(w)
        minute = int(time.time()) // 60
        # forged requests do not use up the user's quota
        for _ in range(WH_RATE + 5):
            eq(wh_post(w, uid, nd_alert("critical"), token="forged").status, 401, "forged")
        answers = [wh_post(w, uid, nd_alert("warning", alert="a%d" % i)) for i in range(WH_RATE + 5)]
        if int(time.time()) // 60 == minute:
            break
    codes = [r.status for r in answers]
    eq(codes, [200] * WH_RATE + [429] * 5, "NETDATA_WEBHOOK_RATE_LIMIT_MINUTE accepted, the rest refused")
    for r in answers[WH_RATE:]:
        eq(r.error_code, "RATE_LIMITED", "code")
        check(r.headers.get("retry-after", "").isdigit(), "Retry-After", r.headers)
    eq(len(deliveries(w, uid)), WH_RATE, "only accepted deliveries stored")
    # another user is not affected
    eq(wh_post(w, uid2, nd_alert("critical")).status, 200, "another user")


@test
def test_netdata_webhook_without_secret_and_after_disconnect(t):
    w = world()
    org_id, uid, key = webhook_user(w, secret=None)
    r = wh_post(w, uid, nd_alert("critical"), token=None)
    eq(r.status, 200, "the per-user URL is the credential without a secret (%r)" % r)
    eq(rows(w, "SELECT verified FROM webhook_deliveries WHERE connector = 'netdata' AND tenant_key = ?", uid),
       [(0,)], "stored as unverified")
    eq(w.delete("/api/connectors/netdata", key=key).status, 200, "disconnect")
    r = wh_post(w, uid, nd_alert("critical", date="2026-12-02T13:00:00Z"), token=None)
    eq(r.status, 404, "after disconnect (%r)" % r)


# ---- Splunk: connect -----------------------------------------------------------------------
@test
def test_splunk_connect_ok(t):
    w = world()
    uid, key = new_user(w)
    r = sp_connect(w, key, url=sp_url() + "/")
    eq(r.status, 200, "connect (%r)" % r)
    eq(r.json.get("username"), "aurora-svc", "username from current-context")
    eq(r.json.get("instance_url"), sp_url(), "instance URL without its trailing slash")
    st = w.get("/splunk/status", key=key).json
    eq(st.get("connected"), True, "status")
    eq(st.get("account"), "aurora-svc", "account")
    eq(st.get("instance_url"), sp_url(), "status instance_url")
    check(SP_TOKEN not in json.dumps(st), "no token in status", st)
    paths = secret_paths(w, uid, "splunk")
    eq(len(paths), 1, "one secret %r" % paths)
    check(paths[0].endswith("/splunk/token"), "secret path", paths)
    req = [q for q in _fx["sp"].stats()["requests"] if "current-context" in q["path"]][-1]
    eq(req["path"], "/services/authentication/current-context?output_mode=json", "validation endpoint")
    check(req["auth"], "Bearer token accepted by the fixture", req)
    no_secret_in_clear(w, SP_TOKEN)


@test
def test_splunk_bad_token_authentication_failed(t):
    w = world()
    uid, key = new_user(w)
    r = sp_connect(w, key, token="expired-" + rand_tag(10))
    eq(r.status, 400, "bad token (%r)" % r)
    eq(r.error_code, "SPLUNK_AUTH_FAILED", "code")
    contains(r.get("error"), "Authentication failed", "the guide's message")
    contains(r.get("error"), "search capability", "the guide's hint")
    r = sp_connect(w, key, token=SP_NOSEARCH)
    eq(r.status, 400, "user without the search capability (%r)" % r)
    contains(r.get("error"), "Authentication failed", "message")
    contains(r.get("error"), "lacks the search capability", "why")
    eq(w.get("/splunk/status", key=key).json.get("connected"), False, "nothing stored")
    eq(secret_paths(w, uid, "splunk"), [], "no secret")


@test
def test_splunk_connection_refused(t):
    w = world()
    _, key = new_user(w)
    s, port = bound_unlistened_port()
    t.defer(s.close)
    r = sp_connect(w, key, url="http://127.0.0.1:%d" % port)
    eq(r.status, 502, "refused (%r)" % r)
    eq(r.error_code, "SPLUNK_CONNECTION_REFUSED", "code")
    contains(r.get("error"), "Connection refused", "the guide's message")
    contains(r.get("error"), "port 8089", "the guide's hint")
    still_serving(w, key)


@test
def test_splunk_url_rules(t):
    w = world()
    uid, key = new_user(w)
    port = int(sp_url().rsplit(":", 1)[1])
    bad = [
        ("no port", "https://splunk.example.test"),
        ("no port, path", "https://splunk.example.test/services"),
        ("plain http off loopback", "http://splunk.example.test:8089"),
        ("user info", "https://admin:pw@splunk.example.test:8089"),
        ("query", "https://splunk.example.test:8089/?x=1"),
        ("fragment", "https://splunk.example.test:8089/#x"),
        ("not a URL", "splunk:8089"),
        ("other scheme", "ftp://splunk.example.test:8089"),
        ("cloud metadata", "https://169.254.169.254:8089"),
        ("unspecified", "https://0.0.0.0:8089"),
        ("v6 link-local", "https://[fe80::1]:8089"),
        ("mapped link-local", "https://[::ffff:169.254.169.254]:8089"),
        ("multicast", "https://224.0.0.1:8089"),
        ("AWS IPv6 metadata", "https://[fd00:ec2::254]:8089"),
        ("GCP IPv6 metadata", "https://[fd20:ce::254]:8089"),
        ("Azure wireserver", "https://168.63.129.16:8089"),
        ("Alibaba metadata", "https://100.100.100.200:8089"),
        ("NAT64 Azure wireserver", "https://[64:ff9b::a83f:8110]:8089"),
        ("empty port", "https://splunk.example.test:"),
        ("too long", "https://splunk.example.test:8089/" + "a" * 600),
        ("control char", "https://splunk.example.test:8089/\x01"),
    ]
    before = len(_fx["sp"].stats()["requests"])
    for what, url in bad:
        r = sp_connect(w, key, url=url)
        eq(r.status, 400, "%s: %s (%r)" % (what, url, r))
    eq(len(_fx["sp"].stats()["requests"]), before, "nothing was sent anywhere")
    r = w.post("/splunk/connect", {"instance_url": 8089, "token": SP_TOKEN}, key=key)
    eq(r.status, 400, "instance_url not a string")
    # IPv6 loopback with its port is a URL like any other
    r = sp_connect(w, key, url="http://[::1]:%d" % port)
    check(r.status in (200, 502), "[::1] accepted by the rules (%r)" % r)
    eq(secret_paths(w, uid, "splunk") != [], r.status == 200, "stored only when it worked")


@test(timeout=90)
def test_splunk_loopback_refused_by_default(t):
    # SPLUNK_ALLOW_LOOPBACK unset: a user cannot point Aurora at its own host
    before = len(_fx_or_world()["sp"].stats()["requests"])
    w = t.world()
    for url in (sp_url(), "https://localhost:8089", "https://127.0.0.2:8089", "https://[::1]:8089",
                "https://[::ffff:127.0.0.1]:8089"):
        r = w.post("/splunk/connect", {"instance_url": url, "token": SP_TOKEN})
        eq(r.status, 400, "loopback %s (%r)" % (url, r))
        contains(r.get("error"), "SPLUNK_ALLOW_LOOPBACK", "names the setting")
    # a name is judged by the address it resolves to (curl resolves *.localhost to loopback)
    port = int(sp_url().rsplit(":", 1)[1])
    r = w.post("/splunk/connect", {"instance_url": "https://splunk.localhost:%d" % port, "token": SP_TOKEN})
    eq(r.status, 400, "a name resolving to loopback (%r)" % r)
    eq(r.error_code, "SPLUNK_INVALID_URL", "code")
    contains(r.get("error"), "resolves to an address", "says why")
    eq(len(_fx["sp"].stats()["requests"]), before, "nothing sent")


def _fx_or_world():
    world()
    return _fx


def make_tls(d):
    """A CA of its own and a certificate for 127.0.0.1 it signed (as many Splunk
    management ports have), made with the openssl command."""
    def run(*args):
        r = subprocess.run(["openssl"] + list(args), cwd=d, capture_output=True, timeout=60)
        check(r.returncode == 0, "openssl %s" % args[0], r.stderr)
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test Splunk CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return [os.path.join(d, n) for n in ("ca.pem", "leaf.pem", "leaf.key")]


@test(timeout=120)
def test_splunk_https_with_its_own_ca(t):
    ca, cert, key = make_tls(t.tmp)
    env = dict(os.environ, SPLUNK_FIXTURE_TLS_CERT=cert, SPLUNK_FIXTURE_TLS_KEY=key)
    d = os.path.join(t.tmp, "splunk-tls")
    os.makedirs(d, exist_ok=True)
    p = t.spawn("splunk-tls", [NODE, os.path.join(FIXTURES, "splunk_api.mjs")], env,
                os.path.join(d, "splunk-tls.log"), os.path.join(d, "san"), stdout=subprocess.PIPE)
    line = p.p.stdout.readline().decode()
    check(line.startswith("PORT "), "TLS fixture did not start", line, p.log_tail())
    p.killed = True  # stopped with SIGTERM by the harness; not ours to judge
    base = "https://127.0.0.1:%d" % int(line.split()[1])
    cfg = json.dumps({"tokens": {SP_TOKEN: {"username": "tls-svc"}}, "events": EVENTS[:3]}).encode()
    req = urllib.request.Request(base + "/_fixture/config", data=cfg, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=ssl.create_default_context(cafile=ca)) as r:
        eq(r.status, 200, "fixture config over https")
    # the instance's CA in SPLUNK_CA_FILE: connected, searched over https
    w = t.world(extra_env={"SPLUNK_ALLOW_LOOPBACK": "true", "SPLUNK_CA_FILE": ca})
    r = w.post("/splunk/connect", {"instance_url": base, "token": SP_TOKEN})
    eq(r.status, 200, "connect over https with SPLUNK_CA_FILE (%r)" % r)
    eq(r.json.get("username"), "tls-svc", "user")
    r = w.post("/splunk/search", {"query": "index=main"})
    eq(r.status, 200, "search over https (%r)" % r)
    eq(r.json["results"], EVENTS[:3], "results")
    # without it the certificate is not trusted: refused, nothing stored
    w2 = t.world(name="server-no-ca", extra_env={"SPLUNK_ALLOW_LOOPBACK": "true"})
    r = w2.post("/splunk/connect", {"instance_url": base, "token": SP_TOKEN})
    eq(r.status, 502, "untrusted certificate (%r)" % r)
    eq(r.error_code, "SPLUNK_UNREACHABLE", "code")
    eq(w2.get("/splunk/status").json.get("connected"), False, "nothing stored")


# ---- Splunk: search ------------------------------------------------------------------------
@test
def test_splunk_search_streamed_results(t):
    w = world()
    _, key = connected_splunk_user(w)
    r = search(w, key, {"query": "index=main ERROR", "earliest_time": "-4h@h", "latest_time": "now"})
    eq(r.status, 200, "search (%r)" % r)
    eq(r.json["search"], "search index=main ERROR", "the SPL run")
    eq(r.json["count"], len(EVENTS), "every event")
    eq(r.json["results"], EVENTS, "events as Splunk sent them, split lines reassembled")
    eq(r.json["truncated"], False, "complete")
    check("message" not in r.json, "no 'No results' message", r.json)
    eq(r.json["messages"], [{"type": "INFO", "text": "fixture search"}], "Splunk's messages")
    s = _fx["sp"].stats()["searches"][-1]
    eq(s["search"], "search index=main ERROR", "prefixed with 'search '")
    eq(s["output_mode"], "json", "output_mode")
    eq((s["earliest_time"], s["latest_time"]), ("-4h@h", "now"), "time range forwarded")
    contains(s["content_type"], "application/x-www-form-urlencoded", "form-encoded")
    # generating commands and explicit searches are sent as they are; defaults -24h..now
    r = search(w, key, {"query": "| tstats count where index=main"})
    eq(r.status, 200, "tstats")
    s = _fx["sp"].stats()["searches"][-1]
    eq(s["search"], "| tstats count where index=main", "generating command not prefixed")
    eq((s["earliest_time"], s["latest_time"]), ("-24h", "now"), "default time range")
    r = search(w, key, {"query": "search index=main", "max_results": 5})
    eq(r.status, 200, "max_results 5")
    eq(r.json["count"], 5, "five kept")
    eq(r.json["truncated"], True, "truncated")
    eq(r.json["truncated_by"], "max_results", "by the results cap")
    eq(_fx["sp"].stats()["searches"][-1]["search"], "search index=main", "not prefixed twice")


@test
def test_splunk_search_no_results(t):
    w = world()
    _, key = connected_splunk_user(w)
    r = search(w, key, {"query": "index=main nothing"})
    eq(r.status, 200, "no results (%r)" % r)
    eq(r.json["count"], 0, "count")
    eq(r.json["results"], [], "results")
    eq(r.json["message"], "No results", "the guide's message")
    contains(r.json["hint"], "Indexes searched by default", "the guide's hint")


@test
def test_splunk_search_endless_stream_is_capped(t):
    w = world()
    _, key = connected_splunk_user(w)
    closed = _fx["sp"].stats()["streams_closed_early"]
    t0 = time.monotonic()
    r = search(w, key, {"query": "index=main forever"})
    eq(r.status, 200, "endless stream (%r)" % r)
    eq(r.json["count"], MAX_RESULTS, "results cap (SPLUNK_SEARCH_MAX_RESULTS)")
    eq(r.json["truncated"], True, "truncated")
    eq(r.json["truncated_by"], "max_results", "by results")
    check(time.monotonic() - t0 < SEARCH_TIMEOUT_MS / 1000.0, "answered before the time limit")
    eq(r.json["results"][0]["_raw"].split()[:2], ["event", "0"], "in order")
    # the server stopped reading: Splunk sees the connection closed
    wait_until(lambda: _fx["sp"].stats()["streams_closed_early"] >= closed + 1, 10, what="stream closed by Aurora")
    # big rows: the bytes cap is hit first
    r = search(w, key, {"query": "index=main foreverbig"})
    eq(r.status, 200, "endless big rows (%r)" % r)
    eq(r.json["truncated_by"], "max_bytes", "by bytes")
    eq(r.json["bytes_read"], MAX_BYTES, "exactly the cap read")
    check(0 < r.json["count"] < MAX_BYTES // 4096 + 1, "results within the bytes", r.json["count"])
    wait_until(lambda: _fx["sp"].stats()["streams_closed_early"] >= closed + 2, 10, what="second stream closed")
    still_serving(w, key)


@test
def test_splunk_search_stalled_stream_timeout(t):
    w = world()
    _, key = connected_splunk_user(w)
    r = search(w, key, {"query": "index=main stall"})
    eq(r.status, 200, "stalled (%r)" % r)
    eq([x["_raw"] for x in r.json["results"]], ["stalled 0", "stalled 1"], "what came in time")
    eq(r.json["truncated_by"], "timeout", "cut by the time limit")
    wait_until(lambda: _fx["sp"].stats()["streams_open"] == 0, 10, what="stream closed")


@test
def test_splunk_searches_bounded_per_org_and_in_all(t):
    # the suite's server: SPLUNK_SEARCH_MAX_PER_ORG=1, SPLUNK_SEARCH_MAX_CONCURRENT=2
    w = world()
    keys = []
    for _ in range(3):
        _, _, key = w.new_org()
        eq(sp_connect(w, key).status, 200, "connect")
        keys.append(key)
    open0 = _fx["sp"].stats()["streams_open"]
    answers = {}

    def stalled(i):
        answers[i] = search(w, keys[i], {"query": "index=main stall"})

    threads = []
    for i in range(2):
        th = threading.Thread(target=stalled, args=(i,))
        th.start()
        threads.append(th)
        wait_until(lambda: _fx["sp"].stats()["streams_open"] >= open0 + i + 1, 10,
                   what="search %d running at Splunk" % i)
        if i == 0:
            r = search(w, keys[0], {"query": "index=main"})
            eq(r.status, 429, "a second search of the same org (%r)" % r)
            eq(r.error_code, "SPLUNK_BUSY", "code")
            contains(r.get("error"), "SPLUNK_SEARCH_MAX_PER_ORG", "names the setting")
            check(r.headers.get("retry-after", "").isdigit(), "Retry-After", r.headers)
    r = search(w, keys[2], {"query": "index=main"})
    eq(r.status, 429, "a third org while two searches run (%r)" % r)
    r = w.get("/splunk/sourcetypes", key=keys[2])
    eq(r.status, 429, "sourcetypes are searches too (%r)" % r)
    for th in threads:
        th.join(30)
    for i in range(2):
        eq((answers[i].status, answers[i].json.get("truncated_by")), (200, "timeout"), "stalled search %d" % i)
    for key in keys:
        eq(search(w, key, {"query": "index=main"}).status, 200, "once they ended")


def outbound_parked(w):
    v = sample(scrape(w), "aurora_worker_jobs_parked", pool="outbound")
    check(v is not None, "the outbound pool's parked jobs in /metrics")
    return int(v)


@test
def test_one_org_holds_at_most_its_share_of_the_outbound_pool(t):
    """Provider calls share the outbound workers (8 here).  One organization's
    slow calls held them all, and every other organization's connects queued
    behind them.  Now an organization's authenticated requests hold at most
    half the pool (AURORA_OUTBOUND_PER_ORG, automatic: 4); a fifth waits off
    the threads (parked) while another organization's connect runs, and runs
    itself once one of the four ends: nothing is refused."""
    w = world()
    _, _, key_a = w.new_org()
    _, _, key_b = w.new_org()
    silent = SilentPeer()
    t.defer(silent.release)
    url = "http://127.0.0.1:%d" % silent.port
    answers = {}

    def connect(name, key):
        answers[name] = sp_connect(w, key, url=url)

    def start(name, key):
        th = threading.Thread(target=connect, args=(name, key))
        th.start()
        return th

    held = [start("a%d" % i, key_a) for i in range(4)]
    wait_until(lambda: silent.accepted() >= 4, 30, what="four connects waiting on the instance")
    fifth = start("a-fifth", key_a)
    wait_until(lambda: outbound_parked(w) == 1, 30, what="the fifth connect parked")
    other = start("b", key_b)
    wait_until(lambda: silent.accepted() >= 5, 30,
               what="another organization's connect reaching the instance meanwhile")
    eq(silent.accepted(), 5, "connections while the fifth is parked (it never left the server)")
    eq(outbound_parked(w), 1, "still parked")
    silent.release()
    for th in held + [fifth, other]:
        th.join(60)
    eq(sorted(answers), ["a-fifth", "a0", "a1", "a2", "a3", "b"], "every connect answered")
    check(all(a.status == 502 for a in answers.values()),
          "each ended as the instance closed (the fifth ran, found it refusing: never 429)",
          sorted((k, a.status, a.error_code) for k, a in answers.items()))
    eq(outbound_parked(w), 0, "nothing parked at the end")
    eq(sp_connect(w, key_a).status, 200, "the organization connects as before")


@test
def test_splunk_search_refused_by_splunk(t):
    w = world()
    _, key = connected_splunk_user(w)
    r = search(w, key, {"query": "index=main | badcommand x"})
    eq(r.status, 400, "bad SPL (%r)" % r)
    eq(r.error_code, "SPLUNK_SEARCH_INVALID", "code")
    contains(r.get("error"), "Unknown search command 'badcommand'.", "Splunk's message")


@test
def test_splunk_indexes_and_sourcetypes(t):
    w = world()
    _, key = connected_splunk_user(w)
    r = w.get("/splunk/indexes?count=10", key=key)
    eq(r.status, 200, "indexes (%r)" % r)
    eq(r.json["count"], 2, "count")
    eq(r.json["indexes"][0], {"name": "main", "datatype": "event", "total_event_count": 1234,
                              "current_size_mb": 12, "disabled": False}, "main")
    eq(r.json["indexes"][1]["total_event_count"], 88, "numbers as numbers")
    last = [q for q in _fx["sp"].stats()["requests"] if q["path"].startswith("/services/data/indexes")][-1]
    eq(last["path"], "/services/data/indexes?output_mode=json&count=10", "indexes endpoint")
    for bad in ("0", "1001", "x", "-1", "10abc"):
        eq(w.get("/splunk/indexes?count=" + bad, key=key).status, 400, "count=%s" % bad)
    r = w.get("/splunk/sourcetypes", key=key)
    eq(r.status, 200, "sourcetypes (%r)" % r)
    eq(r.json["results"], [{"sourcetype": "app:log", "total_count": 1200, "last_time": 1764676800},
                           {"sourcetype": "syslog", "total_count": 34, "last_time": 1764676000}], "sourcetypes")
    eq(_fx["sp"].stats()["searches"][-1]["search"], "| metadata type=sourcetypes", "metadata search")
    r = w.get("/splunk/sourcetypes?index=main&earliest_time=-30d", key=key)
    eq(r.status, 200, "sourcetypes of main")
    s = _fx["sp"].stats()["searches"][-1]
    eq((s["search"], s["earliest_time"]), ("| metadata type=sourcetypes index=main", "-30d"), "index, time")
    for bad in ("index=main%20%7C%20delete", "index=MAIN", "index=", "earliest_time=-1d%20x",
                "index=" + "a" * 90):
        eq(w.get("/splunk/sourcetypes?" + bad, key=key).status, 400, "sourcetypes ?%s" % bad)


@test
def test_splunk_search_bad_input_and_other_org(t):
    w = world()
    uid, key = connected_splunk_user(w)
    n_before = len(_fx["sp"].stats()["searches"])
    cases = [
        ("malformed JSON", "{\"query\": ", 400),
        ("truncated JSON", "{\"query\": \"index=main\"", 400),
        ("not an object", "\"index=main\"", 400),
        ("missing query", {"earliest_time": "-1h"}, 400),
        ("empty query", {"query": "   "}, 400),
        ("query not a string", {"query": ["index=main"]}, 400),
        ("control character", {"query": "index=main\u0007"}, 400),
        ("query too long", {"query": "a" * 9000}, 400),
        ("earliest_time injection", {"query": "x", "earliest_time": "-1h&search=evil"}, 400),
        ("latest_time with a blank", {"query": "x", "latest_time": "now | delete"}, 400),
        ("earliest_time not a string", {"query": "x", "earliest_time": -3600}, 400),
        ("max_results 0", {"query": "x", "max_results": 0}, 400),
        ("max_results over the cap", {"query": "x", "max_results": MAX_RESULTS + 1}, 400),
        ("max_results not an integer", {"query": "x", "max_results": 2.5}, 400),
        ("max_results a string", {"query": "x", "max_results": "5"}, 400),
    ]
    for what, body, want in cases:
        r = search(w, key, body)
        eq(r.status, want, "%s (%r)" % (what, r))
    r = w.post("/splunk/search", b"{\"query\":\"" + b"a" * (2 * 1024 * 1024) + b"\"}", key=key)
    eq(r.status, 413, "oversized body (%r)" % r)
    eq(len(_fx["sp"].stats()["searches"]), n_before, "no bad input reached Splunk")
    # another org (and another user of this org) sees nothing
    _, _, org2_key = w.new_org()
    eq(w.get("/splunk/status", key=org2_key).json.get("connected"), False, "other org: not connected")
    for path in ("/splunk/indexes", "/splunk/sourcetypes"):
        eq(w.get(path, key=org2_key).status, 404, "other org: %s" % path)
    r = search(w, org2_key, {"query": "index=main"})
    eq(r.status, 404, "other org: search (%r)" % r)
    contains(r.get("error"), "not connected", "says why")
    _, key2 = new_user(w)
    eq(search(w, key2, {"query": "index=main"}).status, 404, "other user: search")
    # still serving, and the good request still works
    r = search(w, key, {"query": "index=main"})
    eq(r.status, 200, "good search after bad input (%r)" % r)


@test
def test_splunk_token_revoked_after_connect(t):
    w = world()
    _, key = new_user(w)
    eq(sp_connect(w, key, token=SP_OTHER).status, 200, "connect with a token about to be revoked")
    cfg_tokens = {SP_TOKEN: {"username": "aurora-svc"}, SP_NOSEARCH: {"username": "no-search",
                  "capabilities": ["list_settings"]}}
    _fx["sp"].config(tokens=cfg_tokens, events=EVENTS, indexes=INDEXES, sourcetypes=SOURCETYPES)
    try:
        r = search(w, key, {"query": "index=main"})
        eq(r.status, 502, "revoked token (%r)" % r)
        eq(r.error_code, "SPLUNK_AUTH_FAILED", "code")
        contains(r.get("error"), "Authentication failed", "the guide's message")
        r = w.get("/splunk/indexes", key=key)
        eq(r.error_code, "SPLUNK_AUTH_FAILED", "indexes too")
    finally:
        cfg_tokens[SP_OTHER] = {"username": "other-svc"}
        _fx["sp"].config(tokens=cfg_tokens, events=EVENTS, indexes=INDEXES, sourcetypes=SOURCETYPES)


@test
def test_splunk_disconnect_deletes_the_token(t):
    w = world()
    uid, key = connected_splunk_user(w)
    eq(len(secret_paths(w, uid, "splunk")), 1, "secret stored")
    r = w.delete("/api/connectors/splunk", key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    eq(r.json.get("deleted"), True, "deleted")
    eq(secret_paths(w, uid, "splunk"), [], "secret deleted")
    eq(w.get("/splunk/status", key=key).json.get("connected"), False, "status")
    eq(search(w, key, {"query": "index=main"}).status, 404, "search after disconnect")
    no_secret_in_clear(w, SP_TOKEN)


if __name__ == "__main__":
    main()
