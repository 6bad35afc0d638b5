#!/usr/bin/env python3
"""test_github_webhooks.py — the GitHub App's webhooks (POST /github/webhook), their
events API (GET /api/github/events[/{id}]) and what they change (installations,
repositories), on the real server.

Peers and inputs, independent of the server's code:
  - payloads: every example of the subscribed events in @octokit/webhooks-examples
    (api.github.com set), as GitHub documents them;
  - signatures: @octokit/webhooks-methods' sign() (tests/fixtures/gh_webhook_sign.mjs);
  - GitHub's REST API (the install callback fetches the installation with the App
    JWT): tests/fixtures/github_api.mjs, as in test_github_app.py, whose helpers are
    reused here.

The examples come from repository webhooks and GitHub App webhooks alike; a GitHub
App delivery always names its installation, so each payload is given the id of an
installation the test bound (an example's own `installation` object is kept, with
its id replaced).
"""
import atexit
import base64
import json
import os
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FIXTURES, NODE, T, _SUITE, check, contains, eq, https_request,  # noqa: E402
                     main, post_many, rand_tag, test, wait_until)

# test_github_app's peers and helpers, without its tests (importing registers them)
_n_tests = len(harness._TESTS)
import test_github_app as gha  # noqa: E402
del harness._TESTS[_n_tests:]

SUBSCRIBED = ["check_run", "check_suite", "deployment", "deployment_status", "issues", "pull_request",
              "workflow_run", "installation", "installation_repositories"]
GATING = {"opened", "synchronize", "reopened", "ready_for_review"}
BULK_ID, LIFE_ID, OTHER_ID, KILL_ID, LATE_ID, PEND_ID = 201, 202, 203, 204, 205, 206
NEVER_ID = 999999  # an installation nobody binds
_env = {}


# ---------------------------------------------------------------------------
# signing and delivery
# ---------------------------------------------------------------------------
_signer = {}


def signer(op, **req):
    """One request to tests/fixtures/gh_webhook_sign.mjs, a Node process kept
    for the whole program (started on first use, ended at exit)."""
    p = _signer.get("proc")
    if p is None or p.poll() is not None:
        p = subprocess.Popen([NODE, os.path.join(FIXTURES, "gh_webhook_sign.mjs"), "serve"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=FIXTURES)
        _signer["proc"] = p
        atexit.register(lambda: (p.stdin.close(), p.wait(10)))
    p.stdin.write((json.dumps(dict(req, op=op)) + "\n").encode())
    p.stdin.flush()
    # a signer that hangs fails this call in 60 s, not the program at its timeout
    ready, _, _ = select.select([p.stdout], [], [], 60)
    check(ready, "gh_webhook_sign.mjs %s: no answer within 60 s" % op)
    line = p.stdout.readline()
    check(line, "gh_webhook_sign.mjs %s: no answer (exit status %s)" % (op, p.poll()))
    answer = json.loads(line)
    check("result" in answer, "gh_webhook_sign.mjs %s" % op, answer.get("error"))
    return answer["result"]


def sign_many(secret, bodies):
    return signer("sign", secret=secret, bodies=[base64.b64encode(b).decode() for b in bodies])


def sign(secret, body):
    return sign_many(secret, [body])[0]


def examples(events):
    return signer("examples", events=list(events))


def with_installation(payload, iid):
    p = json.loads(json.dumps(payload))
    inst = p.get("installation") if isinstance(p.get("installation"), dict) else {}
    inst["id"] = iid
    inst.setdefault("node_id", "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u%d" % iid)
    p["installation"] = inst
    return p


def deliver(w, event, body, signature, delivery=None, headers=None, drop=()):
    h = {"Content-Type": "application/json", "X-GitHub-Event": event,
         "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": signature,
         "User-Agent": "GitHub-Hookshot/test"}
    h.update(headers or {})
    for k in drop:
        h.pop(k, None)
    return https_request(w.port, w.ctx, "POST", "/github/webhook", body, headers=h)


def send(w, event, payload, secret=None, delivery=None, body_of=None):
    """Signs and posts payload.  Each real delivery's body is unique (ids,
    timestamps), and the server counts the same signed bytes under a new
    delivery id as a replay: a field naming the delivery stands in for that
    (body_of: the bytes of another delivery, for replay tests)."""
    delivery = delivery or str(uuid.uuid4())
    payload = dict(payload, aurora_test_delivery=body_of or delivery)
    body = json.dumps(payload).encode()
    return deliver(w, event, body, sign(secret or _env["secret"], body), delivery)


def events(w, key=None, **q):
    """Every event of the caller's org (all pages)."""
    out, cursor = [], None
    while True:
        qs = "&".join(["limit=100"] + ["%s=%s" % kv for kv in q.items()] +
                      (["cursor=" + cursor] if cursor else []))
        r = w.get("/api/github/events?" + qs, key=key)
        eq(r.status, 200, "GET /api/github/events (%r)" % r)
        out += r.json["events"]
        cursor = r.json["next_cursor"]
        if not cursor:
            return out


def deliver_many(w, event, bodies, signatures):
    """Posts every body (signed) over a few kept-alive connections; the statuses."""
    return post_many(w, "/github/webhook", bodies, lambda i: {
        "Content-Type": "application/json", "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signatures[i],
        "User-Agent": "GitHub-Hookshot/test"})


def by_delivery(w, delivery, key=None):
    return [e for e in events(w, key) if e["delivery_id"] == delivery]


def db_rows(w, where="1=1", args=()):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(w.data, "aurora.db"), uri=True, timeout=10)
    try:
        return con.execute("SELECT delivery_id, org_id, status FROM webhook_deliveries WHERE " + where,
                           args).fetchall()
    finally:
        con.close()


