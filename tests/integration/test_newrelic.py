#!/usr/bin/env python3
"""test_newrelic.py — the New Relic connector (connector guide: Observability Tools >
New Relic) on the real server: connect (User API key + account id + region), the
NerdGraph read API (NRQL, issues, incidents, entities, accounts), POST
/newrelic/poll-issues, the per-user workflow webhook and the incidents they make.

Peers and inputs, independent of the server's code:
  - tests/fixtures/newrelic_nerdgraph.mjs stands in for NerdGraph (New Relic's
    NerdGraph docs: one GraphQL endpoint per region, POST {query, variables} with
    the API-Key header; the "NerdGraph issues API" types).  It checks the API-Key
    header itself (a key belongs to one region and to some accounts) and reads
    every user value from the request's parsed "variables".
  - webhook bodies are New Relic's default workflow webhook payload ("id":
    {{ json issueId }}, "issueUrl", "title", "priority", "impactedEntities",
    "state", "createdAt"/"updatedAt" in epoch ms, …) and the recommended
    template of docs/api.md; destinations do not sign, the per-user URL is the
    credential.
Incidents are read through GET /api/incidents.
"""
import json
import os
import random
import secrets
import string
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (T, _SUITE, HttpFixture, check, eq, https_request,  # noqa: E402
                     main, rand_tag, test, wait_until, within_one_window)

_FX = {}


def fixture_world(t=None, extra=None):
    if t is None and _SUITE["world"] is not None:
        return _SUITE["world"], _FX["fx"]
    if t is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        t = _SUITE["t"]
    fx = HttpFixture(t, "nerdgraph-" + rand_tag(3), "newrelic_nerdgraph.mjs")
    w = t.world("server-" + rand_tag(3), start=False)
    w.extra_env.update({"AURORA_NEWRELIC_US_GRAPHQL_URL": fx.base + "/us/graphql",
                        "AURORA_NEWRELIC_EU_GRAPHQL_URL": fx.base + "/eu/graphql",
                        # no test here waits for a provider timeout: ample, for a loaded machine
                        "AURORA_PROVIDER_TIMEOUT_MS": "30000"})
    w.extra_env.update(extra or {})
    w.start()
    w.bootstrap()
    w.fx_keys, w.fx_accounts = {}, {}
    if _SUITE["world"] is None and t is _SUITE["t"]:
        _SUITE["world"], _FX["fx"] = w, fx
    return w, fx


def new_key(w, fx, region="US", accounts=None):
    """A User key the stand-in knows: "NRAK-" + 27 upper-case letters and digits."""
    key = "NRAK-" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(27))
    acc = accounts or [random.randrange(1000000, 9999999)]
    w.fx_keys[key] = {"region": region, "accounts": acc}
    for a in acc:
        w.fx_accounts[str(a)] = "Acme %d" % a
    fx.config(keys=w.fx_keys, accounts=w.fx_accounts)
    return key, acc[0]


def connect(w, key, api_key, account, region="US", **kw):
    body = {"api_key": api_key, "account_id": str(account), "region": region}
    body.update(kw)
    return w.post("/newrelic/connect", body, key=key)


def connected_user(w, fx, region="US"):
    org, user, key = w.new_org()
    nrak, acct = new_key(w, fx, region)
    r = connect(w, key, nrak, acct, region)
    eq(r.status, 200, "POST /newrelic/connect (%r)" % r)
    return org, user, key, nrak, acct


def ms(t=None):
    return int((t or time.time()) * 1000)


def issue(state="ACTIVATED", iid=None, prio="CRITICAL", title="Memory high on checkout", created=None):
    """An AiIssuesIssue as NerdGraph returns it."""
    return {"issueId": iid or secrets.token_hex(8), "title": [title], "priority": prio, "state": state,
            "entityNames": ["checkout"], "description": ["Memory Used % > 90"],
            "createdAt": created or ms() - 60000, "updatedAt": ms(), "sources": ["newrelic"]}


def default_payload(iid, state="ACTIVATED", prio="CRITICAL", title="Memory high on checkout"):
    """New Relic's default workflow webhook payload, filled."""
    return {"id": iid, "issueUrl": "https://radar-api.service.newrelic.com/accounts/1/issues/%s" % iid,
            "title": title, "priority": prio, "impactedEntities": ["checkout"], "totalIncidents": 1,
            "state": state, "trigger": "STATE_CHANGE", "isCorrelated": False, "createdAt": ms() - 60000,
            "updatedAt": ms(), "sources": ["newrelic"], "alertPolicyNames": ["Golden signals"],
            "alertConditionNames": ["Memory high"], "workflowName": "aurora"}


