#!/usr/bin/env python3
"""Token rotation (POST /api/kubectl/tokens with an existing cluster_id keeps the
cluster's id, connection and history; the old token is revoked on its own) and the
audit log read back (GET /api/audit: org-scoped, filters, cursor pages), with their
bad inputs: another org's cluster, malformed ids, times and cursors."""

import os
import time
import urllib.parse

from harness import check, contains, eq, main, suite_world, test, wait_until


def world():
    return suite_world()


@test(timeout=120)
def rotation_keeps_the_cluster_and_both_tokens_work(t):
    w = world()
    first = w.create_token("rotating-%d" % os.getpid())
    cid = first["cluster_id"]
    eq(first.get("rotated"), False, "a first token is not a rotation")
    eq(first.get("ws_url"), "wss://127.0.0.1:%d/kubectl-agent" % w.port, "ws_url from Host")
    a1 = w.start_agent(first["token"])
    w.wait_connection(cid)
    eq(w.kubectl(cid, ["version", "--client"]).status, 200, "command with the first token")

    r = w.post("/api/kubectl/tokens", {"cluster_id": cid})
    eq(r.status, 201, "rotation (%r)" % r)
    second = r.json
    eq(second["cluster_id"], cid, "same cluster id")
    check(second["token_id"] != first["token_id"], "a new token id")
    check(second["token"] != first["token"], "a new token")
    eq(second.get("cluster_name"), first["cluster_name"], "name kept when not given")
    eq(second.get("rotated"), True, "rotation flagged")
    cmd = second.get("helm_command") or ""
    contains(cmd, "helm upgrade --install aurora-kubectl-agent ./chart/agent", "helm command")
    contains(cmd, "aurora.agentToken=%s" % second["token"], "token in the command")
    contains(cmd, "aurora.wsEndpoint=wss://127.0.0.1:%d/kubectl-agent" % w.port, "endpoint")

    a2 = w.start_agent(second["token"])
    # Both sessions serve the same cluster; then the old token goes.
    r = w.revoke_token(first["token_id"])
    check(r.status in (200, 204), "revoke the old token (%r)" % r)
    wait_until(lambda: not a1.proc.alive() or "revoked" in a1.log().lower(), 20, 0.1,
               "the old agent told its token is revoked")
    eq(w.kubectl(cid, ["version", "--client"]).status, 200, "command with the rotated token")
    conns = [c for c in w.connections() if c.get("cluster_id") == cid]
    eq(len(conns), 1, "still one connection for the cluster")
    toks = w.get("/api/kubectl/tokens").json["tokens"]
    mine = [x for x in toks if x.get("cluster_id") == cid]
    eq(len(mine), 2, "both tokens listed under the cluster")
    a2.proc.kill9()


@test
def rotation_of_another_orgs_cluster_is_404_and_creates_nothing(t):
    w = world()
    tok = w.create_token("owned-by-a")
    org_b, _, key_b = w.new_org()
    before = w.get("/api/kubectl/tokens", key=key_b).json["tokens"]
    r = w.post("/api/kubectl/tokens", {"cluster_id": tok["cluster_id"]}, key=key_b)
    eq(r.status, 404, "another org's cluster")
    eq(r.error_code, "CLUSTER_NOT_FOUND", "error code")
    after = w.get("/api/kubectl/tokens", key=key_b).json["tokens"]
    eq(len(after), len(before), "no token created in org B")
    r = w.post("/api/kubectl/tokens", {"cluster_id": "cluster-0000000000000000"})
    eq(r.status, 404, "unknown cluster in own org")


@test
def rotation_bad_input(t):
    w = world()
    for body, what in (({"cluster_id": 12}, "number"), ({"cluster_id": ["x"]}, "array"),
                       ({"cluster_id": "x" * 200}, "too long"),
                       ({"cluster_id": "cluster-\u0001"}, "control char")):
        r = w.post("/api/kubectl/tokens", body)
        eq(r.status, 400, "cluster_id %s" % what)
    eq(w.get("/health", auth=False).status, 200, "still serving")


def audit(w, key=None, **q):
    path = "/api/audit"
    if q:
        path += "?" + urllib.parse.urlencode(q)
    return w.get(path, key=key)