def installation_of(w, iid, key=None):
    r = w.get("/api/github/installations", key=key)
    eq(r.status, 200, "GET /api/github/installations (%r)" % r)
    got = [i for i in r.json["installations"] if i["installation_id"] == iid]
    check(got, "installation %d listed" % iid, r.json)
    return got[0]


def serving(w):
    eq(w.get("/health", auth=False).status, 200, "server still serving")


# ---------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------
def start_world(t, name, extra=None):
    fx, trap = _env["fx"], _env["trap"]
    w = gha.make_world(t, name, fx, trap, extra, start=False)
    os.makedirs(w.data, exist_ok=True)
    w.start()
    w.bootstrap()
    gha.secret_put(w, "aurora/system/github-app/private-key", _env["priv"])
    return w


def world():
    """The suite's server: App key and webhook secret in the secrets backend (the
    guide's Step 3), plus GITHUB_APP_WEBHOOK_SECRET_PREVIOUS (rotation)."""
    if _SUITE["world"] is None:
        if _SUITE["t"] is None:
            _SUITE["t"] = T(_SUITE["root"], "suite")
        st = _SUITE["t"]
        fx, trap = gha.Fixture(st), gha.Trap()
        priv, pub = gha.keypair(st, "app")
        _env.update(fx=fx, trap=trap, priv=priv, pub=pub, secret="whsec-" + rand_tag(16),
                    previous="whsec-old-" + rand_tag(16))
        fx.config(public_key=pub, issuers=[gha.CLIENT_ID],
                  installations={str(i): gha.installation(i) for i in range(BULK_ID, BULK_ID + 10)})
        w = start_world(st, "suite-server", {"GITHUB_APP_WEBHOOK_SECRET_PREVIOUS": _env["previous"]})
        gha.secret_put(w, "aurora/system/github-app/webhook-secret", _env["secret"])
        eq(gha.install(w, BULK_ID).status, 302, "installation %d bound to the suite org" % BULK_ID)
        _SUITE["world"] = w
    return _SUITE["world"]


# ---------------------------------------------------------------------------
@test(timeout=300)
def test_every_example_accepted_and_persisted(t):
    w = world()
    ex = examples(SUBSCRIBED)
    check(len(ex) >= 60, "the examples package has the subscribed events", len(ex))
    eq(sorted({e["event"] for e in ex}), sorted(SUBSCRIBED), "every subscribed event has examples")
    bodies = [json.dumps(with_installation(e["payload"], BULK_ID)).encode() for e in ex]
    sigs = sign_many(_env["secret"], bodies)
    sent = {}
    for e, body, sig in zip(ex, bodies, sigs):
        d = str(uuid.uuid4())
        r = deliver(w, e["event"], body, sig, d)
        eq((r.status, r.get("ok"), r.get("duplicate")), (200, True, False),
           "%s %s accepted (%r)" % (e["event"], e["payload"].get("action"), r))
        sent[d] = (e["event"], e["payload"].get("action", ""), r.get("id"), body)
    got = {}
    def all_done():
        got.clear()
        got.update({x["delivery_id"]: x for x in events(w) if x["delivery_id"] in sent})
        return len(got) == len(sent) and all(x["status"] in ("processed", "ignored") for x in got.values())
    wait_until(all_done, 60, what="every delivery listed and processed")
    for d, (event, action, rid, body) in sent.items():
        x = got[d]
        eq((x["id"], x["event"], x["action"], x["verified"]), (rid, event, action, True), "event %s" % d)
        eq(x["change_gating"], event == "pull_request" and action in GATING, "change_gating of %s %s" % (event, action))
        check(x["received_at"].endswith("Z") and "T" in x["received_at"], "RFC 3339 UTC time", x)
    failed = [x for x in got.values() if x["status"] != "processed" and x["event"] != "installation"]
    eq(failed, [], "subscribed events are processed")
    gating = [x for x in got.values() if x["change_gating"]]
    eq(sorted({x["action"] for x in gating}), sorted(GATING), "every change-gating action flagged")
    # one event in full: the payload as sent
    d, (event, action, rid, body) = next(iter(sent.items()))
    r = w.get("/api/github/events/" + rid)
    eq(r.status, 200, "GET /api/github/events/{id} (%r)" % r)
    eq(r.json["payload"], json.loads(body), "the stored payload is the body sent")
    # filter and pages
    prs = events(w, event="pull_request")
    check(prs and all(x["event"] == "pull_request" for x in prs), "event filter", len(prs))
    r = w.get("/api/github/events?limit=2")
    eq((r.status, len(r.json["events"])), (200, 2), "limit")
    r2 = w.get("/api/github/events?limit=2&cursor=" + r.json["next_cursor"])
    check(not {x["id"] for x in r.json["events"]} & {x["id"] for x in r2.json["events"]}, "next page differs")
    for q in ("limit=0", "limit=101", "limit=x", "cursor=bad", "event=%01"):
        r = w.get("/api/github/events?" + q)
        eq(r.status, 400, "bad query %s (%r)" % (q, r))
    eq(w.get("/api/github/events/whd_nope").status, 404, "unknown event id")
    eq(w.get("/api/github/events", auth=False).status, 401, "events API needs credentials")
    serving(w)


