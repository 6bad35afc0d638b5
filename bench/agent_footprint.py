#!/usr/bin/env python3
"""agent_footprint.py — where an idle, connected agent's memory goes (issue 14).

Starts aurora-server (build/rel) and, one after the other, agents in several
configurations; each connects, idles for --idle seconds, and its
/proc/PID/smaps is split into:
  text/ro    file-backed mappings of the binary (code and read-only data touched)
  data/bss   the binary's writable mappings
  heap       [heap] (the main malloc arena)
  arenas     anonymous 64 MiB-aligned malloc arenas of other threads
  stacks     thread stacks (anonymous mappings with a guard page) and [stack]
  other anon the rest (large malloc chunks served by mmap, ...)
Every column is Rss in KiB; "Pss" of the whole process is printed as well.

Configurations (rows):
  static            build/static/aurora-agent with its defaults, CA = the server's cert
  static+bundle     the same with Debian's whole CA bundle (plus the server's cert)
                    as AURORA_CA_FILE: the cost of parsing ~140 roots
  static, nofile 1M the same with RLIMIT_NOFILE 1048576 (a container's usual limit):
                    libwebsockets sizes its fd tables by it
  <name> (--binary NAME=PATH, repeatable): another static binary, e.g. the
                    previous build kept as build/static/aurora-agent.debian-openssl
  release           build/rel/aurora-agent (dynamically linked)
Extra environment for every agent: --env K=V.  With --commands N (default 64),
each static agent then runs N commands (/bin/echo as kubectl) at concurrency 16,
idles again and its Rss is printed as "after": what job threads leave behind
(malloc arenas, stacks).  Python 3 stdlib only.
"""

import argparse
import http.client
import os
import resource
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agent_bench  # noqa: E402

ROOT = agent_bench.ROOT


def smaps_breakdown(pid, exe_names):
    cols = {"text/ro": 0, "data/bss": 0, "heap": 0, "arenas": 0, "stacks": 0, "other anon": 0}
    maps = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perm": parts[1],
                       "name": parts[5] if len(parts) > 5 else "", "rss": 0}
                maps.append(cur)
            elif parts[0] == "Rss:" and cur is not None:
                cur["rss"] = int(parts[1])
    for i, m in enumerate(maps):
        size = m["hi"] - m["lo"]
        name = m["name"]
        if name and any(name.endswith(e) for e in exe_names) or \
                (name and not name.startswith("[") and m["perm"][3] == "p" and "r" in m["perm"]):
            cols["data/bss" if "w" in m["perm"] else "text/ro"] += m["rss"]
        elif name == "[heap]":
            cols["heap"] += m["rss"]
        elif name == "[stack]":
            cols["stacks"] += m["rss"]
        elif name.startswith("["):
            continue  # vdso, vvar
        else:
            prev = maps[i - 1] if i else None
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            guard_below = prev and prev["perm"].startswith("---") and prev["hi"] == m["lo"]
            guard_above = nxt and nxt["perm"].startswith("---") and nxt["lo"] == m["hi"]
            if m["lo"] % (64 << 20) == 0 and guard_above:
                cols["arenas"] += m["rss"]  # arena heap: rw part, then PROT_NONE reserve
            elif guard_below and "w" in m["perm"] and size >= 60 << 10:
                cols["stacks"] += m["rss"]  # pthread stack above its guard page
            elif m["perm"].startswith("---"):
                continue
            else:
                cols["other anon"] += m["rss"]
    with open("/proc/%d/smaps_rollup" % pid) as f:
        roll = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[0].endswith(":")
                and len(l.split()) == 3}
    threads = len(os.listdir("/proc/%d/task" % pid))
    return cols, roll, threads


