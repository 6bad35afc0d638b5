#!/usr/bin/env python3
"""rss_bench.py — aurora-server resident memory vs number of idle agents
(Python 3.11 stdlib only).

Drives bench/idle_agents.js (one node process, legacy-dialect connections, one
token each) through its stdin: `up N` for each N in --counts, then `down`.
After each step it waits until the server's GET /api/kubectl/connections lists
exactly the expected clusters as "active" (and, for the record, counts the
server log's "agent connected" lines), lets the server settle, then reads VmRSS
from /proc/<pid>/status.

Exit status 1 if any agent failed to connect, was dropped, or the server's view
did not match.
"""

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import time


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def fds_of(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def log_count(path, needle):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if needle in line)
    except OSError:
        return -1


_heap_broken = False


def heap_in_use_kib(pid, log_path):
    """glibc heap bytes in use (all arenas + mmap), via gdb calling malloc_stats()
    in the server, which prints to the server's stderr (its log file).  Pauses
    the server for a moment.  None when gdb or ptrace is unavailable."""
    global _heap_broken
    if _heap_broken:
        return None
    try:
        start = os.path.getsize(log_path)
        g = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx",
                            "-ex", "call (void)malloc_stats()"],
                           capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        _heap_broken = True
        return None
    if "ptrace" in g.stdout + g.stderr or "Could not attach" in g.stdout + g.stderr:
        _heap_broken = True  # e.g. kernel.yama.ptrace_scope forbids it
        return None
    for _ in range(20):
        with open(log_path, errors="replace") as f:
            f.seek(start)
            text = f.read()
        if "Total (incl. mmap):" in text:
            tail = text.split("Total (incl. mmap):", 1)[1]
            for line in tail.splitlines():
                if line.strip().startswith("in use bytes"):
                    return int(line.split("=")[1]) // 1024
        time.sleep(0.1)
    return None


class Api:
    def __init__(self, port, ca, key):
        self.port, self.key = port, key
        self.ctx = ssl.create_default_context(cafile=ca)

    def active(self, ids):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            c.request("GET", "/api/kubectl/connections",
                      headers={"Authorization": f"Bearer {self.key}"})
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status != 200:
            raise RuntimeError(f"GET /api/kubectl/connections: HTTP {r.status} {body[:200]!r}")
        conns = json.loads(body)["connections"]
        return sum(1 for x in conns if x["cluster_id"] in ids and x["status"] == "active"
                   and x.get("agents", 0) >= 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--server-log", required=True)
    ap.add_argument("--node-script", required=True)
    ap.add_argument("--counts", default="0,100,500,1000")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--heap", action="store_true",
                    help="also report glibc heap bytes in use (gdb + malloc_stats)")
    args = ap.parse_args()

    counts = [int(x) for x in args.counts.split(",")]
    with open(args.tokens) as f:
        toks = [json.loads(line) for line in f if line.strip()]
    if len(toks) < max(counts):
        print(f"need {max(counts)} tokens, have {len(toks)}", file=sys.stderr)
        return 1
    api = Api(args.port, args.ca, args.key)
    node = subprocess.Popen(
        ["node", args.node_script, "--url", f"wss://127.0.0.1:{args.port}/kubectl-agent",
         "--ca", args.ca, "--tokens", args.tokens],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(cmd, timeout=120):
        node.stdin.write(cmd + "\n")
        node.stdin.flush()
        line = node.stdout.readline()
        if not line:
            raise RuntimeError(f"idle_agents.js exited (status {node.poll()}) during '{cmd}'")
        return json.loads(line)

    def wait_active(ids, n, timeout=30.0):
        t_end = time.monotonic() + timeout
        got = -1
        while time.monotonic() < t_end:
            got = api.active(ids)
            if got == n:
                return got
            time.sleep(0.25)
        return got

    def sample():
        time.sleep(args.settle)
        vals = []
        for _ in range(3):
            vals.append(vm_rss_kib(args.pid))
            time.sleep(0.3)
        return sorted(vals)[1]  # median of 3

    rows, problems = [], []
    seen = (0, 0)  # failed, dropped so far
    base = None
    connected_before = log_count(args.server_log, "agent connected:")
    try:
        # ... then everyone leaves, and the largest count connects and leaves once
        # more: memory that is merely retained by the allocator is reused by the
        # second round, a per-connection leak grows it again.
        top = max(counts)
        steps = [(n, f"up {n}", f"{n}") for n in counts] + [
            (0, "down", "0 (all left)"),
            (top, f"up {top}", f"{top} (2nd round)"),
            (0, "down", "0 (all left again)")]
        for n, cmd, label in steps:
            t0 = time.monotonic()
            st = ask(cmd) if (n > 0 or cmd == "down") else ask("status")
            up_s = time.monotonic() - t0
            if st.get("fatal"):
                problems.append(st["fatal"])
            if st["open"] != n:
                problems.append(f"{label}: client has {st['open']} open, expected {n}")
            if (st["failed"], st["dropped"]) != seen:
                problems.append(f"{label}: {st['failed'] - seen[0]} failed to connect, "
                                f"{st['dropped'] - seen[1]} dropped (first errors: "
                                + " | ".join(st["errors"]) + ")")
                seen = (st["failed"], st["dropped"])
            ids = {t["cluster_id"] for t in toks[:max(counts)]}
            active = wait_active(ids, n)
            if active != n:
                problems.append(f"{label}: server lists {active} active, expected {n}")
            rss = sample()
            if base is None:
                base = rss
            logged = log_count(args.server_log, "agent connected:") - connected_before
            heap = heap_in_use_kib(args.pid, args.server_log) if args.heap else None
            rows.append((label, n, cmd, rss, active, logged, up_s, threads_of(args.pid),
                         fds_of(args.pid), heap))
            print(f"  {label:>20s} agents: RSS {rss / 1024:.1f} MiB, active {active}, "
                  f"step {up_s:.1f} s", file=sys.stderr, flush=True)
    finally:
        try:
            node.stdin.write("quit\n")
            node.stdin.flush()
            node.stdin.close()
        except OSError:
            pass
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()

    hdr = (f"{'agents':>20} {'RSS MiB':>8} {'delta MiB':>9} {'KiB/agent':>9} | "
           f"{'heap MiB':>8} {'active(API)':>11} {'connect s':>9} {'fds':>5} {'threads':>7}")
    print(hdr)
    print("-" * len(hdr))
    for label, n, cmd, rss, active, logged, up_s, thr, fds, heap in rows:
        delta = (rss - base) / 1024.0
        per = f"{(rss - base) / n:.1f}" if n > 0 else "-"
        heap_s = f"{heap / 1024:.1f}" if heap is not None else "-"
        print(f"{label:>20} {rss / 1024:>8.1f} {delta:>9.1f} {per:>9} | {heap_s:>8} {active:>11} "
              f"{up_s:>9.1f} {fds:>5} {thr:>7}")
    print("connect s: time for the client to open the step's new connections and get "
          "'connected' for each (64 handshakes in flight)")
    print("heap MiB: glibc heap bytes in use (malloc_stats via gdb), '-' if unavailable; "
          "RSS keeps pages malloc has freed, so a leak shows as heap not returning to its "
          "0-agent value, not as RSS")
    print(f"server log 'agent connected' lines during this phase: "
          f"{log_count(args.server_log, 'agent connected:') - connected_before}")
    print(f"problems: {len(problems)}")
    for p in problems:
        print(f"  PROBLEM {p}")
    sys.stdout.flush()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