@test
def test_bad_deliveries_rejected_nothing_stored(t):
    w = world()
    payload = with_installation(examples(["pull_request"])[0]["payload"], BULK_ID)
    body = json.dumps(payload).encode()
    good = sign(_env["secret"], body)
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    wrong = sign("not-the-secret", body)
    cases = [
        ("flipped byte", bytes(flipped), good, (), 401),
        ("missing signature header", body, good, ("X-Hub-Signature-256",), 401),
        ("wrong secret", body, wrong, (), 401),
        ("truncated body", body[:len(body) // 2], good, (), 401),
        ("empty body", b"", good, (), 401),
        ("sha1 prefix", body, "sha1=" + good[7:47], (), 401),
        ("no prefix", body, good[7:], (), 401),
        ("short hex", body, good[:-2], (), 401),
        ("non-hex", body, "sha256=" + "zz" * 32, (), 401),
        ("empty signature", body, "", (), 401),
    ]
    before = len(db_rows(w))
    tried = []
    for name, b, sig, drop, status in cases:
        d = "bad-" + str(uuid.uuid4())
        tried.append(d)
        r = deliver(w, "pull_request", b, sig, d, drop=drop)
        eq(r.status, status, "%s refused (%r)" % (name, r))
        contains(r.get("error_code", ""), "SIGNATURE", "%s: error code" % name)
    # signed, but not what GitHub sends
    for name, b, hdrs, status in (("not JSON", b"{not json", {}, 400),
                                  ("a JSON array", b"[1,2]", {}, 400),
                                  ("form encoded", body, {"Content-Type": "application/x-www-form-urlencoded"}, 415),
                                  ("bad delivery id", body, {"X-GitHub-Delivery": "a b"}, 400),
                                  ("bad event name", body, {"X-GitHub-Event": "x" * 200}, 400)):
        d = "bad-" + str(uuid.uuid4())
        tried.append(d)
        hh = {"X-GitHub-Delivery": d}
        hh.update(hdrs)
        r = deliver(w, "pull_request", b, sign(_env["secret"], b), headers=hh)
        eq(r.status, status, "%s refused (%r)" % (name, r))
    # a request cut on the wire: Content-Length promises more than is sent
    s = socket.create_connection(("127.0.0.1", w.port), 5)
    ss = w.ctx.wrap_socket(s, server_hostname="127.0.0.1")
    ss.sendall(b"POST /github/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: cut-1\r\nX-Hub-Signature-256: " +
               good.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:100])
    ss.close()
    tried.append("cut-1")
    serving(w)
    eq(len(db_rows(w)), before, "no row written by any refused delivery")
    listed = {x["delivery_id"] for x in events(w)}
    eq([d for d in tried if d in listed], [], "none listed")
    contains(w.server.log_text(), "refused: INVALID_SIGNATURE", "refusals are logged")
    check(_env["secret"] not in w.server.log_text(), "the secret is never logged")
    # the secret being rotated out (GITHUB_APP_WEBHOOK_SECRET_PREVIOUS) still verifies
    r = send(w, "issues", with_installation(examples(["issues"])[0]["payload"], BULK_ID), _env["previous"])
    eq((r.status, r.get("duplicate")), (200, False), "previous secret during rotation (%r)" % r)
    serving(w)


@test
def test_redelivery_is_idempotent(t):
    w = world()
    payload = with_installation(examples(["workflow_run"])[0]["payload"], BULK_ID)
    d = str(uuid.uuid4())
    r1 = send(w, "workflow_run", payload, delivery=d)
    eq((r1.status, r1.get("duplicate")), (200, False), "first delivery (%r)" % r1)
    for _ in range(3):  # GitHub's "Redeliver" button sends the same id
        r = send(w, "workflow_run", payload, delivery=d)
        eq((r.status, r.get("duplicate"), r.get("id")), (200, True, r1.get("id")), "redelivery (%r)" % r)
    eq(len(by_delivery(w, d)), 1, "one event for one delivery id")
    eq(len(db_rows(w, "delivery_id = ?", (d,))), 1, "one row")
    # GitHub signs the body, not X-GitHub-Delivery: the captured signed body
    # replayed under a fresh delivery id is the same delivery, not a new one
    fresh = str(uuid.uuid4())
    r = send(w, "workflow_run", payload, delivery=fresh, body_of=d)
    eq((r.status, r.get("duplicate"), r.get("id")), (200, True, r1.get("id")),
       "a replay under a new delivery id (%r)" % r)
    eq(db_rows(w, "delivery_id = ?", (fresh,)), [], "nothing stored for the replay")


@test(timeout=120)
def test_installation_lifecycle(t):
    w = world()
    fx = _env["fx"]
    inst = with_installation(examples(["installation"])[1]["payload"], LIFE_ID)
    eq(inst["action"], "created", "the created example")
    inst["installation"]["account"]["login"] = "octo-life"
    inst["repositories"] = [{"id": 9001, "name": "alpha", "full_name": "octo-life/alpha", "private": True},
                            {"id": 9002, "name": "beta", "full_name": "octo-life/beta", "private": False}]
    created = str(uuid.uuid4())
    # installation.created arrives before the Setup URL callback binds the installation
    r = send(w, "installation", inst, delivery=created)
    eq(r.status, 200, "created, before the callback (%r)" % r)
    eq(by_delivery(w, created), [], "not visible before the installation is bound")
    eq([row[1:] for row in db_rows(w, "delivery_id = ?", (created,))], [(None, "unassigned")],
       "kept without an organization")
    fx.config(installations={**{str(i): gha.installation(i) for i in range(BULK_ID, BULK_ID + 10)},
                             str(LIFE_ID): gha.installation(LIFE_ID, login="octo-life")})
    eq(gha.install(w, LIFE_ID).status, 302, "the callback binds it")
    wait_until(lambda: [e["status"] for e in by_delivery(w, created)] == ["processed"], 10,
               what="the early delivery adopted and processed")
    i = installation_of(w, LIFE_ID)
    eq(sorted((x["full_name"], x["private"]) for x in i["repositories"]),
       [("octo-life/alpha", True), ("octo-life/beta", False)], "repositories from installation.created")
    eq((i["suspended"], i["pending"], i["removed"]), (False, False, False), "fresh installation")

    def step(action, extra=None, what=None):
        p = with_installation(inst, LIFE_ID)
        p["action"] = action
        p.pop("repositories", None)
        p.update(extra or {})
        d = str(uuid.uuid4())
        r = send(w, p.get("_event", "installation"), {k: v for k, v in p.items() if k != "_event"}, delivery=d)
        eq(r.status, 200, "%s (%r)" % (action, r))
        wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["processed"], 10, what=what or action)
        return installation_of(w, LIFE_ID)

    p = with_installation(inst, LIFE_ID)
    p["installation"]["suspended_at"] = "2026-12-01T10:00:00Z"
    i = step("suspend", {"installation": p["installation"]})
    eq((i["suspended"], i["suspended_at"]), (True, "2026-12-01T10:00:00Z"), "suspended")
    contains(w.server.log_text(), "Suspended installation %d" % LIFE_ID, "the guide's log line")
    eq(gha.repos(w, LIFE_ID).error_code, "GITHUB_INSTALLATION_SUSPENDED", "a suspended installation is not used")
    p["installation"]["suspended_at"] = None
    i = step("unsuspend", {"installation": p["installation"]})
    eq((i["suspended"], i["suspended_at"]), (False, None), "unsuspended")
    i = step("new_permissions_requested")
    eq(i["pending"], True, "new permissions pending")
    eq(gha.connectors_status(w)["pending"] >= 1, True, "connectors status counts it")
    p = with_installation(inst, LIFE_ID)
    p["installation"]["permissions"] = {"checks": "write", "pull_requests": "write", "metadata": "read"}
    p["installation"]["events"] = ["check_run", "pull_request"]
    i = step("new_permissions_accepted", {"installation": p["installation"]})
    eq((i["pending"], i["permissions"], i["events"]),
       (False, {"checks": "write", "pull_requests": "write", "metadata": "read"}, ["check_run", "pull_request"]),
       "permissions and events refreshed, pending cleared")
    # repositories added / removed
    i = step("added", {"_event": "installation_repositories", "repository_selection": "selected",
                       "repositories_added": [{"id": 9003, "name": "gamma", "full_name": "octo-life/gamma",
                                               "private": True}], "repositories_removed": []})
    eq(sorted(x["full_name"] for x in i["repositories"]), ["octo-life/alpha", "octo-life/beta", "octo-life/gamma"],
       "repository added")
    i = step("removed", {"_event": "installation_repositories", "repository_selection": "selected",
                         "repositories_added": [], "repositories_removed": [{"id": 9001, "name": "alpha",
                                                                            "full_name": "octo-life/alpha"}]})
    eq(sorted(x["full_name"] for x in i["repositories"]), ["octo-life/beta", "octo-life/gamma"], "repository removed")
    i = step("deleted")
    eq(i["removed"], True, "deleted on GitHub: marked removed")
    check(i["removed_at"], "removed_at set", i)
    # a malformed repository list is kept as a failed delivery, nothing half-applied
    d = str(uuid.uuid4())
    bad = with_installation(inst, LIFE_ID)
    bad.update(action="added", repositories_added=[{"id": "x", "full_name": "../../etc"}])
    bad.pop("repositories", None)
    eq(send(w, "installation_repositories", bad, delivery=d).status, 200, "accepted (signed by GitHub)")
    wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["failed"], 10, what="failed processing")
    serving(w)