def run_commands(b, cluster_id, count, conc=16):
    """count commands through the agent at concurrency conc; returns the failures."""
    path = "/api/clusters/%s/kubectl" % cluster_id
    lock = threading.Lock()
    nxt, bad = [0], []

    def worker():
        conn = http.client.HTTPSConnection("127.0.0.1", b.port, context=b.ctx, timeout=60)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= count:
                break
            st, doc = b.request("POST", path, {"args": ["get", "pods", "fp-%d" % i]}, conn)
            if st != 200 or not doc or doc.get("output") != "get pods fp-%d\n" % i:
                with lock:
                    bad.append((st, doc))
        conn.close()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rel", default=os.path.join(ROOT, "build", "rel"))
    ap.add_argument("--static", default=os.path.join(ROOT, "build", "static", "aurora-agent"))
    ap.add_argument("--binary", action="append", default=[],
                    help="NAME=PATH: another agent binary measured as its own row")
    ap.add_argument("--env", action="append", default=[], help="K=V for every agent")
    ap.add_argument("--idle", type=int, default=3)
    ap.add_argument("--commands", type=int, default=64)
    ap.add_argument("--bundle", default="/etc/ssl/certs/ca-certificates.crt")
    args = ap.parse_args()
    bargs = argparse.Namespace(rel=args.rel, static=args.static, agents=1, count=1,
                               idle=args.idle, start_batch=1)
    b = agent_bench.Bench(bargs)
    extra = {"AURORA_MAX_CONCURRENT": "16"}
    extra.update(dict(kv.split("=", 1) for kv in args.env))
    errors = 0
    rows = []
    try:
        b.setup()
        token = b.tokens[0]["token"]
        bundle = os.path.join(b.work, "bundle.pem")
        if os.path.exists(args.bundle):
            with open(bundle, "wb") as out:
                for p in (args.bundle, b.ca):
                    with open(p, "rb") as f:
                        out.write(f.read())
        others = []
        for spec in args.binary:
            name, path = spec.split("=", 1)
            dst = os.path.join(b.bin, "aurora-agent-" + name)
            shutil.copy2(path, dst)
            others.append((name, dst))
        static_bin = os.path.join(b.bin, "aurora-agent-static")
        variants = [("static", static_bin, {}, None)]
        if os.path.exists(bundle):
            variants.append(("static+bundle", static_bin, {"AURORA_CA_FILE": bundle}, None))
        variants.append(("static, nofile 1M", static_bin, {}, 1 << 20))
        for name, path in others:
            variants.append((name, path, {}, None))
        variants.append(("release", os.path.join(b.bin, "aurora-agent"), {}, None))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for name, path, env, nofile in variants:
            if nofile and hard != resource.RLIM_INFINITY and hard < nofile:
                try:  # root may raise its hard limit
                    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, nofile))
                    hard = nofile
                except (ValueError, OSError):
                    print("  (%s skipped: hard RLIMIT_NOFILE %d)" % (name, hard), file=sys.stderr)
                    continue
            e = dict(extra)
            e.update(env)
            old = resource.getrlimit(resource.RLIMIT_NOFILE)
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, old[1]))
            try:
                src = path if path != static_bin else None
                if src:  # start_agent runs aurora-agent-static or aurora-agent
                    os.replace(static_bin, static_bin + ".keep")
                    shutil.copy2(path, static_bin)
                try:
                    p = b.start_agent(token, static=(name != "release"), extra=e, name=name)
                finally:
                    if src:
                        os.replace(static_bin + ".keep", static_bin)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, old)
            time.sleep(args.idle)
            cols, roll, threads = smaps_breakdown(p.pid, ("aurora-agent-static", "aurora-agent",
                                                          "aurora-agent-" + name))
            after = None
            if args.commands and name not in ("static+bundle", "static, nofile 1M"):
                bad = run_commands(b, b.tokens[0]["cluster_id"], args.commands)
                if bad:
                    errors += 1
                    print("  PROBLEM %s: %d commands failed, first %r" % (name, len(bad), bad[0]),
                          file=sys.stderr)
                time.sleep(args.idle)
                acols, aroll, athreads = smaps_breakdown(
                    p.pid, ("aurora-agent-static", "aurora-agent", "aurora-agent-" + name))
                after = (aroll.get("Rss", -1), aroll.get("Pss", -1), athreads, acols)
            rows.append((name, roll.get("Rss", -1), roll.get("Pss", -1), threads, cols,
                         os.path.getsize(path), after))
            if b.stop(p) != 0:
                errors += 1
    finally:
        b.cleanup()
    keys = ["text/ro", "data/bss", "heap", "arenas", "stacks", "other anon"]
    print("== agent idle memory by mapping (Rss KiB, connected, idle %ds)" % args.idle)
    print("  %-20s %7s %7s %4s " % ("agent", "Rss", "Pss", "thr") +
          " ".join("%10s" % k for k in keys) + " %9s" % "file KiB")
    for name, rss, pss, threads, cols, size, after in rows:
        print("  %-20s %7d %7d %4d " % (name, rss, pss, threads) +
              " ".join("%10d" % cols[k] for k in keys) + " %9.0f" % (size / 1024))
        if after:
            print("  %-20s %7d %7d %4d " % ("  after commands", after[0], after[1], after[2]) +
                  " ".join("%10d" % after[3][k] for k in keys))
    if args.commands:
        print("  after commands: once %d commands ran at concurrency 16 and the agent idled "
              "%ds again" % (args.commands, args.idle))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
