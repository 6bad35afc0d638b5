#!/usr/bin/env python3
"""syscall_summary.py — system calls per tunnelled command, by process and by call.

    python3 bench/syscall_summary.py --perf-data DIR/syscalls.data --per-command N \
        --server-pid P --agent-pid Q

reads a recording made with BENCH_SYSCALLS=DIR (bench/run.sh: `perf record -e
raw_syscalls:sys_enter` on the server and the agent while row 1 runs; perf
follows the agent's children) and prints, per command: the server's calls,
the agent's own, those of the agent's children before their execve (the
spawn: signal resets, descriptor set-up) and those of the command itself.

Latency on a shared VM swings by more than most changes move it; a count of
system calls does not, so an A/B of two builds can be read from one run each.
The names come from the kernel's own table (asm/unistd_64.h, linux-libc-dev).
Python 3 stdlib only.
"""

import argparse
import collections
import re
import subprocess
import sys

UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def syscall_names():
    names = {}
    try:
        with open(UNISTD) as f:
            for line in f:
                m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                if m:
                    names[int(m.group(2))] = m.group(1)
    except OSError:
        pass  # numbers only
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--perf-data", required=True)
    ap.add_argument("--per-command", type=int, required=True, help="commands it covers")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--agent-pid", type=int, required=True)
    ap.add_argument("--top", type=int, default=8, help="calls listed per process")
    a = ap.parse_args()
    if a.per_command <= 0:
        sys.exit("syscall_summary: --per-command must be positive")

    out = subprocess.run(["perf", "script", "-i", a.perf_data, "-F", "comm,pid,trace"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("syscall_summary: perf script failed: " + out.stderr.strip()[:300])
    names = syscall_names()
    # "  aurora-agent 28860 NR 13 (29, 7f5c..., ...)": the comm may hold spaces
    row = re.compile(r"^\s*(.*?)\s+(\d+)\s+NR\s+(\d+)\b")
    counts = collections.defaultdict(collections.Counter)
    for line in out.stdout.splitlines():
        m = row.match(line)
        if not m:
            continue
        comm, pid, nr = m.group(1), int(m.group(2)), int(m.group(3))
        if pid == a.server_pid:
            who = "aurora-server"
        elif pid == a.agent_pid:
            who = "aurora-agent"
        elif comm == "aurora-agent":
            who = "agent's child before execve"
        else:
            who = "the command (" + comm + ")"
        counts[who][nr] += 1

    n = a.per_command
    order = ["aurora-server", "aurora-agent", "agent's child before execve"]
    order += sorted(k for k in counts if k not in order)
    print(f"{'process':32s} {'calls/cmd':>9s}  most frequent (calls/cmd)")
    for who in order:
        c = counts.get(who)
        if not c:
            continue
        top = ", ".join(f"{names.get(nr, nr)} {k / n:.1f}" for nr, k in c.most_common(a.top))
        print(f"{who:32s} {sum(c.values()) / n:9.1f}  {top}")
    if not counts.get("aurora-server"):
        print("PROBLEM: no system call of the server was recorded")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