def one_read_of_the_app_at_a_time(w, fx):
    """Listings that find the App's permissions stale while one of them is
    reading GET /app answer from the stale copy: one call to GitHub, not one per
    listing (each would hold a worker for as long as GitHub takes)."""
    fx.config(app_hold=True)
    stop, first = threading.Event(), []

    def refresher():  # lists until a listing finds the copy stale and is held at GET /app
        while not stop.is_set():
            first.append(installation_of(w, PEND_ID))

    th = threading.Thread(target=refresher, daemon=True)
    th.start()
    try:
        wait_until(lambda: fx.stats().get("app_reads_held", 0) >= 1, 15, what="a GET /app under way")
        stop.set()
        got = []
        others = [threading.Thread(target=lambda: got.append(installation_of(w, PEND_ID)), daemon=True)
                  for _ in range(4)]
        for o in others:
            o.start()
        for o in others:
            o.join(20)
        eq(len(got), 4, "listings answered while GET /app is held")
        eq([i["pending"] for i in got], [True] * 4, "from the stale copy, still pending")
        eq(fx.stats().get("app_reads_held"), 1, "one GET /app at a time")
    finally:
        stop.set()
        fx.config(app_hold=False)
        th.join(20)
    eq(th.is_alive(), False, "the held listing answered once GitHub did")