def deliver(w, user, payload=None, org=None, raw=None, headers=None):
    path = "/newrelic/webhook/%s" % user + ("?org_id=%s" % org if org else "")
    body = raw if raw is not None else json.dumps(payload).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return https_request(w.port, w.ctx, "POST", path, body, headers=h)


def events(w, key):
    r = w.get("/api/newrelic/webhook-events?limit=100", key=key)
    eq(r.status, 200, "GET /api/newrelic/webhook-events (%r)" % r)
    return r.json["events"]


def incidents(w, key):
    r = w.get("/api/incidents?source=newrelic&limit=200", key=key)
    eq(r.status, 200, "GET /api/incidents (%r)" % r)
    return r.json["incidents"]


def requests_of(fx, op):
    return [q for q in fx.stats()["requests"] if q["op"] == op]


# ---------------------------------------------------------------------------
@test
def test_connect_ok_stores_key_and_shows_webhook(t):
    w, fx = fixture_world()
    org, user, key = w.new_org()
    nrak, acct = new_key(w, fx)
    lic = secrets.token_hex(20)
    r = connect(w, key, nrak, acct, "US", license_key=lic)
    eq(r.status, 200, "connect (%r)" % r)
    eq((r.json["connected"], r.json["account_id"], r.json["region"]), (True, str(acct), "US"), "reply")
    v = requests_of(fx, "validate")[-1]
    eq((v["key"], v["region"], v["variables"]), (nrak, "US", {"id": acct}), "validated with API-Key, id as variable")
    s = w.get("/newrelic/status", key=key).json
    eq((s["connected"], s["account_id"], s["region"]), (True, str(acct), "US"), "status")
    check(s["webhook"]["url"].endswith("/newrelic/webhook/%s?org_id=%s" % (user, org)), "webhook URL", s)
    blob = json.dumps(r.json) + json.dumps(s) + w.server.log_text()
    check(nrak not in blob and lic not in blob, "no key in replies or logs")


@test
def test_connect_refusals(t):
    w, fx = fixture_world()
    org, user, key = w.new_org()
    nrak, acct = new_key(w, fx)
    eu_key, eu_acct = new_key(w, fx, "EU")
    cases = [
        ("not NRAK-", connect(w, key, "NRAA-" + nrak[5:], acct), 400, "NEWRELIC_INVALID_API_KEY"),
        ("unknown key", connect(w, key, "NRAK-" + "Z" * 27, acct), 400, "NEWRELIC_INVALID_API_KEY"),
        ("wrong account", connect(w, key, nrak, acct + 1), 400, "NEWRELIC_ACCOUNT_NOT_FOUND"),
        ("EU key on US", connect(w, key, eu_key, eu_acct, "US"), 400, "NEWRELIC_INVALID_API_KEY"),
        ("account not numeric", connect(w, key, nrak, "12ab"), 400, "NEWRELIC_INVALID_ACCOUNT_ID"),
        ("region", connect(w, key, nrak, acct, "APAC"), 400, "NEWRELIC_UNKNOWN_REGION"),
        ("license 39 chars", connect(w, key, nrak, acct, license_key="a" * 39), 400,
         "NEWRELIC_INVALID_LICENSE_KEY"),
        ("malformed JSON", w.post("/newrelic/connect", b'{"api_key": ', key=key,
                                  headers={"Content-Type": "application/json"}), 400, None),
        ("wrong content type", w.post("/newrelic/connect", b"api_key=x", key=key,
                                      headers={"Content-Type": "text/plain"}), 400, None),
    ]
    for what, r, st, code in cases:
        eq(r.status, st, "%s (%r)" % (what, r))
        if code:
            eq(r.error_code, code, "%s: code" % what)
    msgs = {c[0]: c[1].json.get("error", "") for c in cases[:4]}
    check("Invalid API key" in msgs["unknown key"], "guide's message", msgs)
    check("Account not found" in msgs["wrong account"], "guide's message", msgs)
    check("EU" in msgs["EU key on US"], "EU region guidance", msgs)
    eq(w.get("/newrelic/status", key=key).json["connected"], False, "nothing stored")
    # the EU endpoint
    r = connect(w, key, eu_key, eu_acct, "eu")
    eq((r.status, r.json.get("region")), (200, "EU"), "EU connect (%r)" % r)
    eq(requests_of(fx, "validate")[-1]["path"], "/eu/graphql", "EU endpoint used")


