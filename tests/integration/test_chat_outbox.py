#!/usr/bin/env python3
"""test_chat_outbox.py — the chat outbox's internal routes (kit_chat.c):
POST /internal/chat/messages (a reply in an incident's thread or in a named
thread) and GET /internal/chat/messages, with every bad input, org scoping
and the rule that an organization with no chat connected gets nothing
queued.  Delivery to real chat peers is tested with each chat connector
(test_slack.py, test_google_chat.py); the outbox's order, leases and
retries row by row in tests/unit/test_chat_outbox.c.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (check, contains, eq, https_request, main, rand_tag,  # noqa: E402
                     suite_world, test)


def post(w, org, body, secret=None, raw=None):
    h = {"X-Internal-Secret": w.secret if secret is None else secret}
    if org is not None:
        h["X-Org-ID"] = org
    return https_request(w.port, w.ctx, "POST", "/internal/chat/messages",
                         raw if raw is not None else body, h)


def listing(w, org=None, query=""):
    h = {"X-Internal-Secret": w.secret}
    if org:
        h["X-Org-ID"] = org
    return https_request(w.port, w.ctx, "GET", "/internal/chat/messages" + query, None, h)


def new_incident(w, org):
    a = {"source": "grafana", "delivery_id": "chat-%s" % rand_tag(10), "index": 0,
         "fingerprint": "fp-" + rand_tag(), "state": "firing", "title": "Disk full",
         "service": "db", "severity": "high", "occurred_at": "2026-11-02T10:00:00Z"}
    r = https_request(w.port, w.ctx, "POST", "/internal/incidents/alerts", a,
                      {"X-Internal-Secret": w.secret, "X-Org-ID": org})
    eq(r.get("result"), "created", "incident created (%r)" % r)
    return r.json["incident_id"]


@test
def test_no_chat_connected_nothing_queued(t):
    w = suite_world()
    org, _, _ = w.new_org()
    inc = new_incident(w, org)
    r = listing(w, org)
    eq((r.status, r.json["messages"]), (200, []), "nothing queued without a chat (%r)" % r)
    # A reply to that incident is accepted and goes nowhere: it was announced nowhere.
    r = post(w, org, {"incident_id": inc, "text": "Root cause: disk filled by logs"})
    eq((r.status, r.get("queued")), (202, 0), "reply with no chat (%r)" % r)
    eq(listing(w, org).json["messages"], [], "still nothing queued")


@test
def test_auth_and_org_required(t):
    w = suite_world()
    org, _, key = w.new_org()
    inc = new_incident(w, org)
    eq(post(w, org, {"incident_id": inc, "text": "x"}, secret="wrong").status, 401,
       "wrong internal secret")
    r = w.post("/internal/chat/messages", {"incident_id": inc, "text": "x"}, key=key)
    eq(r.status, 401, "an API key is not the internal secret (%r)" % r)
    r = post(w, None, {"incident_id": inc, "text": "x"})
    eq((r.status, r.get("error_code")), (400, "ORG_REQUIRED"), "no X-Org-ID (%r)" % r)


@test
def test_bad_input(t):
    w = suite_world()
    org, _, _ = w.new_org()
    inc = new_incident(w, org)
    cases = [
        ({"incident_id": inc}, 400, "text is required"),
        ({"incident_id": inc, "text": ""}, 400, "text is required"),
        ({"incident_id": inc, "text": 5}, 400, "text must be a string"),
        ({"incident_id": 7, "text": "x"}, 400, "incident_id must be a string"),
        ({"text": "x"}, 400, "either incident_id"),
        ({"incident_id": inc, "connector": "slack", "channel": "C1", "thread": "1.2",
          "text": "x"}, 400, "either incident_id"),
        ({"connector": "slack", "channel": "C1", "text": "x"}, 400, "either incident_id"),
        ({"connector": "github", "channel": "C1", "thread": "1.2", "text": "x"}, 400,
         "not a chat connector"),
        ({"incident_id": "inc_" + "0" * 24, "text": "x"}, 404, "no such incident"),
        ({"incident_id": "x" * 65, "text": "x"}, 404, "no such incident"),
    ]
    for body, status, msg in cases:
        r = post(w, org, body)
        eq(r.status, status, "status for %r (%r)" % (body, r))
        contains(r.get("error", ""), msg, "message for %r" % body)
    for raw, what in ((b"{", "truncated JSON"), (b"[]", "not an object"),
                      (b"\xff\xfe", "not UTF-8")):
        r = post(w, org, None, raw=raw)
        eq(r.status, 400, "%s (%r)" % (what, r))
    r = post(w, org, None, raw=b'{"incident_id":"%s","text":"%s"}' % (
        inc.encode(), b"a" * (2 * 1024 * 1024)))
    eq(r.status, 413, "oversized body (%r)" % r)
    # The server still serves, and nothing was queued by any of it.
    eq(listing(w, org).json["messages"], [], "nothing queued by bad input")


@test
def test_other_orgs_incident_is_not_found(t):
    w = suite_world()
    org_a, _, _ = w.new_org()
    org_b, _, _ = w.new_org()
    inc = new_incident(w, org_a)
    r = post(w, org_b, {"incident_id": inc, "text": "leak"})
    eq((r.status, r.get("error_code")), (404, "NOT_FOUND"), "another org's incident (%r)" % r)


@test
def test_list_filters(t):
    w = suite_world()
    org, _, _ = w.new_org()
    for q, msg in (("?status=bogus", "status must be"), ("?limit=0", "limit must be"),
                   ("?limit=501", "limit must be"), ("?limit=x", "limit must be"),
                   ("?status=" + "p" * 40, "status must be")):
        r = listing(w, org, q)
        eq(r.status, 400, "list %s (%r)" % (q, r))
        contains(r.get("error", ""), msg, "list %s message" % q)
    r = listing(w, org, "?status=pending&limit=5")
    eq((r.status, r.json["messages"]), (200, []), "empty filtered list")
    check(w.get("/health", auth=False).status == 200, "server still serving")


if __name__ == "__main__":
    main()