@test(timeout=120)
def test_permission_upgrade_pending_until_accepted(t):
    """connectors.md, "Upgrading permissions later": GitHub applies an App's new
    permissions to an installation only once its owner accepts them, and tells the
    App nothing when it asks (installation actions: created, deleted, suspend,
    unsuspend, new_permissions_accepted).  While the App's own permissions (GET /app)
    exceed the installation's, the installation is pending; the
    new_permissions_accepted delivery refreshes its permissions and clears it."""
    world()  # the suite's App key pair and webhook secret
    fx, trap = gha.Fixture(t), gha.Trap()  # this test's GitHub: its App's permissions change
    fx.config(public_key=_env["pub"], issuers=[gha.CLIENT_ID], app_permissions=gha.PERMS,
              installations={str(PEND_ID): gha.installation(PEND_ID, login="octo-pend")})
    w = gha.make_world(t, "pending", fx, trap, {"GITHUB_APP_PERMISSIONS_REFRESH_S": "1"}, start=False)
    os.makedirs(w.data, exist_ok=True)
    w.start()
    w.bootstrap()
    gha.secret_put(w, "aurora/system/github-app/private-key", _env["priv"])
    gha.secret_put(w, "aurora/system/github-app/webhook-secret", _env["secret"])
    eq(gha.install(w, PEND_ID).status, 302, "installation %d bound" % PEND_ID)
    eq(installation_of(w, PEND_ID)["pending"], False, "granted everything the App asks for")
    # the App's owner raises Checks to write and adds Administration: read
    more = dict(gha.PERMS, checks="write", administration="read")
    fx.config(app_permissions=more)
    wait_until(lambda: installation_of(w, PEND_ID)["pending"], 15, what="installation flagged pending")
    eq(gha.connectors_status(w)["pending"], 1, "connectors status counts it")
    contains(w.server.log_text(), "installation %d (octo-pend) has not accepted the App's new permissions"
             % PEND_ID, "logged")
    check(fx.stats().get("app_reads", 0) >= 2, "the App's permissions read with the App JWT", fx.stats())
    one_read_of_the_app_at_a_time(w, fx)
    # the owner clicks Accept new permissions: GitHub sends new_permissions_accepted
    p = with_installation(examples(["installation"])[1]["payload"], PEND_ID)
    p["action"] = "new_permissions_accepted"
    p.pop("repositories", None)
    p["installation"].update(permissions=more, events=gha.EVENTS)
    p["installation"]["account"]["login"] = "octo-pend"
    d = str(uuid.uuid4())
    eq(send(w, "installation", p, delivery=d).status, 200, "new_permissions_accepted delivered")
    wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["processed"], 10, what="processed")
    i = installation_of(w, PEND_ID)
    eq((i["pending"], i["permissions"]), (False, more), "permissions refreshed, pending cleared")
    eq(gha.connectors_status(w)["pending"], 0, "nothing pending")
    a_failed_read_of_the_app_keeps_the_last_copy(w, fx, more)
    serving(w)


