#!/usr/bin/env python3
"""High availability: two agent replicas for one cluster (the same token).

Both connect and the server keeps both (the connection shows agents: 2);
concurrent commands are spread across them; when one replica dies (kill -9)
while running long commands, exactly its in-flight commands fail at once with
502 AGENT_DISCONNECTED, the other replica's commands complete, and new
commands go to the survivor.

Real peers: build/asan/aurora-server and two build/asan/aurora-agent
processes, /usr/bin/kubectl against the kube API fixture (/fixture/sleep)."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (check, contains, eq, main, procs_matching, rand_tag, suite_world, test,
                     wait_until)


def metrics(agent):
    status, body = agent.health("/metrics")
    eq(status, 200, "GET /metrics of %s" % agent.proc.name)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def ran(agent):
    m = metrics(agent)
    return int(sum(v for k, v in m.items() if k.startswith("aurora_agent_commands_total{")
                   and ('result="success"' in k or 'result="failure"' in k)))


def two_replicas(t, w, name):
    tok = w.create_token(name)
    a = w.start_agent(tok["token"], name="%s-a" % name)
    b = w.start_agent(tok["token"], name="%s-b" % name)
    cid = tok["cluster_id"]
    wait_until(lambda: (w.connection(cid) or {}).get("agents") == 2, 30, 0.1,
               "the connection to show 2 agents")
    eq(w.connection(cid).get("status"), "active", "connection status")
    return cid, a, b


@test(timeout=60)
def both_replicas_connect_and_share_the_work(t):
    w = suite_world()
    cid, a, b = two_replicas(t, w, "ha-share")
    tag = rand_tag(4)

    def one(i):
        return w.kubectl(cid, args=["get", "--raw", "/fixture/sleep/1/%s-%d" % (tag, i)], timeout=30)

    with ThreadPoolExecutor(20) as ex:
        rs = list(ex.map(one, range(20)))
    for r in rs:
        eq(r.status, 200, "command status (%r)" % r)
        eq(r.json.get("return_code"), 0, "return_code (%r)" % r.json)
        eq(r.json.get("output"), "slept 1", "output")
    na, nb = ran(a), ran(b)
    t.note("20 concurrent commands: %d on replica a, %d on replica b" % (na, nb))
    eq(na + nb, 20, "every command ran on one of the replicas")
    check(na > 0 and nb > 0, "both replicas must get commands (a=%d, b=%d)" % (na, nb))


@test(timeout=120)
def killed_replica_fails_its_commands_survivor_takes_over(t):
    w = suite_world()
    cid, a, b = two_replicas(t, w, "ha-kill")
    tag = rand_tag(4)
    t.defer(lambda: [os.kill(pid, signal.SIGKILL) for pid, _ in procs_matching(tag)])

    def long_cmd(i):
        t0 = time.monotonic()
        # 20 s: still running through the set-up and the checks after the
        # kill, however loaded the machine
        r = w.kubectl(cid, args=["get", "--raw", "/fixture/sleep/20/%s-%d" % (tag, i)], timeout=60)
        return r, time.monotonic()

    ex = ThreadPoolExecutor(6)
    futs = [ex.submit(long_cmd, i) for i in range(6)]
    wait_until(lambda: metrics(a).get("aurora_agent_commands_in_flight", 0)
               + metrics(b).get("aurora_agent_commands_in_flight", 0) == 6, 15, 0.1,
               "6 commands in flight")
    on_a = int(metrics(a)["aurora_agent_commands_in_flight"])
    check(0 < on_a < 6, "the long commands must be spread (a has %d of 6)" % on_a)
    a.proc.kill9()
    killed_at = time.monotonic()

    # new commands go to the survivor right away
    for i in range(5):
        r = w.kubectl(cid, args=["get", "--raw", "/fixture/echo/after-%d" % i], timeout=30)
        eq(r.status, 200, "command after the kill (%r)" % r)
        eq(r.json.get("output"), "after-%d" % i, "output after the kill")
    wait_until(lambda: (w.connection(cid) or {}).get("agents") == 1, 30, 0.1,
               "the connection to show 1 agent")
    eq(w.connection(cid).get("status"), "active", "the cluster stays active with one replica")

    failed, ok = [], []
    for f in futs:
        r, done_at = f.result(timeout=90)
        (ok if r.status == 200 else failed).append((r, done_at))
    ex.shutdown()
    eq(len(failed), on_a, "exactly the dead replica's in-flight commands fail")
    for r, done_at in failed:
        eq(r.status, 502, "status of a command on the dead replica (%r)" % r)
        eq(r.get("error_code"), "AGENT_DISCONNECTED", "error_code (%r)" % r)
        check(r.get("error"), "a clear error message", r.json)
        check(done_at - killed_at < 10, "the failure must be immediate, not the 20 s command's "
              "end (%.1fs after the kill)"
              % (done_at - killed_at))
    for r, _ in ok:
        eq(r.json.get("output"), "slept 20", "the survivor's long commands complete")
    # the agent logs a command's end after its exec_end is out: wait for the line
    wait_until(lambda: "ended return_code=0" in b.log(), 30, 0.1, "the survivor to log the commands it ran")


if __name__ == "__main__":
    main()