@test(timeout=120)
def audit_filters_pages_and_is_org_scoped(t):
    w = world()
    org_b, user_b, key_b = w.new_org()
    tok, agent = w.new_connected_agent()
    cid = tok["cluster_id"]
    t0 = int(time.time())
    for i in range(5):
        eq(w.kubectl(cid, ["version", "--client"]).status, 200, "command %d" % i)
    # A refused command (unknown cluster) is not audited under this cluster.
    # A command's row is completed on a worker after its answer: wait for it.
    def completed():
        r = audit(w, cluster_id=cid)
        eq(r.status, 200, "GET /api/audit")
        es = r.json["entries"]
        return es if len(es) == 5 and all(e["outcome"] != "started" for e in es) else None
    entries = wait_until(completed, 20, 0.05, "five completed audit rows")
    eq(len(entries), 5, "five commands on this cluster")
    for e in entries:
        eq(e["cluster_id"], cid, "cluster filter")
        eq(e["kind"], "kubectl", "kind")
        eq(e["argv"], ["kubectl", "version", "--client"], "argv")
        eq(e["outcome"], "ok", "outcome")
        eq(e["return_code"], 0, "return code")
    check(entries[0]["id"] > entries[-1]["id"], "newest first")
    # Pages of 2 walk the same five rows, each once.
    seen, cursor = [], None
    for _ in range(5):
        q = {"cluster_id": cid, "limit": 2}
        if cursor:
            q["cursor"] = cursor
        page = audit(w, **q).json
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    eq(seen, [e["id"] for e in entries], "pages cover every row once, in order")
    # Filters by user, outcome and time.
    eq(len(audit(w, cluster_id=cid, user_id=w.user_id).json["entries"]), 5, "user filter")
    eq(len(audit(w, cluster_id=cid, user_id="usr_nobody").json["entries"]), 0, "other user")
    eq(len(audit(w, cluster_id=cid, outcome="failed").json["entries"]), 0, "outcome filter")
    eq(len(audit(w, cluster_id=cid, since=t0 - 1).json["entries"]), 5, "since (Unix seconds)")
    eq(len(audit(w, cluster_id=cid, until="2000-01-01T00:00:00Z").json["entries"]), 0,
       "until (RFC 3339)")
    # The operator's command: the same rows, filters and cursor.
    d = w.admin("audit", "--org", w.org_id, "--cluster-id", cid, "--limit", "3")
    eq([e["id"] for e in d["entries"]], [e["id"] for e in entries[:3]], "admin audit page 1")
    d2 = w.admin("audit", "--org", w.org_id, "--cluster-id", cid, "--cursor", d["next_cursor"])
    eq([e["id"] for e in d2["entries"]], [e["id"] for e in entries[3:]], "admin audit page 2")
    eq(d2["next_cursor"], None, "last page")
    every = w.admin("audit", "--cluster-id", cid, "--since", str(t0 - 1))
    eq(len(every["entries"]), 5, "without --org: every organization")
    eq(every["entries"][0]["org_id"], w.org_id, "each entry names its org")
    for bad in (["--limit", "0"], ["--since", "yesterday"], ["--cursor", "x"],
                ["--until", "1", "--since", "2"]):
        r = w.admin("audit", *bad, expect_ok=False)
        eq(r.get("_rc"), 2, "admin audit %s is a usage error" % " ".join(bad))
    # Wrong tenant: org B sees none of org A's rows, even naming the cluster.
    rb = audit(w, key=key_b, cluster_id=cid)
    eq(rb.status, 200, "org B reads its own audit")
    eq(rb.json["entries"], [], "nothing of org A")
    agent.proc.kill9()


@test
def audit_bad_input(t):
    w = world()
    cases = [({"limit": 0}, "limit 0"), ({"limit": 501}, "limit too big"),
             ({"limit": "x"}, "limit text"), ({"cursor": "nodot"}, "cursor without dot"),
             ({"cursor": "1.x"}, "cursor not numeric"), ({"since": "yesterday"}, "since"),
             ({"until": "2026-13-45T00:00:00Z"}, "until"),
             ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until<since"),
             ({"cluster_id": "a b"}, "cluster_id with a space"),
             ({"outcome": "x" * 300}, "outcome too long")]
    for q, what in cases:
        r = audit(w, **q)
        eq(r.status, 400, "audit %s (%r)" % (what, r))
    eq(w.get("/api/audit", auth=False).status, 401, "no key")
    eq(w.get("/health", auth=False).status, 200, "still serving")


if __name__ == "__main__":
    main()