def a_failed_read_of_the_app_keeps_the_last_copy(w, fx, more):
    """GitHub failing GET /app leaves the last copy of the App's permissions
    in use: an installation that now has less than the App asks for is still
    found pending (checking nothing until GitHub answers again would leave it
    unflagged)."""
    def app_reads():
        return sum(1 for r in fx.stats()["requests"] if r["method"] == "GET" and r["path"].endswith("/app"))

    # from now on GitHub answers GET /app with an error; listings go on until
    # one has found the copy stale and read it (and failed)
    n0 = app_reads()
    fx.ctl("/_fixture/override", {"match": "/app", "method": "GET", "status": 500,
                                  "body": '{"message": "Server Error"}', "count": 100000})
    wait_until(lambda: installation_of(w, PEND_ID) and app_reads() > n0, 15, what="a failed GET /app")
    # then the installation's permissions fall back to the older set (a signed
    # delivery says so), while the App still asks for `more`
    p = with_installation(examples(["installation"])[1]["payload"], PEND_ID)
    p["action"] = "new_permissions_accepted"
    p.pop("repositories", None)
    p["installation"].update(permissions=gha.PERMS, events=gha.EVENTS)
    p["installation"]["account"]["login"] = "octo-pend"
    d = str(uuid.uuid4())
    eq(send(w, "installation", p, delivery=d).status, 200, "older permissions delivered")
    wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["processed"], 10, what="processed")
    wait_until(lambda: installation_of(w, PEND_ID)["pending"], 15,
               what="pending found against the last copy while GET /app fails")
    check(app_reads() > n0, "GET /app failing meanwhile", fx.stats()["requests"][-3:])
    contains(w.server.log_text(), "GET /app answered HTTP 500 without the App's permissions",
             "the failed read logged")


@test
def test_unsubscribed_events_accepted_and_ignored(t):
    w = world()
    star = with_installation(examples(["star"])[0]["payload"], BULK_ID)
    d = str(uuid.uuid4())
    r = send(w, "star", star, delivery=d)
    eq(r.status, 200, "star accepted (%r)" % r)
    wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["ignored"], 10, what="star ignored")
    for p in examples(["ping"]):  # the App's ping names no installation
        d = str(uuid.uuid4())
        r = send(w, "ping", p["payload"], delivery=d)
        eq((r.status, r.get("ok")), (200, True), "ping answered 2xx (%r)" % r)
        eq(by_delivery(w, d), [], "a ping belongs to no organization")
    serving(w)


@test
def test_other_org_cannot_see_events(t):
    w = world()
    org_b, _, key_b = w.new_org()
    eq(gha.install(w, OTHER_ID, key=key_b).status, 302, "org B binds its own installation")
    da, db = str(uuid.uuid4()), str(uuid.uuid4())
    pa = with_installation(examples(["issues"])[1]["payload"], BULK_ID)
    pb = with_installation(examples(["issues"])[2]["payload"], OTHER_ID)
    ra, rb = send(w, "issues", pa, delivery=da), send(w, "issues", pb, delivery=db)
    eq((ra.status, rb.status), (200, 200), "both delivered")
    mine_b = {x["delivery_id"] for x in events(w, key=key_b)}
    eq(mine_b, {db}, "org B sees only its own installation's events")
    check(db not in {x["delivery_id"] for x in events(w)}, "the suite org does not see org B's event")
    r = w.get("/api/github/events/" + ra.get("id"), key=key_b)
    eq((r.status, r.error_code), (404, "EVENT_NOT_FOUND"), "another org's event by id (%r)" % r)
    eq(w.get("/api/github/events/" + rb.get("id"), key=key_b).status, 200, "its own event by id")


@test(timeout=120)
def test_secret_rotation_and_unconfigured(t):
    world()  # the fixture and keys
    # no secret anywhere: 401 with the message naming both places, nothing stored
    w = start_world(t, "nosecret")
    eq(gha.install(w, OTHER_ID + 5).status, 302, "installation bound")
    p = with_installation(examples(["issues"])[0]["payload"], OTHER_ID + 5)
    r = send(w, "issues", p, secret="anything")
    eq((r.status, r.error_code), (401, "WEBHOOK_SECRET_NOT_CONFIGURED"), "no secret configured (%r)" % r)
    contains(r.get("error"), "aurora/system/github-app/webhook-secret", "message names the secret's path")
    eq(db_rows(w), [], "nothing stored")
    # the secret written to the backend (the guide's Step 3) is picked up without a restart
    s1, s2 = "whsec-one-" + rand_tag(12), "whsec-two-" + rand_tag(12)
    gha.secret_put(w, "aurora/system/github-app/webhook-secret", s1)
    wait_until(lambda: send(w, "issues", p, secret=s1).status == 200, 10, what="first secret in use")
    # rotation: the new value replaces the old one (GITHUB_APP_KEY_REFRESH_S=1)
    gha.secret_put(w, "aurora/system/github-app/webhook-secret", s2)
    wait_until(lambda: send(w, "issues", p, secret=s2).status == 200, 10, what="new secret in use")
    r = send(w, "issues", p, secret=s1)
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "the replaced secret is refused (%r)" % r)
    check(s1 not in w.server.log_text() and s2 not in w.server.log_text(), "no secret in the log")
    serving(w)