@test
def test_nrql_hostile_text_stays_a_variable(t):
    w, fx = fixture_world()
    org, user, key, nrak, acct = connected_user(w, fx)
    hostile = 'SELECT count(*) FROM Transaction" } } mutation { apiAccessCreateKeys(keys: {}) { x } } #'
    r = w.post("/newrelic/nrql", {"query": hostile}, key=key)
    eq(r.status, 200, "NRQL (%r)" % r)
    eq(r.json["results"], [{"count": 42, "query": hostile}], "results")
    q = requests_of(fx, "nrql")[-1]
    eq((q["variables"]["nrql"], q["variables"]["id"]), (hostile, acct), "NRQL and account as variables")
    check(hostile not in q["query"] and "mutation" not in q["query"], "query document untouched", q["query"])
    eq(w.post("/newrelic/nrql", {"query": ""}, key=key).status, 400, "empty query")
    eq(w.post("/newrelic/nrql", {"query": "x" * 5000}, key=key).status, 400, "oversized query")
    eq(w.post("/newrelic/nrql", {"query": "SELECT 1", "account_id": "x"}, key=key).status, 400, "bad account")
    r = w.post("/newrelic/nrql", {"query": "SELECT 1", "account_id": acct + 7}, key=key)
    eq((r.status, r.error_code), (404, "NEWRELIC_ACCOUNT_NOT_FOUND"), "other account (%r)" % r)
    fx.config(nrql_error="NRQL Syntax Error: Error at line 1")
    r = w.post("/newrelic/nrql", {"query": "SELEKT"}, key=key)
    fx.config(nrql_error=None)
    eq((r.status, r.error_code), (400, "NEWRELIC_QUERY_ERROR"), "GraphQL error mapped (%r)" % r)
    _, _, key2 = w.new_org()
    eq(w.post("/newrelic/nrql", {"query": "SELECT 1"}, key=key2).status, 404, "not connected")


@test
def test_issues_incidents_paging_and_filters(t):
    w, fx = fixture_world()
    org, user, key, nrak, acct = connected_user(w, fx)
    its = [issue("ACTIVATED", "iss-%d" % i, ["CRITICAL", "HIGH", "LOW"][i % 3]) for i in range(5)]
    its.append(issue("CLOSED", "iss-closed"))
    fx.config(issues=its, incidents=[dict(issue("CREATED", "inc-1"), incidentId="inc-1")], page_size=2)
    r = w.get("/newrelic/issues?pages=2", key=key)
    eq(r.status, 200, "issues (%r)" % r)
    eq([i["issueId"] for i in r.json["issues"]], ["iss-0", "iss-1", "iss-2", "iss-3"], "two pages")
    eq(r.json["next_cursor"], "c4", "cursor to go on")
    r = w.get("/newrelic/issues?pages=5&cursor=c4", key=key)
    eq(([i["issueId"] for i in r.json["issues"]], r.json["next_cursor"]), (["iss-4", "iss-closed"], None), "rest")
    r = w.get("/newrelic/issues?state=activated&priority=CRITICAL,LOW&pages=5", key=key)
    eq([i["issueId"] for i in r.json["issues"]], ["iss-0", "iss-2", "iss-3"], "filtered")
    eq(requests_of(fx, "issues")[-1]["variables"]["filter"], {"states": ["ACTIVATED"]}, "states as a variable")
    tw = requests_of(fx, "issues")[-1]["variables"]["tw"]
    check(tw["endTime"] - tw["startTime"] == 86400000, "default window 24 h", tw)
    r = w.get("/newrelic/incidents?state=CREATED", key=key)
    eq([i["incidentId"] for i in r.json["incidents"]], ["inc-1"], "incidents (%r)" % r)
    for q in ["state=FIRING", "priority=P1", "pages=9", "since=abc", "since=2000&until=1000"]:
        eq(w.get("/newrelic/issues?" + q, key=key).status, 400, "bad " + q)


