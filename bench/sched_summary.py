#!/usr/bin/env python3
"""sched_summary.py — where a command's wall time goes between threads.

    python3 bench/sched_summary.py --sched-data DIR/sched.data --per-command N \
        --server-pid P --agent-pid Q

reads `perf sched timehist` of a recording made with BENCH_PERF_SCHED=DIR
(bench/run.sh: `perf sched record -a` while row 1 runs) and prints, for the
server's event loop, its store workers, the agent's event loop and its job
threads: CPU run time, scheduling delay (from a thread's wake-up until it runs
on a CPU: what each hop between threads costs beyond its CPU) and context
switches, each per command.  perf_fold.py says which functions take the CPU;
this says whether the time between threads is waiting for a CPU or running.
Python 3 stdlib only.
"""

import argparse
import collections
import re
import subprocess
import sys

# "  44775.569523 [0000]  aurora-server[22945/22942]   0.012   0.004   0.031"
ROW = re.compile(r"^\s*(\d+\.\d+)\s+\[\d+\]\s+(.*?)\[(-?\d+)(?:/(-?\d+))?\]\s+"
                 r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def role(tid, pid, server_pid, agent_pid):
    if pid == server_pid:
        return "server event loop" if tid == pid else "server store workers"
    if pid == agent_pid:
        return "agent event loop" if tid == pid else "agent job threads"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sched-data", required=True, help="perf sched record output")
    ap.add_argument("--per-command", type=int, required=True, help="commands it covers")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--agent-pid", type=int, required=True)
    a = ap.parse_args()
    out = subprocess.run(["perf", "sched", "timehist", "-i", a.sched_data],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("perf sched timehist failed: " + out.stderr.strip())
    run = collections.Counter()
    delay = collections.Counter()
    switches = collections.Counter()
    for line in out.stdout.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        tid = int(m.group(3))
        pid = int(m.group(4)) if m.group(4) else tid
        r = role(tid, pid, a.server_pid, a.agent_pid)
        if r is None:
            continue
        run[r] += float(m.group(7))
        delay[r] += float(m.group(6))
        switches[r] += 1
    n = a.per_command
    print("%-22s %14s %16s %14s" % ("thread", "run us/cmd", "wake delay us/cmd", "switches/cmd"))
    for r in ("server event loop", "server store workers", "agent event loop",
              "agent job threads"):
        print("%-22s %14.0f %16.0f %14.1f" % (r, run[r] * 1000 / n, delay[r] * 1000 / n,
                                               switches[r] / n))
    print("%-22s %14.0f %16.0f %14.1f" % ("total", sum(run.values()) * 1000 / n,
                                          sum(delay.values()) * 1000 / n,
                                          sum(switches.values()) / n))


if __name__ == "__main__":
    main()