@test(timeout=120)
def test_backend_secret_fixes_deliveries_with_the_setting_also_set(t):
    """The guide has the webhook secret written to the secrets backend (Step 3)
    and set as GITHUB_APP_WEBHOOK_SECRET (Step 4, Helm config:), and its
    troubleshooting says: deliveries fail with 4xx -> rewrite the secret at
    aurora/system/github-app/webhook-secret.  With the setting also set, the
    backend's value was never read, so that fix changed nothing.  Both verify;
    a third value does not; the log says that they differ, never what they are."""
    world()  # the fixture and keys
    env_secret = "whsec-env-" + rand_tag(12)
    w = start_world(t, "both", {"GITHUB_APP_WEBHOOK_SECRET": env_secret})
    eq(gha.install(w, OTHER_ID + 6).status, 302, "installation bound")
    p = with_installation(examples(["issues"])[0]["payload"], OTHER_ID + 6)
    eq(send(w, "issues", p, secret=env_secret).status, 200, "the setting's secret verifies")
    # the operator follows the troubleshooting row: the App's secret rewritten in the backend
    fixed = "whsec-fixed-" + rand_tag(12)
    gha.secret_put(w, "aurora/system/github-app/webhook-secret", fixed)
    wait_until(lambda: send(w, "issues", p, secret=fixed).status == 200, 10,
               what="the backend's secret verifies with GITHUB_APP_WEBHOOK_SECRET also set")
    eq(send(w, "issues", p, secret=env_secret).status, 200, "the setting's secret still verifies")
    r = send(w, "issues", p, secret="whsec-other-" + rand_tag(12))
    eq((r.status, r.error_code), (401, "INVALID_SIGNATURE"), "any other secret refused (%r)" % r)
    log = w.server.log_text()
    contains(log, "GITHUB_APP_WEBHOOK_SECRET and aurora/system/github-app/webhook-secret differ",
             "the log says both are set and differ")
    check(env_secret not in log and fixed not in log, "no secret in the log")
    serving(w)


@test(timeout=600)
def test_new_installation_adopted_behind_unassignable_backlog(t):
    """Deliveries that will never be assigned (GitHub's pings, an installation
    nobody binds) pile up without an organization.  An installation bound
    after thousands of them still gets its installation.created (sent before
    the Setup URL callback): adopted, its repositories recorded, shown by the
    events API.  Then the retention deletes the unassignable rows that
    expired, and only those."""
    world()  # the fixture and keys
    fx = _env["fx"]
    secret = "whsec-late-" + rand_tag(12)
    w = start_world(t, "late", {"GITHUB_APP_WEBHOOK_SECRET": secret})
    junk = 5100  # more than the 5000 oldest unassigned rows adoption used to read
    bodies = [json.dumps({"action": "completed", "aurora_test_delivery": i,
                          "check_run": {"id": 7000000 + i, "status": "completed"},
                          "installation": {"id": NEVER_ID}}).encode() for i in range(junk)]
    statuses = deliver_many(w, "check_run", bodies, sign_many(secret, bodies))
    eq({s: statuses.count(s) for s in set(statuses)}, {200: junk}, "every delivery accepted")
    pings = examples(["ping"])
    for p in pings:
        eq(send(w, "ping", p["payload"], secret=secret).status, 200, "a ping (no installation)")
    waiting = junk + len(pings)
    eq(len(db_rows(w, "org_id IS NULL")), waiting, "all of them kept without an organization")

    inst = with_installation(examples(["installation"])[1]["payload"], LATE_ID)
    eq(inst["action"], "created", "the created example")
    inst["installation"]["account"]["login"] = "octo-late"
    inst["repositories"] = [{"id": 9501, "name": "late", "full_name": "octo-late/late", "private": True}]
    created = str(uuid.uuid4())
    eq(send(w, "installation", inst, secret=secret, delivery=created).status, 200,
       "installation.created, before the callback")
    eq([row[1:] for row in db_rows(w, "delivery_id = ?", (created,))], [(None, "unassigned")],
       "kept without an organization, behind %d others" % waiting)
    fx.config(installations={**{str(i): gha.installation(i) for i in range(BULK_ID, BULK_ID + 10)},
                             str(LATE_ID): gha.installation(LATE_ID, login="octo-late")})
    t0 = time.monotonic()
    eq(gha.install(w, LATE_ID).status, 302, "the callback binds it")
    wait_until(lambda: [e["status"] for e in by_delivery(w, created)] == ["processed"], 30,
               what="the early installation.created adopted and processed")
    print("adopted %.2fs after the callback started, %d unassigned rows in front"
          % (time.monotonic() - t0, waiting))
    eq([e["event"] + "." + e["action"] for e in by_delivery(w, created)], ["installation.created"],
       "the events API shows it")
    eq([(x["full_name"], x["private"]) for x in installation_of(w, LATE_ID)["repositories"]],
       [("octo-late/late", True)], "its repositories recorded")
    eq(len(db_rows(w, "org_id IS NULL")), waiting, "the others still wait")

    # Retention (AURORA_WEBHOOK_UNASSIGNED_RETENTION_DAYS, 30 by default): 300
    # unassignable rows made 31 days old; the sweep (every 20 s) deletes them.
    old = int(time.time()) - 31 * 86400
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=30)
    con.execute("UPDATE webhook_deliveries SET received_at = ?, received_seq = ? * 1000000 + rowid"
                " WHERE id IN (SELECT id FROM webhook_deliveries WHERE org_id IS NULL"
                " ORDER BY received_seq LIMIT 300)", (old, old))
    con.execute("UPDATE webhook_deliveries SET received_at = ?, received_seq = ? * 1000000"
                " WHERE delivery_id = ?", (old, old, created))  # assigned: kept, however old
    con.commit()
    con.close()
    wait_until(lambda: len(db_rows(w, "org_id IS NULL")) == waiting - 300, 60, 0.2,
               "the sweep to delete the expired unassigned rows")
    eq(len(db_rows(w, "delivery_id = ?", (created,))), 1, "an assigned delivery is not pruned")
    contains(w.server.log_text(), "300 deliveries still without an organization after 30 days deleted",
             "the sweep says so")
    serving(w)