@test
def test_entities_and_accounts(t):
    w, fx = fixture_world()
    org, user, key = w.new_org()
    nrak, acct = new_key(w, fx, accounts=[111, 222])
    eq(connect(w, key, nrak, 222).status, 200, "connect to the second account")
    fx.config(entities=[{"guid": "g%d" % i, "name": "checkout-%d" % i, "entityType": "APM_APPLICATION_ENTITY",
                         "type": "APPLICATION", "domain": "APM", "accountId": 222} for i in range(3)], page_size=2)
    q = "name LIKE 'checkout' \" } } { x"
    r = w.get("/newrelic/entities?query=checkout", key=key)
    eq((r.status, len(r.json["entities"]), r.json["next_cursor"], r.json["count"]), (200, 2, "c2", 3), "page 1 (%r)" % r)
    r = w.get("/newrelic/entities?query=checkout&cursor=c2", key=key)
    eq(([e["guid"] for e in r.json["entities"]], r.json["next_cursor"]), (["g2"], None), "page 2")
    r = w.get("/newrelic/entities?query=" + q.replace(" ", "%20").replace("'", "%27").replace('"', "%22")
              .replace("{", "%7B").replace("}", "%7D"), key=key)
    eq(r.status, 200, "hostile entity query (%r)" % r)
    eq(requests_of(fx, "entities")[-1]["variables"]["q"], q, "a variable")
    eq(w.get("/newrelic/entities", key=key).status, 400, "query required")
    r = w.get("/newrelic/accounts", key=key)
    eq(r.json["accounts"], [{"id": 111, "name": "Acme 111"}, {"id": 222, "name": "Acme 222"}], "accounts")


@test
def test_poll_then_webhook_one_incident(t):
    w, fx = fixture_world()
    org, user, key, nrak, acct = connected_user(w, fx)
    iid = "poll-" + secrets.token_hex(6)
    fx.config(issues=[issue("ACTIVATED", iid)], page_size=2)
    r = w.post("/newrelic/poll-issues", {}, key=key)
    eq((r.status, r.json["issues"], r.json["created"]), (200, 1, 1), "first poll (%r)" % r)
    r = w.post("/newrelic/poll-issues", {}, key=key)
    eq((r.status, r.json["created"], r.json["duplicates"]), (200, 0, 1), "repeat poll is idempotent (%r)" % r)
    incs = incidents(w, key)
    eq(len(incs), 1, "one incident")
    eq((incs[0]["severity"], incs[0]["status"]), ("critical", "open"), "severity from priority")
    # the webhook for the same issue and state: stored, no second incident
    eq(deliver(w, user, default_payload(iid)).status, 200, "webhook ACTIVATED")
    wait_until(lambda: [e["status"] for e in events(w, key)] == ["processed"], 30, what="processed")
    eq(len(incidents(w, key)), 1, "still one incident")
    # ACKNOWLEDGED then CLOSED attach; CLOSED resolves
    eq(deliver(w, user, default_payload(iid, "ACKNOWLEDGED")).status, 200, "ack")
    eq(deliver(w, user, default_payload(iid, "CLOSED")).status, 200, "closed")
    wait_until(lambda: [e["status"] for e in events(w, key)] == ["processed"] * 3, 30, what="3 processed")
    incs = incidents(w, key)
    eq((len(incs), incs[0]["status"]), (1, "resolved"), "resolved by CLOSED (%r)" % incs)
    # the poll now sees CLOSED: a duplicate of the webhook's
    fx.config(issues=[issue("CLOSED", iid)])
    r = w.post("/newrelic/poll-issues", {}, key=key)
    eq((r.json["created"], r.json["duplicates"]), (0, 1), "poll of the closed issue (%r)" % r)


