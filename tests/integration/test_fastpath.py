#!/usr/bin/env python3
"""The fast path's behaviour (issue 14, docs/performance.md), not its speed.

audit_ends_batched_v2_and_legacy — commands at concurrency 12 through a v2 agent and
through a legacy agent: every command answers 200 with its own output, and every one
of their audit rows gets its own final outcome (ends are written in batches now, one
transaction for many rows; each row must still get its own end).  Waited for with a
deadline, never a sleep.

db_sync_normal_keeps_behaviour — a server with AURORA_DB_SYNC=normal (no fsync per
commit) runs commands and completes their audit rows like the default; the setting
survives a restart of the server (rows written before are still there).

db_sync_bad_value_refused — AURORA_DB_SYNC=sometimes: the server refuses to start,
exit status 2, and names the setting.

Real peers: build/asan/aurora-server and aurora-agent, the legacy agent fixture,
kubectl against the kube API fixture."""

import os
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from harness import SERVER_BIN, _base_env, check, contains, eq, main, rand_tag, test, wait_until

N = 24
CONC = 12


def completed_rows(w, cid, n):
    """The audit rows of cluster cid once n of them have a final outcome."""
    def done():
        r = w.get("/api/audit?" + urllib.parse.urlencode({"cluster_id": cid, "limit": 100}))
        eq(r.status, 200, "GET /api/audit")
        es = r.json["entries"]
        return es if len(es) == n and all(e["outcome"] != "started" for e in es) else None
    return wait_until(done, 60, 0.05, "%d completed audit rows of %s" % (n, cid))


def run_many(w, cid, texts, command_form=False):
    def one(text):
        if command_form:
            return w.kubectl(cid, command="get --raw /fixture/echo?text=%s" % text)
        return w.kubectl(cid, args=["get", "--raw", "/fixture/echo?text=%s" % text])
    with ThreadPoolExecutor(CONC) as ex:
        results = list(ex.map(one, texts))
    for text, r in zip(texts, results):
        eq(r.status, 200, "command %s (%r)" % (text, r))
        eq(r.get("output"), text, "output of %s" % text)
        eq(r.get("return_code"), 0, "return code of %s" % text)


@test(timeout=240)
def audit_ends_batched_v2_and_legacy(t):
    w = t.world()
    tok, _agent = w.new_connected_agent(cluster_name="fast-v2")
    texts = ["v2-%02d-%s" % (i, rand_tag(4)) for i in range(N)]
    run_many(w, tok["cluster_id"], texts)
    rows = completed_rows(w, tok["cluster_id"], N)
    for e in rows:
        eq(e["outcome"], "ok", "outcome of audit row %s" % e["id"])
        eq(e["return_code"], 0, "return code of audit row %s" % e["id"])
        check(e.get("ended_at"), "audit row %s has an end time" % e["id"], e)
    seen = sorted(e["argv"][-1] for e in rows)
    eq(seen, sorted("/fixture/echo?text=%s" % x for x in texts), "one row per command, its own argv")

    ltok = w.create_token("fast-legacy")
    la = w.legacy_agent(ltok["token"], ["--heartbeat", "1"])
    la.wait_event("connected", 30)
    w.wait_connection(ltok["cluster_id"])
    ltexts = ["lg-%02d-%s" % (i, rand_tag(4)) for i in range(N)]
    run_many(w, ltok["cluster_id"], ltexts, command_form=True)
    lrows = completed_rows(w, ltok["cluster_id"], N)
    for e in lrows:
        eq(e["outcome"], "ok", "outcome of legacy audit row %s" % e["id"])


@test(timeout=180)
def db_sync_normal_keeps_behaviour(t):
    w = t.world(extra_env={"AURORA_DB_SYNC": "normal"})
    tok, _agent = w.new_connected_agent(cluster_name="fast-normal")
    cid = tok["cluster_id"]
    texts = ["n-%02d-%s" % (i, rand_tag(4)) for i in range(8)]
    run_many(w, cid, texts)
    completed_rows(w, cid, len(texts))
    # A clean restart keeps every row (the WAL is checkpointed or replayed).
    eq(w.server.stop(), [], "clean stop of the server")
    w.restart()
    w.wait_connection(cid)
    rows = completed_rows(w, cid, len(texts))
    eq(sorted(e["argv"][-1] for e in rows), sorted("/fixture/echo?text=%s" % x for x in texts),
       "rows after the restart")


@test(timeout=60)
def db_sync_bad_value_refused(t):
    d = os.path.join(t.tmp, "badsync")
    os.makedirs(d, exist_ok=True)
    env = _base_env(os.path.join(d, "home"))
    env.update({"AURORA_DATA_DIR": os.path.join(d, "data"), "AURORA_PORT": "0",
                "AURORA_BIND": "127.0.0.1", "AURORA_DB_SYNC": "sometimes",
                "ASAN_OPTIONS": "detect_leaks=0"})
    r = subprocess.run([SERVER_BIN, "serve"], env=env, cwd=d, capture_output=True, timeout=30)
    eq(r.returncode, 2, "exit status on a bad AURORA_DB_SYNC (stderr %r)" % r.stderr[-300:])
    contains(r.stderr.decode("utf-8", "replace"), "AURORA_DB_SYNC must be 'full' or 'normal'",
             "the error names the setting")


if __name__ == "__main__":
    main()