@test(timeout=180)
def test_kill9_right_after_2xx_delivery_survives(t):
    world()  # the fixture and keys
    secret = "whsec-kill-" + rand_tag(12)
    w = start_world(t, "kill", {"GITHUB_APP_WEBHOOK_SECRET": secret})
    eq(gha.install(w, KILL_ID).status, 302, "installation bound")
    p = with_installation(examples(["installation"])[5]["payload"], KILL_ID)
    eq(p["action"], "suspend", "the suspend example")
    d = str(uuid.uuid4())
    r = send(w, "installation", p, secret=secret, delivery=d)
    eq(r.status, 200, "delivered (%r)" % r)
    w.kill9()  # right after the 2xx
    rows = db_rows(w, "delivery_id = ?", (d,))
    eq(len(rows), 1, "the delivery is in the database after kill -9")
    # the crash may have come before its processing: make it so, then restart
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    con.execute("UPDATE webhook_deliveries SET status = 'received', processed_at = 0, next_attempt_at = 0"
                " WHERE delivery_id = ?", (d,))
    con.execute("UPDATE github_installations SET suspended_at = 0 WHERE installation_id = ?", (KILL_ID,))
    con.commit()
    con.close()
    w.restart()
    wait_until(lambda: [e["status"] for e in by_delivery(w, d)] == ["processed"], 30,
               what="the recovery sweep processes it after the restart")
    eq(installation_of(w, KILL_ID)["suspended"], True, "its effect applied by the sweep")
    # the sweep logs its count once its batch is done, after each row turned processed
    wait_until(lambda: "recovery sweep processed 1" in w.server.log_text(), 10, 0.05,
               "the sweep to say so")
    # and a burst: every delivery that got a 2xx is there after a kill -9
    ids = []
    for i in range(20):
        d = str(uuid.uuid4())
        r = send(w, "check_suite", with_installation(examples(["check_suite"])[i % 9]["payload"], KILL_ID),
                 secret=secret, delivery=d)
        eq(r.status, 200, "burst delivery %d" % i)
        ids.append(d)
    w.kill9()
    have = {row[0] for row in db_rows(w)}
    eq([d for d in ids if d not in have], [], "every acknowledged delivery survived")
    # a delivery claimed by the dead process is retried once its claim's lease
    # (KIT_WH_CLAIM_LEASE_S, 300 s) has passed: let that time pass
    con = sqlite3.connect(os.path.join(w.data, "aurora.db"), timeout=10)
    # (a claim's next_attempt_at is its claim time: the sweep reads that)
    con.execute("UPDATE webhook_deliveries SET claimed_at = claimed_at - 301,"
                " next_attempt_at = next_attempt_at - 301 WHERE status = 'processing'")
    con.commit()
    con.close()
    w.restart()
    wait_until(lambda: all(e["status"] == "processed" for e in events(w) if e["delivery_id"] in ids) and
               len([e for e in events(w) if e["delivery_id"] in ids]) == 20, 30, what="all processed")


if __name__ == "__main__":
    main()