@test
def test_webhook_bad_input_stores_nothing_and_server_keeps_serving(t):
    w, fx = fixture_world()
    org, user, key, nrak, acct = connected_user(w, fx)
    org_b, user_b, key_b, _, _ = connected_user(w, fx)
    _, lonely, _ = w.new_org()
    good = default_payload("wh-" + secrets.token_hex(6))
    body = json.dumps(good).encode()
    cases = [
        ("unknown user", deliver(w, "nobody-" + rand_tag(6), good), 404),
        ("user without New Relic", deliver(w, lonely, good), 404),
        ("another org's id in the URL", deliver(w, user_b, good, org=org), 404),
        ("malformed JSON", deliver(w, user, raw=b'{"id": "1", "title": '), 400),
        ("truncated", deliver(w, user, raw=body[:len(body) // 2]), 400),
        ("not an object", deliver(w, user, raw=b'["x"]'), 400),
        ("not New Relic's shape", deliver(w, user, {"foo": "bar"}), 400),
        ("unknown state", deliver(w, user, dict(good, state="FIRING")), 400),
        ("oversized", deliver(w, user, dict(good, title="x" * (300 * 1024))), 413),
        ("text/plain", deliver(w, user, raw=body, headers={"Content-Type": "text/plain"}), 415),
    ]
    for what, r, st in cases:
        eq(r.status, st, "%s (%r)" % (what, r))
    eq(events(w, key), [], "nothing stored")
    eq(events(w, key_b), [], "nothing stored for the other org")
    r1, r2 = deliver(w, user, good), deliver(w, user, good)
    eq((r1.status, r2.status, r2.json["duplicate"]), (200, 200, True), "redelivery is one row")
    eq(w.get("/health", auth=False).status, 200, "server serving")
    # read routes: bad input
    eq(w.post("/newrelic/nrql", b"{", key=key, headers={"Content-Type": "application/json"}).status, 400,
       "nrql malformed")
    eq(w.post("/newrelic/nrql", b"query=x", key=key, headers={"Content-Type": "text/plain"}).status, 400,
       "nrql: not JSON")
    eq(w.get("/newrelic/issues", auth=False).status, 401, "unauthenticated")


@test
def test_webhook_rate_limit_per_user(t):
    w, fx = fixture_world(t, extra={"AURORA_NEWRELIC_WEBHOOK_RATE_PER_MINUTE": "3"})
    # the window is a calendar minute: a run straddling its end starts over
    # with a fresh user
    def run():
        user = connected_user(w, fx)[1]
        for i in range(3):
            eq(deliver(w, user, default_payload("rl-%d" % i)).status, 200, "delivery %d" % i)
        r = deliver(w, user, default_payload("rl-x"))
        eq((r.status, r.error_code), (429, "RATE_LIMITED"), "4th (%r)" % r)
        check(1 <= int(r.headers["retry-after"]) <= 60, "Retry-After", r.headers)
    within_one_window(60, run)


@test
def test_disconnect_closes_webhook_and_reads(t):
    w, fx = fixture_world()
    org, user, key, nrak, acct = connected_user(w, fx)
    eq(deliver(w, user, default_payload("dc-1")).status, 200, "connected: accepted")
    r = w.post("/newrelic/disconnect", {}, key=key)
    eq(r.status, 200, "disconnect (%r)" % r)
    eq(deliver(w, user, default_payload("dc-2")).status, 404, "webhook after disconnect")
    eq(w.get("/newrelic/accounts", key=key).status, 404, "read after disconnect")
    eq(w.post("/newrelic/poll-issues", {}, key=key).status, 404, "poll after disconnect")
    eq(connect(w, key, nrak, acct).status, 200, "reconnect")
    r = w.delete("/api/connectors/newrelic", key=key)
    eq(r.status, 200, "generic disconnect (%r)" % r)
    eq(w.get("/newrelic/status", key=key).json["connected"], False, "status")


@test
def test_periodic_poller_makes_incidents_once(t):
    w, fx = fixture_world(t, extra={"AURORA_NEWRELIC_POLL_INTERVAL_S": "1"})
    org, user, key, nrak, acct = connected_user(w, fx)
    iid = "periodic-" + secrets.token_hex(6)
    fx.config(issues=[issue("ACTIVATED", iid, "HIGH")], page_size=2)
    wait_until(lambda: len(incidents(w, key)) == 1, 30, what="the poller's incident")
    n0 = len(requests_of(fx, "issues"))
    wait_until(lambda: len(requests_of(fx, "issues")) >= n0 + 2, 30, what="two more polls")
    incs = incidents(w, key)
    eq((len(incs), incs[0]["severity"]), (1, "high"), "polled again: still one incident")
    fx.config(issues=[issue("CLOSED", iid, "HIGH")])
    wait_until(lambda: incidents(w, key)[0]["status"] == "resolved", 30, what="resolved by the polled CLOSED")
    eq(w.get("/health", auth=False).status, 200, "server serving")


@test
def test_periodic_poller_reaches_every_connection(t):
    # One connection per tick: the connections past that number get their
    # turn in later ticks (they were never polled: every tick took the
    # oldest ones again).
    w, fx = fixture_world(t, extra={"AURORA_NEWRELIC_POLL_INTERVAL_S": "1",
                                    "AURORA_NEWRELIC_POLL_CONNECTIONS": "1"})
    keys = [connected_user(w, fx)[2] for _ in range(3)]
    fx.config(issues=[issue("ACTIVATED", "every-" + secrets.token_hex(6), "HIGH")])
    for i, key in enumerate(keys):
        wait_until(lambda key=key: len(incidents(w, key)) == 1, 30,
                   what="the poller's incident in the organization connected %d%s"
                        % (i + 1, ("st", "nd", "rd")[i]))


@test
def test_periodic_poller_no_idle_tick_after_a_round(t):
    # As many connections as a tick polls (one here; 50 and 50 by default):
    # the tick that polls the newest leaves the place there, and the next
    # found nothing after it and polled nothing, so every connection was
    # polled every other interval.  Each tick polls: polls are one interval
    # apart, plus the run (the next tick is timed from its end) and the
    # machine's delays; an idle tick between them makes two intervals and
    # more, never less.  3 s: the bound below leaves 2.5 s for what a
    # loaded machine adds to a gap (at 2 s it left 1 s, which a loaded
    # machine could use up in all three gaps).
    interval = 3
    w, fx = fixture_world(t, extra={"AURORA_NEWRELIC_POLL_INTERVAL_S": str(interval),
                                    "AURORA_NEWRELIC_POLL_CONNECTIONS": "1"})
    nrak = connected_user(w, fx)[3]
    fx.config(issues=[])

    def polls():
        return [q["at_ms"] for q in requests_of(fx, "issues") if q["key"] == nrak]
    wait_until(lambda: len(polls()) >= 4, 60, what="four periodic polls")
    at = polls()[:4]
    gaps = [b - a for a, b in zip(at, at[1:])]
    # an idle tick between every two polls makes each gap 6 s or more; the
    # smallest gap judges, so one tick a loaded machine ran late cannot fail it
    check(min(gaps) < (2 * interval - 0.5) * 1000,
          "a poll every tick (%d s), not every other: gaps %r ms" % (interval, gaps))


@test
def test_periodic_poller_one_failing_key_does_not_slow_the_others(t):
    # One organization's key New Relic refuses (revoked): that connection is
    # tried less and less often, every other one keeps the interval (the
    # whole poller used to back off toward an hour for everyone).
    w, fx = fixture_world(t, extra={"AURORA_NEWRELIC_POLL_INTERVAL_S": "1"})
    good = connected_user(w, fx)[3]
    bad = connected_user(w, fx)[3]
    fx.config(issues=[])

    def reqs():
        return requests_of(fx, "issues")

    def polls(key, since=0):
        return [q for q in reqs()[since:] if q["key"] == key]
    wait_until(lambda: polls(good) and polls(bad), 30, what="both connections polled")
    saved = w.fx_keys.pop(bad)
    fx.config(keys=w.fx_keys)  # New Relic now answers 401 to it
    mark = len(reqs())
    wait_until(lambda: polls(bad, mark), 30, what="the refused key polled")
    mark = len(reqs())
    wait_until(lambda: len(polls(good, mark)) >= 8, 40,
               what="eight polls of the good connection, one a tick")
    n_bad = len(polls(bad, mark))
    # backing off 2, 4, 8 ticks: at most 3 tries in 8 ticks (8 without)
    check(n_bad <= 3, "the refused key backs off on its own: %d polls while the good one had %d"
          % (n_bad, len(polls(good, mark))))
    # New Relic takes the key again: the next try succeeds and the
    # connection is back at the interval
    w.fx_keys[bad] = saved
    fx.config(keys=w.fx_keys)
    mark = len(reqs())
    wait_until(lambda: len(polls(bad, mark)) >= 4, 40, what="the key polled again after New Relic took it")
    at = [i for i, q in enumerate(reqs()) if i >= mark and q["key"] == bad][:4]
    n_good = len([q for q in reqs()[at[0]:at[3]] if q["key"] == good])
    check(n_good <= 4, "the recovered key polled every tick: %d good polls between its 1st and 4th"
          % n_good)


if __name__ == "__main__":
    main()
